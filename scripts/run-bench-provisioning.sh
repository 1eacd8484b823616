#!/usr/bin/env bash
# Endpoint provisioning latency through etcd, the operator and transitds on
# simulated clusters of 3, 10 and 30 hosts, with 0 to 10,000 endpoints
# already provisioned (bench/ProvisioningBench). Built in release (the
# operator's and transitd's own speed is what is measured); each run in a
# network namespace of its own. Arguments pass through: HOSTS,.. LEVELS,..
# SAMPLES.
# The benchmark runs REPS times (default 5), its output shown as it goes
# ("[rep N current] ..."). With BASELINE_TREE=/path/to/another/checkout,
# each repetition also runs that checkout's release build of the same
# benchmark (built there beforehand; run from there, so that it uses its own
# binaries and BPF objects), the two taking turns at going first.
# Printed at the end through bench/stats.py: per figure (p50 and p99 each a
# figure of its own) the median, spread=min..max and reps, the ratio to the
# baseline the benchmark names (per repetition, then their median and
# min..max) and, with a baseline tree, vs_base= (current over base,
# likewise) beside each figure, then the base's own figures as base.provisioning.*.
set -euo pipefail
cd "$(dirname "$0")/.."
exec bench/repeat.sh "transitd mizar-bench-provisioning" "$@"
