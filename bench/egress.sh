#!/usr/bin/env bash
# Egress to a server on the underlay, three ways, in one run:
#   mizar  - from an endpoint of a VPC with egress: SNAT to its droplet's
#            address in the data plane (tc agent), on a 3-host testbed with
#            its etcd and mizar-operator
#   kernel - the kernel doing the same job: a router namespace with two
#            tenant namespaces behind it at the very same address
#            (10.0.1.50), iptables MASQUERADE with a conntrack zone per
#            tenant in the original direction (CT --zone-orig, so the two
#            tenants' flows get distinct translations), CONNMARK and policy
#            routing to send each reply back to its own tenant
#   host   - a namespace's own socket on the underlay, no NAT and no
#            netfilter rules (the limit)
# For each: single-stream TCP throughput (iperf3), TCP request/response
# latency (sockperf ping-pong), the UDP 64-byte packet rate received
# (iperf3 -u), new TCP connections one after another (bench/connect_latency.c:
# connections/s = 1e6 / mean set-up time, and the set-up p99), then the
# set-up p99 again with the NAT table 90% full. "90% full" is FILL flows
# (default 14,745: 90% of the 16,384 SNAT flows a testbed host holds) made
# just before, UDP datagrams from the client to FILL distinct ports of the
# server (which drops them): for mizar, 90% of its droplet's SNAT table; for
# the kernel, the same number of conntrack entries in its zone (its table,
# nf_conntrack_max, is shared with the whole machine and larger: it is not
# changed here). The host has no NAT table: its figure is the empty one.
# SECONDS_PER_TEST seconds per throughput figure, CONNECTIONS connections
# per set-up figure. REPS repetitions (default 5), the configurations in an
# order that rotates by one each time. Printed through bench/stats.py:
# median, spread=min..max, and the ratio to the kernel per repetition.
# Nothing is asserted. Every process started is stopped by its pid; the
# testbed and every namespace (per-run prefix) are removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench/egress.sh needs root" >&2; exit 1; }
for p in iperf3 sockperf iptables gcc etcd; do command -v $p >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $p >/dev/null; done
SECONDS_PER_TEST=${SECONDS_PER_TEST:-5}
CONNECTIONS=${CONNECTIONS:-1000}
FILL=${FILL:-14745}
REPS=${REPS:-5}
BENCH=bench/egress.sh
P=eg$(( $$ % 10000 ))
NET=${UNDERLAY_NET:-8}
PORT=${ETCD_PORT:-23990}
# shellcheck source=bench/operator-cluster.sh
source bench/operator-cluster.sh

SERVER=172.30.$NET.200
ROUTER=172.30.$NET.201
PLAIN_IP=172.30.$NET.202
U=$P-u                 # the testbed's underlay namespace (bridge br0)
SRV=$P-x-srv RT=$P-k-rt T1=$P-k-t1 T2=$P-k-t2 CNS=$P-e-client PLAIN=$P-x-plain

# plug NS IFNAME ADDR: a namespace's port on the underlay bridge.
plug() {
	local ns=$1 ifname=$2 addr=$3
	ip -n "$U" link add "$ifname" type veth peer name eth0 netns "$ns"
	ip -n "$U" link set "$ifname" master br0 up
	ip -n "$ns" addr add "$addr/24" dev eth0
	ip -n "$ns" link set eth0 up
}
for n in "$SRV" "$RT" "$T1" "$T2" "$CNS" "$PLAIN"; do ip netns add "$n"; NS+=("$n"); ip -n "$n" link set lo up; done

# --- the server ------------------------------------------------------------------
plug "$SRV" x-srv "$SERVER"
plug "$PLAIN" x-plain "$PLAIN_IP"
# The fill's datagrams are dropped, not answered with ICMP.
ip netns exec "$SRV" iptables -A INPUT -p udp --dport 20000:59999 -j DROP

# --- the kernel's NAT: router and two tenants with one address -------------------
plug "$RT" k-rt "$ROUTER"
for t in 1 2; do
	ns=$P-k-t$t
	ip link add "kt$t" netns "$RT" type veth peer name eth0 netns "$ns"
	ip -n "$RT" addr add 10.0.1.1/24 dev "kt$t" noprefixroute
	ip -n "$RT" link set "kt$t" up
	ip -n "$ns" addr add 10.0.1.50/24 dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" route add default via 10.0.1.1
	ip -n "$RT" route add 10.0.1.0/24 dev "kt$t" table $((100 + t))
	ip -n "$RT" rule add fwmark "$t" lookup $((100 + t))
	ip netns exec "$RT" iptables -t raw -A PREROUTING -i "kt$t" -j CT --zone-orig "$t"
	ip netns exec "$RT" iptables -t mangle -A PREROUTING -i "kt$t" -j CONNMARK --set-mark "$t"
done
ip netns exec "$RT" iptables -t mangle -A PREROUTING -i eth0 -j CONNMARK --restore-mark
ip netns exec "$RT" iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE
for k in all default kt1 kt2 eth0; do ip netns exec "$RT" sysctl -q -w "net.ipv4.conf.$k.rp_filter=0"; done
ip netns exec "$RT" sysctl -q -w net.ipv4.ip_forward=1

# --- Mizar: a VPC with egress, one endpoint ------------------------------------------
cat >"$RUN/objects.yaml" <<EOF
apiVersion: mizar.com/v1
kind: Vpc
metadata: {name: eg}
spec: {cidr: 10.0.0.0/16, egress: {mode: SNAT}}
---
apiVersion: mizar.com/v1
kind: Subnet
metadata: {name: eg-1}
spec: {vpc: eg, cidr: 10.0.1.0/24}
EOF
ctl apply -f "$RUN/objects.yaml" >/dev/null
wait_for subnets Provisioned 1
cat >"$RUN/client.yaml" <<EOF
apiVersion: mizar.com/v1
kind: Endpoint
metadata: {name: client}
spec: {vpc: eg, subnet: eg-1, droplet: $P-h1, netns: /run/netns/$CNS, ip: 10.0.1.50}
EOF
ctl apply -f "$RUN/client.yaml" >/dev/null
wait_for endpoints Provisioned 1

# --- servers ----------------------------------------------------------------------
nsenter --net="/run/netns/$SRV" iperf3 -s -p 5201 >/dev/null 2>&1 &
started_pid $! iperf3
nsenter --net="/run/netns/$SRV" sockperf server --tcp -i "$SERVER" -p 11111 >/dev/null 2>&1 &
started_pid $! sockperf
nsenter --net="/run/netns/$SRV" "$CL" -s 7000 >/dev/null 2>"$RUN/accept.log" &
started_pid $! "$(basename "$CL")"
sleep 0.5
declare -A CLIENT=([mizar]=$CNS [kernel]=$T1 [host]=$PLAIN)
for c in mizar kernel host; do
	in_ns "${CLIENT[$c]}" ping -c 2 -i 0.2 -W 2 -q "$SERVER" >/dev/null || echo "warning: $c cannot ping the server" >&2
done
# The two tenants of the kernel's NAT at once, same source port: distinct translations.
echo "== the kernel's NAT: two tenants at 10.0.1.50, same source port, to the server:"
for t in 1 2; do
	in_ns "$P-k-t$t" python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("", 40001)); s.sendto(b"x", (sys.argv[1], 7001))' "$SERVER"
done
ip netns exec "$RT" conntrack -L -p udp --dport 7001 2>/dev/null | sed 's/^/  /' || ip netns exec "$RT" cat /proc/net/nf_conntrack 2>/dev/null | grep 'dport=7001' | sed 's/^/  /' || true

# fill CLIENT: FILL UDP flows from the client, one per server port.
fill() {
	in_ns "$1" python3 -c '
import socket, sys
srv, n = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for p in range(20000, 20000 + n):
    s.sendto(b"f", (srv, p))' "$SERVER" "$FILL"
}
gbps() { python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))' 2>/dev/null; }
pps() { python3 -c 'import json,sys; s=json.load(sys.stdin)["end"]["sum"]; print("%.0f" % ((s["packets"]-s["lost_packets"])/s["seconds"]))' 2>/dev/null; }
kv() { sed -n "s/.*\b$2=\([0-9.]*\).*/\1/p" <<<"$1"; }
SAMPLES=$RUN/samples
: >"$SAMPLES"
measure() {
	local name=$1 ns=${CLIENT[$1]} tcp rr udp line full
	tcp=$(in_ns "$ns" iperf3 -c "$SERVER" -p 5201 --connect-timeout 3000 -t "$SECONDS_PER_TEST" -J | gbps || true)
	rr=$(in_ns "$ns" sockperf ping-pong --tcp -i "$SERVER" -p 11111 -t "$SECONDS_PER_TEST" 2>&1 |
		sed -n 's/.*avg-latency=\([0-9.]*\).*/\1/p' | tail -1 || true)
	udp=$(in_ns "$ns" iperf3 -c "$SERVER" -p 5201 --connect-timeout 3000 -u -l 64 -b 0 -t "$SECONDS_PER_TEST" -J | pps || true)
	line=$(in_ns "$ns" "$CL" -n "$CONNECTIONS" -w 20 "$SERVER" 7000 || true)
	full=""
	if [ "$name" != host ]; then
		fill "$ns"
		full=$(in_ns "$ns" "$CL" -n "$CONNECTIONS" -w 0 "$SERVER" 7000 || true)
	fi
	local mean p99 fp99 cps
	mean=$(kv "$line" mean_us); p99=$(kv "$line" p99_us); fp99=$(kv "$full" p99_us)
	cps=$(python3 -c 'import sys; m=float(sys.argv[1] or 0); print("%.0f" % (1e6/m) if m > 0 else "")' "${mean:-0}")
	echo "  $name: tcp ${tcp:-failed} Gb/s, rr ${rr:-failed} us, udp64 ${udp:-failed} pkt/s, ${cps:-failed} conn/s, connect p99 ${p99:-failed} us, with the table 90% full ${fp99:--} us (failed: $(kv "$line" failed)/$(kv "$full" failed))"
	[ -z "$tcp" ] || echo "BENCH egress.$name.tcp_gbps $tcp Gb/s baseline=kernel" >>"$SAMPLES"
	[ -z "$rr" ] || echo "BENCH egress.$name.tcp_rr_us $rr us baseline=kernel" >>"$SAMPLES"
	[ -z "$udp" ] || echo "BENCH egress.$name.udp64_pps $udp pkt/s baseline=kernel" >>"$SAMPLES"
	[ -z "$cps" ] || echo "BENCH egress.$name.conn_per_s $cps conn/s baseline=kernel" >>"$SAMPLES"
	[ -z "$p99" ] || echo "BENCH egress.$name.connect_p99_us $p99 us baseline=kernel" >>"$SAMPLES"
	[ -z "$fp99" ] || echo "BENCH egress.$name.connect_full_p99_us $fp99 us baseline=kernel" >>"$SAMPLES"
}

CONFIGS=(mizar kernel host)
for (( r = 0; r < REPS; r++ )); do
	order=()
	for (( i = 0; i < 3; i++ )); do order+=("${CONFIGS[(r + i) % 3]}"); done
	echo "== repetition $((r + 1))/$REPS: ${order[*]}"
	echo "REP $((r + 1))" >>"$SAMPLES"
	for c in "${order[@]}"; do measure "$c"; done
done
echo "== Mizar's SNAT table on $P-h1 after the run (first lines)"
ctl dump snat --testbed "$P/h1" 2>/dev/null | head -5 || true
echo "== $REPS repetitions, ${SECONDS_PER_TEST} s per throughput figure, $CONNECTIONS connections per set-up figure, $FILL flows to fill"
python3 bench/stats.py <"$SAMPLES"
