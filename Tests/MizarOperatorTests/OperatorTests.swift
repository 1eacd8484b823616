import Glibc
import Logging
import MizarAPI
import MizarCore
import MizarEtcd
@testable import MizarOperator
import MizarRPC
import MizarStore
import MizarSystem
import MizarTestbed
import MizarTransit
import Testing

/// A 3-host simulated cluster whose transitds register in a real etcd, and
/// the operator running in this process against the same etcd.
final class Plane: Sendable {
    let bed: Testbed
    let etcd: EtcdServer
    let root: String

    static let shared: Result<Plane, TestbedError> = {
        do { return .success(try Plane()) } catch let e as TestbedError { return .failure(e) } catch {
            return .failure(TestbedError("\(error)"))
        }
    }()

    init() throws {
        root = "/mizar/v1/"
        // etcd serves the management network the testbed makes, where the
        // transitds register and this process's operator calls them.
        let port = try EtcdServer.freePort()
        var options = Testbed.Options.besideThisExecutable()
        options.management = true
        options.etcd = "\(Testbed.managementIP):\(port)"
        options.etcdRoot = root
        let name = "mzo\(getpid() % 100000)"
        Testbed.down(name: name)
        bed = try Testbed.up(name: name, options: options)
        do {
            etcd = try EtcdServer(directory: "/tmp/mizar-etcd-op-\(getpid())", listen: ["127.0.0.1", "\(Testbed.managementIP)"],
                                  clientPort: port)
        } catch {
            bed.down()
            throw error
        }
        if getenv("MIZAR_KEEP_TESTBED") == nil {
            atexit { if case .success(let p) = Plane.shared { p.bed.down(); p.etcd.stop() } }
        }
    }

    /// Runs `body` with a store and an operator working on it.
    func withOperator<R: Sendable>(_ body: (Store, Operator) async throws -> R) async throws -> R {
        try await withEtcd(host: "127.0.0.1", port: etcd.clientPort) { client in
            let store = Store(etcd: client, root: root)
            var logger = Logger(label: "operator")
            logger.logLevel = .warning
            let op = Operator(store: store, logger: logger)
            let task = Task { await op.run() }
            defer { task.cancel() }
            return try await body(store, op)
        }
    }

    func droplet(_ host: String) -> String { "\(bed.name)-\(host)" }
}

/// Waits (up to `seconds`) for `condition`; whether it came true.
func eventually(_ seconds: Double = 10, _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = monotonicSeconds() + seconds
    while monotonicSeconds() < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}


@Suite("operator on etcd and the simulated cluster", .serialized)
struct OperatorTests {
    @Test("declared objects become reachable endpoints across hosts, tenants stay apart, and deleting them leaves nothing")
    func endToEnd() async throws {
        let plane = try Plane.shared.get()
        try await plane.withOperator { store, op in
            // Droplets register themselves and become Ready.
            let ready = try await eventually {
                try await store.list(DropletSpec.self).objects.filter { $0.status?.common.phase == .ready }.count == 3
            }
            let dropletPhases = try await store.list(DropletSpec.self).objects.map { "\($0.name) \($0.status?.common.phase.rawValue ?? "-")" }
            #expect(ready, "droplets not Ready: \(dropletPhases)")

            for vpc in ["a", "b"] {
                try await store.create(Vpc(name: vpc, spec: VpcSpec(cidr: "10.0.0.0/16")))
                try await store.create(Subnet(name: "\(vpc)-1", spec: SubnetSpec(vpc: vpc, cidr: "10.0.1.0/24")))
            }
            try await store.create(Subnet(name: "a-2", spec: SubnetSpec(vpc: "a", cidr: "10.0.2.0/24")))
            let subnetsReady = try await eventually {
                try await store.list(SubnetSpec.self).objects.allSatisfy { $0.status?.common.phase == .provisioned }
            }
            #expect(subnetsReady)
            for vpc in ["a", "b"] {
                let v = try #require(try await store.get(VpcSpec.self, vpc))
                #expect(v.status?.common.phase == .provisioned && v.status?.vni != nil && v.status?.dividers?.count == 1)
            }
            #expect(try await store.get(VpcSpec.self, "a")?.status?.vni != store.get(VpcSpec.self, "b")?.status?.vni)
            let placements: [(String, String, String, String?)] = [
                ("ea1", "a", "a-1", "h1"), ("ea2", "a", "a-1", "h2"), ("ea3", "a", "a-2", "h3"), ("eb1", "b", "b-1", "h2"),
            ]
            op.pool.resetCounts()
            for (name, vpc, subnet, host) in placements {
                let netns = try plane.bed.addEndpointNetns(name)
                try await store.create(Endpoint(name: name, spec: EndpointSpec(vpc: vpc, subnet: subnet, droplet: host.map(plane.droplet),
                                                                               netns: netns)))
            }
            let provisioned = try await eventually {
                try await store.list(EndpointSpec.self).objects.allSatisfy { $0.status?.common.phase == .provisioned }
            }
            let all = try await store.list(EndpointSpec.self).objects
            #expect(provisioned, "\(all.map { "\($0.name): \($0.status?.common.phase.rawValue ?? "-") \($0.status?.common.reason ?? "")" })")
            let byName = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })
            for e in all {
                let ip = try IPv4Address(parsing: try #require(e.status?.ip))
                let subnet = try #require(try await store.get(SubnetSpec.self, e.spec.subnet))
                #expect(try CIDR(parsing: subnet.spec.cidr).contains(ip))
                #expect((e.status?.common.provisioningDelayMs ?? -1) > 0)
            }
            // Each endpoint cost one call to its host and one per bouncer.
            let calls = op.pool.callCounts().values.reduce(0, +)
            #expect(calls == 4 * 2, "transitd calls for 4 endpoints with one bouncer each: \(op.pool.callCounts())")

            func ns(_ name: String) -> String { plane.bed.endpointNetns(name) }
            func ip(_ name: String) throws -> IPv4Address { try IPv4Address(parsing: byName[name]!.status!.ip!) }
            for (x, y) in [("ea1", "ea2"), ("ea2", "ea1"), ("ea1", "ea3"), ("ea3", "ea1")] {
                let ping = Traffic.ping(from: ns(x), try ip(y), count: 2, interval: 0.1)
                #expect(ping.received == 2, "\(x) -> \(y): \(ping.output)")
                let p = Array("\(x) to \(y)".utf8)
                let r = try Traffic.exchange(.tcp, from: ns(x), to: ns(y), address: try ip(y), port: 7300, payload: p)
                #expect(r.atServer == p && r.atClient == p.reversed(), "TCP \(x) -> \(y)")
            }
            // eb1 is in VPC b: nothing crosses, in either direction.
            for (x, y) in [("ea1", "eb1"), ("eb1", "ea1"), ("eb1", "ea2")] {
                #expect(Traffic.ping(from: ns(x), try ip(y), count: 2, interval: 0.1, wait: 0.3).received == 0, "\(x) reached \(y) across VPCs")
            }

            // Delete the VPCs: subnets, endpoints, bouncers and dividers go
            // with them, and every host's tables empty.
            try await store.delete(VpcSpec.self, "a")
            try await store.delete(VpcSpec.self, "b")
            let gone = try await eventually(15) {
                for kind in Kind.allCases where kind != .droplet {
                    if try await store.etcd.count(prefix: store.prefix(kind)) > 0 { return false }
                }
                return true
            }
            var left: [String] = []
            for kind in Kind.allCases where kind != .droplet {
                left += try await store.etcd.list(prefix: store.prefix(kind)).kvs.map(\.key)
            }
            #expect(gone, "objects left: \(left)")
            #expect(try await store.etcd.count(prefix: store.root + "ipam/") == 0, "addresses still held")
            let index = try await store.etcd.list(prefix: store.root + "index/").kvs.map(\.key)
            #expect(index.isEmpty, "index keys left: \(index)")
            for host in plane.bed.hosts {
                let tables = try await withTransitClient(.unix(host.socket)) { c in
                    (try await c.listVPCs(.init()).vpcs.count, try await c.listSubnets(.init()).subnets.count,
                     try await c.listEndpoints(.init()).endpoints.count, try await c.listEndpointInterfaces(.init()).interfaces.count)
                }
                #expect(tables == (0, 0, 0, 0), "\(host.name) still has VPCs/subnets/endpoints/interfaces \(tables)")
            }
        }
    }
}
