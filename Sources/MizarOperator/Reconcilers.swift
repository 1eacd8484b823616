import MizarAPI
import MizarCore
import MizarEtcd
import MizarStore
import MizarTransitClient

extension Operator {
    // MARK: Droplets

    /// A droplet whose transitd holds its lease gets the tables of the
    /// VPCs it holds something of (none when new), then is Ready for
    /// placements; one whose lease lapsed is
    /// NotReady, and the bouncers and dividers on it move elsewhere.
    func reconcileDroplet(_ name: String) async throws -> Outcome {
        guard let d = droplets.get(name) else {
            // Gone: no host believes its tunnel packets any more.
            if let ip = dropletAddresses.withLock({ $0[name] }) {
                try await Provisioning.deleteDroplet(ip, on: try readyDroplets().map(peer), via: pool)
                dropletAddresses.withLock { _ = $0.removeValue(forKey: name) }
            }
            return .done
        }
        dropletAddresses.withLock { $0[name] = d.spec.ip }
        let alive = live.contains(name) && d.metadata.deletionTimestamp == nil
        let phase = d.status?.common.phase
        if alive && phase != .ready {
            let host = try peer(d)
            // The droplet table first: every droplet it may hear from, and
            // it to every other droplet whose transitd is up, Ready or not
            // yet (two that come up together each see the other as not yet
            // Ready). A host that joins costs one call per host; an
            // endpoint costs none. Entries are only added here: a droplet
            // leaves the tables when its Droplet is deleted.
            let known = droplets.filter { $0.metadata.deletionTimestamp == nil }.map { HostAddress(ip: $0.spec.ip, mac: $0.spec.mac) }
            try await Provisioning.putDroplets(known, replace: false, on: [host], via: pool)
            let others = droplets.filter { $0.name != name && live.contains($0.name) && $0.metadata.deletionTimestamp == nil }
            try await Provisioning.putDroplets([host.address], replace: false, on: try others.map(peer), via: pool)
            // What it is given here comes from the caches; the placements
            // kicked below give it again what changed meanwhile.
            tablesGiven.withLock { given in
                for key in given.keys { given[key]?.droplets.remove(name) }
            }
            tablesComplete.withLock { $0 = $0.filter { !$0.hasSuffix("|\(name)") } }
            // As a bouncer it is given every policy entry again (the VPCs
            // it holds something of: its bouncers' among them).
            let held = vpcsHeld(by: name)
            forgetPoliciesGiven(droplet: name)
            Task { for v in held { await policyQueue.add(v) } }
            // The tables of the VPCs it holds something of (endpoints it
            // had before it went away): a new droplet gets none.
            for v in held.sorted() { try await ensureTables(of: v, on: name) }
            // The services published on it, as they are now.
            try await syncPublished(on: host, droplet: name)
            let outcome = try await setPhase(d, .ready, reason: nil, in: droplets)
            // Endpoints that waited for this droplet go on now.
            let waiting = endpoints.objects(by: .droplet, name).filter { $0.status?.common.phase != .provisioned }.map(\.name)
            if !waiting.isEmpty {
                Task { for n in waiting { await endpointQueue.add(n) } }
            }
            return outcome
        }
        if !alive && phase != .notReady {
            pool.forget(try TransitTarget(parsing: d.spec.transitd))
            let outcome = try await setPhase(d, .notReady, reason: "its transitd's lease has lapsed", in: droplets)
            return outcome
        }
        return .done
    }

    /// After a droplet's readiness changed, the VPCs and subnets whose
    /// placements or tables it may concern are reconciled again: those it
    /// holds something of (a role it had moves; a table given while it was
    /// away is given again) and those short of placements (a droplet back
    /// may take one). Not every VPC and subnet: a host that comes or goes
    /// costs the operator what it holds, not what the cluster holds.
    func kickPlacements(after droplet: String) {
        var v = vpcsHeld(by: droplet), s = Set<String>()
        for key in placementsShort.withLock({ $0 }) {
            if key.hasPrefix("vpc/") { v.insert(String(key.dropFirst(4))) } else { s.insert(String(key.dropFirst(7))) }
        }
        for vpc in v { s.formUnion(subnets.objects(by: .vpc, vpc).map(\.name)) }
        Task {
            for n in v { await vpcQueue.add(n) }
            for n in s { await subnetQueue.add(n) }
        }
    }

    /// Gives a VPC's or subnet's table (held by `holders`) to droplets:
    /// every ready one that holds the VPC, or (`toNewlyReady`, when nothing else changed) only
    /// those that turned Ready since it was last given, which may have been
    /// handed an older table while its placement was in flight.
    func giveTable(_ key: String, holders: [String], toNewlyReady: Bool,
                   _ put: ([TransitPeer]) async throws -> Void) async throws {
        // Only the droplets that hold the VPC (and the new holders).
        let interested = (vpcOfTable(key).map(vpcHolders) ?? []).union(holders)
        let ready = readyDroplets(among: interested)
        // Without a record (this operator just started, or the holders
        // changed) every interested droplet is given it: which of them
        // hold it is not known. That is linear in the VPC's holders.
        let targets: [Object<DropletSpec>] = tablesGiven.withLock { given in
            guard toNewlyReady, let last = given[key], last.holders == holders else { return ready }
            return ready.filter { !last.droplets.contains($0.name) }
        }
        if toNewlyReady && targets.isEmpty { return }
        // A subnet's table needs its VPC's entry on the host first.
        if key.hasPrefix("subnet/"), let vpc = vpcOfTable(key) {
            for t in targets where !(tablesGiven.withLock { $0["vpc/\(vpc)"]?.droplets.contains(t.name) ?? false }) {
                try await ensureTables(of: vpc, on: t.name)
            }
        }
        try await put(try targets.map(peer))
        tablesGiven.withLock { given in
            let before = given[key].flatMap { $0.holders == holders ? $0.droplets : nil } ?? []
            let names = Set(targets.map(\.name))
            given[key] = TableRecord(holders: holders, droplets: toNewlyReady ? before.union(names) : names,
                                     held: (given[key]?.held ?? []).union(names))
        }
        // Droplets left out of this table no longer hold all of the VPC.
        if let vpc = vpcOfTable(key) {
            forgetComplete(vpc: vpc, keep: tablesGiven.withLock { $0[key]?.droplets } ?? [])
        }
    }

    /// Whether a deleted VPC's or subnet's table was already taken off its
    /// holders, so that a reconcile that comes again calls nobody (the
    /// finalizer's removal wakes it before the object leaves the cache).
    /// The mark is forgotten when the object leaves the cache, and a
    /// reconcile may still hold its copy from before: so the mark is asked
    /// first, then whether the object (`still`) is in the cache — the
    /// cache loses it before the mark goes, so one of the two tells.
    /// Without the second question such a reconcile found neither mark
    /// nor record of the holders and called every ready droplet.
    func tablesTakenOff(_ key: String, still cached: @autoclosure () -> Bool) -> Bool {
        tablesGone.withLock { $0.contains(key) } || !cached()
    }

    // MARK: VPCs

    func reconcileVpc(_ name: String) async throws -> Outcome {
        guard var v = vpcs.get(name) else { return .done }
        if v.metadata.deletionTimestamp != nil {
            // Subnets go first (each takes its endpoints with it).
            let mine = subnets.objects(by: .vpc, name)
            if !mine.isEmpty {
                for s in mine where s.metadata.deletionTimestamp == nil { try await store.delete(SubnetSpec.self, s.name) }
                return .done   // their removal wakes this VPC again
            }
            for d in dividers.objects(by: .vpc, name) { try await store.delete(DividerSpec.self, d.name) }
            let holding = tableHolders("vpc/\(name)", vpc: name)
            // Its policy record goes with it (a VPC made again under the
            // name starts from nothing enforced).
            _ = try await store.etcd.delete(policyRecordPrefix + name)
            vpcPolicies.withLock { $0[name] = nil }
            if let vni = v.status?.vni, !tablesTakenOff("vpc/\(name)", still: vpcs.get(name)?.metadata.uid == v.metadata.uid) {
                try await Provisioning.deleteVPC(vni: vni, on: try holding.map(peer), via: pool)
                tablesGone.withLock { _ = $0.insert("vpc/\(name)") }
            }
            tablesGiven.withLock { $0["vpc/\(name)"] = nil }
            forgetComplete(vpc: name)
            try await release(v)
            return .done
        }
        if Self.settled(v), placementSettled(v.status?.dividers, live: liveDividers(of: name), want: v.spec.dividers ?? 1) {
            if let vni = v.status?.vni {
                let divs = v.status?.dividers ?? []
                try await giveTable("vpc/\(name)", holders: divs, toNewlyReady: true) { hosts in
                    try await Provisioning.putVPC(vni: vni, dividers: try divs.compactMap { try self.peer(named: $0) },
                                                  cidr: v.spec.cidr, egress: v.spec.egress != nil, on: hosts, via: self.pool)
                }
            }
            return .done
        }

        // A VNI (claimed atomically) and our finalizer, in one write.
        if v.status?.vni == nil || !(v.metadata.finalizers ?? []).contains(Self.finalizer) {
            guard let saved = try await claimVNI(v) else { return .retry("conflict") }
            v = saved
        }
        guard let vni = v.status?.vni else { return .retry("no VNI") }

        // Dividers: as many as asked, one per droplet, least-loaded first.
        let want = v.spec.dividers ?? 1
        let (placed, short) = try await placeRole(dividers, "vpc/\(name)", current: dividers.objects(by: .vpc, name), want: want) { droplet in
            Divider(name: "\(name)-\(droplet)", spec: DividerSpec(vpc: name, droplet: droplet))
        }
        // A divider forwards to every subnet's bouncers: it holds them all.
        for d in placed { try await ensureTables(of: name, on: d) }
        try await giveTable("vpc/\(name)", holders: placed, toNewlyReady: false) { hosts in
            try await Provisioning.putVPC(vni: vni, dividers: try placed.compactMap { try self.peer(named: $0) },
                                          cidr: v.spec.cidr, egress: v.spec.egress != nil, on: hosts, via: self.pool)
        }
        var next = v
        var status = next.status ?? VpcStatus()
        status.dividers = placed
        placedStatus(&status.common, of: v, role: "divider", placed: placed.count, want: want, short: short)
        if status == v.status { return .done }
        next.status = status
        return try await save(next, in: vpcs) == nil ? .retry("conflict") : .done
    }

    /// Brings the placements of one role (a subnet's bouncers, a VPC's
    /// dividers) to `want`: drops those on droplets that are gone or too
    /// many, creates new ones. The droplets placed on, and how many short.
    func placeRole<S: ObjectSpec & PlacedOnDroplet>(_ informer: Informer<S>, _ key: String, current: [Object<S>], want: Int,
                                                    make: (String) -> Object<S>) async throws -> (placed: [String], short: Int) {
        let (add, drop, short) = place(current: current.map(\.spec.droplet), want: want)
        placementsShort.withLock { _ = short > 0 ? $0.insert(key).inserted : $0.remove(key) != nil }
        for o in current where drop.contains(o.spec.droplet) { try await store.delete(S.self, o.name) }
        for droplet in add {
            do { informer.record(try await store.create(make(droplet))) } catch StoreError.alreadyExists(_, _) {}
        }
        return (Set(current.map(\.spec.droplet)).subtracting(drop).union(add).sorted(), short)
    }

    /// The phase and reason after placing `placed` of `want`.
    func placedStatus<S: ObjectSpec>(_ common: inout CommonStatus, of o: Object<S>, role: String, placed: Int, want: Int, short: Int) {
        common.phase = placed == 0 ? .placing : .provisioned
        common.reason = placed == 0 ? "no droplet is ready for a \(role)"
            : short > 0 ? "\(placed) of \(want) \(role)s placed: not enough ready droplets" : nil
        common.observedGeneration = o.metadata.generation
        if common.provisioningDelayMs == nil && placed > 0 {
            common.provisioningDelayMs = Self.milliseconds(since: o.metadata.creationTimestamp)
        }
    }

    /// Nothing to place: the status lists exactly the live placements, and
    /// there are as many as wanted or no ready droplet is left to add.
    func placementSettled(_ recorded: [String]?, live: [String], want: Int) -> Bool {
        guard Set(recorded ?? []) == Set(live) else { return false }
        return live.count >= want || !droplets.contains { isReady($0) && !live.contains($0.name) }
    }

    func liveDividers(of vpc: String) -> [String] {
        return dividers.objects(by: .vpc, vpc).filter { isReady(named: $0.spec.droplet) }.map(\.spec.droplet)
    }

    /// Writes the VNI (the requested one, claimed at admission, or a free
    /// one claimed here) with our finalizer.
    func claimVNI(_ v: Vpc) async throws -> Vpc? {
        var next = v
        if !(next.metadata.finalizers ?? []).contains(Self.finalizer) {
            next.metadata.finalizers = (next.metadata.finalizers ?? []) + [Self.finalizer]
        }
        var status = next.status ?? VpcStatus()
        status.common.phase = .allocating
        if let vni = status.vni ?? v.spec.vni {
            status.vni = vni
            next.status = status
            return try await save(next, in: vpcs)
        }
        // Free VNIs from a start that depends on the name; the claim key
        // makes two VPCs never share one, whichever operator allocates.
        let top: UInt32 = 0xFF_FFFF
        var candidate = 4096 + UInt32(truncatingIfNeeded: stableHash(v.name) % UInt64(top - 4096))
        for _ in 0..<64 {
            let vni = try VNI(candidate)
            status.vni = vni
            next.status = status
            let key = store.vniKey(vni)
            if let saved = try await save(next, in: vpcs, alsoIf: [.absent(key)], alsoDo: [.put(key, Array(v.name.utf8))]) {
                return saved
            }
            if try await store.etcd.get(key) == nil { return nil }   // the VPC itself changed
            candidate = candidate >= top - 1 ? 4096 : candidate + 1
        }
        throw StoreError.conflict(.vpc, v.name)
    }

    // MARK: Subnets

    func reconcileSubnet(_ name: String) async throws -> Outcome {
        guard var s = subnets.get(name) else { return .done }
        if s.metadata.deletionTimestamp != nil {
            let mine = endpoints.objects(by: .subnet, name)
            if !mine.isEmpty {
                for e in mine where e.metadata.deletionTimestamp == nil { try await store.delete(EndpointSpec.self, e.name) }
                return .done
            }
            for b in bouncers.objects(by: .subnet, name) { try await store.delete(BouncerSpec.self, b.name) }
            if let vni = s.status?.vni, !tablesTakenOff("subnet/\(name)", still: subnets.get(name)?.metadata.uid == s.metadata.uid) {
                try await Provisioning.deleteSubnet(vni: vni, cidr: s.spec.cidr, on: try tableHolders("subnet/\(name)", vpc: s.spec.vpc).map(peer), via: pool)
                tablesGone.withLock { _ = $0.insert("subnet/\(name)") }
            }
            tablesGiven.withLock { $0["subnet/\(name)"] = nil }
            forgetComplete(vpc: s.spec.vpc)
            try await release(s)
            return .done
        }
        guard let vpc = vpcs.get(s.spec.vpc), vpc.metadata.deletionTimestamp == nil,
              let vni = vpc.status?.vni, vpc.status?.common.phase == .provisioned else {
            return try await setPhase(s, .initial, reason: "waiting for Vpc \(s.spec.vpc)", in: subnets)
        }
        let cidr = s.spec.cidr
        let liveBouncers = bouncers.objects(by: .subnet, name).filter { isReady(named: $0.spec.droplet) }.map(\.spec.droplet)
        if Self.settled(s), placementSettled(s.status?.bouncers, live: liveBouncers, want: s.spec.bouncers ?? 1) {
            if s.status?.vni != nil {
                let bs = s.status?.bouncers ?? []
                try await giveTable("subnet/\(name)", holders: bs, toNewlyReady: true) { hosts in
                    try await Provisioning.putSubnet(vni: vni, cidr: cidr, bouncers: try bs.compactMap { try self.peer(named: $0) }, on: hosts, via: self.pool)
                }
            }
            return .done
        }

        if !(s.metadata.finalizers ?? []).contains(Self.finalizer) || s.status?.vni != vni {
            var next = s
            if !(next.metadata.finalizers ?? []).contains(Self.finalizer) {
                next.metadata.finalizers = (next.metadata.finalizers ?? []) + [Self.finalizer]
            }
            var status = next.status ?? SubnetStatus()
            status.vni = vni
            status.gateway = cidr.gateway
            status.common.phase = .placing
            status.common.reason = nil
            next.status = status
            guard let saved = try await save(next, in: subnets) else { return .retry("conflict") }
            s = saved
        }

        let want = s.spec.bouncers ?? 1
        let vpcName = s.spec.vpc
        // A new bouncer is given the subnet's policy entries too.
        guard let policy = vpcPolicies.withLock({ $0[vpcName] }) else {
            await policyQueue.add(vpcName)
            return .retryAfter(.milliseconds(50), "waiting for Vpc \(vpcName)'s policies to compile")
        }
        let (placed, short) = try await placeRole(bouncers, "subnet/\(name)", current: bouncers.objects(by: .subnet, name), want: want) { droplet in
            Bouncer(name: "\(name)-\(droplet)", spec: BouncerSpec(vpc: vpcName, subnet: name, droplet: droplet))
        }
        // A bouncer holds the VPC's tables (it judges and forwards to the
        // other subnets' bouncers), before it is given anything of it.
        for d in placed { try await ensureTables(of: vpcName, on: d) }
        // A new bouncer learns every endpoint already in the subnet before
        // any host is told to use it.
        let fresh = try placed.filter { !(s.status?.bouncers ?? []).contains($0) }.compactMap { try peer(named: $0) }
        if !fresh.isEmpty {
            for e in endpoints.objects(by: .subnet, name).filter({ $0.status?.common.phase == .provisioned }) {
                if e.spec.isScaled {
                    if let (service, mac) = try serviceEntry(e, backends: e.status?.backends ?? [], vni: vni) {
                        try await Provisioning.putService(service, mac: mac, subnet: cidr, on: fresh, clients: { _ in nil }, via: pool)
                    }
                    continue
                }
                guard let ip = e.status?.ip, let mac = e.status?.mac, let homeName = e.status?.droplet,
                      let home = try peer(named: homeName) else { continue }
                try await Provisioning.putEndpointEntry(vni: vni, ip: ip, mac: mac,
                                                        subnet: cidr, home: home, on: fresh, via: pool)
            }
            var failed: [String: VpcPolicyRecord.Refusal] = [:]
            try await pushPolicies(vni: vni, subnet: s, members: policyMembers(vpc: vpcName)[name] ?? [], to: placed.filter { !(s.status?.bouncers ?? []).contains($0) },
                                   policy.compiled, fresh: true, failed: &failed)
        }
        try await giveTable("subnet/\(name)", holders: placed, toNewlyReady: false) { hosts in
            try await Provisioning.putSubnet(vni: vni, cidr: cidr, bouncers: try placed.compactMap { try self.peer(named: $0) }, on: hosts, via: self.pool)
        }
        // A bouncer no longer used forgets the subnet's endpoints (once no
        // host sends to it any more).
        let retired = try (s.status?.bouncers ?? []).filter { !placed.contains($0) && isReady(named: $0) }.compactMap { try peer(named: $0) }
        if !retired.isEmpty {
            for e in endpoints.objects(by: .subnet, name) {
                guard let ip = e.status?.ip else { continue }
                if e.spec.isScaled {
                    // The other bouncers still serve it: no client forgets anything.
                    try await Provisioning.deleteService(vni: vni, vip: ip, from: retired,
                                                         clients: { _ in nil }, via: pool)
                    continue
                }
                try await Provisioning.removeEndpointEntry(vni: vni, ip: ip, from: retired, via: pool)
            }
        }
        var next = s
        var status = next.status ?? SubnetStatus()
        status.bouncers = placed
        placedStatus(&status.common, of: s, role: "bouncer", placed: placed.count, want: want, short: short)
        if status == s.status { return .done }
        next.status = status
        return try await save(next, in: subnets) == nil ? .retry("conflict") : .done
    }

    // MARK: Endpoints

    /// Address, MAC and droplet are claimed and recorded in one write, then
    /// exactly these calls are made: one to the endpoint's droplet, one to
    /// each bouncer of its subnet.
    func reconcileEndpoint(_ name: String) async throws -> Outcome {
        guard var e = endpoints.get(name) else { return .done }
        let subnet = subnets.get(e.spec.subnet)
        if e.metadata.deletionTimestamp != nil {
            let vni = subnet?.status?.vni
            if let ip = e.status?.ip, let vni, e.spec.isScaled {
                try await removeScaled(e, subnet: subnet, vni: vni, ip: ip)
            } else if let ip = e.status?.ip, let vni {
                let bs = try (subnet?.status?.bouncers ?? []).compactMap { try peer(named: $0) }
                if let homeName = e.status?.droplet, isReady(named: homeName), let home = try peer(named: homeName) {
                    try await Provisioning.removeEndpoint(vni: vni, ip: ip, on: home, bouncers: bs, via: pool)
                } else {
                    try await Provisioning.removeEndpointEntry(vni: vni, ip: ip, from: bs, via: pool)
                }
            }
            try await release(e)
            return .done
        }
        if Self.settled(e) && !e.spec.isScaled { return .done }
        guard let subnet, subnet.metadata.deletionTimestamp == nil, subnet.status?.common.phase == .provisioned,
              let vni = subnet.status?.vni, let bouncerNames = subnet.status?.bouncers, !bouncerNames.isEmpty else {
            return try await setPhase(e, .initial, reason: "waiting for Subnet \(e.spec.subnet)", in: endpoints)
        }
        let cidr = subnet.spec.cidr
        if e.status?.ip == nil || (e.status?.droplet == nil && !e.spec.isScaled) || !(e.metadata.finalizers ?? []).contains(Self.finalizer) {
            switch try await claimAddress(e, subnet: subnet, cidr: cidr, vni: vni) {
            case .saved(let saved): e = saved
            case .wait(let reason): return try await setPhase(e, .initial, reason: reason, in: endpoints)
            case .failed(let code, let reason): return .failed(code, reason)
            case .conflict: return .retry("conflict")
            }
        }
        if e.spec.isScaled {
            return try await reconcileScaled(e, subnet: cidr, vni: vni, bouncers: try bouncerNames.compactMap { try peer(named: $0) })
        }
        guard let ip = e.status?.ip, let mac = e.status?.mac, let homeName = e.status?.droplet,
              let home = try peer(named: homeName) else { return .retry("claim not recorded") }
        let bs = try bouncerNames.compactMap { try peer(named: $0) }
        // Its policy entry goes with it, from the VPC's compiled policies.
        guard let policy = await provisioningPolicy(e, vni: vni) else {
            return .retryAfter(.milliseconds(50), "waiting for Vpc \(e.spec.vpc)'s policies to compile")
        }
        // Its host holds the VPC's tables first (once per host and VPC).
        try await ensureTables(of: e.spec.vpc, on: homeName)
        // Without a namespace the interface is made parked on the droplet.
        do {
            _ = try await Provisioning.addEndpoint(vni: vni, ip: ip, mac: mac, subnet: cidr, netns: e.spec.netns ?? "",
                                                   ifname: e.spec.ifname ?? "", policy: policy.message, on: home, bouncers: bs, via: pool)
        } catch where TransitRefusal.isPermanent(error) {
            // Its host will not have it: the bouncers (called at the same
            // time) must not send anything there either.
            try await Provisioning.removeEndpointEntry(vni: vni, ip: ip, from: bs, via: pool)
            throw error
        }
        var next = e
        var status = next.status ?? EndpointStatus()
        status.common.phase = .provisioned
        status.common.reason = nil
        status.common.observedGeneration = e.metadata.generation
        status.common.provisioningDelayMs = Self.milliseconds(since: e.metadata.creationTimestamp)
        next.status = status
        guard try await save(next, in: endpoints) != nil else { return .retry("conflict") }
        if e.status?.common.provisioningDelayMs == nil, let ms = status.common.provisioningDelayMs { metrics.provisioned(milliseconds: ms) }
        await provisioned(e, ip: ip, entry: policy.entry, generation: policy.generation, bouncers: bouncerNames)
        return .done
    }

    enum Claim { case saved(Endpoint), wait(String), failed(ReasonCode, String), conflict }

    func claimAddress(_ e: Endpoint, subnet: Subnet, cidr: CIDR, vni: VNI) async throws -> Claim {
        var next = e
        if !(next.metadata.finalizers ?? []).contains(Self.finalizer) {
            next.metadata.finalizers = (next.metadata.finalizers ?? []) + [Self.finalizer]
        }
        var status = next.status ?? EndpointStatus()
        status.common.phase = .programming
        status.common.reason = nil
        // The droplet: as asked, or one of the ready ones by the name's hash.
        if status.droplet == nil && !e.spec.isScaled {
            if let wanted = e.spec.droplet {
                guard isReady(named: wanted) else { return .wait("waiting for Droplet \(wanted) to be ready") }
                status.droplet = wanted
            } else {
                let ready = readyDroplets()
                guard !ready.isEmpty else { return .wait("no droplet is ready") }
                status.droplet = ready[Int(stableHash(e.name) % UInt64(ready.count))].name
            }
        }
        if let ip = status.ip ?? e.spec.ip {
            // Already claimed (at admission, or by an earlier run of this).
            status.ip = ip
            status.mac = status.mac ?? e.spec.mac ?? MACAddress.derived(vni: vni, ip: ip)
            next.status = status
            return try await save(next, in: endpoints).map(Claim.saved) ?? .conflict
        }
        // A free address: from a start that depends on the name, skipping
        // the subnet's own three; the claim key settles any race.
        let (first, count) = cidr.endpointAddresses
        guard count > 0 else { return .wait("Subnet \(subnet.name) has no host addresses") }
        var offset = UInt32(truncatingIfNeeded: stableHash(e.name) % UInt64(count))
        for _ in 0..<min(count, 4096) {
            let ip = IPv4Address(value: first.value + offset)
            offset = (offset + 1) % count
            if addressTaken(e.spec.vpc, ip) { continue }
            status.ip = ip
            status.mac = e.spec.mac ?? MACAddress.derived(vni: vni, ip: ip)
            next.status = status
            let key = store.ipKey(vpc: e.spec.vpc, ip: ip)
            if let saved = try await save(next, in: endpoints, alsoIf: [.absent(key)], alsoDo: [.put(key, Array(e.name.utf8))]) {
                return .saved(saved)
            }
            if try await store.etcd.get(key) == nil { return .conflict }   // the endpoint itself changed
        }
        return .failed(.subnetExhausted, "Subnet \(subnet.name) has no free address")
    }

    // MARK: Bouncers and dividers

    /// A bouncer is Provisioned once its subnet routes through it.
    func reconcileBouncer(_ name: String) async throws -> Outcome {
        guard let b = bouncers.get(name), b.metadata.deletionTimestamp == nil else { return .done }
        let inUse = subnets.get(b.spec.subnet)?.status?.bouncers?.contains(b.spec.droplet) == true
        return try await setPhase(b, inUse ? .provisioned : .placing, reason: inUse ? nil : "waiting for Subnet \(b.spec.subnet)", in: bouncers)
    }

    /// A divider is Provisioned once its VPC routes through it.
    func reconcileDivider(_ name: String) async throws -> Outcome {
        guard let d = dividers.get(name), d.metadata.deletionTimestamp == nil else { return .done }
        let inUse = vpcs.get(d.spec.vpc)?.status?.dividers?.contains(d.spec.droplet) == true
        return try await setPhase(d, inUse ? .provisioned : .placing, reason: inUse ? nil : "waiting for Vpc \(d.spec.vpc)", in: dividers)
    }
}

/// FNV-1a, then MurmurHash3's final mix so that names differing in one
/// character land far apart: the same value for the same name in every
/// process and run.
func stableHash(_ text: String) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in text.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    h = (h ^ (h >> 33)) &* 0xff51_afd7_ed55_8ccd
    h = (h ^ (h >> 33)) &* 0xc4ce_b9fe_1a85_ec53
    return h ^ (h >> 33)
}

/// Bouncers and dividers: placements on one droplet.
protocol PlacedOnDroplet { var droplet: String { get } }
extension BouncerSpec: PlacedOnDroplet {}
extension DividerSpec: PlacedOnDroplet {}
