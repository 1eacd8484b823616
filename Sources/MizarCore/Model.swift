/// Facts of Mizar's model, written once and called from everywhere that
/// needs them: the management plane, transitd, the CNI and the tools.

/// A host on the substrate network: a droplet's IP and MAC.
public struct HostAddress: Hashable, Sendable, CustomStringConvertible {
    public var ip: IPv4Address
    public var mac: MACAddress

    public init(ip: IPv4Address, mac: MACAddress) {
        self.ip = ip
        self.mac = mac
    }

    public var description: String { "\(ip)/\(mac)" }
}

/// What an endpoint entry stands for. The raw values are the data plane's.
public enum EndpointKind: UInt8, Sendable {
    case simple = 1, scaled = 2, host = 3, gateway = 4
}

// MARK: - Subnets

extension CIDR {
    /// The subnet's gateway: its first host address.
    public var gateway: IPv4Address { IPv4Address(value: address.value &+ 1) }

    /// The network, gateway and broadcast addresses are the subnet's own;
    /// the role of `ip` if it is one of them.
    public func reservedRole(of ip: IPv4Address) -> String? {
        if ip == firstAddress { return "network" }
        if ip == lastAddress { return "broadcast" }
        if ip == gateway { return "gateway" }
        return nil
    }

    /// The addresses endpoints may take: every one but the reserved three,
    /// as the first one and how many follow it.
    public var endpointAddresses: (first: IPv4Address, count: UInt32) {
        (IPv4Address(value: address.value &+ 2), size > 3 ? UInt32(size - 3) : 0)
    }
}

// MARK: - Endpoints

extension MACAddress {
    /// A locally administered MAC made from the VNI and the IP's last two
    /// bytes: an endpoint's when none was asked for.
    public static func derived(vni: VNI, ip: IPv4Address) -> MACAddress {
        MACAddress(0x0a, 0x58, UInt8(vni.value & 0xff), UInt8(vni.value >> 8 & 0xff), ip.bytes[2], ip.bytes[3])
    }

    /// Unicast and not zero: what an endpoint's MAC must be.
    public func requireEndpoint(field: String) throws(ValidationError) -> MACAddress {
        guard self != .zero, !isMulticast else {
            throw ValidationError(field: field, reason: "\(self) is not a unicast MAC address")
        }
        return self
    }
}

extension IPv4Address {
    /// Not 0.0.0.0, multicast or the limited broadcast: what an endpoint's
    /// or a host's address must be.
    public func requireUnicast(field: String) throws(ValidationError) -> IPv4Address {
        guard self != .zero, !isMulticast, !isLimitedBroadcast else {
            throw ValidationError(field: field, reason: "\(self) is not a unicast address")
        }
        return self
    }
}

/// A droplet table as text (transitd --droplets): one droplet per line,
/// "IP MAC"; blank lines and lines starting with # are skipped.
public enum DropletTableText {
    public static func parse(_ text: String, source: String) throws(ValidationError) -> [HostAddress] {
        var hosts: [HostAddress] = []
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingPrefix(while: { $0 == " " || $0 == "\t" })
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            let field = "\(source) line \(i + 1)"
            guard fields.count == 2 else { throw ValidationError(field: field, reason: "\(ValidationError.quote(line)) is not \"IP MAC\"") }
            hosts.append(HostAddress(ip: try IPv4Address(parsing: String(fields[0]), field: field),
                                     mac: try MACAddress(parsing: String(fields[1]), field: field)))
        }
        return hosts
    }

    public static func format(_ hosts: [HostAddress]) -> String {
        hosts.map { "\($0.ip) \($0.mac)\n" }.joined()
    }
}

/// Who is who in Mizar's PKI: the common names its certificates carry.
public enum Identities {
    /// The operator, the only party allowed to call a transitd over TCP.
    public static let operatorName = "mizar-operator"
    /// The administrator: etcd's root user.
    public static let adminName = "root"
    /// Whoever scrapes metrics beyond loopback (a Prometheus server).
    public static let metricsName = "mizar-metrics"
    /// A droplet's transitd: its certificate's common name, and its user
    /// in etcd.
    public static func droplet(_ name: String) -> String { "droplet-\(name)" }
}

/// The names of an endpoint's interfaces on its host: a pure function of
/// (VNI, IP), so nothing needs to store them.
public enum HostInterface {
    /// mz + 13 hex digits of a hash of (VNI, IP): unique per endpoint, at
    /// most 15 characters (the kernel's limit), and the same after a restart.
    public static func name(vni: VNI, ip: IPv4Address) -> String {
        var h = UInt64(vni.value) << 32 | UInt64(ip.value)
        h = (h ^ (h >> 30)) &* 0xbf58476d1ce4e5b9
        h = (h ^ (h >> 27)) &* 0x94d049bb133111eb
        h ^= h >> 31
        let hex = String(h & 0xF_FFFF_FFFF_FFFF, radix: 16)
        return "mz" + String(repeating: "0", count: 13 - hex.count) + hex
    }

    /// The endpoint's end of a parked interface: "mp" and the same digits.
    public static func parkedName(vni: VNI, ip: IPv4Address) -> String { "mp" + name(vni: vni, ip: ip).dropFirst(2) }
}

// MARK: - Scaled endpoints

/// A service (a scaled endpoint) by its VPC and VIP.
public struct ServiceKey: Hashable, Sendable {
    public var vni: VNI
    public var vip: IPv4Address

    public init(vni: VNI, vip: IPv4Address) {
        self.vni = vni
        self.vip = vip
    }
}

/// A scaled endpoint's port published on droplets: traffic to a publishing
/// droplet's own address on `hostPort` goes to the service's `port`.
public struct PublishedHostPort: Hashable, Sendable, CustomStringConvertible {
    /// Where host ports may be: below the hosts' ephemeral ports (32768 and
    /// up) and their SNAT range, as Kubernetes' node ports. The data plane
    /// checks the same range (MZ_PUB_FIRST_PORT..MZ_PUB_LAST_PORT).
    public static let range: ClosedRange<UInt16> = 30000...32767

    public var proto: ServicePort.Proto
    public var hostPort: UInt16
    public var port: UInt16

    public init(proto: ServicePort.Proto, hostPort: UInt16, port: UInt16) {
        self.proto = proto
        self.hostPort = hostPort
        self.port = port
    }

    public var description: String { "\(proto)/\(hostPort)->\(port)" }
}

/// A port of a scaled endpoint: traffic to the VIP on `port` goes to the
/// backend's `targetPort`.
public struct ServicePort: Hashable, Sendable, CustomStringConvertible {
    public enum Proto: UInt8, Sendable, CaseIterable {
        case tcp = 6, udp = 17

        /// "TCP" or "UDP", as specs and the API spell it.
        public var name: String { self == .tcp ? "TCP" : "UDP" }
        public var description: String { name }

        /// In any case: "tcp", "TCP", ...
        public init(parsing text: String, field: String) throws(ValidationError) {
            switch text.uppercased() {
            case "TCP": self = .tcp
            case "UDP": self = .udp
            default: throw ValidationError(field: field, reason: "\(ValidationError.quote(text)) is not TCP or UDP")
            }
        }
    }

    /// How many ports one scaled endpoint may have (the data plane's room).
    public static let maxPerService = 8

    public var proto: Proto
    public var port: UInt16
    public var targetPort: UInt16

    public init(proto: Proto, port: UInt16, targetPort: UInt16) {
        self.proto = proto
        self.port = port
        self.targetPort = targetPort
    }

    /// From a spec's or a message's numbers: both ports in 1...65535; the
    /// target port is the port when absent. `field` names the port's entry.
    public init(proto: Proto, port: Int, targetPort: Int?, field: String,
                targetField: String = "targetPort") throws(ValidationError) {
        guard (1...65535).contains(port) else {
            throw ValidationError(field: "\(field).port", reason: "\(port) is out of range 1...65535")
        }
        let target = targetPort ?? port
        guard (1...65535).contains(target) else {
            throw ValidationError(field: "\(field).\(targetField)", reason: "\(target) is out of range 1...65535")
        }
        self.init(proto: proto, port: UInt16(port), targetPort: UInt16(target))
    }

    /// A scaled endpoint's ports: at least one, at most `maxPerService`,
    /// none twice.
    public static func validate(_ ports: [ServicePort], field: String) throws(ValidationError) {
        guard !ports.isEmpty else { throw ValidationError(field: field, reason: "a scaled endpoint needs at least one port") }
        guard ports.count <= maxPerService else {
            throw ValidationError(field: field, reason: "\(ports.count) ports; at most \(maxPerService)")
        }
        var seen = Set<UInt32>()
        for (i, p) in ports.enumerated() {
            guard p.port != 0, p.targetPort != 0 else {
                throw ValidationError(field: "\(field)[\(i)]", reason: "port and target port must be 1...65535")
            }
            guard seen.insert(UInt32(p.proto.rawValue) << 16 | UInt32(p.port)).inserted else {
                throw ValidationError(field: "\(field)[\(i)]", reason: "\(p.port)/\(p.proto.name) appears twice")
            }
        }
    }

    public var description: String { "\(port)/\(proto == .tcp ? "tcp" : "udp")->\(targetPort)" }
}

/// A backend of a scaled endpoint: its address and the host it lives on.
public struct ServiceBackend: Hashable, Sendable {
    public var ip: IPv4Address
    public var host: HostAddress

    public init(ip: IPv4Address, host: HostAddress) {
        self.ip = ip
        self.host = host
    }
}

/// A scaled endpoint as its bouncers hold it.
public struct ServiceEntry: Equatable, Sendable {
    /// How many backends one scaled endpoint may have.
    public static let maxBackends = 256

    public var vni: VNI
    public var vip: IPv4Address
    public var ports: [ServicePort]
    /// Sorted by address: the order the Maglev table indexes.
    public var backends: [ServiceBackend]

    public init(vni: VNI, vip: IPv4Address, ports: [ServicePort], backends: [ServiceBackend]) {
        self.vni = vni
        self.vip = vip
        self.ports = ports
        self.backends = backends.sorted { $0.ip.value < $1.ip.value }
    }

    public func validate() throws(ValidationError) {
        try ServicePort.validate(ports, field: "ports")
        guard backends.count <= Self.maxBackends else {
            throw ValidationError(field: "backends", reason: "\(backends.count) backends; at most \(Self.maxBackends)")
        }
        guard Set(backends.map(\.ip)).count == backends.count else {
            throw ValidationError(field: "backends", reason: "a backend address appears twice")
        }
        for (i, b) in backends.enumerated() where b.host.ip == .zero {
            throw ValidationError(field: "backends[\(i)].host", reason: "must name the backend's host")
        }
    }
}

/// What a change of a scaled endpoint did on its bouncers: whether
/// anything changed, the backends that went, and the client hosts the
/// bouncers taught its flows (they must forget flows to those backends).
public struct ServiceChange: Sendable, Equatable {
    public var changed: Bool
    public var removedBackends: [IPv4Address]
    public var clientHosts: [IPv4Address]

    public init(changed: Bool, removedBackends: [IPv4Address], clientHosts: [IPv4Address]) {
        self.changed = changed
        self.removedBackends = removedBackends
        self.clientHosts = clientHosts
    }
}

// MARK: - Addresses of services

/// HOST:PORT, as flags and specs name etcd and transitds: the host is a
/// name or an IPv4 address, the port 1...65535.
public struct HostPort: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public init(parsing text: String, field: String) throws(ValidationError) {
        guard let colon = text.lastIndex(of: ":"), colon != text.startIndex,
              let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else {
            throw ValidationError(field: field, reason: "\(ValidationError.quote(text)) is not HOST:PORT")
        }
        self.init(host: String(text[..<colon]), port: port)
    }

    public var description: String { "\(host):\(port)" }

    /// "HOST:PORT[,HOST:PORT...]": the members of one cluster (etcd's).
    public static func list(parsing text: String, field: String) throws(ValidationError) -> [HostPort] {
        var all: [HostPort] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            all.append(try HostPort(parsing: String(part), field: field))
        }
        return all
    }
}
