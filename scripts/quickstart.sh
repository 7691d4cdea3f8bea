#!/usr/bin/env bash
# The README's main job: prepare the default dataset (the whole KJV as prose,
# the Go toolchain's source as code) and train a small DeepSeekMoE on it.
# Re-running it resumes the run where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  need=""
  for p in libopenblas0 bible-kjv; do dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"; done
  if [ -n "$need" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
  fi
fi
go build -o bin/moetrain ./cmd/moetrain
[ -f datasets/kjv/manifest.json ] || MOETRAIN=bin/moetrain scripts/prepare-default.sh datasets/kjv
exec bin/moetrain train "${CONFIG:-configs/small/deepseekmoe.yaml}" --run-dir "${RUN_DIR:-runs/small-deepseekmoe}" "$@"
