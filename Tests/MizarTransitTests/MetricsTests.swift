import Glibc
import Logging
import MizarCore
import MizarMetrics
import MizarRPC
import MizarSystem
import MizarTestbed
import Prometheus
import Testing

/// A series' value, 0 when absent (the counters here start at 0).
func seriesValue(_ text: String, _ series: String) -> Double {
    metricValue(text, series) ?? 0
}

@Suite("metrics")
struct MetricsUnitTests {
    @Test("counters read whole are exported as growth: a reading below the last (a reset underneath) counts from zero, never down")
    func monotonic() {
        let registry = PrometheusCollectorRegistry()
        let c = MonotonicCounters(registry, name: "t_total", help: "test", label: "what")
        c.record([("a", 5), ("b", 0)])
        c.record([("a", 9), ("b", 2)])
        #expect(seriesValue(registry.emitToString(), #"t_total{what="a"}"#) == 9)
        // Reset underneath: 3 since the reset; the export goes on from 9.
        c.record([("a", 3), ("b", 2)])
        #expect(seriesValue(registry.emitToString(), #"t_total{what="a"}"#) == 12)
        #expect(seriesValue(registry.emitToString(), #"t_total{what="b"}"#) == 2)
    }

    @Test("metrics are served off loopback only with mutual TLS; bad text is refused naming the flag; a server off loopback without TLS files cannot be made")
    func loopbackOnlyWithoutTLS() throws {
        #expect(try MetricsServer.address(parsing: "127.0.0.1:9470", field: "--metrics-address")?.port == 9470)
        #expect(try MetricsServer.address(parsing: "none", field: "--metrics-address") == nil)
        for bad in ["0.0.0.0:9470", "10.0.0.1:9470", "9470", "example.com:80"] {
            #expect(throws: ValidationError.self) { _ = try MetricsServer.address(parsing: bad, field: "--metrics-address") }
        }
        #expect(try MetricsServer.address(parsing: "10.0.0.1:9470", field: "--metrics-address", tls: true)?.host == "10.0.0.1")
        #expect(throws: ValidationError.self) { _ = try MetricsServer.address(parsing: "9470", field: "--metrics-address", tls: true) }
        #expect(throws: ValidationError.self) {
            _ = try MetricsServer(address: HostPort(host: "10.0.0.1", port: 9470), registry: PrometheusCollectorRegistry(), logger: Logger(label: "t"))
        }
    }

    @Test("families with several labels: series of a reading that no longer names them leave the registry (a VPC deleted)")
    func labelledSeriesGo() {
        let registry = PrometheusCollectorRegistry()
        let c = MonotonicCounters(registry, name: "v_total", help: "t", labels: ["vni", "outcome"])
        c.record([(["1", "forwarded"], 4), (["2", "forwarded"], 9)], dropMissing: true)
        #expect(seriesValue(registry.emitToString(), #"v_total{vni="2",outcome="forwarded"}"#) == 9)
        c.record([(["1", "forwarded"], 6)], dropMissing: true)
        let text = registry.emitToString()
        #expect(seriesValue(text, #"v_total{vni="1",outcome="forwarded"}"#) == 6)
        #expect(!text.contains(#"vni="2""#), "\(text)")
    }
}

extension ClusterTests {
    /// A transitd's metrics, fetched inside its host's namespace.
    static func scrape(_ host: Testbed.Host, path: String = "/metrics") async throws -> (status: Int32, output: String) {
        try await onOwnThread {
            runCapturing(["nsenter", "--net=\(host.netns)", "curl", "-sS", "--max-time", "5", "-w", "\n%{http_code}",
                          "http://127.0.0.1:9470\(path)"])
        }
    }

    static func promtool(_ text: String) async throws {
        let check = try await promtoolCheck(text)
        #expect(check.status == 0, "promtool: \(check.output)")
    }

    @Test("transitd serves its data plane's counters and its calls to Prometheus on loopback: valid text, 7 dropped packets move their reason's series by 7, as the API's counters; calls by method and code")
    func transitdMetrics() async throws {
        let c = try await World.get().c   // (with its endpoints: a2 and b1 live on h2)
        let h2 = c.host(2)
        let first = try await Self.scrape(h2)
        #expect(first.status == 0 && first.output.hasSuffix("\n200"), "scrape: \(first.output.suffix(200))")
        let text = String(first.output.dropLast(4))
        #expect(text.contains("# TYPE mizar_datapath_drops_total counter"))
        #expect(text.contains(#"mizar_datapath_packets_total{counter="deliver"}"#))
        // Map pressure: the bouncer of s1 holds endpoints; capacities are real.
        #expect(seriesValue(text, #"mizar_datapath_map_capacity{map="mz_endpoints"}"#) == 1_048_576)
        #expect(seriesValue(text, #"mizar_datapath_map_entries{map="mz_local"}"#) >= 1, "h2's local endpoints")
        try await Self.promtool(text)

        // 7 unsolicited datagrams to h2's SNAT range from the underlay.
        let series = #"mizar_datapath_drops_total{reason="snat_no_mapping"}"#
        let outsider = try await onOwnThread { try c.bed.addStranger("metx", ip: IPv4Address(172, 30, c.bed.underlayNet, 77), mac: "02:4d:00:00:00:77") }
        defer { _ = try? NetworkNamespace.delete(path: outsider) }
        let before = seriesValue(String(try await Self.scrape(h2).output.dropLast(4)), series)
        for i in 0..<7 { try Traffic.sendUDP(from: outsider, to: h2.ip, port: 61_234, payload: Array("m\(i)".utf8)) }
        try await Task.sleep(for: .milliseconds(200))
        let after = seriesValue(String(try await Self.scrape(h2).output.dropLast(4)), series)
        #expect(after - before == 7, "snat_no_mapping moved from \(before) to \(after)")
        let api = try await c.client(2) { try await $0.getCounters(.init()) }.drops.first { $0.name == "snat_no_mapping" }?.packets
        #expect(api.map { Double($0) } == after, "the API says \(api ?? 0), the metrics \(after)")

        // Its calls, by method and status code, timed.
        let refused = try? await c.client(2) { try await $0.putVPC(.with { $0.vni = 0 }) }
        #expect(refused == nil, "a VPC with VNI 0 was accepted")
        let rpc = String(try await Self.scrape(h2).output.dropLast(4))
        #expect(seriesValue(rpc, #"mizar_rpc_requests_total{method="GetCounters",code="ok"}"#) >= 1, "\(rpc.split(separator: "\n").filter { $0.contains("mizar_rpc_requests_total") })")
        #expect(seriesValue(rpc, #"mizar_rpc_requests_total{method="PutVPC",code="invalidArgument"}"#) >= 1)
        #expect(seriesValue(rpc, #"mizar_rpc_duration_seconds_count{method="GetCounters"}"#) >= 1)
        try await Self.promtool(rpc)

        // Anything but GET /metrics is refused.
        let other = try await Self.scrape(h2, path: "/")
        #expect(other.output.hasSuffix("\n404"))
    }
}
