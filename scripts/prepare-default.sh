#!/bin/sh
# prepare-default.sh builds moetrain's default dataset: the whole King James
# Bible (prose, one document per chapter: 1,189) and the Go toolchain's own
# source (code, one document per non-test .go file outside testdata), with
# an 8K byte-level BPE tokenizer (the paper's validation vocab).
#
#   scripts/prepare-default.sh [OUT] [extra prepare flags...]
#
# OUT defaults to datasets/kjv, the path the shipped configs read. Needs
# `bible` (apt-get install bible-kjv) and the Go source under
# $(go env GOROOT)/src. Extra flags (e.g. --force,
# --vocab 4096) go to `moetrain prepare`. Takes a few seconds.
set -eu

out=${1:-datasets/kjv}
[ $# -gt 0 ] && shift

if ! command -v bible >/dev/null 2>&1; then
	echo "prepare-default.sh: the 'bible' command is missing; run: apt-get install bible-kjv" >&2
	exit 1
fi
goroot=$(go env GOROOT)
if [ ! -d "$goroot/src" ]; then
	echo "prepare-default.sh: no Go source at $goroot/src" >&2
	exit 1
fi

moetrain=${MOETRAIN:-}
if [ -z "$moetrain" ]; then
	moetrain=$(mktemp -d)/moetrain
	go build -o "$moetrain" ./cmd/moetrain
fi

bible "Gen1:1-Rev22:21" | "$moetrain" prepare --out "$out" --vocab 8192 --seed 1 --val-fraction 0.01 \
	--doc-start kjv --include '*.go' --exclude '*_test.go' --exclude testdata \
	"$@" prose=- code="$goroot/src"
"$moetrain" data inspect "$out" --sample 0 | head -16
