import MizarCore
import MizarDataplane

// Published services on this droplet (docs/egress.md): a scaled endpoint's
// service entry and the host ports that stand for its ports.

/// A scaled endpoint published here: its service and host ports.
public struct PublishedService: Sendable, Equatable {
    public var entry: ServiceEntry
    public var ports: [PublishedPort]

    public init(entry: ServiceEntry, ports: [PublishedPort]) {
        self.entry = entry
        self.ports = ports
    }
}

extension TransitHost {
    /// Publishes a scaled endpoint on this droplet: its service (with the
    /// Maglev table, computed here) and its host ports, replacing what was
    /// published for that VIP; flows of backends no longer there are
    /// forgotten. False when nothing changed.
    public func putPublished(_ p: PublishedService) throws -> Bool {
        let e = p.entry
        try e.validate()
        guard try dataplane.vpc(e.vni) != nil else {
            throw TransitError(.failedPrecondition, field: "service.vni", "VPC \(e.vni) is not known on this host")
        }
        for (i, port) in p.ports.enumerated() {
            guard port.vni == e.vni, port.vip == e.vip else {
                throw TransitError(.invalidArgument, field: "ports[\(i)]", "names another service than \(e.vip) in VPC \(e.vni)")
            }
            guard PublishedHostPort.range.contains(port.port) else {
                throw TransitError(.invalidArgument, field: "ports[\(i)].host_port",
                                   "\(port.port) is outside \(PublishedHostPort.range.lowerBound)-\(PublishedHostPort.range.upperBound)")
            }
            guard e.ports.contains(where: { $0.proto == port.proto && $0.port == port.vipPort }) else {
                throw TransitError(.invalidArgument, field: "ports[\(i)].port", "\(port.proto) \(port.vipPort) is not a port of the service")
            }
        }
        let existing = try dataplane.publishedPorts()
        for port in p.ports {
            if let other = existing.first(where: { $0.proto == port.proto && $0.port == port.port && ($0.vni != e.vni || $0.vip != e.vip) }) {
                throw TransitError(.alreadyExists, field: "ports", "\(port.proto) \(port.port) is published here for \(other.vip) in VPC \(other.vni)")
            }
        }
        let mine = existing.filter { $0.vni == e.vni && $0.vip == e.vip }
        if try dataplane.service(e.vni, e.vip)?.entry == e, Set(mine) == Set(p.ports) {
            // (A bouncer of the service here may have put this entry
            // already; flows to backends it no longer has go all the same.)
            _ = try forgetPublishedFlows(of: e)
            return false
        }
        try dataplane.putService(e)
        for old in mine where !p.ports.contains(old) { try dataplane.deletePublished(old.proto, old.port) }
        for port in p.ports { try dataplane.putPublished(port) }
        let forgotten = try forgetPublishedFlows(of: e)
        logger.info("published", metadata: [
            "vpc.vni": "\(e.vni)", "service.vip": "\(e.vip)", "service.backends": "\(e.backends.count)",
            "published.ports": "\(p.ports.map { "\($0.proto)/\($0.port)" }.joined(separator: ","))", "published.forgotten": "\(forgotten)",
        ])
        return true
    }

    /// Forgets the published flows of the service's host ports here that
    /// go to a backend it no longer has; how many went.
    func forgetPublishedFlows(of e: ServiceEntry) throws -> Int {
        let hostPorts = Set(try dataplane.publishedPorts().filter { $0.vni == e.vni && $0.vip == e.vip }.map { "\($0.proto.rawValue)/\($0.port)" })
        guard !hostPorts.isEmpty else { return 0 }
        let backends = Set(e.backends.map(\.ip))
        return try dataplane.forgetPublishedFlows {
            $0.vni == e.vni && hostPorts.contains("\($0.proto)/\($0.port)") && !backends.contains($0.backend)
        }
    }

    /// Unpublishes a scaled endpoint here: its host ports and flows go, and
    /// its service entry unless this host bounces for its VIP.
    public func deletePublished(_ vni: VNI, _ vip: IPv4Address) throws -> Bool {
        let mine = try dataplane.publishedPorts().filter { $0.vni == vni && $0.vip == vip }
        for port in mine { try dataplane.deletePublished(port.proto, port.port) }
        if try dataplane.endpoint(vni, vip)?.kind != .scaled, try dataplane.service(vni, vip) != nil {
            try dataplane.deleteService(vni, vip)
        }
        if !mine.isEmpty { logger.info("unpublished", metadata: ["vpc.vni": "\(vni)", "service.vip": "\(vip)"]) }
        return !mine.isEmpty
    }

    public func sweepPublished() throws -> Int {
        try dataplane.sweepPublished()
    }

    public func listPublished(vni: VNI?) throws -> (services: [PublishedService], flows: [PublishedFlow]) {
        let ports = try dataplane.publishedPorts().filter { vni == nil || $0.vni == vni }
        let services = try Dictionary(grouping: ports) { "\($0.vni.value)/\($0.vip)" }.values.compactMap { group -> PublishedService? in
            guard let first = group.first, let entry = try dataplane.service(first.vni, first.vip)?.entry else { return nil }
            return PublishedService(entry: entry, ports: group.sorted { ($0.proto.rawValue, $0.port) < ($1.proto.rawValue, $1.port) })
        }.sorted { ($0.entry.vni.value, $0.entry.vip) < ($1.entry.vni.value, $1.entry.vip) }
        let flows = try dataplane.publishedFlowEntries().filter { vni == nil || $0.vni == vni }
            .sorted { ($0.port, $0.client, $0.clientPort) < ($1.port, $1.client, $1.clientPort) }
        return (services, flows)
    }
}
