#!/usr/bin/env bash
# The test command of the README: vet, then every package's tests.
# Long work lives in benchmarks (go test -bench), not here.
set -euo pipefail
cd "$(dirname "$0")/.."
go vet ./...
# A stated peak, so the runs inside the tests quote MFU against it instead
# of measuring one each: packages run side by side, every measurement would
# be under load, be taken again at every launch and land in the user's
# cache. The tests of the measurement and its cache unset it.
export MOETRAIN_PEAK_GFLOPS=${MOETRAIN_PEAK_GFLOPS:-200}
go test -timeout 20m ./...
# Multi-process runs: the dist and train tests above start `mpirun -np 2`
# and `-np 4 --oversubscribe` themselves when Open MPI is installed
# (MOETRAIN_MPI_TESTS=1 makes its absence a failure). This step runs the
# real CLI under mpirun once, as a user would.
if command -v mpirun >/dev/null; then
  scripts/mpi-smoke.sh
elif [ "${MOETRAIN_MPI_TESTS:-}" = 1 ]; then
  echo "MOETRAIN_MPI_TESTS=1 but mpirun is not installed" >&2
  exit 1
fi
