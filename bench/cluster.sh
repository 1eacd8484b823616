#!/usr/bin/env bash
# Endpoint to endpoint across two simulated hosts, in one run:
#   veth   - a plain veth pair between two namespaces (the limit here)
#   vxlan  - a kernel VXLAN overlay: a bridge and a vxlan device per host
#            namespace, on an underlay bridge (what Flannel does)
#   mizar  - the testbed, tc hooks (the default)
#   mizar-xdp - the testbed with both programs forced onto XDP
# For each: single-stream TCP throughput (iperf3), TCP request/response
# latency (sockperf ping-pong) and the UDP 64-byte packet rate received
# (iperf3 -u). Printed as BENCH lines with the ratio to the VXLAN overlay.
# Everything lives in namespaces with a per-run prefix, removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench/cluster.sh needs root" >&2; exit 1; }
for p in iperf3 sockperf; do command -v $p >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $p >/dev/null; done
MIZARCTL=${MIZARCTL:-$(swift build --show-bin-path)/mizarctl}
TESTBED=${TESTBED:-$(dirname "$MIZARCTL")/mizar-testbed}
SECONDS_PER_TEST=${SECONDS_PER_TEST:-5}
P=mb$(( $$ % 10000 ))
NS=()
cleanup() {
	for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
	"$TESTBED" down --name "${P}m" >/dev/null 2>&1 || true
	"$TESTBED" down --name "${P}x" >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM
mkns() { ip netns add "$1"; NS+=("$1"); ip -n "$1" link set lo up; }
in_ns() { local n=$1; shift; nsenter --net="/run/netns/$n" "$@"; }

# measure NAME CLIENT_NETNS SERVER_NETNS SERVER_IP
declare -A TCP RR UDP
measure() {
	local name=$1 cns=$2 sns=$3 ip=$4
	in_ns "$sns" iperf3 -s -D -p 5201 --pidfile "/tmp/$P.iperf.pid" >/dev/null
	in_ns "$sns" sockperf server --tcp -i "$ip" -p 11111 >/dev/null 2>&1 &
	local sp=$!
	sleep 0.5
	TCP[$name]=$(in_ns "$cns" iperf3 -c "$ip" -p 5201 --connect-timeout 3000 -t "$SECONDS_PER_TEST" -J |
		python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))' || echo 0)
	RR[$name]=$(in_ns "$cns" sockperf ping-pong --tcp -i "$ip" -p 11111 -t "$SECONDS_PER_TEST" 2>&1 |
		sed -n 's/.*avg-latency=\([0-9.]*\).*/\1/p' | tail -1 || true)
	UDP[$name]=$(in_ns "$cns" iperf3 -c "$ip" -p 5201 --connect-timeout 3000 -u -l 64 -b 0 -t "$SECONDS_PER_TEST" -J |
		python3 -c 'import json,sys; s=json.load(sys.stdin)["end"]["sum"]; print("%.0f" % ((s["packets"]-s["lost_packets"])/s["seconds"]))' || echo 0)
	kill "$sp" 2>/dev/null || true
	kill "$(cat /tmp/$P.iperf.pid)" 2>/dev/null || true
	rm -f "/tmp/$P.iperf.pid"
	wait "$sp" 2>/dev/null || true
}

# --- plain veth --------------------------------------------------------------
mkns "${P}va"; mkns "${P}vb"
ip link add "${P}v0" netns "${P}va" type veth peer name "${P}v1" netns "${P}vb"
ip -n "${P}va" addr add 10.77.0.1/24 dev "${P}v0"; ip -n "${P}va" link set "${P}v0" up
ip -n "${P}vb" addr add 10.77.0.2/24 dev "${P}v1"; ip -n "${P}vb" link set "${P}v1" up
measure veth "${P}va" "${P}vb" 10.77.0.2

# --- kernel VXLAN overlay: underlay bridge, per host a bridge + vxlan + pod veth
mkns "${P}xu"
ip -n "${P}xu" link add br0 type bridge; ip -n "${P}xu" link set br0 up
for i in 1 2; do
	h="${P}x$i"; pod="${P}p$i"
	mkns "$h"; mkns "$pod"
	ip link add "u$i" netns "${P}xu" type veth peer name eth0 netns "$h"
	ip -n "${P}xu" link set "u$i" master br0 up
	ip -n "$h" addr add "172.31.0.$i/24" dev eth0; ip -n "$h" link set eth0 up
	ip -n "$h" link add vx0 type vxlan id 42 local "172.31.0.$i" dev eth0 dstport 4789
	ip -n "$h" link add cni0 type bridge
	ip -n "$h" link set vx0 master cni0 up; ip -n "$h" link set cni0 up
	ip link add "pv$i" netns "$h" type veth peer name eth0 netns "$pod"
	ip -n "$h" link set "pv$i" master cni0 up
	ip -n "$pod" link set eth0 mtu 1450
	ip -n "$pod" addr add "10.88.0.$i/24" dev eth0; ip -n "$pod" link set eth0 up
done
in_ns "${P}x1" bridge fdb append 00:00:00:00:00:00 dev vx0 dst 172.31.0.2
in_ns "${P}x2" bridge fdb append 00:00:00:00:00:00 dev vx0 dst 172.31.0.1
measure vxlan "${P}p1" "${P}p2" 10.88.0.2

# --- Mizar on the testbed ----------------------------------------------------
mizar() { # name testbed-name up-flags...
	local name=$1 bed=$2; shift 2
	"$TESTBED" up --name "$bed" --hosts 2 "$@" >/dev/null
	"$TESTBED" endpoint --name "$bed" e1 --vni 100 --ip 10.0.1.10 --subnet 10.0.1.0/24 --host h1 >/dev/null
	"$TESTBED" endpoint --name "$bed" e2 --vni 100 --ip 10.0.1.20 --subnet 10.0.1.0/24 --host h2 >/dev/null
	in_ns "$bed-e-e1" ping -c 2 -i 0.1 -q 10.0.1.20 >/dev/null || echo "warning: $name: e1 cannot reach e2" >&2
	measure "$name" "$bed-e-e1" "$bed-e-e2" 10.0.1.20
	"$TESTBED" down --name "$bed" >/dev/null
}
mizar mizar "${P}m"
mizar mizar-xdp "${P}x" --transit-hook xdp --agent-hook xdp

ratio() { python3 -c "import sys; a,b=float(sys.argv[1] or 0),float(sys.argv[2] or 0); print('%.2f' % (a/b if b else 0))" "$1" "$2"; }
for n in veth vxlan mizar mizar-xdp; do
	echo "BENCH cluster.$n.tcp_gbps ${TCP[$n]} Gb/s baseline=vxlan ratio=$(ratio "${TCP[$n]}" "${TCP[vxlan]}")"
	echo "BENCH cluster.$n.tcp_rr_us ${RR[$n]} us baseline=vxlan ratio=$(ratio "${RR[$n]}" "${RR[vxlan]}")"
	echo "BENCH cluster.$n.udp64_pps ${UDP[$n]} pkt/s baseline=vxlan ratio=$(ratio "${UDP[$n]}" "${UDP[vxlan]}")"
done
