#!/usr/bin/env bash
# Endpoint provisioning latency through etcd, the operator and transitds on
# simulated clusters of 3, 10 and 30 hosts, with 0 to 10,000 endpoints
# already provisioned (bench/ProvisioningBench). Built in release (the
# operator's and transitd's own speed is what is measured); run in a network
# namespace of its own. Arguments pass through: HOSTS,.. LEVELS,.. SAMPLES.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product transitd
swift build -c release --product mizar-bench-provisioning
bin=$(swift build -c release --show-bin-path)/mizar-bench-provisioning
exec unshare --net -- sh -c 'ip link set lo up && exec "$0" "$@"' "$bin" "$@"
