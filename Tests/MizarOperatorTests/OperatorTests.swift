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
import MizarTransitClient
import Synchronization
import Testing

/// A 3-host simulated cluster whose transitds register in a real etcd, and
/// the operator running in this process against the same etcd.
final class Plane: Sendable {
    let bed: Testbed
    let etcd: EtcdCluster
    let root: String
    let options: Testbed.Options

    /// Brought up once, on a thread of its own (it takes seconds of
    /// blocking work: the tests waiting for it do not hold the
    /// concurrency pool meanwhile), taken down at exit.
    private static let made = Task {
        try await onOwnThread {
            let p = try Plane(name: "mzo\(getpid() % 100000)", hosts: 3, underlayNet: 0)
            if getenv("MIZAR_KEEP_TESTBED") == nil {
                madePlane.withLock { $0 = p }
                atexit { madePlane.withLock { $0 }?.down() }
            }
            return p
        }
    }
    private static let madePlane = Mutex<Plane?>(nil)

    static func get() async throws -> Plane { try await made.value }

    /// etcd as it runs in production: three members.
    static let etcdMembers = 3

    init(name: String, hosts: Int, underlayNet: UInt8) throws {
        root = "/mizar/v1/"
        // etcd serves the management network the testbed makes, where the
        // transitds register and this process's operator calls them.
        var options = Testbed.Options.besideThisExecutable()
        options.hosts = hosts
        options.underlayNet = underlayNet
        options.etcdRoot = root
        // Metrics on each droplet's address, with mutual TLS, as a
        // Prometheus elsewhere on the network scrapes them.
        options.extraArguments += ["--metrics-address", "droplet"]
        let made = try Testbed.upWithEtcd(name: name, options: options, etcdDirectory: "/tmp/mizar-etcd-\(name)", etcdMembers: Self.etcdMembers)
        (bed, etcd, self.options) = (made.0, made.1, made.2)
    }

    func down() {
        bed.down()
        etcd.stop()
    }

    /// Runs `body` with a store and an operator working on it.
    func withOperator<R: Sendable>(_ body: (Store, Operator) async throws -> R) async throws -> R {
        try await withEtcd(etcd.endpoints(), tls: bed.operatorTLS) { client in
            let store = Store(etcd: client, root: root)
            var logger = Logger(label: "operator")
            logger.logLevel = .warning
            let op = Operator(store: store, pool: HTTP2TransitPool(tls: bed.operatorTLS), logger: logger)
            let task = Task { await op.run() }
            // Stopped, and off the ring, before its etcd client closes
            // (else its key stays until its lease lapses, and the next
            // test's operator shares the ring with it meanwhile).
            do {
                let r = try await body(store, op)
                task.cancel()
                await task.value
                return r
            } catch {
                task.cancel()
                await task.value
                throw error
            }
        }
    }

    func droplet(_ host: String) -> String { "\(bed.name)-\(host)" }

    /// mizarctl's TLS flags: the operator's certificate, for etcd and transitds.
    var tlsFlags: [String] { Testbed.flags(bed.operatorTLS) }

    /// Declares objects as a user does: YAML through mizarctl apply.
    /// (On a thread of its own: the operator runs in this process.)
    func apply(_ yaml: String) async throws {
        let path = "/tmp/mizar-e2e-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).yaml"
        try writeText(path, yaml)
        defer { unlink(path) }
        let argv = [siblingExecutable("mizarctl"), "apply", "-f", path, "--etcd", etcd.flag(), "--root", root] + tlsFlags
        let r = try await onOwnThread { runCapturing(argv) }
        #expect(r.status == 0, "mizarctl apply: \(r.output)")
    }

    /// Whether every host's droplet is registered and Ready.
    func dropletsReady(_ store: Store) async throws -> Bool {
        try await eventually(10 + Double(bed.hosts.count)) {
            try await store.list(DropletSpec.self).objects.filter { $0.status?.common.phase == .ready }.count == bed.hosts.count
        }
    }
}

/// One object as YAML, its spec in flow style.
func objectYAML(_ kind: String, _ name: String, _ spec: String) -> String {
    "apiVersion: mizar.com/v1\nkind: \(kind)\nmetadata: {name: \(name)}\nspec: {\(spec)}\n"
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


/// Scales a VPC's dividers to 2 and back to 1, checking every host's table.
func scaleDividers(_ store: Store, _ plane: Plane, vpc name: String) async throws {
    for want in [2, 1] {
        var vpc = try #require(try await store.get(VpcSpec.self, name))
        vpc.spec.dividers = want
        try await store.update(vpc)
        let scaled = try await eventually {
            let v = try await store.get(VpcSpec.self, name)
            return v?.status?.dividers?.count == want && v?.status?.common.observedGeneration == v?.metadata.generation
        }
        #expect(scaled, "VPC not scaled to \(want) dividers")
        let now = try #require(try await store.get(VpcSpec.self, name))
        let vni = try #require(now.status?.vni)
        let dividerNames = Set(now.status?.dividers ?? [])
        #expect(try await eventually {
            try await store.list(DividerSpec.self).objects.filter { $0.spec.vpc == name }.count == want
        })
        for host in plane.bed.hosts {
            let listed = try await vpcTable(host.socket, vni: vni.value)
            #expect(listed?.dividers.count == want, "\(host.name) lists \(listed?.dividers.count ?? 0) dividers, want \(want)")
            #expect(listed?.isDivider == dividerNames.contains(plane.droplet(host.name)), "\(host.name) divider flag")
        }
    }
}

/// A host's VPC entry for `vni`, as its transitd lists it.
func vpcTable(_ socket: String, vni: UInt32) async throws -> Mizar_Transit_V1_VPC? {
    var r = Mizar_Transit_V1_ListRequest()
    r.vni = vni
    let request = r
    return try await withTransitClient(.unix(socket)) { try await $0.listVPCs(request).vpcs.first }
}

@Suite("operator on etcd and the simulated cluster", .serialized)
struct OperatorTests {
    @Test("declared objects become reachable endpoints across hosts, tenants stay apart, and deleting them leaves nothing")
    func endToEnd() async throws {
        let plane = try await Plane.get()
        try await plane.withOperator { store, op in
            // Droplets register themselves and become Ready.
            let ready = try await eventually {
                try await store.list(DropletSpec.self).objects.filter { $0.status?.common.phase == .ready }.count == 3
            }
            let dropletPhases = try await store.list(DropletSpec.self).objects.map { "\($0.name) \($0.status?.common.phase.rawValue ?? "-")" }
            #expect(ready, "droplets not Ready: \(dropletPhases)")

            func apply(_ yaml: String) async throws { try await plane.apply(yaml) }
            var networks: [String] = []
            for vpc in ["a", "b"] {
                networks.append("apiVersion: mizar.com/v1\nkind: Vpc\nmetadata: {name: \(vpc)}\nspec: {cidr: 10.0.0.0/16}\n")
                networks.append("apiVersion: mizar.com/v1\nkind: Subnet\nmetadata: {name: \(vpc)-1}\nspec: {vpc: \(vpc), cidr: 10.0.1.0/24}\n")
            }
            networks.append("apiVersion: mizar.com/v1\nkind: Subnet\nmetadata: {name: a-2}\nspec: {vpc: a, cidr: 10.0.2.0/24}\n")
            try await apply(networks.joined(separator: "---\n"))
            let subnetsReady = try await eventually {
                let all = try await store.list(SubnetSpec.self).objects
                return all.count == 3 && all.allSatisfy { $0.status?.common.phase == .provisioned }
            }
            #expect(subnetsReady)
            for vpc in ["a", "b"] {
                let v = try #require(try await store.get(VpcSpec.self, vpc))
                #expect(v.status?.common.phase == .provisioned && v.status?.vni != nil && v.status?.dividers?.count == 1)
            }
            #expect(try await store.get(VpcSpec.self, "a")?.status?.vni != store.get(VpcSpec.self, "b")?.status?.vni)
            // ea1 and eb1 share an address; ea4 shares ea1's host.
            let placements: [(String, String, String, String, String?)] = [
                ("ea1", "a", "a-1", "h1", "10.0.1.10"), ("ea2", "a", "a-1", "h2", nil), ("ea3", "a", "a-2", "h3", nil),
                ("ea4", "a", "a-1", "h1", nil), ("eb1", "b", "b-1", "h2", "10.0.1.10"), ("eb2", "b", "b-1", "h3", nil),
            ]
            op.pool.resetCounts()
            var endpointsYAML: [String] = []
            for (name, vpc, subnet, host, ip) in placements {
                let netns = try plane.bed.addEndpointNetns(name)
                endpointsYAML.append("apiVersion: mizar.com/v1\nkind: Endpoint\nmetadata: {name: \(name)}\nspec: {vpc: \(vpc), subnet: \(subnet), droplet: \(plane.droplet(host)), netns: \(netns)\(ip.map { ", ip: \($0)" } ?? "")}\n")
            }
            try await apply(endpointsYAML.joined(separator: "---\n"))
            let provisioned = try await eventually {
                let all = try await store.list(EndpointSpec.self).objects
                return all.count == placements.count && all.allSatisfy { $0.status?.common.phase == .provisioned }
            }
            let all = try await store.list(EndpointSpec.self).objects
            #expect(provisioned, "\(all.map { "\($0.name): \($0.status?.common.phase.rawValue ?? "-") \($0.status?.common.reason ?? "")" })")
            let byName = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })
            for e in all {
                let ip = try #require(e.status?.ip)
                let subnet = try #require(try await store.get(SubnetSpec.self, e.spec.subnet))
                #expect(subnet.spec.cidr.contains(ip))
                #expect((e.status?.common.provisioningDelayMs ?? -1) > 0)
            }
            // Its events tell the story, and describe shows them.
            let events = try await store.events(.endpoint, "ea1").map(\.reason)
            #expect(events.last == "Provisioned" && events.contains("Programming"), "events of ea1: \(events)")
            let described = runCapturing([siblingExecutable("mizarctl"), "describe", "endpoint", "ea1", "--etcd", plane.etcd.endpoint] + plane.tlsFlags)
            #expect(described.output.contains("events:") && described.output.contains("Provisioned") && described.output.contains("provisioned in"),
                    "\(described.output)")
            // Each endpoint cost one call to its host and one per bouncer;
            // a droplet's first endpoint of a VPC it held nothing of also
            // gave it the VPC's entry and one per subnet.
            var holders: [String: Set<String>] = [:]
            for v in try await store.list(VpcSpec.self).objects { holders[v.name, default: []].formUnion(v.status?.dividers ?? []) }
            for b in try await store.list(BouncerSpec.self).objects { holders[b.spec.vpc, default: []].insert(b.spec.droplet) }
            let subnetCount = Dictionary(grouping: try await store.list(SubnetSpec.self).objects, by: \.spec.vpc).mapValues(\.count)
            let firsts = Set(placements.map { "\($0.1)|\(plane.droplet($0.3))" }).filter { pair in
                let parts = pair.split(separator: "|").map(String.init)
                return !(holders[parts[0]] ?? []).contains(parts[1])
            }
            let tableCalls = firsts.map { 1 + (subnetCount[String($0.split(separator: "|")[0])] ?? 0) }.reduce(0, +)
            let calls = op.pool.callCounts().values.reduce(0, +)
            #expect(calls == placements.count * 2 + tableCalls,
                    "transitd calls for \(placements.count) endpoints with one bouncer each, \(firsts.count) first of a VPC on a droplet: \(op.pool.callCounts())")

            func ns(_ name: String) -> String { plane.bed.endpointNetns(name) }
            func ip(_ name: String) throws -> IPv4Address { byName[name]!.status!.ip! }
            // Ping, TCP and UDP, both ways: same subnet on two hosts, two
            // subnets, same host, and inside VPC b.
            for (x, y) in [("ea1", "ea2"), ("ea1", "ea3"), ("ea1", "ea4"), ("eb1", "eb2")] {
                for (from, to) in [(x, y), (y, x)] {
                    let ping = Traffic.ping(from: ns(from), try ip(to), count: 2, interval: 0.1)
                    #expect(ping.received == 2, "\(from) -> \(to): \(ping.output)")
                    for transport in [Traffic.Transport.tcp, .udp] {
                        let p = Array("\(transport) \(from) to \(to)".utf8)
                        let r = try Traffic.exchange(transport, from: ns(from), to: ns(to), address: try ip(to), port: 7300, payload: p)
                        #expect(r.atServer == p && r.atClient == p.reversed(), "\(transport) \(from) -> \(to)")
                    }
                }
            }
            // Across VPCs nothing arrives, in either direction, even at the
            // very same address.
            for (x, y) in [("ea2", "eb2"), ("eb2", "ea2")] {
                #expect(Traffic.ping(from: ns(x), try ip(y), count: 2, interval: 0.1, wait: 0.3).received == 0, "\(x) reached \(y) across VPCs")
            }
            let shared = try IPv4Address(parsing: "10.0.1.10")
            let fromB = try Traffic.listenUDP(in: ns("ea1"), port: 7301, timeout: 0.5) {
                try Traffic.sendUDP(from: ns("eb2"), to: shared, port: 7301, payload: Array("b to 10.0.1.10".utf8))
            }
            #expect(fromB == nil, "VPC b's datagram for 10.0.1.10 reached VPC a's endpoint")
            let fromA = try Traffic.listenUDP(in: ns("eb1"), port: 7302, timeout: 0.5) {
                try Traffic.sendUDP(from: ns("ea2"), to: shared, port: 7302, payload: Array("a to 10.0.1.10".utf8))
            }
            #expect(fromA == nil, "VPC a's datagram for 10.0.1.10 reached VPC b's endpoint")

            // Delete the VPCs: subnets, endpoints, bouncers and dividers go
            // with them, and every host's tables empty.
            for vpc in ["a", "b"] {
                let r = runCapturing([siblingExecutable("mizarctl"), "delete", "vpc", vpc, "--etcd", plane.etcd.endpoint] + plane.tlsFlags + ["--root", plane.root])
                #expect(r.output == "vpc/\(vpc) deleted\n")
            }
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
            let leftEvents = try await store.etcd.list(prefix: store.root + "events/").kvs.map(\.key).filter { !$0.contains("/droplets/") }
            #expect(leftEvents.isEmpty, "events of deleted objects left: \(leftEvents.prefix(5))")
            for host in plane.bed.hosts {
                let tables = try await withTransitClient(.unix(host.socket)) { c in
                    (try await c.listVPCs(.init()).vpcs.count, try await c.listSubnets(.init()).subnets.count,
                     try await c.listEndpoints(.init()).endpoints.count, try await c.listEndpointInterfaces(.init()).interfaces.count,
                     try await c.listHostCache(.init()).entries.count)
                }
                #expect(tables == (0, 0, 0, 0, 0), "\(host.name) still has VPCs/subnets/endpoints/interfaces/learned paths \(tables)")
            }
        }
    }

    /// The operator as its own process, killed with SIGKILL at a random
    /// moment of creating or deleting endpoints, then started again.
    @Test("operator killed with -9 at random points and restarted: nothing lost, stuck or duplicated (20 trials)")
    func resumesAfterKill() async throws {
        let plane = try await Plane.get()
        let log = "/tmp/mizar-operator-\(getpid()).log"
        func start() throws -> pid_t {
            // The same replica each time: the ring does not change.
            try spawnDaemon([siblingExecutable("mizar-operator"), "--etcd", plane.etcd.endpoint, "--root", plane.root,
                             "--id", "op-resume", "--log-level", "warning", "--membership-ttl", "3"] + Testbed.flags(plane.bed.operatorTLS), log: log)
        }
        func kill9(_ pid: pid_t) {
            kill(pid, SIGKILL)
            reap(pid)
        }
        defer { unlink(log) }
        try await withEtcd(plane.etcd.endpoints(), tls: plane.bed.operatorTLS) { client in
            let store = Store(etcd: client, root: plane.root)
            var pid = try start()
            defer { kill9(pid) }
            try await store.create(Vpc(name: "r", spec: VpcSpec(cidr: "10.8.0.0/16")))
            try await store.create(Subnet(name: "r-1", spec: SubnetSpec(vpc: "r", cidr: "10.8.1.0/24", bouncers: 2)))
            #expect(try await plane.dropletsReady(store))
            #expect(try await eventually {
                let s = try await store.get(SubnetSpec.self, "r-1")
                return s?.status?.common.phase == .provisioned && s?.status?.bouncers?.count == 2
            })
            let subnet = try #require(try await store.get(SubnetSpec.self, "r-1"))
            let vni = try #require(subnet.status?.vni)
            let bouncerSockets = plane.bed.hosts.filter { h in subnet.status?.bouncers?.contains(plane.droplet(h.name)) == true }.map(\.socket)
            #expect(bouncerSockets.count == 2)

            /// The bouncers' endpoint tables for the VPC, as IP -> host.
            func bouncerTables() async throws -> [[String: String]] {
                var tables: [[String: String]] = []
                for socket in bouncerSockets {
                    let list = try await withTransitClient(.unix(socket)) { c in
                        var r = Mizar_Transit_V1_ListRequest()
                        r.vni = vni.value
                        return try await c.listEndpoints(r)
                    }
                    tables.append(Dictionary(uniqueKeysWithValues: list.endpoints.map { ($0.ip, $0.host.ip) }))
                }
                return tables
            }

            for trial in 0..<20 {
                let names = (0..<8).map { "r\(trial)-\($0)" }
                for (i, n) in names.enumerated() {
                    try await store.create(Endpoint(name: n, spec: EndpointSpec(vpc: "r", subnet: "r-1", droplet: plane.droplet("h\(i % 3 + 1)"))))
                }
                try await Task.sleep(for: .milliseconds(Int.random(in: 0...150)))
                kill9(pid)
                pid = try start()
                let done = try await eventually(15) {
                    try await store.list(EndpointSpec.self).objects.filter { names.contains($0.name) }
                        .allSatisfy { $0.status?.common.phase == .provisioned }
                }
                let mine = try await store.list(EndpointSpec.self).objects.filter { names.contains($0.name) }
                #expect(done, "trial \(trial): \(mine.filter { $0.status?.common.phase != .provisioned }.map { "\($0.name) \($0.status?.common.phase.rawValue ?? "-") \($0.status?.common.reason ?? "")" })")
                let ips = mine.compactMap { $0.status?.ip.map { "\($0)" } }
                #expect(Set(ips).count == names.count, "trial \(trial): addresses \(ips.sorted())")
                let claims = try await store.etcd.list(prefix: store.root + "ipam/r/").kvs
                #expect(Set(claims.map { String($0.key.split(separator: "/").last!) }) == Set(ips), "trial \(trial): claims differ from addresses")
                for t in try await bouncerTables() {
                    #expect(Set(t.keys) == Set(ips), "trial \(trial): a bouncer's table \(t.keys.sorted()) differs from \(ips.sorted())")
                }

                // And the same for deleting them.
                for n in names { try await store.delete(EndpointSpec.self, n) }
                try await Task.sleep(for: .milliseconds(Int.random(in: 0...150)))
                kill9(pid)
                pid = try start()
                let gone = try await eventually(15) { try await store.etcd.count(prefix: store.prefix(.endpoint)) == 0 }
                #expect(gone, "trial \(trial): endpoints left after delete")
                #expect(try await store.etcd.count(prefix: store.root + "ipam/r/") == 0, "trial \(trial): addresses still claimed")
                for t in try await bouncerTables() { #expect(t.isEmpty, "trial \(trial): a bouncer still has \(t.keys.sorted())") }
            }
            try await store.delete(VpcSpec.self, "r")
            #expect(try await eventually(15) { try await store.get(VpcSpec.self, "r") == nil })
        }
    }

    @Test("etcd's leader killed with -9 while 50 endpoints are provisioned: all Provisioned, no address claimed twice, nothing lost")
    func etcdLeaderKilled() async throws {
        let plane = try await Plane.get()
        try await plane.withOperator { store, _ in
            try await store.create(Vpc(name: "lk", spec: VpcSpec(cidr: "10.60.0.0/16")))
            try await store.create(Subnet(name: "lk-1", spec: SubnetSpec(vpc: "lk", cidr: "10.60.1.0/24")))
            #expect(try await eventually(20) { try await store.get(SubnetSpec.self, "lk-1")?.status?.common.phase == .provisioned })
            let leader = try #require(plane.etcd.members.firstIndex { $0.isLeader }, "no etcd member leads")
            let names = (0..<50).map { "lk-\($0)" }
            // A client creating as a user's tool would: a call that fails
            // while the cluster elects is tried again; one whose answer was
            // lost finds its object made.
            func create(_ n: String, _ i: Int) async throws {
                let deadline = monotonicSeconds() + 30
                while true {
                    do {
                        try await store.create(Endpoint(name: n, spec: EndpointSpec(vpc: "lk", subnet: "lk-1", droplet: plane.droplet("h\(i % 3 + 1)"))))
                        return
                    } catch StoreError.alreadyExists {
                        return
                    } catch where monotonicSeconds() < deadline {
                        try await Task.sleep(for: .milliseconds(100))
                    }
                }
            }
            let started = monotonicSeconds()
            var stalled = 0.0
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for (i, n) in names.enumerated() { try await create(n, i) }
                }
                // The leader dies once a few endpoints are on their way.
                while try await store.etcd.count(prefix: store.prefix(.endpoint)) < 10 { try await Task.sleep(for: .milliseconds(10)) }
                plane.etcd.members[leader].kill(signal: SIGKILL)
                let killed = monotonicSeconds()
                // Writes stall only for the election.
                while plane.etcd.members.enumerated().allSatisfy({ $0.offset == leader || !$0.element.isLeader }) {
                    try await Task.sleep(for: .milliseconds(20))
                    if monotonicSeconds() - killed > 20 { break }
                }
                stalled = monotonicSeconds() - killed
                try await group.waitForAll()
            }
            let done = try await eventually(60) {
                try await store.list(EndpointSpec.self).objects.filter { names.contains($0.name) }
                    .allSatisfy { $0.status?.common.phase == .provisioned }
            }
            let mine = try await store.list(EndpointSpec.self).objects.filter { $0.spec.vpc == "lk" }
            print("etcd leader killed: a new leader in \(String(format: "%.2f", stalled)) s; 50 endpoints Provisioned \(String(format: "%.1f", monotonicSeconds() - started)) s after the first create")
            #expect(done, "\(mine.filter { $0.status?.common.phase != .provisioned }.map { "\($0.name) \($0.status?.common.phase.rawValue ?? "-") \($0.status?.common.reason ?? "")" })")
            #expect(mine.map(\.name).sorted() == names.sorted(), "endpoints lost or extra")
            let ips = mine.compactMap { $0.status?.ip.map { "\($0)" } }
            #expect(ips.count == 50 && Set(ips).count == 50, "addresses \(ips.sorted())")
            let claims = try await store.etcd.list(prefix: store.root + "ipam/lk/").kvs
            #expect(claims.count == 50, "\(claims.count) address claims for 50 endpoints")
            for kv in claims {
                let ip = String(kv.key.split(separator: "/").last!), owner = String(decoding: kv.value, as: UTF8.self)
                #expect(mine.first { $0.name == owner }?.status?.ip.map { "\($0)" } == ip, "\(ip) is claimed by \(owner), whose address differs")
            }
            // The member comes back on its data and rejoins.
            try plane.etcd.restart(leader)
            try await store.delete(VpcSpec.self, "lk")
            #expect(try await eventually(30) { try await store.get(VpcSpec.self, "lk") == nil })
        }
    }

    @Test("scaling a subnet's bouncers and a VPC's dividers up and down updates every host's tables and the bouncers' endpoint tables")
    func scaleBouncers() async throws {
        let plane = try await Plane.get()
        try await plane.withOperator { store, op in
            #expect(try await plane.dropletsReady(store))
            try await store.create(Vpc(name: "s", spec: VpcSpec(cidr: "10.9.0.0/16")))
            try await store.create(Subnet(name: "s-1", spec: SubnetSpec(vpc: "s", cidr: "10.9.1.0/24", bouncers: 1)))
            for i in 1...3 {
                try await store.create(Endpoint(name: "s\(i)", spec: EndpointSpec(vpc: "s", subnet: "s-1", droplet: plane.droplet("h\(i)"))))
            }
            #expect(try await eventually {
                try await store.list(EndpointSpec.self).objects.filter { $0.spec.vpc == "s" }.allSatisfy { $0.status?.common.phase == .provisioned }
            })
            for want in [3, 1] {
                var subnet = try #require(try await store.get(SubnetSpec.self, "s-1"))
                subnet.spec.bouncers = want
                try await store.update(subnet)
                let scaled = try await eventually {
                    let s = try await store.get(SubnetSpec.self, "s-1")
                    return s?.status?.bouncers?.count == want && s?.status?.common.phase == .provisioned
                        && s?.status?.common.observedGeneration == s?.metadata.generation
                }
                #expect(scaled, "subnet not scaled to \(want)")
                let now = try #require(try await store.get(SubnetSpec.self, "s-1"))
                let vni = try #require(now.status?.vni)
                let bouncerNames = Set(now.status?.bouncers ?? [])
                #expect(try await eventually {
                    try await store.list(BouncerSpec.self).objects.filter { $0.spec.subnet == "s-1" }.count == want
                })
                let ips = Set(try await store.list(EndpointSpec.self).objects.filter { $0.spec.vpc == "s" }.compactMap { $0.status?.ip.map { "\($0)" } })
                for host in plane.bed.hosts {
                    var r = Mizar_Transit_V1_ListRequest()
                    r.vni = vni.value
                    let (subnets, entries) = try await withTransitClient(.unix(host.socket)) { c in
                        (try await c.listSubnets(r).subnets, try await c.listEndpoints(r).endpoints)
                    }
                    let listed = subnets.first { $0.cidr == "10.9.1.0/24" }
                    #expect(listed?.bouncers.count == want, "\(host.name) lists \(listed?.bouncers.count ?? 0) bouncers, want \(want)")
                    let isBouncer = bouncerNames.contains(plane.droplet(host.name))
                    #expect(listed?.isBouncer == isBouncer, "\(host.name) bouncer flag")
                    #expect(Set(entries.map(\.ip)) == (isBouncer ? ips : []), "\(host.name) endpoint table \(entries.map(\.ip).sorted())")
                }
            }
            try await scaleDividers(store, plane, vpc: "s")
            try await store.delete(VpcSpec.self, "s")
            #expect(try await eventually(15) { try await store.get(VpcSpec.self, "s") == nil })
        }
    }

    @Test("a droplet whose transitd dies goes NotReady, its bouncer and divider move to live droplets, and it returns Ready")
    func dropletFailure() async throws {
        let plane = try await Plane.get()
        try await plane.withOperator { store, op in
            #expect(try await plane.dropletsReady(store))
            try await store.create(Vpc(name: "f", spec: VpcSpec(cidr: "10.10.0.0/16")))
            try await store.create(Subnet(name: "f-1", spec: SubnetSpec(vpc: "f", cidr: "10.10.1.0/24")))
            #expect(try await eventually { try await store.get(SubnetSpec.self, "f-1")?.status?.common.phase == .provisioned })
            let victimName = try #require(try await store.get(SubnetSpec.self, "f-1")?.status?.bouncers?.first)
            let victim = try #require(plane.bed.hosts.first { plane.droplet($0.name) == victimName })
            // A service published on every droplet (no backend is live).
            func published(_ name: String, _ hostPort: Int) -> String {
                "apiVersion: mizar.com/v1\nkind: Endpoint\nmetadata: {name: \(name)}\n"
                    + "spec: {vpc: f, subnet: f-1, type: scaled, ports: [{port: 80, hostPort: \(hostPort)}], backends: [fnone]}\n"
            }
            func publishedOnVictim() async throws -> [UInt32] {
                try await withTransitClient(.unix(victim.socket)) { try await $0.listPublished(.init()) }.published.flatMap { $0.ports.map(\.hostPort) }
            }
            try await plane.apply(published("fold", 30081))
            #expect(try await eventually(10) { try await store.get(EndpointSpec.self, "fold")?.status?.published?.count == plane.bed.hosts.count })
            #expect(try await publishedOnVictim() == [30081])
            let pid = try #require(plane.bed.pid(of: victim))
            kill(pid, SIGKILL)
            reap(pid)
            // The lease (3 s) lapses; the droplet goes NotReady.
            #expect(try await eventually(10) { try await store.get(DropletSpec.self, victimName)?.status?.common.phase == .notReady })
            // While it is away, one service is deleted and another published.
            try await store.delete(EndpointSpec.self, "fold")
            try await plane.apply(published("fnew", 30082))
            let changed = try await eventually(10) {
                let fnew = try await store.get(EndpointSpec.self, "fnew")?.status?.published ?? []
                return try await store.get(EndpointSpec.self, "fold") == nil && fnew.count == plane.bed.hosts.count - 1
            }
            #expect(changed, "the live droplets did not get the change")
            let moved = try await eventually(10) {
                let s = try await store.get(SubnetSpec.self, "f-1"), v = try await store.get(VpcSpec.self, "f")
                let bouncers = s?.status?.bouncers ?? [], dividers = v?.status?.dividers ?? []
                return bouncers.count == 1 && !bouncers.contains(victimName) && dividers.count == 1 && !dividers.contains(victimName)
            }
            #expect(moved, "bouncer or divider still on the dead droplet")
            let bouncerObjects = try await store.list(BouncerSpec.self).objects.filter { $0.spec.subnet == "f-1" }.map(\.spec.droplet)
            #expect(bouncerObjects.count == 1 && !bouncerObjects.contains(victimName))
            let newBouncer = try #require(try await store.get(SubnetSpec.self, "f-1")?.status?.bouncers?.first)
            let vni = try #require(try await store.get(SubnetSpec.self, "f-1")?.status?.vni)
            for host in plane.bed.hosts where host.name != victim.name {
                var r = Mizar_Transit_V1_ListRequest()
                r.vni = vni.value
                let subnets = try await withTransitClient(.unix(host.socket)) { try await $0.listSubnets(r).subnets }
                let newIP = try #require(try await store.get(DropletSpec.self, newBouncer)?.spec.ip).description
                #expect(subnets.first?.bouncers.map(\.ip) == [newIP], "\(host.name) still routes f-1 through \(subnets.first?.bouncers.map(\.ip) ?? [])")
            }
            // transitd comes back (its maps were pinned): Ready again.
            try plane.bed.restart(victim, options: plane.options)
            #expect(try await eventually(10) { try await store.get(DropletSpec.self, victimName)?.status?.common.phase == .ready })
            // Its pinned tables still named itself as f-1's bouncer: it is given the current ones.
            let newIP = try #require(try await store.get(DropletSpec.self, newBouncer)?.spec.ip).description
            var r = Mizar_Transit_V1_ListRequest()
            r.vni = vni.value
            #expect(try await eventually(10) {
                try await withTransitClient(.unix(victim.socket)) { try await $0.listSubnets(r).subnets }.first?.bouncers.map(\.ip) == [newIP]
            }, "the returning droplet still routes f-1 through its old bouncer")
            // It publishes what is published now: the new service, not the deleted one.
            let synced = try await eventually(10) { try await publishedOnVictim() == [30082] }
            let onVictim = try await publishedOnVictim()
            #expect(synced, "the returning droplet publishes \(onVictim)")
            #expect(try await eventually(10) {
                (try await store.get(EndpointSpec.self, "fnew")?.status?.published ?? []).count == plane.bed.hosts.count
            })
            try await store.delete(VpcSpec.self, "f")
            #expect(try await eventually(15) { try await store.get(VpcSpec.self, "f") == nil })
        }
    }

    @Test("creating a VPC calls its dividers, creating a subnet its bouncers and the droplets holding the VPC, provisioning an endpoint its droplet and its subnet's bouncers (and, for a droplet's first of that VPC, the VPC's tables): nothing else, the same at 3 and at 30 hosts")
    func callsPerEndpoint() async throws {
        let small = try await Plane.get()
        let big = try Plane(name: "mzb\(getpid() % 10000)", hosts: 30, underlayNet: 1)
        defer { big.down() }
        var perHosts: [Int: [Int]] = [:]
        var creates: [Int: (vpc: Int, subnet: Int)] = [:]
        for plane in [small, big] {
            try await plane.withOperator { store, op in
                #expect(try await plane.dropletsReady(store), "\(plane.bed.hosts.count) droplets not ready")
                func target(_ droplet: String) async throws -> TransitTarget {
                    try TransitTarget(parsing: try #require(try await store.get(DropletSpec.self, droplet)).spec.transitd)
                }
                // A VPC: its one divider is called, nobody else.
                op.pool.resetCounts()
                try await store.create(Vpc(name: "c", spec: VpcSpec(cidr: "10.11.0.0/16")))
                #expect(try await eventually { try await store.get(VpcSpec.self, "c")?.status?.common.phase == .provisioned })
                let dividers = try #require(try await store.get(VpcSpec.self, "c")?.status?.dividers)
                let vpcCalls = op.pool.callCounts()
                var dividerTargets: Set<TransitTarget> = []
                for d in dividers { dividerTargets.insert(try await target(d)) }
                #expect(Set(vpcCalls.keys) == dividerTargets, "VPC create at \(plane.bed.hosts.count) hosts called \(vpcCalls)")
                // A subnet: its bouncers and the VPC's holders (the divider).
                op.pool.resetCounts()
                try await store.create(Subnet(name: "c-1", spec: SubnetSpec(vpc: "c", cidr: "10.11.1.0/24", bouncers: 2)))
                #expect(try await eventually {
                    let s = try await store.get(SubnetSpec.self, "c-1")
                    return s?.status?.common.phase == .provisioned && s?.status?.bouncers?.count == 2
                })
                let bouncers = try #require(try await store.get(SubnetSpec.self, "c-1")?.status?.bouncers)
                let subnetCalls = op.pool.callCounts()
                var holders = dividerTargets
                for b in bouncers { holders.insert(try await target(b)) }
                #expect(Set(subnetCalls.keys).isSubset(of: holders), "subnet create at \(plane.bed.hosts.count) hosts called \(subnetCalls)")
                creates[plane.bed.hosts.count] = (vpcCalls.values.reduce(0, +), subnetCalls.values.reduce(0, +))
                let holderNames = Set(dividers + bouncers)
                var counts: [Int] = []
                for i in 0..<6 {
                    op.pool.resetCounts()
                    let host = "h\(i % plane.bed.hosts.count + 1)"
                    let netns = try plane.bed.addEndpointNetns("c\(i)")
                    try await store.create(Endpoint(name: "c\(i)", spec: EndpointSpec(vpc: "c", subnet: "c-1", droplet: plane.droplet(host), netns: netns)))
                    #expect(try await eventually { try await store.get(EndpointSpec.self, "c\(i)")?.status?.common.phase == .provisioned })
                    let calls = op.pool.callCounts()
                    var expected: Set<TransitTarget> = []
                    for d in bouncers + [plane.droplet(host)] { expected.insert(try await target(d)) }
                    #expect(Set(calls.keys) == expected, "endpoint c\(i) at \(plane.bed.hosts.count) hosts called \(calls)")
                    // One call to its host and one per bouncer; a droplet's
                    // first endpoint of a VPC it did not hold also gets the
                    // VPC's entry and its one subnet's.
                    let first = i < plane.bed.hosts.count && !holderNames.contains(plane.droplet(host))
                    let total = calls.values.reduce(0, +)
                    #expect(total == 3 + (first ? 2 : 0), "endpoint c\(i) on \(host) (first of the VPC there: \(first)): \(calls)")
                    counts.append(total - (first ? 2 : 0))
                }
                perHosts[plane.bed.hosts.count] = counts
                // Only the holders hold the VPC: the other droplets never heard of it.
                let vni = try #require(try await store.get(VpcSpec.self, "c")?.status?.vni)
                let endpointHosts = Set((0..<6).map { plane.droplet("h\($0 % plane.bed.hosts.count + 1)") })
                for h in plane.bed.hosts {
                    let held = try await vpcTable(h.socket, vni: vni.value) != nil
                    let holds = holderNames.contains(plane.droplet(h.name)) || endpointHosts.contains(plane.droplet(h.name))
                    #expect(held == holds, "\(h.name) holds VPC c: \(held), should \(holds)")
                }
                // A droplet leaves (its transitd killed, its lease lapses)
                // and joins again: only the VPC's holders hear of the
                // leave; of the join, every other droplet gets the joiner's
                // droplet-table entry (one call each) and nothing else.
                let leaver = try #require(plane.bed.hosts.last)
                let leaverTarget = try await target(plane.droplet(leaver.name))
                var holderTargets: Set<TransitTarget> = []
                for d in holderNames.union(endpointHosts) { holderTargets.insert(try await target(d)) }
                op.pool.resetCounts()
                let pid = try #require(plane.bed.pid(of: leaver))
                kill(pid, SIGKILL)
                reap(pid)
                #expect(try await eventually(15) { try await store.get(DropletSpec.self, plane.droplet(leaver.name))?.status?.common.phase == .notReady })
                try await Task.sleep(for: .seconds(1))   // placements settle
                let leaveCalls = op.pool.callCounts()
                // (A role it held moved: its new droplet holds the VPC now.)
                let rolesAfter = (try await store.get(VpcSpec.self, "c")?.status?.dividers ?? [])
                    + (try await store.get(SubnetSpec.self, "c-1")?.status?.bouncers ?? [])
                for d in rolesAfter { holderTargets.insert(try await target(d)) }
                #expect(Set(leaveCalls.keys).isSubset(of: holderTargets), "leave at \(plane.bed.hosts.count) hosts called \(leaveCalls)")
                op.pool.resetCounts()
                try await onOwnThread { try plane.bed.restart(leaver, options: plane.options) }
                #expect(try await eventually(15) { try await store.get(DropletSpec.self, plane.droplet(leaver.name))?.status?.common.phase == .ready })
                try await Task.sleep(for: .seconds(1))
                let joinCalls = op.pool.callCounts()
                for (t, n) in joinCalls where t != leaverTarget && !holderTargets.contains(t) {
                    #expect(n == 1, "join at \(plane.bed.hosts.count) hosts: \(t) called \(n) times")
                }
                #expect(joinCalls.keys.filter { $0 != leaverTarget && !holderTargets.contains($0) }.count == plane.bed.hosts.count - 1 - holderTargets.subtracting([leaverTarget]).count,
                        "join: \(joinCalls)")
                print("droplet leave at \(plane.bed.hosts.count) hosts: \(leaveCalls.values.reduce(0, +)) calls to \(leaveCalls.count) droplets; join: \(joinCalls.values.reduce(0, +)) calls to \(joinCalls.count) droplets (\(joinCalls[leaverTarget] ?? 0) to the joiner)")
                // An endpoint alone of its VPC on a droplet with no role
                // goes: its droplet gives the VPC's tables back (the
                // subnet's and the VPC's entries), so that the VPC's later
                // changes do not reach it; nobody else is called but the
                // subnet's bouncers.
                let alone = (0..<6).first { i in
                    let host = "h\(i % plane.bed.hosts.count + 1)"
                    return !holderNames.contains(plane.droplet(host)) && (0..<6).filter { $0 % plane.bed.hosts.count == i % plane.bed.hosts.count }.count == 1
                }
                #expect(plane.bed.hosts.count < 30 || alone != nil, "no endpoint alone on a droplet without a role at 30 hosts")
                if let i = alone {
                    let host = try #require(plane.bed.hosts.first { $0.name == "h\(i % plane.bed.hosts.count + 1)" })
                    op.pool.resetCounts()
                    try await store.delete(EndpointSpec.self, "c\(i)")
                    #expect(try await eventually(10) { try await vpcTable(host.socket, vni: vni.value) == nil }, "\(host.name) still holds VPC c")
                    try await Task.sleep(for: .milliseconds(300))
                    let gone = op.pool.methodCounts(), to = op.pool.callCounts()
                    var expected: Set<TransitTarget> = [try await target(plane.droplet(host.name))]
                    for b in bouncers { expected.insert(try await target(b)) }
                    #expect(Set(to.keys) == expected, "endpoint c\(i)'s removal called \(to)")
                    #expect(gone == ["DeleteEndpointInterface": 1, "DeleteEndpoint": bouncers.count, "ListSubnets": 1, "DeleteSubnet": 1, "DeleteVPC": 1],
                            "endpoint c\(i)'s removal: \(gone)")
                    print("last endpoint of a VPC on \(host.name) at \(plane.bed.hosts.count) hosts removed: \(gone)")
                }
                var holdersNow = Set<String>()
                for h in plane.bed.hosts where try await vpcTable(h.socket, vni: vni.value) != nil { holdersNow.insert(h.name) }
                op.pool.resetCounts()
                try await store.delete(VpcSpec.self, "c")
                #expect(try await eventually(20) { try await store.get(VpcSpec.self, "c") == nil })
                try await Task.sleep(for: .milliseconds(500))
                // Deleted from every droplet that held it, and only from
                // those: the subnet's table and the VPC's once each (a
                // reconcile that comes again calls nobody).
                for h in plane.bed.hosts {
                    #expect(try await vpcTable(h.socket, vni: vni.value) == nil, "\(h.name) still holds the deleted VPC")
                }
                let deletes = op.pool.methodCounts()
                #expect(deletes["DeleteSubnet"] == holdersNow.count && deletes["DeleteVPC"] == holdersNow.count,
                        "VPC delete at \(plane.bed.hosts.count) hosts, \(holdersNow.count) holding it: \(deletes)")
                print("VPC delete at \(plane.bed.hosts.count) hosts: \(deletes.values.reduce(0, +)) calls \(deletes.sorted { $0.key < $1.key }) to \(op.pool.callCounts().count) droplets")
            }
        }
        #expect(perHosts[3] == Array(repeating: 3, count: 6), "calls per endpoint at 3 hosts: \(perHosts[3] ?? [])")
        #expect(perHosts[30] == perHosts[3], "calls per endpoint at 30 hosts: \(perHosts[30] ?? []), at 3: \(perHosts[3] ?? [])")
        print("transitd calls: VPC create \(creates[3]?.vpc ?? -1) at 3 hosts, \(creates[30]?.vpc ?? -1) at 30; subnet create \(creates[3]?.subnet ?? -1) at 3, \(creates[30]?.subnet ?? -1) at 30")
        #expect(creates[3]?.vpc == creates[30]?.vpc, "VPC create calls grow with the hosts")
        #expect((creates[30]?.subnet ?? 99) <= 12, "subnet create at 30 hosts: \(creates[30]?.subnet ?? -1) calls")
    }

    @Test("two operator replicas split the VPCs on the ring; a droplet that dies loses its roles in both replicas' VPCs; when a replica is killed the other takes its VPCs over")
    func replicas() async throws {
        let plane = try await Plane.get()
        let logs = ["op-a", "op-b"].map { "/tmp/mizar-\($0)-\(getpid()).log" }
        defer { logs.forEach { unlink($0) } }
        var pids: [String: pid_t] = [:]
        // Two replicas on one machine: each its own metrics port.
        let metricsPorts = ["op-a": 9471, "op-b": 9472]
        for (id, log) in zip(["op-a", "op-b"], logs) {
            pids[id] = try spawnDaemon([siblingExecutable("mizar-operator"), "--etcd", plane.etcd.endpoint, "--root", plane.root,
                                        "--id", id, "--log-level", "warning", "--membership-ttl", "3", "--metrics-address", "127.0.0.1:\(metricsPorts[id]!)"]
                                       + Testbed.flags(plane.bed.operatorTLS), log: log)
        }
        defer { for pid in pids.values { kill(pid, SIGKILL); reap(pid) } }
        try await withEtcd(plane.etcd.endpoints(), tls: plane.bed.operatorTLS) { client in
            let store = Store(etcd: client, root: plane.root)
            #expect(try await plane.dropletsReady(store))
            #expect(try await eventually {
                Set(try await store.etcd.list(prefix: store.operatorPrefix).kvs.map { String($0.key.dropFirst(store.operatorPrefix.count)) }) == ["op-a", "op-b"]
            })
            let ring = Ring(members: ["op-a", "op-b"])
            let vpcs = (0..<8).map { "p\($0)" }
            let owner = Dictionary(uniqueKeysWithValues: vpcs.map { ($0, ring.owner(of: "vpc/\($0)")!) })
            #expect(Set(owner.values) == ["op-a", "op-b"], "the ring gives every VPC to one replica: \(owner)")
            for (i, v) in vpcs.enumerated() {
                try await store.create(Vpc(name: v, spec: VpcSpec(cidr: "10.12.0.0/16")))
                try await store.create(Subnet(name: "\(v)-1", spec: SubnetSpec(vpc: v, cidr: "10.12.1.0/24")))
                try await store.create(Endpoint(name: "\(v)-e0", spec: EndpointSpec(vpc: v, subnet: "\(v)-1", droplet: plane.droplet("h\(i % 3 + 1)"))))
            }
            func provisioned(_ names: [String]) async throws -> Bool {
                let mine = try await store.list(EndpointSpec.self).objects.filter { names.contains($0.name) }
                return mine.count == names.count && mine.allSatisfy { $0.status?.common.phase == .provisioned }
            }
            #expect(try await eventually(15) { try await provisioned(vpcs.map { "\($0)-e0" }) })
            for v in vpcs {
                #expect(try await store.get(VpcSpec.self, v)?.status?.common.controller == owner[v], "Vpc \(v)")
                #expect(try await store.get(SubnetSpec.self, "\(v)-1")?.status?.common.controller == owner[v], "Subnet \(v)-1")
                #expect(try await store.get(EndpointSpec.self, "\(v)-e0")?.status?.common.controller == owner[v], "Endpoint \(v)-e0")
            }

            // A droplet dies that holds roles of VPCs the other replica
            // owns (a droplet's replica is not its VPCs'): every role on it
            // moves, in both replicas' VPCs; then it comes back.
            func roles(on droplet: String) async throws -> [String] {
                var out: [String] = []
                for v in vpcs {
                    if try await store.get(VpcSpec.self, v)?.status?.dividers?.contains(droplet) == true { out.append(v) }
                    if try await store.get(SubnetSpec.self, "\(v)-1")?.status?.bouncers?.contains(droplet) == true { out.append("\(v)-1") }
                }
                return out
            }
            var victim: Testbed.Host?
            for h in plane.bed.hosts {
                let d = plane.droplet(h.name), mine = ring.owner(of: "droplet/\(d)")
                if try await roles(on: d).contains(where: { owner[String($0.prefix(2))] != mine }) { victim = h; break }
            }
            let dying = try #require(victim, "no droplet holds a role of a VPC the other replica owns")
            let dyingName = plane.droplet(dying.name)
            let pid = try #require(plane.bed.pid(of: dying))
            kill(pid, SIGKILL)
            reap(pid)
            #expect(try await eventually(15) { try await roles(on: dyingName).isEmpty }, "roles left on the dead droplet \(dyingName)")
            try await onOwnThread { try plane.bed.restart(dying, options: plane.options) }
            #expect(try await eventually(15) { try await store.get(DropletSpec.self, dyingName)?.status?.common.phase == .ready })

            // op-a dies; its lease lapses and op-b takes its VPCs.
            kill(pids["op-a"]!, SIGKILL)
            reap(pids["op-a"]!)
            pids["op-a"] = nil
            let orphaned = vpcs.filter { owner[$0] == "op-a" }
            for v in orphaned {
                try await store.create(Endpoint(name: "\(v)-e1", spec: EndpointSpec(vpc: v, subnet: "\(v)-1", droplet: plane.droplet("h1"))))
            }
            #expect(try await eventually(15) { try await provisioned(orphaned.map { "\($0)-e1" }) }, "op-a's VPCs were not taken over")
            for v in orphaned {
                #expect(try await store.get(EndpointSpec.self, "\(v)-e1")?.status?.common.controller == "op-b")
            }
            // The survivor's metrics count the endpoints it provisioned.
            let scraped = try await onOwnThread { runCapturing(["curl", "-sS", "--max-time", "5", "http://127.0.0.1:9472/metrics"]) }
            let done = metricValue(scraped.output, #"mizar_operator_reconciles_total{kind="Endpoint",outcome="done"}"#)
            #expect(done.map { $0 >= Double(orphaned.count) } == true,
                    "op-b's metrics: \(scraped.output.prefix(1500))")
            for v in vpcs { try await store.delete(VpcSpec.self, v) }
            let deleted = try await eventually(20) { try await store.etcd.count(prefix: store.prefix(.vpc)) == 0 }
            let left = try await store.list(VpcSpec.self).objects.map { "\($0.name): \($0.status?.common.reason ?? "-")" }
            let survivorLog = ((try? String(contentsOfFile: logs[1], encoding: .utf8)) ?? "").split(separator: "\n").suffix(15).joined(separator: "\n")
            #expect(deleted, "VPCs left: \(left); op-b's log ends:\n\(survivorLog)")
        }
    }
}

@Suite("consistent-hash ring")
struct RingTests {
    @Test("keys spread evenly over the members, and a member leaving moves only its own keys")
    func spread() {
        let keys = (0..<3000).map { "vpc/tenant-\($0)" }
        let three = Ring(members: ["op-a", "op-b", "op-c"])
        var share: [String: Int] = [:]
        for k in keys { share[three.owner(of: k)!, default: 0] += 1 }
        for m in three.members {
            #expect(abs(share[m, default: 0] - 1000) < 250, "op share \(share)")
        }
        let two = Ring(members: ["op-a", "op-b"])
        let moved = keys.filter { three.owner(of: $0) != two.owner(of: $0) }
        #expect(moved.allSatisfy { three.owner(of: $0) == "op-c" }, "keys of members that stayed moved")
        #expect(Ring(members: []).owner(of: "vpc/x") == nil)
    }
}
