// Per-packet cost of each data-plane path, for each hook, measured with
// BPF_PROG_TEST_RUN beside a trivial pass program in the same run.
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

try dp.setDroplet(h1, ifindex: dropletIf)
// The droplet table: tunnel packets from h2 and h3 are believed.
try dp.replaceDroplets([h1, h2, h3])
try dp.upsertVPC(VPCEntry(vni: vni, dividers: [h3], isDivider: true))
try dp.upsertSubnet(SubnetEntry(vni: vni, cidr: s1, bouncers: [h2], isBouncer: true))
try dp.upsertSubnet(SubnetEntry(vni: vni, cidr: s2, bouncers: [h3]))
for (addr, m, ifindex) in [(a1, a1mac, aIf), (a2, a2mac, bIf)] {
    try dp.upsertLocal(LocalEndpoint(vni: vni, ip: addr, mac: m, ifindex: ifindex, subnet: s1, gateway: gw, gatewayMAC: gwMAC))
}
try dp.upsertEndpoint(EndpointEntry(vni: vni, ip: a3, mac: a3mac, host: h2))
// A realistic bouncer: 100,000 endpoints in the table.
try dp.upsertEndpoints((0..<100_000).map { i in
    EndpointEntry(vni: vni, ip: IPv4Address(value: 0x0a01_0000 + UInt32(i)), mac: a3mac, host: h2)
})

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
    var before: () throws -> Void = {}
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
         before: { try dp.invalidateCachedHost(vni, ip("10.0.1.77")) }),
    Path(name: "encap_direct", program: \.agent, ifindex: aIf, packet: udp(a1mac, a3mac, a1, a3),
         before: { try dp.setCachedHost(CachedHost(vni: vni, ip: a3, host: h2)) }),
    Path(name: "same_host", program: \.agent, ifindex: aIf, packet: udp(a1mac, a2mac, a1, a2)),
]

// Encapsulation to a bouncer needs a bouncer that is not this host.
try dp.upsertSubnet(SubnetEntry(vni: vni, cidr: s1, bouncers: [h2], isBouncer: true))

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

struct MeasuredADrop: Error, CustomStringConvertible {
    let description: String
}

func measure(_ program: BPFProgram, _ packet: [UInt8], ifindex: UInt32, before: () throws -> Void = {}) throws -> Double {
    // Warm caches and branch predictors; and make sure the path is the one
    // meant: a packet that is dropped would time the drop path instead.
    let dropsBefore = try dp.dropValues()
    for _ in 0..<200 { try before(); _ = try program.testRun(packet, ifindex: ifindex) }
    if let name = try dp.dropValues().first(where: { $0.value.packets != dropsBefore[$0.key]?.packets })?.key {
        throw MeasuredADrop(description: "the packet is dropped (\(name)): not the path meant")
    }
    var batchMeans: [Double] = []
    for _ in 0..<batches {
        var total: UInt64 = 0
        for _ in 0..<runsPerBatch {
            try before()
            total += UInt64(try program.testRun(packet, ifindex: ifindex).durationNs)
        }
        batchMeans.append(Double(total) / Double(runsPerBatch))
    }
    return median(batchMeans)
}

func fmt(_ x: Double) -> String {
    let r = (x * 10).rounded() / 10
    return String(describing: r)
}

for hook in Hook.allCases {
    let base = try StandaloneProgram(path: "\(objects)/pass.\(hook.rawValue).o", name: "mz_pass", hook: hook)
    let programs = dp.programs[hook]!
    let baseline = try measure(base.program, paths[0].packet, ifindex: dropletIf)
    print("BENCH \(hook.rawValue).pass.ns \(fmt(baseline)) ns baseline=self ratio=1.0")
    for path in paths {
        let prog = programs[keyPath: path.program]
        let ns = try measure(prog, path.packet, ifindex: path.ifindex, before: path.before)
        print("BENCH \(hook.rawValue).\(path.name).ns \(fmt(ns)) ns baseline=\(hook.rawValue).pass ratio=\(fmt(ns / baseline)) over_baseline=\(fmt(ns - baseline))")
    }
}
// Every run must have taken its path: no drops, and each path counter moved.
let counters = try dp.counterValues().filter { $0.value.packets > 0 }.sorted { $0.key < $1.key }
print("paths taken: " + counters.map { "\($0.key)=\($0.value.packets)" }.joined(separator: " "))
let drops = try dp.dropValues().filter { $0.value.packets > 0 }
if !drops.isEmpty { print("WARNING: drops during the benchmark: \(drops.map { "\($0.key)=\($0.value.packets)" })") }
