import MizarAPI
import MizarCore
import MizarTransitClient

/// Which droplets hold a VPC's tables (the VPC's entry and all its
/// subnets'): those that have something of the VPC — a divider of it, a
/// bouncer of one of its subnets, one of its endpoints, or one of its
/// scaled endpoints published there. Nothing else: creating a VPC or a
/// subnet calls its dividers or bouncers and the droplets already holding
/// the VPC, never every droplet, and a droplet joining is given no VPC.
/// A droplet learns a VPC's tables when it first holds something of it
/// (ensureTables); the operator records what it gave (tablesGiven).
/// Where the simple endpoints are (counts by VPC and droplet, both ways)
/// and which scaled endpoints are published: kept from the endpoint cache's
/// changes.
struct Holdings {
    var byVPC: [String: [String: Int]] = [:]
    var byDroplet: [String: [String: Int]] = [:]
    var published: Set<String> = []

    mutating func count(vpc: String, droplet: String, _ delta: Int) {
        byVPC[vpc, default: [:]][droplet, default: 0] += delta
        byDroplet[droplet, default: [:]][vpc, default: 0] += delta
        if byVPC[vpc]?[droplet] ?? 0 <= 0 { byVPC[vpc]?[droplet] = nil }
        if byVPC[vpc]?.isEmpty == true { byVPC[vpc] = nil }
        if byDroplet[droplet]?[vpc] ?? 0 <= 0 { byDroplet[droplet]?[vpc] = nil }
        if byDroplet[droplet]?.isEmpty == true { byDroplet[droplet] = nil }
    }
}

/// What the operator gave of one VPC's or subnet's table.
struct TableRecord {
    /// The dividers or bouncers it was last given with.
    var holders: [String]
    /// The droplets given it with those holders. A droplet that turned
    /// Ready while a placement was in flight may hold an older table; it is
    /// found here and given the current one.
    var droplets: Set<String>
    /// Every droplet given a version of it and not since taken off: where
    /// its deletion goes (a droplet back from NotReady, or given it by
    /// ensureTables while the record had other holders, still holds one).
    var held: Set<String>
}

extension Operator {
    /// Keeps `holdings` up to date with one endpoint's change.
    func indexHoldings(old: Endpoint?, new: Endpoint?) {
        func place(_ e: Endpoint?) -> (vpc: String, droplet: String)? {
            guard let e, !e.spec.isScaled, e.metadata.deletionTimestamp == nil, let d = e.status?.droplet ?? e.spec.droplet else { return nil }
            return (e.spec.vpc, d)
        }
        let before = place(old), after = place(new)
        let name = (new ?? old)!.name
        let published = new.map { $0.spec.isScaled && !$0.spec.publishedPorts.isEmpty && $0.metadata.deletionTimestamp == nil } ?? false
        holdings.withLock { h in
            if before?.vpc != after?.vpc || before?.droplet != after?.droplet {
                if let before { h.count(vpc: before.vpc, droplet: before.droplet, -1) }
                if let after { h.count(vpc: after.vpc, droplet: after.droplet, 1) }
            }
            if published { h.published.insert(name) } else { h.published.remove(name) }
        }
    }

    /// The droplets that hold something of `vpc`, as the caches show now
    /// (roles scanned, endpoints from the index).
    func vpcHolders(_ vpc: String) -> Set<String> {
        var out = Set(dividers.objects(by: .vpc, vpc).map(\.spec.droplet))
        out.formUnion(bouncers.objects(by: .vpc, vpc).map(\.spec.droplet))
        out.formUnion(holdings.withLock { $0.byVPC[vpc].map { Array($0.keys) } ?? [] })
        for e in publishedEndpoints() where e.spec.vpc == vpc {
            out.formUnion(Set(e.status?.published ?? []).union(publishTargets(e)))
        }
        return out
    }

    /// The VPCs a droplet holds something of.
    func vpcsHeld(by droplet: String) -> Set<String> {
        var out = Set(dividers.objects(by: .droplet, droplet).map(\.spec.vpc))
        out.formUnion(bouncers.objects(by: .droplet, droplet).map(\.spec.vpc))
        out.formUnion(holdings.withLock { $0.byDroplet[droplet].map { Array($0.keys) } ?? [] })
        for e in publishedEndpoints() where (e.status?.published ?? []).contains(droplet) || isPublishTarget(e, droplet) {
            out.insert(e.spec.vpc)
        }
        return out
    }

    /// Whether `droplet` holds nothing of `vpc` (no role, no endpoint in
    /// any state, no publication): then it needs none of its tables.
    func holdsNothing(of vpc: String, on droplet: String) -> Bool {
        !vpcsHeld(by: droplet).contains(vpc) && !endpoints.objects(by: .droplet, droplet).contains { $0.spec.vpc == vpc }
    }

    /// A droplet that no longer holds anything of a live VPC (its last
    /// endpoint of it gone, or its last role) gives its tables back, so
    /// that a host keeps only the VPCs it has something of, and a VPC's
    /// later changes reach the droplets that hold it now, not every droplet
    /// that ever did. Runs after any giving of the same pair under way;
    /// asks again when it runs: an endpoint that came meanwhile keeps them.
    func releaseTables(of vpc: String, on droplet: String) {
        // The VPC's replica's work, and only when there is something to
        // give back (asked again when it runs): most endpoints that go
        // leave others of their VPC on their droplet.
        guard membership.owns("vpc/\(vpc)"), holdsNothing(of: vpc, on: droplet) else { return }
        let key = "\(vpc)|\(droplet)"
        let task: Task<Void, any Error> = tablesEnsuring.withLock { running in
            let before = running[key]?.task
            let t = Task {
                _ = try? await before?.value
                try await self.takeTables(of: vpc, from: droplet)
            }
            running[key] = (t, gives: false)
            return t
        }
        Task {
            do { try await task.value } catch {
                logger.warning("tables not released", metadata: ["vpc": "\(vpc)", "droplet": "\(droplet)", "error": "\(error)"])
            }
            tablesEnsuring.withLock { if $0[key]?.task == task { $0[key] = nil } }
        }
    }

    private func takeTables(of vpcName: String, from droplet: String) async throws {
        // Asked and forgotten in one step (no wait between): an endpoint
        // seen after this finds the pair incomplete and gives it again,
        // after this release.
        let go: Bool = tablesComplete.withLock { done in
            guard let v = vpcs.get(vpcName), v.metadata.deletionTimestamp == nil, isReady(named: droplet),
                  holdsNothing(of: vpcName, on: droplet) else { return false }
            done.remove("\(vpcName)|\(droplet)")
            return true
        }
        // (A VPC being deleted is taken off its holders by its deletion.)
        guard go, let vni = vpcs.get(vpcName)?.status?.vni, let host = try peer(named: droplet) else { return }
        try await Provisioning.releaseVPC(vni: vni, from: host, via: pool)
        let keys = ["vpc/\(vpcName)"] + subnets.objects(by: .vpc, vpcName).map { "subnet/\($0.name)" }
        tablesGiven.withLock { given in
            for k in keys {
                given[k]?.droplets.remove(droplet)
                given[k]?.held.remove(droplet)
            }
        }
    }

    /// The VPC a table key ("vpc/NAME", "subnet/NAME") belongs to.
    func vpcOfTable(_ key: String) -> String? {
        if key.hasPrefix("vpc/") { return String(key.dropFirst(4)) }
        if key.hasPrefix("subnet/") { return subnets.get(String(key.dropFirst(7)))?.spec.vpc }
        return nil
    }

    /// Where a VPC's or subnet's table must be taken off when it goes: the
    /// droplets it was given to and those holding the VPC now; every ready
    /// droplet only when this operator has no record (it restarted since).
    func tableHolders(_ key: String, vpc: String) -> [Droplet] {
        guard let given = tablesGiven.withLock({ $0[key]?.held }) else { return readyDroplets() }
        return readyDroplets(among: given.union(vpcHolders(vpc)))
    }

    /// Gives `droplet` the tables of `vpc` (the VPC's, then each placed
    /// subnet's) unless it was given them: one call for the VPC and one per
    /// subnet, once per droplet. Concurrent callers for the same pair wait
    /// for the same calls.
    func ensureTables(of vpc: String, on droplet: String) async throws {
        let key = "\(vpc)|\(droplet)"
        // The common case, an endpoint on a droplet that holds the VPC:
        // one set lookup, no scan of the VPC's subnets.
        if tablesComplete.withLock({ $0.contains(key) }) { return }
        let task: Task<Void, any Error> = tablesEnsuring.withLock { running in
            if let r = running[key], r.gives { return r.task }
            // After a release of the pair under way, if any.
            let before = running[key]?.task
            let t = Task {
                _ = try? await before?.value
                if try await self.giveTables(of: vpc, to: droplet) { _ = self.tablesComplete.withLock { $0.insert(key) } }
            }
            running[key] = (t, gives: true)
            return t
        }
        defer { tablesEnsuring.withLock { if $0[key]?.task == task { $0[key] = nil } } }
        try await task.value
    }

    /// Whether the droplet now holds every table of the VPC.
    private func giveTables(of vpcName: String, to droplet: String) async throws -> Bool {
        guard let v = vpcs.get(vpcName), v.metadata.deletionTimestamp == nil, let vni = v.status?.vni,
              let host = try peer(named: droplet) else { return false }
        // Subnets placed on bouncers (a subnet still being placed is given
        // by its own reconcile, to its new bouncers and the VPC's holders).
        let mine = subnets.objects(by: .vpc, vpcName).filter {
            $0.metadata.deletionTimestamp == nil && $0.status?.vni != nil && !($0.status?.bouncers ?? []).isEmpty
        }
        let has: (String) -> Bool = { key in self.tablesGiven.withLock { $0[key]?.droplets.contains(droplet) ?? false } }
        if !has("vpc/\(vpcName)") {
            let divs = v.status?.dividers ?? []
            try await Provisioning.putVPC(vni: vni, dividers: try divs.compactMap { try peer(named: $0) }, cidr: v.spec.cidr,
                                          egress: v.spec.egress != nil, on: [host], via: pool)
            record("vpc/\(vpcName)", holders: divs, droplet: droplet)
        }
        for s in mine where !has("subnet/\(s.name)") {
            let bs = s.status?.bouncers ?? []
            try await Provisioning.putSubnet(vni: vni, cidr: s.spec.cidr, bouncers: try bs.compactMap { try peer(named: $0) }, on: [host], via: pool)
            record("subnet/\(s.name)", holders: bs, droplet: droplet)
        }
        return true
    }

    /// Forgets that droplets hold all of a VPC's tables: those not in
    /// `keep` (nil: every droplet).
    func forgetComplete(vpc: String, keep: Set<String>? = nil) {
        tablesComplete.withLock { done in
            done = done.filter { key in
                guard key.hasPrefix("\(vpc)|") else { return true }
                return keep?.contains(String(key.dropFirst(vpc.count + 1))) ?? false
            }
        }
    }

    /// Records that `droplet` holds the table as it is with `holders`.
    private func record(_ key: String, holders: [String], droplet: String) {
        tablesGiven.withLock { given in
            if var entry = given[key], entry.holders == holders {
                entry.droplets.insert(droplet)
                entry.held.insert(droplet)
                given[key] = entry
            } else if given[key] == nil {
                given[key] = TableRecord(holders: holders, droplets: [droplet], held: [droplet])
            } else {
                // Another version than the record's (the reconcile replaces
                // the record), but held all the same.
                given[key]?.held.insert(droplet)
            }
        }
    }
}
