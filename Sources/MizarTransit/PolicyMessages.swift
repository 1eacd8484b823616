import MizarCore
import MizarDataplane
import MizarRPC
import MizarTransitClient

/// Network policy messages to the data plane's values and back; every
/// parse error names its field.
enum PolicyMessages {
    static func bits(_ m: Mizar_Transit_V1_PolicyBits, _ field: String) throws(ValidationError) -> PolicyBitWords {
        guard m.words.count <= PolicyBitWords.count else {
            throw ValidationError(field: "\(field).words", reason: "\(m.words.count) words; at most \(PolicyBitWords.count)")
        }
        return PolicyBitWords(words: m.words)
    }

    static func port(_ n: UInt32, _ field: String) throws(ValidationError) -> UInt16 {
        guard n <= 65535 else { throw ValidationError(field: field, reason: "\(n) is out of range 0...65535") }
        return UInt16(n)
    }

    static func proto(_ n: UInt32, _ field: String) throws(ValidationError) -> UInt8 {
        guard n <= 255 else { throw ValidationError(field: field, reason: "\(n) is not an IP protocol number") }
        return UInt8(n)
    }

    static func sets(_ list: [Mizar_Transit_V1_PolicySet], _ field: String) throws(ValidationError) -> [PolicyUpdateSpec.Set] {
        var result: [PolicyUpdateSpec.Set] = []
        for (i, s) in list.enumerated() {
            let f = "\(field)[\(i)]"
            guard s.id != 0 else { throw ValidationError(field: "\(f).id", reason: "0 stands for \"not isolated\"; a rule set needs another id") }
            guard s.rules.count <= Dataplane.maxPolicyRules else {
                throw ValidationError(field: "\(f).rules", reason: "\(s.rules.count) rules; at most \(Dataplane.maxPolicyRules)")
            }
            var rules: [PolicyRuleEntry] = []
            for (j, r) in s.rules.enumerated() {
                let rf = "\(f).rules[\(j)]"
                let first = try port(r.firstPort, "\(rf).first_port"), last = try port(r.lastPort, "\(rf).last_port")
                guard first <= last else { throw ValidationError(field: rf, reason: "port range \(first)-\(last) is empty") }
                rules.append(PolicyRuleEntry(proto: try proto(r.protocol, "\(rf).protocol"), first: first, last: last, anyPeer: r.anyPeer,
                                             bits: try bits(r.bits, "\(rf).bits")))
            }
            result.append(PolicyUpdateSpec.Set(vni: try VNI(s.vni), id: s.id, rules: rules))
        }
        return result
    }

    static func endpoint(_ m: Mizar_Transit_V1_PolicyEndpoint, _ field: String) throws(ValidationError) -> (entry: PolicyEndpointEntry, revoke: Bool) {
        guard m.namedPorts.count <= Dataplane.maxNamedPorts else {
            throw ValidationError(field: "\(field).named_ports", reason: "\(m.namedPorts.count) named ports; at most \(Dataplane.maxNamedPorts)")
        }
        var named: [PolicyNamedPort] = []
        for (i, n) in m.namedPorts.enumerated() {
            let f = "\(field).named_ports[\(i)]"
            guard n.bit < UInt32(PolicyBitWords.count * 32) else {
                throw ValidationError(field: "\(f).bit", reason: "\(n.bit) is out of range 0...\(PolicyBitWords.count * 32 - 1)")
            }
            named.append(PolicyNamedPort(bit: UInt16(n.bit), proto: try proto(n.protocol, "\(f).protocol"), port: try port(n.port, "\(f).port")))
        }
        let entry = PolicyEndpointEntry(vni: try VNI(m.vni), ip: try Messages.unicast(m.ip, "\(field).ip"),
                                        members: try bits(m.members, "\(field).members"), ingress: m.ingressSet, egress: m.egressSet, named: named)
        return (entry, m.revoke)
    }

    static func blocks(_ m: Mizar_Transit_V1_PolicyBlocks, _ field: String) throws(ValidationError) -> (vni: VNI, prefixes: [CIDR: PolicyBitWords]) {
        var prefixes: [CIDR: PolicyBitWords] = [:]
        for (i, b) in m.blocks.enumerated() {
            prefixes[try CIDR(parsing: b.cidr, field: "\(field).blocks[\(i)].cidr")] = try bits(b.bits, "\(field).blocks[\(i)].bits")
        }
        return (try VNI(m.vni), prefixes)
    }

    static func message(_ b: PolicyBitWords) -> Mizar_Transit_V1_PolicyBits {
        var m = Mizar_Transit_V1_PolicyBits()
        m.words = b.words
        return m
    }

    static func message(_ e: PolicyEndpointEntry, revoke: Bool) -> Mizar_Transit_V1_PolicyEndpoint {
        var m = Mizar_Transit_V1_PolicyEndpoint()
        m.vni = e.vni.value
        m.ip = "\(e.ip)"
        m.members = message(e.members)
        m.ingressSet = e.ingress
        m.egressSet = e.egress
        m.namedPorts = e.named.map { n in
            var nm = Mizar_Transit_V1_PolicyNamedPort()
            nm.bit = UInt32(n.bit)
            nm.protocol = UInt32(n.proto)
            nm.port = UInt32(n.port)
            return nm
        }
        m.revoke = revoke
        return m
    }

    static func message(_ s: PolicyUpdateSpec.Set) -> Mizar_Transit_V1_PolicySet {
        var m = Mizar_Transit_V1_PolicySet()
        m.vni = s.vni.value
        m.id = s.id
        m.rules = s.rules.map { r in
            var rm = Mizar_Transit_V1_PolicyRule()
            rm.protocol = UInt32(r.proto)
            rm.firstPort = UInt32(r.first)
            rm.lastPort = UInt32(r.last)
            rm.anyPeer = r.anyPeer
            rm.bits = message(r.bits)
            return rm
        }
        return m
    }

    static func message(vni: VNI, _ prefixes: [CIDR: PolicyBitWords]) -> Mizar_Transit_V1_PolicyBlocks {
        EndpointPolicyMessage.blocks(vni: vni, prefixes.mapValues(message))
    }
}
