import Glibc
import MizarAPI
import MizarCore
import MizarEtcd
import MizarPKI
import MizarStore
import MizarTLS
import MizarTestbed
import Testing

/// etcd as Mizar runs it: mutual TLS, the certificate's name as the user,
/// and each droplet's transitd allowed to write only its own keys.
@Suite("etcd access: TLS client certificates and per-droplet permissions")
struct AccessControlTests {
    /// What a call did: done, refused by etcd's permissions, or failed
    /// otherwise (the connection refused, say).
    enum Result: Equatable { case done, denied, failed }

    static func attempt(_ body: () async throws -> Void) async -> Result {
        do {
            try await body()
            return .done
        } catch let e as EtcdError where e.kind == .permissionDenied {
            return .denied
        } catch {
            return .failed
        }
    }

    /// A droplet's certificate from the shared etcd's CA.
    static func dropletTLS(_ name: String) async throws -> TLSFiles {
        let pki = try #require(try await EtcdServer.shared().pkiDirectory)
        _ = try PKI(directory: pki).ensure([try Identity.droplet(name, ip: IPv4Address(10, 255, 0, 1))])
        return TLSFiles(pkiDirectory: pki, stem: "droplet-\(name)")
    }

    @Test("no certificate, plaintext, or a certificate of another CA: refused; the operator's and root's work")
    func certificatesRequired() async throws {
        let etcd = try await EtcdServer.shared()
        let admin = try #require(etcd.adminTLS)
        // etcd's own HTTPS endpoint: TLS without a client certificate fails
        // the handshake; with root's, it answers.
        let bare = runCapturing(["curl", "-sS", "--max-time", "5", "--cacert", admin.ca, "https://127.0.0.1:\(etcd.clientPort)/version"])
        #expect(bare.status != 0, "no client certificate: \(bare.output)")
        let withCert = runCapturing(["curl", "-sS", "--max-time", "5", "--cacert", admin.ca, "--cert", admin.certificate, "--key", admin.key,
                                     "https://127.0.0.1:\(etcd.clientPort)/version"])
        #expect(withCert.status == 0 && withCert.output.contains("etcdserver"), "\(withCert.output)")

        // The gRPC API: plaintext, and an operator's name signed by a CA of
        // its own, get nowhere; the real operator reads and writes.
        #expect(await Self.attempt { try await withEtcd(host: "127.0.0.1", port: etcd.clientPort) { _ = try await $0.put("/acl/x", [1]) } } == .failed)
        let rogueDir = "/tmp/mizar-rogue-pki-\(getpid())"
        defer { _ = runCapturing(["rm", "-rf", rogueDir]) }
        _ = try PKI(directory: rogueDir).ensure([.operator])
        let rogue = TLSFiles(certificate: "\(rogueDir)/operator.crt", key: "\(rogueDir)/operator.key", ca: admin.ca)
        #expect(await Self.attempt { try await withEtcd(host: "127.0.0.1", port: etcd.clientPort, tls: rogue) { _ = try await $0.put("/acl/x", [1]) } } == .failed)
        #expect(await Self.attempt { try await withEtcd(host: "127.0.0.1", port: etcd.clientPort, tls: etcd.operatorTLS) { e in
            try await e.put("/acl-\(getpid())/x", [1])
            try #require(try await e.get("/acl-\(getpid())/x")?.value == [1])
            try await e.delete("/acl-\(getpid())/x")
        } } == .done)
    }

    @Test("a transitd writes its own Droplet, lease, events and claims; not another's, nor any VPC, subnet, endpoint, address or policy")
    func dropletWritesOnlyItsOwn() async throws {
        let etcd = try await EtcdServer.shared()
        let root = "/acl-\(getpid())/droplets/"
        let (a, b) = ("acla", "aclb")
        // As root: a VPC and a subnet to read, and droplet a's user.
        try await withEtcd(host: "127.0.0.1", port: etcd.clientPort, tls: etcd.adminTLS) { e in
            let store = Store(etcd: e, root: root)
            try await e.delete(prefix: root)
            try await store.create(Vpc(name: "v", spec: VpcSpec(cidr: "10.0.0.0/16")))
            try await store.create(Subnet(name: "s", spec: SubnetSpec(vpc: "v", cidr: "10.0.1.0/24")))
            try await store.create(Droplet(name: b, spec: DropletSpec(ip: IPv4Address(10, 255, 0, 2), mac: MACAddress(2, 0, 0, 0, 0, 2), transitd: "10.255.0.2:7070")))
            _ = try await store.putClaim(b, "b-ep", EndpointClaim(spec: EndpointSpec(vpc: "v", subnet: "s")))
            try await AccessControl.admitDroplet(store, droplet: a)
        }
        let before = try await withEtcd(host: "127.0.0.1", port: etcd.clientPort, tls: etcd.adminTLS) { try await $0.list(prefix: root).kvs }

        try await withEtcd(host: "127.0.0.1", port: etcd.clientPort, tls: try await Self.dropletTLS(a)) { e in
            let store = Store(etcd: e, root: root)
            // Its own: allowed.
            #expect(await Self.attempt { _ = try await store.get(VpcSpec.self, "v") } == .done)
            #expect(await Self.attempt {
                try await store.create(Droplet(name: a, spec: DropletSpec(ip: IPv4Address(10, 255, 0, 1), mac: MACAddress(2, 0, 0, 0, 0, 1), transitd: "10.255.0.1:7070")))
            } == .done)
            #expect(await Self.attempt {
                let lease = try await e.grantLease(ttl: 5)
                try await e.put(store.dropletLeasePrefix + a, Array("10.255.0.1:7070".utf8), lease: lease)
            } == .done)
            #expect(await Self.attempt { _ = try await store.putClaim(a, "a-ep", EndpointClaim(spec: EndpointSpec(vpc: "v", subnet: "s"))) } == .done)
            #expect(await Self.attempt { try await store.deleteClaim(a, "a-ep") } == .done)

            // Anything else: denied, and nothing changes.
            let denied: [(String, () async throws -> Void)] = [
                ("a VPC", { try await store.create(Vpc(name: "w", spec: VpcSpec(cidr: "10.9.0.0/16"))) }),
                ("a subnet", { try await store.create(Subnet(name: "s2", spec: SubnetSpec(vpc: "v", cidr: "10.0.2.0/24"))) }),
                ("an endpoint", { try await store.create(Endpoint(name: "direct", spec: EndpointSpec(vpc: "v", subnet: "s", droplet: a))) }),
                ("a subnet's deletion", { try await store.delete(SubnetSpec.self, "s") }),
                ("an address claim", { try await e.put(store.ipKey(vpc: "v", ip: IPv4Address(10, 0, 1, 9)), Array("x".utf8)) }),
                ("a policy", { try await e.put(root + "networkpolicies/p", Array("{}".utf8)) }),
                ("droplet b's Droplet", { try await e.put(store.key(.droplet, b), Array("{}".utf8)) }),
                ("droplet b's lease key", { try await e.put(store.dropletLeasePrefix + b, Array("x".utf8)) }),
                ("droplet b's claims", { _ = try await store.putClaim(b, "mine-now", EndpointClaim(spec: EndpointSpec(vpc: "v", subnet: "s"))) }),
                ("droplet b's claim's deletion", { try await store.deleteClaim(b, "b-ep") }),
                ("a longer droplet name", { try await e.put(store.key(.droplet, a + "x"), Array("{}".utf8)) }),
                ("the operators' ring", { try await e.put(store.operatorPrefix + "me", Array("x".utf8)) }),
                ("a key outside Mizar's", { try await e.put("/elsewhere", Array("x".utf8)) }),
            ]
            for (what, write) in denied {
                #expect(await Self.attempt(write) == .denied, "droplet \(a) could write \(what)")
            }
        }
        // Not one key changed but droplet a's own.
        try await withEtcd(host: "127.0.0.1", port: etcd.clientPort, tls: etcd.adminTLS) { e in
            let after = try await e.list(prefix: root).kvs
            let own = [Store(etcd: e, root: root).key(.droplet, a), Store(etcd: e, root: root).dropletLeasePrefix + a]
            #expect(after.filter { !own.contains($0.key) }.map(\.key) == before.map(\.key))
            #expect(after.filter { !own.contains($0.key) }.map(\.modRevision) == before.map(\.modRevision))
            #expect(try await e.get("/elsewhere") == nil)
            try await e.delete(prefix: root)
        }
        // A certificate of the right CA whose name etcd has no user for: nothing at all.
        try await withEtcd(host: "127.0.0.1", port: etcd.clientPort, tls: try await Self.dropletTLS("aclnobody")) { e in
            #expect(await Self.attempt { _ = try await e.get(root + "vpcs/v") } == .denied)
        }
    }

    @Test("writes in flight while a droplet's user is added all succeed (etcd's 'auth store is old' is sent again)")
    func writesSurviveUserChanges() async throws {
        let etcd = try await EtcdServer.shared()
        let root = "/acl-\(getpid())/churn/"
        try await withEtcd(host: "127.0.0.1", port: etcd.clientPort, tls: etcd.operatorTLS) { op in
            try await withEtcd(host: "127.0.0.1", port: etcd.clientPort, tls: etcd.adminTLS) { admin in
                let store = Store(etcd: admin, root: root)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for i in 0..<20 { try await AccessControl.admitDroplet(store, droplet: "churn\(i)") }
                    }
                    for w in 0..<4 {
                        group.addTask {
                            for i in 0..<100 {
                                try await op.transaction(if: [.absent(root + "\(w)-\(i)")], then: [.put(root + "\(w)-\(i)", [1])])
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                #expect(try await admin.count(prefix: root) == 400)
                try await admin.delete(prefix: root)
            }
        }
    }
}
