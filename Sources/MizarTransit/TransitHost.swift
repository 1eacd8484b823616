import Glibc
import Logging
import Synchronization
import MizarCore
import MizarDataplane
import MizarRPC
import MizarSystem

/// Where transitd runs and how.
public struct TransitConfig: Sendable {
    /// Which hook the transit program gets on the droplet interface.
    public enum HookChoice: String, Sendable, CaseIterable {
        /// tc on a veth (it keeps the sender's TSO), native XDP elsewhere.
        case auto
        case tc, xdp
    }

    public var interface: String
    public var objectDirectory: String
    /// Maps are pinned here (a directory on bpffs), so that a restart adopts
    /// the tables the kernel is forwarding with.
    public var pinDirectory: String
    /// The endpoint interfaces' records (what the maps cannot hold: the
    /// namespace path, the names).
    public var stateDirectory: String
    public var transitHook: HookChoice = .auto
    /// tc: XDP on an endpoint's veth would cost the endpoint its TSO.
    public var agentHook: Hook = .tc
    public var dataplane = DataplaneSettings()

    public init(interface: String, objectDirectory: String, pinDirectory: String, stateDirectory: String) {
        self.interface = interface
        self.objectDirectory = objectDirectory
        self.pinDirectory = pinDirectory
        self.stateDirectory = stateDirectory
    }
}

/// Identifies an endpoint within a host: its VPC and address.
struct EndpointKey: Hashable, Sendable, CustomStringConvertible {
    var vni: VNI
    var ip: IPv4Address
    var description: String { "\(ip) in VNI \(vni)" }
}

/// One host's data plane and the interfaces transitd made for it. Every
/// change goes through this actor, one at a time.
public actor TransitHost {
    public nonisolated let config: TransitConfig
    public nonisolated let dataplane: Dataplane
    public nonisolated let droplet: HostAddress
    public nonisolated let dropletIfindex: UInt32
    public nonisolated let dropletMTU: UInt32
    public nonisolated let transitHook: Hook
    let logger: Logger
    let netlink: Netlink
    var interfaces: [EndpointKey: Mizar_Transit_V1_EndpointInterfaceInfo] = [:]
    /// How many policy entries name each rule set (built from the table on
    /// first use: it may hold what an earlier transitd wrote), and the sets
    /// to look at when unnamed sets are dropped: dropping them costs what a
    /// call changed, not every entry the bouncer holds.
    var policySetUsers: [PolicySetRef: Int]?
    var policySetsToCheck: Set<PolicySetRef> = []
    /// The VPCs this host is a divider of ("vpc/VNI") and the subnets it
    /// is a bouncer of ("subnet/VNI/CIDR"): read, without waiting on the
    /// actor, by the registration that picks the droplet's lease.
    nonisolated let roles = Mutex<Set<String>>([])
    /// This host is a bouncer or a divider now (kept from `roles`).
    public nonisolated let holdsRole = WatchedFlag()

    /// Changes `roles` and keeps `holdsRole` up to date.
    nonisolated func changeRoles(_ change: (inout Set<String>) -> Void) {
        holdsRole.set(roles.withLock { change(&$0); return !$0.isEmpty })
    }

    public static let version = "0.3.0"

    /// Loads the programs (adopting pinned maps), attaches the transit
    /// program to the droplet interface and the agent to every endpoint
    /// interface on record, replacing the programs a previous run left.
    public init(config: TransitConfig, logger: Logger) async throws {
        self.config = config
        self.logger = logger
        netlink = try Netlink()
        guard let ifindex = try netlink.index(of: config.interface), let link = try netlink.link(ifindex) else {
            throw TransitError(.notFound, field: "interface", "no interface \(config.interface) in this network namespace")
        }
        guard let ip = Self.ipv4Address(of: config.interface) else {
            throw TransitError(.failedPrecondition, field: "interface", "\(config.interface) has no IPv4 address")
        }
        dropletIfindex = ifindex
        dropletMTU = link.mtu
        droplet = HostAddress(ip: ip, mac: link.mac)

        let driver = (try? Ethtool.driver(ifname: config.interface)) ?? ""
        transitHook = switch config.transitHook {
        case .tc: .tc
        case .xdp: .xdp
        case .auto: driver == "veth" || driver.isEmpty ? .tc : .xdp
        }
        try makeDirectories(config.pinDirectory)
        try makeDirectories(config.stateDirectory)
        let hooks = Array(Set([transitHook, config.agentHook])).sorted { $0.rawValue < $1.rawValue }
        var settings = config.dataplane
        // XDP_TX on a veth reaches its peer only if the peer runs XDP itself.
        settings.xdpTxRedirect = driver == "veth" || driver.isEmpty
        dataplane = try Dataplane(objectDirectory: config.objectDirectory, hooks: hooks, settings: settings,
                                  pinDirectory: config.pinDirectory)
        try dataplane.setDroplet(droplet, ifindex: ifindex)
        try dataplane.ensureVPCStats()
        try Attachment.attach(dataplane.programs[transitHook]!.transit, ifindex: ifindex)
        // A restart with the other hook must not leave the old program running too.
        try Attachment.detach(hook: transitHook == .tc ? .xdp : .tc, ifindex: ifindex)
        logger.info("transit attached", metadata: [
            "droplet.ip": "\(ip)", "droplet.mac": "\(link.mac)", "droplet.interface": "\(config.interface)",
            "droplet.driver": "\(driver)", "bpf.hook": "\(transitHook.rawValue)",
        ])
        interfaces = try loadRecords()
        let held = Set(try dataplane.listVPCs(vni: nil).filter(\.isDivider).map { "vpc/\($0.vni)" }
                       + dataplane.listSubnets(vni: nil).filter(\.isBouncer).map { "subnet/\($0.vni)/\($0.cidr)" })
        changeRoles { $0 = held }
        try readopt()
        try reserveSNATPorts()
    }

    // MARK: - Droplet

    public func dropletInfo() -> Mizar_Transit_V1_Droplet {
        var d = Mizar_Transit_V1_Droplet()
        d.self_p = .init(droplet)
        d.interface = config.interface
        d.ifindex = dropletIfindex
        d.transitHook = transitHook.rawValue
        d.agentHook = config.agentHook.rawValue
        d.pinDirectory = config.pinDirectory
        d.version = Self.version
        return d
    }

    // MARK: - VPCs

    public func putVPC(_ e: VPCEntry) throws -> Bool {
        let before = try dataplane.vpc(e.vni)
        if before == e { return false }
        try dataplane.upsertVPC(e)
        changeRoles { if e.isDivider { $0.insert("vpc/\(e.vni)") } else { $0.remove("vpc/\(e.vni)") } }
        logger.info("vpc put", metadata: ["vpc.vni": "\(e.vni)", "vpc.dividers": "\(e.dividers.count)"])
        return true
    }

    public func deleteVPC(_ vni: VNI) throws -> Bool {
        guard try dataplane.vpc(vni) != nil else { return false }
        let subnets = try listSubnets(vni: vni)
        guard subnets.isEmpty else {
            throw TransitError(.failedPrecondition, field: "vni",
                               "VPC \(vni) still has \(subnets.count) subnet(s) on this host (\(subnets.map { "\($0.cidr)" }.joined(separator: ", "))); delete them first")
        }
        try dataplane.forgetCachedHosts(vni) { _ in true }
        try forgetServices(vni) { _ in true }
        defer { changeRoles { $0.remove("vpc/\(vni)") } }
        return try dataplane.deleteVPC(vni)
    }

    public func listVPCs(vni: VNI?) throws -> [VPCEntry] {
        try dataplane.listVPCs(vni: vni)
    }

    func requireVPC(_ vni: VNI) throws {
        guard try dataplane.vpc(vni) != nil else {
            throw TransitError(.notFound, field: "vni", "VPC \(vni) is not known on this host; put the VPC first")
        }
    }

    // MARK: - Subnets

    public func putSubnet(_ e: SubnetEntry) throws -> Bool {
        try requireVPC(e.vni)
        for other in try listSubnets(vni: e.vni) where other.cidr != e.cidr && other.cidr.overlaps(e.cidr) {
            throw TransitError(.invalidArgument, field: "cidr",
                               "\(e.cidr) overlaps subnet \(other.cidr) of VPC \(e.vni) on this host")
        }
        if try dataplane.subnet(e.vni, e.cidr) == e { return false }
        try dataplane.upsertSubnet(e)
        changeRoles { if e.isBouncer { $0.insert("subnet/\(e.vni)/\(e.cidr)") } else { $0.remove("subnet/\(e.vni)/\(e.cidr)") } }
        logger.info("subnet put", metadata: ["vpc.vni": "\(e.vni)", "subnet.cidr": "\(e.cidr)",
                                             "subnet.bouncers": "\(e.bouncers.count)"])
        return true
    }

    public func deleteSubnet(_ vni: VNI, _ cidr: CIDR) throws -> Bool {
        guard try dataplane.subnet(vni, cidr) != nil else { return false }
        let users = interfaces.keys.filter { $0.vni == vni && cidr.contains($0.ip) }
        guard users.isEmpty else {
            throw TransitError(.failedPrecondition, field: "cidr",
                               "subnet \(cidr) of VPC \(vni) still has \(users.count) endpoint interface(s) on this host")
        }
        try dataplane.forgetCachedHosts(vni) { cidr.contains($0) }
        try forgetServices(vni) { cidr.contains($0) }
        defer { changeRoles { $0.remove("subnet/\(vni)/\(cidr)") } }
        return try dataplane.deleteSubnet(vni, cidr)
    }

    public func listSubnets(vni: VNI?) throws -> [SubnetEntry] {
        try dataplane.listSubnets(vni: vni)
    }

    /// The subnet `cidr` of `vni`, which must be known here and hold `ip`.
    func requireSubnet(_ vni: VNI, _ cidr: CIDR, holding ip: IPv4Address) throws {
        try requireVPC(vni)
        guard try dataplane.subnet(vni, cidr) != nil else {
            throw TransitError(.notFound, field: "subnet", "subnet \(cidr) of VPC \(vni) is not known on this host; put the subnet first")
        }
        guard cidr.contains(ip) else {
            throw TransitError(.invalidArgument, field: "ip", "\(ip) is outside its subnet \(cidr)")
        }
        if cidr.prefixLength < 31 && (ip == cidr.firstAddress || ip == cidr.lastAddress) {
            throw TransitError(.invalidArgument, field: "ip",
                               "\(ip) is the \(ip == cidr.firstAddress ? "network" : "broadcast") address of \(cidr)")
        }
    }

    // MARK: - The bouncer table

    /// Writes endpoint -> host. The same IP with another host is a move; the
    /// host's own cached path to it is dropped either way.
    /// With its policy entry (and the rule sets it names) when it has one;
    /// without, any entry an earlier endpoint at the address had goes.
    public func putEndpoint(_ e: EndpointEntry, subnet: CIDR, policy: PolicyEndpointEntry? = nil,
                            sets: [PolicyUpdateSpec.Set] = []) throws -> Bool {
        try requireSubnet(e.vni, subnet, holding: e.ip)
        if let policy, policy.vni != e.vni || policy.ip != e.ip {
            throw TransitError(.invalidArgument, field: "policy", "is for \(policy.ip) in VPC \(policy.vni), not the endpoint")
        }
        let before = try dataplane.endpoint(e.vni, e.ip)
        let policyBefore = try dataplane.policyEndpoint(e.vni, e.ip)
        if before == e && policyBefore == policy { return false }
        for s in sets { try writePolicySet(s) }
        if policy != policyBefore { try writePolicyEntry(e.vni, e.ip, policy, replacing: policyBefore) }
        try dataplane.upsertEndpoint(e)
        try dataplane.invalidateCachedHost(e.vni, e.ip)
        try collectPolicySets()
        logger.info("endpoint put", metadata: ["vpc.vni": "\(e.vni)", "endpoint.ip": "\(e.ip)", "endpoint.host": "\(e.host)"])
        return true
    }

    public func deleteEndpoint(_ vni: VNI, _ ip: IPv4Address) throws -> Bool {
        let existed = try dataplane.deleteEndpoint(vni, ip)
        if let policy = try dataplane.policyEndpoint(vni, ip) {
            try writePolicyEntry(vni, ip, nil, replacing: policy)
            try collectPolicySets()
        }
        try dataplane.invalidateCachedHost(vni, ip)
        return existed
    }

    public func listEndpoints(vni: VNI?) throws -> [(EndpointEntry, CIDR?)] {
        let subnets = try listSubnets(vni: vni)
        return try dataplane.listEndpoints(vni: vni).map { e in
            let subnet = subnets.filter { $0.vni == e.vni && $0.cidr.contains(e.ip) }.max { $0.cidr.prefixLength < $1.cidr.prefixLength }
            return (e, subnet?.cidr)
        }
    }

    // MARK: - The direct-path cache

    // MARK: - The droplet table

    public func putDroplets(_ hosts: [HostAddress], replace: Bool) throws -> Bool {
        try (replace ? dataplane.replaceDroplets(hosts) : dataplane.putDroplets(hosts)) > 0
    }

    public func deleteDroplet(_ ip: IPv4Address) throws -> Bool {
        try dataplane.deleteDroplet(ip)
    }

    public func listDroplets() throws -> [HostAddress] {
        try dataplane.listDroplets()
    }

    public func listHostCache(vni: VNI?) throws -> [CachedHost] {
        try dataplane.listCachedHosts(vni: vni)
    }

    public func invalidateHostCache(_ vni: VNI, _ ip: IPv4Address) throws -> Bool {
        try dataplane.invalidateCachedHost(vni, ip)
    }

    // MARK: - Counters

    /// How full the data plane's hash tables are. It reads every entry
    /// (about 0.3 s for a million flows): not on the actor, whose calls it
    /// would hold up.
    public nonisolated func mapPressure() throws -> [MapPressure] {
        try dataplane.mapPressure()
    }

    /// Each VPC's packets here: one read per VPC, off the actor (nothing
    /// here changes under it that matters: a VPC put or deleted meanwhile
    /// is counted at the next read).
    public nonisolated func vpcCounters() throws -> [VPCCounters] {
        try dataplane.vpcCounters()
    }

    public func counters() throws -> (counters: [(String, CounterValue)], drops: [(String, CounterValue)]) {
        let c = try dataplane.counterValues(), d = try dataplane.dropValues()
        return (CounterID.all.map { ($0.name, c[$0.name] ?? .zero) }, DropReason.all.map { ($0.name, d[$0.name] ?? .zero) })
    }

    // MARK: - Helpers

    static func ipv4Address(of interface: String) -> IPv4Address? {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return nil }
        defer { freeifaddrs(list) }
        var cursor = list
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            guard let addr = entry.pointee.ifa_addr, addr.pointee.sa_family == sa_family_t(AF_INET),
                  String(cString: entry.pointee.ifa_name) == interface else { continue }
            let sin = UnsafeRawPointer(addr).assumingMemoryBound(to: sockaddr_in.self).pointee
            return IPv4Address(networkOrder: sin.sin_addr.s_addr)
        }
        return nil
    }

}
