import MizarCore
import MizarPolicy
import MizarRPC

/// An endpoint's compiled policy as its bouncers are given it: the entry
/// and the rule sets it names.
public struct EndpointPolicyMessage: Sendable, Equatable {
    public var entry: Mizar_Transit_V1_PolicyEndpoint
    public var sets: [Mizar_Transit_V1_PolicySet]

    /// nil for an endpoint nothing isolates and no peer names: bouncers
    /// hold no entry for it.
    public init?(vni: VNI, ip: IPv4Address, _ p: EndpointPolicy, revoke: Bool = false) {
        guard !p.isOpen else { return nil }
        var e = Mizar_Transit_V1_PolicyEndpoint()
        e.vni = vni.value
        e.ip = "\(ip)"
        e.members = Self.bits(p.members)
        e.ingressSet = p.ingress?.id ?? 0
        e.egressSet = p.egress?.id ?? 0
        e.namedPorts = p.namedPorts.map { n in
            var m = Mizar_Transit_V1_PolicyNamedPort()
            m.bit = UInt32(n.bit)
            m.protocol = UInt32(n.proto.rawValue)
            m.port = UInt32(n.port)
            return m
        }
        e.revoke = revoke
        entry = e
        sets = [p.ingress, p.egress].compactMap { $0 }.map { Self.set(vni: vni, $0) }
    }

    /// 512 bits as the API's 16 words (word i: bits 32i...32i+31).
    public static func bits(_ b: PolicyBits) -> Mizar_Transit_V1_PolicyBits {
        var m = Mizar_Transit_V1_PolicyBits()
        m.words = b.words.flatMap { [UInt32(truncatingIfNeeded: $0), UInt32(truncatingIfNeeded: $0 >> 32)] }
        return m
    }

    public static func set(vni: VNI, _ s: RuleSet) -> Mizar_Transit_V1_PolicySet {
        var m = Mizar_Transit_V1_PolicySet()
        m.vni = vni.value
        m.id = s.id
        m.rules = s.entries.map { r in
            var rule = Mizar_Transit_V1_PolicyRule()
            rule.protocol = UInt32(r.proto?.rawValue ?? 0)
            rule.firstPort = UInt32(r.first)
            rule.lastPort = UInt32(r.last)
            rule.anyPeer = r.anyPeer
            rule.bits = bits(r.bits)
            return rule
        }
        return m
    }

    /// A VPC's ipBlock prefix table.
    public static func blocks(vni: VNI, _ prefixes: [CIDR: PolicyBits]) -> Mizar_Transit_V1_PolicyBlocks {
        blocks(vni: vni, prefixes.mapValues(bits))
    }

    /// A prefix table in the API's form, prefixes in address order.
    public static func blocks(vni: VNI, _ prefixes: [CIDR: Mizar_Transit_V1_PolicyBits]) -> Mizar_Transit_V1_PolicyBlocks {
        var m = Mizar_Transit_V1_PolicyBlocks()
        m.vni = vni.value
        m.blocks = prefixes.sorted { ($0.key.address.value, $0.key.prefixLength) < ($1.key.address.value, $1.key.prefixLength) }.map { c, b in
            var block = Mizar_Transit_V1_PolicyBlock()
            block.cidr = "\(c)"
            block.bits = b
            return block
        }
        return m
    }
}

extension Provisioning {
    /// Each of `bouncers` its update (a PutPolicy call, or one per part of
    /// a large one), concurrently: entries and sets changed, entries
    /// removed, prefix tables. What each reported (entries changed,
    /// revocations sent), its parts summed.
    @discardableResult
    public static func putPolicy(_ updates: [(TransitPeer, Mizar_Transit_V1_PolicyUpdate)],
                                 via connector: some TransitConnector = DirectConnector()) async throws -> [(changed: Int, revoked: Int)] {
        try await withThrowingTaskGroup(of: (Int, Int).self) { group in
            for (b, u) in updates {
                group.addTask {
                    var changed = 0, revoked = 0
                    for part in policyParts(u) {
                        let r = try await connector.withClient(b.target) { try await $0.putPolicy(part, options: callOptions) }
                        changed += Int(r.changed)
                        revoked += Int(r.revoked)
                    }
                    return (changed, revoked)
                }
            }
            return try await group.reduce(into: []) { $0.append((changed: $1.0, revoked: $1.1)) }
        }
    }

    /// Policy entries (put or removed) per PutPolicy call. A subnet's whole
    /// push — after an operator restart, every member's entry or removal —
    /// is one entry per endpoint: at 1,000,000 endpoints one message would
    /// pass gRPC's 4 MiB limit and the call's 5 s.
    public static let policyEntriesPerCall = 20_000

    /// `u` in parts of at most `policyEntriesPerCall` entries: the entries
    /// first, each part with the rule sets its entries name (a bouncer drops
    /// the sets no entry names after every call), then the removals; the
    /// prefix tables with the first part. Small updates go whole.
    public static func policyParts(_ u: Mizar_Transit_V1_PolicyUpdate) -> [Mizar_Transit_V1_PolicyUpdate] {
        guard u.endpoints.count + u.removed.count > policyEntriesPerCall else { return [u] }
        struct SetKey: Hashable { var vni: UInt32, id: UInt64 }
        let sets = Dictionary(u.sets.map { (SetKey(vni: $0.vni, id: $0.id), $0) }, uniquingKeysWith: { a, _ in a })
        var parts: [Mizar_Transit_V1_PolicyUpdate] = []
        for entries in chunks(u.endpoints, of: policyEntriesPerCall) {
            var part = Mizar_Transit_V1_PolicyUpdate()
            part.endpoints = Array(entries)
            let named = Set(part.endpoints.flatMap { [SetKey(vni: $0.vni, id: $0.ingressSet), SetKey(vni: $0.vni, id: $0.egressSet)] })
            part.sets = named.compactMap { sets[$0] }.sorted { ($0.vni, $0.id) < ($1.vni, $1.id) }
            parts.append(part)
        }
        for keys in chunks(u.removed, of: policyEntriesPerCall) {
            var part = Mizar_Transit_V1_PolicyUpdate()
            part.removed = Array(keys)
            parts.append(part)
        }
        parts[0].blocks = u.blocks
        return parts
    }
}
