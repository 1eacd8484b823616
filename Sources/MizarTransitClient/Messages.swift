import MizarCore
import MizarRPC

/// The Transit API's messages to Mizar's types and back: the RPC edge,
/// shared by transitd (which parses what callers send) and its callers
/// (which build what transitd parses). Every parse error names its field.
public enum Messages {
    /// An endpoint's or host's address: unicast.
    public static func unicast(_ text: String, _ field: String) throws(ValidationError) -> IPv4Address {
        try IPv4Address(parsing: text, field: field).requireUnicast(field: field)
    }

    /// An endpoint's MAC: unicast and not zero.
    public static func endpointMAC(_ text: String, _ field: String = "mac") throws(ValidationError) -> MACAddress {
        try MACAddress(parsing: text, field: field).requireEndpoint(field: field)
    }

    public static func host(_ h: Mizar_Transit_V1_Host, _ field: String) throws(ValidationError) -> HostAddress {
        HostAddress(ip: try unicast(h.ip, "\(field).ip"), mac: try MACAddress(parsing: h.mac, field: "\(field).mac"))
    }

    public static func hosts(_ list: [Mizar_Transit_V1_Host], _ field: String) throws(ValidationError) -> [HostAddress] {
        var result: [HostAddress] = []
        for (i, h) in list.enumerated() { result.append(try host(h, "\(field)[\(i)]")) }
        return result
    }

    public static func protocolName(_ proto: UInt8) -> String {
        ServicePort.Proto(rawValue: proto)?.name ?? (proto == 1 ? "ICMP" : "\(proto)")
    }

    /// A service message as what its bouncers hold: the entry, the VIP's
    /// MAC and its subnet.
    public static func service(_ m: Mizar_Transit_V1_Service) throws(ValidationError) -> (ServiceEntry, MACAddress, CIDR) {
        let vni = try VNI(m.vni)
        let vip = try unicast(m.ip, "ip")
        let mac = try endpointMAC(m.mac)
        let subnet = try CIDR(parsing: m.subnet, field: "subnet")
        var ports: [ServicePort] = []
        for (i, p) in m.ports.enumerated() {
            let proto = try ServicePort.Proto(parsing: p.protocol, field: "ports[\(i)].protocol")
            ports.append(try ServicePort(proto: proto, port: Int(p.port), targetPort: Int(p.targetPort),
                                         field: "ports[\(i)]", targetField: "target_port"))
        }
        var backends: [ServiceBackend] = []
        for (i, b) in m.backends.enumerated() {
            guard b.hasHost else { throw ValidationError(field: "backends[\(i)].host", reason: "is missing; expected the backend's host") }
            backends.append(ServiceBackend(ip: try unicast(b.ip, "backends[\(i)].ip"), host: try host(b.host, "backends[\(i)].host")))
        }
        let entry = ServiceEntry(vni: vni, vip: vip, ports: ports, backends: backends)
        try entry.validate()
        return (entry, mac, subnet)
    }

    public static func service(_ e: ServiceEntry, mac: MACAddress, subnet: CIDR?) -> Mizar_Transit_V1_Service {
        var m = Mizar_Transit_V1_Service()
        m.vni = e.vni.value
        m.ip = "\(e.vip)"
        m.mac = "\(mac)"
        m.subnet = subnet.map { "\($0)" } ?? ""
        m.ports = e.ports.map { p in
            var pm = Mizar_Transit_V1_ServicePort()
            pm.protocol = p.proto.name
            pm.port = UInt32(p.port)
            pm.targetPort = UInt32(p.targetPort)
            return pm
        }
        m.backends = e.backends.map { b in
            var bm = Mizar_Transit_V1_ServiceBackend()
            bm.ip = "\(b.ip)"
            bm.host = .init(b.host)
            return bm
        }
        return m
    }

    /// A scaled endpoint published on a droplet: its service and host ports.
    public static func published(_ e: ServiceEntry, mac: MACAddress, subnet: CIDR?, ports: [PublishedHostPort]) -> Mizar_Transit_V1_Published {
        var m = Mizar_Transit_V1_Published()
        m.service = service(e, mac: mac, subnet: subnet)
        m.ports = ports.map { p in
            var pm = Mizar_Transit_V1_PublishedPort()
            pm.protocol = p.proto.name
            pm.hostPort = UInt32(p.hostPort)
            pm.port = UInt32(p.port)
            return pm
        }
        return m
    }

    /// A published service message's host ports, each a port number.
    public static func hostPorts(_ m: Mizar_Transit_V1_Published) throws(ValidationError) -> [PublishedHostPort] {
        var ports: [PublishedHostPort] = []
        for (i, p) in m.ports.enumerated() {
            let proto = try ServicePort.Proto(parsing: p.protocol, field: "ports[\(i)].protocol")
            guard let hostPort = UInt16(exactly: p.hostPort), let port = UInt16(exactly: p.port), port != 0 else {
                throw ValidationError(field: "ports[\(i)]", reason: "host_port \(p.hostPort) or port \(p.port) is not a port number")
            }
            ports.append(PublishedHostPort(proto: proto, hostPort: hostPort, port: port))
        }
        return ports
    }

    public static func serviceChange(_ r: Mizar_Transit_V1_PutServiceReply) -> ServiceChange {
        ServiceChange(changed: r.changed, removedBackends: r.removedBackends.compactMap { try? IPv4Address(parsing: $0) },
                      clientHosts: r.clientHosts.compactMap { try? IPv4Address(parsing: $0) })
    }

    public static func reply(_ c: ServiceChange) -> Mizar_Transit_V1_PutServiceReply {
        var r = Mizar_Transit_V1_PutServiceReply()
        r.changed = c.changed
        r.removedBackends = c.removedBackends.map { "\($0)" }
        r.clientHosts = c.clientHosts.map { "\($0)" }
        return r
    }
}

extension Mizar_Transit_V1_Host {
    public init(_ h: HostAddress) {
        self.init()
        ip = "\(h.ip)"
        mac = "\(h.mac)"
    }
}
