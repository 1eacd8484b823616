import Logging
import MizarAPI
import MizarEtcd
import MizarStore
import Synchronization

/// The operator's view of one kind: every object, kept current by a list
/// followed by a watch (relisting when the watch ends), with handlers told
/// of each change. Controllers read from here and write through the store.
public final class Informer<Spec: ObjectSpec>: Sendable {
    public typealias Handler = @Sendable (_ old: Object<Spec>?, _ new: Object<Spec>?) -> Void

    private let cache = Mutex<[String: Object<Spec>]>([:])
    private let handlers = Mutex<[Handler]>([])
    private let synced = Mutex<Bool>(false)

    public init() {}

    public func get(_ name: String) -> Object<Spec>? { cache.withLock { $0[name] } }
    public func list() -> [Object<Spec>] { cache.withLock { Array($0.values) } }
    public func filter(_ included: (Object<Spec>) -> Bool) -> [Object<Spec>] {
        cache.withLock { $0.values.filter(included) }
    }
    public var hasSynced: Bool { synced.withLock { $0 } }

    /// Called on the informer's task for every change, in order.
    public func onChange(_ handler: @escaping Handler) { handlers.withLock { $0.append(handler) } }

    /// Lists and watches until cancelled.
    public func run(store: Store, logger: Logger) async {
        while !Task.isCancelled {
            do {
                let (objects, revision) = try await store.list(Spec.self)
                let fresh = Dictionary(uniqueKeysWithValues: objects.map { ($0.name, $0) })
                let old = cache.withLock { c in defer { c = fresh }; return c }
                for name in Set(old.keys).union(fresh.keys) where old[name] != fresh[name] {
                    notify(old[name], fresh[name])
                }
                synced.withLock { $0 = true }
                for try await batch in store.watch(Spec.self, after: revision) {
                    for event in batch {
                        let new = event.kind == .put ? event.object : nil
                        let previous = cache.withLock { c in
                            defer { c[event.name] = new }
                            return c[event.name]
                        }
                        notify(previous, new)
                    }
                }
            } catch is CancellationError {
                return
            } catch {
                logger.warning("watch ended; listing again", metadata: ["kind": "\(Spec.kind.rawValue)", "error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    /// Puts a just-written object into the cache at once (its watch event
    /// follows), so the writer's next read is not older than its write.
    public func record(_ object: Object<Spec>) {
        cache.withLock { c in
            if let current = c[object.name], let a = Int64(current.metadata.resourceVersion ?? ""),
               let b = Int64(object.metadata.resourceVersion ?? ""), a >= b { return }
            c[object.name] = object
        }
    }

    private func notify(_ old: Object<Spec>?, _ new: Object<Spec>?) {
        for h in handlers.withLock({ $0 }) { h(old, new) }
    }
}

/// Keys to reconcile: each key is handled by one worker at a time, a key
/// added again while it is handled is handled once more afterwards, and
/// failed keys come back after a growing delay.
public actor WorkQueue {
    private var queue: [String] = []
    private var queued: Set<String> = []
    private var active: Set<String> = []
    private var again: Set<String> = []
    private var failures: [String: Int] = [:]
    private var waiters: [CheckedContinuation<String?, Never>] = []
    private var closed = false

    public init() {}

    public func add(_ key: String) {
        guard !closed else { return }
        if active.contains(key) { again.insert(key); return }
        guard queued.insert(key).inserted else { return }
        if !waiters.isEmpty {
            queued.remove(key)
            active.insert(key)
            waiters.removeFirst().resume(returning: key)
        } else {
            queue.append(key)
        }
    }

    /// The next key, or nil once closed.
    public func next() async -> String? {
        if closed { return nil }
        if !queue.isEmpty {
            let key = queue.removeFirst()
            queued.remove(key)
            active.insert(key)
            return key
        }
        return await withCheckedContinuation { waiters.append($0) }
    }

    /// The key was handled; `retry` brings it back after a delay that grows
    /// with each consecutive failure (10 ms to 5 s).
    public func done(_ key: String, retry: Bool) {
        active.remove(key)
        if retry {
            let n = failures[key, default: 0] + 1
            failures[key] = n
            let delay = min(5000, 10 << min(n - 1, 9))
            Task { [weak self] in
                try? await Task.sleep(for: .milliseconds(delay))
                await self?.add(key)
            }
        } else {
            failures[key] = nil
        }
        if again.remove(key) != nil { add(key) }
    }

    public func close() {
        closed = true
        for w in waiters { w.resume(returning: nil) }
        waiters = []
    }
}

/// What a reconcile asks of its queue.
public enum Outcome: Sendable {
    /// Done until something changes.
    case done
    /// A temporary failure: try again after a delay.
    case retry(String)
}

/// Runs `reconcile` for queued keys on `workers` concurrent tasks.
func runWorkers(_ queue: WorkQueue, workers: Int, logger: Logger, kind: Kind,
                _ reconcile: @escaping @Sendable (String) async -> Outcome) async {
    await withTaskGroup(of: Void.self) { group in
        for _ in 0..<workers {
            group.addTask {
                while let key = await queue.next() {
                    let outcome = await reconcile(key)
                    if case .retry(let why) = outcome {
                        logger.debug("will retry", metadata: ["kind": "\(kind.rawValue)", "name": "\(key)", "reason": "\(why)"])
                        await queue.done(key, retry: true)
                    } else {
                        await queue.done(key, retry: false)
                    }
                }
            }
        }
    }
}
