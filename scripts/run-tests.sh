#!/usr/bin/env bash
# Runs the test suite in a network namespace of its own, so the interfaces
# the data-plane tests create can never touch the host's.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "make test needs root: the data-plane tests load BPF programs and create interfaces" >&2
	exit 1
fi
exec unshare --net -- sh -c 'ip link set lo up && swift test --skip-build "$@"' sh "$@"
