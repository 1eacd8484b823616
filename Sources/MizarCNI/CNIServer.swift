import Glibc
import Logging
import MizarMetrics
import NIOCore
import NIOPosix
import ServiceLifecycle

/// transitd's CNI socket: a unix stream socket where mizar-cni sends one
/// request (JSON, then it closes its sending side) and reads the answer:
/// the exit status on the first line, then what to print. Kept this plain
/// so the plugin needs nothing but libc and starts in a couple of
/// milliseconds. Served on SwiftNIO's event loops; one of transitd's
/// services: on shutdown it stops accepting and lets requests under way
/// finish.
public struct CNIServer: Service {
    public let path: String
    let handler: CNIHandler
    let logger: Logger
    /// A request must arrive whole within this (a stuck plugin holds nothing).
    static let requestTimeout = Duration.seconds(10)
    static let maxRequest = 1 << 20

    public init(path: String, handler: CNIHandler, logger: Logger) {
        self.path = path
        self.handler = handler
        self.logger = logger
    }

    public func run() async throws {
        let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 128)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true) { child in
                child.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: child)
                }
            }
        chmod(path, 0o600)
        logger.info("serving CNI", metadata: ["cni.socket": "\(path)"])
        defer { unlink(path) }
        try await serveUntilShutdown(listener) { await serve($0) }
    }

    /// One request and its answer; the connection is closed either way.
    func serve(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                let request = try await Self.readRequest(inbound)
                let (code, output): (Int, String)
                do throws(CNIError) {
                    let parsed = try CNIRequest(json: request)
                    (code, output) = await handler.handle(parsed)
                } catch {
                    (code, output) = (error.code, CNIHandler.errorJSON(error, version: "1.0.0"))
                }
                try await outbound.write(ByteBuffer(string: "\(code)\n\(output)"))
            }
        } catch {
            logger.debug("CNI connection ended early", metadata: ["error": "\(error)"])
        }
    }

    /// Everything the plugin sends until it closes its side, within the
    /// time limit and the size limit.
    static func readRequest(_ inbound: NIOAsyncChannelInboundStream<ByteBuffer>) async throws -> [UInt8] {
        try await withThrowingTaskGroup(of: [UInt8]?.self) { group in
            group.addTask {
                var request: [UInt8] = []
                for try await chunk in inbound {
                    request += chunk.readableBytesView
                    if request.count > maxRequest { break }
                }
                return request
            }
            group.addTask {
                try await Task.sleep(for: requestTimeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let request = first else {
                throw CNIServerError.timedOut
            }
            return request
        }
    }
}

enum CNIServerError: Error { case timedOut }
