// Per-packet cost of each data-plane path, for each hook, measured with
// BPF_PROG_TEST_RUN beside a trivial pass program in the same run; and the
// cost of network policy: the same paths on a second data plane with policy
// on (each flow admitted, its conntrack entry installed by a bouncer's
// verdict packet first), batches of the two alternating.
//
// Each sample is one run (repeat = 1): most paths rewrite the packet (TTL,
// encapsulation), so the kernel's repeat loop would not run the same path
// twice. The kernel times each run; a batch's figure is the mean of its
// runs, and the printed figure the median over batches.
import Glibc
import MizarCore
import MizarDataplane
import MizarPacket
import MizarTestbed

let batches = 40
let runsPerBatch = 500

func ip(_ s: String) -> IPv4Address { try! IPv4Address(parsing: s) }
func mac(_ s: String) -> MACAddress { try! MACAddress(parsing: s) }

/// Arrival interfaces: veth pairs with a per-run prefix (run-bench.sh puts
/// the whole run in a network namespace of its own).
func veth(_ suffix: String) -> UInt32 {
    do { return try createVethPair("mzb\(getpid() % 100000)\(suffix)") } catch { fatalError("\(error)") }
}

let objects = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "build/bpf"
let dropletIf = veth("d"), aIf = veth("a"), bIf = veth("b")
let dp = try Dataplane(objectDirectory: objects)
let dpPolicy = try Dataplane(objectDirectory: objects, settings: DataplaneSettings(policy: true, conntrackSize: 65_536))

let h1 = HostAddress(ip: ip("192.168.50.1"), mac: mac("02:00:00:00:00:01"))
let h2 = HostAddress(ip: ip("192.168.50.2"), mac: mac("02:00:00:00:00:02"))
let h3 = HostAddress(ip: ip("192.168.50.3"), mac: mac("02:00:00:00:00:03"))
let vni = try VNI(100)
let s1 = try CIDR(parsing: "10.0.1.0/24"), s2 = try CIDR(parsing: "10.0.2.0/24")
let a1 = ip("10.0.1.10"), a1mac = mac("0a:58:0a:00:01:0a")
let a2 = ip("10.0.1.11"), a2mac = mac("0a:58:0a:00:01:0b")
let a3 = ip("10.0.1.20"), a3mac = mac("0a:58:0a:00:01:14")
let a4 = ip("10.0.2.30")
let gw = ip("10.0.1.1"), gwMAC = mac("0a:00:00:00:00:01")

func setUp(_ d: Dataplane) throws {
    try d.setDroplet(h1, ifindex: dropletIf)
    // The droplet table: tunnel packets from h2 and h3 are believed.
    try d.replaceDroplets([h1, h2, h3])
    try d.upsertVPC(VPCEntry(vni: vni, dividers: [h3], isDivider: true, cidr: try CIDR(parsing: "10.0.0.0/16"), egress: true))
    try d.upsertSubnet(SubnetEntry(vni: vni, cidr: s1, bouncers: [h2], isBouncer: true))
    try d.upsertSubnet(SubnetEntry(vni: vni, cidr: s2, bouncers: [h3]))
    for (addr, m, ifindex) in [(a1, a1mac, aIf), (a2, a2mac, bIf)] {
        try d.upsertLocal(LocalEndpoint(vni: vni, ip: addr, mac: m, ifindex: ifindex, subnet: s1, gateway: gw, gatewayMAC: gwMAC))
    }
    try d.upsertEndpoint(EndpointEntry(vni: vni, ip: a3, mac: a3mac, host: h2))
    // A realistic bouncer: 100,000 endpoints in the table.
    try d.upsertEndpoints((0..<100_000).map { i in
        EndpointEntry(vni: vni, ip: IPv4Address(value: 0x0a01_0000 + UInt32(i)), mac: a3mac, host: h2)
    })
}
try setUp(dp)
try setUp(dpPolicy)

// Egress: the droplet interface holds h1's address and MAC, and a server on
// its link has a permanent neighbour entry; the endpoint's veth forwards
// (the FIB lookup answers only for such an arrival interface), as transitd
// sets them up.
let server = HostAddress(ip: ip("192.168.50.99"), mac: mac("02:00:00:00:00:99"))
do {
    let prefix = "mzb\(getpid() % 100000)"
    for argv in [
        ["ip", "link", "set", "dev", "\(prefix)d", "address", "\(h1.mac)"],
        ["ip", "link", "set", "dev", "\(prefix)dp", "up"],
        ["ip", "addr", "replace", "\(h1.ip)/24", "dev", "\(prefix)d"],
        ["ip", "neigh", "replace", "\(server.ip)", "lladdr", "\(server.mac)", "dev", "\(prefix)d", "nud", "permanent"],
        ["sysctl", "-q", "-w", "net.ipv4.conf.\(prefix)a.forwarding=1"],
    ] where runCommand(argv) != 0 {
        fatalError("\(argv.joined(separator: " ")) failed")
    }
}
/// The port a1's UDP flow to the server gets (the first it tries: the table is empty).
let snatPort = Dataplane.snatFirstPort(vni: vni, endpoint: a1, remote: server.ip, endpointPort: 40000, remotePort: 7,
                                       proto: 17, range: DataplaneSettings.defaultSNATPorts)
func udpFrom(_ sm: MACAddress, _ dm: MACAddress, _ s: IPv4Address, _ sport: UInt16, _ d: IPv4Address, _ dport: UInt16) -> [UInt8] {
    Packet.udpPacket(srcMAC: sm, dstMAC: dm, srcIP: s, dstIP: d, srcPort: sport, dstPort: dport, payload: [UInt8](repeating: 0x6d, count: 18))
}

func rts(_ h: HostAddress) -> GeneveOption {
    GeneveOption(optionClass: Dataplane.geneveOptionClass, type: Dataplane.rtsOptionType, data: h.ip.bytes + h.mac.bytes + [0, 0])
}

func tunnel(from: HostAddress, to: HostAddress, inner: [UInt8]) -> [UInt8] {
    let g = Packet.geneve(vni: vni.value, options: [rts(from)], payload: inner)
    let udp = Packet.udp(src: from.ip, dst: to.ip, srcPort: 50000, dstPort: 6081, payload: g, checksum: false)
    return Packet.ethernet(dst: to.mac, src: from.mac, etherType: 0x0800,
                           payload: Packet.ipv4(src: from.ip, dst: to.ip, protocol: 17, payload: udp, dontFragment: true))
}

func udp(_ sm: MACAddress, _ dm: MACAddress, _ s: IPv4Address, _ d: IPv4Address) -> [UInt8] {
    Packet.udpPacket(srcMAC: sm, dstMAC: dm, srcIP: s, dstIP: d, srcPort: 40000, dstPort: 7, payload: [UInt8](repeating: 0x6d, count: 18))
}

struct Path {
    let name: String
    let program: KeyPath<Dataplane.Programs, BPFProgram>
    let ifindex: UInt32
    let packet: [UInt8]
    var before: (Dataplane) throws -> Void = { _ in }
}

let arpRequest = Packet.ethernet(dst: .broadcast, src: h3.mac, etherType: 0x0806,
                                 payload: Packet.arp(operation: 1, senderMAC: a3mac, senderIP: ip("10.0.1.40"), targetMAC: .zero, targetIP: a3))
let paths = [
    Path(name: "bouncer", program: \.transit, ifindex: dropletIf,
         packet: tunnel(from: h3, to: h1, inner: udp(a1mac, a3mac, ip("10.0.1.40"), a3))),
    Path(name: "divider", program: \.transit, ifindex: dropletIf,
         packet: tunnel(from: h2, to: h1, inner: udp(a3mac, gwMAC, a3, a4))),
    Path(name: "decap_deliver", program: \.transit, ifindex: dropletIf,
         packet: tunnel(from: h2, to: h1, inner: udp(a3mac, a1mac, a3, a1))),
    Path(name: "arp_reply", program: \.transit, ifindex: dropletIf,
         packet: tunnel(from: h3, to: h1, inner: arpRequest)),
    Path(name: "encap_bouncer", program: \.agent, ifindex: aIf, packet: udp(a1mac, gwMAC, a1, ip("10.0.1.77")),
         before: { try $0.invalidateCachedHost(vni, ip("10.0.1.77")) }),
    Path(name: "encap_direct", program: \.agent, ifindex: aIf, packet: udp(a1mac, a3mac, a1, a3),
         before: { try $0.setCachedHost(CachedHost(vni: vni, ip: a3, host: h2)) }),
    Path(name: "same_host", program: \.agent, ifindex: aIf, packet: udp(a1mac, a2mac, a1, a2)),
    // Egress through SNAT, an established flow: out (translated and routed
    // by the agent), and its reply (translated back by the transit program).
    Path(name: "snat_out", program: \.agent, ifindex: aIf, packet: udp(a1mac, gwMAC, a1, server.ip)),
    Path(name: "snat_in", program: \.transit, ifindex: dropletIf,
         packet: udpFrom(server.mac, h1.mac, server.ip, 7, h1.ip, snatPort)),
]

// Encapsulation to a bouncer needs a bouncer that is not this host.
for d in [dp, dpPolicy] { try d.upsertSubnet(SubnetEntry(vni: vni, cidr: s1, bouncers: [h2], isBouncer: true)) }

/// The paths of an admitted flow with policy on, and what installs its
/// conntrack entry there first: a bouncer's verdict for the flow.
func verdictTunnel(from: HostAddress, naming host: HostAddress, returnTo: HostAddress, inner: [UInt8]) -> [UInt8] {
    let verdict = GeneveOption(optionClass: Dataplane.geneveOptionClass, type: Dataplane.verdictOptionType, data: host.ip.bytes + [0, 0, 0, 0])
    let g = Packet.geneve(vni: vni.value, options: [verdict, rts(returnTo)], payload: inner)
    let u = Packet.udp(src: from.ip, dst: h1.ip, srcPort: 50000, dstPort: 6081, payload: g, checksum: false)
    return Packet.ethernet(dst: h1.mac, src: from.mac, etherType: 0x0800,
                           payload: Packet.ipv4(src: from.ip, dst: h1.ip, protocol: 17, payload: u, dontFragment: true))
}
// The first packet of a flow from a3 (on h2) to a6 (on h3), both in s1,
// which this host bounces for: a3 may send UDP 7 to peers with bit 1, a6
// admits UDP 7 from peers with bit 2.
let a6 = ip("10.0.1.30"), a6mac = mac("0a:58:0a:00:01:1e")
try dpPolicy.upsertEndpoint(EndpointEntry(vni: vni, ip: a6, mac: a6mac, host: h3))
let egressSet: UInt64 = 0xe, ingressSet: UInt64 = 0x1
try dpPolicy.setPolicySet(vni, id: egressSet, [PolicyRuleEntry(proto: 17, first: 7, last: 7, anyPeer: false, bits: PolicyBitWords(words: [1 << 1]))])
try dpPolicy.setPolicySet(vni, id: ingressSet, [PolicyRuleEntry(proto: 17, first: 7, last: 7, anyPeer: false, bits: PolicyBitWords(words: [1 << 2]))])
try dpPolicy.setPolicyEndpoint(PolicyEndpointEntry(vni: vni, ip: a3, members: PolicyBitWords(words: [1 << 2]), ingress: 0, egress: egressSet, named: []))
try dpPolicy.setPolicyEndpoint(PolicyEndpointEntry(vni: vni, ip: a6, members: PolicyBitWords(words: [1 << 1]), ingress: ingressSet, egress: 0, named: []))
let judgeFirst: [UInt8] = {
    let judge = GeneveOption(optionClass: Dataplane.geneveOptionClass, type: Dataplane.rtsOptionType, data: h2.ip.bytes + h2.mac.bytes + [0x02, 0])
    let g = Packet.geneve(vni: vni.value, options: [judge], payload: udp(a3mac, a6mac, a3, a6))
    let u = Packet.udp(src: h2.ip, dst: h1.ip, srcPort: 50000, dstPort: 6081, payload: g, checksum: false)
    return Packet.ethernet(dst: h1.mac, src: h2.mac, etherType: 0x0800, payload: Packet.ipv4(src: h2.ip, dst: h1.ip, protocol: 17, payload: u, dontFragment: true))
}()

let admitted: [String: [UInt8]] = [
    // From a3's host, which the bouncer told; delivered here.
    "decap_deliver": verdictTunnel(from: h2, naming: h1, returnTo: h2, inner: udp(a3mac, a1mac, a3, a1)),
    // Back from the bouncer to this host, the sender, naming a3's host.
    "encap_direct": verdictTunnel(from: h2, naming: h2, returnTo: h1, inner: udp(a1mac, a3mac, a1, a3)),
    "same_host": verdictTunnel(from: h2, naming: h1, returnTo: h1, inner: udp(a1mac, a2mac, a1, a2)),
]

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

struct MeasuredADrop: Error, CustomStringConvertible {
    let description: String
}

/// One configuration of a path: a program of one data plane.
struct Run {
    let dp: Dataplane
    let program: BPFProgram
    let packet: [UInt8]
    var before: () throws -> Void = {}
}

/// Median batch means of each run, their batches alternating (which goes
/// first alternates too). `dropped`: the packet is meant to be dropped.
func measure(_ runs: [Run], ifindex: UInt32, dropped: Bool = false) throws -> [Double] {
    // Warm caches and branch predictors; and make sure the path is the one
    // meant: a packet that is dropped would time the drop path instead.
    for r in runs {
        let dropsBefore = try r.dp.dropValues()
        for _ in 0..<200 { try r.before(); _ = try r.program.testRun(r.packet, ifindex: ifindex) }
        let moved = try r.dp.dropValues().first(where: { $0.value.packets != dropsBefore[$0.key]?.packets })?.key
        if dropped != (moved != nil) {
            throw MeasuredADrop(description: moved.map { "the packet is dropped (\($0)): not the path meant" } ?? "the packet is not dropped: not the path meant")
        }
    }
    var batchMeans = Array(repeating: [Double](), count: runs.count)
    for b in 0..<batches {
        for i in (b % 2 == 0 ? Array(runs.indices) : runs.indices.reversed()) {
            var total: UInt64 = 0
            for _ in 0..<runsPerBatch {
                try runs[i].before()
                total += UInt64(try runs[i].program.testRun(runs[i].packet, ifindex: ifindex).durationNs)
            }
            batchMeans[i].append(Double(total) / Double(runsPerBatch))
        }
    }
    return batchMeans.map(median)
}

func fmt(_ x: Double) -> String {
    let r = (x * 10).rounded() / 10
    return String(describing: r)
}

for hook in Hook.allCases {
    let base = try StandaloneProgram(path: "\(objects)/pass.\(hook.rawValue).o", name: "mz_pass", hook: hook)
    let programs = dp.programs[hook]!, policyPrograms = dpPolicy.programs[hook]!
    let baseline = try measure([Run(dp: dp, program: base.program, packet: paths[0].packet)], ifindex: dropletIf)[0]
    print("BENCH \(hook.rawValue).pass.ns \(fmt(baseline)) ns baseline=self ratio=1.0")
    for path in paths {
        var runs = [Run(dp: dp, program: programs[keyPath: path.program], packet: path.packet, before: { try path.before(dp) })]
        if let install = admitted[path.name] {
            // The flow admitted on the policy data plane: its entry is there.
            _ = try policyPrograms.transit.testRun(install, ifindex: dropletIf)
            runs.append(Run(dp: dpPolicy, program: policyPrograms[keyPath: path.program], packet: path.packet, before: { try path.before(dpPolicy) }))
        }
        let ns = try measure(runs, ifindex: path.ifindex)
        print("BENCH \(hook.rawValue).\(path.name).ns \(fmt(ns[0])) ns baseline=\(hook.rawValue).pass ratio=\(fmt(ns[0] / baseline)) over_baseline=\(fmt(ns[0] - baseline))")
        if ns.count > 1 {
            print("BENCH \(hook.rawValue).\(path.name).policy.ns \(fmt(ns[1])) ns baseline=\(hook.rawValue).\(path.name) ratio=\(fmt(ns[1] / ns[0])) over_baseline=\(fmt(ns[1] - ns[0]))")
        }
    }
    // A flow's first packet at the bouncer that judges it (it bounces for
    // both ends' subnet, so it decides alone and sends the verdict back),
    // beside the same bouncer forwarding a packet with policy off.
    let ns = try measure([Run(dp: dp, program: programs.transit, packet: paths[0].packet),
                          Run(dp: dpPolicy, program: policyPrograms.transit, packet: judgeFirst)], ifindex: dropletIf)
    print("BENCH \(hook.rawValue).bouncer_judge.policy.ns \(fmt(ns[1])) ns baseline=\(hook.rawValue).bouncer ratio=\(fmt(ns[1] / ns[0])) over_baseline=\(fmt(ns[1] - ns[0]))")
}
// Tracing (mizarctl observe): the same packets with the programs told to
// trace nothing, drops only, every packet of this VPC, and every packet,
// alternating within each batch. Before each run (untimed) the events ring
// is emptied, so that a traced packet always writes its event.
@MainActor func tracing() throws {
    let reader = try EventReader(dp)
    func mode(_ drops: Bool, _ every: Set<VNI>?) -> () throws -> Void {
        {
            try dp.setTrace(drops: drops, everyPacket: every)
            _ = try reader.read(max: 4096)
        }
    }
    let modes: [(name: String, set: () throws -> Void)] = [
        ("trace_off", mode(false, [])), ("trace_drops", mode(true, [])), ("trace_vpc", mode(false, [vni])), ("trace_all", mode(false, nil)),
    ]
    // To an address of s1 (this host bounces for it) that no endpoint has.
    let drop = tunnel(from: h3, to: h1, inner: udp(a1mac, a3mac, ip("10.0.1.40"), ip("10.0.1.250")))
    let traced: [(name: String, program: KeyPath<Dataplane.Programs, BPFProgram>, ifindex: UInt32, packet: [UInt8],
                  before: () throws -> Void, dropped: Bool)] = [
        ("decap_deliver", \.transit, dropletIf, paths[2].packet, {}, false),
        ("encap_direct", \.agent, aIf, paths[5].packet, { try paths[5].before(dp) }, false),
        ("drop_no_endpoint", \.transit, dropletIf, drop, {}, true),
    ]
    for hook in Hook.allCases {
        for t in traced {
            let program = dp.programs[hook]![keyPath: t.program]
            let shown = t.dropped ? Array(modes.prefix(2)) : modes
            let runs = shown.map { m in Run(dp: dp, program: program, packet: t.packet, before: { try m.set(); try t.before() }) }
            let ns = try measure(runs, ifindex: t.ifindex, dropped: t.dropped)
            for (i, m) in shown.enumerated() {
                print("BENCH \(hook.rawValue).\(t.name).\(m.name).ns \(fmt(ns[i])) ns baseline=\(hook.rawValue).\(t.name).trace_off ratio=\(fmt(ns[i] / ns[0])) over_baseline=\(fmt(ns[i] - ns[0]))")
            }
        }
    }
    try dp.setTrace(drops: false, everyPacket: [])
    _ = try reader.read(max: 4096)
}
try tracing()
do {
    let drop = tunnel(from: h3, to: h1, inner: udp(a1mac, a3mac, ip("10.0.1.40"), ip("10.0.1.250")))
    try await streamRate(dp, program: dp.programs[.xdp]!.transit, packet: drop, ifindex: dropletIf)
}

// Every run must have taken its path: no drops, and each path counter moved
// (with policy: conntrack hits, no detour through a bouncer).
for (name, d) in [("policy off", dp), ("policy on", dpPolicy)] {
    let counters = try d.counterValues().filter { $0.value.packets > 0 }.sorted { $0.key < $1.key }
    print("paths taken (\(name)): " + counters.map { "\($0.key)=\($0.value.packets)" }.joined(separator: " "))
    // (The tracing section's own drop path is meant: not counted here.)
    let drops = try d.dropValues().filter { $0.value.packets > 0 && !(name == "policy off" && $0.key == "no_endpoint") }
    if !drops.isEmpty { print("WARNING: drops during the benchmark (\(name)): \(drops.map { "\($0.key)=\($0.value.packets)" })") }
}
