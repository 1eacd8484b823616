import Glibc
import Logging
import MizarCore
import MizarDataplane
import MizarTransit
import Synchronization

/// How many trace events per second transitd's flow stream carries to a
/// follower before any is lost: drops emitted at rising rates (BPF test
/// runs of a dropped packet, in 10 ms ticks) for 2 s each, read by
/// transitd's FlowEvents (its reader thread, its ring of kept events) and
/// taken by one follower in this process (a filter that matches all; no
/// gRPC: the Transit API's serialisation is not in these figures). Lost:
/// events the data plane's ring could not take plus those the follower's
/// queue could not.
func streamRate(_ dp: Dataplane, program: BPFProgram, packet: [UInt8], ifindex: UInt32) async throws {
    let flows = FlowEvents(dataplane: dp, droplet: IPv4Address(192, 168, 50, 1), capacity: 8192, logger: Logger(label: "bench"))
    let reading = Task { try await flows.run() }
    try await Task.sleep(for: .milliseconds(200))
    let (_, stream, id) = flows.watch(FlowFilter(), last: 0, follow: true, everyPacket: false)
    guard let stream, let id else { fatalError("no stream") }
    let received = Mutex<(events: Int, lost: UInt64)>((0, 0))
    let consumer = Task {
        for await e in stream {
            received.withLock { r in
                if !e.verdict.isEmpty { r.events += 1 }
                r.lost += e.lost
            }
        }
    }
    var sustained = 0
    for rate in [25_000, 50_000, 100_000, 200_000, 400_000, 800_000, 1_600_000] {
        let before = received.withLock { $0 }
        let perTick = rate / 100
        let start = ContinuousClock.now
        var offered = 0
        for tick in 1...200 {
            // (Blocking test runs: this bench has no other work on its pool.)
            _ = try program.testRun(packet, ifindex: ifindex, repeat: UInt32(perTick))
            offered += perTick
            let due = start + .milliseconds(10 * tick)
            if ContinuousClock.now < due { try await Task.sleep(until: due, clock: .continuous) }
        }
        let took = ContinuousClock.now - start
        try await Task.sleep(for: .milliseconds(500))   // the reader catches up
        let after = received.withLock { $0 }
        let events = after.events - before.events
        let lost = after.lost - before.lost
        let achieved = Double(offered) / (Double(took.components.seconds) + Double(took.components.attoseconds) / 1e18)
        print("BENCH stream.offered_\(rate).events_per_s \(Int(achieved)) events/s delivered=\(events) lost=\(lost) offered=\(offered)")
        if lost == 0 && events == offered { sustained = max(sustained, Int(achieved)) }
    }
    print("BENCH stream.sustained.events_per_s \(sustained) events/s (the highest offered rate delivered whole)")
    flows.unfollow(id)
    consumer.cancel()
    reading.cancel()
    _ = try? await reading.value
}
