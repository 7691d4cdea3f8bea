#!/bin/sh
# reproduce-sweep.sh runs one sweep of configs/sweeps at CPU scale on the
# default KJV + Go-source dataset (datasets/kjv), then the expert analyses of
# its MoE runs. It is resumable: run it again after an interruption (or a
# reboot) and finished runs are skipped, interrupted ones continue from their
# checkpoints. Safe to run in the background:
#
#   nohup scripts/reproduce-sweep.sh table1 > runs/table1.log 2>&1 &
#
#   scripts/reproduce-sweep.sh SWEEP [moetrain sweep flags...]
#
# SWEEP is table1, ladder or ratios (configs/sweeps/SWEEP.yaml; the routing
# sweep runs in the regime: scripts/reproduce-regime.sh R). Results go to
# runs/SWEEP/: summary.md (mean ± std over seeds, orderings), compare.md,
# figures/, and RUN/analysis/ for the analyses. Env: MOETRAIN (a prebuilt
# binary), ANALYZE_TOKENS (held-out tokens per analysis point, 32768), ANALYZE_RUNS
# (a glob of the runs to analyse: '*_seed-1', seed 1 of every model; '*' for all).
set -eu
cd "$(dirname "$0")/.."
sweep=${1:?usage: scripts/reproduce-sweep.sh table1|ladder|ratios [sweep flags...]}
shift
moetrain=${MOETRAIN:-bin/moetrain}
if [ -z "${MOETRAIN:-}" ]; then
	mkdir -p bin
	go build -o "$moetrain" ./cmd/moetrain
fi
if [ ! -f datasets/kjv/manifest.json ]; then
	MOETRAIN=$moetrain scripts/prepare-default.sh datasets/kjv
fi
echo "== $(date -u +%FT%TZ) sweep $sweep (load average $(cut -d' ' -f1-3 /proc/loadavg))"
"$moetrain" sweep "configs/sweeps/$sweep.yaml" "$@"

# Expert analyses of every finished MoE run with a learned router (hash and
# dense models have no router to rank); each skipped if already written.
out=$(sed -n 's/^out: *//p' "configs/sweeps/$sweep.yaml")
prev=
for a in "$@"; do # an --out among the sweep flags moves the runs
	[ "$prev" = --out ] && out=$a
	case $a in --out=*) out=${a#--out=} ;; esac
	prev=$a
done
for d in "$out"/${ANALYZE_RUNS:-*_seed-1}/; do
	[ -f "$d/sweep-done.json" ] || continue
	grep -q '"model.ffn=dense"\|/dense.yaml\|/hash.yaml\|"model.router.expert_choice=true"' "$d/sweep-done.json" && continue
	for what in redundancy topk load; do
		[ -f "$d/analysis/analysis-$what.md" ] && continue
		echo "== $(date -u +%FT%TZ) analyze $d $what"
		"$moetrain" analyze "$d" --what "$what" --tokens "${ANALYZE_TOKENS:-32768}" >/dev/null
	done
done
echo "== $(date -u +%FT%TZ) done: $out/summary.md"
