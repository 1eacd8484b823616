import MizarAPI
import MizarCore

// How a VPC's NetworkPolicies become what its bouncers judge with.
//
// Every distinct peer of the VPC's policies gets a bit (at most
// `PolicyBits.count`): a peer selector (namespaces x pods), a peer selector
// on a named port (for egress rules, whose port names resolve on the
// destination), or an ipBlock. An endpoint's entry on its subnet's bouncers
// holds the bits of the peer selectors it is a member of, the ports its
// named-port bits stand for, and its compiled rules for each direction in
// which a policy isolates it. A rule set is a list of port ranges, each
// with the bits of the peers admitted on it. ipBlock bits come from the
// VPC's prefix table, looked up with the peer's address.
//
// Nothing here depends on hosts: an endpoint's entry depends on its own
// labels, namespace and ports and on the policies; a new endpoint changes
// nobody else's entry.

/// A set of bits: the data plane's `MZ_POL_WORDS` 64-bit words.
public struct PolicyBits: Hashable, Sendable, CustomStringConvertible {
    public static let count = 512
    public static let words = count / 64
    public var words: [UInt64]

    public init() { words = Array(repeating: 0, count: Self.words) }

    public init(_ bits: some Sequence<Int>) {
        self.init()
        for b in bits { insert(b) }
    }

    public mutating func insert(_ bit: Int) { words[bit / 64] |= 1 << UInt64(bit % 64) }
    public func contains(_ bit: Int) -> Bool { words[bit / 64] & (1 << UInt64(bit % 64)) != 0 }
    public var isEmpty: Bool { words.allSatisfy { $0 == 0 } }
    public func intersects(_ other: PolicyBits) -> Bool { zip(words, other.words).contains { $0 & $1 != 0 } }
    public mutating func formUnion(_ other: PolicyBits) { for i in words.indices { words[i] |= other.words[i] } }
    public var members: [Int] { (0..<Self.count).filter(contains) }
    public var description: String { "{" + members.map(String.init).joined(separator: ",") + "}" }
}

/// Which namespaces a peer selector's endpoints may be in.
public enum NamespaceMatch: Hashable, Sendable, Codable {
    /// The policy's own (a peer with no namespaceSelector).
    case named(String)
    case selector(LabelSelector)
}

/// What one bit stands for.
public enum PeerKey: Hashable, Sendable, Codable {
    /// Endpoints in matching namespaces whose labels match `pods`.
    case pods(NamespaceMatch, LabelSelector)
    /// The same endpoints, when they serve a port of this name and protocol.
    case namedPort(NamespaceMatch, LabelSelector, port: String, protocol: PortProtocol)
    /// Endpoints whose own address is in `cidr` and in none of `except`,
    /// when they serve a port of this name and protocol (an egress rule's
    /// ipBlock peer with a named port).
    case namedBlock(CIDR, except: [CIDR], port: String, protocol: PortProtocol)
    /// Addresses in `cidr` and in none of `except` (the prefixes masked).
    case block(CIDR, except: [CIDR])
}

extension LabelSelector {
    /// Equal selectors as equal values: expressions and their values sorted.
    public var canonical: LabelSelector {
        let l = (matchLabels ?? [:]).isEmpty ? nil : matchLabels
        let e = (matchExpressions ?? []).map { LabelSelectorRequirement(key: $0.key, operator: $0.operator, values: $0.values.map { Array(Set($0)).sorted() }) }
            .sorted { "\($0.key)\u{0}\($0.operator.rawValue)\u{0}\(($0.values ?? []).joined(separator: ","))" < "\($1.key)\u{0}\($1.operator.rawValue)\u{0}\(($1.values ?? []).joined(separator: ","))" }
        return LabelSelector(matchLabels: l, matchExpressions: e.isEmpty ? nil : Array(e))
    }
}

/// An endpoint as policies see it.
public struct PolicyEndpoint: Sendable {
    public var name: String
    public var ip: IPv4Address
    public var namespace: String
    public var labels: [String: String]
    /// Its ports, for named ports.
    public var ports: [EndpointPort]

    public init(name: String, ip: IPv4Address, namespace: String, labels: [String: String], ports: [EndpointPort]) {
        self.name = name
        self.ip = ip
        self.namespace = namespace
        self.labels = labels
        self.ports = ports
    }

    public init?(_ e: Endpoint) {
        guard !e.spec.isScaled, let ip = e.status?.ip ?? e.spec.ip else { return nil }
        self.init(name: e.name, ip: ip, namespace: e.metadata.effectiveNamespace, labels: e.metadata.labels ?? [:], ports: e.spec.ports ?? [])
    }

    /// The number of the port named `name` with this protocol.
    public func port(named name: String, _ proto: PortProtocol) -> UInt16? {
        ports.first { $0.name == name && ($0.protocol ?? .tcp) == proto }.map { UInt16($0.port) }
    }
}

/// The namespaces' labels (a namespace with no Namespace object has only
/// its name label).
public struct NamespaceLabels: Sendable {
    var objects: [String: [String: String]]

    public init(_ namespaces: [Namespace]) {
        objects = Dictionary(namespaces.map { ($0.name, $0.metadata.labels ?? [:]) }, uniquingKeysWith: { a, _ in a })
    }

    public func labels(_ name: String) -> [String: String] {
        (objects[name] ?? [:]).merging([namespaceNameLabel: name]) { $1 }
    }
}

extension PeerKey {
    /// Whether endpoint `e` is one of the peer's endpoints (never for a block).
    public func selects(_ e: PolicyEndpoint, _ namespaces: NamespaceLabels) -> Bool {
        func inNamespace(_ m: NamespaceMatch) -> Bool {
            switch m {
            case .named(let n): e.namespace == n
            case .selector(let s): s.matches(namespaces.labels(e.namespace))
            }
        }
        switch self {
        case .pods(let ns, let pods): return inNamespace(ns) && pods.matches(e.labels)
        case .namedPort(let ns, let pods, let port, let proto): return inNamespace(ns) && pods.matches(e.labels) && e.port(named: port, proto) != nil
        case .namedBlock(let c, let except, let port, let proto):
            return c.contains(e.ip) && !except.contains { $0.contains(e.ip) } && e.port(named: port, proto) != nil
        case .block: return false
        }
    }

    /// The key of this peer on a named port (an egress rule's: the name
    /// resolves on the destination).
    func named(_ port: String, _ proto: PortProtocol) -> PeerKey? {
        switch self {
        case .pods(let ns, let pods): .namedPort(ns, pods, port: port, protocol: proto)
        case .block(let c, let except): .namedBlock(c, except: except, port: port, protocol: proto)
        case .namedPort, .namedBlock: nil
        }
    }

    /// The port name and protocol of a named-port key.
    var portName: (String, PortProtocol)? {
        switch self {
        case .namedPort(_, _, let port, let proto), .namedBlock(_, _, let port, let proto): (port, proto)
        case .pods, .block: nil
        }
    }
}

extension NetworkPolicy {
    /// Whether the policy selects endpoint `e`: in its namespace, labels matching.
    public func selects(_ e: PolicyEndpoint) -> Bool {
        e.namespace == metadata.effectiveNamespace && spec.podSelector.matches(e.labels)
    }
}

/// One port range of a rule set and who is admitted on it.
public struct RuleEntry: Hashable, Sendable {
    /// nil: every protocol (and every port), ICMP included.
    public var proto: PortProtocol?
    public var first: UInt16
    public var last: UInt16
    /// Every peer: a rule with no peers.
    public var anyPeer: Bool
    public var bits: PolicyBits

    public init(proto: PortProtocol?, first: UInt16, last: UInt16, anyPeer: Bool, bits: PolicyBits) {
        self.proto = proto
        self.first = first
        self.last = last
        self.anyPeer = anyPeer
        self.bits = bits
    }

    /// Whether a packet of this protocol (IP protocol number) and port is on it.
    public func covers(proto ipProto: UInt8, port: UInt16) -> Bool {
        guard let proto else { return true }
        return proto.rawValue == ipProto && port >= first && port <= last
    }
}

/// What one direction of an endpoint admits (when a policy isolates it).
public struct RuleSet: Hashable, Sendable {
    public static let maxEntries = 32
    public var entries: [RuleEntry]

    public init(entries: [RuleEntry]) { self.entries = entries }

    /// A 64-bit name for the content, the same from any replica: bouncers
    /// keep one copy per distinct set.
    public var id: UInt64 {
        var h = FNV1a()
        for e in entries {
            h.add(UInt64(e.proto?.rawValue ?? 0))
            h.add(UInt64(e.first) << 16 | UInt64(e.last))
            h.add(e.anyPeer ? 1 : 0)
            for w in e.bits.words { h.add(w) }
        }
        // 0 stands for "not isolated" in an endpoint's entry.
        return h.value == 0 ? 1 : h.value
    }
}

/// A named-port bit an endpoint holds, and the port it stands for there.
public struct NamedPort: Hashable, Sendable {
    public var bit: Int
    public var proto: PortProtocol
    public var port: UInt16

    public init(bit: Int, proto: PortProtocol, port: UInt16) {
        self.bit = bit
        self.proto = proto
        self.port = port
    }
}

/// An endpoint's entry on its bouncers.
public struct EndpointPolicy: Hashable, Sendable {
    public static let maxNamedPorts = 16
    /// The peer-selector bits it is a member of.
    public var members: PolicyBits
    public var namedPorts: [NamedPort]
    /// nil: not isolated in that direction.
    public var ingress: RuleSet?
    public var egress: RuleSet?
    /// The policies that select it, as NAMESPACE/NAME.
    public var policies: [String]

    public init(members: PolicyBits = PolicyBits(), namedPorts: [NamedPort] = [], ingress: RuleSet? = nil, egress: RuleSet? = nil, policies: [String] = []) {
        self.members = members
        self.namedPorts = namedPorts
        self.ingress = ingress
        self.egress = egress
        self.policies = policies
    }

    /// Nothing to judge: a member of nothing, isolated in no direction.
    public var isOpen: Bool { members.isEmpty && namedPorts.isEmpty && ingress == nil && egress == nil }
}

/// Why a VPC's policies cannot be compiled as they stand.
public struct PolicyCompileError: Error, Sendable, Equatable, CustomStringConvertible {
    /// NAMESPACE/NAME of the policy at fault, when one is.
    public var policy: String?
    public var reason: String
    public init(policy: String?, reason: String) {
        self.policy = policy
        self.reason = reason
    }
    public var description: String { policy.map { "NetworkPolicy \($0): \(reason)" } ?? reason }
}

/// The bit of every peer in a VPC, kept from one compile to the next so
/// that a change renumbers nothing already in use. A bit freed by one
/// allocation is not handed out again by the same one: entries that still
/// hold it are rewritten first.
public struct BitTable: Sendable, Equatable {
    public private(set) var bits: [PeerKey: Int]

    public init(bits: [PeerKey: Int] = [:]) { self.bits = bits }

    /// Exactly `keys` get bits: new ones the lowest free, gone ones freed.
    public mutating func assign(_ keys: Set<PeerKey>) throws(PolicyCompileError) {
        let previous = Set(bits.values)
        bits = bits.filter { keys.contains($0.key) }
        var used = Set(bits.values).union(previous)
        var next = 0
        for key in keys.sorted(by: { "\($0)" < "\($1)" }) where bits[key] == nil {
            while used.contains(next) { next += 1 }
            if next >= PolicyBits.count {
                // Nothing free but what this very change released.
                used = Set(bits.values)
                next = 0
                while used.contains(next) { next += 1 }
                guard next < PolicyBits.count else {
                    throw PolicyCompileError(policy: nil, reason: "the VPC's policies name \(keys.count) distinct peers; at most \(PolicyBits.count)")
                }
            }
            bits[key] = next
            used.insert(next)
        }
    }

    public subscript(key: PeerKey) -> Int? { bits[key] }
}

/// A VPC's compiled policies: what its bouncers hold.
public struct CompiledPolicies: Sendable {
    public var table: BitTable
    /// Prefix table for ipBlock bits: each prefix and the bits of the
    /// blocks holding every address of it that no longer prefix takes.
    public var prefixes: [CIDR: PolicyBits]
    public var policies: [NetworkPolicy]
    public var namespaces: NamespaceLabels

    /// Compiles `policies` (those of every namespace; each applies to the
    /// VPC's endpoints of its own), keeping the bits of `previous`.
    public init(policies: [NetworkPolicy], namespaces: [Namespace], previous: BitTable = BitTable()) throws(PolicyCompileError) {
        self.policies = policies.sorted { $0.storeName < $1.storeName }
        self.namespaces = NamespaceLabels(namespaces)
        var keys = Set<PeerKey>()
        var blocks: [(CIDR, [CIDR])] = []
        for p in self.policies {
            for d in PolicyType.allCases {
                for rule in p.spec.rules(d) {
                    for peer in rule.peers ?? [] {
                        let k = try Self.key(peer, p)
                        if case .block(let c, let e) = k { blocks.append((c, e)) }
                        keys.insert(k)
                        if d == .egress {
                            for port in rule.ports ?? [] {
                                guard case .name(let n) = port.port else { continue }
                                if let named = k.named(n, port.protocol ?? .tcp) { keys.insert(named) }
                            }
                        }
                    }
                    if d == .egress, (rule.peers ?? []).isEmpty {
                        for port in rule.ports ?? [] {
                            if case .name(let n) = port.port {
                                keys.insert(.namedPort(.selector(.all), .all, port: n, protocol: port.protocol ?? .tcp))
                            }
                        }
                    }
                }
            }
        }
        var table = previous
        try table.assign(keys)
        self.table = table
        var prefixes: [CIDR: PolicyBits] = [:]
        let all = Set(blocks.flatMap { [$0.0] + $0.1 })
        for p in all {
            var bits = PolicyBits()
            for (c, e) in blocks where c.contains(p) && !e.contains(where: { $0.contains(p) }) {
                bits.insert(table[.block(c, except: e)]!)
            }
            prefixes[p] = bits
        }
        self.prefixes = prefixes
    }

    static func key(_ peer: NetworkPolicyPeer, _ p: NetworkPolicy) throws(PolicyCompileError) -> PeerKey {
        if let b = peer.ipBlock {
            do {
                let (c, e) = try b.prefixes(field: "ipBlock")
                return .block(c, except: Array(Set(e)).sorted { ($0.address.value, $0.prefixLength) < ($1.address.value, $1.prefixLength) })
            } catch {
                throw PolicyCompileError(policy: p.storeName, reason: "\(error)")
            }
        }
        let ns: NamespaceMatch = peer.namespaceSelector.map { .selector($0.canonical) } ?? .named(p.metadata.effectiveNamespace)
        return .pods(ns, (peer.podSelector ?? .all).canonical)
    }

    /// The bits of the ipBlocks holding `ip`.
    public func blockBits(_ ip: IPv4Address) -> PolicyBits {
        prefixes.filter { $0.key.contains(ip) }.max { $0.key.prefixLength < $1.key.prefixLength }?.value ?? PolicyBits()
    }

    /// Endpoint `e`'s entry.
    public func entry(for e: PolicyEndpoint) throws(PolicyCompileError) -> EndpointPolicy {
        var out = EndpointPolicy()
        for (k, bit) in table.bits {
            switch k {
            case .pods:
                if k.selects(e, namespaces) { out.members.insert(bit) }
            case .namedPort, .namedBlock:
                if k.selects(e, namespaces), let (port, proto) = k.portName, let number = e.port(named: port, proto) {
                    out.namedPorts.append(NamedPort(bit: bit, proto: proto, port: number))
                }
            case .block:
                break
            }
        }
        out.namedPorts.sort { $0.bit < $1.bit }
        guard out.namedPorts.count <= EndpointPolicy.maxNamedPorts else {
            throw PolicyCompileError(policy: nil, reason: "endpoint \(e.name) serves \(out.namedPorts.count) ports named in egress rules; at most \(EndpointPolicy.maxNamedPorts)")
        }
        let selecting = policies.filter { $0.selects(e) }
        out.policies = selecting.map(\.storeName)
        for d in PolicyType.allCases {
            let isolating = selecting.filter { $0.spec.effectiveTypes.contains(d) }
            guard !isolating.isEmpty else { continue }
            var entries: [RuleEntry] = []
            for p in isolating {
                for rule in p.spec.rules(d) {
                    try add(rule, of: p, direction: d, subject: e, to: &entries)
                }
                // The policy whose rules pass the limit is the one at fault.
                guard entries.count <= RuleSet.maxEntries else {
                    throw PolicyCompileError(policy: p.storeName,
                                             reason: "endpoint \(e.name)'s \(d.rawValue.lowercased()) rules need \(entries.count) port ranges; at most \(RuleSet.maxEntries)")
                }
            }
            let set = RuleSet(entries: entries)
            if d == .ingress { out.ingress = set } else { out.egress = set }
        }
        return out
    }

    /// A rule's entries, merged into those with the same port range.
    private func add(_ rule: PolicyRule, of p: NetworkPolicy, direction d: PolicyType, subject e: PolicyEndpoint,
                     to entries: inout [RuleEntry]) throws(PolicyCompileError) {
        let peers = rule.peers ?? []
        var keys: [PeerKey] = []
        for peer in peers { keys.append(try Self.key(peer, p)) }
        func merge(_ proto: PortProtocol?, _ first: UInt16, _ last: UInt16, any: Bool, bits: PolicyBits) {
            if let i = entries.firstIndex(where: { $0.proto == proto && $0.first == first && $0.last == last }) {
                entries[i].anyPeer = entries[i].anyPeer || any
                entries[i].bits.formUnion(bits)
            } else {
                entries.append(RuleEntry(proto: proto, first: first, last: last, anyPeer: any, bits: bits))
            }
        }
        let plain = PolicyBits(keys.compactMap { table[$0] })
        guard let ports = rule.ports, !ports.isEmpty else {
            merge(nil, 0, 65535, any: peers.isEmpty, bits: plain)
            return
        }
        for port in ports {
            let proto = port.protocol ?? .tcp
            switch port.port {
            case nil:
                merge(proto, 0, 65535, any: peers.isEmpty, bits: plain)
            case .number(let n):
                merge(proto, UInt16(n), UInt16(port.endPort ?? n), any: peers.isEmpty, bits: plain)
            case .name(let name):
                if d == .ingress {
                    // Named on the destination: this very endpoint.
                    guard let n = e.port(named: name, proto) else { continue }
                    merge(proto, n, n, any: peers.isEmpty, bits: plain)
                } else {
                    // Named on the destination, known on its bouncers: the
                    // bits of the peers on that port name, on every port.
                    var named = PolicyBits()
                    let peerKeys = peers.isEmpty ? [PeerKey.pods(.selector(.all), .all)] : keys
                    for k in peerKeys {
                        if let key = k.named(name, proto), let bit = table[key] { named.insert(bit) }
                    }
                    merge(proto, 0, 65535, any: false, bits: named)
                }
            }
        }
    }
}

/// FNV-1a over 64-bit words.
struct FNV1a {
    var value: UInt64 = 0xcbf2_9ce4_8422_2325
    mutating func add(_ w: UInt64) {
        for i in 0..<8 {
            value ^= (w >> UInt64(i * 8)) & 0xff
            value = value &* 0x100_0000_01b3
        }
    }
}

/// Why a packet is not admitted.
public enum PolicyDenial: String, Sendable {
    case egress = "policy_egress_denied"
    case ingress = "policy_ingress_denied"
}

extension CompiledPolicies {
    /// The verdict the bouncers reach for a new flow from `src` to `dst`
    /// (IP protocol number, destination port; 0 for ICMP), as the data
    /// plane computes it from the two entries and the prefix table: nil
    /// when admitted. For tools and tests; the data plane has its own.
    public static func judge(src: EndpointPolicy?, srcIP: IPv4Address, dst: EndpointPolicy?, dstIP: IPv4Address,
                             proto: UInt8, port: UInt16, blocks: (IPv4Address) -> PolicyBits) -> PolicyDenial? {
        if let rules = src?.egress {
            var eg = PolicyBits()
            var any = false
            for e in rules.entries where e.covers(proto: proto, port: port) {
                any = any || e.anyPeer
                eg.formUnion(e.bits)
            }
            var peer = dst?.members ?? PolicyBits()
            peer.formUnion(blocks(dstIP))
            let named = dst?.namedPorts.contains { eg.contains($0.bit) && $0.proto.rawValue == proto && $0.port == port } ?? false
            if !(any || eg.intersects(peer) || named) { return .egress }
        }
        if let rules = dst?.ingress {
            var peer = src?.members ?? PolicyBits()
            peer.formUnion(blocks(srcIP))
            if !rules.entries.contains(where: { $0.covers(proto: proto, port: port) && ($0.anyPeer || $0.bits.intersects(peer)) }) { return .ingress }
        }
        return nil
    }
}
