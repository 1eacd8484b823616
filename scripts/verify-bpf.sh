#!/usr/bin/env bash
# Loads every built BPF object through the kernel verifier with bpftool and
# prints the tail of the log for any that fails. A developer's quick check;
# the test suite loads them through the Swift loader.
set -uo pipefail
cd "$(dirname "$0")/.."
mountpoint -q /sys/fs/bpf || mount -t bpf bpffs /sys/fs/bpf
rc=0
for o in build/bpf/*.o; do
	pin=/sys/fs/bpf/mzverify_$$_$(basename "$o" .o | tr . _)
	if bpftool prog loadall "$o" "$pin" >/tmp/mzverify.log 2>&1; then
		echo "ok   $o"
	else
		echo "FAIL $o"; grep -v '^Warning\|libbpf strict\|--legacy' /tmp/mzverify.log | tail -${TAIL:-12}; rc=1
	fi
	rm -rf "$pin" 2>/dev/null
done
exit $rc
