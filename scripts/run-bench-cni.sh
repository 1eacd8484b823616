#!/usr/bin/env bash
# mizar-cni ADD/DEL latency, exec to result, over 200 containers on a
# simulated 3-host cluster, with the plugin's start-up, where an ADD's time
# goes and the direct-provisioning baseline (bench/CNIBench). Everything in
# release; each run in a network namespace of its own. Argument: CONTAINERS.
# The benchmark runs REPS times (default 5), its output shown as it goes
# ("[rep N current] ..."). With BASELINE_TREE=/path/to/another/checkout,
# each repetition also runs that checkout's release build of the same
# benchmark (built there beforehand; run from there, so that it uses its own
# binaries and BPF objects), the two taking turns at going first.
# Printed at the end through bench/stats.py: per figure (p50 and p99 each a
# figure of its own) the median, spread=min..max and reps, the ratio to the
# baseline the benchmark names (per repetition, then their median and
# min..max) and, with a baseline tree, vs_base= (current over base,
# likewise) beside each figure, then the base's own figures as base.cni.*.
set -euo pipefail
cd "$(dirname "$0")/.."
exec bench/repeat.sh "transitd mizar-cni mizar-bench-cni" "$@"
