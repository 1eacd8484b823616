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
}
