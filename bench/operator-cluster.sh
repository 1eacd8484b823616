# Sourced by bench/service.sh and bench/egress.sh: a 3-host testbed with a
# management port, its own etcd (mutual TLS, the testbed's PKI) and
# mizar-operator, and the helpers to drive it. The caller sets BENCH (its
# path, for messages), P (the testbed name: the prefix of everything made),
# and may set PORT, NET and define bench_cleanup (more to remove on exit).
# Every process started here is recorded and stopped by its pid on exit;
# the testbed and the namespaces in NS are removed.
BIN=${BIN:-$(swift build --show-bin-path)}
MIZARCTL=$BIN/mizarctl
TESTBED=$BIN/mizar-testbed
PORT=${ETCD_PORT:-${PORT:-23890}}   # etcd (the demo uses 23790)
NET=${UNDERLAY_NET:-${NET:-9}}      # underlay 172.30.NET.0/24 (the demo and the tests use 0 and 1)
MGMT=172.30.$NET.254
RUN=/tmp/$P.run
CL=/tmp/$P.connect_latency
export MIZAR_ETCD=127.0.0.1:$PORT

# Refuse rather than collide with something already there.
if ss -Hltn "sport = :$PORT or sport = :$((PORT + 1))" | grep -q .; then
	echo "$BENCH: port $PORT or $((PORT + 1)) is in use (ETCD_PORT=... to pick another)" >&2; exit 1
fi
if ip -o -4 addr show | grep -q " 172\.30\.$NET\."; then
	echo "$BENCH: 172.30.$NET.0/24 is in use here (UNDERLAY_NET=... to pick another)" >&2; exit 1
fi

PIDS=()   # "pid program" of everything started here
NS=()
started=0
stop() { # pid program: only if that pid still runs that program
	local pid=$1 prog=$2 exe
	exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 0
	exe=${exe% (deleted)}   # the binary may have been rebuilt under it
	[ "$(basename "$exe")" = "$prog" ] || return 0
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}
cleanup() {
	local rc=$? i
	set +e
	if [ "$rc" != 0 ] && [ -d "$RUN" ]; then   # failed: show what the control plane said
		echo "== failed ($rc); the last lines of the operator's and etcd's logs, then the objects" >&2
		tail -n 15 "$RUN/operator.log" "$RUN/etcd.log" >&2
		for k in droplets vpcs subnets endpoints; do ctl get "$k" -o wide >&2; done
	fi
	for (( i = ${#PIDS[@]} - 1; i >= 0; i-- )); do stop ${PIDS[$i]}; done
	for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null; done
	[ "$started" = 1 ] && "$TESTBED" down --name "$P" >/dev/null 2>&1
	declare -F bench_cleanup >/dev/null && bench_cleanup
	rm -rf "$RUN" "$CL"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
in_ns() { local n=$1; shift; nsenter --net="/run/netns/$n" "$@"; }
started_pid() { PIDS+=("$1 $2"); }
ctl() { "$MIZARCTL" "$@" --tls-cert "$PKI/operator.crt" --tls-key "$PKI/operator.key" --tls-ca "$PKI/ca.crt"; }
# jget KIND NAME PYEXPR: a field of one object (o is its JSON)
jget() {
	ctl get "$1" "$2" -o json | python3 -c '
import json, sys
o = json.load(sys.stdin)
if isinstance(o, list): o = o[0]
v = eval(sys.argv[1], {"o": o})
print(" ".join(map(str, v)) if isinstance(v, list) else ("" if v is None else v))' "$3"
}
# wait_for KIND PHASE COUNT: polls until COUNT objects of KIND exist, all in
# PHASE (60 s at most), by polling `mizarctl get`.
wait_for() {
	local kind=$1 phase=$2 count=$3 i
	for i in $(seq 300); do
		ctl get "$kind" -o json 2>/dev/null | python3 -c '
import json, sys
o = json.load(sys.stdin)
items = o if isinstance(o, list) else [o]   # one object prints bare, several as a list
ok = len(items) >= int(sys.argv[2]) and all(((d.get("status") or {}).get("common") or {}).get("phase") == sys.argv[1] for d in items)
sys.exit(0 if ok else 1)' "$phase" "$count" && return 0
		sleep 0.2
	done
	echo "$BENCH: timed out waiting for $count $kind to be $phase:" >&2
	ctl get "$kind" -o wide >&2 || true
	return 1
}
mkdir -p "$RUN"
gcc -O2 -Wall -o "$CL" bench/connect_latency.c

# --- the cluster: testbed, etcd, operator ------------------------------------
echo "== testbed $P: 3 hosts, management port $MGMT, etcd $MGMT:$PORT"
started=1
"$TESTBED" up --name "$P" --hosts 3 --management --underlay-net "$NET" --etcd "$MGMT:$PORT" >/dev/null
# The testbed made a PKI: etcd and every party speak mutual TLS with it.
PKI=/run/mizar-testbed/$P/pki
"$MIZARCTL" pki --dir "$PKI" --etcd-member "$P-etcd=$MGMT" >/dev/null
etcd --name "$P" --data-dir "$RUN/etcd" \
	--listen-client-urls "https://127.0.0.1:$PORT,https://$MGMT:$PORT" --advertise-client-urls "https://127.0.0.1:$PORT" \
	--listen-peer-urls "http://127.0.0.1:$((PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((PORT + 1))" \
	--listen-metrics-urls "http://127.0.0.1:$((PORT + 2))" \
	--cert-file "$PKI/etcd-$P-etcd.crt" --key-file "$PKI/etcd-$P-etcd.key" --client-cert-auth --trusted-ca-file "$PKI/ca.crt" \
	--initial-cluster "$P=http://127.0.0.1:$((PORT + 1))" --log-level warn >"$RUN/etcd.log" 2>&1 </dev/null &
started_pid $! etcd
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$((PORT + 2))/health" >/dev/null 2>&1 && break; sleep 0.1; done
"$MIZARCTL" access --etcd "127.0.0.1:$PORT" --tls-cert "$PKI/admin.crt" --tls-key "$PKI/admin.key" --tls-ca "$PKI/ca.crt" \
	--droplet "$P-h1" --droplet "$P-h2" --droplet "$P-h3" >/dev/null
"$BIN/mizar-operator" --etcd "127.0.0.1:$PORT" --log-level warning \
	--tls-cert "$PKI/operator.crt" --tls-key "$PKI/operator.key" --tls-ca "$PKI/ca.crt" >"$RUN/operator.log" 2>&1 </dev/null &
started_pid $! mizar-operator
# All three droplets Ready before anything is declared: a droplet that
# turns Ready while a subnet places its bouncers can be left with that
# subnet's table but no bouncer in it.
wait_for droplets Ready 3

