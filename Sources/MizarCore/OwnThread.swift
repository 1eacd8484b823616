import Glibc

/// Runs blocking work (a child process, a blocking read) on a thread of its
/// own and awaits it. The cooperative pool has one thread per core (two
/// here): blocking it would stall the operator and clients that run in the
/// same process, and time them instead of the work.
public func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let job = Unmanaged.passRetained(ThreadJob { continuation.resume(with: Result { try body() }) }).toOpaque()
        var thread = pthread_t()
        let r = pthread_create(&thread, nil, { job in
            Unmanaged<ThreadJob>.fromOpaque(job!).takeRetainedValue().run()
            return nil
        }, job)
        if r == 0 {
            pthread_detach(thread)
        } else {
            Unmanaged<ThreadJob>.fromOpaque(job).release()
            continuation.resume(throwing: SystemError(call: "pthread_create", errno: r))
        }
    }
}

private final class ThreadJob: @unchecked Sendable {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}
