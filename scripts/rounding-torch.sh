#!/usr/bin/env bash
# rounding-torch.sh tells float32 rounding from a real difference between
# moetrain and the PyTorch reference when their training losses drift apart.
# From the same initial weights on the same batches it trains:
#   moetrain32  moetrain (float32)
#   torch32     the reference in float32
#   torch64     the reference in float64 (the float32 weights load exactly)
#   torch32ulp  the reference in float32 from the initial weights moved by one
#               float32 ulp each (away from zero)
# and prints, per step, each run's loss minus torch64's (torch32ulp's minus
# torch32's). If moetrain32 − torch64 is no larger than torch32 − torch64
# and torch32ulp − torch32, the drift is rounding amplified by the run, not
# a difference of arithmetic; a real difference shows as moetrain32 alone
# drifting from torch64.
#
# Usage: scripts/rounding-torch.sh [-o OUT] [--set key=value]... CONFIG
#   (log.every_tokens is set to one step so moetrain logs every step.)
# Env: THREADS (1): GOMAXPROCS and PyTorch threads. Finished runs in OUT
# (default runs/rounding) are not repeated.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=runs/rounding THREADS=${THREADS:-1}
sets=() config=""
while [ $# -gt 0 ]; do
	case "$1" in
	-o) OUT=$2; shift 2 ;;
	--set) sets+=(--set "$2"); shift 2 ;;
	-h|--help) sed -n '2,19p' "$0"; exit 0 ;;
	-*) echo "rounding-torch.sh: unknown flag $1" >&2; exit 2 ;;
	*) config=$1; shift ;;
	esac
done
[ -n "$config" ] || { echo "rounding-torch.sh: give a config (see --help)" >&2; exit 2; }
/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "rounding-torch.sh: /usr/bin/python3 cannot import torch: install Debian's python3-torch" >&2; exit 1; }
mkdir -p "$OUT"
bin="$OUT/moetrain"
go build -o "$bin" ./cmd/moetrain
if [ ! -f "$OUT/inputs/done" ]; then
	"$bin" reference-inputs "$config" "${sets[@]}" --out "$OUT/inputs" >/dev/null
	# The same weights, each moved by one float32 ulp away from zero.
	/usr/bin/python3 - "$OUT/inputs" <<'PY'
import importlib.util, sys, torch
d = sys.argv[1]
spec = importlib.util.spec_from_file_location("torchref", "reference/torchref.py")
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)
w = ref.load_safetensors(f"{d}/init.safetensors")
ref.save_safetensors(f"{d}/init-ulp.safetensors",
                     {k: torch.nextafter(v, v.sign() * float("inf")) if v.is_floating_point() else v for k, v in w.items()})
PY
	touch "$OUT/inputs/done"
fi
# One metrics line per step (batch_size × seq_len tokens) from moetrain.
step=$(/usr/bin/python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["train"]; print(t["batch_size"]*t["seq_len"])' "$OUT/inputs/config.json")
if [ ! -f "$OUT/moetrain32.done" ]; then
	echo "== $(date -u +%FT%TZ) moetrain32" >&2
	rm -rf "$OUT/moetrain32"
	GOMAXPROCS=$THREADS "$bin" train "$config" "${sets[@]}" --set "log.every_tokens=$step" --run-dir "$OUT/moetrain32" --plain >"$OUT/moetrain32.log" 2>&1
	touch "$OUT/moetrain32.done"
fi
for run in torch32:float32:init torch64:float64:init torch32ulp:float32:init-ulp; do
	IFS=: read -r name dtype weights <<<"$run"
	[ -f "$OUT/$name.done" ] && continue
	echo "== $(date -u +%FT%TZ) $name" >&2
	/usr/bin/python3 reference/torchref.py train --threads "$THREADS" --dtype "$dtype" --config "$OUT/inputs/config.json" \
		--weights "$OUT/inputs/$weights.safetensors" --batches "$OUT/inputs/batches.i32" \
		--eval-tokens "$OUT/inputs/heldout.i32" >"$OUT/$name.jsonl"
	touch "$OUT/$name.done"
done

/usr/bin/python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]

def losses(path):
    """Training loss per step and the final held-out loss ("val")."""
    r = {}
    for line in open(path):
        x = json.loads(line)
        if x.get("kind", "train") == "train" and "loss" in x:
            r[x["step"]] = x["loss"]
        if x.get("task") == "heldout" and x.get("metric") == "loss":
            r["val"] = x["value"]
        if "val_loss" in x:
            r["val"] = x["val_loss"]
    return r

m = losses(f"{out}/moetrain32/metrics.jsonl")
t32, t64, ulp = (losses(f"{out}/{n}.jsonl") for n in ("torch32", "torch64", "torch32ulp"))
steps = sorted(k for k in t64 if k != "val")
every = 4 if len(steps) <= 64 else len(steps) // 16
shown = sorted({s for s in steps if s == 1 or s % every == 0 or s == steps[-1]})
print("| step | torch64 loss | moetrain32 − torch64 | torch32 − torch64 | torch32ulp − torch32 |")
print("|---:|---:|---:|---:|---:|")
for s in shown + ["val"]:
    name = "held-out" if s == "val" else s
    print(f"| {name} | {t64[s]:.6f} | {m[s] - t64[s]:+.2e} | {t32[s] - t64[s]:+.2e} | {ulp[s] - t32[s]:+.2e} |")
worst = lambda a, b: max(abs(a[s] - b[s]) for s in steps)
print()
print(f"largest per-step |difference|: moetrain32 − torch64 {worst(m, t64):.2e}, "
      f"torch32 − torch64 {worst(t32, t64):.2e}, torch32ulp − torch32 {worst(ulp, t32):.2e}")
PY
