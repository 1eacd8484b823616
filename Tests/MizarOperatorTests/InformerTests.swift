@testable import MizarOperator
import Glibc
import Logging
import MizarAPI
import MizarCore
import MizarEtcd
import MizarStore
import MizarTestbed
import Synchronization
import Testing

extension InformerTests {
    /// What the operator writes is recorded at once and its handlers see the
    /// change then: when the write's own watch event arrives, the cache
    /// already holds it and shows no difference, so a handler that looks at
    /// what changed (a backend's status, for its services) would otherwise
    /// never see it.
    @Test("record tells the handlers of the change, once; an older version is neither recorded nor told; namespaced objects by NAMESPACE/NAME")
    func recordNotifies() {
        let informer = Informer<EndpointSpec>()
        let seen = Mutex<[(String?, String?)]>([])
        informer.onChange { old, new in
            seen.withLock { $0.append((old?.metadata.resourceVersion, new?.metadata.resourceVersion)) }
        }
        var e = Endpoint(name: "web", spec: EndpointSpec(vpc: "a", subnet: "s"))
        e.metadata.resourceVersion = "5"
        informer.record(e)
        var provisioned = e
        provisioned.status = EndpointStatus()
        provisioned.status?.common.phase = .provisioned
        provisioned.metadata.resourceVersion = "7"
        informer.record(provisioned)
        var stale = e
        stale.metadata.resourceVersion = "6"
        informer.record(stale)
        let calls = seen.withLock { $0 }
        #expect(calls.count == 2)
        #expect(calls.first.map { $0.0 == nil && $0.1 == "5" } == true)
        #expect(calls.last.map { $0.0 == "5" && $0.1 == "7" } == true)
        #expect(informer.get("web")?.status?.common.phase == .provisioned)

        let policies = Informer<NetworkPolicySpec>()
        var p = NetworkPolicy(name: "deny", namespace: "y", spec: NetworkPolicySpec())
        p.metadata.resourceVersion = "3"
        policies.record(p)
        #expect(policies.get("y/deny") != nil && policies.get("deny") == nil)
    }
}

extension InformerTests {
    /// The operator looks objects up by field (an endpoint's subnet and
    /// droplet): the index must follow every put, move and delete the
    /// watch brings, and a record made ahead of the watch.
    @Test("an index answers exactly the objects that have the key now: after creates, a move, a record ahead of the watch, deletes")
    func indexes() async throws {
        try await withEtcd(host: "127.0.0.1", port: try await EtcdServer.shared().clientPort, tls: try await EtcdServer.shared().adminTLS) { etcd in
            let store = Store(etcd: etcd, root: "/test-\(getpid())/index-\(UInt32.random(in: 0...UInt32.max))/")
            let informer = Informer<EndpointSpec>(indexes: [.subnet, .droplet])
            let task = Task { await informer.run(store: store, logger: Logger(label: "informer-test")) }
            defer { task.cancel() }
            await informer.waitSynced()
            func names(_ index: InformerIndex<EndpointSpec>, _ key: String) -> Set<String> {
                Set(informer.objects(by: index, key).map(\.name))
            }
            try await store.create(Vpc(name: "v", spec: VpcSpec(cidr: "10.0.0.0/16")))
            try await store.create(Subnet(name: "s1", spec: SubnetSpec(vpc: "v", cidr: "10.0.1.0/24")))
            try await store.create(Subnet(name: "s2", spec: SubnetSpec(vpc: "v", cidr: "10.0.2.0/24")))
            for i in 1...3 {
                try await store.create(Droplet(name: "d\(i)", spec: DropletSpec(ip: IPv4Address(192, 0, 2, UInt8(i)), mac: MACAddress(value: 0x0200_0000_0000 + UInt64(i)), transitd: "unix:/nonexistent")))
            }
            for (n, s, d) in [("a", "s1", "d1"), ("b", "s1", "d2"), ("c", "s2", "d1")] {
                try await store.create(Endpoint(name: n, spec: EndpointSpec(vpc: "v", subnet: s, droplet: d)))
            }
            #expect(try await eventually(5) { names(.subnet, "s1") == ["a", "b"] && names(.subnet, "s2") == ["c"] })
            #expect(names(.droplet, "d1") == ["a", "c"] && names(.droplet, "d2") == ["b"] && names(.droplet, "d3").isEmpty)
            // Provisioned on another droplet than asked: found under both.
            let moved = try await store.updateStatus(EndpointSpec.self, "b") { $0.droplet = "d3" }
            informer.record(moved)
            #expect(names(.droplet, "d3") == ["b"] && names(.droplet, "d2") == ["b"])
            try await store.delete(EndpointSpec.self, "a")
            #expect(try await eventually(5) { names(.subnet, "s1") == ["b"] })
            #expect(names(.droplet, "d1") == ["c"])
            try await store.delete(EndpointSpec.self, "b")
            try await store.delete(EndpointSpec.self, "c")
            #expect(try await eventually(5) { names(.subnet, "s1").isEmpty && names(.subnet, "s2").isEmpty })
            #expect(names(.droplet, "d1").isEmpty && names(.droplet, "d2").isEmpty && names(.droplet, "d3").isEmpty)
        }
    }
}
