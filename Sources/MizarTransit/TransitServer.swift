import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Glibc
import Logging
import MizarCore
import MizarDataplane
import MizarRPC
import MizarTLS
import MizarTransitClient
import ServiceLifecycle
import X509

/// Where transitd listens: a unix socket for local callers (mizar-cni,
/// mizarctl), made mode 0600 so that only root reaches it, and, optionally,
/// TCP for the management plane: mutual TLS with `tls`, admitting the
/// operator alone; plaintext only when `tls` is nil (transitd --insecure).
public struct TransitListeners: Sendable {
    public var unixSocket: String
    public var tcp: (host: String, port: Int)?
    public var tls: TLSFiles?

    public init(unixSocket: String, tcp: (host: String, port: Int)? = nil, tls: TLSFiles? = nil) {
        self.unixSocket = unixSocket
        self.tcp = tcp
        self.tls = tls
    }
}

/// Admits a call only from a client whose certificate (already verified
/// against the Mizar CA by the TLS handshake) names the operator. A
/// droplet's certificate, or any other of the CA's, gets PermissionDenied.
struct OperatorOnly: ServerInterceptor {
    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        let certificate = (context.transportSpecific as? HTTP2ServerTransport.Posix.Context)?.peerCertificate
        let names = certificate.map(Self.commonNames) ?? []
        guard names == [Identities.operatorName] else {
            throw RPCError(code: .permissionDenied,
                           message: "only \(Identities.operatorName) may call transitd over TCP; the client is \(names.isEmpty ? "unnamed" : names.joined(separator: ","))")
        }
        return try await next(request, context)
    }

    static func commonNames(_ certificate: Certificate) -> [String] {
        certificate.subject.flatMap { rdn in
            rdn.filter { $0.type == .RDNAttributeType.commonName }.map { String(describing: $0.value) }
        }
    }
}

/// Serves one TransitHost on every listener until cancelled or shut down:
/// one of transitd's services; on shutdown it stops accepting calls and
/// returns once those under way have ended.
public final class TransitServer: Service {
    let servers: [GRPCServer<HTTP2ServerTransport.Posix>]
    let unixTransport: HTTP2ServerTransport.Posix
    let tcpTransport: HTTP2ServerTransport.Posix?
    let unixSocket: String

    /// `interceptors` see every call on every listener (metrics), before
    /// the TCP listener's admission.
    public init(host: some TransitHosting, listeners: TransitListeners, interceptors: [any ServerInterceptor] = [], flows: FlowEvents? = nil,
                explaining: (host: TransitHost, explainer: Explainer)? = nil) {
        let service = TransitService(host: host, flows: flows, explaining: explaining)
        // A socket file left by a killed run would make bind fail.
        unlink(listeners.unixSocket)
        unixSocket = listeners.unixSocket
        unixTransport = HTTP2ServerTransport.Posix(address: .unixDomainSocket(path: listeners.unixSocket), transportSecurity: .plaintext)
        var servers = [GRPCServer(transport: unixTransport, services: [service], interceptors: interceptors)]
        if let tcp = listeners.tcp {
            let transport = HTTP2ServerTransport.Posix(address: .ipv4(host: tcp.host, port: tcp.port),
                                                       transportSecurity: listeners.tls?.server ?? .plaintext)
            servers.append(GRPCServer(transport: transport, services: [service],
                                      interceptors: interceptors + (listeners.tls == nil ? [] : [OperatorOnly()])))
            tcpTransport = transport
        } else {
            tcpTransport = nil
        }
        self.servers = servers
    }

    /// The TCP listener's address once it is bound (for a listener asked
    /// on port 0); nil without one.
    public func tcpAddress() async throws -> (host: String, port: Int)? {
        guard let tcpTransport, let address = try await tcpTransport.listeningAddress.ipv4 else { return nil }
        return (address.host, address.port)
    }

    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                for server in servers { group.addTask { try await server.serve() } }
                // The unix socket: root's alone, once it exists.
                group.addTask { [unixTransport, unixSocket] in
                    _ = try await unixTransport.listeningAddress
                    if chmod(unixSocket, 0o600) != 0 { throw SystemError(call: "chmod", subject: unixSocket, errno: errno) }
                }
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
