#!/usr/bin/env bash
# Runs the test suite in a network namespace of its own, so the interfaces
# the data-plane tests create can never touch the host's.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "make test needs root: the data-plane tests load BPF programs and create interfaces" >&2
	exit 1
fi
# The netlink shim's own C test, then the Swift suites (which include the
# end-to-end tests on a simulated cluster of namespaces).
mkdir -p build
gcc -Wall -Werror -O2 -I Sources/CNetlink/include Sources/CNetlink/netlink.c Tests/netlink-c/test_netlink.c \
	-lpthread -o build/test_netlink
unshare --net build/test_netlink | tail -1
exec unshare --net -- sh -c 'ip link set lo up && swift test --skip-build "$@"' sh "$@"
