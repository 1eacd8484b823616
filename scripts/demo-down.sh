#!/usr/bin/env bash
# Removes what `make demo` made: its operator and etcd (by their recorded
# pids, after checking what they are), its endpoint namespaces, the testbed.
set -uo pipefail
cd "$(dirname "$0")/.."
run=/run/mizar-demo
stop() { # pidfile program
	local pid
	pid=$(cat "$1" 2>/dev/null) || return 0
	# The binary may have been rebuilt since it started: its exe then reads
	# "NAME (deleted)".
	if [ -n "$pid" ] && [ "$(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)" " (deleted)")" = "$2" ]; then
		kill "$pid" && for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null
		echo "stopped $2 ($pid)"
	fi
	rm -f "$1"
}
stop "$run/operator.pid" mizar-operator
for pidfile in "$run"/etcd*.pid; do stop "$pidfile" etcd; done
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^demo-e-'); do
	ip netns del "$ns" && echo "removed netns $ns"
done
"$(swift build --show-bin-path)/mizar-testbed" down --name demo
rm -rf "$run"
