#!/usr/bin/env bash
# mizar-cni ADD/DEL latency, exec to result, over 200 containers on a
# simulated 3-host cluster, with the plugin's start-up, where an ADD's time
# goes and the direct-provisioning baseline (bench/CNIBench). Everything in
# release; run in a network namespace of its own. Argument: CONTAINERS.
set -euo pipefail
cd "$(dirname "$0")/.."
for product in transitd mizar-cni mizar-bench-cni; do
	swift build -c release --product "$product"
done
bin=$(swift build -c release --show-bin-path)/mizar-bench-cni
exec unshare --net -- sh -c 'ip link set lo up && exec "$0" "$@"' "$bin" "$@"
