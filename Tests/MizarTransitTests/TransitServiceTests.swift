// The Transit service's parsing, validation and refusals, tested without
// root: the real TransitService, served by a real GRPCServer over
// grpc-swift's in-process transport, with a fake host behind it that
// records what reaches it and throws what a test tells it to. The real
// host is tested over real sockets in ClusterTests and TransitdTests.
import GRPCCore
import GRPCInProcessTransport
import GRPCNIOTransportHTTP2Posix
import Glibc
import MizarCore
import MizarDataplane
import MizarRPC
import MizarTransit
import MizarTransitClient
import Synchronization
import Testing

/// A host that holds nothing: records each call and answers with what the
/// test set, or throws the refusal the test set.
final class FakeHost: TransitHosting {
    struct State {
        var calls: [String] = []
        var interfaces: [EndpointInterfaceSpec] = []
        var endpoints: [(EndpointEntry, CIDR)] = []
        var services: [ServiceEntry] = []
        var policyUpdates: [(PolicyEndpointEntry?, Int)] = []
        var policyPuts: [PolicyUpdateSpec] = []
        var refusal: (any Error)?
    }

    let state = Mutex(State())
    let defaultEndpointMTU: UInt32 = 1434

    var calls: [String] { state.withLock { $0.calls } }
    func refuse(with error: (any Error)?) { state.withLock { $0.refusal = error } }

    private func record(_ name: String, _ change: (inout State) -> Void = { _ in }) throws {
        try state.withLock { s in
            s.calls.append(name)
            if let e = s.refusal { throw e }
            change(&s)
        }
    }

    func dropletInfo() async -> Mizar_Transit_V1_Droplet { Mizar_Transit_V1_Droplet() }
    func putDroplets(_ hosts: [HostAddress], replace: Bool) throws -> Bool { try record("putDroplets"); return true }
    func deleteDroplet(_ ip: IPv4Address) throws -> Bool { try record("deleteDroplet"); return false }
    func listDroplets() throws -> [HostAddress] { try record("listDroplets"); return [] }

    func putVPC(_ e: VPCEntry) async throws -> Bool { try record("putVPC"); return true }
    func deleteVPC(_ vni: VNI) async throws -> Bool { try record("deleteVPC"); return true }
    func listVPCs(vni: VNI?) async throws -> [VPCEntry] { try record("listVPCs"); return [] }

    func putSubnet(_ e: SubnetEntry) async throws -> Bool { try record("putSubnet"); return true }
    func deleteSubnet(_ vni: VNI, _ cidr: CIDR) async throws -> Bool { try record("deleteSubnet"); return true }
    func listSubnets(vni: VNI?) async throws -> [SubnetEntry] { try record("listSubnets"); return [] }

    func putEndpoint(_ e: EndpointEntry, subnet: CIDR, policy: PolicyEndpointEntry?, sets: [PolicyUpdateSpec.Set]) async throws -> Bool {
        try record("putEndpoint") { $0.endpoints.append((e, subnet)); $0.policyUpdates.append((policy, sets.count)) }
        return true
    }
    func deleteEndpoint(_ vni: VNI, _ ip: IPv4Address) async throws -> Bool { try record("deleteEndpoint"); return true }
    func listEndpoints(vni: VNI?) async throws -> [(EndpointEntry, CIDR?)] {
        try record("listEndpoints")
        return state.withLock { $0.endpoints.map { ($0.0, $0.1) } }
    }

    func createEndpointInterface(_ spec: EndpointInterfaceSpec) async throws -> (Mizar_Transit_V1_EndpointInterfaceInfo, Bool) {
        try record("createEndpointInterface") { $0.interfaces.append(spec) }
        var info = Mizar_Transit_V1_EndpointInterfaceInfo()
        info.spec.vni = spec.vni.value
        info.spec.ip = "\(spec.ip)"
        info.hostIfname = HostInterface.name(vni: spec.vni, ip: spec.ip)
        return (info, true)
    }
    func deleteEndpointInterface(_ vni: VNI, _ ip: IPv4Address) async throws -> Bool { try record("deleteEndpointInterface"); return true }
    func listEndpointInterfaces(vni: VNI?) async -> [Mizar_Transit_V1_EndpointInterfaceInfo] { [] }

    func listHostCache(vni: VNI?) async throws -> [CachedHost] { try record("listHostCache"); return [] }
    func invalidateHostCache(_ vni: VNI, _ ip: IPv4Address) async throws -> Bool { try record("invalidateHostCache"); return true }
    func counters() async throws -> (counters: [(String, CounterValue)], drops: [(String, CounterValue)]) {
        try record("counters")
        return ([], [])
    }

    func putService(_ e: ServiceEntry, mac: MACAddress, subnet: CIDR) async throws -> ServiceChange {
        try record("putService") { $0.services.append(e) }
        return ServiceChange(changed: true, removedBackends: [], clientHosts: [])
    }
    func deleteService(_ vni: VNI, _ vip: IPv4Address) async throws -> ServiceChange {
        try record("deleteService")
        return ServiceChange(changed: false, removedBackends: [], clientHosts: [])
    }
    func serviceState(_ vni: VNI, _ vip: IPv4Address) async throws -> ServiceState? { try record("serviceState"); return nil }
    func listServices(vni: VNI?) async throws -> [ServiceState] { try record("listServices"); return [] }
    func serviceFlows(vni: VNI?) async throws -> [NATFlow] { try record("serviceFlows"); return [] }
    func invalidateServiceFlows(_ vni: VNI, vip: IPv4Address, backends: Set<IPv4Address>?) async throws -> Int {
        try record("invalidateServiceFlows")
        return 0
    }

    func putPolicy(_ u: PolicyUpdateSpec) async throws -> (changed: Int, revoked: Int) {
        try record("putPolicy") { $0.policyPuts.append(u) }
        return (u.endpoints.count, u.endpoints.filter(\.revoke).count)
    }
    func policyState(vni: VNI?) async throws -> PolicyState { try record("policyState"); return PolicyState(endpoints: [], sets: [], blocks: []) }
    func conntrack(vni: VNI?) async throws -> [ConntrackEntry] { try record("conntrack"); return [] }
    func putPublished(_ p: PublishedService) async throws -> Bool { try record("putPublished"); return true }
    func deletePublished(_ vni: VNI, _ vip: IPv4Address) async throws -> Bool { try record("deletePublished"); return false }
    func listPublished(vni: VNI?) async throws -> (services: [PublishedService], flows: [PublishedFlow]) {
        try record("listPublished")
        return ([], [])
    }
    func snat(vni: VNI?) async throws -> SNATTable {
        try record("snat")
        return SNATTable(address: IPv4Address(192, 0, 2, 1), ports: nil, entries: [])
    }
}

/// Serves `host` over the in-process transport for the length of `body`.
func withInProcessTransit<R: Sendable>(_ host: FakeHost,
                                       _ body: (Mizar_Transit_V1_Transit.Client<InProcessTransport.Client>) async throws -> R) async throws -> R {
    let transport = InProcessTransport()
    return try await withGRPCServer(transport: transport.server, services: [TransitService(host: host)]) { _ in
        try await withGRPCClient(transport: transport.client) { client in
            try await body(Mizar_Transit_V1_Transit.Client(wrapping: client))
        }
    }
}

/// The RPCError `body` throws; fails the test if it throws none.
func refusal(_ body: () async throws -> Void) async -> RPCError? {
    do {
        try await body()
        Issue.record("the call was accepted")
        return nil
    } catch let e as RPCError {
        return e
    } catch {
        Issue.record("not an RPCError: \(error)")
        return nil
    }
}

let hostA: Mizar_Transit_V1_Host = {
    var h = Mizar_Transit_V1_Host()
    h.ip = "172.30.0.1"
    h.mac = "02:00:ac:1e:00:01"
    return h
}()

func endpointMessage(ip: String = "10.0.1.10", mac: String = "02:00:0a:00:01:0a", vni: UInt32 = 100) -> Mizar_Transit_V1_Endpoint {
    var m = Mizar_Transit_V1_Endpoint()
    m.vni = vni
    m.ip = ip
    m.mac = mac
    m.subnet = "10.0.1.0/24"
    m.host = hostA
    return m
}

func interfaceMessage() -> Mizar_Transit_V1_EndpointInterface {
    var m = Mizar_Transit_V1_EndpointInterface()
    m.vni = 100
    m.ip = "10.0.1.10"
    m.mac = "02:00:0a:00:01:0a"
    m.subnet = "10.0.1.0/24"
    m.netns = "/run/netns/pod"
    return m
}

func serviceMessage(ports: [(String, UInt32, UInt32)], backends: Int) -> Mizar_Transit_V1_Service {
    var m = Mizar_Transit_V1_Service()
    m.vni = 100
    m.ip = "10.0.1.200"
    m.mac = "02:00:0a:00:01:c8"
    m.subnet = "10.0.1.0/24"
    m.ports = ports.map { proto, port, target in
        var p = Mizar_Transit_V1_ServicePort()
        p.protocol = proto
        p.port = port
        p.targetPort = target
        return p
    }
    m.backends = (0..<backends).map { i in
        var b = Mizar_Transit_V1_ServiceBackend()
        b.ip = "10.0.\(2 + i / 250).\(1 + i % 250)"
        b.host = hostA
        return b
    }
    return m
}

@Suite("the Transit service over the in-process transport, with a fake host (no privileges)")
struct TransitServiceTests {
    /// Bad input: InvalidArgument naming the field, marked permanent, and
    /// the host never called.
    @Test("malformed endpoint entries are refused naming the field, before the host is called",
          arguments: [
              ("ip", endpointMessage(ip: "10.0.1.300")),
              ("ip", endpointMessage(ip: "224.0.0.5")),
              ("ip", endpointMessage(ip: "")),
              ("mac", endpointMessage(mac: "01:00:5e:00:00:01")),
              ("mac", endpointMessage(mac: "00:00:00:00:00:00")),
              ("mac", endpointMessage(mac: "02:00:0a")),
              ("vni", endpointMessage(vni: 0)),
              ("vni", endpointMessage(vni: 1 << 24)),
              ("subnet", { var m = endpointMessage(); m.subnet = "10.0.1.0/33"; return m }()),
              ("host", { var m = endpointMessage(); m.clearHost(); return m }()),
              ("host.ip", { var m = endpointMessage(); m.host.ip = "0.0.0.0"; return m }()),
              ("kind", { var m = endpointMessage(); m.kind = .UNRECOGNIZED(9); return m }()),
          ])
    func endpointValidation(field: String, message: Mizar_Transit_V1_Endpoint) async throws {
        let host = FakeHost()
        let error = try await withInProcessTransit(host) { client in
            await refusal { _ = try await client.putEndpoint(message) }
        }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.hasPrefix("\(field):") == true, "\(error?.message ?? "")")
        #expect(error.map(TransitRefusal.isPermanent) == true)
        #expect(host.calls.isEmpty)
    }

    static func policyUpdate(_ change: (inout Mizar_Transit_V1_PolicyUpdate) -> Void) -> Mizar_Transit_V1_PolicyUpdate {
        var u = Mizar_Transit_V1_PolicyUpdate()
        var set = Mizar_Transit_V1_PolicySet()
        set.vni = 100
        set.id = 42
        var rule = Mizar_Transit_V1_PolicyRule()
        rule.protocol = 6
        rule.firstPort = 80
        rule.lastPort = 81
        rule.bits.words = [1 << 3]
        set.rules = [rule]
        u.sets = [set]
        var e = Mizar_Transit_V1_PolicyEndpoint()
        e.vni = 100
        e.ip = "10.0.1.10"
        e.members.words = [0, 1]
        e.ingressSet = 42
        var named = Mizar_Transit_V1_PolicyNamedPort()
        named.bit = 9
        named.protocol = 17
        named.port = 53
        e.namedPorts = [named]
        e.revoke = true
        u.endpoints = [e]
        var b = Mizar_Transit_V1_PolicyBlocks()
        b.vni = 100
        var block = Mizar_Transit_V1_PolicyBlock()
        block.cidr = "10.0.2.0/24"
        block.bits.words = [0, 0, 4]
        b.blocks = [block]
        u.blocks = [b]
        change(&u)
        return u
    }

    @Test("policy updates: malformed sets, entries and blocks are refused naming the field, before the host is called",
          arguments: [
              ("sets[0].id", policyUpdate { $0.sets[0].id = 0 }),
              ("sets[0].rules[0]", policyUpdate { $0.sets[0].rules[0].firstPort = 90 }),
              ("sets[0].rules[0].last_port", policyUpdate { $0.sets[0].rules[0].lastPort = 70000 }),
              ("sets[0].rules[0].protocol", policyUpdate { $0.sets[0].rules[0].protocol = 300 }),
              ("sets[0].rules[0].bits.words", policyUpdate { $0.sets[0].rules[0].bits.words = Array(repeating: 1, count: 17) }),
              ("sets[0].rules", policyUpdate { $0.sets[0].rules = Array(repeating: $0.sets[0].rules[0], count: 33) }),
              ("vni", policyUpdate { $0.sets[0].vni = 0 }),
              ("endpoints[0].ip", policyUpdate { $0.endpoints[0].ip = "10.0.1" }),
              ("endpoints[0].named_ports[0].bit", policyUpdate { $0.endpoints[0].namedPorts[0].bit = 512 }),
              ("endpoints[0].named_ports", policyUpdate { $0.endpoints[0].namedPorts = Array(repeating: $0.endpoints[0].namedPorts[0], count: 17) }),
              ("removed[0].ip", policyUpdate { var k = Mizar_Transit_V1_EndpointKey(); k.vni = 100; k.ip = "x"; $0.removed = [k] }),
              ("blocks[0].blocks[0].cidr", policyUpdate { $0.blocks[0].blocks[0].cidr = "10.0.2.1/24" }),
          ])
    func policyValidation(field: String, message: Mizar_Transit_V1_PolicyUpdate) async throws {
        let host = FakeHost()
        let error = try await withInProcessTransit(host) { client in
            await refusal { _ = try await client.putPolicy(message) }
        }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.hasPrefix("\(field):") == true, "\(error?.message ?? "")")
        #expect(host.calls.isEmpty)
    }

    @Test("a well-formed policy update reaches the host parsed: bits by word, sets, named ports, prefixes")
    func policyAccepted() async throws {
        let host = FakeHost()
        let reply = try await withInProcessTransit(host) { client in try await client.putPolicy(Self.policyUpdate { _ in }) }
        #expect(reply.changed == 1 && reply.revoked == 1)
        let u = try #require(host.state.withLock { $0.policyPuts.first })
        #expect(u.sets.count == 1 && u.sets[0].id == 42)
        #expect(u.sets[0].rules == [PolicyRuleEntry(proto: 6, first: 80, last: 81, anyPeer: false, bits: PolicyBitWords(words: [8]))])
        let e = try #require(u.endpoints.first)
        #expect(e.revoke)
        #expect(e.entry.members.words[1] == 1 && e.entry.members.words.count == 16)
        #expect(e.entry.ingress == 42 && e.entry.egress == 0)
        #expect(e.entry.named == [PolicyNamedPort(bit: 9, proto: 17, port: 53)])
        #expect(u.blocks.first?.prefixes == [try CIDR(parsing: "10.0.2.0/24"): PolicyBitWords(words: [0, 0, 4])])
    }

    @Test("a well-formed entry reaches the host parsed, once")
    func endpointAccepted() async throws {
        let host = FakeHost()
        let reply = try await withInProcessTransit(host) { client in
            var m = endpointMessage()
            m.kind = .scaled
            return try await client.putEndpoint(m)
        }
        #expect(reply.changed)
        #expect(host.calls == ["putEndpoint"])
        let (entry, subnet) = try #require(host.state.withLock { $0.endpoints.first })
        #expect(entry == EndpointEntry(vni: try VNI(100), ip: try IPv4Address(parsing: "10.0.1.10"),
                                       mac: try MACAddress(parsing: "02:00:0a:00:01:0a"),
                                       host: HostAddress(ip: try IPv4Address(parsing: "172.30.0.1"),
                                                         mac: try MACAddress(parsing: "02:00:ac:1e:00:01")),
                                       kind: .scaled))
        #expect(subnet == (try CIDR(parsing: "10.0.1.0/24")))
    }

    @Test("endpoint interfaces: the gateway, the namespace path and the interface name are checked at the edge",
          arguments: [
              ("gateway", { var m = interfaceMessage(); m.gateway = "10.0.2.1"; return m }()),
              ("gateway", { var m = interfaceMessage(); m.gateway = "10.0.1.10"; return m }()),
              ("netns", { var m = interfaceMessage(); m.netns = "pod"; return m }()),
              ("ifname", { var m = interfaceMessage(); m.ifname = "eth0/../x"; return m }()),
              ("ifname", { var m = interfaceMessage(); m.ifname = "a-name-far-too-long"; return m }()),
              ("ip", { var m = interfaceMessage(); m.ip = "10.0.1.255.1"; return m }()),
          ])
    func interfaceValidation(field: String, message: Mizar_Transit_V1_EndpointInterface) async throws {
        let host = FakeHost()
        let error = try await withInProcessTransit(host) { client in
            await refusal { _ = try await client.createEndpointInterface(message) }
        }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.hasPrefix("\(field):") == true, "\(error?.message ?? "")")
        #expect(host.calls.isEmpty)
    }

    @Test("an interface request gets the subnet's gateway, eth0 and the host's MTU by default")
    func interfaceDefaults() async throws {
        let host = FakeHost()
        let reply = try await withInProcessTransit(host) { client in try await client.createEndpointInterface(interfaceMessage()) }
        let spec = try #require(host.state.withLock { $0.interfaces.first })
        #expect(spec.gateway == (try IPv4Address(parsing: "10.0.1.1")))
        #expect(spec.ifname == "eth0")
        #expect(spec.mtu == host.defaultEndpointMTU)
        #expect(spec.netns == "/run/netns/pod")
        #expect(reply.interface.hostIfname == HostInterface.name(vni: try VNI(100), ip: try IPv4Address(parsing: "10.0.1.10")))
    }

    @Test("scaled endpoints: ports and backends are validated at the edge",
          arguments: [
              ("ports[0]", serviceMessage(ports: [("TCP", 0, 80)], backends: 1)),
              ("ports[0].protocol", serviceMessage(ports: [("SCTP", 80, 80)], backends: 1)),
              ("ports", serviceMessage(ports: [("TCP", 80, 80), ("TCP", 80, 8080)], backends: 1)),
              ("ports", serviceMessage(ports: [], backends: 1)),
              ("backends", serviceMessage(ports: [("TCP", 80, 80)], backends: ServiceEntry.maxBackends + 1)),
              ("backends[0].host", { var m = serviceMessage(ports: [("UDP", 53, 53)], backends: 1); m.backends[0].clearHost(); return m }()),
          ])
    func serviceValidation(field: String, message: Mizar_Transit_V1_Service) async throws {
        let host = FakeHost()
        let error = try await withInProcessTransit(host) { client in
            await refusal { _ = try await client.putService(message) }
        }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.hasPrefix("\(field)") == true, "\(error?.message ?? "")")
        #expect(host.calls.isEmpty)
    }

    /// What the host refuses keeps its code; only what can never succeed
    /// carries the permanent mark the operator turns into Failed.
    @Test("the host's refusals keep their status code, and only permanent ones are marked so",
          arguments: [
              (TransitError(.notFound, field: "netns", "/run/netns/pod does not exist", permanent: true), RPCError.Code.notFound, true),
              (TransitError(.notFound, field: "subnet", "10.0.1.0/24 is not known in VPC 100"), .notFound, false),
              (TransitError(.alreadyExists, field: "ip", "10.0.1.10 is held by another MAC"), .alreadyExists, true),
              (TransitError(.failedPrecondition, field: "mtu", "the droplet is not ready"), .failedPrecondition, false),
              (TransitError(internal: ValidationError(field: "bpf_map_update_elem", reason: "errno 12")), .internalError, false),
          ])
    func refusals(error: TransitError, code: RPCError.Code, permanent: Bool) async throws {
        let host = FakeHost()
        host.refuse(with: error)
        let rpc = try await withInProcessTransit(host) { client in
            await refusal { _ = try await client.createEndpointInterface(interfaceMessage()) }
        }
        #expect(rpc?.code == code)
        #expect(rpc?.message == error.message)
        #expect(rpc.map(TransitRefusal.isPermanent) == permanent)
        #expect(host.calls == ["createEndpointInterface"])
    }

    @Test("an error that is not the host's own is Internal and may be retried")
    func unexpectedErrors() async throws {
        struct Surprise: Error {}
        let host = FakeHost()
        host.refuse(with: Surprise())
        let rpc = try await withInProcessTransit(host) { client in
            await refusal { _ = try await client.deleteVPC(.with { $0.vni = 100 }) }
        }
        #expect(rpc?.code == .internalError)
        #expect(rpc.map(TransitRefusal.isPermanent) == false)
    }

    @Test("a service the host does not hold is NotFound")
    func missingService() async throws {
        let host = FakeHost()
        let rpc = try await withInProcessTransit(host) { client in
            await refusal { _ = try await client.getService(.with { $0.vni = 100; $0.ip = "10.0.1.200" }) }
        }
        #expect(rpc?.code == .notFound)
        #expect(rpc?.message.hasPrefix("ip:") == true)
        #expect(host.calls == ["serviceState"])
    }

    /// The operator's provisioning calls through the pool it uses, over the
    /// in-process transport: one call to the home host, one per bouncer,
    /// and a refusal comes back with its permanence.
    @Test("Provisioning.addEndpoint through a TransitPool: one call each, refusals keep their mark")
    func provisioningThroughThePool() async throws {
        let home = FakeHost(), bouncer = FakeHost()
        let homeTransport = InProcessTransport(), bouncerTransport = InProcessTransport()
        let homeTarget = TransitTarget.unix("/home.sock"), bouncerTarget = TransitTarget.unix("/bouncer.sock")
        let pool = TransitPool<InProcessTransport.Client> { target in
            target == homeTarget ? homeTransport.client : bouncerTransport.client
        }
        let peerHome = TransitPeer(target: homeTarget, ip: try IPv4Address(parsing: "172.30.0.1"), mac: try MACAddress(parsing: "02:00:ac:1e:00:01"))
        let peerBouncer = TransitPeer(target: bouncerTarget, ip: try IPv4Address(parsing: "172.30.0.2"), mac: try MACAddress(parsing: "02:00:ac:1e:00:02"))
        let vni = try VNI(100), ip = try IPv4Address(parsing: "10.0.1.10"), subnet = try CIDR(parsing: "10.0.1.0/24")
        let mac = MACAddress.derived(vni: vni, ip: ip)

        try await withGRPCServer(transport: homeTransport.server, services: [TransitService(host: home)]) { _ in
            try await withGRPCServer(transport: bouncerTransport.server, services: [TransitService(host: bouncer)]) { _ in
                let info = try await Provisioning.addEndpoint(vni: vni, ip: ip, mac: mac, subnet: subnet, netns: "/run/netns/pod",
                                                              on: peerHome, bouncers: [peerBouncer], via: pool)
                #expect(info.hostIfname == HostInterface.name(vni: vni, ip: ip))
                #expect(home.calls == ["createEndpointInterface"])
                #expect(bouncer.calls == ["putEndpoint"])
                let (entry, _) = try #require(bouncer.state.withLock { $0.endpoints.first })
                #expect(entry.host == peerHome.address)
                #expect(entry.mac == mac)

                home.refuse(with: TransitError(.notFound, field: "netns", "/run/netns/gone does not exist", permanent: true))
                let rpc = await refusal {
                    _ = try await Provisioning.addEndpoint(vni: vni, ip: ip, mac: mac, subnet: subnet, netns: "/run/netns/gone",
                                                           on: peerHome, bouncers: [peerBouncer], via: pool)
                }
                #expect(rpc?.code == .notFound)
                #expect(rpc.map(TransitRefusal.isPermanent) == true)
                #expect(pool.callCounts()[homeTarget] == 2)
                await pool.shutdown()
            }
        }
    }
}

@Suite("the operator's connection pool")
struct TransitPoolTests {
    /// A pool whose transports dial unix sockets that do not exist: a
    /// connection is made (and retried in the background) without any call.
    static func pool(idle: Duration, max: Int) -> HTTP2TransitPool {
        HTTP2TransitPool(tls: nil, idleTimeout: idle, maxConnections: max)
    }

    @Test("holds at most maxConnections, closing the least recently used idle one; closes connections idle past the timeout; a call reopens")
    func bounded() async throws {
        let pool = Self.pool(idle: .milliseconds(200), max: 3)
        let targets = (1...5).map { TransitTarget.unix("/run/mizar-no-such-\(getpid())-\($0).sock") }
        for t in targets { _ = try await pool.withClient(t) { _ in 1 } }
        #expect(pool.openConnections == 3, "5 hosts called, at most 3 held")
        // A call in flight is never closed under it.
        try await pool.withClient(targets[0]) { _ in
            for t in targets.dropFirst() { _ = try await pool.withClient(t) { _ in 1 } }
            #expect(pool.openConnections == 3)
            try await Task.sleep(for: .milliseconds(300))
            _ = try await pool.withClient(targets[1]) { _ in 1 }
            // targets[0] is busy, targets[1] just used: the idle rest closed.
            #expect(pool.openConnections == 2, "idle connections not closed: \(pool.openConnections)")
        }
        #expect(pool.callCounts().values.reduce(0, +) == 11)
        await pool.shutdown()
        #expect(pool.openConnections == 0)
    }
}
