// What the whole-system benchmarks share: a simulated cluster with its own
// etcd on tmpfs, the operator in this process, a VPC "bench" with a /16
// subnet "bench-1" on two bouncers; and how figures are printed.
import Glibc
import Logging
import MizarAPI
import MizarCore
import MizarEtcd
import MizarOperator
import MizarStore
import MizarSystem
import MizarTestbed
import MizarTransitClient

public func percentile(_ values: [Double], _ p: Double) -> Double {
    let s = values.sorted()
    guard !s.isEmpty else { return .nan }
    return s[min(s.count - 1, Int((Double(s.count - 1) * p).rounded()))]
}

public func say(_ line: String) {
    print(line)
    fflush(nil)
}

/// Runs `body` against a cluster of `hosts` simulated hosts whose droplets
/// are Ready and whose subnet bench-1 (10.0.0.0/16 in VPC bench) is
/// Provisioned; removes all of it afterwards.
public func withBenchCluster(name: String, hosts: Int, underlayNet: UInt8,
                             _ body: (Testbed, Store) async throws -> Void) async throws {
    try await withBenchOperator(name: name, hosts: hosts, underlayNet: underlayNet) { bed, store, _ in try await body(bed, store) }
}

/// The same, with the operator (its connection pool counts the calls it
/// makes to each transitd).
public func withBenchOperator(name: String, hosts: Int, underlayNet: UInt8,
                              _ body: (Testbed, Store, Operator) async throws -> Void) async throws {
    var logger = Logger(label: "bench")
    logger.logLevel = .error
    var options = Testbed.Options.besideThisExecutable()
    options.hosts = hosts
    options.underlayNet = underlayNet
    // etcd's data on tmpfs: the figures are Mizar's, not this VM's disk's.
    let (bed, etcd, _) = try Testbed.upWithEtcd(name: name, options: options, etcdDirectory: "/dev/shm/mizar-bench-\(name)-\(getpid())")
    defer { bed.down(); etcd.stop() }
    try await withEtcd(etcd.endpoints(), tls: bed.operatorTLS) { client in
        let store = Store(etcd: client)
        var config = Operator.Config()
        config.workers = 8
        let op = Operator(store: store, pool: HTTP2TransitPool(tls: bed.operatorTLS), config: config, logger: logger)
        let running = Task { await op.run() }
        defer { running.cancel() }
        let deadline = monotonicSeconds() + 30 + Double(hosts)
        while try await store.list(DropletSpec.self).objects.filter({ $0.status?.common.phase == .ready }).count < hosts {
            guard monotonicSeconds() < deadline else { throw TestbedError("droplets not ready") }
            try await Task.sleep(for: .milliseconds(100))
        }
        try await store.create(Vpc(name: "bench", spec: VpcSpec(cidr: "10.0.0.0/8")))
        try await store.create(Subnet(name: "bench-1", spec: SubnetSpec(vpc: "bench", cidr: "10.0.0.0/16", bouncers: 2)))
        while try await store.get(SubnetSpec.self, "bench-1")?.status?.common.phase != .provisioned {
            guard monotonicSeconds() < deadline + 30 else { throw TestbedError("subnet bench-1 not provisioned") }
            try await Task.sleep(for: .milliseconds(50))
        }
        try await body(bed, store, op)
    }
}
