#!/bin/sh
# reproduce-all.sh reproduces the paper's validation comparisons at CPU scale
# (docs/RESULTS.md): Table 1's five models, the Figure 3 ladder and the
# shared:routed ratios, 3 init seeds each, 1,048,576 training tokens per run
# (36 runs), then the PyTorch peer cross-check. On the idle 2-core machine
# Table 1's 15 runs took 68.5 min (docs/RESULTS.md), so the three sweeps take
# about 3 h, their analyses (3 per MoE run) about 1 h more, and the PyTorch
# peer (12 runs) about 1.5 h; resumable (run it again to continue):
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
