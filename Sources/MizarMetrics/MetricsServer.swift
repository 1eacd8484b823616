import Logging
import MizarCore
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import ServiceLifecycle

/// A daemon's metrics in Prometheus' text format at `GET /metrics`, over
/// plain HTTP on a loopback address only: metrics name tenants' VPCs and
/// the host's traffic, and nothing Mizar serves beyond loopback goes
/// without mutual TLS (a scraper on another machine reaches it through
/// its own tunnel or a local agent). `refresh` runs before each scrape to
/// bring the registry up to date (a data plane's counters are read then).
public struct MetricsServer: Service {
    public let address: HostPort
    let registry: PrometheusCollectorRegistry
    let refresh: @Sendable () async -> Void
    let logger: Logger
    let bound: (@Sendable (Int) -> Void)?

    /// `bound` is told the port once listening (port 0 picks a free one).
    public init(address: HostPort, registry: PrometheusCollectorRegistry, logger: Logger,
                bound: (@Sendable (Int) -> Void)? = nil, refresh: @escaping @Sendable () async -> Void = {}) throws(ValidationError) {
        try Self.requireLoopback(address)
        self.address = address
        self.registry = registry
        self.refresh = refresh
        self.logger = logger
        self.bound = bound
    }

    /// "HOST:PORT" on loopback (127.0.0.0/8, localhost), or nil for "none".
    public static func address(parsing text: String, field: String) throws(ValidationError) -> HostPort? {
        if text == "none" { return nil }
        let at = try HostPort(parsing: text, field: field)
        try requireLoopback(at, field: field)
        return at
    }

    static func requireLoopback(_ at: HostPort, field: String = "metrics address") throws(ValidationError) {
        let loopback = at.host == "localhost" || (try? IPv4Address(parsing: at.host, field: field)).map { $0.value >> 24 == 127 } == true
        guard loopback else {
            throw ValidationError(field: field, reason: "\(at) is not a loopback address: metrics are served on loopback only (no TLS)")
        }
    }

    public func run() async throws {
        let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: address.host, port: address.port) { child in
                child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: child)
                }
            }
        let port = listener.channel.localAddress?.port ?? address.port
        bound?(port)
        logger.info("serving metrics", metadata: ["metrics.address": "\(address.host):\(port)"])
        try await serveUntilShutdown(listener) { await serve($0) }
    }

    /// Requests on one connection, answered in turn.
    func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                var head: HTTPRequestHead?
                for try await part in inbound {
                    switch part {
                    case .head(let h): head = h
                    case .body: continue
                    case .end:
                        guard let h = head else { continue }
                        let (status, type, body) = await answer(h)
                        var headers = HTTPHeaders()
                        headers.add(name: "Content-Type", value: type)
                        headers.add(name: "Content-Length", value: "\(body.count)")
                        if !h.isKeepAlive { headers.add(name: "Connection", value: "close") }
                        try await outbound.write(.head(HTTPResponseHead(version: h.version, status: status, headers: headers)))
                        try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body))))
                        try await outbound.write(.end(nil))
                        if !h.isKeepAlive { return }
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
