#!/bin/sh
# reproduce-torchref.sh is the PyTorch peer cross-check of Table 1: the same
# model shapes as configs/small (d=128, 4 layers, 4 heads, f=344; Dense,
# Switch 16×f top-1, GShard 16×f top-2 renormalised, DeepSeekMoE 1+63×f/4
# top-7) trained by torchref.py on KJV bytes (vocab 256; the tool has no hash
# routing), 3 seeds, 512 steps of 16×128 = 1,048,576 tokens each, the same
# byte order for every model and seed. Prints held-out loss per byte, mean ±
# std over seeds. Resumable per run (finished runs are kept in runs/torchref).
#
#   scripts/reproduce-torchref.sh            Env: STEPS (512), SEEDS ("1 2 3"), SHARED (../shared)
set -eu
cd "$(dirname "$0")/.."
STEPS=${STEPS:-512} SEEDS=${SEEDS:-1 2 3} SHARED=${SHARED:-../shared}
out=runs/torchref
mkdir -p "$out"
[ -f "$out/kjv.txt" ] || bible "Gen1:1-Rev22:21" > "$out/kjv.txt"
common='"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4, "vocab_size": 256, "intermediate_size": 344, "rms_norm_eps": 1e-06, "rope_theta": 10000, "initializer_range": 0.006, "first_k_dense_replace": 0, "moe_layer_freq": 1, "aux_loss_alpha": 0.01, "seq_aux": true'
echo "{$common, \"n_routed_experts\": 0}" > "$out/dense.json"
echo "{$common, \"n_routed_experts\": 16, \"n_shared_experts\": 0, \"num_experts_per_tok\": 1, \"moe_intermediate_size\": 344, \"norm_topk_prob\": false}" > "$out/switch.json"
echo "{$common, \"n_routed_experts\": 16, \"n_shared_experts\": 0, \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 344, \"norm_topk_prob\": true}" > "$out/gshard.json"
echo "{$common, \"n_routed_experts\": 63, \"n_shared_experts\": 1, \"num_experts_per_tok\": 7, \"moe_intermediate_size\": 86, \"norm_topk_prob\": false}" > "$out/deepseekmoe.json"
for m in dense switch gshard deepseekmoe; do
	for s in $SEEDS; do
		f="$out/$m-seed-$s.jsonl"
		if [ -f "$f" ] && grep -q "\"step\": $STEPS," "$f"; then continue; fi
		echo "== $(date -u +%FT%TZ) torchref $m seed $s" >&2
		/usr/bin/python3 "$SHARED/tools/torchref.py" train --config "$out/$m.json" --text "$out/kjv.txt" \
			--steps "$STEPS" --batch 16 --seq 128 --lr 2e-3 --eval-every 128 --threads 2 --seed "$s" > "$f.tmp"
		mv "$f.tmp" "$f"
	done
done
/usr/bin/python3 - "$out" $SEEDS <<'PY'
import json, statistics, sys
out, seeds = sys.argv[1], sys.argv[2:]
print("| model (torchref, KJV bytes) | seeds | held-out loss/byte (mean ± std) |")
print("|---|---:|---:|")
for m in ["dense", "switch", "gshard", "deepseekmoe"]:
    v = [json.loads(open(f"{out}/{m}-seed-{s}.jsonl").read().splitlines()[-1])["val_loss"] for s in seeds]
    sd = statistics.stdev(v) if len(v) > 1 else float("nan")
    print(f"| {m} | {len(v)} | {statistics.mean(v):.4f} ± {sd:.4f} |")
PY
