internal import CMizarABI
import Glibc
import MizarCore

// Network policy tables: what a bouncer judges with (endpoints' entries,
// rule sets, ipBlock prefixes) and what a host remembers (conntrack).
// The values are MizarPolicy's compiled form, given here as plain numbers
// so that the data plane does not depend on the API.

/// A set of peer bits: 512, in 16 words.
public struct PolicyBitWords: Hashable, Sendable {
    public static let count = Int(MZ_POL_WORDS)
    public var words: [UInt32]

    public init(words: [UInt32] = []) {
        self.words = Array((words + Array(repeating: 0, count: Self.count)).prefix(Self.count))
    }

    var abi: mz_pol_bits {
        var b = mz_pol_bits()
        withUnsafeMutableBytes(of: &b.w) { raw in
            for (i, w) in words.enumerated() { raw.storeBytes(of: w, toByteOffset: i * 4, as: UInt32.self) }
        }
        return b
    }

    init(_ b: mz_pol_bits) {
        var b = b
        words = withUnsafeBytes(of: &b.w) { raw in (0..<Self.count).map { raw.load(fromByteOffset: $0 * 4, as: UInt32.self) } }
    }
}

/// One port range of a rule set: protocol 0 is every protocol and port.
public struct PolicyRuleEntry: Hashable, Sendable {
    public var proto: UInt8
    public var first: UInt16
    public var last: UInt16
    public var anyPeer: Bool
    public var bits: PolicyBitWords

    public init(proto: UInt8, first: UInt16, last: UInt16, anyPeer: Bool, bits: PolicyBitWords) {
        self.proto = proto
        self.first = first
        self.last = last
        self.anyPeer = anyPeer
        self.bits = bits
    }
}

/// A named-port bit an endpoint holds and the port it stands for there.
public struct PolicyNamedPort: Hashable, Sendable {
    public var bit: UInt16
    public var proto: UInt8
    public var port: UInt16

    public init(bit: UInt16, proto: UInt8, port: UInt16) {
        self.bit = bit
        self.proto = proto
        self.port = port
    }
}

/// An endpoint's entry on its subnet's bouncers.
public struct PolicyEndpointEntry: Hashable, Sendable {
    public var vni: VNI
    public var ip: IPv4Address
    public var members: PolicyBitWords
    /// Rule set ids; 0: not isolated in that direction.
    public var ingress: UInt64
    public var egress: UInt64
    public var named: [PolicyNamedPort]

    public init(vni: VNI, ip: IPv4Address, members: PolicyBitWords, ingress: UInt64, egress: UInt64, named: [PolicyNamedPort]) {
        self.vni = vni
        self.ip = ip
        self.members = members
        self.ingress = ingress
        self.egress = egress
        self.named = named
    }
}

/// A conntrack entry, as `mizarctl conntrack` shows it.
public struct ConntrackEntry: Hashable, Sendable {
    public var vni: VNI
    /// The key's two ends, lower (address, port) first.
    public var a: IPv4Address
    public var aPort: UInt16
    public var b: IPv4Address
    public var bPort: UInt16
    public var proto: UInt8
    /// Whether b opened the flow.
    public var openedByB: Bool
    public var state: UInt8
    public var admittedNs: UInt64
    public var seenNs: UInt64

    /// The state's name: syn, established, closing, closed, or other.
    public var stateName: String { Self.stateName(state) }

    static func stateName(_ state: UInt8) -> String {
        switch state {
        case UInt8(MZ_CT_SYN.rawValue): "syn"
        case UInt8(MZ_CT_ESTABLISHED.rawValue): "established"
        case UInt8(MZ_CT_CLOSING.rawValue): "closing"
        case UInt8(MZ_CT_CLOSED.rawValue): "closed"
        default: "other"
        }
    }
}

extension Dataplane {
    /// The most rules one set holds, and named ports one endpoint.
    public static let maxPolicyRules = Int(MZ_POL_RULES)
    public static let maxNamedPorts = Int(MZ_POL_NAMED)

    public func setPolicyEndpoint(_ e: PolicyEndpointEntry) throws {
        guard e.named.count <= Self.maxNamedPorts else {
            throw ValidationError(field: "named", reason: "\(e.named.count) named ports; at most \(Self.maxNamedPorts)")
        }
        for n in e.named where Int(n.bit) >= PolicyBitWords.count * 32 {
            throw ValidationError(field: "named", reason: "bit \(n.bit) is out of range 0...\(PolicyBitWords.count * 32 - 1)")
        }
        var v = mz_pol_ep()
        v.members = e.members.abi
        v.ingress = e.ingress
        v.egress = e.egress
        v.n_named = UInt32(e.named.count)
        withUnsafeMutableBytes(of: &v.named) { raw in
            for (i, n) in e.named.enumerated() {
                raw.storeBytes(of: mz_pol_named(bit: n.bit, proto: n.proto, reserved: 0, port: n.port, reserved2: 0),
                               toByteOffset: i * MemoryLayout<mz_pol_named>.stride, as: mz_pol_named.self)
            }
        }
        try policyEndpoints.update(mz_ep_key(e.vni, e.ip), v)
    }

    @discardableResult
    public func deletePolicyEndpoint(_ vni: VNI, _ ip: IPv4Address) throws(SystemError) -> Bool {
        try policyEndpoints.delete(mz_ep_key(vni, ip))
    }

    public func policyEndpoint(_ vni: VNI, _ ip: IPv4Address) throws(SystemError) -> PolicyEndpointEntry? {
        guard let v = try policyEndpoints.lookup(mz_ep_key(vni, ip)) else { return nil }
        return Self.policyEndpointEntry(vni, ip, v)
    }

    public func policyEndpointEntries() throws(SystemError) -> [PolicyEndpointEntry] {
        try policyEndpoints.entries().compactMap { k, v in
            (try? VNI(k.vni)).map { Self.policyEndpointEntry($0, IPv4Address(networkOrder: k.ip), v) }
        }
    }

    static func policyEndpointEntry(_ vni: VNI, _ ip: IPv4Address, _ v: mz_pol_ep) -> PolicyEndpointEntry {
        var v = v
        let n = min(Int(v.n_named), Int(MZ_POL_NAMED))
        var named: [PolicyNamedPort] = []
        withUnsafeBytes(of: &v.named) { (raw: UnsafeRawBufferPointer) in
            for i in 0..<n {
                let e = raw.load(fromByteOffset: i * MemoryLayout<mz_pol_named>.stride, as: mz_pol_named.self)
                named.append(PolicyNamedPort(bit: e.bit, proto: e.proto, port: e.port))
            }
        }
        return PolicyEndpointEntry(vni: vni, ip: ip, members: PolicyBitWords(v.members), ingress: v.ingress, egress: v.egress, named: named)
    }

    /// A rule set under its id (the content's hash, from MizarPolicy).
    public func setPolicySet(_ vni: VNI, id: UInt64, _ rules: [PolicyRuleEntry]) throws {
        guard id != 0 else { throw ValidationError(field: "id", reason: "0 stands for \"not isolated\"; a rule set needs another id") }
        guard rules.count <= Self.maxPolicyRules else {
            throw ValidationError(field: "rules", reason: "\(rules.count) rules; at most \(Self.maxPolicyRules)")
        }
        for (i, r) in rules.enumerated() where r.first > r.last {
            throw ValidationError(field: "rules[\(i)]", reason: "port range \(r.first)-\(r.last) is empty")
        }
        var v = mz_pol_set()
        v.n_rules = UInt32(rules.count)
        withUnsafeMutableBytes(of: &v.rules) { raw in
            for (i, r) in rules.enumerated() {
                let rule = mz_pol_rule(proto: r.proto, flags: r.anyPeer ? UInt8(MZ_POL_R_ANY_PEER) : 0, first: r.first, last: r.last,
                                       reserved: 0, bits: r.bits.abi)
                raw.storeBytes(of: rule, toByteOffset: i * MemoryLayout<mz_pol_rule>.stride, as: mz_pol_rule.self)
            }
        }
        try policySets.update(mz_pol_set_key(vni: vni.value, reserved: 0, id: id), v)
    }

    @discardableResult
    public func deletePolicySet(_ vni: VNI, id: UInt64) throws(SystemError) -> Bool {
        try policySets.delete(mz_pol_set_key(vni: vni.value, reserved: 0, id: id))
    }

    public func policySet(_ vni: VNI, id: UInt64) throws(SystemError) -> [PolicyRuleEntry]? {
        guard var v = try policySets.lookup(mz_pol_set_key(vni: vni.value, reserved: 0, id: id)) else { return nil }
        let n = min(Int(v.n_rules), Self.maxPolicyRules)
        var rules: [PolicyRuleEntry] = []
        withUnsafeBytes(of: &v.rules) { (raw: UnsafeRawBufferPointer) in
            for i in 0..<n {
                let r = raw.load(fromByteOffset: i * MemoryLayout<mz_pol_rule>.stride, as: mz_pol_rule.self)
                rules.append(PolicyRuleEntry(proto: r.proto, first: r.first, last: r.last, anyPeer: r.flags & UInt8(MZ_POL_R_ANY_PEER) != 0,
                                             bits: PolicyBitWords(r.bits)))
            }
        }
        return rules
    }

    /// Every VPC's ipBlock prefix table.
    public func policyBlockTables() throws(SystemError) -> [VNI: [CIDR: PolicyBitWords]] {
        var result: [VNI: [CIDR: PolicyBitWords]] = [:]
        for (k, v) in try policyBlocks.entries() {
            guard let vni = try? VNI(k.vni), k.prefixlen >= 32,
                  let cidr = try? CIDR(address: IPv4Address(networkOrder: k.ip), prefixLength: UInt8(k.prefixlen - 32)) else { continue }
            result[vni, default: [:]][cidr] = PolicyBitWords(v)
        }
        return result
    }

    /// The revocation packet's option type (critical bit set) and inner EtherType.
    public static let revokeOptionType = UInt8(MZ_GENEVE_CRITICAL) | UInt8(MZ_OPT_REVOKE.rawValue)
    /// A bouncer's verdict (the flow is admitted): the inner destination's
    /// host and flags (for tools and benchmarks that build packets).
    public static let verdictOptionType = UInt8(MZ_GENEVE_CRITICAL) | UInt8(MZ_OPT_VERDICT.rawValue)
    public static let revokeEtherType = UInt16(MZ_ETH_P_REVOKE)
    public static let genevePort = UInt16(MZ_GENEVE_PORT)

    /// The ids of the rule sets held, by VPC.
    public func policySetIDs() throws(SystemError) -> [(vni: VNI, id: UInt64)] {
        try policySets.keys().compactMap { k in (try? VNI(k.vni)).map { ($0, k.id) } }
    }

    /// A VPC's ipBlock prefix table, replacing what it held.
    public func replacePolicyBlocks(_ vni: VNI, _ prefixes: [CIDR: PolicyBitWords]) throws(SystemError) {
        for k in try policyBlocks.keys() where k.vni == vni.value {
            let cidr = try? CIDR(address: IPv4Address(networkOrder: k.ip), prefixLength: UInt8(k.prefixlen - 32))
            if cidr.map({ prefixes[$0] == nil }) ?? true { try policyBlocks.delete(k) }
        }
        for (cidr, bits) in prefixes {
            try policyBlocks.update(mz_pol_block_key(prefixlen: 32 + UInt32(cidr.prefixLength), vni: vni.value, ip: cidr.address.networkOrder),
                                    bits.abi)
        }
    }

    /// Every admitted flow this host remembers.
    public func conntrackEntries() throws(SystemError) -> [ConntrackEntry] {
        try conntrack.entries().compactMap { k, v in
            guard let vni = try? VNI(k.vni) else { return nil }
            return ConntrackEntry(vni: vni, a: IPv4Address(networkOrder: k.src), aPort: UInt16(bigEndian: k.sport),
                                  b: IPv4Address(networkOrder: k.dst), bPort: UInt16(bigEndian: k.dport), proto: k.proto,
                                  openedByB: v.flags & UInt8(MZ_CT_F_REPLY_FIRST) != 0, state: v.state,
                                  admittedNs: v.admitted_ns, seenNs: v.seen_ns)
        }
    }

    /// Drops the entries that can admit nothing any more: past their
    /// timeout, or with no end on this host (its endpoint is gone). An
    /// entry admitted before its ends' last revocation stays until its
    /// timeout: it admits nothing, but it says who opened the flow. Returns
    /// how many went.
    @discardableResult
    public func sweepConntrack() throws(SystemError) -> Int {
        let now = Self.monotonicNs()
        var gone = 0
        for (k, v) in try conntrack.entries() {
            var locals: [UInt64] = []
            for ip in [k.src, k.dst] {
                if let l = try local.lookup(mz_ep_key(vni: k.vni, ip: ip)) { locals.append(l.revoked_ns) }
            }
            // A revoked entry admits nothing but is kept until it expires:
            // it remembers who opened the flow, which the judgment of the
            // flow's next packet needs (without it, the answering side's
            // next packet would be judged as opening the flow, and the
            // opener's packets pass as its replies).
            let expired = now > v.seen_ns && now - v.seen_ns > Self.conntrackTimeoutNs(v)
            if expired || locals.isEmpty, try conntrack.delete(k) { gone += 1 }
        }
        return gone
    }

    /// The programs' timeout of an entry (bpf/lib/conntrack.h).
    static func conntrackTimeoutNs(_ v: mz_ct) -> UInt64 { flowTimeoutNs(state: v.state, proto: v.proto) }

    /// How long a flow in `state` lives past its last packet (conntrack's
    /// and SNAT's alike).
    static func flowTimeoutNs(state: UInt8, proto: UInt8) -> UInt64 {
        let s: Int32 = switch UInt32(state) {
        case MZ_CT_SYN.rawValue: MZ_CT_TIMEOUT_SYN
        case MZ_CT_ESTABLISHED.rawValue: MZ_CT_TIMEOUT_ESTABLISHED
        case MZ_CT_CLOSING.rawValue: MZ_CT_TIMEOUT_CLOSING
        case MZ_CT_CLOSED.rawValue: MZ_CT_TIMEOUT_CLOSED
        default: proto == 17 ? MZ_CT_TIMEOUT_UDP : proto == 1 ? MZ_CT_TIMEOUT_ICMP : MZ_CT_TIMEOUT_OTHER
        }
        return UInt64(s) * 1_000_000_000
    }

    /// Marks a local endpoint's flows to be judged again, as a bouncer's
    /// revocation does. False when the endpoint is not on this host.
    @discardableResult
    public func revokeLocal(_ vni: VNI, _ ip: IPv4Address) throws(SystemError) -> Bool {
        guard var entry = try local.lookup(mz_ep_key(vni, ip)) else { return false }
        let now = Self.monotonicNs()
        entry.revoked_ns = now
        try local.update(mz_ep_key(vni, ip), entry)
        if var iface = try ifaces.lookup(mz_iface_key(ifindex: entry.ifindex)) {
            iface.revoked_ns = now
            try ifaces.update(mz_iface_key(ifindex: entry.ifindex), iface)
        }
        return true
    }

    /// When a local endpoint's flows were last revoked (or it was made), on
    /// the programs' clock.
    public func localRevokedNs(_ vni: VNI, _ ip: IPv4Address) throws(SystemError) -> UInt64? {
        try local.lookup(mz_ep_key(vni, ip))?.revoked_ns
    }

    /// The programs' clock: CLOCK_MONOTONIC in nanoseconds.
    public static var nowNs: UInt64 { monotonicNs() }
}
