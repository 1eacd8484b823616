import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import GRPCProtobuf
import MizarCore
import MizarTLS
import NIOCore
import NIOSSL

/// An etcd failure, with what was being done.
public struct EtcdError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable { case unavailable, compacted, leaseExpired, watchCanceled, permissionDenied, tooLarge, other }
    public let kind: Kind
    public let description: String

    public init(_ kind: Kind, _ description: String) {
        self.kind = kind
        self.description = description
    }
}

/// One key as etcd holds it.
public struct EtcdKeyValue: Sendable, Equatable {
    public var key: String
    public var value: [UInt8]
    public var createRevision: Int64
    public var modRevision: Int64
    public var version: Int64
    public var lease: Int64

    init(_ kv: Etcdserverpb_KeyValue) {
        key = String(decoding: kv.key, as: UTF8.self)
        value = [UInt8](kv.value)
        createRevision = kv.createRevision
        modRevision = kv.modRevision
        version = kv.version
        lease = kv.lease
    }
}

/// A change seen by a watch.
public struct EtcdEvent: Sendable, Equatable {
    public enum Kind: Sendable { case put, delete }
    public var kind: Kind
    /// For a delete: the key, with modRevision the deletion's revision.
    public var kv: EtcdKeyValue
    public var previous: EtcdKeyValue?
}

/// What a transaction compares before choosing its branch.
public enum EtcdCondition: Sendable {
    /// The key does not exist.
    case absent(String)
    /// The key was last written at this revision (compare-and-swap).
    case modRevision(String, Int64)
    /// The key is the one created at this revision: not deleted and made
    /// again since, whatever writes it had.
    case createRevision(String, Int64)
    /// The key's value equals this.
    case value(String, [UInt8])
}

/// One operation inside a transaction.
public enum EtcdOperation: Sendable {
    case put(String, [UInt8], lease: Int64 = 0)
    case delete(String)
    case deletePrefix(String)
    case get(String)
}

/// A client of an etcd cluster over its v3 gRPC API, with one long-lived
/// HTTP/2 connection to each member it is given (calls go round the ready
/// ones; a member that dies is left out until it is back). Use `withEtcd`,
/// which runs the connections for the duration of its body.
public struct Etcd: Sendable {
    let client: GRPCClient<HTTP2ClientTransport.Posix>
    public let endpoint: String

    var kv: Etcdserverpb_KV.Client<HTTP2ClientTransport.Posix> { .init(wrapping: client) }
    var leases: Etcdserverpb_Lease.Client<HTTP2ClientTransport.Posix> { .init(wrapping: client) }
    var watches: Etcdserverpb_Watch.Client<HTTP2ClientTransport.Posix> { .init(wrapping: client) }
    var auth: Etcdserverpb_Auth.Client<HTTP2ClientTransport.Posix> { .init(wrapping: client) }

    // MARK: Keys

    /// The key's current value, or nil.
    public func get(_ key: String) async throws -> EtcdKeyValue? {
        var r = Etcdserverpb_RangeRequest()
        r.key = Data(key.utf8)
        return try await call("get \(key)") { try await kv.range(r, options: Self.unary) }.kvs.first.map(EtcdKeyValue.init)
    }

    /// Every key under `prefix`, sorted by key, and the store's revision at
    /// that moment (a watch from revision + 1 misses nothing). Read in pages
    /// of `page` keys, all at that one revision, so that no answer outgrows
    /// gRPC's 4 MB message limit however many keys there are.
    ///
    /// Pages are sized by bytes, not keys: etcd (3.4) walks the whole rest of
    /// the range for every page it answers, so a million keys read 500 at a
    /// time cost it 2,000 walks of up to a million entries — quadratic.
    /// Each page asks for as many keys as make about `pageBytes` at the
    /// last page's size per key (at least `page`, at most 50,000); a page
    /// too large for the client is asked again at a quarter.
    public func list(prefix: String, page: Int64 = 500, pageBytes: Int = 4 << 20) async throws -> (kvs: [EtcdKeyValue], revision: Int64) {
        var r = Etcdserverpb_RangeRequest()
        r.key = Data(prefix.utf8)
        r.rangeEnd = Self.prefixEnd(prefix)
        r.limit = page
        var all: [EtcdKeyValue] = []
        while true {
            let request = r
            let response: Etcdserverpb_RangeResponse
            do {
                response = try await call("list \(prefix)") { try await kv.range(request, options: Self.listPage) }
            } catch let e as EtcdError where e.kind == .tooLarge && r.limit > 1 {
                r.limit = max(1, r.limit / 4)
                continue
            }
            all += response.kvs.map(EtcdKeyValue.init)
            if r.revision == 0 { r.revision = response.header.revision }
            guard response.more, let last = response.kvs.last else { break }
            r.key = last.key + Data([0])   // the next key after the last one read
            let bytes = response.kvs.reduce(0) { $0 + $1.key.count + $1.value.count }
            let perKey = max(1, bytes / max(1, response.kvs.count))
            r.limit = min(50_000, max(page, Int64(pageBytes / perKey)))
        }
        return (all, r.revision)
    }

    /// How many keys lie under `prefix`.
    public func count(prefix: String) async throws -> Int64 {
        var r = Etcdserverpb_RangeRequest()
        r.key = Data(prefix.utf8)
        r.rangeEnd = Self.prefixEnd(prefix)
        r.countOnly = true
        return try await call("count \(prefix)") { try await kv.range(r, options: Self.unary) }.count
    }

    /// Writes the key; returns the revision of the write.
    @discardableResult
    public func put(_ key: String, _ value: [UInt8], lease: Int64 = 0) async throws -> Int64 {
        var r = Etcdserverpb_PutRequest()
        r.key = Data(key.utf8)
        r.value = Data(value)
        r.lease = lease
        return try await call("put \(key)") { try await kv.put(r, options: Self.unary) }.header.revision
    }

    /// Deletes the key; returns how many keys went (0 or 1).
    @discardableResult
    public func delete(_ key: String) async throws -> Int64 {
        var r = Etcdserverpb_DeleteRangeRequest()
        r.key = Data(key.utf8)
        return try await call("delete \(key)") { try await kv.deleteRange(r, options: Self.unary) }.deleted
    }

    /// Deletes every key under `prefix`.
    @discardableResult
    public func delete(prefix: String) async throws -> Int64 {
        var r = Etcdserverpb_DeleteRangeRequest()
        r.key = Data(prefix.utf8)
        r.rangeEnd = Self.prefixEnd(prefix)
        return try await call("delete \(prefix)*") { try await kv.deleteRange(r, options: Self.unary) }.deleted
    }

    /// If every condition holds, applies `then`, otherwise `otherwise`, in
    /// one atomic step. Returns whether the conditions held, the revision
    /// after, and what any `get` operations of the branch taken read.
    @discardableResult
    public func transaction(if conditions: [EtcdCondition], then: [EtcdOperation],
                            else otherwise: [EtcdOperation] = []) async throws -> (succeeded: Bool, revision: Int64, reads: [EtcdKeyValue?]) {
        var r = Etcdserverpb_TxnRequest()
        r.compare = conditions.map(Self.compare)
        r.success = then.map(Self.op)
        r.failure = otherwise.map(Self.op)
        let response = try await call("transaction") { try await kv.txn(r, options: Self.unary) }
        let reads: [EtcdKeyValue?] = response.responses.compactMap { op in
            if case .responseRange(let range)? = op.response { return .some(range.kvs.first.map(EtcdKeyValue.init)) }
            return nil
        }
        return (response.succeeded, response.header.revision, reads)
    }

    /// Creates the key only if it does not exist; false if it did.
    public func create(_ key: String, _ value: [UInt8], lease: Int64 = 0) async throws -> Bool {
        try await transaction(if: [.absent(key)], then: [.put(key, value, lease: lease)]).succeeded
    }

    /// Replaces the key only if nobody wrote it since `modRevision`.
    public func update(_ key: String, _ value: [UInt8], ifModRevision modRevision: Int64) async throws -> Bool {
        try await transaction(if: [.modRevision(key, modRevision)], then: [.put(key, value)]).succeeded
    }

    // MARK: Leases

    /// A new lease of `ttl` seconds; keys written with it vanish when it
    /// lapses.
    public func grantLease(ttl: Int64) async throws -> Int64 {
        var r = Etcdserverpb_LeaseGrantRequest()
        r.ttl = ttl
        let response = try await call("grant lease") { try await leases.leaseGrant(r, options: Self.unary) }
        guard response.error.isEmpty else { throw EtcdError(.other, "grant lease: \(response.error)") }
        return response.id
    }

    public func revokeLease(_ id: Int64) async throws {
        var r = Etcdserverpb_LeaseRevokeRequest()
        r.id = id
        _ = try await call("revoke lease \(id)") { try await leases.leaseRevoke(r, options: Self.unary) }
    }

    /// Seconds left on the lease; nil once it has lapsed.
    public func timeToLive(_ id: Int64) async throws -> Int64? {
        var r = Etcdserverpb_LeaseTimeToLiveRequest()
        r.id = id
        let ttl = try await call("lease \(id) ttl") { try await leases.leaseTimeToLive(r, options: Self.unary) }.ttl
        return ttl > 0 ? ttl : nil
    }

    /// Keeps the lease alive, refreshing every `interval` seconds, until
    /// the task is cancelled or `until` returns. Throws leaseExpired if
    /// etcd says it lapsed. A refresh stream that breaks is opened again at
    /// once: one broken stream must not let the lease lapse.
    public func keepAlive(_ id: Int64, every interval: Duration,
                          until: (@Sendable () async -> Void)? = nil) async throws {
        try await withThrowingTaskGroup(of: Bool.self) { group in
            if let until {
                group.addTask {
                    await until()
                    return true
                }
            }
            group.addTask {
                while true {
                    do {
                        try await self.keepAliveStream(id, every: interval)
                        return false
                    } catch let e as EtcdError where e.kind == .leaseExpired {
                        throw e
                    } catch is CancellationError {
                        throw CancellationError()
                    } catch {
                        if Task.isCancelled { throw CancellationError() }
                        try await Task.sleep(for: .milliseconds(50))
                    }
                }
            }
            // The first to end ends the other: `until` (stop refreshing),
            // or the refreshes (cancelled, or the lease lapsed: thrown).
            defer { group.cancelAll() }
            if try await group.next() == true { return }
            throw CancellationError()
        }
    }

    /// Refreshes every `interval` until cancelled.
    func keepAliveStream(_ id: Int64, every interval: Duration) async throws {
        try await call("keep lease \(id) alive") {
            try await leases.leaseKeepAlive(requestProducer: { writer in
                var r = Etcdserverpb_LeaseKeepAliveRequest()
                r.id = id
                while !Task.isCancelled {
                    try await writer.write(r)
                    try await Task.sleep(for: interval)
                }
            }, onResponse: { response in
                for try await message in response.messages where message.ttl <= 0 {
                    throw EtcdError(.leaseExpired, "lease \(id) has lapsed")
                }
            })
        }
    }

    // MARK: Watches

    /// Every change under `prefix` from `revision` on, in order, in batches
    /// of one revision or more. The stream ends with an error when the
    /// watch is cancelled by the server (compacted away: the caller lists
    /// again and watches from there) or the connection fails. Revision 0
    /// is "from now on". With `announcingStart` an empty batch comes first,
    /// once etcd has set the watch up: whatever is read after it, the
    /// watch delivers every later change. (A watch from a revision already
    /// past can lag: etcd catches such watches up every 100 ms.)
    public func watch(prefix: String, fromRevision revision: Int64, previousValues: Bool = false,
                      announcingStart: Bool = false) -> AsyncThrowingStream<[EtcdEvent], Error> {
        var create = Etcdserverpb_WatchCreateRequest()
        create.key = Data(prefix.utf8)
        create.rangeEnd = Self.prefixEnd(prefix)
        create.startRevision = revision
        create.prevKv = previousValues
        var message = Etcdserverpb_WatchRequest()
        message.createRequest = create
        let request = message
        let (stream, continuation) = AsyncThrowingStream<[EtcdEvent], Error>.makeStream()
        let watches = self.watches
        let task = Task {
            do {
                try await watches.watch(requestProducer: { writer in
                    try await writer.write(request)
                    // Keep the request side open: closing it ends the watch.
                    while !Task.isCancelled { try await Task.sleep(for: .seconds(3600)) }
                }, onResponse: { response in
                    for try await message in response.messages {
                        if message.canceled {
                            let kind: EtcdError.Kind = message.compactRevision > 0 ? .compacted : .watchCanceled
                            throw EtcdError(kind, "watch of \(prefix) canceled by etcd: \(message.cancelReason.isEmpty ? "revision \(revision) was compacted (now \(message.compactRevision))" : message.cancelReason)")
                        }
                        if message.created && announcingStart { continuation.yield([]) }
                        guard !message.events.isEmpty else { continue }
                        continuation.yield(message.events.map { e in
                            EtcdEvent(kind: e.type == .delete ? .delete : .put, kv: EtcdKeyValue(e.kv),
                                      previous: e.hasPrevKv ? EtcdKeyValue(e.prevKv) : nil)
                        })
                    }
                })
                continuation.finish(throwing: EtcdError(.unavailable, "watch of \(prefix) ended"))
            } catch is CancellationError {
                continuation.finish()
            } catch {
                continuation.finish(throwing: Self.wrap(error, "watch \(prefix)"))
            }
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    // MARK: Access control (etcd's root user only)

    /// What a role may do with a key or a prefix.
    public enum Access: Sendable { case read, readWrite }

    /// Adds a user that authenticates by its client certificate's common
    /// name alone (no password). False if it existed.
    @discardableResult
    public func addUser(_ name: String) async throws -> Bool {
        var r = Etcdserverpb_AuthUserAddRequest()
        r.name = name
        r.options.noPassword = true
        return try await idempotent("add user \(name)") { _ = try await auth.userAdd(r, options: Self.unary) }
    }

    /// Adds a role. False if it existed.
    @discardableResult
    public func addRole(_ name: String) async throws -> Bool {
        var r = Etcdserverpb_AuthRoleAddRequest()
        r.name = name
        return try await idempotent("add role \(name)") { _ = try await auth.roleAdd(r, options: Self.unary) }
    }

    /// Lets `role` read, or read and write, the one key `key` or, with
    /// `prefix`, every key that starts with it.
    public func grant(_ role: String, _ access: Access, key: String, prefix: Bool) async throws {
        var r = Etcdserverpb_AuthRoleGrantPermissionRequest()
        r.name = role
        r.perm.permType = access == .read ? .read : .readwrite
        r.perm.key = Data(key.utf8)
        if prefix { r.perm.rangeEnd = Self.prefixEnd(key) }
        _ = try await call("grant \(role) \(access) on \(key)\(prefix ? "*" : "")") { try await auth.roleGrantPermission(r, options: Self.unary) }
    }

    /// What `role` may do: (access, key, whether a prefix), as granted.
    public func permissions(of role: String) async throws -> [(access: Access, key: String, prefix: Bool)] {
        var r = Etcdserverpb_AuthRoleGetRequest()
        r.role = role
        return try await call("get role \(role)") { try await auth.roleGet(r, options: Self.unary) }.perm.map { p in
            (p.permType == .read ? .read : .readWrite, String(decoding: p.key, as: UTF8.self), !p.rangeEnd.isEmpty)
        }
    }

    /// Gives `user` the role's permissions.
    public func grantRole(_ role: String, to user: String) async throws {
        var r = Etcdserverpb_AuthUserGrantRoleRequest()
        r.user = user
        r.role = role
        _ = try await call("grant role \(role) to \(user)") { try await auth.userGrantRole(r, options: Self.unary) }
    }

    /// Turns access control on: from then on every call is checked against
    /// the caller's roles (the root user needs a root role, which etcd
    /// gives it). Harmless when it is on already.
    public func enableAuth() async throws {
        _ = try await call("enable auth") { try await auth.authEnable(Etcdserverpb_AuthEnableRequest(), options: Self.unary) }
    }

    /// Runs a call that adds something; false when etcd says it exists.
    func idempotent(_ what: String, _ body: () async throws -> Void) async throws -> Bool {
        do {
            try await body()
            return true
        } catch let e as RPCError where e.code == .failedPrecondition && e.message.contains("already exists") {
            return false
        } catch {
            throw Self.wrap(error, what)
        }
    }

    // MARK: Plumbing

    /// Unary calls fail at once when etcd cannot be reached (callers retry
    /// with their own policy) and never wait longer than 10 s.
    static let unary: CallOptions = {
        var o = CallOptions.defaults
        o.timeout = .seconds(10)
        o.waitForReady = false
        return o
    }()

    /// A list's page: as a unary call, answers up to 64 MiB. (The
    /// transport bounds a call's messages both ways by its request limit.)
    static let listPage: CallOptions = {
        var o = unary
        o.maxRequestMessageBytes = 64 << 20
        o.maxResponseMessageBytes = 64 << 20
        return o
    }()

    /// The end of the range of keys that start with `prefix`.
    static func prefixEnd(_ prefix: String) -> Data {
        var bytes = [UInt8](prefix.utf8)
        while let last = bytes.last {
            if last < 0xff {
                bytes[bytes.count - 1] = last + 1
                return Data(bytes)
            }
            bytes.removeLast()
        }
        return Data([0])   // every key
    }

    static func compare(_ c: EtcdCondition) -> Etcdserverpb_Compare {
        var m = Etcdserverpb_Compare()
        switch c {
        case .absent(let key):
            m.key = Data(key.utf8)
            m.target = .create
            m.result = .equal
            m.createRevision = 0
        case .modRevision(let key, let revision):
            m.key = Data(key.utf8)
            m.target = .mod
            m.result = .equal
            m.modRevision = revision
        case .createRevision(let key, let revision):
            m.key = Data(key.utf8)
            m.target = .create
            m.result = .equal
            m.createRevision = revision
        case .value(let key, let value):
            m.key = Data(key.utf8)
            m.target = .value
            m.result = .equal
            m.value = Data(value)
        }
        return m
    }

    static func op(_ o: EtcdOperation) -> Etcdserverpb_RequestOp {
        var m = Etcdserverpb_RequestOp()
        switch o {
        case .put(let key, let value, let lease):
            var p = Etcdserverpb_PutRequest()
            p.key = Data(key.utf8)
            p.value = Data(value)
            p.lease = lease
            m.requestPut = p
        case .delete(let key):
            var d = Etcdserverpb_DeleteRangeRequest()
            d.key = Data(key.utf8)
            m.requestDeleteRange = d
        case .deletePrefix(let prefix):
            var d = Etcdserverpb_DeleteRangeRequest()
            d.key = Data(prefix.utf8)
            d.rangeEnd = prefixEnd(prefix)
            m.requestDeleteRange = d
        case .get(let key):
            var g = Etcdserverpb_RangeRequest()
            g.key = Data(key.utf8)
            m.requestRange = g
        }
        return m
    }

    /// Runs one call. A call that meets a change of etcd's users or roles
    /// between its permission check and its apply is refused whole ("auth
    /// store is old"), nothing applied: it is sent again, as etcd's own
    /// client does, so that adding a droplet's user never fails the
    /// writes in flight.
    func call<R: Sendable>(_ what: String, _ body: () async throws -> R) async throws -> R {
        var attempt = 0
        while true {
            do { return try await body() } catch let e as RPCError where Self.isAuthRevisionOld(e) && attempt < 5 {
                attempt += 1
            } catch {
                throw Self.wrap(error, what)
            }
        }
    }

    static func isAuthRevisionOld(_ e: RPCError) -> Bool {
        e.code == .invalidArgument && e.message.contains("revision of auth store is old")
    }

    static func wrap(_ error: any Error, _ what: String) -> any Error {
        switch error {
        case is EtcdError, is CancellationError: return error
        case let e as RPCError:
            // A message over a size limit: resourceExhausted, or (as the
            // client's decoder reports it) an internal error saying so.
            let tooLarge = e.code == .resourceExhausted || e.message.contains("maximum payload size")
            let kind: EtcdError.Kind = switch e.code {
            case _ where tooLarge: .tooLarge
            case .unavailable: .unavailable
            case .permissionDenied: .permissionDenied
            default: .other
            }
            return EtcdError(kind, "etcd \(what): \(e.code): \(e.message)")
        default: return EtcdError(.other, "etcd \(what): \(error)")
        }
    }
}

/// Connects to the etcd at `host`:`port` and runs `body` with a client;
/// the connection closes when `body` returns. With `tls`, the connection
/// is mutual TLS: the member's certificate checked against the CA and the
/// address, this party's certificate presented (its common name is the
/// etcd user it acts as).
public func withEtcd<R: Sendable>(host: String, port: Int, tls: TLSFiles? = nil, _ body: (Etcd) async throws -> R) async throws -> R {
    try await withEtcd([HostPort(host: host, port: port)], tls: tls, body)
}

/// Connects to the members of one etcd cluster, each of them, and runs
/// `body` with a client that spreads its calls over the members it is
/// connected to. Several members must be given by IPv4 address.
public func withEtcd<R: Sendable>(_ endpoints: [HostPort], tls: TLSFiles? = nil, _ body: (Etcd) async throws -> R) async throws -> R {
    precondition(!endpoints.isEmpty, "withEtcd: no endpoint")
    var config = HTTP2ClientTransport.Posix.Config.defaults
    config.channelDebuggingCallbacks.onCreateTCPConnection = { channel in
        // The answerer reads plaintext frames: behind the TLS handler when
        // there is one, else first.
        channel.eventLoop.makeCompletedFuture {
            let sync = channel.pipeline.syncOperations
            if let ssl = try? sync.handler(type: NIOSSLClientHandler.self) {
                try sync.addHandler(PingAnswerer(), position: .after(ssl))
            } else {
                try sync.addHandler(PingAnswerer(), position: .first)
            }
        }
    }
    let target: any ResolvableTarget
    var serviceConfig = ServiceConfig()
    if endpoints.count == 1, let only = endpoints.first {
        // An IP literal is dialled as such: no SNI, the certificate checked
        // against the address.
        target = isIPv4(only.host) ? .ipv4(address: only.host, port: only.port) : .dns(host: only.host, port: only.port)
    } else {
        if let bad = endpoints.first(where: { !isIPv4($0.host) }) {
            throw EtcdError(.other, "etcd endpoints: \(bad) is not an IPv4 address (several members are given by address)")
        }
        target = .ipv4(pairs: endpoints.map { ($0.host, $0.port) })
        serviceConfig.loadBalancingConfig = [.roundRobin]
    }
    let transport = try HTTP2ClientTransport.Posix(target: target, transportSecurity: tls?.client ?? .plaintext,
                                                   config: config, serviceConfig: serviceConfig)
    return try await withGRPCClient(transport: transport) { client in
        try await body(Etcd(client: client, endpoint: endpoints.map(\.description).joined(separator: ",")))
    }
}

private func isIPv4(_ host: String) -> Bool {
    var a = in_addr()
    return inet_pton(AF_INET, host, &a) == 1
}
