#!/usr/bin/env bash
# seed-spread-torch.sh measures how much a model's held-out loss depends on
# its initialisation seed in moetrain and in the PyTorch reference, each tool
# drawing its own initial weights (moetrain from model.init_seed, PyTorch from
# torch.Generator), both training on the same batches (the ones moetrain's
# data stream gives; written once by `moetrain reference-inputs`). It prints
# the held-out loss at every evaluation per seed and tool, and per tool the
# mean and standard deviation over seeds.
#
# Usage: scripts/seed-spread-torch.sh [-n SEEDS] [-o OUT] [--set key=value]... CONFIG
# Env:   JOBS (1): runs at a time; THREADS (1): GOMAXPROCS and PyTorch threads
#        of each run. Finished runs are kept in OUT and not repeated.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=5 OUT=runs/seed-spread JOBS=${JOBS:-1} THREADS=${THREADS:-1}
sets=() config=""
while [ $# -gt 0 ]; do
	case "$1" in
	-n) SEEDS=$2; shift 2 ;;
	-o) OUT=$2; shift 2 ;;
	--set) sets+=(--set "$2"); shift 2 ;;
	-h|--help) sed -n '2,13p' "$0"; exit 0 ;;
	-*) echo "seed-spread-torch.sh: unknown flag $1" >&2; exit 2 ;;
	*) config=$1; shift ;;
	esac
done
[ -n "$config" ] || { echo "seed-spread-torch.sh: give a config (see --help)" >&2; exit 2; }
/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "seed-spread-torch.sh: /usr/bin/python3 cannot import torch: install Debian's python3-torch" >&2; exit 1; }
mkdir -p "$OUT"
bin="$OUT/moetrain"
go build -o "$bin" ./cmd/moetrain
[ -f "$OUT/inputs/done" ] || { "$bin" reference-inputs "$config" "${sets[@]}" --out "$OUT/inputs" >/dev/null && touch "$OUT/inputs/done"; }

run() { # tool seed
	local tool=$1 s=$2
	case $tool in
	moetrain)
		[ -f "$OUT/moetrain-$s.done" ] && return
		rm -rf "$OUT/moetrain-$s"
		GOMAXPROCS=$THREADS "$bin" train "$config" "${sets[@]}" --set "model.init_seed=$s" \
			--run-dir "$OUT/moetrain-$s" --plain >"$OUT/moetrain-$s.log" 2>&1
		touch "$OUT/moetrain-$s.done" ;;
	torch)
		[ -f "$OUT/torch-$s.done" ] && return
		/usr/bin/python3 reference/torchref.py train --threads "$THREADS" --config "$OUT/inputs/config.json" \
			--seed "$s" --batches "$OUT/inputs/batches.i32" --eval-tokens "$OUT/inputs/heldout.i32" \
			--eval-every "$(/usr/bin/python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print(max(1, c["eval"]["every_tokens"] // (c["train"]["batch_size"] * c["train"]["seq_len"])))' "$OUT/inputs/config.json")" \
			>"$OUT/torch-$s.jsonl.tmp"
		mv "$OUT/torch-$s.jsonl.tmp" "$OUT/torch-$s.jsonl"
		touch "$OUT/torch-$s.done" ;;
	esac
}
for s in $(seq 1 "$SEEDS"); do
	for tool in moetrain torch; do
		while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
		echo "== $(date -u +%FT%TZ) $tool seed $s" >&2
		run $tool "$s" &
	done
done
wait

/usr/bin/python3 - "$OUT" "$SEEDS" <<'PY'
import json, statistics, sys
out, seeds = sys.argv[1], int(sys.argv[2])
curves = {}
for s in range(1, seeds + 1):
    m = {}
    for line in open(f"{out}/moetrain-{s}/metrics.jsonl"):
        r = json.loads(line)
        if r.get("kind") == "eval" and r.get("task") == "heldout" and r.get("metric") == "loss":
            m[r["step"]] = r["value"]
    curves["moetrain", s] = m
    curves["torch", s] = {r["step"]: r["val_loss"] for r in map(json.loads, open(f"{out}/torch-{s}.jsonl")) if "val_loss" in r}
steps = sorted(set.intersection(*(set(c) for c in curves.values())))
print("Held-out loss (nats per token) at each evaluation, by init seed:")
print()
print("| tool | seed | " + " | ".join(f"step {k}" for k in steps) + " |")
print("|---|---:|" + "---:|" * len(steps))
for tool in ("moetrain", "torch"):
    for s in range(1, seeds + 1):
        print(f"| {tool} | {s} | " + " | ".join(f"{curves[tool, s][k]:.4f}" for k in steps) + " |")
print()
print("| tool | " + " | ".join(f"step {k}: mean ± sd (range)" for k in steps) + " |")
print("|---|" + "---:|" * len(steps))
for tool in ("moetrain", "torch"):
    cells = []
    for k in steps:
        xs = [curves[tool, s][k] for s in range(1, seeds + 1)]
        sd = statistics.stdev(xs) if len(xs) > 1 else float("nan")
        cells.append(f"{statistics.mean(xs):.4f} ± {sd:.4f} ({max(xs) - min(xs):.4f})")
    print(f"| {tool} | " + " | ".join(cells) + " |")
PY
