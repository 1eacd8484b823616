import Logging
import MizarCore
import MizarTLS
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Prometheus
import ServiceLifecycle
import Synchronization
import X509

/// A daemon's metrics in Prometheus' text format at `GET /metrics`: over
/// plain HTTP on a loopback address, or over HTTPS with mutual TLS on any
/// other: metrics name tenants' VPCs and the host's traffic, and nothing
/// Mizar serves beyond loopback goes without mutual TLS. There the client
/// must present a certificate of the Mizar CA naming the metrics reader
/// (CN mizar-metrics, `mizarctl pki`'s metrics.crt) or the administrator;
/// any other party of the CA (a droplet, the operator) is refused. Idle
/// connections are closed after `idleTimeout`, and at most
/// `maxConnections` are served at once. `refresh` runs before each scrape
/// to bring the registry up to date (a data plane's counters are read then).
public struct MetricsServer: Service {
    public let address: HostPort
    let registry: PrometheusCollectorRegistry
    let refresh: @Sendable () async -> Void
    let logger: Logger
    let bound: (@Sendable (Int) -> Void)?
    let tls: NIOSSLContext?
    /// Who may scrape over TLS: certificates' common names.
    public static let readers: Set<String> = [Identities.metricsName, Identities.adminName]
    static let idleTimeout = TimeAmount.seconds(60)
    static let maxConnections = 64

    /// `tls`: the daemon's own certificate, key and CA, required for an
    /// address off loopback (and used only there). `bound` is told the
    /// port once listening (port 0 picks a free one).
    public init(address: HostPort, tls: TLSFiles? = nil, registry: PrometheusCollectorRegistry, logger: Logger,
                bound: (@Sendable (Int) -> Void)? = nil, refresh: @escaping @Sendable () async -> Void = {}) throws {
        if Self.isLoopback(address) {
            self.tls = nil
        } else {
            guard let tls else {
                throw ValidationError(field: "metrics address",
                                      reason: "\(address) is not a loopback address: serving metrics there needs mutual TLS (--tls-cert, --tls-key, --tls-ca)")
            }
            var config = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(tls.certificate).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: tls.key, format: .pem)))
            config.trustRoots = .file(tls.ca)
            config.certificateVerification = .noHostnameVerification
            config.minimumTLSVersion = .tlsv12
            self.tls = try NIOSSLContext(configuration: config)
        }
        self.address = address
        self.registry = registry
        self.refresh = refresh
        self.logger = logger
        self.bound = bound
    }

    /// "HOST:PORT", or nil for "none". Off loopback (127.0.0.0/8,
    /// localhost) only when `tls` (mutual TLS will be served there).
    public static func address(parsing text: String, field: String, tls: Bool = false) throws(ValidationError) -> HostPort? {
        if text == "none" { return nil }
        let at = try HostPort(parsing: text, field: field)
        guard tls || isLoopback(at) else {
            throw ValidationError(field: field, reason: "\(at) is not a loopback address: metrics are served off loopback only with mutual TLS (give --tls-cert, --tls-key and --tls-ca)")
        }
        return at
    }

    static func isLoopback(_ at: HostPort) -> Bool {
        at.host == "localhost" || (try? IPv4Address(parsing: at.host, field: "address")).map { $0.value >> 24 == 127 } == true
    }

    public func run() async throws {
        let tls = self.tls
        let open = ManagedAtomicCounter()
        let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: address.host, port: address.port) { child in
                child.eventLoop.makeCompletedFuture {
                    let sync = child.pipeline.syncOperations
                    if let tls { try sync.addHandler(NIOSSLServerHandler(context: tls)) }
                    try sync.addHandler(IdleStateHandler(readTimeout: Self.idleTimeout))
                    try sync.addHandler(CloseOnIdle())
                    try sync.configureHTTPServerPipeline(withErrorHandling: true)
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: child)
                }
            }
        let port = listener.channel.localAddress?.port ?? address.port
        bound?(port)
        logger.info("serving metrics", metadata: ["metrics.address": "\(address.host):\(port)",
                                                  "metrics.security": "\(tls == nil ? "plaintext (loopback)" : "mutual TLS")"])
        try await serveUntilShutdown(listener) { connection in
            guard open.add(1) <= Self.maxConnections else {
                open.add(-1)
                try? await connection.channel.close()
                return
            }
            await serve(connection)
            open.add(-1)
        }
    }

    /// The common names of a TLS client's certificate (verified against the
    /// CA by the handshake), or nil on plaintext.
    func clientNames(_ channel: any Channel) async -> [String]? {
        guard tls != nil else { return nil }
        guard let peer = try? await channel.nioSSL_peerCertificate().get(),
              let der = try? peer.toDERBytes(), let cert = try? Certificate(derEncoded: der) else { return [] }
        return cert.subject.flatMap { rdn in rdn.filter { $0.type == .RDNAttributeType.commonName }.map { String(describing: $0.value) } }
    }

    /// Requests on one connection, answered in turn.
    func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                var head: HTTPRequestHead?
                // Known once the handshake is over, which a request follows.
                var names: [String]??
                var admitted = false
                for try await part in inbound {
                    switch part {
                    case .head(let h): head = h
                    case .body: continue
                    case .end:
                        guard let h = head else { continue }
                        if names == nil {
                            names = .some(await clientNames(connection.channel))
                            admitted = names!.map { !Self.readers.isDisjoint(with: $0) } ?? true
                        }
                        let (status, type, body) = admitted ? await answer(h)
                            : (.forbidden, "text/plain", Array("forbidden: \((names ?? nil)?.joined(separator: ",") ?? "") may not read metrics; \(Self.readers.sorted().joined(separator: " or ")) may\n".utf8))
                        var headers = HTTPHeaders()
                        headers.add(name: "Content-Type", value: type)
                        headers.add(name: "Content-Length", value: "\(body.count)")
                        if !h.isKeepAlive { headers.add(name: "Connection", value: "close") }
                        try await outbound.write(.head(HTTPResponseHead(version: h.version, status: status, headers: headers)))
                        try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body))))
                        try await outbound.write(.end(nil))
                        if !h.isKeepAlive || !admitted { return }
                        head = nil
                    }
                }
            }
        } catch {
            logger.debug("metrics connection ended early", metadata: ["error": "\(error)"])
        }
    }

    func answer(_ head: HTTPRequestHead) async -> (HTTPResponseStatus, String, [UInt8]) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        guard path == "/metrics" else { return (.notFound, "text/plain", Array("not found: metrics are at /metrics\n".utf8)) }
        guard head.method == .GET || head.method == .HEAD else {
            return (.methodNotAllowed, "text/plain", Array("GET /metrics\n".utf8))
        }
        await refresh()
        let body = registry.emitToBuffer()
        return (.ok, "text/plain; version=0.0.4; charset=utf-8", head.method == .HEAD ? [] : body)
    }
}

/// Closes a connection that read nothing for the idle timeout.
final class CloseOnIdle: ChannelInboundHandler, Sendable {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}

/// A count shared by the connections' tasks.
final class ManagedAtomicCounter: Sendable {
    private let value = Mutex<Int>(0)

    /// Adds `delta`; returns the new value.
    @discardableResult
    func add(_ delta: Int) -> Int { value.withLock { $0 += delta; return $0 } }
}
