import MizarCore

// Kubernetes networking/v1 NetworkPolicy, field for field, as a Mizar kind,
// and the Namespace kind whose labels namespace selectors read. Only the
// shapes and the checks of one object live here; which endpoints a policy
// selects and what it admits is MizarPolicy's.

/// The label every namespace carries with its own name, as Kubernetes sets it.
public let namespaceNameLabel = "kubernetes.io/metadata.name"

/// The namespace of an endpoint or a policy that names none.
public let defaultNamespace = "default"

// MARK: - Label selectors

/// A Kubernetes label selector: every `matchLabels` pair and every
/// expression must hold. An empty selector selects everything.
public struct LabelSelector: Codable, Sendable, Hashable {
    public var matchLabels: [String: String]?
    public var matchExpressions: [LabelSelectorRequirement]?

    public init(matchLabels: [String: String]? = nil, matchExpressions: [LabelSelectorRequirement]? = nil) {
        self.matchLabels = matchLabels
        self.matchExpressions = matchExpressions
    }

    /// Selects everything.
    public static let all = LabelSelector()

    public var isEmpty: Bool { (matchLabels ?? [:]).isEmpty && (matchExpressions ?? []).isEmpty }

    public func matches(_ labels: [String: String]) -> Bool {
        for (k, v) in matchLabels ?? [:] where labels[k] != v { return false }
        for e in matchExpressions ?? [] where !e.matches(labels) { return false }
        return true
    }

    public func validate(field: String) throws(ValidationError) {
        for (k, v) in (matchLabels ?? [:]).sorted(by: { $0.key < $1.key }) {
            try validateLabelKey(k, field: "\(field).matchLabels")
            try validateLabelValue(v, field: "\(field).matchLabels[\(k)]")
        }
        for (i, e) in (matchExpressions ?? []).enumerated() {
            try e.validate(field: "\(field).matchExpressions[\(i)]")
        }
    }
}

public struct LabelSelectorRequirement: Codable, Sendable, Hashable {
    public enum Operator: String, Codable, Sendable, CaseIterable {
        case `in` = "In", notIn = "NotIn", exists = "Exists", doesNotExist = "DoesNotExist"
    }

    public var key: String
    public var `operator`: Operator
    public var values: [String]?

    public init(key: String, operator: Operator, values: [String]? = nil) {
        self.key = key
        self.operator = `operator`
        self.values = values
    }

    public func matches(_ labels: [String: String]) -> Bool {
        switch `operator` {
        case .in: labels[key].map { (values ?? []).contains($0) } ?? false
        case .notIn: labels[key].map { !(values ?? []).contains($0) } ?? true
        case .exists: labels[key] != nil
        case .doesNotExist: labels[key] == nil
        }
    }

    public func validate(field: String) throws(ValidationError) {
        try validateLabelKey(key, field: "\(field).key")
        let list = values ?? []
        switch `operator` {
        case .in, .notIn:
            guard !list.isEmpty else { throw ValidationError(field: "\(field).values", reason: "must not be empty for operator \(`operator`.rawValue)") }
        case .exists, .doesNotExist:
            guard list.isEmpty else { throw ValidationError(field: "\(field).values", reason: "must be empty for operator \(`operator`.rawValue)") }
        }
        for (i, v) in list.enumerated() { try validateLabelValue(v, field: "\(field).values[\(i)]") }
    }
}

/// A label key: an optional DNS-subdomain prefix and '/', then a name of
/// 1 to 63 characters of letters, digits, '-', '_' and '.', starting and
/// ending with a letter or digit (Kubernetes' "qualified name").
public func validateLabelKey(_ key: String, field: String) throws(ValidationError) {
    let parts = key.split(separator: "/", omittingEmptySubsequences: false)
    let bad = ValidationError(field: field, reason: "\(ValidationError.quote(key)) is not a label key: [prefix/]name, the name 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit")
    guard parts.count <= 2, let name = parts.last, labelName(name) else { throw bad }
    if parts.count == 2 {
        let prefix = parts[0]
        guard !prefix.isEmpty, prefix.utf8.count <= 253,
              prefix.split(separator: ".", omittingEmptySubsequences: false).allSatisfy({ (try? validateName(String($0), field: "")) != nil }) else { throw bad }
    }
}

/// A label value: empty, or 1 to 63 letters, digits, '-', '_' or '.',
/// starting and ending with a letter or digit.
public func validateLabelValue(_ value: String, field: String) throws(ValidationError) {
    guard value.isEmpty || labelName(Substring(value)) else {
        throw ValidationError(field: field, reason: "\(ValidationError.quote(value)) is not a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit")
    }
}

private func labelName(_ s: Substring) -> Bool {
    let b = Array(s.utf8)
    func alnum(_ c: UInt8) -> Bool { (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) }
    guard !b.isEmpty, b.count <= 63, alnum(b.first!), alnum(b.last!) else { return false }
    return b.allSatisfy { alnum($0) || $0 == 0x2d || $0 == 0x5f || $0 == 0x2e }
}

/// Checks a set of labels (an object's metadata.labels).
public func validateLabels(_ labels: [String: String]?, field: String) throws(ValidationError) {
    for (k, v) in (labels ?? [:]).sorted(by: { $0.key < $1.key }) {
        try validateLabelKey(k, field: field)
        try validateLabelValue(v, field: "\(field)[\(k)]")
    }
}

// MARK: - Ports

/// TCP, UDP or SCTP: what a policy's or an endpoint's port speaks.
public enum PortProtocol: UInt8, Sendable, CaseIterable, TextValue {
    case tcp = 6, udp = 17, sctp = 132

    /// Read in any case, as endpoint specs always were.
    public init(parsing text: String, field: String) throws(ValidationError) {
        switch text.uppercased() {
        case "TCP": self = .tcp
        case "UDP": self = .udp
        case "SCTP": self = .sctp
        default: throw ValidationError(field: field, reason: "\(ValidationError.quote(text)) is not TCP, UDP or SCTP")
        }
    }

    public var description: String {
        switch self {
        case .tcp: "TCP"
        case .udp: "UDP"
        case .sctp: "SCTP"
        }
    }

    public init(from decoder: any Decoder) throws { self = try Self.decodeText(from: decoder) }
    public func encode(to encoder: any Encoder) throws { try encodeText(to: encoder) }
}

/// A port by number or by name, as Kubernetes' IntOrString: a number in
/// JSON and YAML for the one, a string for the other.
public enum PortRef: Codable, Sendable, Hashable, CustomStringConvertible {
    case number(Int)
    case name(String)

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let n = try? c.decode(Int.self) {
            self = .number(n)
        } else {
            let text = try c.decode(String.self)
            // A number in quotes is still a number, as Kubernetes reads it.
            if let n = Int(text), String(n) == text { self = .number(n) } else { self = .name(text) }
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .number(let n): try c.encode(n)
        case .name(let s): try c.encode(s)
        }
    }

    public var description: String {
        switch self {
        case .number(let n): "\(n)"
        case .name(let s): s
        }
    }
}

/// A port name: 1 to 15 lower-case letters, digits and '-', with at least
/// one letter, no '-' at either end and no "--" (Kubernetes' IANA_SVC_NAME).
public func validatePortName(_ name: String, field: String) throws(ValidationError) {
    let b = Array(name.utf8)
    func lower(_ c: UInt8) -> Bool { c >= 0x61 && c <= 0x7a }
    func digit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    guard !b.isEmpty, b.count <= 15, b.allSatisfy({ lower($0) || digit($0) || $0 == 0x2d }), b.contains(where: lower),
          b.first != 0x2d, b.last != 0x2d, !name.contains("--") else {
        throw ValidationError(field: field, reason: "\(ValidationError.quote(name)) is not a port name: 1 to 15 lower-case letters, digits and '-', at least one letter, no '-' at either end or twice in a row")
    }
}

// MARK: - Namespace

/// A namespace: only its labels matter to Mizar (namespace selectors read
/// them). `kubernetes.io/metadata.name` is set to its name.
public struct NamespaceSpec: Codable, Sendable, Equatable {
    public init() {}
}

extension NamespaceSpec: ObjectSpec {
    public typealias Status = PlainStatus
    public static var kind: Kind { .namespace }
    public func validate() throws(ValidationError) {}
    public static var absent: NamespaceSpec? { NamespaceSpec() }

    public static func normalize(_ metadata: inout ObjectMeta) {
        var labels = metadata.labels ?? [:]
        labels[namespaceNameLabel] = metadata.name
        metadata.labels = labels
    }
}

public typealias Namespace = Object<NamespaceSpec>

extension Namespace {
    /// The labels of a namespace as selectors see them, whether or not a
    /// Namespace object exists for it.
    public static func labels(of name: String, _ object: Namespace?) -> [String: String] {
        (object?.metadata.labels ?? [:]).merging([namespaceNameLabel: name]) { $1 }
    }
}

// MARK: - NetworkPolicy

public enum PolicyType: String, Codable, Sendable, CaseIterable {
    case ingress = "Ingress", egress = "Egress"
}

/// An address range, minus the ranges in `except`. The range is written as
/// Kubernetes takes it: host bits are allowed and ignored.
public struct IPBlock: Codable, Sendable, Hashable {
    public var cidr: String
    public var except: [String]?

    public init(cidr: String, except: [String]? = nil) {
        self.cidr = cidr
        self.except = except
    }

    /// A prefix as Kubernetes reads it (host bits masked off). IPv6 ranges
    /// are refused: Mizar's VPCs are IPv4.
    public static func prefix(_ text: String, field: String) throws(ValidationError) -> CIDR {
        if text.contains(":") { throw ValidationError(field: field, reason: "\(ValidationError.quote(text)) is IPv6; Mizar's VPCs are IPv4") }
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let length = UInt8(parts[1]), length <= 32 else {
            throw ValidationError(field: field, reason: "\(ValidationError.quote(text)) is not an IPv4 prefix like 10.0.0.0/16")
        }
        let ip = try IPv4Address(parsing: String(parts[0]), field: field)
        return try CIDR(address: IPv4Address(value: length == 0 ? 0 : ip.value & (UInt32.max << (32 - UInt32(length)))), prefixLength: length, field: field)
    }

    /// The range and its exceptions, each checked: every exception lies
    /// strictly inside the range.
    public func prefixes(field: String) throws(ValidationError) -> (cidr: CIDR, except: [CIDR]) {
        let range = try Self.prefix(cidr, field: "\(field).cidr")
        var holes: [CIDR] = []
        for (i, text) in (except ?? []).enumerated() {
            let f = "\(field).except[\(i)]"
            let hole = try Self.prefix(text, field: f)
            guard range.contains(hole), hole.prefixLength > range.prefixLength else {
                throw ValidationError(field: f, reason: "\(hole) is not strictly inside \(range)")
            }
            holes.append(hole)
        }
        return (range, holes)
    }
}

/// Who a rule admits: endpoints by labels (in the policy's namespace, or in
/// the namespaces `namespaceSelector` picks; both in one peer must hold
/// together), or addresses.
public struct NetworkPolicyPeer: Codable, Sendable, Hashable {
    public var podSelector: LabelSelector?
    public var namespaceSelector: LabelSelector?
    public var ipBlock: IPBlock?

    public init(podSelector: LabelSelector? = nil, namespaceSelector: LabelSelector? = nil, ipBlock: IPBlock? = nil) {
        self.podSelector = podSelector
        self.namespaceSelector = namespaceSelector
        self.ipBlock = ipBlock
    }

    public func validate(field: String) throws(ValidationError) {
        if let ipBlock {
            guard podSelector == nil, namespaceSelector == nil else {
                throw ValidationError(field: field, reason: "ipBlock may not be combined with podSelector or namespaceSelector")
            }
            _ = try ipBlock.prefixes(field: "\(field).ipBlock")
            return
        }
        guard podSelector != nil || namespaceSelector != nil else {
            throw ValidationError(field: field, reason: "must set podSelector, namespaceSelector or ipBlock")
        }
        try podSelector?.validate(field: "\(field).podSelector")
        try namespaceSelector?.validate(field: "\(field).namespaceSelector")
    }
}

/// A port, a range of ports (`port` to `endPort`), or a port by name (on
/// the destination endpoint); TCP when `protocol` is absent. Absent `port`
/// means every port of the protocol.
public struct NetworkPolicyPort: Codable, Sendable, Hashable {
    public var `protocol`: PortProtocol?
    public var port: PortRef?
    public var endPort: Int?

    public init(protocol: PortProtocol? = nil, port: PortRef? = nil, endPort: Int? = nil) {
        self.protocol = `protocol`
        self.port = port
        self.endPort = endPort
    }

    public func validate(field: String) throws(ValidationError) {
        switch port {
        case .number(let n):
            guard (1...65535).contains(n) else { throw ValidationError(field: "\(field).port", reason: "\(n) is out of range 1...65535") }
            if let endPort {
                guard endPort >= n, endPort <= 65535 else {
                    throw ValidationError(field: "\(field).endPort", reason: "\(endPort) must be at least port (\(n)) and at most 65535")
                }
            }
        case .name(let s):
            try validatePortName(s, field: "\(field).port")
            if endPort != nil { throw ValidationError(field: "\(field).endPort", reason: "may not be set with a named port") }
        case nil:
            if endPort != nil { throw ValidationError(field: "\(field).endPort", reason: "may not be set without port") }
        }
    }
}

public struct NetworkPolicyIngressRule: Codable, Sendable, Hashable {
    public var ports: [NetworkPolicyPort]?
    public var from: [NetworkPolicyPeer]?

    public init(ports: [NetworkPolicyPort]? = nil, from: [NetworkPolicyPeer]? = nil) {
        self.ports = ports
        self.from = from
    }
}

public struct NetworkPolicyEgressRule: Codable, Sendable, Hashable {
    public var ports: [NetworkPolicyPort]?
    public var to: [NetworkPolicyPeer]?

    public init(ports: [NetworkPolicyPort]? = nil, to: [NetworkPolicyPeer]? = nil) {
        self.ports = ports
        self.to = to
    }
}

/// Kubernetes' NetworkPolicySpec. A policy selects endpoints of its own
/// namespace; for each direction in `policyTypes` they become isolated and
/// admit only what some policy's rules allow.
public struct NetworkPolicySpec: Codable, Sendable, Equatable {
    public var podSelector: LabelSelector
    public var policyTypes: [PolicyType]?
    public var ingress: [NetworkPolicyIngressRule]?
    public var egress: [NetworkPolicyEgressRule]?

    public init(podSelector: LabelSelector = .all, policyTypes: [PolicyType]? = nil, ingress: [NetworkPolicyIngressRule]? = nil,
                egress: [NetworkPolicyEgressRule]? = nil) {
        self.podSelector = podSelector
        self.policyTypes = policyTypes
        self.ingress = ingress
        self.egress = egress
    }

    /// `policyTypes`, or as Kubernetes defaults it: Ingress, and Egress
    /// when there are egress rules.
    public var effectiveTypes: Set<PolicyType> {
        if let policyTypes { return Set(policyTypes) }
        return (egress ?? []).isEmpty ? [.ingress] : [.ingress, .egress]
    }
}

/// The rules' two directions in one shape, for code that treats them alike.
public struct PolicyRule: Sendable, Hashable {
    public var ports: [NetworkPolicyPort]?
    public var peers: [NetworkPolicyPeer]?
}

extension NetworkPolicySpec {
    public func rules(_ direction: PolicyType) -> [PolicyRule] {
        switch direction {
        case .ingress: (ingress ?? []).map { PolicyRule(ports: $0.ports, peers: $0.from) }
        case .egress: (egress ?? []).map { PolicyRule(ports: $0.ports, peers: $0.to) }
        }
    }
}

extension NetworkPolicySpec: ObjectSpec {
    public typealias Status = PlainStatus
    public static var kind: Kind { .networkPolicy }
    public static var namespaced: Bool { true }

    public func validate() throws(ValidationError) {
        try podSelector.validate(field: "spec.podSelector")
        if let policyTypes {
            guard Set(policyTypes).count == policyTypes.count else {
                throw ValidationError(field: "spec.policyTypes", reason: "a type appears twice")
            }
        }
        for direction in PolicyType.allCases {
            let name = direction == .ingress ? "ingress" : "egress"
            let peers = direction == .ingress ? "from" : "to"
            for (i, rule) in rules(direction).enumerated() {
                for (j, p) in (rule.ports ?? []).enumerated() { try p.validate(field: "spec.\(name)[\(i)].ports[\(j)]") }
                for (j, p) in (rule.peers ?? []).enumerated() { try p.validate(field: "spec.\(name)[\(i)].\(peers)[\(j)]") }
            }
        }
    }
}

public typealias NetworkPolicy = Object<NetworkPolicySpec>

// MARK: - Kubernetes

/// Kubernetes' own apiVersion for NetworkPolicy: `mizarctl apply` takes
/// such a document and stores it as a mizar.com/v1 NetworkPolicy.
public let kubernetesNetworkPolicyVersion = "networking.k8s.io/v1"

extension Object where Spec == NetworkPolicySpec {
    private struct Kubernetes: Decodable {
        struct Metadata: Decodable {
            var name: String
            var namespace: String?
            var labels: [String: String]?
        }
        var apiVersion: String
        var metadata: Metadata
        var spec: NetworkPolicySpec
    }

    /// A NetworkPolicy document of either API: Mizar's, or Kubernetes'
    /// networking/v1, whose spec is the same field for field; of its
    /// metadata the name, namespace and labels are kept (what the server
    /// sets, and its status, are not a policy's content).
    public static func decodingKubernetes(from decoder: any Decoder) throws -> NetworkPolicy {
        let header = try decoder.container(keyedBy: HeaderKey.self)
        guard try header.decodeIfPresent(String.self, forKey: .apiVersion) == kubernetesNetworkPolicyVersion else {
            return try NetworkPolicy(from: decoder)
        }
        let k = try Kubernetes(from: decoder)
        return NetworkPolicy(name: k.metadata.name, namespace: k.metadata.namespace, spec: k.spec, labels: k.metadata.labels)
    }

    private enum HeaderKey: String, CodingKey { case apiVersion }
}
