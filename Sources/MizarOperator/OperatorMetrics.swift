import MizarAPI
import Prometheus

/// The operator's metrics: reconciles by kind and outcome and how long they
/// took, how long endpoints took from create to Provisioned, and how deep
/// each work queue is (read at each scrape). Labels are bounded: object
/// kinds, four outcomes, the queues.
public struct OperatorMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()

    static let reconcileBuckets: [Duration] = [.milliseconds(1), .milliseconds(2.5), .milliseconds(5), .milliseconds(10), .milliseconds(25),
                                               .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
                                               .seconds(2.5), .seconds(5), .seconds(10)]
    static let provisioningBuckets: [Duration] = [.milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
                                                  .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60)]

    /// One reconcile: `outcome` is done, retry, failed (for good) or error.
    func reconciled(_ kind: Kind, outcome: String, took: Duration) {
        registry.makeCounter(descriptor: MetricNameDescriptor(
            namespace: "mizar", subsystem: "operator", metricName: "reconciles", unitName: "total",
            helpText: "Reconciles, by object kind and outcome (done, retry, failed, error)."),
            labels: [("kind", kind.rawValue), ("outcome", outcome)]).increment()
        registry.makeDurationHistogram(descriptor: MetricNameDescriptor(
            namespace: "mizar", subsystem: "operator", metricName: "reconcile_duration", unitName: "seconds",
            helpText: "How long reconciles took, by object kind."),
            labels: [("kind", kind.rawValue)], buckets: Self.reconcileBuckets).record(took)
    }

    /// An endpoint became Provisioned (the first time) `milliseconds` after
    /// it was created.
    func provisioned(milliseconds: Double) {
        registry.makeDurationHistogram(descriptor: MetricNameDescriptor(
            namespace: "mizar", subsystem: "operator", metricName: "provisioning_delay", unitName: "seconds",
            helpText: "From an endpoint's create to its Provisioned status."),
            labels: [], buckets: Self.provisioningBuckets).record(.milliseconds(max(0, milliseconds)))
    }

    func queueDepth(_ queue: String, _ depth: Int) {
        registry.makeGauge(descriptor: MetricNameDescriptor(
            namespace: "mizar", subsystem: "operator", metricName: "queue_depth", unitName: "",
            helpText: "Objects waiting in each work queue."),
            labels: [("queue", queue)]).set(Int64(depth))
    }
}

extension Operator {
    /// Brings what is read at a scrape (the queues' depths) up to date.
    public func refreshMetrics() async {
        let queues: [(String, WorkQueue)] = [("vpc", vpcQueue), ("subnet", subnetQueue), ("endpoint", endpointQueue),
                                             ("droplet", dropletQueue), ("bouncer", bouncerQueue), ("divider", dividerQueue),
                                             ("policy", policyQueue), ("policy_status", policyStatusQueue), ("claim", claimQueue)]
        for (name, q) in queues { metrics.queueDepth(name, await q.depth) }
    }
}
