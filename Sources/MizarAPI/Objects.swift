import MizarCore

/// The API's group and version, as every object carries it.
public let apiVersion = "mizar.com/v1"

/// The kinds of object the management plane stores.
public enum Kind: String, Codable, Sendable, CaseIterable {
    case vpc = "Vpc", subnet = "Subnet", endpoint = "Endpoint"
    case droplet = "Droplet", bouncer = "Bouncer", divider = "Divider"
    case namespace = "Namespace", networkPolicy = "NetworkPolicy"

    /// The lower-case plural used in etcd keys and on the command line.
    public var plural: String {
        switch self {
        case .vpc: "vpcs"
        case .subnet: "subnets"
        case .endpoint: "endpoints"
        case .droplet: "droplets"
        case .bouncer: "bouncers"
        case .divider: "dividers"
        case .namespace: "namespaces"
        case .networkPolicy: "networkpolicies"
        }
    }

    /// Whether the namespace is part of an object's identity.
    public var namespaced: Bool { self == .networkPolicy }

    /// The name the store keys an object by: NAMESPACE/NAME when namespaced.
    public func storeName(_ name: String, namespace: String?) -> String {
        namespaced ? "\(namespace ?? defaultNamespace)/\(name)" : name
    }

    /// kubectl's short names.
    var shortName: String? {
        switch self {
        case .namespace: "ns"
        case .networkPolicy: "netpol"
        default: nil
        }
    }

    /// Accepts "Vpc", "vpc", "vpcs" and the like, as kubectl does.
    public init(parsing text: String, field: String = "kind") throws(ValidationError) {
        let t = text.lowercased()
        guard let k = Kind.allCases.first(where: { $0.rawValue.lowercased() == t || $0.plural == t || $0.shortName == t }) else {
            throw ValidationError(field: field, reason: "unknown kind \(String(reflecting: text)); expected one of \(Kind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self = k
    }
}

/// Where an object is in its life. Init → the kind's intermediate phases →
/// Provisioned, or Failed with a reason; Deleting once a delete was asked.
public enum Phase: String, Codable, Sendable {
    case initial = "Init"
    case allocating = "Allocating"   // VNI, addresses, MAC
    case placing = "Placing"         // bouncers and dividers onto droplets
    case programming = "Programming" // transitd calls under way
    case provisioned = "Provisioned"
    case failed = "Failed"
    case deleting = "Deleting"
    case ready = "Ready"              // droplets
    case notReady = "NotReady"       // droplets whose lease lapsed
}

public struct ObjectMeta: Codable, Sendable, Equatable {
    public var name: String
    /// The namespace of an Endpoint (an attribute that policies select by;
    /// endpoint names stay unique across namespaces) or of a NetworkPolicy
    /// (part of its identity, as in Kubernetes). "default" when absent.
    public var namespace: String?
    /// Set by the store when the object is created.
    public var uid: String?
    /// Grows by one with every change of the spec.
    public var generation: Int64?
    /// etcd's revision of the object's last write; filled in on read and
    /// never stored (a stale one makes an update fail).
    public var resourceVersion: String?
    public var creationTimestamp: String?
    /// Set when a delete was asked while finalizers remain; the object goes
    /// once its controllers have cleaned up and removed their finalizers.
    public var deletionTimestamp: String?
    public var finalizers: [String]?
    public var labels: [String: String]?

    public init(name: String, namespace: String? = nil, labels: [String: String]? = nil) {
        self.name = name
        self.namespace = namespace
        self.labels = labels
    }

    /// The namespace, "default" when none is set.
    public var effectiveNamespace: String { namespace ?? defaultNamespace }
}

/// A kind's status: what every kind's has, and more.
public protocol ObjectStatus: Codable, Sendable, Equatable {
    init()
    var common: CommonStatus { get set }
}

/// Why an object failed, for programs: mizarctl and the CNI plugin act on
/// it, never on the message text in `reason`.
public struct ReasonCode: RawRepresentable, Codable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    /// The subnet has no free address for the endpoint.
    public static let subnetExhausted = ReasonCode(rawValue: "SubnetExhausted")
    /// A transitd refused the spec for good: input it checks that admission
    /// cannot (a namespace that does not exist, an address it holds).
    public static let refusedByHost = ReasonCode(rawValue: "RefusedByHost")
    /// A NetworkPolicy that cannot be compiled (too many distinct peers in
    /// a VPC, too many port ranges for an endpoint): it is not enforced, or
    /// an endpoint it selects is isolated with nothing admitted.
    public static let policyRejected = ReasonCode(rawValue: "PolicyRejected")
}

/// What every kind's status has.
public struct CommonStatus: Codable, Sendable, Equatable {
    public var phase: Phase = .initial
    /// Why it failed, or what it waits for.
    public var reason: String?
    /// Why it failed, for programs (set with phase Failed).
    public var reasonCode: ReasonCode?
    /// The generation this status describes.
    public var observedGeneration: Int64?
    /// Milliseconds from creation to Provisioned.
    public var provisioningDelayMs: Double?
    /// The operator replica that last wrote this status.
    public var controller: String?

    public init() {}
}

// MARK: - Specs and statuses

public struct VpcSpec: Codable, Sendable, Equatable {
    public var cidr: CIDR
    /// How many dividers serve the VPC.
    public var dividers: Int?
    /// A VNI to use; allocated when absent.
    public var vni: VNI?
    /// How its endpoints reach addresses outside it; absent: they do not.
    public var egress: VpcEgress?

    public init(cidr: CIDR, dividers: Int? = nil, vni: VNI? = nil, egress: VpcEgress? = nil) {
        self.cidr = cidr
        self.dividers = dividers
        self.vni = vni
        self.egress = egress
    }
}

/// A VPC's way out.
public struct VpcEgress: Codable, Sendable, Equatable {
    public var mode: EgressMode

    public init(mode: EgressMode = .snat) { self.mode = mode }
}

/// "SNAT": translated on the endpoint's own droplet to the droplet's
/// address, on a port unique per remote.
public enum EgressMode: TextValue, Sendable, Hashable {
    case snat

    public init(parsing text: String, field: String) throws(ValidationError) {
        guard text == "SNAT" else { throw ValidationError(field: field, reason: "\(ValidationError.quote(text)) is not \"SNAT\"") }
        self = .snat
    }

    public var description: String { "SNAT" }
}

public struct VpcStatus: ObjectStatus {
    public var common = CommonStatus()
    public var vni: VNI?
    /// Droplets that divide for it.
    public var dividers: [String]?
    public init() {}
}

public struct SubnetSpec: Codable, Sendable, Equatable {
    public var vpc: String
    public var cidr: CIDR
    /// How many bouncers serve the subnet.
    public var bouncers: Int?

    public init(vpc: String, cidr: CIDR, bouncers: Int? = nil) {
        self.vpc = vpc
        self.cidr = cidr
        self.bouncers = bouncers
    }
}

public struct SubnetStatus: ObjectStatus {
    public var common = CommonStatus()
    public var vni: VNI?
    public var gateway: IPv4Address?
    public var bouncers: [String]?
    public init() {}
}

public struct EndpointSpec: Codable, Sendable, Equatable {
    public var vpc: String
    public var subnet: String
    /// A requested address; allocated from the subnet when absent.
    public var ip: IPv4Address?
    public var mac: MACAddress?
    /// The droplet to place it on; chosen when absent.
    public var droplet: String?
    /// The network namespace its interface goes into (a path); when absent
    /// the interface is made but stays parked on its droplet, unconfigured,
    /// for a container runtime to move into its workload.
    public var netns: String?
    /// The interface's name inside `netns` ("eth0" when absent).
    public var ifname: String?
    /// Simple (the default: a workload's interface) or scaled (a service
    /// VIP: ports and backends, no interface, no droplet).
    public var type: EndpointType?
    /// A scaled endpoint's ports, or the ports a simple endpoint's
    /// workload serves (named ones are what policies' named ports resolve to).
    public var ports: [EndpointPort]?
    /// A scaled endpoint's backends: names of simple endpoints of the same
    /// VPC, in any subnet, on any droplet.
    public var backends: [String]?
    /// A scaled endpoint whose ports have a `hostPort`: the droplets it is
    /// published on (every droplet when absent).
    public var publishOn: [String]?

    public init(vpc: String, subnet: String, ip: IPv4Address? = nil, mac: MACAddress? = nil, droplet: String? = nil, netns: String? = nil,
                ifname: String? = nil, type: EndpointType? = nil, ports: [EndpointPort]? = nil, backends: [String]? = nil,
                publishOn: [String]? = nil) {
        self.vpc = vpc
        self.subnet = subnet
        self.ip = ip
        self.mac = mac
        self.droplet = droplet
        self.netns = netns
        self.ifname = ifname
        self.type = type
        self.ports = ports
        self.backends = backends
        self.publishOn = publishOn
    }

    public var isScaled: Bool { type == .scaled }

    /// The host ports a scaled endpoint is published on, as "TCP/30080",
    /// sorted: what it claims cluster-wide.
    public var publishedPorts: [String] {
        (ports ?? []).compactMap { p in p.hostPort.map { "\(p.protocol ?? .tcp)/\($0)" } }.sorted()
    }

    /// A scaled endpoint's host ports in Mizar's terms (admission checked
    /// their range).
    public func hostPorts() throws(ValidationError) -> [PublishedHostPort] {
        let typed = try servicePorts()
        var result: [PublishedHostPort] = []
        for (i, p) in typed.enumerated() {
            guard let h = ports?[i].hostPort else { continue }
            guard let hostPort = UInt16(exactly: h), PublishedHostPort.range.contains(hostPort) else {
                throw ValidationError(field: "spec.ports[\(i)].hostPort", reason: "\(h) is out of range \(PublishedHostPort.range.lowerBound)...\(PublishedHostPort.range.upperBound)")
            }
            result.append(PublishedHostPort(proto: p.proto, hostPort: hostPort, port: p.port))
        }
        return result
    }

    /// A scaled endpoint's ports in Mizar's terms, each checked.
    public func servicePorts() throws(ValidationError) -> [ServicePort] {
        var typed: [ServicePort] = []
        for (i, p) in (ports ?? []).enumerated() {
            let proto: ServicePort.Proto
            switch p.protocol ?? .tcp {
            case .tcp: proto = .tcp
            case .udp: proto = .udp
            case .sctp: throw ValidationError(field: "spec.ports[\(i)].protocol", reason: "a scaled endpoint serves TCP and UDP")
            }
            typed.append(try ServicePort(proto: proto, port: p.port, targetPort: p.targetPort, field: "spec.ports[\(i)]"))
        }
        return typed
    }
}

/// What an endpoint is: "simple" or "scaled" in specs.
public enum EndpointType: TextValue, Sendable, Hashable {
    /// A workload's interface on a droplet.
    case simple
    /// A service VIP: ports and backends, no interface, no droplet.
    case scaled

    public init(parsing text: String, field: String) throws(ValidationError) {
        switch text {
        case "simple": self = .simple
        case "scaled": self = .scaled
        default: throw ValidationError(field: field, reason: "\(ValidationError.quote(text)) is not \"simple\" or \"scaled\"")
        }
    }

    public var description: String { self == .simple ? "simple" : "scaled" }
}

/// A port of an endpoint. A scaled endpoint's: `port` on the VIP,
/// `targetPort` (the same when absent) on the backend. A simple endpoint's:
/// a port its workload serves, which policies may name (as a container's
/// ports in Kubernetes).
public struct EndpointPort: Codable, Sendable, Equatable {
    /// The port's name, for policies' named ports.
    public var name: String?
    public var port: Int
    /// TCP (the default), UDP, or (a simple endpoint's) SCTP.
    public var `protocol`: PortProtocol?
    public var targetPort: Int?
    /// A scaled endpoint's port published on its droplets' addresses at
    /// this port, claimed cluster-wide.
    public var hostPort: Int?

    public init(name: String? = nil, port: Int, protocol: PortProtocol? = nil, targetPort: Int? = nil, hostPort: Int? = nil) {
        self.name = name
        self.port = port
        self.protocol = `protocol`
        self.targetPort = targetPort
        self.hostPort = hostPort
    }

    /// How many ports a simple endpoint may name.
    public static let maxNamed = 64
    /// Where host ports are published (PublishedHostPort.range).
    public static let hostPortRange = Int(PublishedHostPort.range.lowerBound)...Int(PublishedHostPort.range.upperBound)
}

/// A backend as the bouncers were last given it.
public struct EndpointBackend: Codable, Sendable, Equatable {
    public var name: String
    public var ip: IPv4Address
    public var droplet: String

    public init(name: String, ip: IPv4Address, droplet: String) {
        self.name = name
        self.ip = ip
        self.droplet = droplet
    }
}

public struct EndpointStatus: ObjectStatus {
    public var common = CommonStatus()
    public var ip: IPv4Address?
    public var mac: MACAddress?
    public var droplet: String?
    /// A scaled endpoint's live backends, as its bouncers hold them.
    public var backends: [EndpointBackend]?
    /// The droplets a scaled endpoint's host ports are programmed on.
    public var published: [String]?
    public init() {}
}

public struct DropletSpec: Codable, Sendable, Equatable {
    public var ip: IPv4Address
    public var mac: MACAddress
    /// Where its transitd's API listens: HOST:PORT, or unix:/path where
    /// the operator shares the host's file system (the simulated cluster).
    public var transitd: String

    public init(ip: IPv4Address, mac: MACAddress, transitd: String) {
        self.ip = ip
        self.mac = mac
        self.transitd = transitd
    }
}

public struct DropletStatus: ObjectStatus {
    public var common = CommonStatus()
    /// The etcd lease its transitd keeps alive.
    public var lease: Int64?
    public init() {}
}

public struct BouncerSpec: Codable, Sendable, Equatable {
    public var vpc: String
    public var subnet: String
    public var droplet: String

    public init(vpc: String, subnet: String, droplet: String) {
        self.vpc = vpc
        self.subnet = subnet
        self.droplet = droplet
    }
}

public struct DividerSpec: Codable, Sendable, Equatable {
    public var vpc: String
    public var droplet: String

    public init(vpc: String, droplet: String) {
        self.vpc = vpc
        self.droplet = droplet
    }
}

public struct PlainStatus: ObjectStatus {
    public var common = CommonStatus()
    public init() {}
}

// MARK: - Objects

/// Ties a spec type to its kind and status type.
public protocol ObjectSpec: Codable, Sendable, Equatable {
    associatedtype Status: ObjectStatus
    static var kind: Kind { get }
    /// Whether the namespace is part of an object's identity (its key).
    static var namespaced: Bool { get }
    /// Checks this spec alone (no other object); field names start with "spec.".
    func validate() throws(ValidationError)
    /// Fills in what the kind sets for the user (a Namespace's name label).
    static func normalize(_ metadata: inout ObjectMeta)
    /// The spec of a document that has none, for a kind whose spec may be
    /// left out (a Namespace's); nil when it is required.
    static var absent: Self? { get }
}

extension ObjectSpec {
    public static var namespaced: Bool { false }
    public static func normalize(_ metadata: inout ObjectMeta) {}
    public static var absent: Self? { nil }
}

/// One stored object, Kubernetes-shaped.
public struct Object<Spec: ObjectSpec>: Codable, Sendable, Equatable {
    public var apiVersion: String
    public var kind: Kind
    public var metadata: ObjectMeta
    public var spec: Spec
    public var status: Spec.Status?

    public init(name: String, namespace: String? = nil, spec: Spec, labels: [String: String]? = nil) {
        apiVersion = MizarAPI.apiVersion
        kind = Spec.kind
        metadata = ObjectMeta(name: name, namespace: namespace, labels: labels)
        self.spec = spec
    }

    private enum CodingKeys: String, CodingKey { case apiVersion, kind, metadata, spec, status }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        apiVersion = try c.decode(String.self, forKey: .apiVersion)
        kind = try c.decode(Kind.self, forKey: .kind)
        metadata = try c.decode(ObjectMeta.self, forKey: .metadata)
        if let absent = Spec.absent, !c.contains(.spec) {
            spec = absent
        } else {
            spec = try c.decode(Spec.self, forKey: .spec)
        }
        status = try c.decodeIfPresent(Spec.Status.self, forKey: .status)
    }

    public var name: String { metadata.name }

    /// The name the store keys it by: NAMESPACE/NAME for a namespaced kind.
    public var storeName: String { Spec.namespaced ? "\(metadata.effectiveNamespace)/\(metadata.name)" : metadata.name }

    /// The object's own checks: its header, its name, its spec.
    public func validate() throws(ValidationError) {
        guard apiVersion == MizarAPI.apiVersion else {
            throw ValidationError(field: "apiVersion", reason: "\(String(reflecting: apiVersion)) is not served; expected \(MizarAPI.apiVersion)")
        }
        guard kind == Spec.kind else {
            throw ValidationError(field: "kind", reason: "\(kind.rawValue) where \(Spec.kind.rawValue) was expected")
        }
        try validateName(metadata.name, field: "metadata.name")
        if let ns = metadata.namespace {
            guard Spec.namespaced || Spec.kind == .endpoint else {
                throw ValidationError(field: "metadata.namespace", reason: "a \(Spec.kind.rawValue) is not namespaced")
            }
            try validateName(ns, field: "metadata.namespace")
        }
        try validateLabels(metadata.labels, field: "metadata.labels")
        try spec.validate()
    }
}

public typealias Vpc = Object<VpcSpec>
public typealias Subnet = Object<SubnetSpec>
public typealias Endpoint = Object<EndpointSpec>
public typealias Droplet = Object<DropletSpec>
public typealias Bouncer = Object<BouncerSpec>
public typealias Divider = Object<DividerSpec>

// MARK: - Validation of single objects

/// Names are DNS labels, as Kubernetes requires of most names: 1 to 63
/// characters, lower-case letters, digits and '-', starting and ending
/// with a letter or digit.
public func validateName(_ name: String, field: String) throws(ValidationError) {
    let bytes = Array(name.utf8)
    func alnum(_ b: UInt8) -> Bool { (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) }
    guard !bytes.isEmpty else { throw ValidationError(field: field, reason: "must not be empty") }
    guard bytes.count <= 63 else { throw ValidationError(field: field, reason: "is \(bytes.count) characters long; at most 63 are allowed") }
    guard bytes.allSatisfy({ alnum($0) || $0 == 0x2d }), alnum(bytes.first!), alnum(bytes.last!) else {
        throw ValidationError(field: field, reason: "\(String(reflecting: name)) is not a DNS label: use lower-case letters, digits and '-', starting and ending with a letter or digit")
    }
}

func validateCount(_ n: Int?, field: String, range: ClosedRange<Int>) throws(ValidationError) {
    guard let n else { return }
    guard range.contains(n) else { throw ValidationError(field: field, reason: "\(n) is out of range; expected \(range.lowerBound)...\(range.upperBound)") }
}

extension VpcSpec: ObjectSpec {
    public typealias Status = VpcStatus
    public static var kind: Kind { .vpc }
    public func validate() throws(ValidationError) {
        guard cidr.prefixLength >= 8 && cidr.prefixLength <= 28 else {
            throw ValidationError(field: "spec.cidr", reason: "/\(cidr.prefixLength) is out of range; a VPC is /8 to /28")
        }
        try validateCount(dividers, field: "spec.dividers", range: 1...16)
    }
}

extension SubnetSpec: ObjectSpec {
    public typealias Status = SubnetStatus
    public static var kind: Kind { .subnet }
    public func validate() throws(ValidationError) {
        try validateName(vpc, field: "spec.vpc")
        guard cidr.prefixLength >= 8 && cidr.prefixLength <= 29 else {
            throw ValidationError(field: "spec.cidr", reason: "/\(cidr.prefixLength) is out of range; a subnet is /8 to /29")
        }
        try validateCount(bouncers, field: "spec.bouncers", range: 1...16)
    }
}

extension EndpointSpec: ObjectSpec {
    public typealias Status = EndpointStatus
    public static var kind: Kind { .endpoint }
    public func validate() throws(ValidationError) {
        try validateName(vpc, field: "spec.vpc")
        try validateName(subnet, field: "spec.subnet")
        if let mac, mac.bytes[0] & 1 != 0 {
            throw ValidationError(field: "spec.mac", reason: "\(mac) is a multicast address")
        }
        if let droplet { try validateName(droplet, field: "spec.droplet") }
        if let netns, !netns.hasPrefix("/") {
            throw ValidationError(field: "spec.netns", reason: "\(String(reflecting: netns)) is not an absolute path to a network namespace")
        }
        if let ifname {
            guard netns != nil else { throw ValidationError(field: "spec.ifname", reason: "names the interface inside spec.netns, which is absent") }
            try validateInterfaceName(ifname, field: "spec.ifname")
        }
        switch type ?? .simple {
        case .simple:
            let list = ports ?? []
            guard list.count <= EndpointPort.maxNamed else {
                throw ValidationError(field: "spec.ports", reason: "\(list.count) ports; at most \(EndpointPort.maxNamed)")
            }
            var names = Set<String>()
            for (i, p) in list.enumerated() {
                let f = "spec.ports[\(i)]"
                guard (1...65535).contains(p.port) else { throw ValidationError(field: "\(f).port", reason: "\(p.port) is out of range 1...65535") }
                if p.targetPort != nil { throw ValidationError(field: "\(f).targetPort", reason: "only a scaled endpoint's ports have a target") }
                if p.hostPort != nil { throw ValidationError(field: "\(f).hostPort", reason: "only a scaled endpoint is published on host ports") }
                if let name = p.name {
                    try validatePortName(name, field: "\(f).name")
                    guard names.insert(name).inserted else { throw ValidationError(field: "\(f).name", reason: "\(String(reflecting: name)) names two ports") }
                }
            }
            if backends != nil { throw ValidationError(field: "spec.backends", reason: "only a scaled endpoint has backends") }
            if publishOn != nil { throw ValidationError(field: "spec.publishOn", reason: "only a scaled endpoint is published") }
        case .scaled:
            if droplet != nil { throw ValidationError(field: "spec.droplet", reason: "a scaled endpoint lives on its subnet's bouncers, not on a droplet") }
            if netns != nil { throw ValidationError(field: "spec.netns", reason: "a scaled endpoint has no interface") }
            try ServicePort.validate(try servicePorts(), field: "spec.ports")
            let list = backends ?? []
            guard list.count <= ServiceEntry.maxBackends else {
                throw ValidationError(field: "spec.backends", reason: "\(list.count) backends; at most \(ServiceEntry.maxBackends)")
            }
            for (i, b) in list.enumerated() { try validateName(b, field: "spec.backends[\(i)]") }
            guard Set(list).count == list.count else { throw ValidationError(field: "spec.backends", reason: "a backend is named twice") }
            var published = Set<String>()
            for (i, p) in (ports ?? []).enumerated() {
                guard let h = p.hostPort else { continue }
                let f = "spec.ports[\(i)].hostPort"
                guard EndpointPort.hostPortRange.contains(h) else {
                    throw ValidationError(field: f, reason: "\(h) is out of range \(EndpointPort.hostPortRange.lowerBound)...\(EndpointPort.hostPortRange.upperBound)")
                }
                guard published.insert("\(p.protocol ?? .tcp)/\(h)").inserted else {
                    throw ValidationError(field: f, reason: "\(p.protocol ?? .tcp) \(h) is published twice")
                }
            }
            if let on = publishOn {
                guard !published.isEmpty else { throw ValidationError(field: "spec.publishOn", reason: "no port has a hostPort") }
                guard !on.isEmpty else { throw ValidationError(field: "spec.publishOn", reason: "empty: leave it out to publish on every droplet") }
                for (i, d) in on.enumerated() { try validateName(d, field: "spec.publishOn[\(i)]") }
                guard Set(on).count == on.count else { throw ValidationError(field: "spec.publishOn", reason: "a droplet is named twice") }
            }
        }
    }
}

extension DropletSpec: ObjectSpec {
    public typealias Status = DropletStatus
    public static var kind: Kind { .droplet }
    public func validate() throws(ValidationError) {
        if transitd.hasPrefix("unix:/") { return }
        guard (try? HostPort(parsing: transitd, field: "spec.transitd")) != nil else {
            throw ValidationError(field: "spec.transitd", reason: "\(String(reflecting: transitd)) is not HOST:PORT or unix:/PATH")
        }
    }
}

extension BouncerSpec: ObjectSpec {
    public typealias Status = PlainStatus
    public static var kind: Kind { .bouncer }
    public func validate() throws(ValidationError) {
        try validateName(vpc, field: "spec.vpc")
        try validateName(subnet, field: "spec.subnet")
        try validateName(droplet, field: "spec.droplet")
    }
}

extension DividerSpec: ObjectSpec {
    public typealias Status = PlainStatus
    public static var kind: Kind { .divider }
    public func validate() throws(ValidationError) {
        try validateName(vpc, field: "spec.vpc")
        try validateName(droplet, field: "spec.droplet")
    }
}

/// Something that happened to an object, as `mizarctl describe` lists it.
public struct ObjectEvent: Codable, Sendable, Equatable {
    public enum Severity: String, Codable, Sendable { case normal = "Normal", warning = "Warning" }
    public var time: String
    public var type: Severity
    /// One word: Provisioned, Placing, RetryLater, ...
    public var reason: String
    public var message: String
    /// The operator replica that saw it.
    public var controller: String?

    public init(time: String, type: Severity, reason: String, message: String, controller: String?) {
        self.time = time
        self.type = type
        self.reason = reason
        self.message = message
        self.controller = controller
    }
}
