import NIOCore
import ServiceLifecycle

/// Accepts connections on `listener` and serves each in a task of its own
/// until the service group shuts down gracefully: then it stops accepting
/// and lets the connections under way finish. The daemons' small servers
/// (metrics, transitd's CNI socket) share it.
public func serveUntilShutdown<Inbound: Sendable, Outbound: Sendable>(
    _ listener: NIOAsyncChannel<NIOAsyncChannel<Inbound, Outbound>, Never>,
    _ serve: @escaping @Sendable (NIOAsyncChannel<Inbound, Outbound>) async -> Void
) async throws {
    try await withGracefulShutdownHandler {
        try await withThrowingDiscardingTaskGroup { group in
            try await listener.executeThenClose { connections in
                for try await connection in connections {
                    group.addTask { await serve(connection) }
                }
            }
        }
    } onGracefulShutdown: {
        listener.channel.close(promise: nil)
    }
}
