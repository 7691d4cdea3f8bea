#!/usr/bin/env bash
# Training speed of two or more git revisions of moetrain on the same
# models, interleaved in one run: each revision is exported (git archive)
# and built with a small step driver (2 warm-up and STEPS timed training
# steps through bench.NewStepper, no peak probe); the drivers then run in
# turn ROUNDS times per model, rotating which goes first. Each run reports
# the loss after its steps (equal losses mean bit-identical training), the
# CPU time (user + system, all threads) and the wall time per step. On a
# machine shared with other jobs the wall time follows the load; CPU time
# per step (the work done) is the steadier figure, and the ratios of the
# medians are what docs/BENCHMARKS.md quotes.
#
# Usage: scripts/bench-revs.sh REV... [-- MODEL...]   (default models: sci-dense sci-moe)
# Env:   ROUNDS (5), STEPS (8), OUT (keep the raw lines here), CONFIGS (the
#        directory of MODEL.yaml, default configs/bench: older revisions may
#        not read the current files).
set -euo pipefail
cd "$(dirname "$0")/.."
revs=() models=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do revs+=("$1"); shift; done
[ $# -gt 0 ] && shift
models=("$@")
[ ${#revs[@]} -ge 1 ] || { echo "usage: $0 REV... [-- MODEL...]" >&2; exit 2; }
[ ${#models[@]} -gt 0 ] || models=(sci-dense sci-moe)
ROUNDS=${ROUNDS:-5} STEPS=${STEPS:-8} CONFIGS=${CONFIGS:-configs/bench}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
OUT=${OUT:-$tmp/raw.txt}
: >"$OUT"

for i in "${!revs[@]}"; do
	src="$tmp/src$i"
	mkdir -p "$src"
	git archive "${revs[$i]}" | tar -x -C "$src"
	mkdir -p "$src/cmd/stepdriver"
	cat >"$src/cmd/stepdriver/main.go" <<'GO'
package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/moetrain/moetrain/bench"
	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/internal/blas"
)

func cpu() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func main() {
	cfg, err := configs.Load(os.Args[1], nil)
	if err != nil {
		panic(err)
	}
	n, _ := strconv.Atoi(os.Args[2])
	if _, err := blas.Init(); err != nil {
		panic(err)
	}
	s, err := bench.NewStepper(cfg, 0, 0, 1)
	if err != nil {
		panic(err)
	}
	var loss float64
	var c0 time.Duration
	var w0 time.Time
	for i := range n + 2 {
		if i == 2 {
			c0, w0 = cpu(), time.Now()
		}
		r, err := s.Step()
		if err != nil {
			panic(err)
		}
		loss = r.Loss
	}
	fmt.Printf("%.17g %.2f %.2f\n", loss, float64((cpu()-c0).Microseconds())/1e3/float64(n), float64(time.Since(w0).Microseconds())/1e3/float64(n))
}
GO
	(cd "$src" && CGO_ENABLED=0 go build -o "$tmp/driver$i" ./cmd/stepdriver)
done

echo "machine at start: $(scripts/machine.sh)" >&2
n=${#revs[@]}
for r in $(seq 1 "$ROUNDS"); do
	for m in "${models[@]}"; do
		for j in $(seq 0 $((n - 1))); do
			i=$(((r + j) % n))
			echo "${revs[$i]} $m $("$tmp/driver$i" "$CONFIGS/$m.yaml" "$STEPS")" >>"$OUT"
		done
	done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$OUT" "${revs[@]}" <<'PY'
import statistics, sys
raw, revs = sys.argv[1], sys.argv[2:]
runs = {}
for line in open(raw):
    rev, model, loss, cpu, wall = line.split()
    runs.setdefault((model, rev), []).append((float(loss), float(cpu), float(wall)))
models = sorted({m for m, _ in runs}, key=lambda m: list(runs).index((m, revs[0])))
print("| model | revision | runs | CPU ms/step (median) | wall ms/step (median) | speed-up vs %s (CPU time) | loss after the steps |" % revs[0])
print("|---|---|---:|---:|---:|---:|---|")
for m in models:
    base = statistics.median(c for _, c, _ in runs[(m, revs[0])])
    for rev in revs:
        rs = runs[(m, rev)]
        cpu = statistics.median(c for _, c, _ in rs)
        wall = statistics.median(w for _, _, w in rs)
        losses = sorted({"%.9g" % l for l, _, _ in rs})
        print(f"| {m} | {rev} | {len(rs)} | {cpu:.1f} | {wall:.1f} | {base / cpu:.2f}× | {', '.join(losses)} |")
PY
