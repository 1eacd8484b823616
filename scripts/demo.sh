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
pki=/run/mizar-testbed/demo/pki
members=(1 2 3)
client() { echo $((port + 10 * $1)); }
export MIZAR_ETCD=$(for i in "${members[@]}"; do printf '127.0.0.1:%s,' "$(client "$i")"; done | sed 's/,$//')
on_mgmt=$(for i in "${members[@]}"; do printf '%s:%s,' "$mgmt" "$(client "$i")"; done | sed 's/,$//')
# Every party speaks mutual TLS with a certificate of the testbed's CA:
# mizarctl as the operator (etcd's mizar-operator user; transitds admit it
# alone), `mizarctl access` as etcd's root.
as_operator=(--tls-cert "$pki/operator.crt" --tls-key "$pki/operator.key" --tls-ca "$pki/ca.crt")
as_admin=(--tls-cert "$pki/admin.crt" --tls-key "$pki/admin.key" --tls-ca "$pki/ca.crt")

scripts/demo-down.sh >/dev/null 2>&1 || true
mkdir -p "$run"

echo "== a simulated cluster: 3 hosts, each with a transitd, on an underlay bridge"
"$bin/mizar-testbed" up --name demo --hosts 3 --management --etcd "$on_mgmt"

echo "== etcd: 3 members, mutual TLS for clients and peers, on 127.0.0.1 and the management port $mgmt"
"$bin/mizarctl" pki --dir "$pki" --etcd-member "demo-etcd=$mgmt" >/dev/null
cluster=$(for i in "${members[@]}"; do printf 'e%s=https://127.0.0.1:%s,' "$i" "$(($(client "$i") + 1))"; done | sed 's/,$//')
for i in "${members[@]}"; do
	c=$(client "$i")
	setsid etcd --name "e$i" --data-dir "$run/etcd-e$i" \
		--listen-client-urls "https://127.0.0.1:$c,https://$mgmt:$c" --advertise-client-urls "https://127.0.0.1:$c" \
		--listen-peer-urls "https://127.0.0.1:$((c + 1))" --initial-advertise-peer-urls "https://127.0.0.1:$((c + 1))" \
		--listen-metrics-urls "http://127.0.0.1:$((c + 2))" \
		--initial-cluster "$cluster" --initial-cluster-state new --log-level warn \
		--auto-compaction-mode revision --auto-compaction-retention 100000 --quota-backend-bytes 8589934592 \
		--cert-file "$pki/etcd-demo-etcd.crt" --key-file "$pki/etcd-demo-etcd.key" --client-cert-auth --trusted-ca-file "$pki/ca.crt" \
		--peer-cert-file "$pki/etcd-demo-etcd.crt" --peer-key-file "$pki/etcd-demo-etcd.key" --peer-client-cert-auth \
		--peer-trusted-ca-file "$pki/ca.crt" >"$run/etcd-e$i.log" 2>&1 </dev/null &
	echo $! >"$run/etcd-e$i.pid"
done
for i in "${members[@]}"; do
	for _ in $(seq 200); do curl -fs "http://127.0.0.1:$(($(client "$i") + 2))/health" >/dev/null 2>&1 && break; sleep 0.1; done
done
"$bin/mizarctl" access "${as_admin[@]}" --droplet demo-h1 --droplet demo-h2 --droplet demo-h3

echo "== mizar-operator"
setsid "$bin/mizar-operator" --etcd "$MIZAR_ETCD" --log-level warning "${as_operator[@]}" >"$run/operator.log" 2>&1 </dev/null &
echo $! >"$run/operator.pid"

"$bin/mizarctl" wait "${as_operator[@]}" --for ready droplets --count 3 --timeout 30

echo "== applying deploy/examples/two-tenants.yaml"
for ns in $(sed -n 's|^  netns: /run/netns/||p' deploy/examples/two-tenants.yaml); do
	ip netns add "$ns"
done
"$bin/mizarctl" apply "${as_operator[@]}" -f deploy/examples/two-tenants.yaml
"$bin/mizarctl" wait "${as_operator[@]}" --for provisioned endpoints --timeout 60
"$bin/mizarctl" get "${as_operator[@]}" endpoints -o wide

echo
echo "== who reaches whom"
"$bin/mizarctl" matrix "${as_operator[@]}"

cat <<HELP

Explore (MIZAR_ETCD=$MIZAR_ETCD; every mizarctl command below takes the
operator's certificate: TLS="${as_operator[*]}"):
  $bin/mizarctl get \$TLS vpcs|subnets|endpoints|droplets|bouncers|dividers [-o wide|yaml]
  $bin/mizarctl describe \$TLS endpoint red-web1
  $bin/mizar-testbed exec --name demo red-web1 -- ping 10.0.2.x     (an endpoint's shell: its netns)
  $bin/mizarctl counters --testbed demo/h1                          (a host's data-plane counters and drops)
  $bin/mizarctl dump endpoints --testbed demo/h2                    (a bouncer's table)
  logs: $run/operator.log, $run/etcd-e*.log, /run/mizar-testbed/demo/h*.log
Tear down: make demo-down
HELP
