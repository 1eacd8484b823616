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
    /// One PutPolicy to each of `bouncers` (each its own update),
    /// concurrently: entries and sets changed, entries removed, prefix
    /// tables. What each reported (entries changed, revocations sent).
    @discardableResult
    public static func putPolicy(_ updates: [(TransitPeer, Mizar_Transit_V1_PolicyUpdate)],
                                 via connector: some TransitConnector = DirectConnector()) async throws -> [(changed: Int, revoked: Int)] {
        try await withThrowingTaskGroup(of: (Int, Int).self) { group in
            for (b, u) in updates {
                group.addTask {
                    let r = try await connector.withClient(b.target) { try await $0.putPolicy(u, options: callOptions) }
                    return (Int(r.changed), Int(r.revoked))
                }
            }
            return try await group.reduce(into: []) { $0.append((changed: $1.0, revoked: $1.1)) }
        }
    }
}
