#!/usr/bin/env bash
# Training speed of moetrain against the PyTorch reference on the same
# models, side by side in one run: for each model in configs/bench,
# `moetrain bench` and reference/torchref.py bench (reference/README.md)
# run interleaved ROUNDS times each, same batch, sequence length and thread
# count, and the table of medians and ratios is printed (docs/BENCHMARKS.md).
#
# Usage: scripts/bench-vs-torch.sh [MODEL...]   (default: dense-small moe-small gshard-small)
# Env:   ROUNDS (5), STEPS (8 timed steps per run), BATCH (8), SEQ (256),
#        THREADS (2), OUT (keep raw JSON lines here).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5} STEPS=${STEPS:-8} BATCH=${BATCH:-8} SEQ=${SEQ:-256} THREADS=${THREADS:-2}
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(dense-small moe-small gshard-small)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
OUT=${OUT:-$tmp/raw.jsonl}
: >"$OUT"
go build -o "$tmp/moetrain" ./cmd/moetrain
for m in "${models[@]}"; do
	"$tmp/moetrain" reference-inputs "configs/bench/$m.yaml" --config-only --out "$tmp/$m"
done

echo "machine at start: $(scripts/machine.sh)" >&2
for r in $(seq 1 "$ROUNDS"); do
	for m in "${models[@]}"; do
		# Alternate which side goes first, so drift in the machine's load
		# does not favour one of them.
		for side in $([ $((r % 2)) = 1 ] && echo "go torch" || echo "torch go"); do
			if [ "$side" = go ]; then
				line=$(GOMAXPROCS=$THREADS "$tmp/moetrain" bench "configs/bench/$m.yaml" --json --breakdown=false \
					--steps "$STEPS" --batch "$BATCH" --seq "$SEQ")
			else
				line=$(/usr/bin/python3 reference/torchref.py bench --config "$tmp/$m/config.json" \
					--batch "$BATCH" --seq "$SEQ" --threads "$THREADS" --steps "$STEPS")
			fi
			echo "{\"round\": $r, \"model\": \"$m\", \"side\": \"$side\", \"load\": \"$(cut -d' ' -f1 /proc/loadavg)\", \"result\": $line}" >>"$OUT"
			echo "round $r $m $side: $(echo "$line" | /usr/bin/python3 -c 'import json,sys; print("%.0f tok/s" % json.load(sys.stdin)["tokens_per_s"])')" >&2
		done
	done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

/usr/bin/python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(xs): return statistics.median(xs) if xs else float("nan")
models = list(dict.fromkeys(r["model"] for r in rows))
go = {m: [r["result"] for r in rows if r["model"] == m and r["side"] == "go"] for m in models}
pt = {m: [r["result"] for r in rows if r["model"] == m and r["side"] == "torch"] for m in models}
kernel = next((g[0]["blas_kernel"] for g in go.values() if g), "?")
print(f"BLAS kernel: {kernel}; runs per side: {len(next(iter(go.values())))}; medians over runs")
print()
print("| model | moetrain tok/s | PyTorch tok/s | ratio | moetrain step ms | MFU | sgemm GFLOP/s | peak RSS MiB | estimate MiB | RSS/estimate |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
step = {}
for m in models:
    g, p = go[m], pt[m]
    gt, pt_ = med([x["tokens_per_s"] for x in g]), med([x["tokens_per_s"] for x in p])
    step[m] = (med([x["step_s"] for x in g]), med([x["step_s"] for x in p]))
    rss, est = med([x["peak_rss_bytes"] for x in g]), med([x["estimated_bytes"] for x in g])
    print(f"| {m} | {gt:.0f} | {pt_:.0f} | {gt/pt_:.2f}× | {1e3*step[m][0]:.0f} | {100*med([x['mfu'] for x in g]):.1f}% | "
          f"{med([x['sgemm_gflops'] for x in g]):.0f} | {rss/2**20:.0f} | {est/2**20:.0f} | {rss/est:.2f} |")
if "moe-small" in step and "gshard-small" in step:
    (dg, dp), (gg, gp) = step["moe-small"], step["gshard-small"]
    print()
    print(f"DeepSeekMoE step / GShard step: moetrain {dg/gg:.2f}×, PyTorch {dp/gp:.2f}×")
PY
