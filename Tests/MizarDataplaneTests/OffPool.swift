import Dispatch
import Glibc
import Synchronization
import Testing

/// The data-plane tests are synchronous and long (they load programs, run
/// millions of packets, fill maps of a million entries). Run on the
/// concurrency pool, which has one thread per core (two here), they would
/// hold one of its threads for the whole suite, and the async suites that
/// run beside them (etcd clients, gRPC, the operator) would starve until
/// their calls time out. This trait runs each test on a thread of its own
/// instead, as the task's preferred executor: the test keeps its task (and
/// so its place in the run and the issues it records).
struct OffPool: SuiteTrait, TestTrait, TestScoping {
    var isRecursive: Bool { true }

    func provideScope(for test: Test, testCase: Test.Case?,
                      performing function: @Sendable () async throws -> Void) async throws {
        // Only around each test case: a suite's own scope has nothing to run.
        guard testCase != nil else { return try await function() }
        try await withTaskExecutorPreference(BlockingThreadExecutor.shared) { try await function() }
    }
}

extension Trait where Self == OffPool {
    static var offPool: Self { OffPool() }
}

/// One thread that runs the jobs given to it, in order: a task executor
/// for synchronous work that must not hold the concurrency pool.
final class BlockingThreadExecutor: TaskExecutor {
    static let shared = BlockingThreadExecutor()

    private let jobs = Mutex<[UnownedJob]>([])
    private let ready = DispatchSemaphore(value: 0)
    /// Its thread, once it runs.
    private let running = Mutex<pthread_t?>(nil)

    /// Whether the caller runs on this executor's thread.
    var isCurrent: Bool { running.withLock { $0 }.map { pthread_equal($0, pthread_self()) != 0 } ?? false }

    private init() {
        var thread = pthread_t()
        let started = pthread_create(&thread, nil, { me in
            let executor = Unmanaged<BlockingThreadExecutor>.fromOpaque(me!).takeUnretainedValue()
            executor.running.withLock { $0 = pthread_self() }
            while true { executor.runNext() }
        }, Unmanaged.passRetained(self).toOpaque())
        precondition(started == 0, "pthread_create: \(started)")
        pthread_detach(thread)
    }

    private func runNext() {
        ready.wait()
        guard let job = jobs.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) else { return }
        job.runSynchronously(on: asUnownedTaskExecutor())
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        jobs.withLock { $0.append(job) }
        ready.signal()
    }
}

extension DataplaneTests {
    @Test("the data-plane tests run on the blocking thread, not on the concurrency pool")
    func runsOffPool() {
        #expect(BlockingThreadExecutor.shared.isCurrent)
    }
}
