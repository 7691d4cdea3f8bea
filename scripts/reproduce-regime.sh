#!/bin/sh
# reproduce-regime.sh regenerates the results of docs/RESULTS.md in the
# regime of configs/regime (KJV prose only, a 384-token BPE, d=64, 4 layers,
# 600 steps of 16x128 tokens), in phases:
#
#   A  regime checks: Dense with 10 init seeds (seed noise), and seed 1 of every
#      Table-1 model (early routing collapse, tokens per activated parameter)
#   B  Table 1 + Dense x2/x4 with 3 init seeds (21 runs; the seed-1 runs of A
#      are reused), the compare table and figures
#   C  the Figure 3 ladder and shared:routed ratios (3 seeds), and the expert
#      analyses (redundancy, top-k, load) of seed 1 of DeepSeekMoE and GShard
#   R  the routing and balancing sweep (configs/sweeps/routing.yaml: 10 groups x
#      3 seeds); independent of B and C, so it can run beside them (e.g. with
#      GOMAXPROCS=1 in each of two shells on a 2-core machine)
#   S  why Hash beats Switch: the Switch routing probes
#      (configs/sweeps/regime-switch-routing.yaml, 11 groups x 3 seeds), GShard and
#      DeepSeekMoE with a checkpoint kept every 10% (regime-churn.yaml), the two
#      frozen probes' seed 1 with checkpoints kept, and the churn analysis of
#      each into churn/; `moetrain analyze --over-seeds churn --what churn`
#      prints the table
#
#   scripts/reproduce-regime.sh A|B|C|R|S|all
#
# Resumable: run the same command again after an interruption; finished runs
# are skipped and interrupted ones continue from their newest checkpoint. Safe
# in the background (nohup ... &). Env: RUNS, where datasets and runs go
# (default runs/regime; put it outside the work tree for long runs);
# MOETRAIN, a prebuilt binary (default: built from the checked-out commit
# into $RUNS/bin, named after the commit, so every run of a phase uses one
# binary); CONFIGS, the configs directory the sweeps read (default: the
# repository's; for long runs give a copy, so edits to the work tree cannot
# reach a sweep in progress); SWEEP_FLAGS, flags for every sweep (e.g.
# "--parallel 2" with GOMAXPROCS=1: two one-thread runs at a time).
set -eu
cd "$(dirname "$0")/.."
configs=$(cd "${CONFIGS:-configs}" && pwd)
phase=${1:?usage: scripts/reproduce-regime.sh A|B|C|R|S|all}
RUNS=${RUNS:-runs/regime}
mkdir -p "$RUNS/bin" "$RUNS/datasets"
if [ -z "${MOETRAIN:-}" ]; then
	MOETRAIN=$(cd "$RUNS" && pwd)/bin/moetrain-$(git rev-parse --short HEAD)
	[ -x "$MOETRAIN" ] || go build -o "$MOETRAIN" ./cmd/moetrain
fi
cd "$RUNS"
if [ ! -f datasets/kjv384/manifest.json ]; then
	command -v bible >/dev/null || { echo "reproduce-regime.sh: run apt-get install bible-kjv" >&2; exit 1; }
	# Prose only, so the held-out split (16% of the chapters: 367K tokens) comes
	# from the training distribution.
	bible "Gen1:1-Rev22:21" | "$MOETRAIN" prepare --out datasets/kjv384 --vocab 384 --seed 1 \
		--val-fraction 0.16 --doc-start kjv prose=-
fi
sweep() { # SWEEP [flags...]
	s=$1; shift
	echo "== $(date -u +%FT%TZ) sweep $s $* (load average $(cut -d' ' -f1-3 /proc/loadavg))"
	# shellcheck disable=SC2086 # SWEEP_FLAGS is a list of flags
	"$MOETRAIN" sweep "$configs/sweeps/$s.yaml" "$@" ${SWEEP_FLAGS:-}
}
analyze() { # RUN_DIR
	for what in redundancy topk load; do
		[ -f "$1/analysis/analysis-$what.md" ] && continue
		echo "== $(date -u +%FT%TZ) analyze $1 $what"
		"$MOETRAIN" analyze "$1" --what "$what" --tokens 65536 >/dev/null
	done
}
case $phase in
A | all)
	sweep regime-table1 --seeds 1
	sweep regime-dense-seeds
	;;
esac
case $phase in
B | all) sweep regime-table1 ;;
esac
case $phase in
C | all)
	sweep regime-ladder
	sweep regime-ratios
	analyze runs/regime-table1/deepseekmoe_seed-1
	analyze runs/regime-table1/gshard_seed-1
	;;
esac
case $phase in
R | all) sweep routing ;;
esac
case $phase in
S | all)
	sweep regime-switch-routing
	sweep regime-churn
	keep="--set checkpoint.every_tokens=122880 --set checkpoint.keep_every_tokens=122880 --set eval.every_tokens=614400 --set model.init_seed=1"
	# shellcheck disable=SC2086 # keep is a list of flags
	"$MOETRAIN" train "$configs/regime/switch.yaml" --run-dir runs/churn-extra/switch-freeze_seed-1 --plain $keep \
		--set model.router.freeze_after_tokens=245760 >runs/churn-extra-1.log 2>&1
	# shellcheck disable=SC2086
	"$MOETRAIN" train "$configs/regime/switch.yaml" --run-dir runs/churn-extra/switch-embed-freeze_seed-1 --plain $keep \
		--set model.router.input=embedding --set model.router.freeze_after_tokens=245760 >runs/churn-extra-2.log 2>&1
	for r in runs/regime-churn/*_seed-* runs/regime-switch-routing/switch_seed-* runs/regime-switch-routing/switch-embed*_seed-* runs/churn-extra/*_seed-1; do
		# only runs that kept their checkpoints (the others keep the last one)
		[ "$(ls "$r/checkpoints" | wc -l)" -ge 2 ] || continue
		[ -f "churn/$(basename "$r")/analysis-churn.csv" ] && continue
		echo "== $(date -u +%FT%TZ) analyze $r churn"
		"$MOETRAIN" analyze "$r" --what churn --tokens 65536 --out "churn/$(basename "$r")" >/dev/null
	done
	"$MOETRAIN" analyze --over-seeds churn --what churn >churn/summary.md
	;;
esac
echo "== $(date -u +%FT%TZ) phase $phase done in $(pwd)/runs"
