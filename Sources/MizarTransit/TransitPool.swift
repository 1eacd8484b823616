import GRPCCore
import GRPCNIOTransportHTTP2Posix
import MizarRPC
import Synchronization

/// How callers reach transitds: a connection per call, or kept open.
public protocol TransitConnector: Sendable {
    func withClient<R: Sendable>(_ target: TransitTarget, _ body: (TransitClient) async throws -> R) async throws -> R
}

/// A fresh connection for each call: for one-off commands.
public struct DirectConnector: TransitConnector {
    public init() {}
    public func withClient<R: Sendable>(_ target: TransitTarget, _ body: (TransitClient) async throws -> R) async throws -> R {
        try await withTransitClient(target, body)
    }
}

/// One long-lived HTTP/2 connection per transitd, opened on first use and
/// shared by concurrent calls: the management plane's way to call hosts
/// without paying a connection set-up per call. Counts the calls made to
/// each target, so tests can check who was called.
public final class TransitPool: TransitConnector {
    private struct Entry {
        let client: GRPCClient<HTTP2ClientTransport.Posix>
        let runner: Task<Void, Never>
    }

    private let entries = Mutex<[TransitTarget: Entry]>([:])
    private let counts = Mutex<[TransitTarget: Int]>([:])

    public init() {}

    public func withClient<R: Sendable>(_ target: TransitTarget, _ body: (TransitClient) async throws -> R) async throws -> R {
        counts.withLock { $0[target, default: 0] += 1 }
        let client = try self.client(target)
        return try await body(Mizar_Transit_V1_Transit.Client(wrapping: client))
    }

    /// Calls made per target since the pool was made (or last reset).
    public func callCounts() -> [TransitTarget: Int] { counts.withLock { $0 } }
    public func resetCounts() { counts.withLock { $0 = [:] } }

    /// Closes the connection to one target (a host that went away); the
    /// next call opens a new one.
    public func forget(_ target: TransitTarget) {
        let entry = entries.withLock { $0.removeValue(forKey: target) }
        entry?.client.beginGracefulShutdown()
    }

    /// Closes every connection and waits for them to finish.
    public func shutdown() async {
        let all = entries.withLock { e in defer { e = [:] }; return Array(e.values) }
        for entry in all { entry.client.beginGracefulShutdown() }
        for entry in all { await entry.runner.value }
    }

    private func client(_ target: TransitTarget) throws -> GRPCClient<HTTP2ClientTransport.Posix> {
        try entries.withLock { entries in
            if let e = entries[target] { return e.client }
            let resolvable: any ResolvableTarget = switch target {
            case .unix(let path): .unixDomainSocket(path: path)
            case .tcp(let host, let port): .dns(host: host, port: port)
            }
            let client = GRPCClient(transport: try HTTP2ClientTransport.Posix(target: resolvable, transportSecurity: .plaintext))
            let runner = Task { _ = try? await client.runConnections() }
            entries[target] = Entry(client: client, runner: runner)
            return client
        }
    }
}
