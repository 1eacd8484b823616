import CMizarABI
import Glibc
import MizarCore
@testable import MizarDataplane
import MizarPacket
import MizarTransit
import Logging
import Testing

extension DataplaneTests {
    /// Per-VPC counters and what a trace event says of a packet.
    @Suite struct Observability {
        /// One tunnel packet from h4 into VPC A on this host (h1).
        static func intoA(_ dst: IPv4Address, sport: UInt16 = 4321, dport: UInt16 = 53) -> [UInt8] {
            P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h4, inner: ServiceCases.udp(T.a5mac, T.gwMAC, T.a5, sport, dst, dport))
        }

        @Test func vpcCountersCountEachVPCByOutcome() throws {
            let env = try TestEnvironment.get()
            try env.reset()
            try seed(env, Roles(bouncerS1: true))
            let runs: UInt32 = 10
            // Two packets whose outcomes differ: to a1 (an endpoint here)
            // and to an address of s1 with no endpoint (dropped).
            for hook in Hook.allCases {
                var outcome: [String: UInt64] = [:], bytes: [String: UInt64] = [:]
                let before = Dictionary(uniqueKeysWithValues: try env.dataplane.vpcCounters().map { ($0.vni, $0) })
                for dst in [T.a1, T.ip("10.0.1.99")] {
                    _ = try env.events.read()
                    // (One run at a time: a repeated run reuses the frame the first one rewrote.)
                    for _ in 0..<runs { _ = try env.dataplane.programs[hook]!.transit.testRun(Self.intoA(dst), ifindex: env.ifs.droplet) }
                    let events = try env.events.read()
                    #expect(events.count == Int(runs) && events.allSatisfy { $0.vni == T.vniA.value }, "\(hook): \(events.count) events")
                    for e in events {
                        let key = e.verdict == "drop" ? "dropped" : "forwarded"
                        outcome[key, default: 0] += 1
                        bytes[key, default: 0] += UInt64(e.length)
                    }
                }
                #expect(outcome["dropped"] == UInt64(runs) && outcome["forwarded"] == UInt64(runs), "\(hook): \(outcome)")
                let after = Dictionary(uniqueKeysWithValues: try env.dataplane.vpcCounters().map { ($0.vni, $0) })
                let a = try #require(after[T.vniA]), a0 = try #require(before[T.vniA])
                #expect(a.forwarded.packets - a0.forwarded.packets == outcome["forwarded"] ?? 0, "\(hook): forwarded \(a.forwarded) from \(a0.forwarded)")
                #expect(a.dropped.packets - a0.dropped.packets == outcome["dropped"] ?? 0, "\(hook): dropped \(a.dropped) from \(a0.dropped)")
                #expect(a.forwarded.bytes - a0.forwarded.bytes == bytes["forwarded"] ?? 0)
                #expect(a.dropped.bytes - a0.dropped.bytes == bytes["dropped"] ?? 0)
                // VPC B, the same addresses, saw nothing.
                #expect(after[T.vniB] == before[T.vniB])
            }
            // A tunnel packet of a VNI this host has no VPC for: nobody's
            // counters, and no entry made for it.
            let unknown = try VNI(999)
            let stray = P.tunnel(from: T.h4, to: T.h1, vni: unknown, rts: T.h4, inner: ServiceCases.udp(T.a5mac, T.gwMAC, T.a5, 1, T.a1, 2))
            _ = try env.dataplane.programs[.xdp]!.transit.testRun(stray, ifindex: env.ifs.droplet, repeat: 5)
            #expect(try env.dataplane.vpcCounters().map(\.vni) == [T.vniA, T.vniB])
            // A VPC deleted takes its counters with it; put again, from zero.
            try env.dataplane.deleteVPC(T.vniB)
            #expect(try env.dataplane.vpcCounters().map(\.vni) == [T.vniA])
            try env.dataplane.upsertVPC(VPCEntry(vni: T.vniB, dividers: [T.h2]))
            #expect(try env.dataplane.vpcCounters().first { $0.vni == T.vniB } == VPCCounters(vni: T.vniB, forwarded: .zero, dropped: .zero))
        }

        @Test func traceEventsCarryTransportAndFollowTheSwitches() throws {
            let env = try TestEnvironment.get()
            try env.reset()
            try seed(env, Roles(bouncerS1: true))
            let transit = env.dataplane.programs[.tc]!.transit
            // UDP: protocol and ports, as the packet carries them inside the tunnel.
            _ = try transit.testRun(Self.intoA(T.a1, sport: 40_001, dport: 8053), ifindex: env.ifs.droplet)
            let udp = try #require(try env.events.read().first)
            #expect(udp.proto == 17 && udp.sport == 40_001 && udp.dport == 8053 && udp.tcpFlags == 0, "\(udp)")
            #expect(udp.src == T.a5 && udp.dst == T.a1 && udp.program == "transit" && udp.hook == "tc")
            // TCP: the flags too (SYN|ACK).
            let syn = P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h4,
                               inner: ServiceCases.tcp(T.a5mac, T.gwMAC, T.a5, 40_002, T.a1, 80, flags: 0x12))
            _ = try transit.testRun(syn, ifindex: env.ifs.droplet)
            let tcp = try #require(try env.events.read().first)
            #expect(tcp.proto == 6 && tcp.sport == 40_002 && tcp.dport == 80 && tcp.tcpFlags == 0x12, "\(tcp)")

            // Drops only: a delivered packet makes no event, a dropped one does.
            try env.dataplane.setTrace(drops: true, everyPacket: [])
            _ = try transit.testRun(Self.intoA(T.a1), ifindex: env.ifs.droplet)
            #expect(try env.events.read().isEmpty)
            _ = try transit.testRun(Self.intoA(T.ip("10.0.1.99")), ifindex: env.ifs.droplet)
            let dropped = try env.events.read()
            #expect(dropped.count == 1 && dropped.first?.verdict == "drop" && dropped.first?.reason != "", "\(dropped)")
            // Every packet of VPC B only: A's delivered packet makes none, B's does.
            try env.dataplane.setTrace(drops: false, everyPacket: [T.vniB])
            _ = try transit.testRun(Self.intoA(T.a1), ifindex: env.ifs.droplet)
            #expect(try env.events.read().isEmpty)
            let intoB = P.tunnel(from: T.h4, to: T.h1, vni: T.vniB, rts: T.h4, inner: ServiceCases.udp(T.a5mac, T.gwMAC, T.a5, 7, T.b1, 9))
            _ = try transit.testRun(intoB, ifindex: env.ifs.droplet)
            let b = try env.events.read()
            #expect(b.count == 1 && b.first?.vni == T.vniB.value, "\(b)")
            // Nothing traced: no event at all, for a drop either.
            try env.dataplane.setTrace(drops: false, everyPacket: [])
            _ = try transit.testRun(Self.intoA(T.ip("10.0.1.99")), ifindex: env.ifs.droplet)
            _ = try transit.testRun(intoB, ifindex: env.ifs.droplet)
            #expect(try env.events.read().isEmpty)
            #expect(try env.dataplane.traceVPCs.keys().isEmpty)
        }
    }
}

extension DataplaneTests.Observability {
    /// transitd's flow stream over this data plane: a follower gets every
    /// event the ring took, and is told how many it lost.
    @Test func followerIsToldWhatWasLost() async throws {
        let env = try TestEnvironment.get()
        try env.reset()
        try seed(env, Roles(bouncerS1: true))
        _ = try env.events.read()
        let flows = FlowEvents(dataplane: env.dataplane, droplet: T.h1.ip, capacity: 100_000, logger: Logger(label: "test"))
        let reading = Task { try await flows.run() }
        defer { reading.cancel() }
        try await Task.sleep(for: .milliseconds(200))
        let (_, stream, id) = flows.watch(FlowFilter(vnis: [T.vniA.value], verdict: .dropped), last: 0, follow: true, everyPacket: false)
        let follower = try #require(stream)
        defer { if let id { flows.unfollow(id) } }
        // 100,000 drops at once while the follower reads nothing: more than
        // its queue holds. What it could not take (and whatever the ring
        // could not) is told with the events that follow, or in notices.
        let runs: UInt32 = 100_000
        let drop = Self.intoA(T.ip("10.0.1.99"))
        _ = try env.dataplane.programs[.xdp]!.transit.testRun(drop, ifindex: env.ifs.droplet, repeat: runs)
        var events = 0, toldLost: UInt64 = 0, notices = 0
        let deadline = ContinuousClock.now + .seconds(10)
        // Never waits past the deadline for an event that does not come:
        // the stream is ended then.
        let stopper = Task {
            try await Task.sleep(for: .seconds(10))
            if let id { flows.unfollow(id) }
        }
        defer { stopper.cancel() }
        for await e in follower {
            if e.verdict.isEmpty { notices += 1 } else { events += 1 }
            toldLost += e.lost
            if UInt64(events) + toldLost >= UInt64(runs) || ContinuousClock.now > deadline { break }
        }
        #expect(UInt64(events) + toldLost == UInt64(runs), "\(events) events + \(toldLost) told lost != \(runs)")
        #expect(toldLost > 0 && events >= FlowEvents.followerBuffer, "told \(toldLost) lost (\(notices) notices), \(events) events")
        try env.dataplane.setTrace(UInt32(MZ_TRACE_ALL))
    }
}
