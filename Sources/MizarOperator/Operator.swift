import Foundation
import GRPCCore
import Logging
import ServiceLifecycle
import MizarAPI
import MizarCore
import MizarEtcd
import MizarStore
import MizarTransitClient
import Synchronization

/// The management plane: one controller per kind in one process, each fed
/// by watches of etcd (no polling), each taking its objects from Init to
/// Provisioned by calling the transitds concerned, and back out on delete.
/// Every step is idempotent and recorded in the object's status before or
/// with its effect, so an operator killed at any point resumes where it was.
public final class Operator: Sendable {
    public static let finalizer = "mizar.com/operator"

    public struct Config: Sendable {
        public var workers = 8
        /// This replica's name on the ring of operators.
        public var id = "op-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
        /// Seconds this replica stays on the ring without renewing its
        /// key. A replica that dies is replaced after this long; an etcd
        /// slower than this for a while takes the replica off the ring
        /// (it then does nothing until it is back).
        public var membershipTTL: Int64 = 10
        public init() {}
    }

    let store: Store
    public let pool: HTTP2TransitPool
    let logger: Logger
    let config: Config

    // Looked up by the fields below (an index each), never by a scan of
    // every object: a change's cost follows what it concerns.
    let vpcs = Informer<VpcSpec>()
    let subnets = Informer<SubnetSpec>(indexes: [.vpc])
    let endpoints = Informer<EndpointSpec>(indexes: [.vpc, .subnet, .droplet])
    let droplets = Informer<DropletSpec>(indexes: [.ip])
    let bouncers = Informer<BouncerSpec>(indexes: [.vpc, .subnet, .droplet])
    let dividers = Informer<DividerSpec>(indexes: [.vpc, .droplet])
    let policies = Informer<NetworkPolicySpec>()
    let namespaces = Informer<NamespaceSpec>()
    /// Droplets whose transitd holds its lease now.
    let live = LeaseSet()
    /// What each host's CNI claims.
    let claims = ClaimSet()
    /// For each VPC's and subnet's table ("vpc/NAME", "subnet/NAME"): what
    /// was given (TableRecord).
    let tablesGiven = Mutex<[String: TableRecord]>([:])
    /// Tables ("vpc/NAME", "subnet/NAME") of objects being deleted that
    /// were already taken off every holder; until the object leaves the cache.
    let tablesGone = Mutex<Set<String>>([])
    /// VPCs and subnets ("vpc/NAME", "subnet/NAME") with fewer dividers or
    /// bouncers than asked (not enough ready droplets): a droplet that
    /// turns Ready is offered to these.
    let placementsShort = Mutex<Set<String>>([])
    /// Simple endpoints by VPC and droplet (counts), and published scaled
    /// endpoints by name, as the endpoint cache shows them: who holds a VPC
    /// is found without a scan of all endpoints.
    let holdings = Mutex(Holdings())
    /// "VPC|DROPLET": the droplet holds every table of the VPC as it is:
    /// an endpoint's provisioning checks this and nothing else. Dropped
    /// when a table of the VPC is given without the droplet.
    let tablesComplete = Mutex<Set<String>>([])
    /// ensureTables or releaseTables under way, by "VPC|DROPLET": the
    /// last one started for each (each waits for the one before it), and
    /// whether it gives (callers of ensureTables share a giving one).
    let tablesEnsuring = Mutex<[String: (task: Task<Void, any Error>, gives: Bool)]>([:])
    /// Each droplet's address as last seen, to withdraw it from every
    /// host's droplet table once the Droplet is gone.
    let dropletAddresses = Mutex<[String: IPv4Address]>([:])
    /// Addresses held in each VPC, as the endpoint cache shows them: lets
    /// allocation skip them without a scan of all endpoints.
    let addresses = Mutex<[String: Set<UInt32>]>([:])
    /// Backend name -> the scaled endpoints that name it.
    let backendIndex = Mutex<[String: Set<String>]>([:])
    /// Each owned VPC's compiled policies.
    let vpcPolicies = Mutex<[String: VpcPolicies]>([:])
    /// "SUBNET/DROPLET": what that bouncer was last given of the subnet's
    /// policy entries.
    let bouncerPolicies = Mutex<[String: BouncerPolicy]>([:])
    /// NAMESPACE/NAME -> the last version of each policy that compiled.
    let lastGoodPolicies = Mutex<[String: NetworkPolicy]>([:])

    let vpcQueue = WorkQueue(), subnetQueue = WorkQueue(), endpointQueue = WorkQueue()
    let dropletQueue = WorkQueue(), bouncerQueue = WorkQueue(), dividerQueue = WorkQueue()
    /// VPC names whose policies are compiled and given to their bouncers.
    let policyQueue = WorkQueue()
    /// NAMESPACE/NAME of NetworkPolicies whose status is to be written.
    let policyStatusQueue = WorkQueue()
    /// "DROPLET/ENDPOINT": a claim, or an endpoint made for one.
    let claimQueue = WorkQueue()
    /// The replicas splitting the VPCs between them.
    let membership: Membership
    /// The lease events are written under, and when it was granted: events
    /// expire 30 to 60 minutes after they happen.
    let eventLease = Mutex<(id: Int64, granted: Date)?>(nil)
    /// The last failure reported per object, so a retry loop is one event.
    let lastFailure = Mutex<[String: String]>([:])
    /// Reconciles, provisioning delays, queue depths (served by
    /// mizar-operator's MetricsServer).
    public let metrics = OperatorMetrics()

    public init(store: Store, pool: HTTP2TransitPool = HTTP2TransitPool(), config: Config = Config(), logger: Logger) {
        self.store = store
        self.pool = pool
        self.config = config
        self.logger = logger
        membership = Membership(id: config.id, ttl: config.membershipTTL)
        wire()
    }

    /// The operator's long-running parts, in the order they start: the
    /// caches, this replica's place on the ring, the controllers. A
    /// ServiceGroup stops them in the reverse order: controllers finish the
    /// object in hand, the replica leaves the ring (its VPCs pass on at
    /// once), the watches end.
    public var services: [any Service] {
        [OperatorCaches(op: self), OperatorMembership(op: self), OperatorControllers(op: self)]
    }

    /// Runs every part until cancelled (what tests and benchmarks do; the
    /// mizar-operator executable runs `services` under signal handling).
    public func run() async {
        do {
            try await ServiceGroup(services: services, logger: logger).run()
        } catch {
            logger.error("operator stopped", metadata: ["error": "\(error)"])
        }
    }

    /// Every controller's worker pool, until the queues close.
    func runControllers() async {
        // Controllers start once every cache is filled and this replica is
        // on the ring, so no decision is made on a partial view.
        await cancelWhenGracefulShutdown { [self] in
            await vpcs.waitSynced()
            await subnets.waitSynced()
            await endpoints.waitSynced()
            await droplets.waitSynced()
            await bouncers.waitSynced()
            await dividers.waitSynced()
            await policies.waitSynced()
            await namespaces.waitSynced()
            await live.waitSynced()
            await claims.waitSynced()
            await membership.waitJoined()
        }
        if Task.isCancelled || Task.isShuttingDownGracefully { return }
        await enqueueEverything()
        let w = config.workers
        await together([
            { await runWorkers(self.dropletQueue, workers: 2, logger: self.logger, kind: .droplet) { await self.guarded(.droplet, $0, self.reconcileDroplet) } },
            { await runWorkers(self.vpcQueue, workers: 2, logger: self.logger, kind: .vpc) { await self.guarded(.vpc, $0, self.reconcileVpc) } },
            { await runWorkers(self.subnetQueue, workers: 2, logger: self.logger, kind: .subnet) { await self.guarded(.subnet, $0, self.reconcileSubnet) } },
            { await runWorkers(self.endpointQueue, workers: w, logger: self.logger, kind: .endpoint) { await self.guarded(.endpoint, $0, self.reconcileEndpoint) } },
            { await runWorkers(self.bouncerQueue, workers: 2, logger: self.logger, kind: .bouncer) { await self.guarded(.bouncer, $0, self.reconcileBouncer) } },
            { await runWorkers(self.dividerQueue, workers: 2, logger: self.logger, kind: .divider) { await self.guarded(.divider, $0, self.reconcileDivider) } },
            { await runWorkers(self.policyQueue, workers: 2, logger: self.logger, kind: .networkPolicy) { vpc in
                // Keyed by VPC: the VPC's owner compiles its policies.
                guard self.membership.owns("vpc/\(vpc)") else { return .done }
                do { return try await self.reconcilePolicies(vpc) } catch {
                    self.logger.warning("policies: will retry", metadata: ["vpc": "\(vpc)", "error": "\(error)"])
                    return .retry("\(error)")
                }
            } },
            { await runWorkers(self.policyStatusQueue, workers: 2, logger: self.logger, kind: .networkPolicy) {
                await self.guarded(.networkPolicy, $0, self.reconcilePolicyStatus)
            } },
            { await runWorkers(self.claimQueue, workers: w, logger: self.logger, kind: .endpoint) { id in
                do { return try await self.reconcileClaim(id) } catch {
                    self.logger.warning("claim: will retry", metadata: ["claim": "\(id)", "error": "\(error)"])
                    return .retry("\(error)")
                }
            } },
        ])
    }

    /// Stops handing out work: each worker finishes the object in hand.
    func closeQueues() async {
        for q in [vpcQueue, subnetQueue, endpointQueue, dropletQueue, bouncerQueue, dividerQueue, claimQueue, policyQueue, policyStatusQueue] {
            await q.close()
        }
    }

    var leasePrefix: String { store.dropletLeasePrefix }

    /// Every object to its controller: at start, and whenever the ring of
    /// replicas changes (a replica's VPCs pass to another).
    func enqueueEverything() async {
        for o in droplets.list() { await dropletQueue.add(o.name) }
        for o in vpcs.list() { await vpcQueue.add(o.name) }
        for o in subnets.list() { await subnetQueue.add(o.name) }
        for o in endpoints.list() { await endpointQueue.add(o.name) }
        for o in bouncers.list() { await bouncerQueue.add(o.name) }
        for o in dividers.list() { await dividerQueue.add(o.name) }
        for o in vpcs.list() { await policyQueue.add(o.name) }
        for o in policies.list() { await policyStatusQueue.add(o.storeName) }
        for id in claims.ids { await claimQueue.add(id) }
        for o in endpoints.list() {
            if let d = o.metadata.labels?[EndpointClaim.claimedByLabel] { await claimQueue.add(ClaimSet.id(d, o.name)) }
        }
    }

    /// The ring key an object is owned by: its VPC (objects of a VPC stay
    /// together on one replica), or the droplet itself.
    func ringKey(_ kind: Kind, _ name: String) -> String? {
        switch kind {
        case .vpc: "vpc/\(name)"
        case .subnet: subnets.get(name).map { "vpc/\($0.spec.vpc)" }
        case .endpoint: endpoints.get(name).map { "vpc/\($0.spec.vpc)" }
        case .bouncer: bouncers.get(name).map { "vpc/\($0.spec.vpc)" }
        case .divider: dividers.get(name).map { "vpc/\($0.spec.vpc)" }
        case .droplet: "droplet/\(name)"
        case .networkPolicy: "policy/\(name)"
        case .namespace: nil // not reconciled: read by the policy controller
        }
    }

    /// Which changes wake which controllers.
    private func wire() {
        @Sendable func enqueue(_ q: WorkQueue, _ names: [String]) {
            guard !names.isEmpty else { return }
            Task { for n in names { await q.add(n) } }
        }
        vpcs.onChange { [self] old, new in
            let name = (new ?? old)!.name
            enqueue(vpcQueue, [name])
            if old?.status?.vni != new?.status?.vni || new == nil { enqueue(policyQueue, [name]) }
            if new == nil {
                tablesGone.withLock { _ = $0.remove("vpc/\(name)") }
                placementsShort.withLock { _ = $0.remove("vpc/\(name)") }
            }
            // Subnets wait for their VPC's VNI; dividers report its status.
            enqueue(subnetQueue, subnets.objects(by: .vpc, name).map(\.name))
            enqueue(dividerQueue, dividers.objects(by: .vpc, name).map(\.name))
        }
        subnets.onChange { [self] old, new in
            let s = (new ?? old)!
            enqueue(subnetQueue, [s.name])
            enqueue(endpointQueue, endpoints.objects(by: .subnet, s.name).filter { !Self.settled($0) }.map(\.name))
            enqueue(bouncerQueue, bouncers.objects(by: .subnet, s.name).map(\.name))
            if new == nil {
                enqueue(vpcQueue, [s.spec.vpc])   // a VPC being deleted waits for its subnets
                tablesGone.withLock { _ = $0.remove("subnet/\(s.name)") }
                placementsShort.withLock { _ = $0.remove("subnet/\(s.name)") }
            }
        }
        endpoints.onChange { [self] old, new in
            let e = (new ?? old)!
            func held(_ o: Endpoint?) -> UInt32? {
                (o?.status?.ip ?? o?.spec.ip)?.value
            }
            let before = held(old), after = held(new)
            if before != after || old?.spec.vpc != new?.spec.vpc {
                addresses.withLock { a in
                    if let before, let vpc = old?.spec.vpc { a[vpc]?.remove(before) }
                    if let after, let vpc = new?.spec.vpc { a[vpc, default: []].insert(after) }
                }
            }
            enqueue(endpointQueue, [e.name])
            // A backend that comes, goes or moves changes its services.
            indexBackends(old: old, new: new)
            indexHoldings(old: old, new: new)
            if old?.status != new?.status || new?.metadata.deletionTimestamp != nil || new == nil {
                enqueue(endpointQueue, services(using: e.name))
            }
            if new == nil { enqueue(subnetQueue, [e.spec.subnet]) }   // a subnet being deleted waits for its endpoints
            // Its own entry on its bouncers follows its labels, namespace
            // and ports (nobody else's changes); gone, its bouncers forgot it.
            if let old, let new, !new.spec.isScaled, old.status?.ip != nil,
               old.metadata.labels != new.metadata.labels || old.metadata.effectiveNamespace != new.metadata.effectiveNamespace
                || old.spec.ports != new.spec.ports {
                enqueue(policyQueue, [new.spec.vpc])
            }
            if new == nil, let ip = old?.status?.ip { forgetPolicyEntry(subnet: e.spec.subnet, ip: ip) }
            // Gone from its droplet: the droplet may hold nothing of the VPC now.
            if new == nil, let old, !old.spec.isScaled, let d = old.status?.droplet ?? old.spec.droplet {
                releaseTables(of: old.spec.vpc, on: d)
            }
            // Made for a claim: it lives while the claim does.
            if let d = e.metadata.labels?[EndpointClaim.claimedByLabel] { enqueue(claimQueue, [ClaimSet.id(d, e.name)]) }
        }
        claims.onChange { [self] id in enqueue(claimQueue, [id]) }
        // A policy or a namespace's labels: every VPC's entries may change.
        policies.onChange { [self] old, new in
            enqueue(policyQueue, vpcs.list().map(\.name))
            if let new, old?.spec != new.spec || old?.metadata.generation != new.metadata.generation { enqueue(policyStatusQueue, [new.storeName]) }
        }
        namespaces.onChange { [self] old, new in
            if old?.metadata.labels != new?.metadata.labels { enqueue(policyQueue, vpcs.list().map(\.name)) }
        }
        droplets.onChange { [self] old, new in
            enqueue(dropletQueue, [(new ?? old)!.name])
            // Ready (again) or gone: published services record where they
            // are, and the placements it concerns are looked at again — in
            // every replica (the droplet's replica is not its VPCs').
            if (new?.status?.common.phase == .ready) != (old?.status?.common.phase == .ready) {
                enqueue(endpointQueue, publishedEndpoints().map(\.name))
                kickPlacements(after: (new ?? old)!.name)
            }
        }
        membership.onChange { [self] in Task { await enqueueEverything() } }
        live.onChange { [self] name in enqueue(dropletQueue, [name]) }
        bouncers.onChange { [self] old, new in
            let b = (new ?? old)!
            enqueue(bouncerQueue, [b.name])
            enqueue(subnetQueue, [b.spec.subnet])
            if new == nil { releaseTables(of: b.spec.vpc, on: b.spec.droplet) }   // its last role there, perhaps
        }
        dividers.onChange { [self] old, new in
            let d = (new ?? old)!
            enqueue(dividerQueue, [d.name])
            enqueue(vpcQueue, [d.spec.vpc])
            if new == nil { releaseTables(of: d.spec.vpc, on: d.spec.droplet) }
        }
    }

    /// Provisioned (or failed for good) and not being deleted.
    static func settled<S: ObjectSpec>(_ o: Object<S>) -> Bool {
        guard o.metadata.deletionTimestamp == nil, let status = o.status else { return false }
        return (status.common.phase == .provisioned || status.common.phase == .failed)
            && status.common.observedGeneration == o.metadata.generation
    }

    /// Runs one reconcile. A permanent refusal by a transitd, or a
    /// `.failed` outcome, sets the object Failed with its reason code; any
    /// other error becomes a retry (it says why).
    func guarded(_ kind: Kind, _ name: String, _ body: (String) async throws -> Outcome) async -> Outcome {
        // Another replica's: it does the work (an object already gone is
        // nobody's and its reconcile does nothing).
        if let key = ringKey(kind, name), !membership.owns(key) { return .done }
        let id = "\(kind.rawValue)/\(name)"
        let start = ContinuousClock.now
        var outcomeName = "error"
        defer { metrics.reconciled(kind, outcome: outcomeName, took: ContinuousClock.now - start) }
        do {
            var outcome: Outcome
            do { outcome = try await body(name) } catch where TransitRefusal.isPermanent(error) {
                outcome = .failed(.refusedByHost, "\((error as? RPCError)?.message ?? "\(error)")")
            }
            if case .failed(let code, let message) = outcome {
                logger.warning("reconcile failed for good", metadata: ["kind": "\(kind.rawValue)", "name": "\(name)",
                                                                       "reason.code": "\(code)", "reason": "\(message)"])
                outcome = try await markFailed(kind, name, code, message)
            }
            lastFailure.withLock { $0[id] = nil }
            switch outcome {
            case .done: outcomeName = "done"
            case .retry, .retryAfter: outcomeName = "retry"
            case .failed: outcomeName = "failed"
            }
            return outcome
        } catch {
            logger.warning("reconcile failed; will retry", metadata: ["kind": "\(kind.rawValue)", "name": "\(name)", "error": "\(error)"])
            let message = "\(error)"
            let isNew = lastFailure.withLock { f in defer { f[id] = message }; return f[id] != message }
            if isNew { await event(kind, name, .warning, "RetryLater", message) }
            return .retry(message)
        }
    }

    /// Phase Failed, with the reason code and message, for the object's
    /// current generation: it is settled until its spec changes.
    func markFailed(_ kind: Kind, _ name: String, _ code: ReasonCode, _ message: String) async throws -> Outcome {
        switch kind {
        case .vpc: try await markFailed(vpcs, name, code, message)
        case .subnet: try await markFailed(subnets, name, code, message)
        case .endpoint: try await markFailed(endpoints, name, code, message)
        case .droplet: try await markFailed(droplets, name, code, message)
        case .bouncer: try await markFailed(bouncers, name, code, message)
        case .divider: try await markFailed(dividers, name, code, message)
        case .networkPolicy: try await markFailed(policies, name, code, message)
        case .namespace: .done
        }
    }

    private func markFailed<S: ObjectSpec>(_ informer: Informer<S>, _ name: String, _ code: ReasonCode, _ message: String) async throws -> Outcome {
        guard let o = informer.get(name), o.metadata.deletionTimestamp == nil else { return .done }
        var next = o
        var status = next.status ?? S.Status()
        status.common.phase = .failed
        status.common.reasonCode = code
        status.common.reason = message
        status.common.observedGeneration = o.metadata.generation
        if status == o.status { return .done }
        next.status = status
        return try await save(next, in: informer) == nil ? .retry("conflict") : .done
    }

    /// Records an event of the object; a failure to record is only logged.
    func event(_ kind: Kind, _ name: String, _ type: ObjectEvent.Severity, _ reason: String, _ message: String) async {
        do {
            try await store.etcd.transaction(if: [], then: [try await eventOperation(kind, name, type, reason, message)])
        } catch {
            logger.debug("event not recorded", metadata: ["kind": "\(kind.rawValue)", "name": "\(name)", "error": "\(error)"])
        }
    }

    /// The write of one event, under the events' lease (granted once).
    func eventOperation(_ kind: Kind, _ name: String, _ type: ObjectEvent.Severity, _ reason: String,
                        _ message: String) async throws -> EtcdOperation {
        var lease = eventLease.withLock { $0 }
        if lease == nil || Date().timeIntervalSince(lease!.granted) > 1800 {
            let granted = (id: try await store.etcd.grantLease(ttl: 3600), granted: Date())
            eventLease.withLock { $0 = granted }
            lease = granted
        }
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let e = ObjectEvent(time: f.string(from: Date()), type: type, reason: reason, message: message, controller: config.id)
        return store.eventOperation(kind, name, e, lease: lease?.id ?? 0)
    }

    // MARK: Shared steps

    /// Writes the object (status, finalizers) if nobody changed it since it
    /// was read, with optional extra conditions and claims; records it in
    /// the cache. nil when a condition failed.
    func save<S: ObjectSpec>(_ o: Object<S>, in informer: Informer<S>, alsoIf: [EtcdCondition] = [],
                             alsoDo: [EtcdOperation] = []) async throws -> Object<S>? {
        var o = o
        if var status = o.status {
            status.common.controller = config.id
            // A reason code says why it failed: it goes with the phase.
            if status.common.phase != .failed { status.common.reasonCode = nil }
            o.status = status
        }
        // A new phase, or a new reason to wait, is an event, written in the
        // same transaction as the status.
        var operations = alsoDo
        let before = informer.get(o.storeName)?.status?.common
        if let now = o.status?.common, now.phase != before?.phase || now.reason != before?.reason {
            var message = now.reason ?? "now \(now.phase.rawValue)"
            if now.phase == .provisioned, let ms = now.provisioningDelayMs, before?.phase != .provisioned {
                message = String(format: "provisioned in %.1f ms", ms) + (now.reason.map { "; \($0)" } ?? "")
            }
            let type: ObjectEvent.Severity = now.phase == .failed || now.phase == .notReady ? .warning : .normal
            if let put = try? await eventOperation(S.kind, o.storeName, type, now.phase.rawValue, message) { operations.append(put) }
        }
        guard let saved = try await store.write(o, alsoIf: alsoIf, alsoDo: operations) else { return nil }
        informer.record(saved)
        return saved
    }

    /// Sets the phase (and reason) unless already so; nil on a conflict.
    func setPhase<S: ObjectSpec>(_ o: Object<S>, _ phase: Phase, reason: String?, in informer: Informer<S>) async throws -> Outcome {
        if o.status?.common.phase == phase && o.status?.common.reason == reason { return .done }
        var next = o
        var status = next.status ?? S.Status()
        status.common.phase = phase
        status.common.reason = reason
        next.status = status
        return try await save(next, in: informer) == nil ? .retry("conflict") : .done
    }

    /// Removes our finalizer, which lets the store delete the object and
    /// release what it held.
    func release<S: ObjectSpec>(_ o: Object<S>) async throws {
        try await store.setFinalizer(S.self, o.name, Self.finalizer, present: false)
    }

    static func milliseconds(since timestamp: String?) -> Double? {
        guard let timestamp else { return nil }
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        guard let t = f.date(from: timestamp) else { return nil }
        return Date().timeIntervalSince(t) * 1000
    }

    func addressTaken(_ vpc: String, _ ip: IPv4Address) -> Bool {
        addresses.withLock { $0[vpc]?.contains(ip.value) ?? false }
    }

    /// Droplets whose transitd is alive and whose tables are in sync.
    func readyDroplets() -> [Droplet] {
        droplets.filter(isReady).sorted { $0.name < $1.name }
    }

    /// The ready ones among `names`, by name: linear in the names, not in
    /// the cluster (a table's holders, not every droplet).
    func readyDroplets(among names: Set<String>) -> [Droplet] {
        names.compactMap { droplets.get($0) }.filter(isReady).sorted { $0.name < $1.name }
    }

    /// One droplet's readiness: what the endpoint path asks, without a
    /// look at every droplet.
    func isReady(_ d: Droplet) -> Bool {
        live.contains(d.name) && d.status?.common.phase == .ready && d.metadata.deletionTimestamp == nil
    }

    func isReady(named name: String) -> Bool { droplets.get(name).map(isReady) ?? false }

    func peer(_ d: Droplet) throws -> TransitPeer {
        TransitPeer(target: try TransitTarget(parsing: d.spec.transitd), ip: d.spec.ip, mac: d.spec.mac)
    }

    func peer(named name: String) throws -> TransitPeer? {
        guard let d = droplets.get(name) else { return nil }
        return try peer(d)
    }

    /// How many bouncers and dividers each droplet carries.
    func roleLoad() -> [String: Int] {
        var load: [String: Int] = [:]
        for b in bouncers.list() { load[b.spec.droplet, default: 0] += 1 }
        for d in dividers.list() { load[d.spec.droplet, default: 0] += 1 }
        return load
    }

    /// Chooses droplets to add and placements to drop so that `want` live
    /// placements exist, at most one per droplet, on the least-loaded
    /// droplets first.
    func place(current: [String], want: Int) -> (add: [String], drop: [String], short: Int) {
        let alive = current.filter { isReady(named: $0) }
        var drop = current.filter { !isReady(named: $0) }
        let load = roleLoad()
        func key(_ n: String) -> (Int, String) { (load[n, default: 0], n) }
        if alive.count > want {
            drop += alive.sorted { key($0) > key($1) }.prefix(alive.count - want)
            return ([], drop, 0)
        }
        // The few least-loaded ready droplets: one pass over the ready
        // ones per placement wanted, no sort of the whole cluster.
        let taken = Set(current)
        var add: [String] = []
        for _ in 0..<(want - alive.count) {
            var best: (Int, String)?
            for d in droplets.filter({ isReady($0) && !taken.contains($0.name) && !add.contains($0.name) }) {
                let k = key(d.name)
                if best == nil || k < best! { best = k }
            }
            guard let best else { break }
            add.append(best.1)
        }
        return (add, drop, want - alive.count - add.count)
    }
}

/// The set of droplet names with a live lease key, kept by a watch.
final class LeaseSet: Sendable {
    private let names = Mutex<Set<String>>([])
    private let handlers = Mutex<[@Sendable (String) -> Void]>([])
    private let synced = Latch()

    func contains(_ name: String) -> Bool { names.withLock { $0.contains(name) } }
    var hasSynced: Bool { synced.isOpen }
    func waitSynced() async { await synced.wait() }
    func onChange(_ h: @escaping @Sendable (String) -> Void) { handlers.withLock { $0.append(h) } }

    func run(etcd: Etcd, prefix: String, logger: Logger) async {
        let (list, watch) = Reflector.keys(etcd, under: prefix)
        await Reflector.run("droplet leases", logger: logger, list: list, watch: watch, replace: { kvs in
            let fresh = Set(kvs.map { String($0.key.dropFirst(prefix.count)) })
            let old = names.withLock { n in defer { n = fresh }; return n }
            synced.open()
            for name in old.symmetricDifference(fresh) { notify(name) }
        }, apply: { batch in
            for e in batch {
                let name = String(e.kv.key.dropFirst(prefix.count))
                let changed = names.withLock { n in
                    e.kind == .put ? n.insert(name).inserted : n.remove(name) != nil
                }
                if changed { notify(name) }
            }
        })
    }

    private func notify(_ name: String) {
        for h in handlers.withLock({ $0 }) { h(name) }
    }
}

// MARK: - The operator's parts, as services of a ServiceGroup

/// Runs every part at once and returns when all have.
func together(_ parts: [@Sendable () async -> Void]) async {
    await withTaskGroup(of: Void.self) { group in
        for part in parts { group.addTask { await part() } }
    }
}

/// Every informer and the droplet-lease watch: the caches controllers read.
struct OperatorCaches: Service {
    let op: Operator
    func run() async {
        let op = op
        await cancelWhenGracefulShutdown {
            await together([
                { await op.vpcs.run(store: op.store, logger: op.logger) },
                { await op.subnets.run(store: op.store, logger: op.logger) },
                { await op.endpoints.run(store: op.store, logger: op.logger) },
                { await op.droplets.run(store: op.store, logger: op.logger) },
                { await op.bouncers.run(store: op.store, logger: op.logger) },
                { await op.dividers.run(store: op.store, logger: op.logger) },
                { await op.policies.run(store: op.store, logger: op.logger) },
                { await op.namespaces.run(store: op.store, logger: op.logger) },
                { await op.live.run(etcd: op.store.etcd, prefix: op.leasePrefix, logger: op.logger) },
                { await op.claims.run(store: op.store, logger: op.logger) },
            ])
        }
    }
}

/// This replica's key on the ring and its watch of the others'; leaves the
/// ring when stopped.
struct OperatorMembership: Service {
    let op: Operator
    func run() async {
        let op = op
        await cancelWhenGracefulShutdown {
            await together([
                { await op.membership.register(store: op.store, logger: op.logger) },
                { await op.membership.watch(store: op.store, logger: op.logger) },
            ])
        }
        await op.membership.leave(store: op.store)
    }
}

/// The controllers' workers; on shutdown each finishes what it holds, then
/// the connections to transitds close.
struct OperatorControllers: Service {
    let op: Operator
    func run() async {
        let op = op
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await op.runControllers()
            } onGracefulShutdown: {
                Task { await op.closeQueues() }
            }
        } onCancel: {
            Task { await op.closeQueues() }
        }
        await op.pool.shutdown()
    }
}
