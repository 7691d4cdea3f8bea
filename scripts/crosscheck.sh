#!/usr/bin/env bash
# crosscheck.sh trains the same models in moetrain and in the PyTorch
# reference (reference/torchref.py) from the same initial weights on the same
# batches, and prints the held-out loss of each model in each implementation,
# each MoE's gain over Dense per seed, and the spread over seeds.
#
# Usage: scripts/crosscheck.sh [-n SEEDS] [-o OUT] [-r] [--set key=value]... CONFIG...
#   CONFIG...  the models of a regime, the dense baseline first (its gain is 0):
#              e.g. configs/small/{dense,switch,gshard,deepseekmoe}.yaml
#   -n SEEDS   init seeds 1..SEEDS (default 3); the batches are the same for
#              every seed and model (data.seed is left alone)
#   -o OUT     where runs are kept (default runs/crosscheck); finished runs are
#              not repeated, so an interrupted check resumes; several
#              crosschecks on one OUT split the runs between them
#   -r         run nothing: print the tables of the seeds already finished
#              (every model in both implementations)
#   --set      passed to every moetrain command (e.g. --set eval.tokens=65536
#              to score both implementations on fewer held-out tokens)
# Env: THREADS (2): PyTorch threads and GOMAXPROCS.
#
# Per model and seed it runs `moetrain reference-inputs` (config, initial
# weights, batches, held-out windows), `moetrain train` and `torchref.py
# train` on those inputs with --eval-tokens; the held-out loss of both is over
# the same windows (eval.tokens of the validation split).
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=3 OUT=runs/crosscheck THREADS=${THREADS:-2} REPORT=
sets=() configs=()
while [ $# -gt 0 ]; do
	case "$1" in
	-n) SEEDS=$2; shift 2 ;;
	-o) OUT=$2; shift 2 ;;
	-r) REPORT=1; shift ;;
	--set) sets+=(--set "$2"); shift 2 ;;
	--set=*) sets+=(--set "${1#--set=}"); shift ;;
	-h|--help) sed -n '2,24p' "$0"; exit 0 ;;
	-*) echo "crosscheck.sh: unknown flag $1" >&2; exit 2 ;;
	*) configs+=("$1"); shift ;;
	esac
done
if [ ${#configs[@]} -lt 2 ]; then
	echo "crosscheck.sh: give the dense config and at least one MoE config (see --help)" >&2
	exit 2
fi
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
	echo "crosscheck.sh: /usr/bin/python3 cannot import torch: install Debian's python3-torch" >&2
	exit 1
fi
mkdir -p "$OUT"
bin="$OUT/moetrain"
[ -n "$REPORT" ] || go build -o "$bin" ./cmd/moetrain

for s in $(seq 1 "$SEEDS"); do
	[ -z "$REPORT" ] || break
	for c in "${configs[@]}"; do
		name=$(basename "$c" .yaml)
		d="$OUT/$name-seed-$s"
		seed=(--set "model.init_seed=$s")
		# A lock per model and seed: several crosschecks on one OUT share
		# the work (each skips what another is running) instead of
		# running it twice.
		mkdir -p "$d"
		exec 8>"$d/lock"
		if ! flock -n 8; then
			echo "== $(date -u +%FT%TZ) $name seed $s: another crosscheck is running it, skipped" >&2
			exec 8>&-
			continue
		fi
		if [ ! -f "$d/inputs/done" ]; then
			echo "== $(date -u +%FT%TZ) $name seed $s: inputs" >&2
			"$bin" reference-inputs "$c" "${sets[@]}" "${seed[@]}" --out "$d/inputs" >/dev/null
			touch "$d/inputs/done"
		fi
		if ! grep -qs '"heldout","metric":"loss"' "$d/moetrain/metrics.jsonl" || [ ! -f "$d/moetrain.done" ]; then
			echo "== $(date -u +%FT%TZ) $name seed $s: moetrain" >&2
			GOMAXPROCS=$THREADS "$bin" train "$c" "${sets[@]}" "${seed[@]}" --run-dir "$d/moetrain" --plain >"$d/moetrain.log" 2>&1
			touch "$d/moetrain.done"
		fi
		if [ ! -f "$d/torch.done" ]; then
			echo "== $(date -u +%FT%TZ) $name seed $s: torchref" >&2
			/usr/bin/python3 reference/torchref.py train --threads "$THREADS" --config "$d/inputs/config.json" \
				--weights "$d/inputs/init.safetensors" --batches "$d/inputs/batches.i32" \
				--eval-tokens "$d/inputs/heldout.i32" >"$d/torch.jsonl"
			touch "$d/torch.done"
		fi
		exec 8>&-
	done
done

/usr/bin/python3 - "$OUT" "$SEEDS" "${configs[@]}" <<'PY'
import json, os, statistics, sys
out, seeds, cfgs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
names = [os.path.splitext(os.path.basename(c))[0] for c in cfgs]
# The seeds whose runs all finished (with -r some may still be running).
done = [s for s in range(1, seeds + 1)
        if all(os.path.exists(f"{out}/{n}-seed-{s}/{impl}.done") for n in names for impl in ("moetrain", "torch"))]
if not done:
    sys.exit("crosscheck.sh: no seed has finished every model in both implementations yet")
if len(done) < seeds:
    print(f"Finished seeds: {done} of 1..{seeds}.")
    print()

def ours(d):
    v = None
    for line in open(f"{d}/moetrain/metrics.jsonl"):
        r = json.loads(line)
        if r.get("kind") == "eval" and r.get("task") == "heldout" and r.get("metric") == "loss":
            v = r["value"]
    return v

def theirs(d):
    v = None
    for line in open(f"{d}/torch.jsonl"):
        r = json.loads(line)
        v = r.get("val_loss", v)
    return v

def together(d, tol=1e-4):
    """The last step through which the training losses agree within tol
    (relative): moetrain logs the mean loss of each log interval, compared
    with the mean of the reference's per-step losses over the same steps."""
    step = {}
    for line in open(f"{d}/torch.jsonl"):
        r = json.loads(line)
        if "loss" in r:
            step[r["step"]] = r["loss"]
    last = 0
    for line in open(f"{d}/moetrain/metrics.jsonl"):
        r = json.loads(line)
        if r.get("kind") != "train":
            continue
        ref = [step[i] for i in range(last + 1, r["step"] + 1)]
        mean = sum(ref) / len(ref)
        if abs(r["loss"] - mean) > tol * abs(mean):
            return last
        last = r["step"]
    return last

loss = {(n, s, impl): f(f"{out}/{n}-seed-{s}") for n in names for s in done
        for impl, f in (("moetrain", ours), ("torchref", theirs))}
def spread(xs, sign=""):
    m = f"{statistics.mean(xs):{sign}.4f}"
    return f"{m} ± {statistics.stdev(xs):.4f}" if len(xs) > 1 else f"{m} (one seed)"

print("Held-out loss (nats per token), per seed:")
print()
print("| model | seed | moetrain | torchref | moetrain − torchref | training losses within 1e-4 through step |")
print("|---|---:|---:|---:|---:|---:|")
for n in names:
    for s in done:
        a, b = loss[n, s, "moetrain"], loss[n, s, "torchref"]
        print(f"| {n} | {s} | {a:.4f} | {b:.4f} | {a - b:+.4f} | {together(f'{out}/{n}-seed-{s}')} |")
print()
print(f"Gain over {names[0]} (its loss minus the model's), per seed:")
print()
print("| model | seed | gain moetrain | gain torchref | difference |")
print("|---|---:|---:|---:|---:|")
worst = 0.0
for n in names[1:]:
    for s in done:
        ga = loss[names[0], s, "moetrain"] - loss[n, s, "moetrain"]
        gb = loss[names[0], s, "torchref"] - loss[n, s, "torchref"]
        worst = max(worst, abs(ga - gb))
        print(f"| {n} | {s} | {ga:+.4f} | {gb:+.4f} | {ga - gb:+.4f} |")
print()
print("Spread over seeds (mean ± sample standard deviation):")
print()
print("| model | moetrain | torchref | gain moetrain | gain torchref |")
print("|---|---:|---:|---:|---:|")
for n in names:
    row = [f"| {n} "]
    for impl in ("moetrain", "torchref"):
        xs = [loss[n, s, impl] for s in done]
        row.append(f"| {spread(xs)} ")
    for impl in ("moetrain", "torchref"):
        gs = [loss[names[0], s, impl] - loss[n, s, impl] for s in done]
        row.append(f"| {spread(gs, '+')} ")
    print("".join(row) + "|")
print()
print(f"largest difference in gain between the implementations: {worst:.4f} nats")
PY
