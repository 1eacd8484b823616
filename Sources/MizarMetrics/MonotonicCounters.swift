import Prometheus
import Synchronization

/// Counters whose values are read whole from elsewhere (a data plane's
/// per-CPU counters), exported as Prometheus counters: each reading adds
/// what grew since the last one. A reading below the last one means the
/// source was reset underneath (a data plane's counters zeroed, maps made
/// anew): it counts as growth from zero, so the exported counter never goes
/// down and nothing fails. One family of series: `name` with its labels.
public final class MonotonicCounters: Sendable {
    let registry: PrometheusCollectorRegistry
    let name: String, help: String, labels: [String]
    private let state = Mutex<[[String]: (counter: Counter, last: UInt64)]>([:])

    /// `name` whole (ending in `_total`), its help text and its labels.
    public init(_ registry: PrometheusCollectorRegistry, name: String, help: String, labels: [String]) {
        self.registry = registry
        self.name = name
        self.help = help
        self.labels = labels
    }

    /// One label.
    public convenience init(_ registry: PrometheusCollectorRegistry, name: String, help: String, label: String) {
        self.init(registry, name: name, help: help, labels: [label])
    }

    /// Takes a reading of every series (by the label's value).
    public func record(_ readings: [(String, UInt64)]) {
        record(readings.map { ([$0.0], $0.1) })
    }

    /// Takes a reading of series by their labels' values. With
    /// `dropMissing`, series the reading does not name go from the
    /// registry (a VPC deleted here): the family stays bounded by what
    /// exists.
    public func record(_ readings: [([String], UInt64)], dropMissing: Bool = false) {
        state.withLock { series in
            for (values, reading) in readings {
                let entry = series[values] ?? (registry.makeCounter(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help),
                                                                  labels: Array(zip(labels, values))), 0)
                let grew = reading >= entry.last ? reading - entry.last : reading
                if grew > 0 { entry.counter.increment(by: Int64(clamping: grew)) }
                series[values] = (entry.counter, reading)
            }
            guard dropMissing else { return }
            let named = Set(readings.map(\.0))
            for (values, entry) in series where !named.contains(values) {
                registry.unregisterCounter(entry.counter)
                series[values] = nil
            }
        }
    }
}
