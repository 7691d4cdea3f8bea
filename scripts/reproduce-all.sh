#!/bin/sh
# reproduce-all.sh reproduces the paper's validation comparisons at CPU scale
# (docs/RESULTS.md): Table 1's five models, the Figure 3 ladder and the
# shared:routed ratios, 3 init seeds each, 1,048,576 training tokens per run
# (36 runs), then the PyTorch cross-check (scripts/crosscheck.sh). On the idle 2-core machine
# Table 1's 15 runs took 68.5 min (docs/RESULTS.md), so the three sweeps take
# about 3 h; the analyses of seed 1 (3 per MoE model, 1-3 min each) about
# 0.5 h, and the cross-check (4 models × 3 seeds, each trained by moetrain
# and by the PyTorch reference) several hours more. Resumable (run it again):
#
#   nohup scripts/reproduce-all.sh > runs/reproduce-all.log 2>&1 &
set -eu
cd "$(dirname "$0")/.."
mkdir -p runs bin
go build -o bin/moetrain ./cmd/moetrain
for s in table1 ladder ratios; do
	MOETRAIN=bin/moetrain scripts/reproduce-sweep.sh "$s"
done
scripts/crosscheck.sh -n 3 configs/small/dense.yaml configs/small/switch.yaml configs/small/gshard.yaml configs/small/deepseekmoe.yaml
