import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Glibc
import Logging
import MizarRPC
import ServiceLifecycle

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

/// Serves one TransitHost on every listener until cancelled or shut down:
/// one of transitd's services; on shutdown it stops accepting calls and
/// returns once those under way have ended.
public final class TransitServer: Service {
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

    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                for server in servers { group.addTask { try await server.serve() } }
            }
        } onGracefulShutdown: {
            self.beginGracefulShutdown()
        }
    }

    /// Stops accepting calls and returns from serve() once in-flight ones end.
    public func beginGracefulShutdown() {
        for server in servers { server.beginGracefulShutdown() }
    }
}
