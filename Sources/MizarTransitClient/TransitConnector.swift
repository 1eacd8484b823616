import GRPCCore
import GRPCNIOTransportHTTP2Posix
import MizarCore
import MizarRPC
import MizarTLS
import Synchronization

/// Where a transitd is reached: "unix:/path" or a path for its local socket,
/// "HOST:PORT" for TCP.
public enum TransitTarget: Sendable, Hashable, CustomStringConvertible {
    case unix(String)
    case tcp(host: String, port: Int)

    public init(parsing text: String, field: String = "target") throws(ValidationError) {
        if text.hasPrefix("unix:") {
            self = .unix(String(text.dropFirst(5)))
        } else if text.hasPrefix("/") || text.hasPrefix(".") {
            self = .unix(text)
        } else if let hp = try? HostPort(parsing: text, field: field) {
            self = .tcp(host: hp.host, port: hp.port)
        } else {
            throw ValidationError(field: field, reason: "\(ValidationError.quote(text)) is neither a socket path (unix:/path) nor HOST:PORT")
        }
    }

    public var description: String {
        switch self {
        case .unix(let path): "unix:\(path)"
        case .tcp(let host, let port): "\(host):\(port)"
        }
    }

    /// The transitd of host `host` of the simulated cluster `testbed`
    /// (mizar-testbed lays hosts out this way).
    public static func testbed(_ testbed: String, host: String) -> TransitTarget {
        .unix("/run/mizar-testbed/\(testbed)/\(host)/transitd.sock")
    }

    var resolvable: any ResolvableTarget {
        switch self {
        case .unix(let path): .unixDomainSocket(path: path)
        // An address, not a name: TLS then checks the server's certificate
        // against it (an address cannot be sent as SNI).
        case .tcp(let host, let port): (try? IPv4Address(parsing: host)) != nil ? .ipv4(address: host, port: port) : .dns(host: host, port: port)
        }
    }
}

public typealias TransitClient = Mizar_Transit_V1_Transit.Client<HTTP2ClientTransport.Posix>
/// A client of the Transit service over any transport.
public typealias AnyTransitClient = any Mizar_Transit_V1_Transit.ClientProtocol

/// Runs `body` with a client of the transitd at `target` (over mutual TLS
/// with `tls` when the target is TCP).
public func withTransitClient<R: Sendable>(
    _ target: TransitTarget,
    tls: TLSFiles? = nil,
    _ body: (TransitClient) async throws -> R
) async throws -> R {
    let transport = try HTTP2ClientTransport.Posix(target: target.resolvable, transportSecurity: target.security(tls))
    return try await withGRPCClient(transport: transport) { client in
        try await body(Mizar_Transit_V1_Transit.Client(wrapping: client))
    }
}

/// How callers reach transitds: a connection per call, or kept open. The
/// body gets a client of the Transit service over whichever transport the
/// connector uses (HTTP/2 for real hosts, in-process in unit tests).
public protocol TransitConnector: Sendable {
    func withClient<R: Sendable>(_ target: TransitTarget,
                                 _ body: (AnyTransitClient) async throws -> R) async throws -> R
}

/// A fresh connection for each call: for one-off commands.
public struct DirectConnector: TransitConnector {
    public let tls: TLSFiles?
    public init(tls: TLSFiles? = nil) { self.tls = tls }
    public func withClient<R: Sendable>(_ target: TransitTarget,
                                        _ body: (AnyTransitClient) async throws -> R) async throws -> R {
        try await withTransitClient(target, tls: tls) { try await body($0) }
    }
}

/// One long-lived connection per transitd, opened on first use and shared
/// by concurrent calls: the management plane's way to call hosts without
/// paying a connection set-up per call. Bounded: a connection idle for
/// `idleTimeout` is closed (the next call opens it again), and at most
/// `maxConnections` are open, the least recently used idle ones closed
/// first; so the operator holds connections to the hosts it is working
/// with, not to every host it ever called. Counts the calls made to each
/// target, so tests can check who was called.
public final class TransitPool<Transport: ClientTransport>: TransitConnector {
    private struct Entry {
        let client: GRPCClient<Transport>
        let runner: Task<Void, Never>
        var lastUsed: ContinuousClock.Instant
        var inFlight: Int
    }

    private struct State {
        var entries: [TransitTarget: Entry] = [:]
        var lastSweep = ContinuousClock.now
    }

    private let makeTransport: @Sendable (TransitTarget) throws -> Transport
    private let state = Mutex(State())
    private let counts = Mutex<[TransitTarget: Int]>([:])
    private let methods = Mutex<[String: Int]>([:])
    public let idleTimeout: Duration
    public let maxConnections: Int

    /// Connections made by `makeTransport` for each target.
    public init(idleTimeout: Duration = .seconds(60), maxConnections: Int = 1024,
                transport makeTransport: @escaping @Sendable (TransitTarget) throws -> Transport) {
        self.makeTransport = makeTransport
        self.idleTimeout = idleTimeout
        self.maxConnections = max(1, maxConnections)
    }

    public func withClient<R: Sendable>(_ target: TransitTarget,
                                        _ body: (AnyTransitClient) async throws -> R) async throws -> R {
        counts.withLock { $0[target, default: 0] += 1 }
        let client = try self.acquire(target)
        defer { release(target) }
        return try await body(Mizar_Transit_V1_Transit.Client(wrapping: client))
    }

    /// Calls made per target since the pool was made (or last reset).
    public func callCounts() -> [TransitTarget: Int] { counts.withLock { $0 } }
    /// Calls made per method of the Transit API (all targets together).
    public func methodCounts() -> [String: Int] { methods.withLock { $0 } }
    public func resetCounts() {
        counts.withLock { $0 = [:] }
        methods.withLock { $0 = [:] }
    }

    /// Connections open now.
    public var openConnections: Int { state.withLock { $0.entries.count } }

    /// Closes the connection to one target (a host that went away); the
    /// next call opens a new one.
    public func forget(_ target: TransitTarget) {
        let entry = state.withLock { $0.entries.removeValue(forKey: target) }
        entry?.client.beginGracefulShutdown()
    }

    /// Closes every connection and waits for them to finish.
    public func shutdown() async {
        let all = state.withLock { s in defer { s.entries = [:] }; return Array(s.entries.values) }
        for entry in all { entry.client.beginGracefulShutdown() }
        for entry in all { await entry.runner.value }
    }

    private func acquire(_ target: TransitTarget) throws -> GRPCClient<Transport> {
        let now = ContinuousClock.now
        let (client, closing): (GRPCClient<Transport>, [Entry]) = try state.withLock { s in
            var closing: [Entry] = []
            // Idle connections, looked for at most every quarter timeout.
            if now - s.lastSweep >= idleTimeout / 4 {
                s.lastSweep = now
                for (t, e) in s.entries where e.inFlight == 0 && now - e.lastUsed >= idleTimeout && t != target {
                    closing.append(e)
                    s.entries[t] = nil
                }
            }
            if var e = s.entries[target] {
                e.inFlight += 1
                e.lastUsed = now
                s.entries[target] = e
                return (e.client, closing)
            }
            // Room for one more: the least recently used idle ones go.
            while s.entries.count >= maxConnections,
                  let lru = s.entries.filter({ $0.value.inFlight == 0 }).min(by: { $0.value.lastUsed < $1.value.lastUsed }) {
                closing.append(lru.value)
                s.entries[lru.key] = nil
            }
            let client = GRPCClient(transport: try makeTransport(target), interceptors: [MethodCounter { [weak self] method in
                self?.methods.withLock { $0[method, default: 0] += 1 }
            }])
            let runner = Task { _ = try? await client.runConnections() }
            s.entries[target] = Entry(client: client, runner: runner, lastUsed: now, inFlight: 1)
            return (client, closing)
        }
        for e in closing { e.client.beginGracefulShutdown() }
        return client
    }

    private func release(_ target: TransitTarget) {
        state.withLock { s in
            guard var e = s.entries[target] else { return }
            e.inFlight -= 1
            e.lastUsed = .now
            s.entries[target] = e
        }
    }
}

/// Counts each call a pool's client makes, by method.
private struct MethodCounter: ClientInterceptor {
    let count: @Sendable (String) -> Void

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingClientRequest<Input>, context: ClientContext,
        next: (StreamingClientRequest<Input>, ClientContext) async throws -> StreamingClientResponse<Output>
    ) async throws -> StreamingClientResponse<Output> {
        count(context.descriptor.method)
        return try await next(request, context)
    }
}

extension TransitPool where Transport == HTTP2ClientTransport.Posix {
    /// HTTP/2 over a unix socket, or TCP (mutual TLS with `tls`).
    public convenience init(tls: TLSFiles? = nil, idleTimeout: Duration = .seconds(60), maxConnections: Int = 1024) {
        self.init(idleTimeout: idleTimeout, maxConnections: maxConnections) { target in
            try HTTP2ClientTransport.Posix(target: target.resolvable, transportSecurity: target.security(tls))
        }
    }
}

/// The pool the management plane uses.
public typealias HTTP2TransitPool = TransitPool<HTTP2ClientTransport.Posix>

/// How transitd tells its callers that a request can never succeed as it
/// is, apart from the status code (a missing namespace is NotFound, as an
/// unknown VPC is, but only the first is for good).
public enum TransitRefusal {
    static let key = "mizar-refusal"
    /// What transitd adds to a permanent refusal.
    public static let permanentMetadata: Metadata = [key: "permanent"]

    /// Whether `error` is a transitd's permanent refusal.
    public static func isPermanent(_ error: any Error) -> Bool {
        guard let e = error as? RPCError else { return false }
        return e.metadata[stringValues: key].contains("permanent")
    }
}
