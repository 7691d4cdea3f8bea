#!/usr/bin/env python3
"""routing-collapse.py SWEEP_OUT: per run, the held-out loss at each evaluation and,
over any MoE layer, the largest dead-expert share and max/mean expert load in the
first 64 steps and in the steps after 500 (read from RUN/metrics.jsonl train lines)."""
import glob, json, os, sys

for d in sorted(g for g in glob.glob(os.path.join(sys.argv[1], "*/")) if os.path.exists(g + "metrics.jsonl")):
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
