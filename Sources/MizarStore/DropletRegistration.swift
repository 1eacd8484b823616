import Logging
import MizarAPI
import MizarEtcd
import ServiceLifecycle

/// A transitd's presence in etcd: its Droplet object (created, or its spec
/// brought up to date) and a key under a lease it keeps alive. When the
/// transitd dies the lease lapses, the key vanishes, and the operator marks
/// the droplet NotReady and moves its bouncers and dividers.
public struct DropletRegistration: Service {
    let store: Store
    let name: String
    let spec: DropletSpec
    let logger: Logger

    public init(store: Store, name: String, spec: DropletSpec, logger: Logger) {
        self.store = store
        self.name = name
        self.spec = spec
        self.logger = logger
    }

    /// One of transitd's services: registered until shutdown. The lease is
    /// left to lapse rather than revoked, so a transitd restarted at once
    /// (an upgrade) takes its place before the operator moves anything.
    public func run() async {
        let (store, name, spec, logger) = (store, name, spec, logger)
        await cancelWhenGracefulShutdown { await Self.run(store: store, name: name, spec: spec, logger: logger) }
    }

    /// Registers and keeps the lease alive until cancelled; after a lapse
    /// or a lost connection it registers again.
    public static func run(store: Store, name: String, spec: DropletSpec, ttl: Int64 = 3, logger: Logger) async {
        var logged = false
        await LeaseHolder.hold(store.etcd, ttl: ttl, retryDelay: .milliseconds(500), register: { lease in
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
