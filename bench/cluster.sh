#!/usr/bin/env bash
# Endpoint to endpoint across two simulated hosts, every configuration in
# the same run:
#   veth   - a plain veth pair between two namespaces (the limit here)
#   vxlan  - a kernel VXLAN overlay: a bridge and a vxlan device per host
#            namespace, on an underlay bridge (what Flannel does)
#   mizar  - the testbed, tc hooks (the default)
#   mizar-xdp - the testbed with both programs forced onto XDP
#   base, base-xdp - with BASELINE_TREE=/path/to/another/checkout, the same
#            two testbeds run with that checkout's debug binaries and BPF
#            objects (its mizar-testbed, or `mizarctl testbed` where it is
#            older), to compare a change with the version before it
# For each: single-stream TCP throughput (iperf3), TCP request/response
# latency (sockperf ping-pong) and the UDP 64-byte packet rate received
# (iperf3 -u), SECONDS_PER_TEST seconds each.
# All topologies are set up once (side by side: each testbed's underlay is
# in namespaces of its own), then measured REPS times (default 5); in each
# repetition every configuration is measured once, the order rotating by one
# each time (veth vxlan mizar ..., then vxlan mizar ... veth, ...), so that
# all of them see the machine at about the same moments. Printed through
# bench/stats.py: per figure the median, spread=min..max and reps, the ratio
# to the VXLAN overlay (each repetition's own, then their median and
# min..max) and, with a baseline tree, vs_base= / vs_base-xdp= for mizar and
# mizar-xdp: their ratio to the same hooks of the baseline. Each
# repetition's raw figures are shown as it goes.
# Everything lives in namespaces and testbeds with a per-run prefix, removed
# on exit; every process started is stopped by its pid.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench/cluster.sh needs root" >&2; exit 1; }
for p in iperf3 sockperf; do command -v $p >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $p >/dev/null; done
MIZARCTL=${MIZARCTL:-$(swift build --show-bin-path)/mizarctl}
TESTBED=${TESTBED:-$(dirname "$MIZARCTL")/mizar-testbed}
SECONDS_PER_TEST=${SECONDS_PER_TEST:-5}
REPS=${REPS:-5}
BASELINE_TREE=${BASELINE_TREE:-}
if [ -n "$BASELINE_TREE" ]; then
	BASELINE_TREE=$(cd "$BASELINE_TREE" && pwd)
	if [ -x "$BASELINE_TREE/.build/debug/mizar-testbed" ]; then
		BASE_TESTBED=("$BASELINE_TREE/.build/debug/mizar-testbed")
	else
		BASE_TESTBED=("$BASELINE_TREE/.build/debug/mizarctl" testbed)
	fi
	[ -x "${BASE_TESTBED[0]}" ] || { echo "bench/cluster.sh: no ${BASE_TESTBED[0]} (build the baseline: cd $BASELINE_TREE && make bpf && swift build)" >&2; exit 1; }
fi
P=mb$(( $$ % 10000 ))
SAMPLES=/tmp/$P.samples
NS=()
BEDS=()      # "tree testbed-name" of every testbed brought up
SERVERS=()   # pids of the servers of the measurement under way
stop() { [ $# -gt 0 ] || return 0; kill "$@" 2>/dev/null || true; wait "$@" 2>/dev/null || true; }
cleanup() {
	set +e
	stop "${SERVERS[@]}"
	for b in "${BEDS[@]}"; do testbed ${b% *} down --name "${b#* }" >/dev/null 2>&1; done
	for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null; done
	rm -f "$SAMPLES"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkns() { ip netns add "$1"; NS+=("$1"); ip -n "$1" link set lo up; }
in_ns() { local n=$1; shift; nsenter --net="/run/netns/$n" "$@"; }
# testbed TREE ARGS...: this checkout's testbed (tree "main") or the
# baseline's, run in its own directory so that it loads its own build/bpf.
testbed() {
	local tree=$1; shift
	if [ "$tree" = base ]; then (cd "$BASELINE_TREE" && "${BASE_TESTBED[@]}" "$@"); else "$TESTBED" "$@"; fi
}

# Where each configuration's client and server are: netns, netns, server IP.
declare -A CNS SNS IP

# --- plain veth --------------------------------------------------------------
mkns "${P}va"; mkns "${P}vb"
ip link add "${P}v0" netns "${P}va" type veth peer name "${P}v1" netns "${P}vb"
ip -n "${P}va" addr add 10.77.0.1/24 dev "${P}v0"; ip -n "${P}va" link set "${P}v0" up
ip -n "${P}vb" addr add 10.77.0.2/24 dev "${P}v1"; ip -n "${P}vb" link set "${P}v1" up
CNS[veth]=${P}va; SNS[veth]=${P}vb; IP[veth]=10.77.0.2

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
CNS[vxlan]=${P}p1; SNS[vxlan]=${P}p2; IP[vxlan]=10.88.0.2

# --- Mizar on testbeds (no management port: each one's underlay 172.30.0.0/24
# stays inside its own namespaces, so several can be up at once) -------------
mizar() { # config tree testbed-name up-flags...
	local name=$1 tree=$2 bed=$3; shift 3
	BEDS+=("$tree $bed")
	testbed "$tree" up --name "$bed" --hosts 2 "$@" >/dev/null
	testbed "$tree" endpoint --name "$bed" e1 --vni 100 --ip 10.0.1.10 --subnet 10.0.1.0/24 --host h1 >/dev/null
	testbed "$tree" endpoint --name "$bed" e2 --vni 100 --ip 10.0.1.20 --subnet 10.0.1.0/24 --host h2 >/dev/null
	in_ns "$bed-e-e1" ping -c 2 -i 0.1 -q 10.0.1.20 >/dev/null || echo "warning: $name: e1 cannot reach e2" >&2
	CNS[$name]=$bed-e-e1; SNS[$name]=$bed-e-e2; IP[$name]=10.0.1.20
}
# Neighbours in this list are measured one right after the other.
CONFIGS=(veth vxlan mizar)
mizar mizar main "${P}m"
if [ -n "$BASELINE_TREE" ]; then mizar base base "${P}bm"; CONFIGS+=(base); fi
mizar mizar-xdp main "${P}x" --transit-hook xdp --agent-hook xdp
CONFIGS+=(mizar-xdp)
if [ -n "$BASELINE_TREE" ]; then mizar base-xdp base "${P}bx" --transit-hook xdp --agent-hook xdp; CONFIGS+=(base-xdp); fi
declare -A BASELINES=([mizar]=vxlan,base [mizar-xdp]=vxlan,base-xdp)

# measure CONFIG: one repetition's three figures, as BENCH lines for stats.py.
gbps() { python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))' 2>/dev/null; }
pps() { python3 -c 'import json,sys; s=json.load(sys.stdin)["end"]["sum"]; print("%.0f" % ((s["packets"]-s["lost_packets"])/s["seconds"]))' 2>/dev/null; }
measure() {
	local name=$1 cns=${CNS[$1]} sns=${SNS[$1]} ip=${IP[$1]} tcp rr udp
	local baseline=vxlan; [ -n "$BASELINE_TREE" ] && baseline=${BASELINES[$name]:-vxlan}
	# nsenter execs the server in its own place, so $! is the server's pid.
	nsenter --net="/run/netns/$sns" iperf3 -s -p 5201 >/dev/null 2>&1 &
	SERVERS=($!)
	nsenter --net="/run/netns/$sns" sockperf server --tcp -i "$ip" -p 11111 >/dev/null 2>&1 &
	SERVERS+=($!)
	sleep 0.5
	tcp=$(in_ns "$cns" iperf3 -c "$ip" -p 5201 --connect-timeout 3000 -t "$SECONDS_PER_TEST" -J | gbps || true)
	rr=$(in_ns "$cns" sockperf ping-pong --tcp -i "$ip" -p 11111 -t "$SECONDS_PER_TEST" 2>&1 |
		sed -n 's/.*avg-latency=\([0-9.]*\).*/\1/p' | tail -1 || true)
	udp=$(in_ns "$cns" iperf3 -c "$ip" -p 5201 --connect-timeout 3000 -u -l 64 -b 0 -t "$SECONDS_PER_TEST" -J | pps || true)
	stop "${SERVERS[@]}"
	SERVERS=()
	echo "  $name: tcp ${tcp:-failed} Gb/s, rr ${rr:-failed} us, udp64 ${udp:-failed} pkt/s"
	# A failed test is left out (stats.py counts the repetitions it has).
	[ -z "$tcp" ] || echo "BENCH cluster.$name.tcp_gbps $tcp Gb/s baseline=$baseline" >>"$SAMPLES"
	[ -z "$rr" ] || echo "BENCH cluster.$name.tcp_rr_us $rr us baseline=$baseline" >>"$SAMPLES"
	[ -z "$udp" ] || echo "BENCH cluster.$name.udp64_pps $udp pkt/s baseline=$baseline" >>"$SAMPLES"
}

: >"$SAMPLES"
n=${#CONFIGS[@]}
for (( r = 0; r < REPS; r++ )); do
	order=()
	for (( i = 0; i < n; i++ )); do order+=("${CONFIGS[(r + i) % n]}"); done
	echo "== repetition $((r + 1))/$REPS: ${order[*]}"
	echo "REP $((r + 1))" >>"$SAMPLES"
	for c in "${order[@]}"; do measure "$c"; done
done
echo "== $REPS repetitions, ${SECONDS_PER_TEST} s per test"
python3 bench/stats.py <"$SAMPLES"
