#!/usr/bin/env python3
"""routing-collapse.py SWEEP_OUT: per run, the held-out loss at each evaluation and,
over any MoE layer, the largest dead-expert share and max/mean expert load in the
first 64 steps and in the steps after 500 (read from RUN/metrics.jsonl train lines).

routing-collapse.py --probes RUNS: the markdown table of scripts/collapse-probes.sh,
one row per probe run (RUNS/NAME/metrics.jsonl, logged every step), in token
windows so that probes with other batch sizes compare: the first 131,072 tokens
(the regime's first 64 steps) and the next 131,072, and the held-out loss of
the probe's final evaluation."""
import glob, json, os, sys

EARLY = 131072  # tokens: the regime's first 64 steps of 16x128


def probe_row(d):
    """Dead share (mean over layers, per step), the share of experts that no
    token reached in a whole block of 8 steps (an expert dead in one step but
    used in the next is herding, not a dead expert), its peak, the window in
    which some layer has at least a quarter of its experts dead, how often a
    layer with a quarter of its experts dead kept the previous step's busiest
    expert, MaxVio and the final held-out loss of one probe. Steps are in units of 2,048 tokens
    (the regime's steps), so probes with other batch sizes line up."""
    early, late, vio, peak, window, heldout = [], [], [], (0.0, 0, 0.0), [], float("nan")
    union, dead8 = {}, []  # per layer: experts used in the current 8-step block; dead shares of the blocks
    busiest, stuck = {}, []  # per layer: the previous step's busiest expert; in collapsed steps, whether it stayed
    for line in open(os.path.join(d, "metrics.jsonl")):
        r = json.loads(line)
        if r.get("kind") == "eval" and r.get("task") == "heldout" and r.get("metric") == "loss":
            heldout = r["value"]
        if r.get("kind") != "train" or not r.get("moe"):
            continue
        dead = sum(m["dead_share"] for m in r["moe"]) / len(r["moe"])
        worst = max(m["dead_share"] for m in r["moe"])
        step = r["tokens"] // 2048
        if worst >= 0.25:
            window.append((step, r["loss"]))
        for m in r["moe"]:
            top = max(range(len(m["load"])), key=lambda e: m["load"][e])
            if m["dead_share"] >= 0.25 and m["layer"] in busiest:
                stuck.append(top == busiest[m["layer"]])
            busiest[m["layer"]] = top
        if r["tokens"] <= EARLY:
            for m in r["moe"]:
                used = union.setdefault(m["layer"], set())
                used.update(e for e, x in enumerate(m["load"]) if x > 0)
                if r["tokens"] % (8 * 2048) == 0:
                    dead8.append(1 - len(used) / len(m["load"]))
                    used.clear()
            early.append(dead)
            vio.append(max(m.get("max_vio", 0) for m in r["moe"]))
            if worst > peak[0]:
                peak = (worst, step, r["loss"])
        else:
            late.append(dead)
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")
    return {
        "dead_early": mean(early), "dead_late": mean(late), "peak": peak, "vio": mean(vio),
        "window": window, "heldout": heldout, "dead8": mean(dead8), "stuck": mean(stuck),
    }


def probes(root):
    print("| probe | dead share, steps 1-64 | dead over 8 steps, steps 1-64 | worst layer's peak (step, train loss) | steps with a layer ≥ 25% dead: first-last (train loss) | busiest expert kept, collapsed steps | MaxVio, steps 1-64 | dead share, steps 65-128 | held-out loss |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for d in sorted(g for g in glob.glob(os.path.join(root, "*/")) if os.path.exists(g + "metrics.jsonl")):
        p = probe_row(d)
        w = p["window"]
        win = "%d-%d (%.2f-%.2f), %d steps" % (w[0][0], w[-1][0], w[0][1], w[-1][1], len(w)) if w else "none"
        print("| %s | %.3f | %.3f | %.2f (%d, %.2f) | %s | %.2f | %.2f | %.3f | %.3f |" % (
            os.path.basename(d.rstrip("/")), p["dead_early"], p["dead8"], *p["peak"], win, p["stuck"],
            p["vio"], p["dead_late"], p["heldout"]))


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
