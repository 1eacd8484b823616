import Glibc
import MizarAPI
import MizarCore
import MizarEtcd
import MizarStore
import Logging
import MizarTestbed
import Synchronization
import Testing

/// Each test gets a store of its own under a fresh root in the process's
/// real etcd, and one VPC "a" (10.0.0.0/16) with subnet "s1" (10.0.1.0/24).
func withStore<R: Sendable>(_ test: String, seeded: Bool = true, _ body: (Store) async throws -> R) async throws -> R {
    try await withEtcd(host: "127.0.0.1", port: try await EtcdServer.shared().clientPort, tls: try await EtcdServer.shared().adminTLS) { etcd in
        let store = Store(etcd: etcd, root: "/test-\(getpid())/\(test)/")
        try await etcd.delete(prefix: store.root)
        if seeded {
            try await store.create(Vpc(name: "a", spec: VpcSpec(cidr: "10.0.0.0/16")))
            try await store.create(Subnet(name: "s1", spec: SubnetSpec(vpc: "a", cidr: "10.0.1.0/24")))
        }
        return try await body(store)
    }
}

/// Every key under the store's root, with its value, for before/after checks.
func snapshot(_ store: Store) async throws -> [String: [UInt8]] {
    let (kvs, _) = try await store.etcd.list(prefix: store.root)
    return Dictionary(uniqueKeysWithValues: kvs.map { ($0.key, $0.value) })
}

/// The refusal's text, or nil if accepted.
func refusal(_ body: () async throws -> Void) async -> String? {
    do { try await body(); return nil } catch { return "\(error)" }
}

@Suite("object store on a real etcd")
struct StoreTests {
    @Test("create fills in uid, generation, time and status Init; get and list read it back")
    func create() async throws {
        try await withStore("create") { store in
            let e = try await store.create(Endpoint(name: "web", spec: EndpointSpec(vpc: "a", subnet: "s1", ip: "10.0.1.5")))
            #expect(e.metadata.uid?.count == 36)
            #expect(e.metadata.generation == 1)
            #expect(e.metadata.creationTimestamp != nil)
            #expect(e.status?.common.phase == .initial)
            let read = try #require(try await store.get(EndpointSpec.self, "web"))
            #expect(read == e)
            let (all, revision) = try await store.list(EndpointSpec.self)
            #expect(all.map(\.name) == ["web"])
            #expect(revision >= Int64(e.metadata.resourceVersion!)!)
            #expect(try await store.get(EndpointSpec.self, "nope") == nil)
            let again = await refusal { try await store.create(Endpoint(name: "web", spec: EndpointSpec(vpc: "a", subnet: "s1"))) }
            #expect(again == "Endpoint web already exists")
        }
    }

    @Test("invalid objects are refused naming the field, and nothing is written", arguments: [
        ("subnet outside its VPC", "spec.cidr: 10.1.0.0/24 is outside Vpc a's 10.0.0.0/16"),
        ("overlapping subnet", "spec.cidr: 10.0.1.128/25 overlaps Subnet s1 (10.0.1.0/24) in Vpc a"),
        ("subnet of an unknown VPC", "spec.vpc: no Vpc named \"zz\""),
        ("endpoint of an unknown subnet", "spec.subnet: no Subnet named \"s9\""),
        ("endpoint of an unknown VPC", "spec.vpc: no Vpc named \"zz\""),
        ("endpoint IP outside its subnet", "spec.ip: 10.0.2.5 is outside Subnet s1's 10.0.1.0/24"),
        ("endpoint IP is the gateway", "spec.ip: 10.0.1.1 is Subnet s1's gateway address"),
        ("endpoint IP is the broadcast", "spec.ip: 10.0.1.255 is Subnet s1's broadcast address"),
        ("endpoint IP taken", "spec.ip: 10.0.1.7 is already taken in Vpc a by Endpoint first"),
        ("subnet of another VPC", "spec.subnet: Subnet s1 belongs to Vpc a, not b"),
        ("bad name", "metadata.name: \"Web\" is not a DNS label: use lower-case letters, digits and '-', starting and ending with a letter or digit"),
        ("VNI taken", "spec.vni: 4242 is already used by Vpc v1"),
    ])
    func refused(_ what: String, _ expected: String) async throws {
        try await withStore("refused-\(what.replacingOccurrences(of: " ", with: "-"))") { store in
            try await store.create(Vpc(name: "b", spec: VpcSpec(cidr: "10.0.0.0/16")))
            try await store.create(Vpc(name: "v1", spec: VpcSpec(cidr: "10.9.0.0/16", vni: try VNI(4242))))
            try await store.create(Endpoint(name: "first", spec: EndpointSpec(vpc: "a", subnet: "s1", ip: "10.0.1.7")))
            let before = try await snapshot(store)
            let got = await refusal {
                switch what {
                case "subnet outside its VPC": try await store.create(Subnet(name: "x", spec: SubnetSpec(vpc: "a", cidr: "10.1.0.0/24")))
                case "overlapping subnet": try await store.create(Subnet(name: "x", spec: SubnetSpec(vpc: "a", cidr: "10.0.1.128/25")))
                case "subnet of an unknown VPC": try await store.create(Subnet(name: "x", spec: SubnetSpec(vpc: "zz", cidr: "10.0.2.0/24")))
                case "endpoint of an unknown subnet": try await store.create(Endpoint(name: "x", spec: EndpointSpec(vpc: "a", subnet: "s9")))
                case "endpoint of an unknown VPC": try await store.create(Endpoint(name: "x", spec: EndpointSpec(vpc: "zz", subnet: "s1")))
                case "endpoint IP outside its subnet": try await store.create(Endpoint(name: "x", spec: EndpointSpec(vpc: "a", subnet: "s1", ip: "10.0.2.5")))
                case "endpoint IP is the gateway": try await store.create(Endpoint(name: "x", spec: EndpointSpec(vpc: "a", subnet: "s1", ip: "10.0.1.1")))
                case "endpoint IP is the broadcast": try await store.create(Endpoint(name: "x", spec: EndpointSpec(vpc: "a", subnet: "s1", ip: "10.0.1.255")))
                case "endpoint IP taken": try await store.create(Endpoint(name: "x", spec: EndpointSpec(vpc: "a", subnet: "s1", ip: "10.0.1.7")))
                case "subnet of another VPC": try await store.create(Endpoint(name: "x", spec: EndpointSpec(vpc: "b", subnet: "s1")))
                case "bad name": try await store.create(Endpoint(name: "Web", spec: EndpointSpec(vpc: "a", subnet: "s1")))
                case "VNI taken": try await store.create(Vpc(name: "x", spec: VpcSpec(cidr: "10.0.0.0/16", vni: try VNI(4242))))
                default: Issue.record("no case \(what)")
                }
            }
            #expect(got == expected)
            #expect(try await snapshot(store) == before, "a refused create changed etcd")
        }
    }

    @Test("the same VPC's identical CIDR in another VPC is fine; the same IP in two VPCs is fine")
    func overlapAcrossVPCs() async throws {
        try await withStore("across") { store in
            try await store.create(Vpc(name: "b", spec: VpcSpec(cidr: "10.0.0.0/16")))
            try await store.create(Subnet(name: "s1b", spec: SubnetSpec(vpc: "b", cidr: "10.0.1.0/24")))
            try await store.create(Endpoint(name: "ea", spec: EndpointSpec(vpc: "a", subnet: "s1", ip: "10.0.1.9")))
            try await store.create(Endpoint(name: "eb", spec: EndpointSpec(vpc: "b", subnet: "s1b", ip: "10.0.1.9")))
        }
    }

    @Test("concurrent creates of one address: exactly one wins")
    func concurrentAddress() async throws {
        try await withStore("race") { store in
            let outcomes = try await withThrowingTaskGroup(of: Bool.self) { group in
                for i in 0..<8 {
                    group.addTask {
                        do {
                            try await store.create(Endpoint(name: "e\(i)", spec: EndpointSpec(vpc: "a", subnet: "s1", ip: "10.0.1.50")))
                            return true
                        } catch StoreError.invalid { return false }
                    }
                }
                return try await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 }.count == 1)
            #expect(try await store.list(EndpointSpec.self).objects.count == 1)
        }
    }

    @Test("concurrent overlapping subnets: exactly one wins")
    func concurrentSubnets() async throws {
        try await withStore("subnet-race") { store in
            let outcomes = try await withThrowingTaskGroup(of: Bool.self) { group in
                for i in 0..<6 {
                    group.addTask {
                        do {
                            try await store.create(Subnet(name: "o\(i)", spec: SubnetSpec(vpc: "a", cidr: try CIDR(parsing: "10.0.\(8 + i % 2).0/\(i % 2 == 0 ? 22 : 24)"))))
                            return true
                        } catch StoreError.invalid { return false }
                    }
                }
                return try await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            // 10.0.8.0/22 covers 10.0.9.0/24: only one of all six can stand.
            #expect(outcomes.filter { $0 }.count == 1)
        }
    }

    @Test("update bumps the generation on a spec change, refuses a stale resourceVersion and immutable fields")
    func update() async throws {
        try await withStore("update") { store in
            var s = try #require(try await store.get(SubnetSpec.self, "s1"))
            s.spec.bouncers = 3
            let updated = try await store.update(s)
            #expect(updated.metadata.generation == 2)
            #expect(await refusal { try await store.update(s) } == "Subnet s1 was changed by someone else; read it again and retry")
            var t = updated
            t.spec.cidr = "10.0.1.0/25"
            #expect(await refusal { try await store.update(t) }?.hasPrefix("spec.cidr: cannot change from 10.0.1.0/24 to 10.0.1.0/25") == true)
            let withStatus = try await store.updateStatus(SubnetSpec.self, "s1") { $0.common.phase = .provisioned; $0.bouncers = ["h1"] }
            #expect(withStatus.metadata.generation == 2, "a status write is not a spec change")
            #expect(try await store.get(SubnetSpec.self, "s1")?.status?.bouncers == ["h1"])
        }
    }

    @Test("a published host port is one scaled endpoint's cluster-wide, cannot change, and is free again once it is deleted")
    func hostPorts() async throws {
        try await withStore("host-ports") { store in
            try await store.create(Vpc(name: "b", spec: VpcSpec(cidr: "10.0.0.0/16")))
            try await store.create(Subnet(name: "t1", spec: SubnetSpec(vpc: "b", cidr: "10.0.1.0/24")))
            func site(_ name: String, _ vpc: String, _ subnet: String, _ hostPort: Int, _ proto: PortProtocol = .tcp) -> Endpoint {
                Endpoint(name: name, spec: EndpointSpec(vpc: vpc, subnet: subnet, type: .scaled,
                                                        ports: [EndpointPort(port: 53, protocol: .udp), EndpointPort(port: 80, protocol: proto, hostPort: hostPort)]))
            }
            try await store.create(site("web", "a", "s1", 30080))
            let before = try await snapshot(store)
            // Another VPC's endpoint, same port: refused, nothing written.
            #expect(await refusal { try await store.create(site("web2", "b", "t1", 30080)) }
                    == "spec.ports[1].hostPort: TCP/30080 is already published by Endpoint web")
            #expect(try await snapshot(store) == before)
            // The same number over UDP is another port.
            try await store.create(site("dns", "b", "t1", 30080, .udp))
            // Published ports cannot change.
            var changed = try #require(try await store.get(EndpointSpec.self, "web"))
            changed.spec.ports?[1].hostPort = 30081
            #expect(await refusal { try await store.update(changed) }?.hasPrefix("spec.ports[].hostPort: cannot change from TCP/30080 to TCP/30081") == true)
            try await store.delete(EndpointSpec.self, "web")
            try await store.create(site("web2", "b", "t1", 30080))
        }
    }

    @Test("delete releases the address at once, or waits for finalizers")
    func delete() async throws {
        try await withStore("delete") { store in
            try await store.create(Endpoint(name: "e", spec: EndpointSpec(vpc: "a", subnet: "s1", ip: "10.0.1.20")))
            #expect(try await store.delete(EndpointSpec.self, "e"))
            #expect(try await !store.delete(EndpointSpec.self, "e"))
            // The address is free again.
            try await store.create(Endpoint(name: "f", spec: EndpointSpec(vpc: "a", subnet: "s1", ip: "10.0.1.20")))
            try await store.setFinalizer(EndpointSpec.self, "f", "mizar.com/operator", present: true)
            #expect(try await store.delete(EndpointSpec.self, "f"))
            let marked = try #require(try await store.get(EndpointSpec.self, "f"))
            #expect(marked.metadata.deletionTimestamp != nil)
            #expect(await refusal { try await store.create(Endpoint(name: "g", spec: EndpointSpec(vpc: "a", subnet: "s1", ip: "10.0.1.20"))) }
                    == "spec.ip: 10.0.1.20 is already taken in Vpc a by Endpoint f")
            try await store.setFinalizer(EndpointSpec.self, "f", "mizar.com/operator", present: false)
            #expect(try await store.get(EndpointSpec.self, "f") == nil)
            try await store.create(Endpoint(name: "g", spec: EndpointSpec(vpc: "a", subnet: "s1", ip: "10.0.1.20")))
            // Deleting the subnet frees its range for a new one.
            try await store.delete(EndpointSpec.self, "g")
            try await store.delete(SubnetSpec.self, "s1")
            try await store.create(Subnet(name: "s1x", spec: SubnetSpec(vpc: "a", cidr: "10.0.1.0/25")))
        }
    }

    @Test("a watch sees creates, status changes and deletes with the object")
    func watch() async throws {
        try await withStore("watch") { store in
            let (_, revision) = try await store.list(EndpointSpec.self)
            let events = store.watch(EndpointSpec.self, after: revision)
            try await store.create(Endpoint(name: "w", spec: EndpointSpec(vpc: "a", subnet: "s1", ip: "10.0.1.30")))
            try await store.updateStatus(EndpointSpec.self, "w") { $0.common.phase = .provisioned }
            try await store.delete(EndpointSpec.self, "w")
            var seen: [String] = []
            for try await batch in events {
                for e in batch { seen.append("\(e.kind) \(e.name) \(e.object?.status?.common.phase.rawValue ?? "-")") }
                if seen.count >= 3 { break }
            }
            #expect(seen == ["put w Init", "put w Provisioned", "delete w Provisioned"])
        }
    }

    @Test("follow sees a change made after it starts, ignores longer names, gives up at its timeout, and sees a delete")
    func follow() async throws {
        try await withStore("follow") { store in
            try await store.create(Endpoint(name: "f", spec: EndpointSpec(vpc: "a", subnet: "s1", ip: "10.0.1.40")))
            try await store.create(Endpoint(name: "f2", spec: EndpointSpec(vpc: "a", subnet: "s1", ip: "10.0.1.41")))
            let phase = { @Sendable (o: Endpoint?) -> String? in o?.status?.common.phase == .provisioned ? o?.name : nil }
            // Already settled: answered from the first read.
            try await store.updateStatus(EndpointSpec.self, "f2") { $0.common.phase = .provisioned }
            #expect(try await store.follow(EndpointSpec.self, "f2", timeout: .seconds(5), until: phase) == "f2")
            // Settled later, while "f2" (same prefix) changes too.
            async let seen = store.follow(EndpointSpec.self, "f", timeout: .seconds(5), until: phase)
            try await Task.sleep(for: .milliseconds(100))
            try await store.updateStatus(EndpointSpec.self, "f2") { $0.common.reason = "noise" }
            try await store.updateStatus(EndpointSpec.self, "f") { $0.common.phase = .provisioned }
            #expect(try await seen == "f")
            // Never settled: nil at the timeout, not before.
            let start = ContinuousClock.now
            #expect(try await store.follow(EndpointSpec.self, "f", timeout: .milliseconds(300)) { _ in nil as Bool? } == nil)
            #expect(ContinuousClock.now - start >= .milliseconds(300))
            // Deleted: the predicate is given nil.
            async let gone = store.follow(EndpointSpec.self, "f", timeout: .seconds(5)) { $0 == nil ? true : nil }
            try await Task.sleep(for: .milliseconds(100))
            try await store.delete(EndpointSpec.self, "f")
            #expect(try await gone == true)
        }
    }

    @Test("a droplet's registration holds a long lease without a role and a short one with it; the key moves between them and is never absent")
    func roleLease() async throws {
        try await withStore("role-lease", seeded: false) { store in
            let role = WatchedFlag()
            let spec = DropletSpec(ip: "10.255.0.9", mac: "0a:00:00:00:00:09", transitd: "10.255.0.9:7070")
            let key = store.dropletLeasePrefix + "d9"
            // Every change of the key, from before it exists.
            let (_, revision) = try await store.etcd.list(prefix: key)
            let seen = Mutex<[EtcdEvent.Kind]>([])
            let changes = Task {
                for try await batch in store.etcd.watch(prefix: key, fromRevision: revision + 1) {
                    seen.withLock { $0 += batch.filter { $0.kv.key == key }.map(\.kind) }
                }
            }
            let registration = Task {
                await DropletRegistration.run(store: store, name: "d9", spec: spec,
                                              liveness: .init(ttl: 30, roleTTL: 3, holdsRole: role),
                                              logger: Logger(label: "test"))
            }
            defer { registration.cancel(); changes.cancel() }
            /// The lease the key is under once it has `ttl` seconds, and the TTL etcd reports left on it.
            func lease(granted ttl: Int64) async throws -> (id: Int64, left: Int64) {
                let deadline = ContinuousClock.now + .seconds(5)
                while ContinuousClock.now < deadline {
                    if let kv = try await store.etcd.get(key), kv.lease != 0, let left = try await store.etcd.timeToLive(kv.lease),
                       (ttl > 3) == (left > 3) {
                        return (kv.lease, left)
                    }
                    try await Task.sleep(for: .milliseconds(50))
                }
                Issue.record("the key is not under a lease of \(ttl) s within 5 s")
                throw CancellationError()
            }
            let long = try await lease(granted: 30)
            #expect(long.left > 20 && long.left <= 30)
            // Made a bouncer: under a 3 s lease within that TTL (a busy
            // machine took 1.1 s), the long one revoked.
            let start = ContinuousClock.now
            role.set(true)
            let short = try await lease(granted: 3)
            #expect(ContinuousClock.now - start < .seconds(3))
            #expect(short.id != long.id && short.left <= 3)
            #expect(try await store.etcd.timeToLive(long.id) == nil)
            // Kept alive past its TTL while the role lasts.
            try await Task.sleep(for: .seconds(4))
            #expect(try await store.etcd.get(key)?.lease == short.id)
            // The role gone: back to a long lease.
            role.set(false)
            let again = try await lease(granted: 30)
            #expect(again.id != short.id && again.left > 20)
            #expect(try await store.etcd.timeToLive(short.id) == nil)
            // The Droplet was made once, and the key was only ever put, never deleted.
            #expect(try await store.get(DropletSpec.self, "d9")?.spec == spec)
            registration.cancel()
            try await Task.sleep(for: .milliseconds(300))
            changes.cancel()
            let kinds = seen.withLock { $0 }
            #expect(kinds.count >= 3 && !kinds.contains(.delete))
        }
    }
}
