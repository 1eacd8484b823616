import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Glibc
import Logging
import MizarRPC

/// Where transitd listens: a unix socket for local callers (mizar-cni,
/// mizarctl) and, optionally, TCP for the management plane.
public struct TransitListeners: Sendable {
    public var unixSocket: String
    public var tcp: (host: String, port: Int)?

    public init(unixSocket: String, tcp: (host: String, port: Int)? = nil) {
        self.unixSocket = unixSocket
        self.tcp = tcp
    }
}

/// Serves one TransitHost on every listener until cancelled or shut down.
public final class TransitServer: Sendable {
    let servers: [GRPCServer<HTTP2ServerTransport.Posix>]

    public init(host: TransitHost, listeners: TransitListeners) {
        let service = TransitService(host: host)
        var addresses: [GRPCNIOTransportCore.SocketAddress] = [.unixDomainSocket(path: listeners.unixSocket)]
        if let tcp = listeners.tcp { addresses.append(.ipv4(host: tcp.host, port: tcp.port)) }
        // A socket file left by a killed run would make bind fail.
        unlink(listeners.unixSocket)
        servers = addresses.map {
            GRPCServer(transport: .http2NIOPosix(address: $0, transportSecurity: .plaintext), services: [service])
        }
    }

    public func serve() async throws {
        try await withThrowingDiscardingTaskGroup { group in
            for server in servers { group.addTask { try await server.serve() } }
        }
    }

    /// Stops accepting calls and returns from serve() once in-flight ones end.
    public func beginGracefulShutdown() {
        for server in servers { server.beginGracefulShutdown() }
    }
}

/// Where a transitd is reached: "unix:/path" or a path for its local socket,
/// "HOST:PORT" for TCP.
public enum TransitTarget: Sendable, Hashable, CustomStringConvertible {
    case unix(String)
    case tcp(host: String, port: Int)

    public init(parsing text: String) throws(TransitError) {
        if text.hasPrefix("unix:") {
            self = .unix(String(text.dropFirst(5)))
        } else if text.hasPrefix("/") || text.hasPrefix(".") {
            self = .unix(text)
        } else if let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) {
            self = .tcp(host: String(text[..<colon]), port: port)
        } else {
            throw TransitError(.invalidArgument, field: "target", "\"\(text)\" is neither a socket path (unix:/path) nor HOST:PORT")
        }
    }

    public var description: String {
        switch self {
        case .unix(let path): "unix:\(path)"
        case .tcp(let host, let port): "\(host):\(port)"
        }
    }
}

public typealias TransitClient = Mizar_Transit_V1_Transit.Client<HTTP2ClientTransport.Posix>

/// Runs `body` with a client of the transitd at `target`.
public func withTransitClient<R: Sendable>(
    _ target: TransitTarget,
    _ body: (TransitClient) async throws -> R
) async throws -> R {
    let resolvable: any ResolvableTarget = switch target {
    case .unix(let path): .unixDomainSocket(path: path)
    case .tcp(let host, let port): .ipv4(address: host, port: port)
    }
    let transport = try HTTP2ClientTransport.Posix(target: resolvable, transportSecurity: .plaintext)
    return try await withGRPCClient(transport: transport) { client in
        try await body(Mizar_Transit_V1_Transit.Client(wrapping: client))
    }
}
