import GRPCCore
import Glibc
import MizarCore
import MizarDataplane
import MizarRPC
import MizarSystem
import MizarTransitClient

/// The gRPC face of a TransitHost: parses and validates every message into
/// Mizar's types (errors name the field), calls the host, and answers with
/// the status the error calls for.
public struct TransitService: Mizar_Transit_V1_Transit.SimpleServiceProtocol {
    let host: any TransitHosting
    /// The droplet's flow and drop stream; nil: WatchFlows is unavailable.
    let flows: FlowEvents?
    /// The real host and its explain build; nil: Explain is unavailable.
    let explaining: (host: TransitHost, explainer: Explainer)?

    public init(host: some TransitHosting, flows: FlowEvents? = nil, explaining: (host: TransitHost, explainer: Explainer)? = nil) {
        self.host = host
        self.flows = flows
        self.explaining = explaining
    }

    // MARK: Explain

    public func explain(request: Mizar_Transit_V1_ExplainRequest, context: ServerContext) async throws -> Mizar_Transit_V1_ExplainReply {
        guard let explaining else { throw RPCError(code: .unavailable, message: "this transitd cannot explain (no explain build loaded)") }
        return try await call {
            guard request.frame.count >= 14, request.frame.count <= 9216 else {
                throw ValidationError(field: "frame", reason: "\(request.frame.count) bytes: an Ethernet frame is 14 to 9216 bytes")
            }
            var from: (vni: VNI, ip: IPv4Address)?
            if !request.endpointIp.isEmpty {
                from = (try VNI(request.vni, field: "vni"), try IPv4Address(parsing: request.endpointIp, field: "endpoint_ip"))
            }
            return try await explaining.host.explain(Array(request.frame), from: from, with: explaining.explainer)
        }
    }

    // MARK: The flow and drop stream

    public func watchFlows(request: Mizar_Transit_V1_WatchFlowsRequest, response: RPCWriter<Mizar_Transit_V1_FlowEvent>,
                           context: ServerContext) async throws {
        guard let flows else { throw RPCError(code: .unavailable, message: "this transitd keeps no flow events (--flow-events 0)") }
        let filter = try await call { try FlowFilter(request) }
        guard request.last <= 1_000_000 else { throw RPCError(code: .invalidArgument, message: "last: \(request.last) is more than 1000000") }
        let (backlog, stream, id) = flows.watch(filter, last: Int(request.last), follow: request.follow, everyPacket: request.everyPacket)
        try await response.write(contentsOf: backlog)
        guard let stream, let id else { return }
        defer { flows.unfollow(id) }
        // gRPC tells a cancelled call (the caller gone) through the context,
        // not by cancelling this task: whichever ends first ends both.
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { for await event in stream { try await response.write(event) } }
            group.addTask { try await context.cancellation.cancelled }
            _ = try await group.next()
            group.cancelAll()
        }
    }

    /// Runs one call; every failure becomes an RPCError with a precise code.
    private func call<R>(_ body: () async throws -> R) async throws -> R {
        do { return try await body() } catch let e as RPCError { throw e } catch { throw TransitError.from(error).rpcError }
    }

    public func getDroplet(request: Mizar_Transit_V1_GetDropletRequest, context: ServerContext) async throws -> Mizar_Transit_V1_Droplet {
        await host.dropletInfo()
    }

    // MARK: The droplet table

    public func putDroplets(request: Mizar_Transit_V1_DropletTable, context: ServerContext) async throws -> Mizar_Transit_V1_PutReply {
        try await call { .changed(try await host.putDroplets(try Messages.hosts(request.droplets, "droplets"), replace: request.replace)) }
    }

    public func deleteDroplet(request: Mizar_Transit_V1_Host, context: ServerContext) async throws -> Mizar_Transit_V1_DeleteReply {
        try await call { .existed(try await host.deleteDroplet(try IPv4Address(parsing: request.ip, field: "ip"))) }
    }

    public func listDroplets(request: Mizar_Transit_V1_ListRequest, context: ServerContext) async throws -> Mizar_Transit_V1_DropletTable {
        try await call {
            var table = Mizar_Transit_V1_DropletTable()
            table.droplets = try await host.listDroplets().map(Mizar_Transit_V1_Host.init)
            return table
        }
    }

    // MARK: VPCs

    public func putVPC(request: Mizar_Transit_V1_VPC, context: ServerContext) async throws -> Mizar_Transit_V1_PutReply {
        try await call {
            let cidr = request.cidr.isEmpty ? nil : try CIDR(parsing: request.cidr, field: "cidr")
            let e = VPCEntry(vni: try VNI(request.vni), dividers: try Messages.hosts(request.dividers, "dividers"),
                             isDivider: request.isDivider, cidr: cidr, egress: request.egress)
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
                m.cidr = e.cidr.map { "\($0)" } ?? ""
                m.egress = e.egress
                return m
            }
            return list
        }
    }

    // MARK: Subnets

    public func putSubnet(request: Mizar_Transit_V1_Subnet, context: ServerContext) async throws -> Mizar_Transit_V1_PutReply {
        try await call {
            let e = SubnetEntry(vni: try VNI(request.vni), cidr: try CIDR(parsing: request.cidr),
                                bouncers: try Messages.hosts(request.bouncers, "bouncers"), isBouncer: request.isBouncer)
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
            let e = EndpointEntry(vni: try VNI(request.vni), ip: try Messages.unicast(request.ip, "ip"), mac: try Messages.endpointMAC(request.mac),
                                  host: try Messages.host(request.host, "host"), kind: kind)
            let policy = request.hasPolicy ? try PolicyMessages.endpoint(request.policy, "policy").entry : nil
            let sets = try PolicyMessages.sets(request.policySets, "policy_sets")
            return .changed(try await host.putEndpoint(e, subnet: try CIDR(parsing: request.subnet, field: "subnet"), policy: policy, sets: sets))
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
            let ip = try Messages.unicast(request.ip, "ip")
            let gateway = request.gateway.isEmpty ? subnet.gateway : try IPv4Address(parsing: request.gateway, field: "gateway")
            guard subnet.contains(gateway), gateway != ip else {
                throw ValidationError(field: "gateway", reason: "\(gateway) must be another address of the subnet \(subnet)")
            }
            guard request.netns.isEmpty || request.netns.hasPrefix("/") else {
                throw ValidationError(field: "netns", reason: "\"\(request.netns)\" is not a path; expected a path such as /run/netns/NAME, or empty to park the interface")
            }
            let ifname = request.ifname.isEmpty ? "eth0" : request.ifname
            try validateInterfaceName(ifname, field: "ifname")
            let mtu = request.mtu == 0 ? host.defaultEndpointMTU : request.mtu
            let spec = EndpointInterfaceSpec(vni: try VNI(request.vni), ip: ip, mac: try Messages.endpointMAC(request.mac), subnet: subnet,
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

// MARK: - Scaled endpoints

extension TransitService {
    public func putService(request: Mizar_Transit_V1_Service, context: ServerContext) async throws -> Mizar_Transit_V1_PutServiceReply {
        try await call {
            let (entry, mac, subnet) = try Messages.service(request)
            return Messages.reply(try await host.putService(entry, mac: mac, subnet: subnet))
        }
    }

    public func deleteService(request: Mizar_Transit_V1_EndpointKey, context: ServerContext) async throws -> Mizar_Transit_V1_PutServiceReply {
        try await call {
            Messages.reply(try await host.deleteService(try VNI(request.vni), try IPv4Address(parsing: request.ip, field: "ip")))
        }
    }

    public func getService(request: Mizar_Transit_V1_EndpointKey, context: ServerContext) async throws -> Mizar_Transit_V1_ServiceInfo {
        try await call {
            let vni = try VNI(request.vni), vip = try IPv4Address(parsing: request.ip, field: "ip")
            guard let state = try await host.serviceState(vni, vip) else {
                throw TransitError(.notFound, field: "ip", "no service \(vip) in VPC \(vni) on this host")
            }
            return ServiceMessages.info(state)
        }
    }

    public func listServices(request: Mizar_Transit_V1_ListRequest, context: ServerContext) async throws -> Mizar_Transit_V1_ServiceList {
        try await call {
            var list = Mizar_Transit_V1_ServiceList()
            list.services = try await host.listServices(vni: try filter(request)).map(ServiceMessages.info)
            return list
        }
    }

    public func listServiceFlows(request: Mizar_Transit_V1_ListRequest, context: ServerContext) async throws -> Mizar_Transit_V1_ServiceFlowList {
        try await call {
            var list = Mizar_Transit_V1_ServiceFlowList()
            list.flows = try await host.serviceFlows(vni: try filter(request)).map { f in
                var m = Mizar_Transit_V1_ServiceFlow()
                m.vni = f.vni.value
                m.src = "\(f.src)"
                m.sport = UInt32(f.sport)
                m.dst = "\(f.dst)"
                m.dport = UInt32(f.dport)
                m.protocol = Messages.protocolName(f.proto)
                m.toIp = "\(f.toIP)"
                m.toPort = UInt32(f.toPort)
                m.reverse = f.reverse
                m.vip = "\(f.vip)"
                m.backend = "\(f.backend)"
                return m
            }
            return list
        }
    }

    public func invalidateServiceFlows(request: Mizar_Transit_V1_InvalidateServiceFlowsRequest,
                                       context: ServerContext) async throws -> Mizar_Transit_V1_InvalidateServiceFlowsReply {
        try await call {
            let vni = try VNI(request.vni), vip = try Messages.unicast(request.vip, "vip")
            let backends = try request.backends.enumerated().map { try Messages.unicast($1, "backends[\($0)]") }
            var reply = Mizar_Transit_V1_InvalidateServiceFlowsReply()
            reply.removed = UInt32(try await host.invalidateServiceFlows(vni, vip: vip, backends: backends.isEmpty ? nil : Set(backends)))
            return reply
        }
    }
}

/// What one bouncer holds of a service, as the API shows it.
enum ServiceMessages {
    static func info(_ s: ServiceState) -> Mizar_Transit_V1_ServiceInfo {
        var m = Mizar_Transit_V1_ServiceInfo()
        m.service = Messages.service(s.entry, mac: s.mac, subnet: nil)
        m.tableSize = UInt32(s.summary.size)
        m.backends = s.entry.backends.map { b in
            var bm = Mizar_Transit_V1_BackendInfo()
            bm.ip = "\(b.ip)"
            bm.host = .init(b.host)
            bm.tableEntries = UInt32(s.summary.entries[b.ip] ?? 0)
            bm.flows = s.flows[b.ip] ?? 0
            return bm
        }
        m.clientHosts = s.clientHosts.map { "\($0)" }
        return m
    }
}

// MARK: - Network policy

extension TransitService {
    public func putPolicy(request: Mizar_Transit_V1_PolicyUpdate, context: ServerContext) async throws -> Mizar_Transit_V1_PolicyReply {
        try await call {
            var u = PolicyUpdateSpec()
            u.sets = try PolicyMessages.sets(request.sets, "sets")
            for (i, e) in request.endpoints.enumerated() { u.endpoints.append(try PolicyMessages.endpoint(e, "endpoints[\(i)]")) }
            for (i, k) in request.removed.enumerated() {
                u.removed.append((try VNI(k.vni), try Messages.unicast(k.ip, "removed[\(i)].ip")))
            }
            for (i, b) in request.blocks.enumerated() { u.blocks.append(try PolicyMessages.blocks(b, "blocks[\(i)]")) }
            let (changed, revoked) = try await host.putPolicy(u)
            var r = Mizar_Transit_V1_PolicyReply()
            r.changed = UInt32(changed)
            r.revoked = UInt32(revoked)
            return r
        }
    }

    public func listPolicy(request: Mizar_Transit_V1_ListRequest, context: ServerContext) async throws -> Mizar_Transit_V1_PolicyState {
        try await call {
            let state = try await host.policyState(vni: try filter(request))
            var m = Mizar_Transit_V1_PolicyState()
            m.endpoints = state.endpoints.map { PolicyMessages.message($0, revoke: false) }
            m.sets = state.sets.map(PolicyMessages.message)
            m.blocks = state.blocks.map { PolicyMessages.message(vni: $0.vni, $0.prefixes) }
            return m
        }
    }

    public func listConntrack(request: Mizar_Transit_V1_ListRequest, context: ServerContext) async throws -> Mizar_Transit_V1_ConntrackList {
        try await call {
            let now = Dataplane.nowNs
            var list = Mizar_Transit_V1_ConntrackList()
            list.entries = try await host.conntrack(vni: try filter(request)).map { e in
                var m = Mizar_Transit_V1_ConntrackEntry()
                m.vni = e.vni.value
                m.src = "\(e.openedByB ? e.b : e.a)"
                m.srcPort = UInt32(e.openedByB ? e.bPort : e.aPort)
                m.dst = "\(e.openedByB ? e.a : e.b)"
                m.dstPort = UInt32(e.openedByB ? e.aPort : e.bPort)
                m.protocol = Messages.protocolName(e.proto)
                m.state = e.stateName
                m.admittedS = now > e.admittedNs ? Double(now - e.admittedNs) / 1e9 : 0
                m.idleS = now > e.seenNs ? Double(now - e.seenNs) / 1e9 : 0
                return m
            }
            return list
        }
    }

    public func listSNAT(request: Mizar_Transit_V1_ListRequest, context: ServerContext) async throws -> Mizar_Transit_V1_SNATList {
        try await call {
            let now = Dataplane.nowNs
            var list = Mizar_Transit_V1_SNATList()
            let table = try await host.snat(vni: try filter(request))
            list.address = "\(table.address)"
            list.ports = table.ports.map { "\($0.lowerBound)-\($0.upperBound)" } ?? ""
            list.entries = table.entries.sorted { ($0.vni.value, $0.endpoint, $0.endpointPort) < ($1.vni.value, $1.endpoint, $1.endpointPort) }.map { e in
                var m = Mizar_Transit_V1_SNATEntry()
                m.vni = e.vni.value
                m.endpoint = "\(e.endpoint)"
                m.endpointPort = UInt32(e.endpointPort)
                m.remote = "\(e.remote)"
                m.remotePort = UInt32(e.remotePort)
                m.protocol = Messages.protocolName(e.proto)
                m.port = UInt32(e.port)
                m.state = e.stateName
                m.ageS = now > e.createdNs ? Double(now - e.createdNs) / 1e9 : 0
                m.idleS = now > e.seenNs ? Double(now - e.seenNs) / 1e9 : 0
                return m
            }
            return list
        }
    }

    public func putPublished(request: Mizar_Transit_V1_Published, context: ServerContext) async throws -> Mizar_Transit_V1_PutReply {
        try await call {
            guard request.hasService else { throw ValidationError(field: "service", reason: "is missing; expected the service to publish") }
            let (entry, _, _) = try Messages.service(request.service)
            let ports = try Messages.hostPorts(request).map {
                PublishedPort(proto: $0.proto, port: $0.hostPort, vni: entry.vni, vip: entry.vip, vipPort: $0.port)
            }
            return .changed(try await host.putPublished(PublishedService(entry: entry, ports: ports)))
        }
    }

    public func deletePublished(request: Mizar_Transit_V1_EndpointKey, context: ServerContext) async throws -> Mizar_Transit_V1_DeleteReply {
        try await call {
            .existed(try await host.deletePublished(try VNI(request.vni), try IPv4Address(parsing: request.ip, field: "ip")))
        }
    }

    public func listPublished(request: Mizar_Transit_V1_ListRequest, context: ServerContext) async throws -> Mizar_Transit_V1_PublishedList {
        try await call {
            let now = Dataplane.nowNs
            let (services, flows) = try await host.listPublished(vni: try filter(request))
            var list = Mizar_Transit_V1_PublishedList()
            list.published = services.map { s in
                Messages.published(s.entry, mac: .zero, subnet: nil,
                                   ports: s.ports.map { PublishedHostPort(proto: $0.proto, hostPort: $0.port, port: $0.vipPort) })
            }
            list.flows = flows.map { f in
                var m = Mizar_Transit_V1_PublishedFlow()
                m.client = "\(f.client)"
                m.clientPort = UInt32(f.clientPort)
                m.hostPort = UInt32(f.port)
                m.protocol = Messages.protocolName(f.proto)
                m.vni = f.vni.value
                m.backend = "\(f.backend)"
                m.backendPort = UInt32(f.backendPort)
                m.backendHost = "\(f.backendHost)"
                m.natPort = UInt32(f.natPort)
                m.idleS = now > f.seenNs ? Double(now - f.seenNs) / 1e9 : 0
                m.state = f.stateName
                return m
            }
            return list
        }
    }
}
