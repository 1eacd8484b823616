// Many simulated droplets behind one gRPC listener: what the scale
// simulation puts in place of transitd's local work. Everything else — the
// Transit service's parsing, validation and error mapping, gRPC over TCP,
// one connection per droplet from the operator — is the real thing.
//
// Each droplet has its own address 127.A.B.C (all of 127/8 is local to the
// loopback device); the one listener is bound to 0.0.0.0:PORT inside the
// benchmark's own network namespace, and a call belongs to the droplet
// whose address it was made to (the connection's local address). Its
// tables are dictionaries; it refuses what transitd refuses for want of a
// table (a subnet before its VPC, an endpoint outside a known subnet, a
// VPC or subnet deleted while in use), with transitd's status codes.
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import MizarCore
import MizarDataplane
import MizarRPC
import MizarTransit
import MizarTransitClient
import Synchronization

/// One simulated droplet's tables.
struct SimTables {
    var droplets: Set<IPv4Address> = []
    var vpcs: [VNI: VPCEntry] = [:]
    var subnets: [VNI: [CIDR: SubnetEntry]] = [:]
    var endpoints: [VNI: [IPv4Address: (EndpointEntry, CIDR)]] = [:]
    var interfaces: [VNI: [IPv4Address: EndpointInterfaceSpec]] = [:]
    var services: [VNI: [IPv4Address: ServiceEntry]] = [:]
    var published: [VNI: [IPv4Address: PublishedService]] = [:]
    var policyEndpoints: [VNI: [IPv4Address: PolicyEndpointEntry]] = [:]

    var holdsRole: Bool {
        vpcs.values.contains(where: \.isDivider) || subnets.values.contains { $0.values.contains(where: \.isBouncer) }
    }

    func requireVPC(_ vni: VNI) throws {
        guard vpcs[vni] != nil else { throw TransitError(.notFound, field: "vni", "VPC \(vni) is not known on this host; put the VPC first") }
    }

    func requireSubnet(_ vni: VNI, _ cidr: CIDR, holding ip: IPv4Address) throws {
        try requireVPC(vni)
        guard subnets[vni]?[cidr] != nil else {
            throw TransitError(.notFound, field: "subnet", "subnet \(cidr) of VPC \(vni) is not known on this host; put the subnet first")
        }
        guard cidr.contains(ip) else { throw TransitError(.invalidArgument, field: "ip", "\(ip) is outside its subnet \(cidr)") }
    }
}

/// What was called, per droplet and per method.
struct CallCount: Sendable {
    var byMethod: [String: Int] = [:]
    var byDroplet: [UInt32: Int] = [:]
    var distinctDroplets: Int { byDroplet.count }
    var mostToOne: Int { byDroplet.values.max() ?? 0 }

    static func - (a: CallCount, b: CallCount) -> CallCount {
        var d = CallCount()
        for (k, v) in a.byMethod where v - b.byMethod[k, default: 0] > 0 { d.byMethod[k] = v - b.byMethod[k, default: 0] }
        for (k, v) in a.byDroplet where v - b.byDroplet[k, default: 0] > 0 { d.byDroplet[k] = v - b.byDroplet[k, default: 0] }
        return d
    }
}

/// The droplet a call is for, set by `SimRouting` from the connection's
/// local address.
enum SimCall {
    @TaskLocal static var droplet: IPv4Address?
}

/// Finds the droplet of each call and counts the call.
struct SimRouting: ServerInterceptor {
    let fleet: SimFleet

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        // "ipv4:127.0.3.7:7070"
        let parts = context.localPeer.split(separator: ":")
        guard parts.count >= 3, let ip = try? IPv4Address(parsing: String(parts[1]), field: "local"), fleet.has(ip) else {
            throw RPCError(code: .unavailable, message: "no simulated droplet at \(context.localPeer)")
        }
        fleet.count(ip, context.descriptor.method)
        return try await SimCall.$droplet.withValue(ip) { try await next(request, context) }
    }
}

/// The simulated droplets and their tables.
final class SimFleet: TransitHosting {
    private let tables = Mutex<[UInt32: SimTables]>([:])
    private let calls = Mutex(CallCount())
    private let refused = Mutex<[String]>([])
    /// Each droplet's "holds a role" flag, which its registration waits on.
    private let roleFlags = Mutex<[UInt32: WatchedFlag]>([:])
    /// Told when a droplet comes to hold a role or stops holding one (the
    /// registrar process keeps its own copy of the flags).
    let roleChanged = Mutex<(@Sendable (IPv4Address, Bool) -> Void)?>(nil)
    let defaultEndpointMTU: UInt32 = 1450

    func add(_ ip: IPv4Address, droplets: Set<IPv4Address> = []) {
        tables.withLock { $0[ip.value] = SimTables(droplets: droplets) }
        roleFlags.withLock { $0[ip.value] = WatchedFlag() }
    }
    /// The flag a droplet's registration waits on.
    func roleFlag(_ ip: IPv4Address) -> WatchedFlag { roleFlags.withLock { $0[ip.value] ?? WatchedFlag() } }
    func has(_ ip: IPv4Address) -> Bool { tables.withLock { $0[ip.value] != nil } }
    func holdsRole(_ ip: IPv4Address) -> Bool { roleFlag(ip).value }
    func count(_ ip: IPv4Address, _ method: String) {
        calls.withLock { $0.byMethod[method, default: 0] += 1; $0.byDroplet[ip.value, default: 0] += 1 }
    }
    var callCount: CallCount { calls.withLock { $0 } }
    /// What was refused (for the calibration's report), and forgets it.
    func takeRefusals() -> [String] { refused.withLock { r in defer { r = [] }; return r } }

    /// Runs `body` on the calling droplet's tables.
    private func on<R>(_ body: (inout SimTables) throws -> R) throws -> R {
        guard let ip = SimCall.droplet else { throw TransitError(.internalError, field: "droplet", "no droplet for this call") }
        do {
            let flag = roleFlag(ip)
            return try tables.withLock { all in
                guard var t = all[ip.value] else { throw TransitError(.notFound, field: "droplet", "droplet \(ip) is gone") }
                defer {
                    all[ip.value] = t
                    // Under the tables' lock: changes are told in order.
                    if flag.value != t.holdsRole {
                        flag.set(t.holdsRole)
                        roleChanged.withLock { $0 }?(ip, t.holdsRole)
                    }
                }
                return try body(&t)
            }
        } catch {
            refused.withLock { $0.append("\(ip): \(error)") }
            throw error
        }
    }

    func dropletInfo() async -> Mizar_Transit_V1_Droplet {
        var d = Mizar_Transit_V1_Droplet()
        d.version = "simulated"
        return d
    }

    func putDroplets(_ hosts: [HostAddress], replace: Bool) throws -> Bool {
        try on { t in
            let new = Set(hosts.map(\.ip))
            let before = t.droplets
            t.droplets = replace ? new : t.droplets.union(new)
            return t.droplets != before
        }
    }
    func deleteDroplet(_ ip: IPv4Address) throws -> Bool { try on { $0.droplets.remove(ip) != nil } }
    func listDroplets() throws -> [HostAddress] { try on { $0.droplets.map { HostAddress(ip: $0, mac: MACAddress(2, 0, 0, 0, 0, 1)) } } }

    func putVPC(_ e: VPCEntry) throws -> Bool {
        try on { t in
            if t.vpcs[e.vni] == e { return false }
            t.vpcs[e.vni] = e
            return true
        }
    }
    func deleteVPC(_ vni: VNI) throws -> Bool {
        try on { t in
            guard t.vpcs[vni] != nil else { return false }
            let subnets = t.subnets[vni]?.count ?? 0
            guard subnets == 0 else {
                throw TransitError(.failedPrecondition, field: "vni", "VPC \(vni) still has \(subnets) subnet(s) on this host; delete them first")
            }
            t.vpcs[vni] = nil
            t.services[vni] = nil
            return true
        }
    }
    func listVPCs(vni: VNI?) throws -> [VPCEntry] { try on { t in t.vpcs.values.filter { vni == nil || $0.vni == vni } } }

    func putSubnet(_ e: SubnetEntry) throws -> Bool {
        try on { t in
            try t.requireVPC(e.vni)
            for other in (t.subnets[e.vni] ?? [:]).values where other.cidr != e.cidr && other.cidr.overlaps(e.cidr) {
                throw TransitError(.invalidArgument, field: "cidr", "\(e.cidr) overlaps subnet \(other.cidr) of VPC \(e.vni) on this host")
            }
            if t.subnets[e.vni]?[e.cidr] == e { return false }
            t.subnets[e.vni, default: [:]][e.cidr] = e
            return true
        }
    }
    func deleteSubnet(_ vni: VNI, _ cidr: CIDR) throws -> Bool {
        try on { t in
            guard t.subnets[vni]?[cidr] != nil else { return false }
            let users = (t.interfaces[vni] ?? [:]).keys.filter { cidr.contains($0) }.count
            guard users == 0 else {
                throw TransitError(.failedPrecondition, field: "cidr", "subnet \(cidr) of VPC \(vni) still has \(users) endpoint interface(s) on this host")
            }
            t.subnets[vni]?[cidr] = nil
            if t.subnets[vni]?.isEmpty == true { t.subnets[vni] = nil }
            t.endpoints[vni] = t.endpoints[vni]?.filter { !cidr.contains($0.key) }
            return true
        }
    }
    func listSubnets(vni: VNI?) throws -> [SubnetEntry] {
        try on { t in t.subnets.filter { vni == nil || $0.key == vni }.flatMap { $0.value.values } }
    }

    func putEndpoint(_ e: EndpointEntry, subnet: CIDR, policy: PolicyEndpointEntry?, sets: [PolicyUpdateSpec.Set]) throws -> Bool {
        try on { t in
            try t.requireSubnet(e.vni, subnet, holding: e.ip)
            if let policy {
                guard policy.vni == e.vni && policy.ip == e.ip else {
                    throw TransitError(.invalidArgument, field: "policy", "is for \(policy.ip) in VPC \(policy.vni), not the endpoint")
                }
                t.policyEndpoints[e.vni, default: [:]][e.ip] = policy
            }
            if let old = t.endpoints[e.vni]?[e.ip], old.0 == e, old.1 == subnet { return false }
            t.endpoints[e.vni, default: [:]][e.ip] = (e, subnet)
            return true
        }
    }
    func deleteEndpoint(_ vni: VNI, _ ip: IPv4Address) throws -> Bool {
        try on { t in
            t.policyEndpoints[vni]?[ip] = nil
            return t.endpoints[vni]?.removeValue(forKey: ip) != nil
        }
    }
    func listEndpoints(vni: VNI?) throws -> [(EndpointEntry, CIDR?)] {
        try on { t in t.endpoints.filter { vni == nil || $0.key == vni }.flatMap { $0.value.values.map { ($0.0, Optional($0.1)) } } }
    }

    func createEndpointInterface(_ spec: EndpointInterfaceSpec) throws -> (Mizar_Transit_V1_EndpointInterfaceInfo, Bool) {
        try on { t in
            try t.requireSubnet(spec.vni, spec.subnet, holding: spec.ip)
            let made = t.interfaces[spec.vni]?[spec.ip] == nil
            if let old = t.interfaces[spec.vni]?[spec.ip], old != spec {
                throw TransitError(.alreadyExists, field: "ip", "\(spec.ip) in VNI \(spec.vni) already has an interface on this host")
            }
            t.interfaces[spec.vni, default: [:]][spec.ip] = spec
            var info = Mizar_Transit_V1_EndpointInterfaceInfo()
            info.spec.vni = spec.vni.value
            info.spec.ip = "\(spec.ip)"
            info.spec.mac = "\(spec.mac)"
            info.spec.subnet = "\(spec.subnet)"
            info.spec.netns = spec.netns
            info.spec.mtu = spec.mtu
            info.hostIfname = HostInterface.name(vni: spec.vni, ip: spec.ip)
            info.agentHook = "tc"
            info.hostAccess = true
            return (info, made)
        }
    }
    func deleteEndpointInterface(_ vni: VNI, _ ip: IPv4Address) throws -> Bool {
        try on { $0.interfaces[vni]?.removeValue(forKey: ip) != nil }
    }
    func listEndpointInterfaces(vni: VNI?) async -> [Mizar_Transit_V1_EndpointInterfaceInfo] { [] }

    func listHostCache(vni: VNI?) throws -> [CachedHost] { [] }
    func invalidateHostCache(_ vni: VNI, _ ip: IPv4Address) throws -> Bool { false }
    func counters() throws -> (counters: [(String, CounterValue)], drops: [(String, CounterValue)]) { ([], []) }

    func putService(_ e: ServiceEntry, mac: MACAddress, subnet: CIDR) throws -> ServiceChange {
        try on { t in
            try t.requireSubnet(e.vni, subnet, holding: e.vip)
            t.services[e.vni, default: [:]][e.vip] = e
            return ServiceChange(changed: true, removedBackends: [], clientHosts: [])
        }
    }
    func deleteService(_ vni: VNI, _ vip: IPv4Address) throws -> ServiceChange {
        try on { t in ServiceChange(changed: t.services[vni]?.removeValue(forKey: vip) != nil, removedBackends: [], clientHosts: []) }
    }
    func serviceState(_ vni: VNI, _ vip: IPv4Address) throws -> ServiceState? { nil }
    func listServices(vni: VNI?) throws -> [ServiceState] { [] }
    func serviceFlows(vni: VNI?) throws -> [NATFlow] { [] }
    func invalidateServiceFlows(_ vni: VNI, vip: IPv4Address, backends: Set<IPv4Address>?) throws -> Int { 0 }

    func putPolicy(_ u: PolicyUpdateSpec) throws -> (changed: Int, revoked: Int) {
        try on { t in
            for e in u.endpoints { t.policyEndpoints[e.entry.vni, default: [:]][e.entry.ip] = e.entry }
            for r in u.removed { t.policyEndpoints[r.vni]?[r.ip] = nil }
            return (u.endpoints.count, 0)
        }
    }
    func policyState(vni: VNI?) throws -> PolicyState { PolicyState(endpoints: [], sets: [], blocks: []) }
    func conntrack(vni: VNI?) throws -> [ConntrackEntry] { [] }
    func snat(vni: VNI?) throws -> SNATTable { SNATTable(address: SimCall.droplet ?? IPv4Address(value: 0), ports: nil, entries: []) }
    func putPublished(_ p: PublishedService) throws -> Bool {
        try on { t in
            try t.requireVPC(p.entry.vni)
            t.published[p.entry.vni, default: [:]][p.entry.vip] = p
            return true
        }
    }
    func deletePublished(_ vni: VNI, _ vip: IPv4Address) throws -> Bool { try on { $0.published[vni]?.removeValue(forKey: vip) != nil } }
    func listPublished(vni: VNI?) throws -> (services: [PublishedService], flows: [PublishedFlow]) {
        try on { t in (t.published.filter { vni == nil || $0.key == vni }.flatMap { $0.value.values }, []) }
    }
}
