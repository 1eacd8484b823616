import Foundation
import MizarAPI
import MizarCore
import MizarEtcd

/// Why a store operation was refused. Each names the object and, where one
/// field is at fault, the field.
public enum StoreError: Error, CustomStringConvertible, Sendable, Equatable {
    case invalid(ValidationError)
    case notFound(Kind, String)
    case alreadyExists(Kind, String)
    /// Written by someone else since it was read: read again and retry.
    case conflict(Kind, String)

    public var description: String {
        switch self {
        case .invalid(let e): "\(e)"
        case .notFound(let k, let n): "\(k.rawValue) \(n) not found"
        case .alreadyExists(let k, let n): "\(k.rawValue) \(n) already exists"
        case .conflict(let k, let n): "\(k.rawValue) \(n) was changed by someone else; read it again and retry"
        }
    }
}

/// A change to one object, as a watch delivers it.
public struct ObjectChange<Spec: ObjectSpec>: Sendable {
    public enum Kind: Sendable { case put, delete }
    public var kind: Kind
    public var name: String
    /// The object after a put, before a delete (when known).
    public var object: Object<Spec>?
    public var revision: Int64
}

/// The management plane's objects in etcd, one key per object:
/// `/mizar/v1/<kind plural>/<name>` (`<namespace>/<name>` for a namespaced
/// kind: NetworkPolicy), the value the object's canonical JSON
/// without its resourceVersion (which is the key's mod revision). Creating
/// subnets and endpoints also checks them against their VPC, their subnet
/// and each other, atomically with the write.
public struct Store: Sendable {
    public let etcd: Etcd
    /// Where the objects live in etcd; tests give each store its own.
    public let root: String
    public static let defaultRoot = "/mizar/v1/"

    public init(etcd: Etcd, root: String = Store.defaultRoot) {
        self.etcd = etcd
        self.root = root.hasSuffix("/") ? root : root + "/"
    }

    public func prefix(_ kind: Kind) -> String { "\(root)\(kind.plural)/" }
    /// Each live droplet's key, held under its transitd's lease.
    public var dropletLeasePrefix: String { "\(root)droplet-leases/" }
    /// Each live operator replica's key, held under its lease.
    public var operatorPrefix: String { "\(root)operators/" }
    /// An object's events, oldest first.
    public func eventPrefix(_ kind: Kind, _ name: String) -> String { "\(root)events/\(kind.plural)/\(name)/" }

    /// The write of an event, to go into a transaction with other writes;
    /// under `lease` events expire with it, and they go with the object
    /// when it is deleted.
    public func eventOperation(_ kind: Kind, _ name: String, _ event: ObjectEvent, lease: Int64 = 0) -> EtcdOperation {
        // Time first so that keys sort in order; a random tail keeps two
        // events of one nanosecond apart.
        let key = eventPrefix(kind, name) + String(format: "%020llu-%08x", UInt64(Date().timeIntervalSince1970 * 1e9), UInt32.random(in: 0...UInt32.max))
        return .put(key, ObjectCoding.encode(event), lease: lease)
    }

    public func events(_ kind: Kind, _ name: String) async throws -> [ObjectEvent] {
        try await etcd.list(prefix: eventPrefix(kind, name)).kvs.compactMap { try? ObjectCoding.decode(ObjectEvent.self, from: $0.value) }
    }
    public func key(_ kind: Kind, _ name: String) -> String { prefix(kind) + name }

    // MARK: Reading

    public func get<S: ObjectSpec>(_ type: S.Type, _ name: String) async throws -> Object<S>? {
        guard let kv = try await etcd.get(key(S.kind, name)) else { return nil }
        return try Self.decode(kv)
    }

    /// Every object of the kind, by name, and the revision to watch from
    /// (revision + 1) to miss nothing.
    public func list<S: ObjectSpec>(_ type: S.Type) async throws -> (objects: [Object<S>], revision: Int64) {
        let (kvs, revision) = try await etcd.list(prefix: prefix(S.kind))
        return (try kvs.map { kv throws -> Object<S> in try Self.decode(kv) }, revision)
    }

    /// Changes to objects of the kind after `revision`.
    public func watch<S: ObjectSpec>(_ type: S.Type, after revision: Int64) -> AsyncThrowingStream<[ObjectChange<S>], Error> {
        let events = etcd.watch(prefix: prefix(S.kind), fromRevision: revision + 1, previousValues: true)
        let (stream, continuation) = AsyncThrowingStream<[ObjectChange<S>], Error>.makeStream()
        let task = Task {
            do {
                for try await batch in events {
                    continuation.yield(try batch.map { e in
                        let name = String(e.kv.key.dropFirst(prefix(S.kind).count))
                        switch e.kind {
                        case .put: return ObjectChange(kind: .put, name: name, object: try Self.decode(e.kv), revision: e.kv.modRevision)
                        case .delete: return ObjectChange(kind: .delete, name: name, object: try e.previous.map { kv throws -> Object<S> in try Self.decode(kv) },
                                                         revision: e.kv.modRevision)
                        }
                    })
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    /// Reads one object, then follows its changes (nil once it is gone),
    /// until `settled` gives a result or `timeout` passes (nil then). One
    /// read and one watch, however long it takes: what a waiter uses
    /// instead of polling.
    public func follow<S: ObjectSpec, R: Sendable>(_ type: S.Type, _ name: String, timeout: Duration,
                                                   until settled: @escaping @Sendable (Object<S>?) throws -> R?) async throws -> R? {
        try await follow(key: key(S.kind, name), timeout: timeout) { kv in
            try settled(try kv.map { kv throws -> Object<S> in try Self.decode(kv) })
        }
    }

    /// `follow` for one key as etcd holds it.
    public func follow<R: Sendable>(key: String, timeout: Duration,
                                    until settled: @escaping @Sendable (EtcdKeyValue?) throws -> R?) async throws -> R? {
        try await withThrowingTaskGroup(of: R?.self) { group in
            group.addTask { [etcd] in
                // The watch first, from now on, and the read once it is set
                // up: nothing is missed, and the watch never has to catch up
                // (which etcd does only every 100 ms).
                for try await batch in etcd.watch(prefix: key, fromRevision: 0, announcingStart: true) {
                    if batch.isEmpty, let r = try settled(try await etcd.get(key)) { return r }
                    // The prefix also matches longer names.
                    for e in batch where e.kv.key == key {
                        if let r = try settled(e.kind == .delete ? nil : e.kv) { return r }
                    }
                }
                throw CancellationError()
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            return try await group.next() ?? nil
        }
    }

    // MARK: Writing

    /// Stores a new object: validated alone and against what it refers to,
    /// given a uid, generation 1, a creation time and status Init.
    @discardableResult
    public func create<S: ObjectSpec>(_ object: Object<S>) async throws -> Object<S> {
        var o = object
        S.normalize(&o.metadata)
        do { try o.validate() } catch { throw StoreError.invalid(error) }
        o.metadata.uid = UUID().uuidString.lowercased()
        o.metadata.generation = 1
        o.metadata.creationTimestamp = Self.now()
        o.metadata.resourceVersion = nil
        o.metadata.deletionTimestamp = nil
        if o.status == nil { o.status = Self.initialStatus(S.self) }
        let key = self.key(S.kind, o.storeName)
        for _ in 0..<20 {
            // Endpoints check their own existence with their other reads.
            if S.kind != .endpoint, try await etcd.get(key) != nil { throw StoreError.alreadyExists(S.kind, o.storeName) }
            let admission = try await Admission(store: self).check(o)
            let result = try await etcd.transaction(
                if: [.absent(key)] + admission.conditions,
                then: [.put(key, Self.encode(o))] + admission.writes)
            if result.succeeded {
                o.metadata.resourceVersion = "\(result.revision)"
                return o
            }
            // It appeared, or something it was checked against changed
            // meanwhile: look again.
        }
        throw StoreError.conflict(S.kind, o.storeName)
    }

    /// Replaces the object's spec and labels, if nobody wrote it since it
    /// was read (its resourceVersion). A changed spec counts a generation.
    @discardableResult
    public func update<S: ObjectSpec>(_ object: Object<S>) async throws -> Object<S> {
        var object = object
        S.normalize(&object.metadata)
        do { try object.validate() } catch { throw StoreError.invalid(error) }
        return try await modify(S.self, object.storeName, expecting: object.metadata.resourceVersion) { current in
            if current.spec != object.spec {
                try Admission.checkUpdate(from: current, to: object)
                current.metadata.generation = (current.metadata.generation ?? 0) + 1
            }
            current.spec = object.spec
            current.metadata.labels = object.metadata.labels
        }
    }

    /// Replaces the object's status (controllers only); compare-and-swap
    /// on resourceVersion when given.
    @discardableResult
    public func updateStatus<S: ObjectSpec>(_ type: S.Type, _ name: String, expecting resourceVersion: String? = nil,
                                            _ change: (inout S.Status) throws -> Void) async throws -> Object<S> {
        try await modify(S.self, name, expecting: resourceVersion) { o in
            var status = o.status ?? Self.initialStatus(S.self)
            try change(&status)
            o.status = status
        }
    }

    /// Adds or removes a finalizer; removing the last one from an object
    /// being deleted deletes it.
    public func setFinalizer<S: ObjectSpec>(_ type: S.Type, _ name: String, _ finalizer: String, present: Bool) async throws {
        let key = self.key(S.kind, name)
        for _ in 0..<100 {
            guard let kv = try await etcd.get(key) else { return }
            var o: Object<S> = try Self.decode(kv)
            var list = o.metadata.finalizers ?? []
            if present == list.contains(finalizer) { return }
            if present { list.append(finalizer) } else { list.removeAll { $0 == finalizer } }
            o.metadata.finalizers = list.isEmpty ? nil : list
            let release = o.metadata.deletionTimestamp != nil && list.isEmpty ? Admission(store: self).releases(o) + [.deletePrefix(eventPrefix(S.kind, name))] : nil
            let then: [EtcdOperation] = release.map { [.delete(key)] + $0 } ?? [.put(key, Self.encode(o))]
            if try await etcd.transaction(if: [.modRevision(key, kv.modRevision)], then: then).succeeded { return }
        }
        throw StoreError.conflict(S.kind, name)
    }

    /// Deletes the object: at once when it has no finalizers (releasing
    /// what it held, such as its address), otherwise it is marked with a
    /// deletion time for its controllers to finish. False if it was absent.
    @discardableResult
    public func delete<S: ObjectSpec>(_ type: S.Type, _ name: String) async throws -> Bool {
        let key = self.key(S.kind, name)
        for _ in 0..<100 {
            guard let kv = try await etcd.get(key) else { return false }
            var o: Object<S> = try Self.decode(kv)
            let then: [EtcdOperation]
            if o.metadata.finalizers?.isEmpty ?? true {
                then = [.delete(key)] + Admission(store: self).releases(o) + [.deletePrefix(eventPrefix(S.kind, name))]
            } else {
                if o.metadata.deletionTimestamp != nil { return true }
                o.metadata.deletionTimestamp = Self.now()
                then = [.put(key, Self.encode(o))]
            }
            if try await etcd.transaction(if: [.modRevision(key, kv.modRevision)], then: then).succeeded { return true }
        }
        throw StoreError.conflict(S.kind, name)
    }

    /// Writes the whole object (spec, status and metadata as given) if it
    /// is still at `resourceVersion` and every extra condition holds, with
    /// the extra operations in the same transaction. Controllers use it to
    /// make a status change and a claim (an address, a VNI) one step. nil
    /// when a condition failed: read again and decide.
    public func write<S: ObjectSpec>(_ object: Object<S>, alsoIf conditions: [EtcdCondition] = [],
                                     alsoDo operations: [EtcdOperation] = []) async throws -> Object<S>? {
        guard let rv = object.metadata.resourceVersion, let revision = Int64(rv) else {
            throw StoreError.conflict(S.kind, object.storeName)
        }
        let key = self.key(S.kind, object.storeName)
        let result = try await etcd.transaction(if: [.modRevision(key, revision)] + conditions,
                                                then: [.put(key, Self.encode(object))] + operations)
        guard result.succeeded else { return nil }
        var o = object
        o.metadata.resourceVersion = "\(result.revision)"
        return o
    }

    /// The key that holds `ip` of a VPC for one endpoint (IPAM).
    public func ipKey(vpc: String, ip: IPv4Address) -> String { Admission(store: self).ipKey(vpc, ip) }
    /// The key that holds a VNI for one VPC.
    public func vniKey(_ vni: VNI) -> String { Admission(store: self).vniKey(vni) }

    // MARK: Plumbing

    func modify<S: ObjectSpec>(_ type: S.Type, _ name: String, expecting resourceVersion: String?,
                               _ change: (inout Object<S>) throws -> Void) async throws -> Object<S> {
        let key = self.key(S.kind, name)
        for _ in 0..<100 {
            guard let kv = try await etcd.get(key) else { throw StoreError.notFound(S.kind, name) }
            if let resourceVersion, resourceVersion != "\(kv.modRevision)" { throw StoreError.conflict(S.kind, name) }
            var o: Object<S> = try Self.decode(kv)
            try change(&o)
            let result = try await etcd.transaction(if: [.modRevision(key, kv.modRevision)], then: [.put(key, Self.encode(o))])
            if result.succeeded {
                o.metadata.resourceVersion = "\(result.revision)"
                return o
            }
            if resourceVersion != nil { throw StoreError.conflict(S.kind, name) }
        }
        throw StoreError.conflict(S.kind, name)
    }

    static func encode<S: ObjectSpec>(_ o: Object<S>) -> [UInt8] {
        var stored = o
        stored.metadata.resourceVersion = nil
        return ObjectCoding.encode(stored)
    }

    static func decode<S: ObjectSpec>(_ kv: EtcdKeyValue) throws -> Object<S> {
        var o: Object<S>
        do { o = try ObjectCoding.decode(Object<S>.self, from: kv.value) } catch {
            throw StoreError.invalid(ValidationError(field: kv.key, reason: "stored object does not decode: \(error)"))
        }
        o.metadata.resourceVersion = "\(kv.modRevision)"
        return o
    }

    static func initialStatus<S: ObjectSpec>(_ type: S.Type) -> S.Status { S.Status() }

    static func now() -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: Date())
    }
}
