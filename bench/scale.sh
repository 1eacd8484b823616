#!/bin/bash
# The scale simulation (issue 18), in a network namespace of its own: the
# simulated droplets listen on 0.0.0.0 there (every 127/8 address is local
# to its loopback), reachable from nothing else. Usage:
#   bench/scale.sh [calibrate|sweep|all]   (HOSTS="100 1000 10000" REPLICAS=1 for the sweep;
#                                           DROPLET_TTL=60, the lease of a droplet without a role)
#   bench/scale.sh endpoints               (HOSTS=1000 ENDPOINTS="0 100000 1000000")
# Builds in release unless BUILD=debug.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${BUILD:-release}
swift build -c "$config" --product mizar-bench-scale >&2
swift build -c "$config" --product transitd >&2
swift build -c "$config" --product mizar-operator >&2
swift build -c "$config" --product mizarctl >&2
make bpf >&2
# A network namespace of the benchmark's own (unshare: it goes when the
# benchmark ends); its loopback up, every 127/8 address local to it.
ulimit -n "$(ulimit -Hn)"
exec unshare --net sh -c 'ip link set lo up && exec "$0" "$1"' ".build/$config/mizar-bench-scale" "${1:-all}"
