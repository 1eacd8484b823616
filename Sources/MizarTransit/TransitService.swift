import GRPCCore
import Glibc
import MizarCore
import MizarDataplane
import MizarRPC
import MizarSystem

/// The gRPC face of a TransitHost: parses and validates every message into
/// Mizar's types (errors name the field), calls the host, and answers with
/// the status the error calls for.
public struct TransitService: Mizar_Transit_V1_Transit.SimpleServiceProtocol {
    let host: TransitHost

    public init(host: TransitHost) { self.host = host }

    /// Runs one call; every failure becomes an RPCError with a precise code.
    private func call<R>(_ body: () async throws -> R) async throws -> R {
        do { return try await body() } catch let e as RPCError { throw e } catch { throw TransitError.from(error).rpcError }
    }

    public func getDroplet(request: Mizar_Transit_V1_GetDropletRequest, context: ServerContext) async throws -> Mizar_Transit_V1_Droplet {
        await host.dropletInfo()
    }

    // MARK: VPCs

    public func putVPC(request: Mizar_Transit_V1_VPC, context: ServerContext) async throws -> Mizar_Transit_V1_PutReply {
        try await call {
            let e = VPCEntry(vni: try VNI(request.vni), dividers: try hosts(request.dividers, "dividers"), isDivider: request.isDivider)
            return .changed(try await host.putVPC(e))
        }
    }

    public func deleteVPC(request: Mizar_Transit_V1_VPCKey, context: ServerContext) async throws -> Mizar_Transit_V1_DeleteReply {
        try await call { .existed(try await host.deleteVPC(try VNI(request.vni))) }
    }

    public func listVPCs(request: Mizar_Transit_V1_ListRequest, context: ServerContext) async throws -> Mizar_Transit_V1_VPCList {
        try await call {
            var list = Mizar_Transit_V1_VPCList()
            list.vpcs = try await host.listVPCs(vni: try filter(request)).map { e in
                var m = Mizar_Transit_V1_VPC()
                m.vni = e.vni.value
                m.dividers = e.dividers.map(Mizar_Transit_V1_Host.init)
                m.isDivider = e.isDivider
                return m
            }
            return list
        }
    }

    // MARK: Subnets

    public func putSubnet(request: Mizar_Transit_V1_Subnet, context: ServerContext) async throws -> Mizar_Transit_V1_PutReply {
        try await call {
            let e = SubnetEntry(vni: try VNI(request.vni), cidr: try CIDR(parsing: request.cidr),
                                bouncers: try hosts(request.bouncers, "bouncers"), isBouncer: request.isBouncer)
            return .changed(try await host.putSubnet(e))
        }
    }

    public func deleteSubnet(request: Mizar_Transit_V1_SubnetKey, context: ServerContext) async throws -> Mizar_Transit_V1_DeleteReply {
        try await call { .existed(try await host.deleteSubnet(try VNI(request.vni), try CIDR(parsing: request.cidr))) }
    }

    public func listSubnets(request: Mizar_Transit_V1_ListRequest, context: ServerContext) async throws -> Mizar_Transit_V1_SubnetList {
        try await call {
            var list = Mizar_Transit_V1_SubnetList()
            list.subnets = try await host.listSubnets(vni: try filter(request)).map { e in
                var m = Mizar_Transit_V1_Subnet()
                m.vni = e.vni.value
                m.cidr = "\(e.cidr)"
                m.bouncers = e.bouncers.map(Mizar_Transit_V1_Host.init)
                m.isBouncer = e.isBouncer
                return m
            }
            return list
        }
    }

    // MARK: The bouncer table

    public func putEndpoint(request: Mizar_Transit_V1_Endpoint, context: ServerContext) async throws -> Mizar_Transit_V1_PutReply {
        try await call {
            guard request.hasHost else { throw ValidationError(field: "host", reason: "is missing; expected the endpoint's host (ip and mac)") }
            let kind: EndpointKind = switch request.kind {
            case .unspecified, .simple: .simple
            case .scaled: .scaled
            case .host: .host
            case .gateway: .gateway
            case .UNRECOGNIZED(let n): throw ValidationError(field: "kind", reason: "\(n) is not an endpoint kind")
            }
            let e = EndpointEntry(vni: try VNI(request.vni), ip: try unicast(request.ip, "ip"), mac: try endpointMAC(request.mac),
                                  host: try hostAddress(request.host, "host"), kind: kind)
            return .changed(try await host.putEndpoint(e, subnet: try CIDR(parsing: request.subnet, field: "subnet")))
        }
    }

    public func deleteEndpoint(request: Mizar_Transit_V1_EndpointKey, context: ServerContext) async throws -> Mizar_Transit_V1_DeleteReply {
        try await call { .existed(try await host.deleteEndpoint(try VNI(request.vni), try IPv4Address(parsing: request.ip))) }
    }

    public func listEndpoints(request: Mizar_Transit_V1_ListRequest, context: ServerContext) async throws -> Mizar_Transit_V1_EndpointList {
        try await call {
            var list = Mizar_Transit_V1_EndpointList()
            list.endpoints = try await host.listEndpoints(vni: try filter(request)).map { e, subnet in
                var m = Mizar_Transit_V1_Endpoint()
                m.vni = e.vni.value
                m.ip = "\(e.ip)"
                m.mac = "\(e.mac)"
                m.host = .init(e.host)
                m.kind = Mizar_Transit_V1_EndpointKind(rawValue: Int(e.kind.rawValue)) ?? .simple
                m.subnet = subnet.map { "\($0)" } ?? ""
                return m
            }
            return list
        }
    }

    // MARK: Endpoint interfaces

    public func createEndpointInterface(request: Mizar_Transit_V1_EndpointInterface, context: ServerContext) async throws
        -> Mizar_Transit_V1_EndpointInterfaceReply {
        try await call {
            let subnet = try CIDR(parsing: request.subnet, field: "subnet")
            let ip = try unicast(request.ip, "ip")
            let gateway = request.gateway.isEmpty
                ? IPv4Address(value: subnet.address.value + 1) : try IPv4Address(parsing: request.gateway, field: "gateway")
            guard subnet.contains(gateway), gateway != ip else {
                throw ValidationError(field: "gateway", reason: "\(gateway) must be another address of the subnet \(subnet)")
            }
            guard request.netns.isEmpty || request.netns.hasPrefix("/") else {
                throw ValidationError(field: "netns", reason: "\"\(request.netns)\" is not a path; expected a path such as /run/netns/NAME, or empty to park the interface")
            }
            let ifname = request.ifname.isEmpty ? "eth0" : request.ifname
            guard ifname.utf8.count <= 15, !ifname.contains("/"), !ifname.contains(" "), ifname != ".", ifname != ".." else {
                throw ValidationError(field: "ifname", reason: "\"\(ifname)\" is not an interface name (at most 15 characters, no '/' or spaces)")
            }
            let mtu = request.mtu == 0 ? host.defaultEndpointMTU : request.mtu
            let spec = EndpointInterfaceSpec(vni: try VNI(request.vni), ip: ip, mac: try endpointMAC(request.mac), subnet: subnet,
                                             gateway: gateway, netns: request.netns, ifname: ifname, mtu: mtu)
            let (info, changed) = try await host.createEndpointInterface(spec)
            var reply = Mizar_Transit_V1_EndpointInterfaceReply()
            reply.interface = info
            reply.changed = changed
            return reply
        }
    }

    public func deleteEndpointInterface(request: Mizar_Transit_V1_EndpointKey, context: ServerContext) async throws -> Mizar_Transit_V1_DeleteReply {
        try await call { .existed(try await host.deleteEndpointInterface(try VNI(request.vni), try IPv4Address(parsing: request.ip))) }
    }

    public func listEndpointInterfaces(request: Mizar_Transit_V1_ListRequest, context: ServerContext) async throws
        -> Mizar_Transit_V1_EndpointInterfaceList {
        try await call {
            var list = Mizar_Transit_V1_EndpointInterfaceList()
            list.interfaces = await host.listEndpointInterfaces(vni: try filter(request))
            return list
        }
    }

    // MARK: Cache and counters

    public func listHostCache(request: Mizar_Transit_V1_ListRequest, context: ServerContext) async throws -> Mizar_Transit_V1_HostCacheList {
        try await call {
            let nowNs = monotonicNanoseconds()
            var list = Mizar_Transit_V1_HostCacheList()
            list.entries = try await host.listHostCache(vni: try filter(request)).map { c in
                var m = Mizar_Transit_V1_CachedHost()
                m.vni = c.vni.value
                m.ip = "\(c.ip)"
                m.host = .init(c.host)
                m.ageSeconds = nowNs > c.learnedNs ? Double(nowNs - c.learnedNs) / 1e9 : 0
                return m
            }
            return list
        }
    }

    public func invalidateHostCache(request: Mizar_Transit_V1_EndpointKey, context: ServerContext) async throws -> Mizar_Transit_V1_DeleteReply {
        try await call { .existed(try await host.invalidateHostCache(try VNI(request.vni), try IPv4Address(parsing: request.ip))) }
    }

    public func getCounters(request: Mizar_Transit_V1_GetCountersRequest, context: ServerContext) async throws -> Mizar_Transit_V1_Counters {
        try await call {
            let (counters, drops) = try await host.counters()
            func message(_ pair: (String, CounterValue)) -> Mizar_Transit_V1_Counter {
                var m = Mizar_Transit_V1_Counter()
                m.name = pair.0
                m.packets = pair.1.packets
                m.bytes = pair.1.bytes
                return m
            }
            var reply = Mizar_Transit_V1_Counters()
            reply.counters = counters.map(message)
            reply.drops = drops.map(message)
            return reply
        }
    }
}

// MARK: - Parsing, with the field in every error

func filter(_ request: Mizar_Transit_V1_ListRequest) throws -> VNI? {
    request.vni == 0 ? nil : try VNI(request.vni)
}

func unicast(_ text: String, _ field: String) throws -> IPv4Address {
    let ip = try IPv4Address(parsing: text, field: field)
    guard ip != .zero, !ip.isMulticast, !ip.isLimitedBroadcast else {
        throw ValidationError(field: field, reason: "\(ip) is not a unicast address")
    }
    return ip
}

func endpointMAC(_ text: String) throws -> MACAddress {
    let mac = try MACAddress(parsing: text, field: "mac")
    guard mac != .zero, !mac.isMulticast else {
        throw ValidationError(field: "mac", reason: "\(mac) is not a unicast MAC address")
    }
    return mac
}

func hostAddress(_ h: Mizar_Transit_V1_Host, _ field: String) throws -> HostAddress {
    HostAddress(ip: try unicast(h.ip, "\(field).ip"), mac: try MACAddress(parsing: h.mac, field: "\(field).mac"))
}

func hosts(_ list: [Mizar_Transit_V1_Host], _ field: String) throws -> [HostAddress] {
    try list.enumerated().map { try hostAddress($1, "\(field)[\($0)]") }
}

extension Mizar_Transit_V1_Host {
    public init(_ h: HostAddress) {
        self.init()
        ip = "\(h.ip)"
        mac = "\(h.mac)"
    }
}

extension Mizar_Transit_V1_PutReply {
    static func changed(_ c: Bool) -> Self {
        var r = Self()
        r.changed = c
        return r
    }
}

extension Mizar_Transit_V1_DeleteReply {
    static func existed(_ e: Bool) -> Self {
        var r = Self()
        r.existed = e
        return r
    }
}
