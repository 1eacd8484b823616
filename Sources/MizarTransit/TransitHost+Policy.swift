import Glibc
import MizarCore
import MizarDataplane

/// One PutPolicy call, parsed.
public struct PolicyUpdateSpec: Sendable {
    public struct Set: Sendable {
        public var vni: VNI
        public var id: UInt64
        public var rules: [PolicyRuleEntry]
        public init(vni: VNI, id: UInt64, rules: [PolicyRuleEntry]) {
            self.vni = vni
            self.id = id
            self.rules = rules
        }
    }
    public var sets: [Set] = []
    /// Entries, each with whether its host is told when it changed.
    public var endpoints: [(entry: PolicyEndpointEntry, revoke: Bool)] = []
    public var removed: [(vni: VNI, ip: IPv4Address)] = []
    public var blocks: [(vni: VNI, prefixes: [CIDR: PolicyBitWords])] = []
    public init() {}
}

/// A rule set on a bouncer: its VPC and id.
struct PolicySetRef: Hashable {
    var vni: VNI
    var id: UInt64

    /// The sets an entry names (0: not isolated that way, no set).
    static func named(by e: PolicyEndpointEntry) -> [PolicySetRef] {
        [e.ingress, e.egress].filter { $0 != 0 }.map { PolicySetRef(vni: e.vni, id: $0) }
    }
}

/// What a bouncer holds of network policy.
public struct PolicyState: Sendable {
    public var endpoints: [PolicyEndpointEntry]
    public var sets: [PolicyUpdateSpec.Set]
    public var blocks: [(vni: VNI, prefixes: [CIDR: PolicyBitWords])]

    public init(endpoints: [PolicyEndpointEntry], sets: [PolicyUpdateSpec.Set], blocks: [(vni: VNI, prefixes: [CIDR: PolicyBitWords])]) {
        self.endpoints = endpoints
        self.sets = sets
        self.blocks = blocks
    }
}

extension TransitHost {
    /// Writes rule sets, then the entries naming them, then prefix tables;
    /// drops the sets no entry names any more; tells the hosts of the
    /// endpoints whose entries changed (and asked for it) to judge their
    /// flows again. Returns the entries changed and the revocations sent.
    public func putPolicy(_ u: PolicyUpdateSpec) throws -> (changed: Int, revoked: Int) {
        for s in u.sets { try writePolicySet(s) }
        var changed = 0
        var revoke: [(VNI, IPv4Address)] = []
        for (e, tell) in u.endpoints {
            let old = try dataplane.policyEndpoint(e.vni, e.ip)
            if old == e { continue }
            try writePolicyEntry(e.vni, e.ip, e, replacing: old)
            changed += 1
            if tell { revoke.append((e.vni, e.ip)) }
        }
        for (vni, ip) in u.removed {
            guard let old = try dataplane.policyEndpoint(vni, ip) else { continue }
            try writePolicyEntry(vni, ip, nil, replacing: old)
            changed += 1
            revoke.append((vni, ip))
        }
        for (vni, prefixes) in u.blocks { try dataplane.replacePolicyBlocks(vni, prefixes) }
        try collectPolicySets()
        var sent = 0
        for (vni, ip) in revoke {
            guard let host = try dataplane.endpoint(vni, ip)?.host else { continue }
            revokeFlows(vni, ip, at: host.ip)
            sent += 1
        }
        if changed > 0 {
            logger.info("policy put", metadata: ["policy.sets": "\(u.sets.count)", "policy.changed": "\(changed)", "policy.revoked": "\(sent)"])
        }
        return (changed, sent)
    }

    /// Rule sets no entry names go: of those written or left unnamed since
    /// the last time (every set, the first time).
    func collectPolicySets() throws {
        try countPolicySetUsers()
        let check = policySetsToCheck
        policySetsToCheck = []
        for r in check where policySetUsers?[r] == nil { try dataplane.deletePolicySet(r.vni, id: r.id) }
    }

    /// The entries naming each rule set, counted from the table once.
    func countPolicySetUsers() throws {
        guard policySetUsers == nil else { return }
        var users: [PolicySetRef: Int] = [:]
        for e in try dataplane.policyEndpointEntries() {
            for r in PolicySetRef.named(by: e) { users[r, default: 0] += 1 }
        }
        policySetUsers = users
        for (vni, id) in try dataplane.policySetIDs() { policySetsToCheck.insert(PolicySetRef(vni: vni, id: id)) }
    }

    /// Writes a rule set; it goes at the next collection if no entry names it.
    func writePolicySet(_ s: PolicyUpdateSpec.Set) throws {
        try countPolicySetUsers()
        try dataplane.setPolicySet(s.vni, id: s.id, s.rules)
        policySetsToCheck.insert(PolicySetRef(vni: s.vni, id: s.id))
    }

    /// Puts an endpoint's entry (nil: removes it) in place of `old`, as the
    /// table holds it, and counts the sets each names.
    func writePolicyEntry(_ vni: VNI, _ ip: IPv4Address, _ new: PolicyEndpointEntry?, replacing old: PolicyEndpointEntry?) throws {
        try countPolicySetUsers()
        if let new { try dataplane.setPolicyEndpoint(new) } else { try dataplane.deletePolicyEndpoint(vni, ip) }
        for r in old.map(PolicySetRef.named) ?? [] {
            let n = (policySetUsers?[r] ?? 1) - 1
            policySetUsers?[r] = n > 0 ? n : nil
            if n <= 0 { policySetsToCheck.insert(r) }
        }
        for r in new.map(PolicySetRef.named) ?? [] { policySetUsers?[r, default: 0] += 1 }
    }

    public func policyState(vni: VNI?) throws -> PolicyState {
        let endpoints = try dataplane.policyEndpointEntries().filter { vni == nil || $0.vni == vni }
        let sets = try dataplane.policySetIDs().filter { vni == nil || $0.vni == vni }.compactMap { k -> PolicyUpdateSpec.Set? in
            guard let rules = try dataplane.policySet(k.vni, id: k.id) else { return nil }
            return PolicyUpdateSpec.Set(vni: k.vni, id: k.id, rules: rules)
        }
        let blocks = try dataplane.policyBlockTables().filter { vni == nil || $0.key == vni }.map { (vni: $0.key, prefixes: $0.value) }
        return PolicyState(endpoints: endpoints, sets: sets, blocks: blocks)
    }

    public func conntrack(vni: VNI?) throws -> [ConntrackEntry] {
        try dataplane.conntrackEntries().filter { vni == nil || $0.vni == vni }
    }

    /// Tells a host that an endpoint's flows must be judged again: a
    /// Geneve packet with the revocation option to its transit program
    /// (sent twice, 100 ms apart, against a loss), or the table itself when
    /// the endpoint lives here.
    nonisolated func revokeFlows(_ vni: VNI, _ ip: IPv4Address, at host: IPv4Address) {
        if host == droplet.ip {
            _ = try? dataplane.revokeLocal(vni, ip)
            return
        }
        let packet = Revocation.packet(vni: vni, ip: ip)
        let from = droplet.ip
        Task.detached {
            for attempt in 0..<2 {
                if attempt > 0 { try? await Task.sleep(for: .milliseconds(100)) }
                Revocation.send(packet, from: from, to: host)
            }
        }
    }

    /// Drops the conntrack entries past their timeout or of endpoints no
    /// longer here (revoked ones stay until their timeout: they say who
    /// opened the flow). Returns how many went.
    public func sweepConntrack() throws -> Int {
        try dataplane.sweepConntrack()
    }
}

/// The revocation packet: Geneve (with the VNI) carrying the MZ_OPT_REVOKE
/// option and an empty Ethernet frame of MZ_ETH_P_REVOKE, sent over UDP
/// from this droplet's address to the host's port 6081.
enum Revocation {
    static func packet(vni: VNI, ip: IPv4Address) -> [UInt8] {
        let v = vni.value
        let geneve: [UInt8] = [3, 0, 0x65, 0x58, UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff), 0]
        let option: [UInt8] = [0xff, 0x4d, Dataplane.revokeOptionType, 2] + ip.bytes + [0, 0, 0, 0]
        let inner: [UInt8] = Array(repeating: 0, count: 12) + [UInt8(Dataplane.revokeEtherType >> 8), UInt8(Dataplane.revokeEtherType & 0xff)]
        return geneve + option + inner
    }

    static func send(_ packet: [UInt8], from: IPv4Address, to: IPv4Address) {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_addr.s_addr = from.networkOrder
        var remote = sockaddr_in()
        remote.sin_family = sa_family_t(AF_INET)
        remote.sin_port = UInt16(Dataplane.genevePort).bigEndian
        remote.sin_addr.s_addr = to.networkOrder
        _ = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        _ = packet.withUnsafeBytes { bytes in
            withUnsafePointer(to: &remote) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
    }
}
