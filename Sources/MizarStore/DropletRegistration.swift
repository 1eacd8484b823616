import Logging
import MizarAPI
import MizarCore
import MizarEtcd
import ServiceLifecycle

/// A transitd's presence in etcd: its Droplet object (created, or its spec
/// brought up to date) and a key under a lease it keeps alive. When the
/// transitd dies the lease lapses, the key vanishes, and the operator marks
/// the droplet NotReady and moves its bouncers and dividers.
///
/// Liveness costs etcd one lease renewal per droplet per third of its TTL,
/// and which TTL depends on what the droplet does: while it is a bouncer or
/// a divider (traffic of other hosts goes through it) it holds a short lease
/// (`Liveness.roleTTL`, 3 s: a dead one is replaced within seconds); a
/// droplet that only hosts endpoints holds a long one (`Liveness.ttl`, 60 s:
/// nothing else waits on it). Renewals then grow with the roles — two
/// bouncers per subnet, the VPCs' dividers — not with the hosts: 100,000
/// hosts without roles renew 5,000 times a second where a 3 s lease on each
/// would renew 100,000 times. When a droplet gains or loses a role it moves
/// its key to a lease of the other TTL, the key never absent meanwhile.
public struct DropletRegistration: Service {
    let store: Store
    let name: String
    let spec: DropletSpec
    let liveness: Liveness
    let logger: Logger

    /// How long a droplet's lease lasts, with and without a role.
    public struct Liveness: Sendable {
        /// Seconds, for a droplet that is neither a bouncer nor a divider.
        public var ttl: Int64
        /// Seconds, while it is one.
        public var roleTTL: Int64
        /// Whether the droplet is a bouncer or a divider now; set by its
        /// transitd as its tables change, waited on here (no polling).
        public var holdsRole: WatchedFlag

        public init(ttl: Int64 = 60, roleTTL: Int64 = 3, holdsRole: WatchedFlag = WatchedFlag()) {
            self.ttl = ttl
            self.roleTTL = roleTTL
            self.holdsRole = holdsRole
        }

        /// The TTL the droplet's lease should have now.
        public var current: Int64 { holdsRole.value ? roleTTL : ttl }

        /// Returns once the TTL it should have is not `held`.
        func changed(from held: Int64) async {
            while current == held && !Task.isCancelled {
                await holdsRole.changed(from: holdsRole.value)
            }
        }
    }

    public init(store: Store, name: String, spec: DropletSpec, liveness: Liveness = Liveness(), logger: Logger) {
        self.store = store
        self.name = name
        self.spec = spec
        self.liveness = liveness
        self.logger = logger
    }

    /// One of transitd's services: registered until shutdown. The lease is
    /// left to lapse rather than revoked, so a transitd restarted at once
    /// (an upgrade) takes its place before the operator moves anything.
    public func run() async {
        let (store, name, spec, liveness, logger) = (store, name, spec, liveness, logger)
        await cancelWhenGracefulShutdown { await Self.run(store: store, name: name, spec: spec, liveness: liveness, logger: logger) }
    }

    /// Registers and keeps the lease alive until cancelled; after a lapse
    /// or a lost connection it registers again.
    public static func run(store: Store, name: String, spec: DropletSpec, liveness: Liveness, logger: Logger) async {
        var logged = false
        await LeaseHolder.hold(store.etcd, ttl: { liveness.current }, changed: { await liveness.changed(from: $0) }, retryDelay: .milliseconds(500), register: { lease in
            try await upsert(store: store, name: name, spec: spec)
            try await store.etcd.put(store.dropletLeasePrefix + name, Array(spec.transitd.utf8), lease: lease)
            logger.info("droplet registered", metadata: ["droplet.name": "\(name)", "etcd.lease": "\(lease)"])
            logged = false
        }, lost: { error in
            if !logged { logger.warning("droplet registration lost; retrying", metadata: ["error": "\(error)"]) }
            logged = true
        })
    }

    static func upsert(store: Store, name: String, spec: DropletSpec) async throws {
        for _ in 0..<20 {
            if var current = try await store.get(DropletSpec.self, name) {
                if current.spec == spec && current.metadata.deletionTimestamp == nil { return }
                current.spec = spec
                do { try await store.update(current); return } catch StoreError.conflict(_, _) { continue }
            }
            do { try await store.create(Droplet(name: name, spec: spec)); return } catch StoreError.alreadyExists(_, _) { continue }
        }
        throw StoreError.conflict(.droplet, name)
    }
}
