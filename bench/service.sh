#!/usr/bin/env bash
# A scaled endpoint (service VIP) against its own backend, in one run:
#   direct - the client connects to the backend endpoint's own IP
#   vip    - the client connects to the VIP, whose only backend is that
#            same endpoint (same server, same host pair: comparable)
# Topology: a 3-host testbed with a management port, its own etcd and
# mizar-operator; one VPC 10.0.0.0/16, one subnet 10.0.1.0/24 (one bouncer);
# a client endpoint and a backend endpoint on the two hosts that do not
# carry the subnet's bouncer; a scaled endpoint with ports 5201/TCP->5201
# and 7000/TCP->7000 and that one backend. Set up once.
# Measured REPS times (default 5), each repetition: TCP connection set-up
# latency (bench/connect_latency.c: CONNECTIONS new connections to each,
# one after another, the two paths taking turns; p50/p90/p99), then
# single-stream TCP throughput (iperf3, SECONDS_PER_TEST each, one path
# after the other); which path goes first alternates between repetitions.
# Each repetition's figures are shown as it goes; then, through
# bench/stats.py, per figure the median, spread=min..max and reps, and the
# VIP/direct ratio (each repetition's own, then their median and
# min..max). Nothing is asserted. Takes about a minute per repetition.
# Every process it starts is stopped by its pid; the testbed and the
# namespaces (per-run prefix) are removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench/service.sh needs root" >&2; exit 1; }
for p in iperf3 gcc etcd; do command -v $p >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $p >/dev/null; done
SECONDS_PER_TEST=${SECONDS_PER_TEST:-5}
CONNECTIONS=${CONNECTIONS:-2000}
REPS=${REPS:-5}
BENCH=bench/service.sh
P=sv$(( $$ % 10000 ))           # testbed name: the prefix of everything made here
NET=${UNDERLAY_NET:-9}
# shellcheck source=bench/operator-cluster.sh
source bench/operator-cluster.sh

# --- VPC, then subnet: steer the bouncer -------------------------------------
# Placement only follows load (bouncers + dividers per droplet, then name):
# two dividers take h1 and h2 first, so the subnet's one bouncer lands on
# h3, away from the client (h1) and the backend (h2). Dividers play no part
# in traffic within one subnet. Should it land elsewhere anyway, the client
# and the backend go on the two hosts that do not carry it.
cat >"$RUN/vpc.yaml" <<EOF
apiVersion: mizar.com/v1
kind: Vpc
metadata:
  name: svc
spec:
  cidr: 10.0.0.0/16
  dividers: 2
EOF
cat >"$RUN/subnet.yaml" <<EOF
apiVersion: mizar.com/v1
kind: Subnet
metadata:
  name: svc-a
spec:
  vpc: svc
  cidr: 10.0.1.0/24
  bouncers: 1
EOF
ctl apply -f "$RUN/vpc.yaml" >/dev/null
wait_for vpcs Provisioned 1
ctl apply -f "$RUN/subnet.yaml" >/dev/null
wait_for subnets Provisioned 1
BOUNCER=$(jget subnets svc-a 'o["status"]["bouncers"]')
FREE=()
for h in 1 2 3; do case " $BOUNCER " in *" $P-h$h "*) ;; *) FREE+=("$P-h$h") ;; esac; done
CLIENT_HOST=${FREE[0]}; SERVER_HOST=${FREE[1]}

CNS=$P-e-client; SNS=$P-e-server
for n in "$CNS" "$SNS"; do ip netns add "$n"; NS+=("$n"); ip -n "$n" link set lo up; done
cat >"$RUN/endpoints.yaml" <<EOF
apiVersion: mizar.com/v1
kind: Endpoint
metadata:
  name: client
spec:
  vpc: svc
  subnet: svc-a
  droplet: $CLIENT_HOST
  netns: /run/netns/$CNS
---
apiVersion: mizar.com/v1
kind: Endpoint
metadata:
  name: server
spec:
  vpc: svc
  subnet: svc-a
  droplet: $SERVER_HOST
  netns: /run/netns/$SNS
EOF
cat >"$RUN/vip.yaml" <<EOF
apiVersion: mizar.com/v1
kind: Endpoint
metadata:
  name: vip
spec:
  vpc: svc
  subnet: svc-a
  type: scaled
  ports:
  - {port: 5201, protocol: TCP, targetPort: 5201}
  - {port: 7000, protocol: TCP, targetPort: 7000}
  backends: [server]
EOF
ctl apply -f "$RUN/endpoints.yaml" >/dev/null
wait_for endpoints Provisioned 2
ctl apply -f "$RUN/vip.yaml" >/dev/null
wait_for endpoints Provisioned 3
for _ in $(seq 50); do [ -n "$(jget endpoints vip 'o.get("status", {}).get("backends")')" ] && break; sleep 0.2; done
SERVER_IP=$(jget endpoints server 'o["status"]["ip"]')
VIP=$(jget endpoints vip 'o["status"]["ip"]')

echo "== topology"
ctl get droplets
ctl get bouncers -o wide
ctl get endpoints -o wide
echo "client on $CLIENT_HOST, backend on $SERVER_HOST ($SERVER_IP), bouncer on $BOUNCER, VIP $VIP -> [$(jget endpoints vip '[b["name"] + "@" + b["ip"] for b in o["status"].get("backends", [])]')]"

# --- servers in the backend's namespace ---------------------------------------
# (nsenter itself, not in_ns: a function would run in a subshell and $!
# would be that subshell's pid; nsenter execs the program in its place)
nsenter --net="/run/netns/$SNS" "$CL" -s 7000 >/dev/null 2>"$RUN/accept.log" &
started_pid $! "$(basename "$CL")"
nsenter --net="/run/netns/$SNS" iperf3 -s -p 5201 >/dev/null 2>&1 &
started_pid $! iperf3
sleep 0.5
in_ns "$CNS" ping -c 2 -i 0.2 -W 2 -q "$SERVER_IP" >/dev/null || echo "warning: the client cannot ping the backend $SERVER_IP" >&2

# --- REPS repetitions of 1. and 2. ---------------------------------------------
# 1. Connection set-up latency.
# Every new connection through the VIP sends its first packet (the SYN)
# through the bouncer: client host -> bouncer host -> back to the client
# host with the rewrite -> backend host; the SYN-ACK and all later packets
# go host to host directly (DNAT on the client's host, reverse NAT on the
# replies). Direct: the SYN goes client host -> backend host at once.
# In each repetition 20 untimed connections to each first warm the ARP and
# direct-path caches. The two targets take turns, one connection each, so
# both see the same machine at the same moment (this box also runs other
# work).
# Failures counted for "direct" when taking turns: the client's host keeps
# a VIP flow's reply rewrite (backend:7000 > client:sport, shown by
# `mizarctl dump flows`) after the flow closed, so a later direct
# connection that gets the same source port has its SYN-ACK rewritten to
# come from the VIP and never connects (seen on 2026-11-21).
answered() { # new flows the VIP's bouncer(s) answered so far
	local b n=0 c
	for b in $BOUNCER; do
		c=$(ctl counters --testbed "$P/${b##*-}" --json | python3 -c '
import json, sys
def find(o):
    if isinstance(o, dict):
        if o.get("name") == "service_answer": return o.get("packets", 0)
        if "service_answer" in o:
            v = o["service_answer"]
            return v.get("packets", 0) if isinstance(v, dict) else v
        return next((r for r in map(find, o.values()) if r is not None), None)
    if isinstance(o, list):
        return next((r for r in map(find, o) if r is not None), None)
print(find(json.load(sys.stdin)) or 0)') || c=0
		n=$((n + c))
	done
	echo "$n"
}
kv() { sed -n "s/.*\b$2=\([0-9.]*\).*/\1/p" <<<"$1"; }
gbps() { python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))' 2>/dev/null; }
declare -A TARGET=([direct]=$SERVER_IP [vip]=$VIP)
SAMPLES=$RUN/samples
: >"$SAMPLES"
broken=0
for (( r = 1; r <= REPS; r++ )); do
	order=(direct vip); (( r % 2 )) || order=(vip direct)
	echo "== repetition $r/$REPS: ${order[*]}"
	echo "REP $r" >>"$SAMPLES"
	before=$(answered)
	out=$(in_ns "$CNS" "$CL" -n "$CONNECTIONS" "${TARGET[${order[0]}]}" 7000 "${TARGET[${order[1]}]}" 7000)
	after=$(answered)
	for t in "${order[@]}"; do
		line=$(grep "^addr=${TARGET[$t]} " <<<"$out" || true)
		n=$(kv "$line" n); f=$(kv "$line" failed)
		echo "  connect $t: $line"
		[ "${f:-0}" = 0 ] || echo "  note: $f $t connection(s) failed (timed out after 5 s; left out of the percentiles)"
		if [ "${n:-0}" = 0 ]; then broken=1; continue; fi
		for q in p50 p90 p99; do
			echo "BENCH service.$t.connect_${q}_us $(kv "$line" ${q}_us) us n=$n failed=$f baseline=direct" >>"$SAMPLES"
		done
	done
	# Fewer than CONNECTIONS + 20 when the kernel gave a VIP connection a
	# source port an earlier one had used: the client's host still held that
	# flow and rewrote it without asking the bouncer.
	echo "  new flows the bouncer answered: $((after - before)) of the VIP's $((CONNECTIONS + 20)) connections"

	# 2. Single-stream throughput, the paths in the same order.
	for t in "${order[@]}"; do
		tcp=$(in_ns "$CNS" iperf3 -c "${TARGET[$t]}" -p 5201 --connect-timeout 3000 -t "$SECONDS_PER_TEST" -J | gbps || true)
		echo "  tcp $t: ${tcp:-failed} Gb/s"
		if [ -z "$tcp" ] || [ "$tcp" = 0.00 ]; then broken=1; continue; fi
		echo "BENCH service.$t.tcp_gbps $tcp Gb/s baseline=direct" >>"$SAMPLES"
	done
done

if [ "$broken" = 1 ]; then
	echo "== a path did not work at all in some repetition: each host's counters and subnet table, the endpoints' status"
	for h in 1 2 3; do
		echo "-- $P/h$h"; ctl counters --testbed "$P/h$h" || true; ctl dump subnets --testbed "$P/h$h" || true
	done
	ctl get endpoints -o yaml || true
fi

# --- results: median, min..max and the per-repetition VIP/direct ratio ----------
echo "== $REPS repetitions, $CONNECTIONS connections and ${SECONDS_PER_TEST} s of iperf3 to each path in each"
python3 bench/stats.py <"$SAMPLES"
