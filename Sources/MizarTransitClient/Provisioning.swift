import GRPCCore
import MizarCore
import MizarRPC

/// A transitd to program: where its API listens and the droplet it serves.
public struct TransitPeer: Sendable, Equatable {
    public var target: TransitTarget
    public var ip: IPv4Address
    public var mac: MACAddress

    public init(target: TransitTarget, ip: IPv4Address, mac: MACAddress) {
        self.target = target
        self.ip = ip
        self.mac = mac
    }

    /// How tables name this droplet.
    public var address: HostAddress { HostAddress(ip: ip, mac: mac) }
    var host: Mizar_Transit_V1_Host { .init(address) }
}

/// The calls that turn VPCs, subnets and endpoints into programmed hosts,
/// written once for every caller (the management plane, `mizar-testbed`,
/// the tests). An endpoint touches exactly its own host and its subnet's
/// bouncers; VPCs and subnets go to every host that may carry their traffic.
public enum Provisioning {
    /// No call waits more than 5 s, and none waits for a host that cannot
    /// be reached: the caller decides whether to retry.
    public static let callOptions: CallOptions = {
        var o = CallOptions.defaults
        o.timeout = .seconds(5)
        o.waitForReady = false
        return o
    }()

    /// Hosts called at once by a call to many (a join reaching every
    /// droplet, a subnet reaching its VPC's holders).
    public static let fanOut = 64

    /// `call` on every host, `fanOut` at a time; every host is tried, and
    /// the first failure is thrown once all have answered (each call is
    /// idempotent: the caller retries the whole).
    static func onEach(_ hosts: [TransitPeer], _ call: @escaping @Sendable (TransitPeer) async throws -> Void) async throws {
        if hosts.count == 1 { return try await call(hosts[0]) }
        var failure: (any Error)?
        try await withThrowingTaskGroup(of: (any Error)?.self) { group in
            var next = hosts.startIndex
            func start() {
                let h = hosts[next]
                next += 1
                group.addTask { do { try await call(h); return nil } catch { return error } }
            }
            while next < hosts.endIndex && next - hosts.startIndex < fanOut { start() }
            while let result = try await group.next() {
                if failure == nil, let result { failure = result }
                if next < hosts.endIndex { start() }
            }
        }
        if let failure { throw failure }
    }

    /// The droplet table on each of `hosts`: `droplets` added (or, with
    /// `replace`, the table made exactly them).
    public static func putDroplets(_ droplets: [HostAddress], replace: Bool, on hosts: [TransitPeer],
                                   via connector: some TransitConnector = DirectConnector()) async throws {
        // Added to, the table goes in parts: a joiner's whole table (one
        // entry per host: about 3.7 MB at 100,000 hosts) would pass gRPC's
        // 4 MiB message limit a little further on. A replacement is one
        // message (the table must be exactly it).
        let parts = replace || droplets.isEmpty ? [droplets[...]] : chunks(droplets, of: dropletsPerCall)
        let tables = parts.map { part in
            var t = Mizar_Transit_V1_DropletTable()
            t.droplets = part.map(Mizar_Transit_V1_Host.init)
            t.replace = replace
            return t
        }
        try await onEach(hosts) { [tables] h in
            for t in tables { _ = try await connector.withClient(h.target) { try await $0.putDroplets(t, options: callOptions) } }
        }
    }

    /// `items` in consecutive slices of at most `size` (none when empty):
    /// what goes in one call of a table too large for one message.
    static func chunks<T>(_ items: [T], of size: Int) -> [ArraySlice<T>] {
        stride(from: 0, to: items.count, by: size).map { items[$0..<min($0 + size, items.count)] }
    }

    /// Droplet-table entries per PutDroplets call that adds (about 370 KB).
    public static let dropletsPerCall = 10_000

    /// A droplet gone: each of `hosts` drops its tunnel packets from now on.
    public static func deleteDroplet(_ ip: IPv4Address, on hosts: [TransitPeer],
                                     via connector: some TransitConnector = DirectConnector()) async throws {
        var h = Mizar_Transit_V1_Host()
        h.ip = "\(ip)"
        try await onEach(hosts) { [h] peer in _ = try await connector.withClient(peer.target) { try await $0.deleteDroplet(h, options: callOptions) } }
    }

    /// The VPC on each of `hosts`; `dividers` divide for it.
    /// `cidr` and `egress`: the VPC's address space and whether its
    /// endpoints may leave it through SNAT (no CIDR: nothing leaves).
    public static func putVPC(vni: VNI, dividers: [TransitPeer], cidr: CIDR? = nil, egress: Bool = false,
                              on hosts: [TransitPeer],
                              via connector: some TransitConnector = DirectConnector()) async throws {
        try await onEach(hosts) { h in
            var v = Mizar_Transit_V1_VPC()
            v.vni = vni.value
            v.dividers = dividers.map(\.host)
            v.isDivider = dividers.contains(h)
            v.cidr = cidr.map { "\($0)" } ?? ""
            v.egress = egress
            _ = try await connector.withClient(h.target) { try await $0.putVPC(v, options: callOptions) }
        }
    }

    /// The subnet on each of `hosts`; `bouncers` bounce for it.
    public static func putSubnet(vni: VNI, cidr: CIDR, bouncers: [TransitPeer], on hosts: [TransitPeer],
                                 via connector: some TransitConnector = DirectConnector()) async throws {
        try await onEach(hosts) { h in
            var s = Mizar_Transit_V1_Subnet()
            s.vni = vni.value
            s.cidr = "\(cidr)"
            s.bouncers = bouncers.map(\.host)
            s.isBouncer = bouncers.contains(h)
            _ = try await connector.withClient(h.target) { try await $0.putSubnet(s, options: callOptions) }
        }
    }

    /// Removes the VPC from each of `hosts` (with its subnets' entries).
    /// A host that still has subnets of the VPC the caller did not know it
    /// had (given while its record was being replaced, or kept through a
    /// restart) refuses; those are then found and deleted there, and the VPC
    /// after them (`releaseVPC`): a VPC's deletion never stops at them.
    public static func deleteVPC(vni: VNI, on hosts: [TransitPeer], via connector: some TransitConnector = DirectConnector()) async throws {
        try await onEach(hosts) { h in
            do { try await deleteVPCEntry(vni, on: h, via: connector) } catch let e as RPCError where e.code == .failedPrecondition {
                try await releaseVPC(vni: vni, from: h, via: connector)
            }
        }
    }

    private static func deleteVPCEntry(_ vni: VNI, on host: TransitPeer, via connector: some TransitConnector) async throws {
        var key = Mizar_Transit_V1_VPCKey()
        key.vni = vni.value
        _ = try await connector.withClient(host.target) { [key] in try await $0.deleteVPC(key, options: callOptions) }
    }

    /// Takes a VPC's tables off one host that no longer holds anything of
    /// it: the subnets of the VNI the host has (as it says: one
    /// `ListSubnets`), then the VPC's entry. Calls: the host's subnets of
    /// the VPC, plus two.
    public static func releaseVPC(vni: VNI, from host: TransitPeer,
                                  via connector: some TransitConnector = DirectConnector()) async throws {
        var r = Mizar_Transit_V1_ListRequest()
        r.vni = vni.value
        let held = try await connector.withClient(host.target) { try await $0.listSubnets(r, options: callOptions) }.subnets
        for s in held {
            try await deleteSubnet(vni: vni, cidr: try CIDR(parsing: s.cidr, field: "cidr"), on: [host], via: connector)
        }
        try await deleteVPCEntry(vni, on: host, via: connector)
    }

    /// Removes the subnet from each of `hosts`.
    public static func deleteSubnet(vni: VNI, cidr: CIDR, on hosts: [TransitPeer],
                                    via connector: some TransitConnector = DirectConnector()) async throws {
        var key = Mizar_Transit_V1_SubnetKey()
        key.vni = vni.value
        key.cidr = "\(cidr)"
        try await onEach(hosts) { [key] h in _ = try await connector.withClient(h.target) { try await $0.deleteSubnet(key, options: callOptions) } }
    }

    /// The endpoint's entry (where it lives, and its network policy entry:
    /// without one the bouncers hold none) on each of `bouncers`; for a
    /// bouncer added to a subnet that already has endpoints.
    public static func putEndpointEntry(vni: VNI, ip: IPv4Address, mac: MACAddress, subnet: CIDR, home: TransitPeer,
                                        policy: EndpointPolicyMessage? = nil,
                                        on bouncers: [TransitPeer], via connector: some TransitConnector = DirectConnector()) async throws {
        var entry = Mizar_Transit_V1_Endpoint()
        entry.vni = vni.value
        entry.ip = "\(ip)"
        entry.mac = "\(mac)"
        entry.subnet = "\(subnet)"
        entry.host = home.host
        if let policy {
            entry.policy = policy.entry
            entry.policySets = policy.sets
        }
        for b in bouncers {
            _ = try await connector.withClient(b.target) { try await $0.putEndpoint(entry, options: callOptions) }
        }
    }

    /// The endpoint's interface on its host and its entry (with its policy
    /// entry) on each bouncer of its subnet, concurrently: one call each,
    /// nothing else.
    @discardableResult
    public static func addEndpoint(vni: VNI, ip: IPv4Address, mac: MACAddress, subnet: CIDR, netns: String, ifname: String = "",
                                   policy: EndpointPolicyMessage? = nil, on home: TransitPeer, bouncers: [TransitPeer],
                                   via connector: some TransitConnector = DirectConnector()) async throws -> Mizar_Transit_V1_EndpointInterfaceInfo {
        var e = Mizar_Transit_V1_EndpointInterface()
        e.vni = vni.value
        e.ip = "\(ip)"
        e.mac = "\(mac)"
        e.subnet = "\(subnet)"
        e.netns = netns
        e.ifname = ifname
        // The host and the bouncers do not depend on each other: all at once.
        async let reply = connector.withClient(home.target) { try await $0.createEndpointInterface(e, options: callOptions) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for b in bouncers {
                group.addTask { try await putEndpointEntry(vni: vni, ip: ip, mac: mac, subnet: subnet, home: home, policy: policy, on: [b], via: connector) }
            }
            try await group.waitForAll()
        }
        return try await reply.interface
    }

    /// The reverse of addEndpoint: the interface on its host (which also
    /// forgets cached paths to it there), the entry on each bouncer.
    public static func removeEndpoint(vni: VNI, ip: IPv4Address, on home: TransitPeer, bouncers: [TransitPeer],
                                      via connector: some TransitConnector = DirectConnector()) async throws {
        let key = endpointKey(vni, ip)
        _ = try await connector.withClient(home.target) { try await $0.deleteEndpointInterface(key, options: callOptions) }
        try await removeEndpointEntry(vni: vni, ip: ip, from: bouncers, via: connector)
    }

    /// The endpoint's entry off each of `bouncers` (its host is gone).
    public static func removeEndpointEntry(vni: VNI, ip: IPv4Address, from bouncers: [TransitPeer],
                                           via connector: some TransitConnector = DirectConnector()) async throws {
        let key = endpointKey(vni, ip)
        for b in bouncers {
            _ = try await connector.withClient(b.target) { try await $0.deleteEndpoint(key, options: callOptions) }
        }
    }

    public static func endpointKey(_ vni: VNI, _ ip: IPv4Address) -> Mizar_Transit_V1_EndpointKey {
        var key = Mizar_Transit_V1_EndpointKey()
        key.vni = vni.value
        key.ip = "\(ip)"
        return key
    }
}

// MARK: - Scaled endpoints

extension Provisioning {
    /// The service on each bouncer of its subnet, concurrently. When
    /// backends went away, the client hosts the bouncers taught (and only
    /// those) forget their flows to them; `clients` finds a client host's
    /// transitd by its address (nil: not reachable now).
    @discardableResult
    public static func putService(_ service: ServiceEntry, mac: MACAddress, subnet: CIDR, on bouncers: [TransitPeer],
                                  clients: @Sendable (IPv4Address) -> TransitPeer?,
                                  via connector: some TransitConnector = DirectConnector()) async throws -> ServiceChange {
        let request = Messages.service(service, mac: mac, subnet: subnet)
        let changes = try await onEach(bouncers, via: connector) { try await $0.putService(request, options: callOptions) }
        return try await invalidate(vni: service.vni, vip: service.vip, changes: changes, clients: clients, via: connector)
    }

    /// The service off each of `bouncers`; every client host they taught
    /// forgets its flows to it.
    @discardableResult
    public static func deleteService(vni: VNI, vip: IPv4Address, from bouncers: [TransitPeer],
                                     clients: @Sendable (IPv4Address) -> TransitPeer?,
                                     via connector: some TransitConnector = DirectConnector()) async throws -> ServiceChange {
        let request = endpointKey(vni, vip)
        let changes = try await onEach(bouncers, via: connector) { try await $0.deleteService(request, options: callOptions) }
        return try await invalidate(vni: vni, vip: vip, changes: changes, clients: clients, via: connector, all: true)
    }

    /// One call to each bouncer, concurrently; the changes they report.
    static func onEach(_ bouncers: [TransitPeer], via connector: some TransitConnector,
                       _ call: @escaping @Sendable (AnyTransitClient) async throws -> Mizar_Transit_V1_PutServiceReply) async throws -> [ServiceChange] {
        try await withThrowingTaskGroup(of: ServiceChange.self) { group in
            for b in bouncers {
                group.addTask { Messages.serviceChange(try await connector.withClient(b.target, call)) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
    }

    static func invalidate(vni: VNI, vip: IPv4Address, changes: [ServiceChange],
                           clients: @Sendable (IPv4Address) -> TransitPeer?, via connector: some TransitConnector,
                           all: Bool = false) async throws -> ServiceChange {
        let removed = Set(changes.flatMap(\.removedBackends)).sorted { $0.value < $1.value }
        let hosts = Set(changes.flatMap(\.clientHosts)).sorted { $0.value < $1.value }
        let change = ServiceChange(changed: changes.contains(where: \.changed), removedBackends: removed, clientHosts: hosts)
        guard all || !removed.isEmpty else { return change }
        let request = {
            var r = Mizar_Transit_V1_InvalidateServiceFlowsRequest()
            r.vni = vni.value
            r.vip = "\(vip)"
            r.backends = all ? [] : removed.map { "\($0)" }
            return r
        }()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for h in hosts {
                guard let peer = clients(h) else { continue }
                group.addTask {
                    _ = try await connector.withClient(peer.target) { try await $0.invalidateServiceFlows(request, options: callOptions) }
                }
            }
            try await group.waitForAll()
        }
        return change
    }
}

// MARK: Published services

extension Provisioning {
    /// A scaled endpoint published on each of `hosts`, concurrently: its
    /// service (the hosts compute its Maglev table, as bouncers do) and
    /// its host ports. A host forgets the flows of backends no longer in
    /// the service.
    public static func putPublished(_ service: ServiceEntry, mac: MACAddress, subnet: CIDR, ports: [PublishedHostPort], on hosts: [TransitPeer],
                                    via connector: some TransitConnector = DirectConnector()) async throws {
        let request = Messages.published(service, mac: mac, subnet: subnet, ports: ports)
        try await onEach(hosts, via: connector) { _ = try await $0.putPublished(request, options: callOptions) }
    }

    /// The scaled endpoint unpublished from each of `hosts`, concurrently.
    public static func deletePublished(vni: VNI, vip: IPv4Address, from hosts: [TransitPeer],
                                       via connector: some TransitConnector = DirectConnector()) async throws {
        let key = endpointKey(vni, vip)
        try await onEach(hosts, via: connector) { _ = try await $0.deletePublished(key, options: callOptions) }
    }

    /// The services published on `host`, by VNI and VIP.
    public static func listPublished(on host: TransitPeer,
                                     via connector: some TransitConnector = DirectConnector()) async throws -> [ServiceKey] {
        let list = try await connector.withClient(host.target) { try await $0.listPublished(.init(), options: callOptions) }
        return list.published.compactMap { p in
            guard let vni = try? VNI(p.service.vni), let vip = try? IPv4Address(parsing: p.service.ip) else { return nil }
            return ServiceKey(vni: vni, vip: vip)
        }
    }

    /// One call to each host, concurrently.
    static func onEach(_ hosts: [TransitPeer], via connector: some TransitConnector,
                       _ call: @escaping @Sendable (AnyTransitClient) async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for h in hosts { group.addTask { try await connector.withClient(h.target, call) } }
            try await group.waitForAll()
        }
    }
}
