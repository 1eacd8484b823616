import DequeModule
import Glibc
import Logging
import MizarCore
import MizarDataplane
import MizarRPC
import ServiceLifecycle
import Synchronization

/// Which events a caller of the flow stream wants.
public struct FlowFilter: Sendable, Equatable {
    public enum Verdict: String, Sendable { case dropped, forwarded }
    /// Empty: every VPC.
    public var vnis: Set<UInt32> = []
    /// Empty: any address.
    public var cidrs: [CIDR] = []
    public var verdict: Verdict?
    /// Empty: any reason.
    public var reasons: Set<String> = []

    public init(vnis: Set<UInt32> = [], cidrs: [CIDR] = [], verdict: Verdict? = nil, reasons: Set<String> = []) {
        self.vnis = vnis
        self.cidrs = cidrs
        self.verdict = verdict
        self.reasons = reasons
    }

    /// From a request; a malformed CIDR, verdict or reason is refused naming its field.
    public init(_ r: Mizar_Transit_V1_WatchFlowsRequest) throws(ValidationError) {
        vnis = Set(r.vnis)
        cidrs = try r.cidrs.map { c throws(ValidationError) in try CIDR(parsing: c, field: "cidrs") }
        if !r.verdict.isEmpty {
            guard let v = Verdict(rawValue: r.verdict) else {
                throw ValidationError(field: "verdict", reason: "\(ValidationError.quote(r.verdict)) is not dropped or forwarded")
            }
            verdict = v
        }
        let known = Set(DropReason.all.map(\.name))
        for reason in r.reasons where !known.contains(reason) {
            throw ValidationError(field: "reasons", reason: "\(ValidationError.quote(reason)) is not a drop reason (mizarctl counters --all lists them)")
        }
        reasons = Set(r.reasons)
        if !reasons.isEmpty && verdict == .forwarded {
            throw ValidationError(field: "reasons", reason: "drop reasons with verdict forwarded match nothing")
        }
    }

    public func matches(_ e: TraceEvent) -> Bool {
        if !vnis.isEmpty && !vnis.contains(e.vni) { return false }
        let dropped = e.verdict == "drop"
        if let verdict, (verdict == .dropped) != dropped { return false }
        if !reasons.isEmpty && !reasons.contains(e.reason) { return false }
        if !cidrs.isEmpty && !cidrs.contains(where: { $0.contains(e.src) || $0.contains(e.dst) }) { return false }
        return true
    }
}

/// The flow and drop stream of one droplet: reads the data plane's events
/// ring on a thread of its own, keeps the last `capacity` events (decoded,
/// not yet turned into messages: a flood of drops costs a copy each), and
/// hands them to callers of WatchFlows. Drops are always traced; every
/// packet only while a follower asks for it, and only of the VPCs it asks
/// for. Events the ring could not take (the data plane's `trace_lost`) and
/// events a slow follower could not take are counted and told.
public final class FlowEvents: Service, Sendable {
    let dataplane: Dataplane
    let droplet: IPv4Address
    let capacity: Int
    let logger: Logger
    /// Events a follower may have waiting before it loses some.
    public static let followerBuffer = 16_384

    struct Follower {
        var filter: FlowFilter
        /// nil: not every packet; empty: of every VPC; else these.
        var everyPacket: Set<VNI>?
        var continuation: AsyncStream<Mizar_Transit_V1_FlowEvent>.Continuation
        var lost: UInt64 = 0
    }

    struct State {
        var kept = Deque<TraceEvent>()
        var followers: [UInt64: Follower] = [:]
        var nextID: UInt64 = 0
        var traceLost: UInt64?
        /// What the programs were last told to trace.
        var tracing: Set<VNI>?? = .none
        var stopped = false
    }

    let state = Mutex(State())

    public init(dataplane: Dataplane, droplet: IPv4Address, capacity: Int = 8192, logger: Logger) {
        self.dataplane = dataplane
        self.droplet = droplet
        self.capacity = max(capacity, 1)
        self.logger = logger
    }

    // MARK: Callers

    /// The last `last` kept events that match, oldest first, as messages;
    /// with `follow`, a stream of the new ones after them.
    public func watch(_ filter: FlowFilter, last: Int, follow: Bool, everyPacket: Bool)
        -> (backlog: [Mizar_Transit_V1_FlowEvent], stream: AsyncStream<Mizar_Transit_V1_FlowEvent>?, id: UInt64?) {
        let clock = WallClock()
        var stream: AsyncStream<Mizar_Transit_V1_FlowEvent>?
        var id: UInt64?
        let backlog: [Mizar_Transit_V1_FlowEvent] = state.withLock { s in
            var matching: [TraceEvent] = []
            if last > 0 {
                for e in s.kept.reversed() where filter.matches(e) {
                    matching.append(e)
                    if matching.count == last { break }
                }
            }
            if follow {
                let (made, continuation) = AsyncStream.makeStream(of: Mizar_Transit_V1_FlowEvent.self,
                                                                  bufferingPolicy: .bufferingOldest(Self.followerBuffer))
                let every: Set<VNI>? = everyPacket ? Set(filter.vnis.compactMap { try? VNI($0) }) : nil
                s.nextID += 1
                s.followers[s.nextID] = Follower(filter: filter, everyPacket: every, continuation: continuation)
                (stream, id) = (made, s.nextID)
            }
            return matching.reversed().map { clock.message($0, droplet: droplet) }
        }
        if follow { applyTracing() }
        return (backlog, stream, id)
    }

    /// A follower gone (cancelled or finished).
    public func unfollow(_ id: UInt64) {
        let removed = state.withLock { $0.followers.removeValue(forKey: id) }
        removed?.continuation.finish()
        applyTracing()
    }

    /// Tells the programs what to trace: drops always; every packet of the
    /// VPCs followers ask for (of every VPC if one asks without naming any).
    func applyTracing() {
        state.withLock { s in
            guard !s.stopped else { return }
            var wanted: Set<VNI>? = []
            for f in s.followers.values {
                guard let every = f.everyPacket else { continue }
                if every.isEmpty { wanted = nil; break }
                wanted?.formUnion(every)
            }
            if case .some(let told) = s.tracing, told == wanted { return }
            do {
                try dataplane.setTrace(drops: true, everyPacket: wanted)
                s.tracing = .some(wanted)
            } catch {
                logger.warning("flow events: tracing could not be set", metadata: ["error": "\(error)"])
            }
        }
    }

    // MARK: The reader

    public func run() async throws {
        let reader = try EventReader(dataplane)
        applyTracing()
        try await withGracefulShutdownHandler {
            try await withTaskCancellationHandler {
                try await onOwnThread { [self] in try self.readUntilStopped(reader) }
            } onCancel: {
                self.stop()
            }
        } onGracefulShutdown: {
            self.stop()
        }
    }

    func stop() {
        let followers = state.withLock { s in
            s.stopped = true
            defer { s.followers = [:] }
            return Array(s.followers.values)
        }
        for f in followers { f.continuation.finish() }
        // Nobody reads any more: the programs stop tracing.
        try? dataplane.setTrace(drops: false, everyPacket: [])
    }

    private func readUntilStopped(_ reader: EventReader) throws {
        while !state.withLock({ $0.stopped }) {
            // The programs wake this reader only when the ring fills up
            // (a wakeup per event would cost each packet microseconds):
            // it reads every 50 ms, and whenever woken.
            _ = try reader.wait(milliseconds: 50)
            while case let events = try reader.read(max: 4096), !events.isEmpty {
                take(events)
                if events.count < 4096 { break }
            }
            noteLost()
            flushLost()
        }
    }

    /// The data plane's lost events since the last look: lost to every
    /// follower (whatever they were, they may have matched).
    private func noteLost() {
        guard let lost = try? dataplane.traceLost() else { return }
        state.withLock { s in
            defer { s.traceLost = lost }
            guard let before = s.traceLost, lost > before else { return }
            for id in s.followers.keys { s.followers[id]!.lost += lost - before }
        }
    }

    /// Tells each follower that lost events what it lost, in a notice of
    /// its own (only the time, the droplet and the count), until it has
    /// room for it.
    private func flushLost() {
        state.withLock { s in
            var notice = Mizar_Transit_V1_FlowEvent()
            notice.timeNs = UInt64(max(0, WallClock.now))
            notice.droplet = "\(droplet)"
            for id in s.followers.keys where s.followers[id]!.lost > 0 {
                notice.lost = s.followers[id]!.lost
                if case .enqueued = s.followers[id]!.continuation.yield(notice) { s.followers[id]!.lost = 0 }
            }
        }
    }

    func take(_ events: [TraceEvent]) {
        let clock = WallClock()
        state.withLock { s in
            s.kept.append(contentsOf: events.suffix(capacity))
            if s.kept.count > capacity { s.kept.removeFirst(s.kept.count - capacity) }
            for id in s.followers.keys {
                for e in events where s.followers[id]!.filter.matches(e) {
                    var m = clock.message(e, droplet: droplet)
                    m.lost = s.followers[id]!.lost
                    switch s.followers[id]!.continuation.yield(m) {
                    case .enqueued: s.followers[id]!.lost = 0
                    case .dropped: s.followers[id]!.lost = m.lost + 1
                    default: break
                    }
                }
            }
        }
    }
}

/// Turns the programs' monotonic times into wall-clock ones.
struct WallClock {
    let offset: Int64

    /// Now, in nanoseconds since the epoch.
    static var now: Int64 {
        var real = timespec()
        clock_gettime(CLOCK_REALTIME, &real)
        return Int64(real.tv_sec) * 1_000_000_000 + Int64(real.tv_nsec)
    }

    init() {
        var mono = timespec(), real = timespec()
        clock_gettime(CLOCK_MONOTONIC, &mono)
        clock_gettime(CLOCK_REALTIME, &real)
        offset = (Int64(real.tv_sec) - Int64(mono.tv_sec)) * 1_000_000_000 + Int64(real.tv_nsec) - Int64(mono.tv_nsec)
    }

    func message(_ e: TraceEvent, droplet: IPv4Address) -> Mizar_Transit_V1_FlowEvent {
        var m = Mizar_Transit_V1_FlowEvent()
        m.timeNs = UInt64(max(0, Int64(e.monotonicNs) + offset))
        m.droplet = "\(droplet)"
        m.vni = e.vni
        m.src = "\(e.src)"
        m.dst = "\(e.dst)"
        m.protocol = UInt32(e.proto)
        m.sport = UInt32(e.sport)
        m.dport = UInt32(e.dport)
        m.tcpFlags = UInt32(e.tcpFlags)
        m.verdict = e.verdict
        m.reason = e.reason
        m.program = e.program
        m.hook = e.hook
        m.ifindex = e.ifindex
        m.targetIfindex = e.targetIfindex
        m.nextHop = e.nextHop.map { "\($0)" } ?? ""
        m.length = UInt32(e.length)
        return m
    }
}
