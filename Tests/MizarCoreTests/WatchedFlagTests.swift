import MizarCore
import Synchronization
import Testing

@Suite("WatchedFlag")
struct WatchedFlagTests {
    @Test("a waiter wakes on a change, not on setting the same value; one whose value already differs returns at once; cancelled, it returns")
    func wakes() async throws {
        let flag = WatchedFlag()
        let woke = Atomic<Int>(0)
        let waiter = Task {
            await flag.changed(from: false)
            woke.add(1, ordering: .relaxed)
        }
        try await Task.sleep(for: .milliseconds(100))
        flag.set(false)   // the same value: nobody wakes
        try await Task.sleep(for: .milliseconds(100))
        #expect(woke.load(ordering: .relaxed) == 0)
        flag.set(true)
        await waiter.value
        #expect(woke.load(ordering: .relaxed) == 1 && flag.value)
        // Already different: at once.
        await flag.changed(from: false)
        // Cancelled while waiting: returns.
        let cancelled = Task { await flag.changed(from: true) }
        try await Task.sleep(for: .milliseconds(50))
        cancelled.cancel()
        await cancelled.value
        #expect(flag.value)
    }
}
