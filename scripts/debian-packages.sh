#!/usr/bin/env bash
# Installs the named Debian packages that are not installed yet, as root on
# a machine with apt-get (elsewhere it does nothing). A name written a|b is
# the first of a, b that this Debian release has: oneDNN 2.x is libdnnl2
# (Debian 12), oneDNN 3.x libdnnl3.
#
#   scripts/debian-packages.sh 'libdnnl2|libdnnl3' libopenblas0 bible-kjv
set -euo pipefail
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  exit 0
fi
need=()
for spec in "$@"; do
  have=""
  for p in ${spec//|/ }; do dpkg -s "$p" >/dev/null 2>&1 && have=$p; done
  [ -n "$have" ] || need+=("$spec")
done
[ ${#need[@]} -gt 0 ] || exit 0
apt-get update -qq
pkgs=()
for spec in "${need[@]}"; do
  pick=""
  for p in ${spec//|/ }; do
    if [ -n "$(apt-cache policy "$p" 2>/dev/null | sed -n 's/^ *Candidate: //p' | grep -v '(none)')" ]; then pick=$p; break; fi
  done
  [ -n "$pick" ] || { echo "debian-packages.sh: this release has none of: $spec" >&2; exit 1; }
  pkgs+=("$pick")
done
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
