#!/usr/bin/env bash
# The per-packet cost of every data-plane path for each hook
# (bench/DataplaneBench), built in release, each run in a network namespace
# of its own (it creates veth pairs for arrival interfaces). The benchmark
# runs REPS times (default 5) through bench/repeat.sh: every figure is
# printed as its median with spread=min..max, and each path's ratio to the
# same hook's pass-through program as the median and min..max of the
# per-repetition ratios. With BASELINE_TREE=/path/to/another/checkout each
# repetition also runs that checkout's release build (with its own BPF
# objects), the two taking turns at going first, and every figure gets
# vs_base=. Figures are printed, never asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
exec bench/repeat.sh mizar-bench-dataplane build/bpf
