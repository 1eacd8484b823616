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
# Testbeds the suites bring up are taken down by the suites themselves; a
# run that is interrupted (a signal, a timeout) cannot, so whatever testbed
# appeared during this run is taken down here, by its recorded pids and its
# own prefix, and nothing that was there before.
before=$(ls /run/mizar-testbed 2>/dev/null || true)
etcds_before=$(ls -d /tmp/mizar-etcd-* 2>/dev/null || true)
suite=
cleanup() {
	if [ -n "$suite" ] && kill -0 "$suite" 2>/dev/null; then
		kill "$suite" 2>/dev/null || true
		wait "$suite" 2>/dev/null || true
	fi
	for name in $(ls /run/mizar-testbed 2>/dev/null || true); do
		printf '%s\n' "$before" | grep -qx "$name" && continue
		.build/debug/mizar-testbed down --name "$name" >/dev/null 2>&1 || true
	done
	# The suites' etcds, by the pid each recorded, if it is still etcd.
	for dir in $(ls -d /tmp/mizar-etcd-* 2>/dev/null || true); do
		printf '%s\n' "$etcds_before" | grep -qx "$dir" && continue
		pid=$(cat "$dir/etcd.pid" 2>/dev/null || true)
		if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = etcd ]; then
			kill "$pid" 2>/dev/null || true
			sleep 0.2
		fi
		rm -rf "$dir"
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
unshare --net -- sh -c 'ip link set lo up && exec swift test --skip-build "$@"' sh "$@" &
suite=$!
wait "$suite"
