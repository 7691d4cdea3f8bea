#!/bin/sh
# install.sh installs the moetrain command with `go install ./cmd/moetrain`
# and says where it went and how to put that directory on PATH.
#
#   scripts/install.sh
#
# Needs Go 1.26.8 or newer (the go line of go.mod). Go 1.21 or newer fetches
# that toolchain by itself from the Go module proxy (GOTOOLCHAIN=auto).
# oneDNN or OpenBLAS (Debian: apt-get install libdnnl2 libopenblas0) is
# loaded at run time; the binary runs without them, on pure Go BLAS, and
# says so.
set -eu
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1; then
	echo "install.sh: no 'go' command; install Go $(sed -n 's/^go //p' go.mod) or newer from https://go.dev/dl/" >&2
	exit 1
fi
go install ./cmd/moetrain
bindir=$(go env GOBIN)
[ -n "$bindir" ] || bindir=$(go env GOPATH)/bin
echo "installed $bindir/moetrain ($(go version | cut -d' ' -f3))"
case ":$PATH:" in
*":$bindir:"*) ;;
*)
	echo "$bindir is not on your PATH; for this shell run:"
	echo "  export PATH=\"$bindir:\$PATH\""
	echo "(add that line to ~/.profile to keep it)"
	;;
esac
