internal import CLibBPF
internal import CMizarABI
import Glibc
import MizarCore

typealias MAC6 = (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)

extension MACAddress {
    var tuple: MAC6 {
        let b = bytes
        return (b[0], b[1], b[2], b[3], b[4], b[5])
    }

    init(tuple t: MAC6) { self.init(t.0, t.1, t.2, t.3, t.4, t.5) }
}

extension IPv4Address {
    init(be: UInt32) { self.init(networkOrder: be) }
}

extension mz_host {
    init(_ h: HostAddress) { self.init(ip: h.ip.networkOrder, mac: h.mac.tuple, reserved: 0) }
    var address: HostAddress { HostAddress(ip: IPv4Address(be: ip), mac: MACAddress(tuple: mac)) }
}

extension mz_ep_key {
    init(_ vni: VNI, _ ip: IPv4Address) { self.init(vni: vni.value, ip: ip.networkOrder) }
}

/// Reads and writes a fixed-size C array member (imported as a tuple).
func withElements<Tuple, Element, R>(of tuple: inout Tuple, as: Element.Type,
                                      _ body: (UnsafeMutableBufferPointer<Element>) -> R) -> R {
    withUnsafeMutableBytes(of: &tuple) { raw in body(raw.bindMemory(to: Element.self)) }
}

// MARK: - Entries in Mizar's terms

public struct VPCEntry: Equatable, Sendable {
    public var vni: VNI
    public var dividers: [HostAddress]
    /// This host is one of the VPC's dividers.
    public var isDivider: Bool
    /// The VPC's address space: an address outside it leaves the VPC. Nil:
    /// not given, every address is inside (nothing leaves).
    public var cidr: CIDR?
    /// The VPC's endpoints may leave it, translated to their droplet's
    /// address (spec.egress: SNAT).
    public var egress: Bool

    public init(vni: VNI, dividers: [HostAddress], isDivider: Bool = false, cidr: CIDR? = nil, egress: Bool = false) {
        self.vni = vni
        self.dividers = dividers
        self.isDivider = isDivider
        self.cidr = cidr
        self.egress = egress
    }
}

public struct SubnetEntry: Equatable, Sendable {
    public var vni: VNI
    public var cidr: CIDR
    public var bouncers: [HostAddress]
    /// This host is one of the subnet's bouncers.
    public var isBouncer: Bool

    public init(vni: VNI, cidr: CIDR, bouncers: [HostAddress], isBouncer: Bool = false) {
        self.vni = vni
        self.cidr = cidr
        self.bouncers = bouncers
        self.isBouncer = isBouncer
    }
}

public struct EndpointEntry: Equatable, Sendable {
    public var vni: VNI
    public var ip: IPv4Address
    public var mac: MACAddress
    public var host: HostAddress
    public var kind: EndpointKind

    public init(vni: VNI, ip: IPv4Address, mac: MACAddress, host: HostAddress, kind: EndpointKind = .simple) {
        self.vni = vni
        self.ip = ip
        self.mac = mac
        self.host = host
        self.kind = kind
    }
}

/// An endpoint on this host: where to deliver it, and (for the agent) who it
/// is and which subnet it sits in.
public struct LocalEndpoint: Equatable, Sendable {
    public var vni: VNI
    public var ip: IPv4Address
    public var mac: MACAddress
    public var ifindex: UInt32
    public var subnet: CIDR
    public var gateway: IPv4Address
    public var gatewayMAC: MACAddress
    /// The host's route to the address is this endpoint's: its replies to
    /// the host's own connections are handed to the host.
    public var hostAccess: Bool

    public init(vni: VNI, ip: IPv4Address, mac: MACAddress, ifindex: UInt32, subnet: CIDR,
                gateway: IPv4Address, gatewayMAC: MACAddress, hostAccess: Bool = false) {
        self.vni = vni
        self.ip = ip
        self.mac = mac
        self.ifindex = ifindex
        self.subnet = subnet
        self.gateway = gateway
        self.gatewayMAC = gatewayMAC
        self.hostAccess = hostAccess
    }
}

public struct CachedHost: Equatable, Sendable {
    public var vni: VNI
    public var ip: IPv4Address
    public var host: HostAddress
    public var learnedNs: UInt64

    public init(vni: VNI, ip: IPv4Address, host: HostAddress, learnedNs: UInt64 = 0) {
        self.vni = vni
        self.ip = ip
        self.host = host
        self.learnedNs = learnedNs
    }
}

// MARK: - Typed operations

extension Dataplane {
    public func setDroplet(_ host: HostAddress, ifindex: UInt32) throws(SystemError) {
        try droplet.update(0, mz_droplet(self: mz_host(host), ifindex: ifindex, reserved: 0))
    }

    public func upsertVPC(_ e: VPCEntry) throws {
        guard e.dividers.count <= Int(MZ_MAX_DIVIDERS) else {
            throw ValidationError(field: "dividers", reason: "\(e.dividers.count) dividers; at most \(MZ_MAX_DIVIDERS) per VPC")
        }
        var v = mz_vpc()
        v.flags = (e.isDivider ? UInt32(MZ_VPC_F_DIVIDER) : 0) | (e.egress ? UInt32(MZ_VPC_F_EGRESS) : 0)
        if let cidr = e.cidr {
            v.cidr_ip = cidr.address.networkOrder
            v.cidr_prefixlen = cidr.prefixLength
        }
        v.n_dividers = UInt32(e.dividers.count)
        withElements(of: &v.dividers, as: mz_host.self) { slots in
            for (i, d) in e.dividers.enumerated() { slots[i] = mz_host(d) }
        }
        try vpcs.update(mz_vpc_key(vni: e.vni.value), v)
        try vpcStats.insertZero(e.vni.value)
    }

    @discardableResult
    public func deleteVPC(_ vni: VNI) throws(SystemError) -> Bool {
        try vpcStats.delete(vni.value)
        return try vpcs.delete(mz_vpc_key(vni: vni.value))
    }

    /// Gives every VPC in the table its packet counters (pins of an older
    /// transitd had none): counted from now on.
    public func ensureVPCStats() throws(SystemError) {
        for k in try vpcs.keys() { try vpcStats.insertZero(k.vni) }
    }

    public func vpc(_ vni: VNI) throws -> VPCEntry? {
        guard var v = try vpcs.lookup(mz_vpc_key(vni: vni.value)) else { return nil }
        let n = Int(min(v.n_dividers, UInt32(MZ_MAX_DIVIDERS)))
        let dividers = withElements(of: &v.dividers, as: mz_host.self) { Array($0.prefix(n)).map(\.address) }
        let cidr = v.cidr_prefixlen == 0 ? nil
            : try? CIDR(address: IPv4Address(networkOrder: v.cidr_ip), prefixLength: v.cidr_prefixlen)
        return VPCEntry(vni: vni, dividers: dividers, isDivider: v.flags & UInt32(MZ_VPC_F_DIVIDER) != 0,
                        cidr: cidr, egress: v.flags & UInt32(MZ_VPC_F_EGRESS) != 0)
    }

    static func subnetKey(_ vni: VNI, _ cidr: CIDR) -> mz_subnet_key {
        mz_subnet_key(prefixlen: 32 + UInt32(cidr.prefixLength), vni: vni.value, ip: cidr.address.networkOrder)
    }

    public func upsertSubnet(_ e: SubnetEntry) throws {
        guard e.bouncers.count <= Int(MZ_MAX_BOUNCERS) else {
            throw ValidationError(field: "bouncers", reason: "\(e.bouncers.count) bouncers; at most \(MZ_MAX_BOUNCERS) per subnet")
        }
        var v = mz_subnet()
        v.vni = e.vni.value
        v.ip = e.cidr.address.networkOrder
        v.prefixlen = e.cidr.prefixLength
        v.flags = e.isBouncer ? UInt8(MZ_SUBNET_F_BOUNCER) : 0
        v.n_bouncers = UInt16(e.bouncers.count)
        withElements(of: &v.bouncers, as: mz_host.self) { slots in
            for (i, b) in e.bouncers.enumerated() { slots[i] = mz_host(b) }
        }
        try subnets.update(Dataplane.subnetKey(e.vni, e.cidr), v)
    }

    @discardableResult
    public func deleteSubnet(_ vni: VNI, _ cidr: CIDR) throws(SystemError) -> Bool {
        try subnets.delete(Dataplane.subnetKey(vni, cidr))
    }

    public func subnet(_ vni: VNI, _ cidr: CIDR) throws -> SubnetEntry? {
        guard var v = try subnets.lookup(Dataplane.subnetKey(vni, cidr)) else { return nil }
        let n = Int(min(UInt32(v.n_bouncers), UInt32(MZ_MAX_BOUNCERS)))
        let bouncers = withElements(of: &v.bouncers, as: mz_host.self) { Array($0.prefix(n)).map(\.address) }
        return SubnetEntry(vni: vni, cidr: cidr, bouncers: bouncers, isBouncer: v.flags & UInt8(MZ_SUBNET_F_BOUNCER) != 0)
    }

    static func endpointValue(_ e: EndpointEntry) -> mz_endpoint {
        mz_endpoint(host: mz_host(e.host), mac: e.mac.tuple, kind: e.kind.rawValue, flags: 0)
    }

    /// The bouncer's table: endpoint -> its host.
    public func upsertEndpoint(_ e: EndpointEntry) throws(SystemError) {
        try endpoints.update(mz_ep_key(e.vni, e.ip), Dataplane.endpointValue(e))
    }

    /// Many bouncer entries in one syscall.
    public func upsertEndpoints(_ entries: [EndpointEntry]) throws(SystemError) {
        try endpoints.updateBatch(keys: entries.map { mz_ep_key($0.vni, $0.ip) }, values: entries.map(Dataplane.endpointValue))
    }

    @discardableResult
    public func deleteEndpoint(_ vni: VNI, _ ip: IPv4Address) throws(SystemError) -> Bool {
        try endpoints.delete(mz_ep_key(vni, ip))
    }

    public func endpoint(_ vni: VNI, _ ip: IPv4Address) throws(SystemError) -> EndpointEntry? {
        guard let v = try endpoints.lookup(mz_ep_key(vni, ip)) else { return nil }
        return Dataplane.endpointEntry(vni, ip, v)
    }

    static func endpointEntry(_ vni: VNI, _ ip: IPv4Address, _ v: mz_endpoint) -> EndpointEntry {
        EndpointEntry(vni: vni, ip: ip, mac: MACAddress(tuple: v.mac), host: v.host.address,
                      kind: EndpointKind(rawValue: v.kind) ?? .simple)
    }

    /// An endpoint on this host: the delivery entry and the agent's view of
    /// its interface, written together.
    public func upsertLocal(_ e: LocalEndpoint) throws {
        guard e.subnet.contains(e.ip) else {
            throw ValidationError(field: "ip", reason: "\(e.ip) is outside the endpoint's subnet \(e.subnet)")
        }
        guard e.ifindex != 0 else { throw ValidationError(field: "ifindex", reason: "must name an interface (not 0)") }
        // A new endpoint at an address admits none of the flows its
        // predecessor there had: they were admitted before it existed.
        // Writing the same endpoint again keeps its flows.
        let existing = try local.lookup(mz_ep_key(e.vni, e.ip))
        let revoked = existing.map { $0.ifindex == e.ifindex ? $0.revoked_ns : Dataplane.monotonicNs() } ?? Dataplane.monotonicNs()
        try ifaces.update(mz_iface_key(ifindex: e.ifindex), mz_iface(
            vni: e.vni.value, ip: e.ip.networkOrder, mac: e.mac.tuple, subnet_prefixlen: e.subnet.prefixLength,
            flags: e.hostAccess ? UInt8(MZ_IFACE_F_HOST) : 0, subnet_ip: e.subnet.address.networkOrder, gateway_ip: e.gateway.networkOrder,
            gateway_mac: e.gatewayMAC.tuple, reserved: 0, revoked_ns: revoked))
        try local.update(mz_ep_key(e.vni, e.ip), mz_local_ep(ifindex: e.ifindex, mac: e.mac.tuple, reserved: 0, reserved2: 0, revoked_ns: revoked))
    }

    /// The programs' clock (bpf_ktime_get_ns): CLOCK_MONOTONIC.
    static func monotonicNs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Whether a local endpoint's replies to its host's connections go to
    /// the host; false when the endpoint is not on this host.
    @discardableResult
    public func setHostAccess(_ vni: VNI, _ ip: IPv4Address, _ on: Bool) throws(SystemError) -> Bool {
        guard let entry = try local.lookup(mz_ep_key(vni, ip)),
              var iface = try ifaces.lookup(mz_iface_key(ifindex: entry.ifindex)) else { return false }
        let flags = on ? iface.flags | UInt8(MZ_IFACE_F_HOST) : iface.flags & ~UInt8(MZ_IFACE_F_HOST)
        if flags != iface.flags {
            iface.flags = flags
            try ifaces.update(mz_iface_key(ifindex: entry.ifindex), iface)
        }
        return true
    }

    /// Whether the host reaches a local endpoint (nil: not on this host).
    public func hostAccess(_ vni: VNI, _ ip: IPv4Address) throws(SystemError) -> Bool? {
        guard let entry = try local.lookup(mz_ep_key(vni, ip)),
              let iface = try ifaces.lookup(mz_iface_key(ifindex: entry.ifindex)) else { return nil }
        return iface.flags & UInt8(MZ_IFACE_F_HOST) != 0
    }

    @discardableResult
    public func deleteLocal(_ vni: VNI, _ ip: IPv4Address) throws(SystemError) -> Bool {
        guard let entry = try local.lookup(mz_ep_key(vni, ip)) else { return false }
        try ifaces.delete(mz_iface_key(ifindex: entry.ifindex))
        return try local.delete(mz_ep_key(vni, ip))
    }

    public func cachedHost(_ vni: VNI, _ ip: IPv4Address) throws(SystemError) -> CachedHost? {
        guard let v = try hostCache.lookup(mz_ep_key(vni, ip)) else { return nil }
        return CachedHost(vni: vni, ip: ip, host: v.host.address, learnedNs: v.learned_ns)
    }

    /// Writes a learned endpoint -> host entry, as the programs do from a
    /// droplet's answer. Only tests and benchmarks that start from a warm
    /// cache write it directly.
    public func setCachedHost(_ c: CachedHost) throws(SystemError) {
        try hostCache.update(mz_ep_key(c.vni, c.ip), mz_cached_host(host: mz_host(c.host), flags: 0, learned_ns: c.learnedNs))
    }

    /// Forgets a learned endpoint -> host entry; the next packet goes through
    /// a bouncer or divider again.
    @discardableResult
    public func invalidateCachedHost(_ vni: VNI, _ ip: IPv4Address) throws(SystemError) -> Bool {
        try hostCache.delete(mz_ep_key(vni, ip))
    }

    // MARK: The droplet table

    /// Adds or updates droplets whose tunnel packets this host believes;
    /// how many entries changed.
    @discardableResult
    public func putDroplets(_ hosts: [HostAddress]) throws(SystemError) -> Int {
        var changed = 0
        for h in hosts {
            let key = mz_droplet_key(ip: h.ip.networkOrder)
            if let old = try droplets.lookup(key), MACAddress(tuple: old.mac) == h.mac { continue }
            try droplets.update(key, mz_droplet_entry(mac: h.mac.tuple, reserved: 0))
            changed += 1
        }
        return changed
    }

    /// Makes the table exactly `hosts`: adds and updates them, removes the
    /// rest; how many entries changed.
    @discardableResult
    public func replaceDroplets(_ hosts: [HostAddress]) throws(SystemError) -> Int {
        let keep = Set(hosts.map(\.ip.networkOrder))
        var changed = 0
        for key in try droplets.keys() where !keep.contains(key.ip) {
            if try droplets.delete(key) { changed += 1 }
        }
        return changed + (try putDroplets(hosts))
    }

    /// Removes a droplet: its tunnel packets are dropped from now on.
    @discardableResult
    public func deleteDroplet(_ ip: IPv4Address) throws(SystemError) -> Bool {
        try droplets.delete(mz_droplet_key(ip: ip.networkOrder))
    }

    /// Every droplet this host believes, by address.
    public func listDroplets() throws(SystemError) -> [HostAddress] {
        try droplets.entries().map { HostAddress(ip: IPv4Address(be: $0.0.ip), mac: MACAddress(tuple: $0.1.mac)) }.sorted { $0.ip < $1.ip }
    }

    /// Whether an endpoint of this host has its delivery entry here.
    public func hasLocal(_ vni: VNI, _ ip: IPv4Address) throws(SystemError) -> Bool {
        try local.lookup(mz_ep_key(vni, ip)) != nil
    }

    // MARK: Walks over whole tables

    /// Every VPC this host knows, or those of one VNI.
    public func listVPCs(vni: VNI? = nil) throws -> [VPCEntry] {
        try vpcs.keys().compactMap { k -> VPCEntry? in
            guard let v = try? VNI(k.vni), vni == nil || vni == v else { return nil }
            return try vpc(v)
        }.sorted { $0.vni < $1.vni }
    }

    /// Every subnet this host knows, or those of one VPC.
    public func listSubnets(vni: VNI? = nil) throws -> [SubnetEntry] {
        try subnets.keys().compactMap { k -> SubnetEntry? in
            guard let v = try? VNI(k.vni), vni == nil || vni == v,
                  let cidr = try? CIDR(address: IPv4Address(networkOrder: k.ip), prefixLength: UInt8(k.prefixlen - 32))
            else { return nil }
            return try subnet(v, cidr)
        }.sorted { ($0.vni, $0.cidr.address) < ($1.vni, $1.cidr.address) }
    }

    /// Every entry of the bouncer table, or those of one VPC.
    public func listEndpoints(vni: VNI? = nil) throws(SystemError) -> [EndpointEntry] {
        try endpoints.entries().compactMap { (k, v) -> EndpointEntry? in
            guard let kv = try? VNI(k.vni), vni == nil || vni == kv else { return nil }
            return Dataplane.endpointEntry(kv, IPv4Address(networkOrder: k.ip), v)
        }.sorted { ($0.vni, $0.ip) < ($1.vni, $1.ip) }
    }

    /// Every learned endpoint -> host entry, or those of one VPC.
    public func listCachedHosts(vni: VNI? = nil) throws(SystemError) -> [CachedHost] {
        try hostCache.entries().compactMap { (k, v) -> CachedHost? in
            guard let kv = try? VNI(k.vni), vni == nil || vni == kv else { return nil }
            return CachedHost(vni: kv, ip: IPv4Address(networkOrder: k.ip), host: v.host.address, learnedNs: v.learned_ns)
        }.sorted { ($0.vni, $0.ip) < ($1.vni, $1.ip) }
    }

    /// Drops learned direct paths to the addresses of `vni` that `matching`
    /// picks (a subnet's, a whole VPC's). Returns how many went.
    @discardableResult
    public func forgetCachedHosts(_ vni: VNI, _ matching: (IPv4Address) -> Bool) throws(SystemError) -> Int {
        var removed = 0
        for key in try hostCache.keys() where key.vni == vni.value && matching(IPv4Address(networkOrder: key.ip)) {
            if try hostCache.delete(key) { removed += 1 }
        }
        return removed
    }

    public func setTrace(_ mask: UInt32) throws(SystemError) {
        try knobs.update(0, mz_knobs(trace: mask, reserved: 0))
    }

    /// What the programs trace: every drop (`drops`), every packet
    /// (`everyPacket` nil), or every packet of the VPCs in `everyPacket`.
    /// The VPC set is written before the switch that reads it.
    public func setTrace(drops: Bool, everyPacket: Set<VNI>?) throws(SystemError) {
        var mask: UInt32 = drops ? UInt32(MZ_TRACE_DROPS) : 0
        let wanted = Set((everyPacket ?? []).map(\.value))
        for k in try traceVPCs.keys() where !wanted.contains(k.vni) { try traceVPCs.delete(k) }
        for v in wanted { try traceVPCs.update(mz_trace_vpc_key(vni: v), 1) }
        if everyPacket == nil { mask |= UInt32(MZ_TRACE_ALL) } else if !wanted.isEmpty { mask |= UInt32(MZ_TRACE_VPCS) }
        try knobs.update(0, mz_knobs(trace: mask, reserved: 0))
    }

    /// Empties every table and zeroes every counter.
    public func reset() throws(SystemError) {
        try droplet.update(0, mz_droplet())
        try knobs.update(0, mz_knobs())
        try vpcs.clear()
        try subnets.clear()
        try endpoints.clear()
        try local.clear()
        try ifaces.clear()
        try hostCache.clear()
        for k in try services.keys() { try services.delete(k) }
        try nat.clear()
        try natActive.update(0, 0)
        try serviceClients.clear()
        for k in try serviceStats.keys() { try serviceStats.delete(k) }
        for k in try vpcStats.keys() { try vpcStats.delete(k) }
        try traceVPCs.clear()
        try policyEndpoints.clear()
        try policySets.clear()
        try policyBlocks.clear()
        try conntrack.clear()
        try snatOut.clear()
        try snatIn.clear()
        try published.clear()
        try publishedFlows.clear()
        try publishedBack.clear()
        for i in 0..<UInt32(MZ_CNT__MAX.rawValue) { try counters.zero(at: i) }
        for i in 0..<UInt32(MZ_DROP__MAX.rawValue) { try drops.zero(at: i) }
    }
}
