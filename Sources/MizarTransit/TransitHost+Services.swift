import MizarCore
import MizarDataplane

/// A service as one bouncer holds it, with its table and counters.
public struct ServiceState: Sendable {
    public var entry: ServiceEntry
    public var mac: MACAddress
    public var summary: MaglevSummary
    public var flows: [IPv4Address: UInt64]
    public var clientHosts: [IPv4Address]
}

extension TransitHost {
    /// Writes a scaled endpoint on one of its subnet's bouncers: the VIP's
    /// bouncer-table entry (so ARP for it is answered) and the service with
    /// its Maglev table, computed here. A host about to bounce for the
    /// subnet learns its services, as its endpoints, before it is told it
    /// bounces (and before any host sends to it): the subnet must be known
    /// here, its bouncer role need not be yet.
    public func putService(_ e: ServiceEntry, mac: MACAddress, subnet: CIDR) throws -> ServiceChange {
        try e.validate()
        try requireSubnet(e.vni, subnet, holding: e.vip)
        let existing = try dataplane.endpoint(e.vni, e.vip)
        if let existing, existing.kind != .scaled {
            throw TransitError(.alreadyExists, field: "ip", "\(e.vip) in VPC \(e.vni) is a \(existing.kind) endpoint, not a service")
        }
        let before = try dataplane.service(e.vni, e.vip)?.entry
        let vipEntry = EndpointEntry(vni: e.vni, ip: e.vip, mac: mac, host: HostAddress(ip: .zero, mac: .zero), kind: .scaled)
        if let before, before.ports == e.ports, before.backends == e.backends, existing == vipEntry {
            return ServiceChange(changed: false, removedBackends: [], clientHosts: [])
        }
        try dataplane.putService(e)
        try dataplane.upsertEndpoint(vipEntry)
        let removed = Set(before?.backends.map(\.ip) ?? []).subtracting(e.backends.map(\.ip))
        let clients = removed.isEmpty ? [] : try dataplane.serviceClients(e.vni, e.vip)
        if !removed.isEmpty {
            try dataplane.forgetService(e.vni, e.vip, backends: removed)
            // Published here too: its outside clients' flows to them go.
            _ = try forgetPublishedFlows(of: e)
        }
        logger.info("service put", metadata: [
            "vpc.vni": "\(e.vni)", "service.vip": "\(e.vip)", "service.backends": "\(e.backends.count)",
"service.removed": "\(removed.count)", "service.clients": "\(clients.count)",
        ])
        return ServiceChange(changed: true, removedBackends: removed.sorted { $0.value < $1.value },
                             clientHosts: clients.sorted { $0.value < $1.value })
    }

    public func deleteService(_ vni: VNI, _ vip: IPv4Address) throws -> ServiceChange {
        guard let before = try dataplane.service(vni, vip)?.entry else {
            if try dataplane.endpoint(vni, vip)?.kind == .scaled { try dataplane.deleteEndpoint(vni, vip) }
            return ServiceChange(changed: false, removedBackends: [], clientHosts: [])
        }
        let clients = try dataplane.serviceClients(vni, vip)
        // Published on this droplet's host ports too: the entry stays
        // for them (deletePublished takes it).
        if try !dataplane.publishedPorts().contains(where: { $0.vni == vni && $0.vip == vip }) {
            try dataplane.deleteService(vni, vip)
        }
        if try dataplane.endpoint(vni, vip)?.kind == .scaled { try dataplane.deleteEndpoint(vni, vip) }
        try dataplane.forgetService(vni, vip)
        logger.info("service deleted", metadata: ["vpc.vni": "\(vni)", "service.vip": "\(vip)", "service.clients": "\(clients.count)"])
        return ServiceChange(changed: true, removedBackends: before.backends.map(\.ip),
                             clientHosts: clients.sorted { $0.value < $1.value })
    }

    public func serviceState(_ vni: VNI, _ vip: IPv4Address) throws -> ServiceState? {
        guard let (entry, summary) = try dataplane.service(vni, vip) else { return nil }
        let mac = try dataplane.endpoint(vni, vip)?.mac ?? .zero
        return ServiceState(entry: entry, mac: mac, summary: summary, flows: try dataplane.serviceFlowCounts(vni, vip),
                            clientHosts: try dataplane.serviceClients(vni, vip).sorted { $0.value < $1.value })
    }

    public func listServices(vni: VNI?) throws -> [ServiceState] {
        try dataplane.serviceKeys().filter { vni == nil || $0.vni == vni }
            .sorted { ($0.vni, $0.vip) < ($1.vni, $1.vip) }
            .compactMap { try serviceState($0.vni, $0.vip) }
    }

    public func serviceFlows(vni: VNI?) throws -> [NATFlow] {
        try dataplane.natFlows().filter { vni == nil || $0.vni == vni }
            .sorted { ($0.vni, $0.src, $0.sport, $0.dst, $0.dport) < ($1.vni, $1.src, $1.sport, $1.dst, $1.dport) }
    }

    /// Drops services whose VIP `gone` matches, and every service flow
    /// whose VIP, backend or client it matches: a subnet or VPC going away
    /// leaves nothing of its services in this host's maps.
    func forgetServices(_ vni: VNI, _ gone: (IPv4Address) -> Bool) throws {
        for (v, vip) in try dataplane.serviceKeys() where v == vni && gone(vip) {
            try dataplane.deleteService(vni, vip)
            try dataplane.forgetService(vni, vip)
        }
        try dataplane.forgetServiceFlows(vni, touching: gone)
    }

    /// Forgets this host's flows to a service (or to some of its backends).
    public func invalidateServiceFlows(_ vni: VNI, vip: IPv4Address, backends: Set<IPv4Address>?) throws -> Int {
        let n = try dataplane.invalidateServiceFlows(vni, vip: vip, backends: backends)
        logger.info("service flows invalidated", metadata: [
            "vpc.vni": "\(vni)", "service.vip": "\(vip)", "service.backends": "\(backends.map { "\($0.count)" } ?? "all")",
            "flows.removed": "\(n)",
        ])
        return n
    }
}
