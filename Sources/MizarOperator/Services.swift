import MizarAPI
import MizarCore
import MizarTransitClient

/// Scaled endpoints (service VIPs). A VIP takes an address of its subnet
/// but no droplet and no interface: it lives on the subnet's bouncers,
/// which hold its ports, its live backends and the Maglev table. Changing
/// it calls those bouncers and, when backends went away, the client hosts
/// the bouncers taught flows to: nobody else.
extension Operator {
    /// Backends as they should be programmed: the named endpoints of the
    /// same VPC that are provisioned on a droplet, sorted by name.
    func liveBackends(of e: Endpoint) -> [EndpointBackend] {
        (e.spec.backends ?? []).compactMap { name in
            guard let b = endpoints.get(name), b.spec.vpc == e.spec.vpc, !b.spec.isScaled,
                  b.metadata.deletionTimestamp == nil, b.status?.common.phase == .provisioned,
                  let ip = b.status?.ip, let droplet = b.status?.droplet else { return nil }
            return EndpointBackend(name: name, ip: ip, droplet: droplet)
        }.sorted { $0.name < $1.name }
    }

    /// A client host's transitd, by the droplet address a bouncer recorded.
    func clientPeer(_ ip: IPv4Address) -> TransitPeer? {
        droplets.filter { $0.spec.ip == ip && isReady($0) }.first.flatMap { try? peer($0) }
    }

    func reconcileScaled(_ e: Endpoint, subnet: CIDR, vni: VNI, bouncers: [TransitPeer]) async throws -> Outcome {
        let backends = liveBackends(of: e)
        if Self.settled(e), e.status?.backends == backends { return .done }
        guard let (service, mac) = try serviceEntry(e, backends: backends, vni: vni) else {
            return .retry("claim not recorded")
        }
        let change = try await Provisioning.putService(service, mac: mac, subnet: subnet, on: bouncers,
                                                       clients: { [self] in clientPeer($0) }, via: pool)
        var next = e
        var status = next.status ?? EndpointStatus()
        status.backends = backends
        status.common.phase = .provisioned
        status.common.reason = backends.isEmpty ? "no backend is provisioned yet" : nil
        status.common.observedGeneration = e.metadata.generation
        if status.common.provisioningDelayMs == nil {
            status.common.provisioningDelayMs = Self.milliseconds(since: e.metadata.creationTimestamp)
        }
        next.status = status
        guard try await save(next, in: endpoints) != nil else { return .retry("conflict") }
        if !change.removedBackends.isEmpty {
            await event(.endpoint, e.name, .normal, "BackendsRemoved",
                        "\(change.removedBackends.map { "\($0)" }.joined(separator: ", ")) removed; flows to them forgotten on \(change.clientHosts.count) client host(s)")
        }
        return .done
    }

    /// What the bouncers hold for a scaled endpoint, and its MAC.
    func serviceEntry(_ e: Endpoint, backends: [EndpointBackend], vni: VNI) throws -> (ServiceEntry, MACAddress)? {
        guard let vip = e.status?.ip, let mac = e.status?.mac else { return nil }
        let programmed = try backends.compactMap { b -> ServiceBackend? in
            guard let home = try peer(named: b.droplet) else { return nil }
            return ServiceBackend(ip: b.ip, host: home.address)
        }
        let entry = ServiceEntry(vni: vni, vip: vip, ports: try e.spec.servicePorts(), backends: programmed)
        return (entry, mac)
    }

    /// Off the bouncers; the client hosts forget every flow to the VIP.
    func removeScaled(_ e: Endpoint, subnet: Subnet?, vni: VNI, ip: IPv4Address) async throws {
        let bs = try (subnet?.status?.bouncers ?? []).filter { isReady(named: $0) }.compactMap { try peer(named: $0) }
        try await Provisioning.deleteService(vni: vni, vip: ip, from: bs, clients: { [self] in clientPeer($0) }, via: pool)
    }

    /// Keeps the index of which scaled endpoints name which backends.
    func indexBackends(old: Endpoint?, new: Endpoint?) {
        let name = (new ?? old)!.name
        let before = Set(old?.spec.isScaled == true ? old?.spec.backends ?? [] : [])
        let after = Set(new?.spec.isScaled == true && new?.metadata.deletionTimestamp == nil ? new?.spec.backends ?? [] : [])
        guard before != after else { return }
        backendIndex.withLock { index in
            for b in before.subtracting(after) { index[b]?.remove(name) }
            for b in after.subtracting(before) { index[b, default: []].insert(name) }
        }
    }

    /// The scaled endpoints that name `backend`.
    func services(using backend: String) -> [String] {
        backendIndex.withLock { Array($0[backend] ?? []) }
    }
}
