#!/usr/bin/env bash
# The README's quickstart: install moetrain (scripts/install.sh), prepare the
# default dataset into datasets/kjv (the whole KJV as prose, the Go
# toolchain's source as code) and train a small DeepSeekMoE on it.
# Re-running it resumes the run where it stopped.
#
#   scripts/quickstart.sh [train flags...]     e.g. --set train.tokens=65536
#   Env: CONFIG (configs/small/deepseekmoe.yaml), RUN_DIR (runs/small-deepseekmoe)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/debian-packages.sh 'libdnnl2|libdnnl3' libopenblas0 bible-kjv
scripts/install.sh
bindir=$(go env GOBIN)
[ -n "$bindir" ] || bindir=$(go env GOPATH)/bin
[ -f datasets/kjv/manifest.json ] || MOETRAIN="$bindir/moetrain" scripts/prepare-default.sh datasets/kjv
exec "$bindir/moetrain" train "${CONFIG:-configs/small/deepseekmoe.yaml}" --run-dir "${RUN_DIR:-runs/small-deepseekmoe}" "$@"
