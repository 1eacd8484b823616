import Prometheus
import Synchronization

/// Counters whose values are read whole from elsewhere (a data plane's
/// per-CPU counters), exported as Prometheus counters: each reading adds
/// what grew since the last one. A reading below the last one means the
/// source was reset underneath (a data plane's counters zeroed, maps made
/// anew): it counts as growth from zero, so the exported counter never goes
/// down and nothing fails. One family of series: `name` with one label.
public final class MonotonicCounters: Sendable {
    let registry: PrometheusCollectorRegistry
    let name: String, help: String, label: String
    private let state = Mutex<[String: (counter: Counter, last: UInt64)]>([:])

    /// `name` whole (ending in `_total`), its help text and its label.
    public init(_ registry: PrometheusCollectorRegistry, name: String, help: String, label: String) {
        self.registry = registry
        self.name = name
        self.help = help
        self.label = label
    }

    /// Takes a reading of every series (by the label's value).
    public func record(_ readings: [(String, UInt64)]) {
        state.withLock { series in
            for (value, reading) in readings {
                let entry = series[value] ?? (registry.makeCounter(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help),
                                                                 labels: [(label, value)]), 0)
                let grew = reading >= entry.last ? reading - entry.last : reading
                if grew > 0 { entry.counter.increment(by: Int64(clamping: grew)) }
                series[value] = (entry.counter, reading)
            }
        }
    }
}
