import CMizarABI
import Glibc
import MizarCore
@testable import MizarDataplane
import MizarPacket
import Testing

/// Mutations of a valid packet: the kinds of damage a wire or an attacker
/// can do, plus plain noise.
func mutate(_ seed: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
    var p = seed
    switch rng.next() % 8 {
    case 0: // flip a few bytes anywhere
        for _ in 0..<(1 + Int(rng.next() % 4)) { p[Int(rng.next() % UInt64(p.count))] = UInt8(truncatingIfNeeded: rng.next()) }
    case 1: // cut short
        p = Array(p.prefix(14 + Int(rng.next() % UInt64(max(1, p.count - 14)))))
    case 2: // trailing junk
        p += rng.bytes(Int(rng.next() % 64))
    case 3: // a random VNI (outer Geneve at 46..48 for an option-less IPv4 header)
        if p.count > 49 { p[46] = UInt8(truncatingIfNeeded: rng.next()); p[47] = UInt8(truncatingIfNeeded: rng.next()); p[48] = UInt8(truncatingIfNeeded: rng.next() % 3) }
    case 4: // damage the Geneve option area: opt_len and option lengths
        if p.count > 54 { p[42] = UInt8(truncatingIfNeeded: rng.next()); p[53] = UInt8(truncatingIfNeeded: rng.next()) }
    case 5: // header lengths and protocol fields
        let spots = [12, 13, 14, 23, 36, 37, 44, 45, 62, 63, 64]
        let i = spots[Int(rng.next() % UInt64(spots.count))]
        if i < p.count { p[i] = UInt8(truncatingIfNeeded: rng.next()) }
    case 6: // addresses: inner and outer IPs and MACs
        let spots = [0, 5, 6, 11, 26, 29, 30, 33, 80, 83, 84, 87, 92, 95, 96, 99]
        let i = spots[Int(rng.next() % UInt64(spots.count))]
        if i < p.count { p[i] ^= UInt8(truncatingIfNeeded: 1 << (rng.next() % 8)) }
    default: // noise
        p = rng.bytes(14 + Int(rng.next() % 200))
    }
    return p
}

/// The Geneve VNI of a frame, if it is a well-formed enough tunnel packet.
func geneveVNI(_ frame: [UInt8]) -> UInt32? {
    guard frame.count >= 14 + 20 + 8 + 8, frame[12] == 0x08, frame[13] == 0x00 else { return nil }
    let ihl = Int(frame[14] & 0x0f) * 4
    guard ihl >= 20, frame[23] == 17, frame.count >= 14 + ihl + 16 else { return nil }
    let g = 14 + ihl + 8
    guard frame[14 + ihl + 2] == 0x17, frame[14 + ihl + 3] == 0xc1 else { return nil }
    return UInt32(frame[g + 4]) << 16 | UInt32(frame[g + 5]) << 8 | UInt32(frame[g + 6])
}

extension DataplaneTests {
    @Suite struct Fuzz {
        static let perProgramAndHook = 50_000 // 100,000 per program over both hooks

        /// Random and mutated packets through both programs: no program
        /// error, and no packet delivered into (or sent out with) a VNI other
        /// than the one it arrived with.
        @Test(arguments: [Program.transit, Program.agent], Hook.allCases)
        func isolationHolds(_ program: Program, _ hook: Hook) throws {
            let env = try TestEnvironment.get()
            try env.reset()
            try seed(env, Roles(bouncerS1: true, dividerA: true, s1Bouncers: [T.h4, T.h1], s2Bouncers: [T.h3, T.h2]))
            let dp = env.dataplane
            let prog = program == .transit ? dp.programs[hook]!.transit : dp.programs[hook]!.agent
            let endpointVNI: [UInt32: UInt32] = [env.ifs.a: 100, env.ifs.b: 100, env.ifs.c: 200]
            let seeds = (program == .transit ? TransitCases.all : AgentCases.all).map(\.input)
            let ports = program == .transit ? [env.ifs.droplet] : [env.ifs.a, env.ifs.c]
            var rng = SplitMix64(seed: 0x6d697a6172 ^ UInt64(hook == .xdp ? 1 : 2) ^ UInt64(program == .transit ? 4 : 8))

            struct Sent { let arrival: UInt32; let vni: UInt32?; let retval: UInt32; let output: [UInt8] }
            var pending: [Sent] = []
            var refused = 0, delivered = 0, forwarded = 0, dropped = 0

            func settle() throws {
                let events = try env.events.drain(max: pending.count + 16)
                guard events.count == pending.count else {
                    throw SetupError(what: "\(events.count) events for \(pending.count) packets: one per packet expected")
                }
                for (sent, ev) in zip(pending, events) {
                    #expect(ev.ifindex == sent.arrival)
                    switch UInt32(ev.verdict) {
                    case MZ_V_REDIRECT.rawValue, MZ_V_TX.rawValue:
                        if let epVNI = endpointVNI[ev.target_ifindex], ev.target_ifindex != sent.arrival || program == .transit {
                            delivered += 1
                            #expect(epVNI == sent.vni, "delivered into VNI \(epVNI), arrived with \(String(describing: sent.vni))")
                        } else {
                            forwarded += 1
                            if let out = geneveVNI(sent.output) {
                                #expect(out == sent.vni, "sent out with VNI \(out), arrived with \(String(describing: sent.vni))")
                            }
                        }
                    case MZ_V_DROP.rawValue:
                        dropped += 1
                        #expect(ev.reason > 0 && ev.reason < UInt16(MZ_DROP__MAX.rawValue))
                    case MZ_V_PASS.rawValue:
                        #expect(program == .transit, "the agent never passes a packet to the host")
                    default:
                        Issue.record("unknown verdict \(ev.verdict)")
                    }
                }
                pending.removeAll(keepingCapacity: true)
            }

            for i in 0..<Fuzz.perProgramAndHook {
                let input = mutate(seeds[i % seeds.count], &rng)
                let arrival = ports[Int(rng.next() % UInt64(ports.count))]
                let vni: UInt32? = program == .transit ? geneveVNI(input) : endpointVNI[arrival]
                do {
                    let r = try prog.testRun(input, ifindex: arrival)
                    pending.append(Sent(arrival: arrival, vni: vni, retval: r.retval, output: r.output))
                } catch {
                    // The kernel builds no skb from some frames; no program ran.
                    guard error.errno == EINVAL && hook == .tc else { throw error }
                    refused += 1
                }
                if pending.count == 2000 { try settle() }
            }
            try settle()
            print("fuzz \(program) \(hook): \(Fuzz.perProgramAndHook) packets, delivered \(delivered), forwarded \(forwarded), dropped \(dropped), refused by the kernel \(refused)")
            #expect(delivered > 0 && forwarded > 0 && dropped > 0, "the fuzzer reached every outcome")
        }
    }
}
