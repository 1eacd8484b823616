#!/usr/bin/env bash
# Runs the data-plane benchmark in a network namespace of its own (it creates
# veth pairs for arrival interfaces). Figures are printed, never asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(swift build --product mizar-bench-dataplane --show-bin-path)/mizar-bench-dataplane
exec unshare --net -- "$bin" build/bpf
