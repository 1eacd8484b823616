import Foundation
import Glibc
import Logging
import MizarAPI
import MizarCore
import MizarMetrics
@testable import MizarOperator
import MizarStore
import MizarSystem
import MizarTestbed
import Synchronization
import Testing

extension OperatorTests {
    @Test("the operator's metrics, served over HTTP: reconciles by kind and outcome, timed; endpoints' provisioning delay; queue depths; valid for promtool")
    func operatorMetrics() async throws {
        let plane = try await Plane.get()
        try await plane.withOperator { store, op in
            #expect(try await plane.dropletsReady(store))
            let object = objectYAML
            try await plane.apply([
                object("Vpc", "met", "cidr: 10.0.0.0/16"), object("Subnet", "met-1", "vpc: met, cidr: 10.0.1.0/24"),
                object("Endpoint", "met-e1", "vpc: met, subnet: met-1"),
            ].joined(separator: "---\n"))
            try await Self.cleanly(plane, store, vpcs: ["met"], endpoints: []) {
                let provisioned = try await eventually(20) { try await store.get(EndpointSpec.self, "met-e1")?.status?.common.phase == .provisioned }
                try #require(provisioned, "met-e1 not provisioned")
                // Served as mizar-operator serves it (a free port on loopback).
                let port = Mutex<Int?>(nil)
                let server = try MetricsServer(address: HostPort(host: "127.0.0.1", port: 0), registry: op.metrics.registry,
                                               logger: Logger(label: "metrics"), bound: { p in port.withLock { $0 = p } },
                                               refresh: op.refreshMetrics)
                let serving = Task { try await server.run() }
                defer { serving.cancel() }
                #expect(try await eventually(5) { port.withLock { $0 } != nil })
                let at = try #require(port.withLock { $0 })
                let scraped = try await onOwnThread { runCapturing(["curl", "-sS", "--max-time", "5", "http://127.0.0.1:\(at)/metrics"]) }
                #expect(scraped.status == 0)
                let text = scraped.output
                func value(_ series: String) -> Double { metricValue(text, series) ?? -1 }
                #expect(value(#"mizar_operator_reconciles_total{kind="Endpoint",outcome="done"}"#) >= 1, "\(text.prefix(2000))")
                #expect(value(#"mizar_operator_reconcile_duration_seconds_count{kind="Endpoint"}"#) >= 1)
                #expect(value("mizar_operator_provisioning_delay_seconds_count") >= 1)
                #expect(value(#"mizar_operator_queue_depth{queue="endpoint"}"#) >= 0)
                let check = try await promtoolCheck(text)
                #expect(check.status == 0, "promtool: \(check.output)")
            }
        }
    }

    @Test("a real Prometheus scrapes the three droplets (mutual TLS, the metrics reader's certificate) and the operator; its PromQL sum of a drop equals mizarctl counters'; other parties are refused")
    func prometheusScrapesTheCluster() async throws {
        let plane = try await Plane.get()
        let bed = plane.bed
        let pki = bed.pkiDirectory
        try await plane.withOperator { store, op in
            #expect(try await plane.dropletsReady(store))
            // The operator's metrics, served as mizar-operator serves them.
            let port = Mutex<Int?>(nil)
            let server = try MetricsServer(address: HostPort(host: "127.0.0.1", port: 0), registry: op.metrics.registry,
                                           logger: Logger(label: "metrics"), bound: { p in port.withLock { $0 = p } }, refresh: op.refreshMetrics)
            let serving = Task { try await server.run() }
            defer { serving.cancel() }
            #expect(try await eventually(5) { port.withLock { $0 } != nil })
            let operatorPort = try #require(port.withLock { $0 })

            // Who may read a droplet's metrics: the metrics reader; not a
            // droplet's certificate, nor a client without one, nor plaintext.
            let h1 = bed.hosts[0]
            func curl(_ extra: [String], _ url: String) async throws -> (status: Int32, output: String) {
                try await onOwnThread { runCapturing(["curl", "-sS", "--max-time", "5", "-w", "\n%{http_code}", "--cacert", "\(pki)/ca.crt"] + extra + [url]) }
            }
            let url = "https://\(h1.ip):9470/metrics"
            let reader = try await curl(["--cert", "\(pki)/metrics.crt", "--key", "\(pki)/metrics.key"], url)
            #expect(reader.status == 0 && reader.output.hasSuffix("\n200"), "metrics reader: \(reader.output.suffix(300))")
            let asDroplet = bed.tls(bed.hosts[1])
            let droplet = try await curl(["--cert", asDroplet.certificate, "--key", asDroplet.key], url)
            #expect(droplet.output.hasSuffix("\n403") && droplet.output.contains("may not read metrics"), "a droplet's certificate: \(droplet.output.suffix(300))")
            let anonymous = try await curl([], url)
            #expect(anonymous.status != 0 && !anonymous.output.contains("mizar_"), "no client certificate: \(anonymous.output.suffix(300))")
            let plain = try await curl([], "http://\(h1.ip):9470/metrics")
            #expect(plain.status != 0 || !plain.output.contains("mizar_"), "plaintext: \(plain.output.suffix(300))")

            // Debian's Prometheus, scraping every second.
            let dir = "/tmp/mizar-prom-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            try makeDirectories(dir)
            defer { _ = runCapturing(["rm", "-rf", dir]) }
            let targets = bed.hosts.map { "\"\($0.ip):9470\"" }.joined(separator: ", ")
            try writeFile("\(dir)/prometheus.yml", """
                global: {scrape_interval: 1s, evaluation_interval: 1s}
                scrape_configs:
                  - job_name: transitd
                    scheme: https
                    tls_config: {ca_file: \(pki)/ca.crt, cert_file: \(pki)/metrics.crt, key_file: \(pki)/metrics.key}
                    static_configs: [{targets: [\(targets)]}]
                  - job_name: operator
                    static_configs: [{targets: ["127.0.0.1:\(operatorPort)"]}]

                """)
            let promPort = 20_000 + Int(getpid() % 20_000)
            let prometheus = try spawnDaemon(["/usr/bin/prometheus", "--config.file=\(dir)/prometheus.yml", "--storage.tsdb.path=\(dir)/data",
                                              "--web.listen-address=127.0.0.1:\(promPort)", "--log.level=warn"], log: "\(dir)/prometheus.log")
            defer {
                kill(prometheus, SIGTERM)
                reap(prometheus)
            }
            /// The answer's status ("success", "error": the query's fault) and its rows.
            func ask(_ promql: String) async throws -> (status: String, error: String, rows: [[String: Any]]) {
                let r = try await onOwnThread { runCapturing(["curl", "-sS", "--max-time", "5", "-G", "http://127.0.0.1:\(promPort)/api/v1/query",
                                                              "--data-urlencode", "query=\(promql)"]) }
                guard r.status == 0, let json = try? JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any] else { return ("unreachable", r.output, []) }
                let rows = (json["data"] as? [String: Any])?["result"] as? [[String: Any]] ?? []
                return (json["status"] as? String ?? "", json["error"] as? String ?? "", rows)
            }
            func query(_ promql: String) async throws -> [(labels: [String: String], value: Double)] {
                let result = try await ask(promql).rows
                return result.compactMap { row in
                    guard let value = row["value"] as? [Any], value.count == 2, let text = value[1] as? String, let v = Double(text) else { return nil }
                    return ((row["metric"] as? [String: String]) ?? [:], v)
                }
            }
            let up = try await eventually(30) { try await query("up == 1").count == 4 }
            let log = (try? String(contentsOfFile: "\(dir)/prometheus.log", encoding: .utf8)) ?? ""
            let targetsUp = try await query("up")
            #expect(up, "every target up: \(targetsUp) \(log.suffix(1500))")

            // Drops of a known reason on two droplets: 5 to h1, 3 to h2.
            let outsider = try await onOwnThread { try bed.addStranger("promx", ip: IPv4Address(172, 30, bed.underlayNet, 78), mac: "02:4d:00:00:00:78") }
            defer { _ = try? NetworkNamespace.delete(path: outsider) }
            for i in 0..<5 { try Traffic.sendUDP(from: outsider, to: bed.hosts[0].ip, port: 61_235, payload: Array("p\(i)".utf8)) }
            for i in 0..<3 { try Traffic.sendUDP(from: outsider, to: bed.hosts[1].ip, port: 61_236, payload: Array("q\(i)".utf8)) }
            func counted(_ host: Testbed.Host) async throws -> Double {
                let r = try await onOwnThread { runCapturing([siblingExecutable("mizarctl"), "counters", "--all", "--json", "--testbed", "\(bed.name)/\(host.name)"]) }
                guard let json = try? JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any],
                      let drops = json["drops"] as? [[String: Any]],
                      let row = drops.first(where: { $0["name"] as? String == "snat_no_mapping" }) else { return 0 }
                return Double("\(row["packets"] ?? "0")") ?? 0
            }
            var fromCLI = 0.0
            for host in bed.hosts { fromCLI += try await counted(host) }
            #expect(fromCLI >= 8)
            let promql = #"sum(mizar_datapath_drops_total{reason="snat_no_mapping"})"#
            var fromPrometheus = -1.0
            let agreed = try await eventually(15) {
                fromPrometheus = try await query(promql).first?.value ?? -1
                return fromPrometheus == fromCLI
            }
            #expect(agreed, "PromQL \(promql) = \(fromPrometheus), mizarctl counters on the three droplets: \(fromCLI)")
            // Per droplet too: h1's series moved by 5 and h2's by 3 relative to h3.
            let perDroplet = try await query(#"mizar_datapath_drops_total{reason="snat_no_mapping"}"#)
            #expect(perDroplet.count == 3, "\(perDroplet)")
            // The operator's series arrive too.
            #expect(try await query("sum(mizar_operator_queue_depth)").count == 1)
            // Per-VPC series name VNIs only: bounded by the VPCs a droplet knows.
            let vpcSeries = try await query("count(mizar_vpc_packets_total)").first?.value ?? 0
            let vpcs = try await store.list(VpcSpec.self).objects.count
            #expect(vpcSeries <= Double(2 * 3 * max(vpcs, 1)), "per-VPC series \(vpcSeries) for \(vpcs) VPCs")

            // The dashboard's queries (deploy/grafana), its variables filled
            // in as Grafana does: all valid PromQL; those on series this
            // cluster has by now return some.
            let dashboard = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "deploy/grafana/mizar.json"))) as? [String: Any])
            let panels = try #require(dashboard["panels"] as? [[String: Any]])
            var asked = 0
            for panel in panels {
                for target in panel["targets"] as? [[String: Any]] ?? [] {
                    let expr = try #require(target["expr"] as? String)
                    let promql = expr.replacingOccurrences(of: "$__rate_interval", with: "1m").replacingOccurrences(of: "$droplet", with: ".*")
                    let answer = try await ask(promql)
                    #expect(answer.status == "success", "\(panel["title"] ?? ""): \(expr): \(answer.error)")
                    asked += 1
                }
            }
            #expect(asked >= 15)
            for must in [#"sum by (reason) (rate(mizar_datapath_drops_total{instance=~".*"}[1m]))"#,
                         #"max by (map) (mizar_datapath_map_entries{instance=~".*"} / mizar_datapath_map_capacity{instance=~".*"})"#,
                         "sum by (queue) (mizar_operator_queue_depth)"] {
                #expect(try await !query(must).isEmpty, "no series for \(must)")
            }
        }
    }
}
