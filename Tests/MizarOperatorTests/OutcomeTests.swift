import Glibc
import MizarAPI
import MizarCNI
import MizarCore
import MizarEtcd
import Logging
@testable import MizarOperator
import MizarRPC
import MizarStore
import MizarSystem
import MizarTestbed
import MizarTransitClient
import Testing

/// A reconcile ends done, retried or failed: a spec a transitd refuses for
/// good is not retried forever but set Failed, with a reason code that
/// programs read instead of the message. (On the shared cluster, whose
/// tests run one at a time.)
extension OperatorTests {
    @Test("a spec its transitd refuses ends Failed with reason code RefusedByHost after one call; its bouncers forget it")
    func refusedSpecFails() async throws {
        let plane = try await Plane.get()
        try await plane.withOperator { store, op in
            #expect(try await plane.dropletsReady(store))
            try await store.create(Vpc(name: "rf", spec: VpcSpec(cidr: "10.13.0.0/16")))
            try await store.create(Subnet(name: "rf-1", spec: SubnetSpec(vpc: "rf", cidr: "10.13.1.0/24")))
            #expect(try await eventually { try await store.get(SubnetSpec.self, "rf-1")?.status?.common.phase == .provisioned })
            let subnet = try #require(try await store.get(SubnetSpec.self, "rf-1"))
            let bouncers = try #require(subnet.status?.bouncers)
            let vni = try #require(subnet.status?.vni)
            let home = try #require(plane.bed.hosts.map { plane.droplet($0.name) }.first { !bouncers.contains($0) })
            func target(_ droplet: String) async throws -> TransitTarget {
                try TransitTarget(parsing: try #require(try await store.get(DropletSpec.self, droplet)).spec.transitd)
            }

            op.pool.resetCounts()
            // Admission takes any absolute path; only the host can tell it is not there.
            let missing = "/run/netns/mizar-no-such-\(getpid())"
            try await store.create(Endpoint(name: "rf-ghost", spec: EndpointSpec(vpc: "rf", subnet: "rf-1", droplet: home, netns: missing)))
            #expect(try await eventually { try await store.get(EndpointSpec.self, "rf-ghost")?.status?.common.phase == .failed })
            let failed = try #require(try await store.get(EndpointSpec.self, "rf-ghost"))
            #expect(failed.status?.common.reasonCode == .refusedByHost)
            #expect(failed.status?.common.reason?.hasPrefix("netns:") == true, "\(failed.status?.common.reason ?? "no reason")")
            #expect(failed.status?.common.observedGeneration == failed.metadata.generation)

            // One attempt, not a retry loop: its host was called once, each
            // bouncer twice (the entry, then its removal), nobody else.
            try await Task.sleep(for: .milliseconds(600))
            var expected: [TransitTarget: Int] = [try await target(home): 1]
            for b in bouncers { expected[try await target(b)] = 2 }
            #expect(op.pool.callCounts() == expected)
            let ip = try #require(failed.status?.ip)
            for b in bouncers {
                let host = try #require(plane.bed.hosts.first { plane.droplet($0.name) == b })
                var r = Mizar_Transit_V1_ListRequest()
                r.vni = vni.value
                let entries = try await withTransitClient(.unix(host.socket)) { try await $0.listEndpoints(r).endpoints }
                #expect(!entries.contains { $0.ip == "\(ip)" }, "bouncer \(b) still sends \(ip) to \(home)")
            }

            // mizarctl wait gives up at once, naming the reason code.
            let argv = [siblingExecutable("mizarctl"), "wait", "endpoint", "rf-ghost", "--timeout", "20",
                        "--etcd", plane.etcd.endpoint, "--root", plane.root] + plane.tlsFlags
            let started = monotonicSeconds()
            let waited = try await onOwnThread { runCapturing(argv) }
            #expect(waited.status != 0 && waited.output.contains("rf-ghost failed (RefusedByHost: netns:"), "\(waited.output)")
            #expect(monotonicSeconds() - started < 10, "mizarctl wait waited for an endpoint that failed for good")

            // A Failed endpoint is still deleted cleanly, with its address.
            try await store.delete(VpcSpec.self, "rf")
            #expect(try await eventually(20) { try await store.get(VpcSpec.self, "rf") == nil })
            #expect(try await store.etcd.get(store.ipKey(vpc: "rf", ip: ip)) == nil)
        }
    }

}

@Suite("reason codes")
struct ReasonCodeTests {
    @Test("the CNI error of a Failed endpoint comes from its reason code, not its message")
    func cniCodeFromReason() {
        let exhausted = CNIError.failed(.subnetExhausted, reason: "anything at all", endpoint: "e", subnet: "s")
        #expect(exhausted.code == CNIError.subnetExhausted && exhausted.msg.contains("subnet s has no free address"))
        let refused = CNIError.failed(.refusedByHost, reason: "mac: 00:00:00:00:00:00 is not a unicast MAC address", endpoint: "e", subnet: "s")
        #expect(refused.code == CNIError.invalidConfig && refused.msg.hasSuffix("mac: 00:00:00:00:00:00 is not a unicast MAC address"))
        // The words "no free address" in a message no longer decide anything.
        let other = CNIError.failed(ReasonCode(rawValue: "Unexpected"), reason: "no free address", endpoint: "e", subnet: "s")
        #expect(other.code == CNIError.ioFailure && other.msg.contains("Unexpected"))
        #expect(CNIError.failed(nil, reason: nil, endpoint: "e", subnet: "s").code == CNIError.ioFailure)
    }
}

/// The operator's cache of one kind against a real etcd.
@Suite("informer cache")
struct InformerTests {
    @Test("a write recorded after the watch has passed the object's delete does not bring it back; one ahead of the watch is kept")
    func noGhost() async throws {
        try await withEtcd(host: "127.0.0.1", port: try await EtcdServer.shared().clientPort, tls: try await EtcdServer.shared().adminTLS) { etcd in
            let store = Store(etcd: etcd, root: "/test-\(getpid())/informer-\(UInt32.random(in: 0...UInt32.max))/")
            let informer = Informer<VpcSpec>()
            let task = Task { await informer.run(store: store, logger: Logger(label: "informer-test")) }
            defer { task.cancel() }
            await informer.waitSynced()
            // Created, seen, deleted, seen gone; then the writer's late record.
            let created = try await store.create(Vpc(name: "g", spec: VpcSpec(cidr: "10.0.0.0/16")))
            #expect(try await eventually(5) { informer.get("g") != nil })
            try await store.delete(VpcSpec.self, "g")
            #expect(try await eventually(5) { informer.get("g") == nil })
            informer.record(created)
            #expect(informer.get("g") == nil, "a deleted object came back from a late record")
            // A record the watch has not reached yet is kept: the writer reads its own write.
            let ahead = try await store.create(Vpc(name: "h", spec: VpcSpec(cidr: "10.1.0.0/16")))
            informer.record(ahead)
            #expect(informer.get("h")?.metadata.resourceVersion == ahead.metadata.resourceVersion)
            try await store.delete(VpcSpec.self, "h")
            #expect(try await eventually(5) { informer.get("h") == nil })
        }
    }
}

/// The droplet table each host believes tunnel packets from, as the
/// operator keeps it.
extension OperatorTests {
    @Test("every ready host believes exactly the droplets; a Droplet deleted is withdrawn from every host")
    func dropletTable() async throws {
        let plane = try await Plane.get()
        try await plane.withOperator { store, op in
            #expect(try await plane.dropletsReady(store))
            let all = Set(plane.bed.hosts.map { "\($0.ip) \($0.mac)" })
            func table(_ host: Testbed.Host) async throws -> Set<String> {
                try await withTransitClient(.unix(host.socket)) { try await $0.listDroplets(.init()) }.droplets.map { "\($0.ip) \($0.mac)" }.reduce(into: []) { $0.insert($1) }
            }
            for host in plane.bed.hosts {
                let believed = try await table(host)
                #expect(believed == all, "\(host.name) believes \(believed)")
            }
            // A Droplet that never came up, put on h1 by hand, then deleted:
            // the operator withdraws it from every ready host.
            let ghost = "172.30.\(plane.bed.underlayNet).77 02:4d:00:00:00:77"
            try await store.create(Droplet(name: "ghost-droplet", spec: DropletSpec(ip: try IPv4Address(parsing: "172.30.\(plane.bed.underlayNet).77"),
                                                                                 mac: "02:4d:00:00:00:77", transitd: "unix:/nonexistent")))
            let h1 = plane.bed.hosts[0]
            var ghostHost = Mizar_Transit_V1_Host()
            ghostHost.ip = "172.30.\(plane.bed.underlayNet).77"
            ghostHost.mac = "02:4d:00:00:00:77"
            var put = Mizar_Transit_V1_DropletTable()
            put.droplets = [ghostHost]
            _ = try await withTransitClient(.unix(h1.socket)) { try await $0.putDroplets(put) }
            #expect(try await table(h1).contains(ghost))
            // Seen by the operator (NotReady: it has no lease), then deleted.
            #expect(try await eventually { try await store.get(DropletSpec.self, "ghost-droplet")?.status?.common.phase == .notReady })
            try await store.delete(DropletSpec.self, "ghost-droplet")
            let withdrawn = try await eventually { try await table(h1) == all }
            let left = try await table(h1)
            #expect(withdrawn, "h1 still believes \(left)")
            // A joiner's whole table at 25,001 hosts goes in parts of
            // 10,000 (one message would near gRPC's 4 MiB limit around
            // 110,000 hosts): three calls, every entry held; a replacement
            // is one call.
            let many = (0..<25_001).map { i in
                HostAddress(ip: IPv4Address(198, 18, UInt8(i / 250), UInt8(i % 250 + 1)),
                            mac: try! MACAddress(parsing: String(format: "02:5a:00:00:%02x:%02x", i / 256, i % 256)))
            }
            let pool = HTTP2TransitPool()
            let peer1 = TransitPeer(target: .unix(h1.socket), ip: h1.ip, mac: h1.mac)
            try await Provisioning.putDroplets(many, replace: false, on: [peer1], via: pool)
            #expect(pool.methodCounts()["PutDroplets"] == 3, "\(pool.methodCounts())")
            let big = try await table(h1)
            #expect(big.count == all.count + many.count && big.isSuperset(of: all)
                    && big.contains("\(many[0].ip) \(many[0].mac)") && big.contains("\(many[25_000].ip) \(many[25_000].mac)"))
            pool.resetCounts()
            let own = plane.bed.hosts.map { HostAddress(ip: $0.ip, mac: $0.mac) }
            try await Provisioning.putDroplets(own, replace: true, on: [peer1], via: pool)
            #expect(pool.methodCounts()["PutDroplets"] == 1)
            #expect(try await table(h1) == all)
            await pool.shutdown()
        }
    }
}

/// A bouncer's whole policy push in parts.
extension OperatorTests {
    @Test("a policy push of 45,001 entries reaches a real transitd in three parts, each with the rule sets it names: every entry and set held; removing them all is three parts too, and nothing is left")
    func policyInParts() async throws {
        let plane = try await Plane.get()
        let h1 = plane.bed.hosts[0]
        let peer = TransitPeer(target: .unix(h1.socket), ip: h1.ip, mac: h1.mac)
        let vni: UInt32 = 0xBEEF5   // no VPC of any test has it
        func held() async throws -> Mizar_Transit_V1_PolicyState {
            var r = Mizar_Transit_V1_ListRequest()
            r.vni = vni
            let request = r
            return try await withTransitClient(.unix(h1.socket)) { try await $0.listPolicy(request) }
        }
        // Two rule sets: even entries name one, odd entries the other.
        let sets = [UInt64(0x5e7a), UInt64(0x5e7b)].map { id in
            var s = Mizar_Transit_V1_PolicySet()
            s.vni = vni
            s.id = id
            return s
        }
        let n = 45_001
        func ip(_ i: Int) -> String { "10.\(i >> 16).\((i >> 8) & 0xff).\(i & 0xff)" }
        var update = Mizar_Transit_V1_PolicyUpdate()
        update.sets = sets
        update.endpoints = (0..<n).map { i in
            var e = Mizar_Transit_V1_PolicyEndpoint()
            e.vni = vni
            e.ip = ip(i)
            e.ingressSet = sets[i % 2].id
            return e
        }
        let parts = Provisioning.policyParts(update)
        #expect(parts.map(\.endpoints.count) == [20_000, 20_000, 5_001])
        #expect(parts.allSatisfy { $0.sets.map(\.id) == [0x5e7a, 0x5e7b] }, "a part lacks a set its entries name")
        let pool = HTTP2TransitPool()
        let put = try await Provisioning.putPolicy([(peer, update)], via: pool)
        #expect(pool.methodCounts()["PutPolicy"] == 3, "\(pool.methodCounts())")
        #expect(put.first?.changed == n)
        let state = try await held()
        #expect(state.endpoints.count == n && Set(state.sets.map(\.id)) == [0x5e7a, 0x5e7b],
                "\(state.endpoints.count) entries, sets \(state.sets.map(\.id))")
        #expect(state.endpoints.contains { $0.ip == ip(n - 1) && $0.ingressSet == 0x5e7a })
        // Every entry removed: three parts again; the sets go with them.
        var removal = Mizar_Transit_V1_PolicyUpdate()
        removal.removed = (0..<n).map { i in
            var k = Mizar_Transit_V1_EndpointKey()
            k.vni = vni
            k.ip = ip(i)
            return k
        }
        pool.resetCounts()
        let removed = try await Provisioning.putPolicy([(peer, removal)], via: pool)
        #expect(pool.methodCounts()["PutPolicy"] == 3 && removed.first?.changed == n, "\(pool.methodCounts()) \(removed)")
        let left = try await held()
        #expect(left.endpoints.isEmpty && left.sets.isEmpty, "\(left.endpoints.count) entries and \(left.sets.count) sets left")
        // A small update is one call, whole.
        #expect(Provisioning.policyParts(removal.removed.prefix(3).reduce(into: Mizar_Transit_V1_PolicyUpdate()) { $0.removed.append($1) }).count == 1)
        await pool.shutdown()
    }
}

/// A VPC's deletion and the tables a host holds without the operator's
/// record of them.
extension OperatorTests {
    @Test("a VPC is deleted even from a host holding a subnet of it the operator never gave: the subnet is found there and deleted first, and nothing of the VPC is left on any host")
    func vpcDeleteSweepsUnknownSubnets() async throws {
        let plane = try await Plane.get()
        try await plane.withOperator { store, op in
            #expect(try await plane.dropletsReady(store))
            try await store.create(Vpc(name: "gs", spec: VpcSpec(cidr: "10.13.0.0/16")))
            try await store.create(Subnet(name: "gs-1", spec: SubnetSpec(vpc: "gs", cidr: "10.13.1.0/24")))
            try await store.create(Endpoint(name: "gs-e", spec: EndpointSpec(vpc: "gs", subnet: "gs-1", droplet: plane.droplet("h1"))))
            #expect(try await eventually { try await store.get(EndpointSpec.self, "gs-e")?.status?.common.phase == .provisioned })
            let vni = try #require(try await store.get(VpcSpec.self, "gs")?.status?.vni)
            let h1 = plane.bed.hosts[0]
            func subnets(_ h: Testbed.Host) async throws -> [String] {
                var r = Mizar_Transit_V1_ListRequest()
                r.vni = vni.value
                let request = r
                return try await withTransitClient(.unix(h.socket)) { try await $0.listSubnets(request) }.subnets.map(\.cidr)
            }
            // A subnet of the VPC on h1 that no object declares.
            var extra = Mizar_Transit_V1_Subnet()
            extra.vni = vni.value
            extra.cidr = "10.13.9.0/24"
            var b = Mizar_Transit_V1_Host()
            b.ip = "\(h1.ip)"
            b.mac = "\(h1.mac)"
            extra.bouncers = [b]
            let put = extra
            _ = try await withTransitClient(.unix(h1.socket)) { try await $0.putSubnet(put) }
            #expect(try await subnets(h1).contains("10.13.9.0/24"))
            try await store.delete(VpcSpec.self, "gs")
            let gone = try await eventually(15) { try await store.get(VpcSpec.self, "gs") == nil }
            let reason = try await store.get(VpcSpec.self, "gs")?.status?.common.reason
            #expect(gone, "VPC gs not deleted: \(reason ?? "-")")
            for h in plane.bed.hosts {
                #expect(try await vpcTable(h.socket, vni: vni.value) == nil, "\(h.name) still holds VPC gs")
                #expect(try await subnets(h).isEmpty, "\(h.name) still holds subnets of VPC gs")
            }
        }
    }
}
