import Logging
import MizarAPI
import MizarEtcd
import MizarStore
import Synchronization
import DequeModule

/// The operator's view of one kind: every object, kept current by a list
/// followed by a watch (relisting when the watch ends), with handlers told
/// of each change. Controllers read from here and write through the store.
public final class Informer<Spec: ObjectSpec>: Sendable {
    public typealias Handler = @Sendable (_ old: Object<Spec>?, _ new: Object<Spec>?) -> Void

    private let cache: Mutex<Cache>
    private let handlers = Mutex<[Handler]>([])
    private let synced = Latch()

    /// `indexes`: the fields the controllers look objects up by (an
    /// endpoint's subnet, a bouncer's droplet): `objects(by:_:)` answers
    /// from them in the size of the answer, not of the cache.
    public init(indexes: [InformerIndex<Spec>] = []) {
        cache = Mutex(Cache(indexes: indexes))
    }

    /// The objects, their indexes, and the etcd revision the cache reflects.
    private struct Cache {
        let indexes: [InformerIndex<Spec>]
        var objects: [String: Object<Spec>] = [:]
        /// Index name → key → store names.
        var indexed: [String: [String: Set<String>]] = [:]
        var revision: Int64 = 0

        /// Puts (or, with nil, removes) one object, keeping the indexes;
        /// returns what was there.
        mutating func set(_ name: String, _ new: Object<Spec>?) -> Object<Spec>? {
            let old = objects[name]
            objects[name] = new
            for index in indexes {
                let before = old.map(index.keys) ?? [], after = new.map(index.keys) ?? []
                guard before != after else { continue }
                for k in before where !after.contains(k) {
                    indexed[index.name]?[k]?.remove(name)
                    if indexed[index.name]?[k]?.isEmpty == true { indexed[index.name]?[k] = nil }
                }
                for k in after where !before.contains(k) { indexed[index.name, default: [:]][k, default: []].insert(name) }
            }
            return old
        }
    }

    /// By store name: NAMESPACE/NAME for namespaced kinds.
    public func get(_ name: String) -> Object<Spec>? { cache.withLock { $0.objects[name] } }
    /// The objects whose `index` holds `key`.
    public func objects(by index: InformerIndex<Spec>, _ key: String) -> [Object<Spec>] {
        cache.withLock { c in
            precondition(c.indexes.contains { $0.name == index.name }, "\(Spec.kind.rawValue) has no index \(index.name)")
            return (c.indexed[index.name]?[key] ?? []).compactMap { c.objects[$0] }
        }
    }
    public func list() -> [Object<Spec>] { cache.withLock { Array($0.objects.values) } }
    public func filter(_ included: (Object<Spec>) -> Bool) -> [Object<Spec>] {
        cache.withLock { $0.objects.values.filter(included) }
    }
    public func contains(where included: (Object<Spec>) -> Bool) -> Bool {
        cache.withLock { $0.objects.values.contains(where: included) }
    }
    public var hasSynced: Bool { synced.isOpen }
    /// Returns once the first list is in the cache (or the task is cancelled).
    public func waitSynced() async { await synced.wait() }

    /// Called on the informer's task for every change, in order.
    public func onChange(_ handler: @escaping Handler) { handlers.withLock { $0.append(handler) } }

    /// Lists and watches until cancelled.
    public func run(store: Store, logger: Logger) async {
        let listedRevision = Mutex<Int64>(0)
        await Reflector.run(Spec.kind.rawValue, logger: logger, list: {
            let listed = try await store.list(Spec.self)
            listedRevision.withLock { $0 = listed.revision }
            return (listed.objects, listed.revision)
        }, watch: { store.watch(Spec.self, after: $0) }, replace: { objects in
            let fresh = Dictionary(uniqueKeysWithValues: objects.map { ($0.storeName, $0) })
            let revision = listedRevision.withLock { $0 }
            let old = cache.withLock { c in
                let old = c.objects
                c = Cache(indexes: c.indexes)
                for (name, o) in fresh { _ = c.set(name, o) }
                c.revision = revision
                return old
            }
            for name in Set(old.keys).union(fresh.keys) where old[name] != fresh[name] {
                notify(old[name], fresh[name])
            }
            synced.open()
        }, apply: { batch in
            for event in batch {
                let new = event.kind == .put ? event.object : nil
                let previous = cache.withLock { c in
                    c.revision = max(c.revision, event.revision)
                    return c.set(event.name, new)
                }
                notify(previous, new)
            }
        })
    }

    /// Puts a just-written object into the cache at once (its watch event
    /// follows), so the writer's next read is not older than its write.
    /// Never older than what the watch brought: not over a later version,
    /// and not back once the watch has passed the write and the object is
    /// gone (deleted meanwhile: putting it back would leave a ghost that
    /// no event ever removes).
    /// Handlers are told of the change here: when its watch event comes,
    /// the cache already holds it and shows no difference.
    public func record(_ object: Object<Spec>) {
        guard let written = Int64(object.metadata.resourceVersion ?? "") else { return }
        let replaced: Object<Spec>?? = cache.withLock { c in
            if let current = c.objects[object.storeName] {
                if let seen = Int64(current.metadata.resourceVersion ?? ""), seen >= written { return .none }
            } else if c.revision >= written {
                return .none
            }
            return .some(c.set(object.storeName, object))
        }
        if case .some(let previous) = replaced { notify(previous, object) }
    }

    private func notify(_ old: Object<Spec>?, _ new: Object<Spec>?) {
        for h in handlers.withLock({ $0 }) { h(old, new) }
    }
}

/// Keys to reconcile: each key is handled by one worker at a time, a key
/// added again while it is handled is handled once more afterwards, and
/// failed keys come back after a delay. Adding and taking are O(1).
public actor WorkQueue {
    private var queue = Deque<String>()
    private var queued: Set<String> = []
    private var active: Set<String> = []
    private var again: Set<String> = []
    private var failures: [String: Int] = [:]
    private var waiters = Deque<CheckedContinuation<String?, Never>>()
    private var closed = false

    public init() {}

    /// Keys waiting to be worked on.
    public var depth: Int { queue.count }

    public func add(_ key: String) {
        guard !closed else { return }
        if active.contains(key) { again.insert(key); return }
        guard queued.insert(key).inserted else { return }
        if let waiter = waiters.popFirst() {
            queued.remove(key)
            active.insert(key)
            waiter.resume(returning: key)
        } else {
            queue.append(key)
        }
    }

    /// The next key, or nil once closed.
    public func next() async -> String? {
        if closed { return nil }
        if let key = queue.popFirst() {
            queued.remove(key)
            active.insert(key)
            return key
        }
        return await withCheckedContinuation { waiters.append($0) }
    }

    /// The key was handled. `.retry` brings it back after a delay that
    /// grows with each consecutive failure (10 ms to 5 s), `.retryAfter`
    /// after the delay it names; `.done` and `.failed` forget its failures.
    public func done(_ key: String, _ outcome: Outcome) {
        active.remove(key)
        switch outcome {
        case .retry, .retryAfter:
            let n = failures[key, default: 0] + 1
            failures[key] = n
            let delay: Duration = if case .retryAfter(let d, _) = outcome { d } else { .milliseconds(min(5000, 10 << min(n - 1, 9))) }
            Task { [weak self] in
                try? await Task.sleep(for: delay)
                await self?.add(key)
            }
        case .done, .failed:
            failures[key] = nil
        }
        if again.remove(key) != nil { add(key) }
    }

    public func close() {
        closed = true
        while let w = waiters.popFirst() { w.resume(returning: nil) }
    }
}

/// What a reconcile asks of its queue.
public enum Outcome: Sendable, Equatable {
    /// Done until something changes.
    case done
    /// A temporary failure: try again after a growing delay.
    case retry(String)
    /// Try again after this long (a known wait, not a failure).
    case retryAfter(Duration, String)
    /// For good, until the object changes: its phase becomes Failed with
    /// this reason code and message.
    case failed(ReasonCode, String)
}

/// Runs `reconcile` for queued keys on `workers` concurrent tasks.
func runWorkers(_ queue: WorkQueue, workers: Int, logger: Logger, kind: Kind,
                _ reconcile: @escaping @Sendable (String) async -> Outcome) async {
    await withTaskGroup(of: Void.self) { group in
        for _ in 0..<workers {
            group.addTask {
                while let key = await queue.next() {
                    let outcome = await reconcile(key)
                    switch outcome {
                    case .retry(let why), .retryAfter(_, let why):
                        logger.debug("will retry", metadata: ["kind": "\(kind.rawValue)", "name": "\(key)", "reason": "\(why)"])
                    case .done, .failed: break
                    }
                    await queue.done(key, outcome)
                }
            }
        }
    }
}

/// Opens once, for good; whoever waits on it then goes on. No polling: a
/// waiter sleeps until `open` (or until its task is cancelled).
final class Latch: Sendable {
    private struct State {
        var open = false
        var next = 0
        var waiting: [Int: CheckedContinuation<Void, Never>] = [:]
    }

    private let state = Mutex(State())

    var isOpen: Bool { state.withLock { $0.open } }

    func open() {
        let waiting = state.withLock { s in
            s.open = true
            defer { s.waiting = [:] }
            return Array(s.waiting.values)
        }
        for c in waiting { c.resume() }
    }

    func wait() async {
        let id = state.withLock { s in
            defer { s.next += 1 }
            return s.next
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let ready = state.withLock { s in
                    if s.open || Task.isCancelled { return true }
                    s.waiting[id] = c
                    return false
                }
                if ready { c.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiting.removeValue(forKey: id) }?.resume()
        }
    }
}

/// A field an informer's objects are looked up by: `keys` gives each
/// object's values of it (none, one, or several).
public struct InformerIndex<Spec: ObjectSpec>: Sendable {
    public let name: String
    public let keys: @Sendable (Object<Spec>) -> [String]

    public init(_ name: String, _ keys: @escaping @Sendable (Object<Spec>) -> [String]) {
        self.name = name
        self.keys = keys
    }
}

// The operator's indexes.
extension InformerIndex where Spec == SubnetSpec {
    static let vpc = Self("vpc") { [$0.spec.vpc] }
}
extension InformerIndex where Spec == EndpointSpec {
    static let vpc = Self("vpc") { [$0.spec.vpc] }
    static let subnet = Self("subnet") { [$0.spec.subnet] }
    /// The droplet it is meant for and the one it was provisioned on.
    static let droplet = Self("droplet") { e in
        Array(Set([e.spec.droplet, e.status?.droplet].compactMap { $0 }))
    }
}
extension InformerIndex where Spec == DropletSpec {
    static let ip = Self("ip") { [$0.spec.ip.description] }
}
extension InformerIndex where Spec == BouncerSpec {
    static let vpc = Self("vpc") { [$0.spec.vpc] }
    static let subnet = Self("subnet") { [$0.spec.subnet] }
    static let droplet = Self("droplet") { [$0.spec.droplet] }
}
extension InformerIndex where Spec == DividerSpec {
    static let vpc = Self("vpc") { [$0.spec.vpc] }
    static let droplet = Self("droplet") { [$0.spec.droplet] }
}
