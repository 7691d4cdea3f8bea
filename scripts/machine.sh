#!/usr/bin/env bash
# Prints the machine a benchmark ran on, for its log: cores, CPU model name
# with its family and model numbers (a virtual machine may name a Zen 4 and
# a Zen 5 both "AMD EPYC", and their float32 peaks differ by 2x), and the
# load average now.
set -euo pipefail
field() { grep -m1 "^$1[[:space:]]*:" /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'; }
echo "$(nproc) cores, $(field 'model name') (family $(field 'cpu family'), model $(field model)), load average $(cut -d' ' -f1-3 /proc/loadavg)"
