#!/usr/bin/env bash
# The test command of the README: vet, then every package's tests.
# Long work lives in benchmarks (go test -bench), not here.
set -euo pipefail
cd "$(dirname "$0")/.."
go vet ./...
go test -timeout 20m ./...
