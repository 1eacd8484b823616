#!/usr/bin/env bash
# make demo: etcd, mizar-operator and a 3-host simulated cluster on this
# machine; two tenants with identical CIDRs applied from YAML; a matrix of
# who reaches whom. `make demo-down` removes all of it.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(swift build --show-bin-path)
run=/run/mizar-demo
port=23790
mgmt=172.30.0.254
export MIZAR_ETCD=127.0.0.1:$port

scripts/demo-down.sh >/dev/null 2>&1 || true
mkdir -p "$run"

echo "== a simulated cluster: 3 hosts, each with a transitd, on an underlay bridge"
"$bin/mizar-testbed" up --name demo --hosts 3 --management --etcd "$mgmt:$port"

echo "== etcd on 127.0.0.1:$port and the management port $mgmt:$port"
setsid etcd --name mizar-demo --data-dir "$run/etcd" \
	--listen-client-urls "http://127.0.0.1:$port,http://$mgmt:$port" --advertise-client-urls "http://127.0.0.1:$port" \
	--listen-peer-urls http://127.0.0.1:$((port + 1)) --initial-advertise-peer-urls http://127.0.0.1:$((port + 1)) \
	--initial-cluster mizar-demo=http://127.0.0.1:$((port + 1)) --log-level warn >"$run/etcd.log" 2>&1 </dev/null &
echo $! >"$run/etcd.pid"
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done

echo "== mizar-operator"
# The testbed made a PKI: the operator calls the transitds with mutual TLS.
pki=/run/mizar-testbed/demo/pki
setsid "$bin/mizar-operator" --etcd "127.0.0.1:$port" --log-level warning \
	--tls-cert "$pki/operator.crt" --tls-key "$pki/operator.key" --tls-ca "$pki/ca.crt" >"$run/operator.log" 2>&1 </dev/null &
echo $! >"$run/operator.pid"

"$bin/mizarctl" wait --for ready droplets --count 3 --timeout 30

echo "== applying deploy/examples/two-tenants.yaml"
for ns in $(sed -n 's|^  netns: /run/netns/||p' deploy/examples/two-tenants.yaml); do
	ip netns add "$ns"
done
"$bin/mizarctl" apply -f deploy/examples/two-tenants.yaml
"$bin/mizarctl" wait --for provisioned endpoints --timeout 60
"$bin/mizarctl" get endpoints -o wide

echo
echo "== who reaches whom"
"$bin/mizarctl" matrix

cat <<HELP

Explore (MIZAR_ETCD=$MIZAR_ETCD):
  $bin/mizarctl get vpcs|subnets|endpoints|droplets|bouncers|dividers [-o wide|yaml]
  $bin/mizarctl describe endpoint red-web1
  $bin/mizar-testbed exec --name demo red-web1 -- ping 10.0.2.x     (an endpoint's shell: its netns)
  $bin/mizarctl counters --testbed demo/h1                          (a host's data-plane counters and drops)
  $bin/mizarctl dump endpoints --testbed demo/h2                    (a bouncer's table)
  logs: $run/operator.log, $run/etcd.log, /run/mizar-testbed/demo/h*.log
Tear down: make demo-down
HELP
