import Logging
import MizarEtcd
import MizarStore
import Synchronization

/// A consistent-hash ring of operator replicas: each VPC (and each
/// droplet) belongs to the first replica clockwise of its hash. A replica
/// joining or leaving moves only the keys next to its points.
public struct Ring: Sendable, Equatable {
    public static let pointsPerMember = 64
    let points: [(hash: UInt64, member: String)]
    public let members: [String]

    public init(members: some Sequence<String>) {
        self.members = Array(Set(members)).sorted()
        points = self.members.flatMap { m in (0..<Self.pointsPerMember).map { (stableHash("\(m)#\($0)"), m) } }
            .sorted { ($0.hash, $0.member) < ($1.hash, $1.member) }
    }

    /// The member that owns `key`; nil on an empty ring.
    public func owner(of key: String) -> String? {
        guard !points.isEmpty else { return nil }
        let h = stableHash(key)
        var lo = 0, hi = points.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if points[mid].hash < h { lo = mid + 1 } else { hi = mid }
        }
        return points[lo == points.count ? 0 : lo].member
    }

    public static func == (a: Ring, b: Ring) -> Bool { a.members == b.members }
}

/// This replica's place among the operators: it holds a key under a lease
/// in etcd and watches everyone's, so that each replica knows the ring.
/// When a replica dies its lease lapses, the ring shrinks, and the others
/// take its VPCs over.
final class Membership: Sendable {
    let id: String
    let ttl: Int64
    private let ring = Mutex(Ring(members: []))
    private let lease = Mutex<Int64?>(nil)
    private let handlers = Mutex<[@Sendable () -> Void]>([])
    private let firstJoined = Latch()

    init(id: String, ttl: Int64 = 3) {
        self.id = id
        self.ttl = ttl
    }

    var current: Ring { ring.withLock { $0 } }
    /// Whether this replica is on the ring yet (it decides nothing before).
    var joined: Bool { current.members.contains(id) }
    /// Returns once this replica has first seen itself on the ring.
    func waitJoined() async { await firstJoined.wait() }
    func owns(_ key: String) -> Bool { current.owner(of: key) == id }
    func onChange(_ h: @escaping @Sendable () -> Void) { handlers.withLock { $0.append(h) } }

    /// Holds this replica's key alive, re-registering after a lapse.
    func register(store: Store, logger: Logger) async {
        await LeaseHolder.hold(store.etcd, ttl: ttl, retryDelay: .milliseconds(300), register: { granted in
            lease.withLock { $0 = granted }
            try await store.etcd.put(store.operatorPrefix + id, Array(id.utf8), lease: granted)
        }, lost: { error in
            logger.warning("operator membership lost; registering again", metadata: ["operator.id": "\(id)", "error": "\(error)"])
        })
    }

    /// Leaves the ring at once (a stopping replica), rather than when its
    /// lease lapses; runs even from a cancelled task.
    func leave(store: Store) async {
        guard let granted = lease.withLock({ $0 }) else { return }
        let etcd = store.etcd
        await Task.detached { try? await etcd.revokeLease(granted) }.value
    }

    /// Follows every replica's key.
    func watch(store: Store, logger: Logger) async {
        let prefix = store.operatorPrefix
        var members = Set<String>()
        let (list, watch) = Reflector.keys(store.etcd, under: prefix)
        await Reflector.run("operators", logger: logger, list: list, watch: watch, replace: { kvs in
            members = Set(kvs.map { String($0.key.dropFirst(prefix.count)) })
            update(members)
        }, apply: { batch in
            for e in batch {
                let m = String(e.kv.key.dropFirst(prefix.count))
                if e.kind == .put { members.insert(m) } else { members.remove(m) }
            }
            update(members)
        })
    }

    private func update(_ members: Set<String>) {
        let next = Ring(members: members)
        let changed = ring.withLock { r in
            defer { r = next }
            return r != next
        }
        if next.members.contains(id) { firstJoined.open() }
        if changed { for h in handlers.withLock({ $0 }) { h() } }
    }
}
