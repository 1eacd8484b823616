import Logging
import MizarCore
import MizarMetrics
import MizarTransit
import Prometheus
import Synchronization

/// transitd's metrics: the data plane's counters and drops, read at each
/// scrape (summed over CPUs) and exported as counters that never go down,
/// even when the data plane's are reset underneath. Labels are bounded:
/// one series per counter and per drop reason, none per endpoint.
final class DatapathMetrics: Sendable {
    static let defaultAddress = "127.0.0.1:9470"

    let registry = PrometheusCollectorRegistry()
    let packets: MonotonicCounters, bytes: MonotonicCounters
    let drops: MonotonicCounters, droppedBytes: MonotonicCounters
    let vpcPackets: MonotonicCounters, vpcBytes: MonotonicCounters
    let failures: Counter
    let host: TransitHost
    let logger: Logger
    /// When the tables were last counted: at most every 10 s (counting reads
    /// every entry, in batches of a thousand: about 0.3 s of a core for a
    /// million flows; a scraper every second need not pay it each time).
    let counted = Mutex<ContinuousClock.Instant?>(nil)
    static let countEvery = Duration.seconds(10)

    init(host: TransitHost, logger: Logger) {
        self.host = host
        self.logger = logger
        packets = MonotonicCounters(registry, name: "mizar_datapath_packets_total",
                                    help: "Packets the data plane counted, by counter (what a program did with them).", label: "counter")
        bytes = MonotonicCounters(registry, name: "mizar_datapath_bytes_total", help: "Bytes the data plane counted, by counter.", label: "counter")
        drops = MonotonicCounters(registry, name: "mizar_datapath_drops_total", help: "Packets the data plane dropped, by reason.", label: "reason")
        droppedBytes = MonotonicCounters(registry, name: "mizar_datapath_dropped_bytes_total",
                                         help: "Bytes the data plane dropped, by reason.", label: "reason")
        vpcPackets = MonotonicCounters(registry, name: "mizar_vpc_packets_total",
                                       help: "Packets of each VPC known here (by VNI), forwarded or dropped.", labels: ["vni", "outcome"])
        vpcBytes = MonotonicCounters(registry, name: "mizar_vpc_bytes_total",
                                     help: "Bytes of each VPC known here (by VNI), forwarded or dropped.", labels: ["vni", "outcome"])
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
            // One read per VPC: off the pool, as the table counts below.
            let host = self.host
            let vpcs = try await onOwnThread { try host.vpcCounters() }
            let byOutcome = vpcs.flatMap { v in [(["\(v.vni.value)", "forwarded"], v.forwarded), (["\(v.vni.value)", "dropped"], v.dropped)] }
            vpcPackets.record(byOutcome.map { ($0.0, $0.1.packets) }, dropMissing: true)
            vpcBytes.record(byOutcome.map { ($0.0, $0.1.bytes) }, dropMissing: true)
            let now = ContinuousClock.now
            let due = counted.withLock { last in
                guard last.map({ now - $0 >= Self.countEvery }) ?? true else { return false }
                last = now
                return true
            }
            if due {
                // (Blocking reads: on a thread of their own, off the pool.)
                for m in try await onOwnThread({ try host.mapPressure() }) {
                    registry.makeGauge(descriptor: MetricNameDescriptor(
                        namespace: "mizar", subsystem: "datapath", metricName: "map_entries", unitName: "",
                        helpText: "Entries in each of the data plane's hash tables (counted at most every 10 s)."),
                        labels: [("map", m.map)]).set(Int64(m.entries))
                    registry.makeGauge(descriptor: MetricNameDescriptor(
                        namespace: "mizar", subsystem: "datapath", metricName: "map_capacity", unitName: "",
                        helpText: "How many entries each of the data plane's hash tables can hold."),
                        labels: [("map", m.map)]).set(Int64(m.capacity))
                }
            }
        } catch {
            failures.increment()
            logger.warning("metrics: the data plane's counters could not be read", metadata: ["error": "\(error)"])
        }
    }
}
