#!/usr/bin/env bash
# Peak resident memory per MPI rank of `moetrain train` against the planner's
# per-rank estimate (`moetrain plan`, fp32 as moetrain trains), on a model
# whose weights and AdamW state dominate: 4 MoE layers of 32 routed experts
# of width 1024 at hidden 256 (about 102M parameters, 99% of them in routed
# experts), 2 steps of 4 × 64 tokens, micro-batches of one sequence, and the
# checkpoint written at the end; then the same layout resumes from that
# checkpoint (every rank reads its part), trains one more step and saves
# again, measured apart. Runs one process, data parallelism at 2 and 4
# ranks, and expert parallelism 2 and 4 (DP 1), every rank with
# GOMAXPROCS=1. Needs about 9 GB free (4 data-parallel ranks of 2 GB each).
#
#   scripts/dist-memory.sh              # prints a markdown table
#   RUNS="1,1 2,2 4,4" scripts/dist-memory.sh   # only some runs: ranks,EP
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 GOMAXPROCS=1
go build -o "$tmp/moetrain" ./cmd/moetrain
"$tmp/moetrain" prepare --out "$tmp/data" --include '*.go' --exclude '*_test.go' \
  --vocab 512 --train-bytes 200000 --val-fraction 0.1 code="$(go env GOROOT)/src/strings" >/dev/null 2>"$tmp/prepare.log" \
  || { cat "$tmp/prepare.log" >&2; exit 1; }
rm -rf "$tmp/data/tasks"
vocab=$(sed -n 's/.*"vocab_size": *\([0-9]*\).*/\1/p' "$tmp/data/manifest.json" | head -1)
cat >"$tmp/big-experts.yaml" <<YAML
model: {vocab_size: $vocab, hidden: 256, layers: 4, heads: 4, dense_width: 1024, ffn: gshard,
  routed_experts: 32, active_routed: 2, expert_width: 1024, balance: {expert_alpha: 0.01}}
data: {path: $tmp/data}
train: {tokens: 512, batch_size: 4, micro_batch_size: 1, seq_len: 64}
schedule: {max_lr: 0.001, warmup_tokens: 256, total_tokens: 768}
log: {every_tokens: 256}
eval: {tokens: 256}
YAML
# One rank's peak RSS (VmHWM, via GNU time) in KiB, in $tmp/rss-<run>-<rank>.
cat >"$tmp/rank.sh" <<'SH'
#!/bin/sh
exec /usr/bin/time -f "%M" -o "$RSS_PREFIX-${OMPI_COMM_WORLD_RANK:-0}" "$@"
SH
chmod +x "$tmp/rank.sh"
# The planner's per-process overhead: what a run of a tiny model peaks at
# (Go runtime, OpenBLAS, the binary), measured here.
sed -e 's/hidden: 256, layers: 4, heads: 4, dense_width: 1024/hidden: 32, layers: 2, heads: 2, dense_width: 64/' \
  -e 's/routed_experts: 32, active_routed: 2, expert_width: 1024/routed_experts: 8, active_routed: 2, expert_width: 16/' \
  "$tmp/big-experts.yaml" >"$tmp/tiny.yaml"
RSS_PREFIX="$tmp/rss-tiny" "$tmp/rank.sh" "$tmp/moetrain" train "$tmp/tiny.yaml" --run-dir "$tmp/tiny" --plain >/dev/null
overhead=$(cat "$tmp/rss-tiny-0")
echo "A tiny model's run peaks at $((overhead / 1024)) MiB: the planner's --overhead."
echo
echo "| ranks | DP × EP | rank | planner | peak RSS: train, save | peak RSS: resume, train, save | peak / planner |"
echo "|---|---|---|---|---|---|---|"
for run in ${RUNS:-1,1 2,1 4,1 2,2 4,4 4,2}; do
  set -- ${run/,/ }
  np=$1 ep=$2
  name="np$np-ep$ep"
  # 512 tokens (2 steps) and a checkpoint, then resumed to 768 (one step).
  for tokens in 512 768; do
    sets=(--set "model.expert_parallel=$ep" --set "train.tokens=$tokens")
    if [ "$np" = 1 ]; then
      RSS_PREFIX="$tmp/rss-$name-$tokens" "$tmp/rank.sh" "$tmp/moetrain" train "$tmp/big-experts.yaml" "${sets[@]}" --run-dir "$tmp/$name" --plain >/dev/null
    else
      mpirun -np "$np" --oversubscribe --bind-to none -x GOMAXPROCS -x RSS_PREFIX="$tmp/rss-$name-$tokens" \
        "$tmp/rank.sh" "$tmp/moetrain" train "$tmp/big-experts.yaml" "${sets[@]}" --run-dir "$tmp/$name" --plain >/dev/null
    fi
  done
  grep -q "resumed from" "$tmp/$name/train.log" || { echo "$name did not resume" >&2; exit 1; }
  plan=$("$tmp/moetrain" plan "$tmp/big-experts.yaml" --gpus "$np" --ep "$ep" --tflops 1 --overhead "${overhead}KiB" --json | sed -n 's/.*"total_bytes": *\([0-9]*\).*/\1/p' | head -1)
  for ((r = 0; r < np; r++)); do
    kib=$(cat "$tmp/rss-$name-512-$r")
    kib2=$(cat "$tmp/rss-$name-768-$r")
    awk -v np="$np" -v dp=$((np / ep)) -v ep="$ep" -v r="$r" -v plan="$plan" -v kib="$kib" -v kib2="$kib2" 'BEGIN {
      peak = kib > kib2 ? kib : kib2
      printf "| %d | %d × %d | %d | %.0f MiB | %.0f MiB | %.0f MiB | %.2f |\n", np, dp, ep, r, plan / 1048576, kib / 1024, kib2 / 1024, peak * 1024 / plan }'
  done
done
