#!/usr/bin/env python3
"""routing-collapse.py SWEEP_OUT: per run, the held-out loss at each evaluation and,
over any MoE layer, the largest dead-expert share and max/mean expert load in the
first 64 steps and in the steps after 500 (read from RUN/metrics.jsonl train lines).

routing-collapse.py --probes RUNS: the markdown table of scripts/collapse-probes.sh,
one row per probe run (RUNS/NAME/metrics.jsonl, logged every step), in token
windows so that probes with other batch sizes compare: the first 131,072 tokens
(the regime's first 64 steps) and the next 131,072."""
import glob, json, os, sys

EARLY = 131072  # tokens: the regime's first 64 steps of 16x128


def train_lines(path):
    for line in open(path):
        r = json.loads(line)
        if r.get("kind") == "train" and r.get("moe"):
            yield r


def probe_row(d):
    """Dead share (mean over layers, per step), its peak, MaxVio and loss of one probe."""
    early, late, vio, peak, last = [], [], [], (0.0, 0, 0.0), []
    for r in train_lines(os.path.join(d, "metrics.jsonl")):
        dead = sum(m["dead_share"] for m in r["moe"]) / len(r["moe"])
        worst = max(m["dead_share"] for m in r["moe"])
        if r["tokens"] <= EARLY:
            early.append(dead)
            vio.append(max(m.get("max_vio", 0) for m in r["moe"]))
            if worst > peak[0]:
                peak = (worst, r["tokens"], r["loss"])
        else:
            late.append(dead)
        last.append(r["loss"])
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")
    return {
        "dead_early": mean(early), "dead_late": mean(late), "peak": peak[0],
        "peak_step": peak[1] // 2048, "peak_loss": peak[2], "vio": mean(vio),
        "loss": mean(last[-8:]), "steps": len(early) + len(late),
    }


def probes(root):
    print("| probe | dead share, first 64 steps | worst layer's peak (regime step, train loss) | mean MaxVio, first 64 steps | dead share, steps 65-128 | train loss, last 16K tokens |")
    print("|---|---:|---:|---:|---:|---:|")
    for d in sorted(g for g in glob.glob(os.path.join(root, "*/")) if os.path.exists(g + "metrics.jsonl")):
        p = probe_row(d)
        print("| %s | %.3f | %.2f (%d, %.2f) | %.2f | %.3f | %.3f |" % (
            os.path.basename(d.rstrip("/")), p["dead_early"], p["peak"], p["peak_step"],
            p["peak_loss"], p["vio"], p["dead_late"], p["loss"]))


def sweep(root):
    for d in sorted(g for g in glob.glob(os.path.join(root, "*/")) if os.path.exists(g + "metrics.jsonl")):
        ev, early, late = [], [0.0, 0.0], [0.0, 0.0]
        for line in open(d + "metrics.jsonl"):
            r = json.loads(line)
            if r.get("kind") == "eval" and r.get("task") == "heldout" and r.get("metric") == "loss":
                ev.append(round(r["value"], 4))
            if r.get("kind") == "train" and r.get("moe"):
                dead = max(m["dead_share"] for m in r["moe"])
                lm = max(m["load_max_over_mean"] for m in r["moe"])
                w = early if r["step"] <= 64 else late if r["step"] > 500 else None
                if w is not None:
                    w[0], w[1] = max(w[0], dead), max(w[1], lm)
        print(os.path.basename(d.rstrip("/")), ev,
              "early dead %.2f max/mean %.1f | late dead %.2f max/mean %.1f" % (*early, *late))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--probes":
        probes(sys.argv[2])
    elif len(sys.argv) == 2:
        sweep(sys.argv[1])
    else:
        sys.exit("usage: routing-collapse.py SWEEP_OUT | --probes RUNS")
