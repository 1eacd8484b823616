import Logging
import MizarMetrics
import MizarTransit
import Prometheus

/// transitd's metrics: the data plane's counters and drops, read at each
/// scrape (summed over CPUs) and exported as counters that never go down,
/// even when the data plane's are reset underneath. Labels are bounded:
/// one series per counter and per drop reason, none per endpoint.
struct DatapathMetrics: Sendable {
    static let defaultAddress = "127.0.0.1:9470"

    let registry = PrometheusCollectorRegistry()
    let packets: MonotonicCounters, bytes: MonotonicCounters
    let drops: MonotonicCounters, droppedBytes: MonotonicCounters
    let failures: Counter
    let host: TransitHost
    let logger: Logger

    init(host: TransitHost, logger: Logger) {
        self.host = host
        self.logger = logger
        packets = MonotonicCounters(registry, name: "mizar_datapath_packets_total",
                                    help: "Packets the data plane counted, by counter (what a program did with them).", label: "counter")
        bytes = MonotonicCounters(registry, name: "mizar_datapath_bytes_total", help: "Bytes the data plane counted, by counter.", label: "counter")
        drops = MonotonicCounters(registry, name: "mizar_datapath_drops_total", help: "Packets the data plane dropped, by reason.", label: "reason")
        droppedBytes = MonotonicCounters(registry, name: "mizar_datapath_dropped_bytes_total",
                                         help: "Bytes the data plane dropped, by reason.", label: "reason")
        failures = registry.makeCounter(descriptor: MetricNameDescriptor(
            namespace: "mizar", subsystem: "metrics", metricName: "read_failures", unitName: "total",
            helpText: "Scrapes for which the data plane's counters could not be read."))
    }

    /// Reads the data plane's counters into the registry.
    func refresh() async {
        do {
            let (counters, dropped) = try await host.counters()
            packets.record(counters.map { ($0.0, $0.1.packets) })
            bytes.record(counters.map { ($0.0, $0.1.bytes) })
            drops.record(dropped.map { ($0.0, $0.1.packets) })
            droppedBytes.record(dropped.map { ($0.0, $0.1.bytes) })
        } catch {
            failures.increment()
            logger.warning("metrics: the data plane's counters could not be read", metadata: ["error": "\(error)"])
        }
    }
}
