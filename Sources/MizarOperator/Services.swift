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
        droplets.objects(by: .ip, ip.description).filter(isReady).first.flatMap { try? peer($0) }
    }

    func reconcileScaled(_ e: Endpoint, subnet: CIDR, vni: VNI, bouncers: [TransitPeer]) async throws -> Outcome {
        let backends = liveBackends(of: e)
        let changed = !Self.settled(e) || e.status?.backends != backends
        let publish = publication(e, changed: changed)
        if !changed && publish.isSettled { return .done }
        guard let (service, mac) = try serviceEntry(e, backends: backends, vni: vni) else {
            return .retry("claim not recorded")
        }
        var change = ServiceChange(changed: false, removedBackends: [], clientHosts: [])
        if changed {
            change = try await Provisioning.putService(service, mac: mac, subnet: subnet, on: bouncers,
                                                       clients: { [self] in clientPeer($0) }, via: pool)
        }
        // Then its host ports: on the droplets that lack them or hold an
        // older service; off those no longer meant to have them.
        if !publish.put.isEmpty {
            // A droplet it is published on holds the VPC's tables.
            for d in publish.put.sorted() { try await ensureTables(of: e.spec.vpc, on: d) }
            try await Provisioning.putPublished(service, mac: mac, subnet: subnet, ports: try e.spec.hostPorts(),
                                                on: try publish.put.sorted().compactMap { try peer(named: $0) }, via: pool)
        }
        if !publish.remove.isEmpty, let vip = e.status?.ip {
            try await Provisioning.deletePublished(vni: vni, vip: vip, from: try publish.remove.sorted().compactMap { try peer(named: $0) }, via: pool)
        }
        var next = e
        var status = next.status ?? EndpointStatus()
        status.backends = backends
        status.published = publish.after.isEmpty ? nil : publish.after.sorted()
        status.common.phase = .provisioned
        status.common.reason = backends.isEmpty ? "no backend is provisioned yet" : nil
        status.common.observedGeneration = e.metadata.generation
        if status.common.provisioningDelayMs == nil {
            status.common.provisioningDelayMs = Self.milliseconds(since: e.metadata.creationTimestamp)
        }
        next.status = status
        guard try await save(next, in: endpoints) != nil else { return .retry("conflict") }
        if e.status?.common.provisioningDelayMs == nil, let ms = status.common.provisioningDelayMs { metrics.provisioned(milliseconds: ms) }
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

    /// Off the bouncers; the client hosts forget every flow to the VIP; off
    /// the droplets it is published on (one that is not ready now drops it
    /// when it is ready again: syncPublished).
    func removeScaled(_ e: Endpoint, subnet: Subnet?, vni: VNI, ip: IPv4Address) async throws {
        let bs = try (subnet?.status?.bouncers ?? []).filter { isReady(named: $0) }.compactMap { try peer(named: $0) }
        try await Provisioning.deleteService(vni: vni, vip: ip, from: bs, clients: { [self] in clientPeer($0) }, via: pool)
        let publishers = try (e.status?.published ?? []).filter { isReady(named: $0) }.compactMap { try peer(named: $0) }
        try await Provisioning.deletePublished(vni: vni, vip: ip, from: publishers, via: pool)
    }

    // MARK: Published on host ports

    /// Where a scaled endpoint's host ports go: `put` (ready droplets it is
    /// meant for that lack it, or all of them when its service changed),
    /// `remove` (ready droplets it is no longer meant for), and the
    /// droplets that hold it after (a droplet that is not ready keeps what
    /// it had until it is ready again).
    struct Publication {
        var put: Set<String>, remove: Set<String>, after: Set<String>, before: Set<String>
        var isSettled: Bool { put.isEmpty && remove.isEmpty && after == before }
    }

    /// The droplets a scaled endpoint's host ports are meant for: those it
    /// names (once they exist), or every droplet.
    /// Whether `droplet` is one of them, without a look at every droplet.
    func isPublishTarget(_ e: Endpoint, _ droplet: String) -> Bool {
        guard e.spec.isScaled, !e.spec.publishedPorts.isEmpty, e.metadata.deletionTimestamp == nil,
              let d = droplets.get(droplet), d.metadata.deletionTimestamp == nil else { return false }
        return e.spec.publishOn?.contains(droplet) ?? true
    }

    func publishTargets(_ e: Endpoint) -> Set<String> {
        guard e.spec.isScaled, !e.spec.publishedPorts.isEmpty, e.metadata.deletionTimestamp == nil else { return [] }
        if let named = e.spec.publishOn { return Set(named.filter { isPublishTarget(e, $0) }) }
        return Set(droplets.list().map(\.name).filter { isPublishTarget(e, $0) })
    }

    func publication(_ e: Endpoint, changed: Bool) -> Publication {
        let wanted = publishTargets(e)
        let before = Set(e.status?.published ?? [])
        // Not published anywhere, nor meant to be: no look at the droplets
        // (a scaled endpoint's reconcile stays independent of their number).
        if wanted.isEmpty && before.isEmpty { return Publication(put: [], remove: [], after: [], before: []) }
        let ready = Set(readyDroplets().map(\.name))
        let existing = Set(droplets.list().map(\.name))
        let reach = wanted.intersection(ready)
        let put = changed ? reach : reach.subtracting(before)
        let remove = before.subtracting(wanted).intersection(ready)
        let after = reach.union(before.subtracting(ready).intersection(existing))
        return Publication(put: put, remove: remove, after: after, before: before)
    }

    /// A droplet (ready again, or new) is given exactly the published
    /// services meant for it, as they are now; what it holds of anything
    /// else (unpublished, deleted while it was away) goes. Their endpoints
    /// record it once it is Ready (publishedEndpoints, woken then).
    func syncPublished(on host: TransitPeer, droplet name: String) async throws {
        let held = Set(try await Provisioning.listPublished(on: host, via: pool))
        var meant = Set<ServiceKey>()
        for e in publishedEndpoints() where publishTargets(e).contains(name) {
            guard let sub = subnets.get(e.spec.subnet), let vni = sub.status?.vni, let vip = e.status?.ip,
                  e.status?.common.phase == .provisioned,
                  let (service, mac) = try serviceEntry(e, backends: e.status?.backends ?? [], vni: vni) else { continue }
            meant.insert(ServiceKey(vni: vni, vip: vip))
            try await ensureTables(of: e.spec.vpc, on: name)
            try await Provisioning.putPublished(service, mac: mac, subnet: sub.spec.cidr, ports: try e.spec.hostPorts(), on: [host], via: pool)
        }
        for stale in held.subtracting(meant).sorted(by: { ($0.vni.value, $0.vip.value) < ($1.vni.value, $1.vip.value) }) {
            try await Provisioning.deletePublished(vni: stale.vni, vip: stale.vip, from: [host], via: pool)
        }
    }

    /// Scaled endpoints with host ports, not being deleted (from the index).
    func publishedEndpoints() -> [Endpoint] {
        holdings.withLock { Array($0.published) }.compactMap { endpoints.get($0) }
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
