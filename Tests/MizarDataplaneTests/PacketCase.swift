import CMizarABI
import MizarCore
@testable import MizarDataplane
import MizarPacket
import Testing

enum Program: String, Sendable { case transit, agent }

/// An interface of the test host.
enum Port: Sendable {
    case droplet, a, b, c

    func ifindex(_ ifs: Interfaces) -> UInt32 {
        switch self {
        case .droplet: ifs.droplet
        case .a: ifs.a
        case .b: ifs.b
        case .c: ifs.c
        }
    }
}

enum Expect: Sendable {
    case pass
    case drop(mz_drop_reason)
    /// Taken in by the program (a revocation): dropped under no reason.
    case consumed
    case tx
    case redirect(Port)
}

struct Learned: Sendable {
    let vni: VNI
    let ip: IPv4Address
    let host: HostAddress
}

/// One row: a packet into one program on one port, and everything that
/// must hold afterwards. Each row runs against the XDP and the tc build.
struct PacketCase: Sendable, CustomTestStringConvertible {
    let name: String
    var program: Program
    var port: Port
    var roles = Roles()
    var prepare: @Sendable (Dataplane) throws -> Void = { _ in }
    let input: [UInt8]
    let expect: Expect
    /// The exact output frame; nil means the input, unchanged.
    var output: [UInt8]? = nil
    /// Path counters that must move by one (verdict and drop counters are
    /// implied by `expect`); every other counter must stay put.
    var counters: [String] = []
    /// Entries the direct-path cache must gain; nothing else may change.
    var learns: [Learned] = []
    var vni: VNI? = nil
    /// The kernel builds no skb from an IPv4 frame whose header is cut short,
    /// so on tc such a frame never reaches a program: the run must fail.
    var tcRefusedByKernel = false
    /// Further checks of the tables afterwards (service flows, clients).
    var after: @Sendable (Dataplane) throws -> Void = { _ in }
    /// Run on the data plane with network policy on.
    var policy = false
    /// Only on these hooks (where the two differ by design); nil: both.
    var hooks: Set<Hook>? = nil

    var testDescription: String { "\(program.rawValue): \(name)" }
}

func hex(_ bytes: [UInt8]) -> String {
    stride(from: 0, to: bytes.count, by: 16).map { i in
        bytes[i..<min(i + 16, bytes.count)].map { b in
            let s = String(b, radix: 16)
            return s.count == 1 ? "0" + s : s
        }.joined(separator: " ")
    }.joined(separator: "\n")
}

func cacheSnapshot(_ dp: Dataplane) throws -> [String: HostAddress] {
    var result: [String: HostAddress] = [:]
    for (k, v) in try dp.hostCache.entries() {
        result["\(k.vni)/\(IPv4Address(networkOrder: k.ip))"] = HostAddress(
            ip: IPv4Address(networkOrder: v.host.ip),
            mac: MACAddress(v.host.mac.0, v.host.mac.1, v.host.mac.2, v.host.mac.3, v.host.mac.4, v.host.mac.5))
    }
    return result
}

/// The hook's return code for a verdict. Under XDP the agent sends "back
/// out" as a redirect to its own interface (a veth flushes XDP_TX frames
/// only to a peer with an XDP program); the transit program uses XDP_TX
/// unless configured otherwise (LoadTimeConfig tests that).
func retval(_ e: Expect, _ hook: Hook, _ program: Program) -> UInt32 {
    switch (e, hook) {
    case (.pass, .xdp): 2       // XDP_PASS
    case (.drop, .xdp), (.consumed, .xdp): 1 // XDP_DROP
    case (.tx, .xdp): program == .agent ? 4 : 3 // XDP_REDIRECT or XDP_TX
    case (.redirect, .xdp): 4   // XDP_REDIRECT
    case (.pass, .tc): 0        // TC_ACT_OK
    case (.drop, .tc), (.consumed, .tc): 2 // TC_ACT_SHOT
    case (.tx, .tc), (.redirect, .tc): 7 // TC_ACT_REDIRECT
    }
}

/// Runs one row and checks verdict, bytes, redirect target, counters and
/// the cache.
func check(_ c: PacketCase, _ hook: Hook) throws {
    if let hooks = c.hooks, !hooks.contains(hook) { return }
    let env = try TestEnvironment.get(policy: c.policy)
    let dp = env.dataplane
    try env.reset()
    try seed(env, c.roles)
    try c.prepare(dp)
    let cacheBefore = try cacheSnapshot(dp)
    let countersBefore = try dp.counterValues()
    let dropsBefore = try dp.dropValues()

    let programs = dp.programs[hook]!
    let prog = c.program == .transit ? programs.transit : programs.agent
    let arrival = c.port.ifindex(env.ifs)
    if c.tcRefusedByKernel && hook == .tc {
        #expect(throws: SystemError.self) { try prog.testRun(c.input, ifindex: arrival) }
        return
    }
    let r = try prog.testRun(c.input, ifindex: arrival)

    #expect(r.retval == retval(c.expect, hook, c.program), "return code")
    let want = c.output ?? c.input
    #expect(r.output == want, "output bytes\n got:\n\(hex(r.output))\n want:\n\(hex(want))")

    // The trace event: verdict, reason and where the packet went.
    let events = try env.events.drain()
    #expect(events.count == 1, "one trace event per packet")
    if let ev = events.first {
        #expect(ev.program == UInt8(c.program == .transit ? MZ_PROG_TRANSIT.rawValue : MZ_PROG_AGENT.rawValue))
        #expect(ev.hook == UInt8(hook == .xdp ? MZ_HOOK_ID_XDP.rawValue : MZ_HOOK_ID_TC.rawValue))
        #expect(ev.ifindex == arrival)
        switch c.expect {
        case .pass:
            #expect(ev.verdict == UInt16(MZ_V_PASS.rawValue))
        case .consumed:
            #expect(ev.verdict == UInt16(MZ_V_DROP.rawValue))
            #expect(ev.reason == 0)
        case .drop(let reason):
            #expect(ev.verdict == UInt16(MZ_V_DROP.rawValue))
            #expect(ev.reason == UInt16(reason.rawValue),
                    "drop reason \(DropReason.name(UInt32(ev.reason))), want \(DropReason.name(reason.rawValue))")
        case .tx:
            #expect(ev.verdict == UInt16(MZ_V_TX.rawValue))
            #expect(ev.target_ifindex == arrival)
        case .redirect(let port):
            #expect(ev.verdict == UInt16(MZ_V_REDIRECT.rawValue))
            #expect(ev.target_ifindex == port.ifindex(env.ifs), "redirect target")
        }
        if let vni = c.vni { #expect(ev.vni == vni.value) }
    }

    // Counters: exactly the verdict, the drop reason and the listed paths move.
    var wantCounters = Set(c.counters)
    let verdictName: String
    switch c.expect {
    case .pass: verdictName = "pass"
    case .drop, .consumed: verdictName = "drop"
    case .tx: verdictName = "tx"
    case .redirect: verdictName = "redirect"
    }
    wantCounters.insert("\(c.program.rawValue)_\(verdictName)")
    let countersAfter = try dp.counterValues()
    for (name, after) in countersAfter {
        let delta = after.packets - countersBefore[name]!.packets
        #expect(delta == (wantCounters.contains(name) ? 1 : 0), "counter \(name) moved by \(delta)")
    }
    let dropsAfter = try dp.dropValues()
    for (name, after) in dropsAfter {
        let delta = after.packets - dropsBefore[name]!.packets
        var want: UInt64 = 0
        if case .drop(let reason) = c.expect, DropReason.name(reason.rawValue) == name { want = 1 }
        #expect(delta == want, "drop counter \(name) moved by \(delta)")
    }

    // The direct-path cache: exactly what the row says was learned.
    var wantCache = cacheBefore
    for l in c.learns { wantCache["\(l.vni.value)/\(l.ip)"] = l.host }
    #expect(try cacheSnapshot(dp) == wantCache, "direct-path cache")
    try c.after(dp)
}
