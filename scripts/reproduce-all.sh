#!/bin/sh
# reproduce-all.sh reproduces the paper's validation comparisons at CPU scale
# (docs/RESULTS.md): Table 1's five models, the Figure 3 ladder and the
# shared:routed ratios, 3 init seeds each, 1,048,576 training tokens per run
# (36 runs), then the PyTorch peer cross-check. About 3-5 hours on an idle
# 2-core machine; resumable (run it again to continue):
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
