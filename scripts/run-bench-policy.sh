#!/usr/bin/env bash
# Network policy through etcd, the operator and transitds on a simulated
# cluster of 10 hosts (bench/PolicyBench): policy create/delete -> enforced
# on the bouncers, p50 and p99, with 10, 100 and 1,000 policies in the
# cluster, and the hosts the operator calls per change. Built in release;
# each run in a network namespace of its own. Arguments pass through:
# LEVELS,.. SAMPLES. Runs REPS times (default 5) through bench/repeat.sh,
# which prints each figure's median, spread and ratio to its baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
exec bench/repeat.sh "transitd mizarctl mizar-bench-policy" "$@"
