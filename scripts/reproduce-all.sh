#!/bin/sh
# reproduce-all.sh reproduces the paper's validation comparisons at CPU scale
# (docs/RESULTS.md): Table 1's five models, the Figure 3 ladder and the
# shared:routed ratios, 3 init seeds each, 1,048,576 training tokens per run
# (36 runs), then the PyTorch peer cross-check. On the idle 2-core machine
# Table 1's 15 runs took 68.5 min (docs/RESULTS.md), so the three sweeps take
# about 3 h; the analyses of seed 1 (3 per MoE model, 1-3 min each) about
# 0.5 h, and the PyTorch peer (12 runs; one seed of 4 took 45 min) about
# 2.25 h: estimates from those measured times. Resumable (run it again):
#
#   nohup scripts/reproduce-all.sh > runs/reproduce-all.log 2>&1 &
set -eu
cd "$(dirname "$0")/.."
mkdir -p runs bin
go build -o bin/moetrain ./cmd/moetrain
for s in table1 ladder ratios; do
	MOETRAIN=bin/moetrain scripts/reproduce-sweep.sh "$s"
done
scripts/reproduce-torchref.sh
