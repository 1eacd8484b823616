import Synchronization

/// A boolean that can be waited on: `set` wakes whoever waits for it to
/// differ from what they last saw. No polling: a waiter sleeps until a
/// change (or its task is cancelled).
public final class WatchedFlag: Sendable {
    private struct State {
        var value: Bool
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var next: UInt64 = 0
    }
    private let state: Mutex<State>

    public init(_ value: Bool = false) { state = Mutex(State(value: value)) }

    public var value: Bool { state.withLock { $0.value } }

    public func set(_ value: Bool) {
        let woken: [CheckedContinuation<Void, Never>] = state.withLock { s in
            guard s.value != value else { return [] }
            s.value = value
            defer { s.waiters = [:] }
            return Array(s.waiters.values)
        }
        for w in woken { w.resume() }
    }

    /// Returns once the value is not `seen` (at once if it already is not),
    /// or when the task is cancelled.
    public func changed(from seen: Bool) async {
        let id = state.withLock { s in defer { s.next += 1 }; return s.next }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = state.withLock { s -> Bool in
                    if s.value != seen { return true }
                    s.waiters[id] = c
                    return false
                }
                if now { c.resume() }
            }
        } onCancel: {
            let c = state.withLock { $0.waiters.removeValue(forKey: id) }
            c?.resume()
        }
    }
}
