#!/usr/bin/env bash
# Smoke test of the real CLI under Open MPI: `mpirun -np 2 moetrain train`
# on a tiny model and a dataset prepared from Go's own source must finish,
# write one checkpoint, and log the same losses as one process.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
go build -o "$tmp/moetrain" ./cmd/moetrain
"$tmp/moetrain" prepare --out "$tmp/data" --include '*.go' --exclude '*_test.go' \
  --vocab 512 --train-bytes 200000 --val-fraction 0.1 code="$(go env GOROOT)/src/strings" >/dev/null 2>"$tmp/prepare.log" \
  || { cat "$tmp/prepare.log" >&2; exit 1; }
rm -rf "$tmp/data/tasks" # task examples need a longer context than this model has
vocab=$(sed -n 's/.*"vocab_size": *\([0-9]*\).*/\1/p' "$tmp/data/manifest.json" | head -1)
cat >"$tmp/tiny.yaml" <<YAML
model: {vocab_size: $vocab, hidden: 32, layers: 2, heads: 2, dense_width: 64, ffn: deepseekmoe,
  shared_experts: 1, routed_experts: 8, active_routed: 2, expert_width: 16, balance: {expert_alpha: 0.01}}
data: {path: $tmp/data}
train: {tokens: 2048, batch_size: 4, seq_len: 32}
schedule: {max_lr: 0.003, warmup_tokens: 256}
log: {every_tokens: 128}
eval: {tokens: 256}
YAML
"$tmp/moetrain" train "$tmp/tiny.yaml" --run-dir "$tmp/one" --plain >/dev/null
mpirun -np 2 --oversubscribe --bind-to none "$tmp/moetrain" train "$tmp/tiny.yaml" --run-dir "$tmp/two" --plain >"$tmp/two.log"
grep -q "data parallel: 2 ranks" "$tmp/two/train.log"
loss() { grep '"kind":"train"' "$1/metrics.jsonl" | sed 's/.*"loss":\([^,]*\),.*/\1/'; }
paste <(loss "$tmp/one") <(loss "$tmp/two") | awk '
  { d = $1 - $2; if (d < 0) d = -d; if (d > 1e-5 * $1) bad++; n++ }
  END { if (n != 16 || bad) { print "mpi-smoke: " n " steps, " bad+0 " losses differ"; exit 1 } }'
echo "mpi-smoke: mpirun -np 2 moetrain train matches one process over 16 steps"
