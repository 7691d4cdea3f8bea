#!/bin/sh
# collapse-probes.sh: short runs that explain the early routing collapse of the
# regime (docs/RESULTS.md, "Why routing collapses early").
#
# Every probe is a learned router of configs/regime (Switch, GShard,
# DeepSeekMoE) trained for the regime's first 262,144 tokens (128 steps of
# 16x128) on the regime's lr curve (schedule.total_tokens stays the full
# run's 1,228,800, so warmup and decay points are the regime's), with one
# factor changed by --set. Routing health is logged every step; the only
# evaluation is the final one, on 65,536 held-out tokens. The baseline and
# init_std runs also keep a checkpoint every 8 steps for
# scripts/collapse-hidden.py.
#
#   scripts/collapse-probes.sh DIR        run the probes missing from DIR/runs, then the table
#   scripts/collapse-probes.sh DIR table  only the table (scripts/routing-collapse.py --probes)
#
# Resumable: finished probes are skipped, an interrupted one continues from its
# newest checkpoint. Env: MOETRAIN, a prebuilt binary (default: built from the
# checked-out commit into DIR/bin). Runs with GOMAXPROCS=1 unless set.
set -eu
cd "$(dirname "$0")/.."
repo=$(pwd)
dir=${1:?usage: scripts/collapse-probes.sh DIR [table]}
mkdir -p "$dir/bin" "$dir/datasets" "$dir/runs"
dir=$(cd "$dir" && pwd)
if [ "${2:-}" = table ]; then
	exec python3 "$repo/scripts/routing-collapse.py" --probes "$dir/runs"
fi
export GOMAXPROCS=${GOMAXPROCS:-1}
if [ -z "${MOETRAIN:-}" ]; then
	MOETRAIN=$dir/bin/moetrain-$(git rev-parse --short HEAD)
	[ -x "$MOETRAIN" ] || go build -o "$MOETRAIN" ./cmd/moetrain
fi
cd "$dir"
if [ ! -f datasets/kjv384/manifest.json ]; then
	command -v bible >/dev/null || { echo "collapse-probes.sh: run apt-get install bible-kjv" >&2; exit 1; }
	bible "Gen1:1-Rev22:21" | "$MOETRAIN" prepare --out datasets/kjv384 --vocab 384 --seed 1 \
		--val-fraction 0.16 --doc-start kjv prose=-
fi

# probe NAME MODEL [key=value...]: MODEL is a configs/regime file (switch,
# gshard, deepseekmoe); the run is runs/NAME.
probe() {
	name=$1 model=$2
	shift 2
	[ -f "runs/$name/done" ] && return 0
	echo "== $(date -u +%FT%TZ) $name ($model $*) load $(cut -d' ' -f1-3 /proc/loadavg)"
	sets="--set train.tokens=262144 --set schedule.total_tokens=1228800 --set eval.every_tokens=0 --set eval.tokens=65536 --set eval.tasks=[last_word]"
	sets="$sets --set log.every_tokens=2048 --set checkpoint.every_tokens=65536 --set checkpoint.keep_last=1"
	for kv in "$@"; do sets="$sets --set $kv"; done
	# shellcheck disable=SC2086 # $sets is a list of words by construction
	"$MOETRAIN" train "$repo/configs/regime/$model.yaml" --run-dir "runs/$name" --plain $sets >"runs/$name.log" 2>&1 ||
		{ echo "probe $name failed: see $dir/runs/$name.log" >&2; exit 1; }
	touch "runs/$name/done"
}

# The regime itself, with checkpoints every 8 steps for the hidden-state measurement.
for m in switch gshard deepseekmoe; do
	probe "$m-base" "$m" checkpoint.every_tokens=16384 checkpoint.keep_last=16
done
# One factor at a time, every learned router.
for m in switch gshard deepseekmoe; do
	probe "$m-alpha-0" "$m" model.balance.expert_alpha=0
	probe "$m-alpha-0.1" "$m" model.balance.expert_alpha=0.1
	probe "$m-bias-0.001" "$m" model.router.bias_rate=0.001
	probe "$m-lr-1e-3" "$m" schedule.max_lr=1e-3
	probe "$m-warmup-32" "$m" schedule.warmup_tokens=65536
	probe "$m-global-scope" "$m" model.balance.per_sequence=false
	probe "$m-seed-2" "$m" model.init_seed=2
done
# Fewer factors on the two extremes (Switch collapses most, DeepSeekMoE is the paper's).
for m in switch deepseekmoe; do
	probe "$m-batch-8" "$m" train.batch_size=8
	probe "$m-batch-32" "$m" train.batch_size=32 train.micro_batch_size=16
	# (checkpoints every 8 steps: scripts/collapse-hidden.py measures these too)
	probe "$m-init-0.02" "$m" model.init_std=0.02 checkpoint.every_tokens=16384 checkpoint.keep_last=16
	probe "$m-init-0.002" "$m" model.init_std=0.002 checkpoint.every_tokens=16384 checkpoint.keep_last=16
done
echo "== $(date -u +%FT%TZ) all probes done"
python3 "$repo/scripts/routing-collapse.py" --probes "$dir/runs"
