// mizarctl: declared objects in etcd and troubleshooting a transitd. It
// links neither libbpf nor netlink: the simulated cluster is mizar-testbed's.
import ArgumentParser
import Glibc
import MizarRPC
import MizarTLS
import MizarTransitClient
import SwiftProtobuf

@main
struct Mizarctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mizarctl",
        abstract: "Declare Mizar's objects and inspect a transitd.",
        subcommands: [Apply.self, Get.self, Describe.self, Delete.self, Wait.self, Matrix.self, PKICommand.self, Access.self,
                      Droplet.self, Dump.self, Counters.self, Invalidate.self, Observe.self, Trace.self])
}

struct TargetOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "The transitd: a socket path (unix:/path) or HOST:PORT.")
    var target = "unix:/run/mizar/eth0/transitd.sock"

    @Option(help: "A host of a running testbed instead of --target: NAME/HOST, e.g. mzt/h1.")
    var testbed: String?

    /// A transitd over TCP admits the operator's certificate alone.
    @OptionGroup var tlsOptions: TLSOptions

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func tls() throws -> TLSFiles? { try tlsOptions.files() }

    func resolved() throws -> TransitTarget {
        if let testbed {
            let parts = testbed.split(separator: "/").map(String.init)
            guard parts.count == 2 else { throw ValidationError("--testbed: expected NAME/HOST, e.g. mzt/h1") }
            let target = TransitTarget.testbed(parts[0], host: parts[1])
            guard case .unix(let socket) = target, access(socket, F_OK) == 0 else {
                throw ValidationError("--testbed: testbed \(parts[0]) has no host \(parts[1]) (no \(target))")
            }
            return target
        }
        return try TransitTarget(parsing: target)
    }

    func validate() throws { _ = try resolved() }
}

/// Prints rows as aligned columns.
func printTable(_ header: [String], _ rows: [[String]]) {
    let widths = header.indices.map { i in ([header[i]] + rows.map { $0[i] }).map(\.count).max() ?? 0 }
    for row in [header] + rows {
        print(row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell.padding(to: widths[i]) }.joined(separator: "  "))
    }
}

extension String {
    func padding(to width: Int) -> String { self + String(repeating: " ", count: max(0, width - count)) }
}

func hostText(_ h: Mizar_Transit_V1_Host) -> String { "\(h.ip)/\(h.mac)" }

func printJSON(_ message: some SwiftProtobuf.Message) throws {
    print(try message.jsonString())
}

struct Droplet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the host's droplet and where the programs run.")
    @OptionGroup var target: TargetOptions

    func run() async throws {
        let d = try await withTransitClient(try target.resolved(), tls: try target.tls()) { try await $0.getDroplet(.init()) }
        if target.json { return try printJSON(d) }
        printTable(["droplet", "interface", "ifindex", "transit", "agent", "pins", "version"],
                   [[hostText(d.self_p), d.interface, "\(d.ifindex)", d.transitHook, d.agentHook, d.pinDirectory, d.version]])
    }
}

struct Dump: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Dump one of the host's tables.",
        discussion: """
            Tables: vpcs, subnets, endpoints (the bouncer table), interfaces (endpoints on this host), hostcache (the learned \
            direct path), services (the scaled endpoints this host bounces for: backends, Maglev shares, new flows each got), \
            flows (the service flows this host's endpoints were taught, both directions), policy (on a bouncer: each \
            endpoint's network policy entry, its rule sets, the ipBlock prefixes), conntrack (the flows of this host's \
            endpoints a bouncer admitted, with their state), snat (this host's endpoints' flows out of their VPC and the             ports of the droplet's address they were translated to).
            """)

    enum Table: String, ExpressibleByArgument, CaseIterable { case droplets, vpcs, subnets, endpoints, interfaces, hostcache, services, flows, policy, conntrack, snat, published }

    @Argument(help: "droplets, vpcs, subnets, endpoints, interfaces, hostcache, services, flows, policy, conntrack, snat or published.")
    var table: Table
    @Option(help: "Only this VNI.")
    var vni: UInt32 = 0
    @OptionGroup var target: TargetOptions

    func run() async throws {
        var filter = Mizar_Transit_V1_ListRequest()
        filter.vni = vni
        let json = target.json
        try await withTransitClient(try target.resolved(), tls: try target.tls()) { client in
            switch table {
            case .droplets:
                let l = try await client.listDroplets(filter)
                if json { return try printJSON(l) }
                printTable(["ip", "mac"], l.droplets.map { [$0.ip, $0.mac] })
            case .vpcs:
                let l = try await client.listVPCs(filter)
                if json { return try printJSON(l) }
                printTable(["vni", "cidr", "egress", "divider", "dividers"], l.vpcs.map {
                    ["\($0.vni)", $0.cidr.isEmpty ? "-" : $0.cidr, $0.egress ? "snat" : "off", $0.isDivider ? "yes" : "no",
                     $0.dividers.map(hostText).joined(separator: ",")]
                })
            case .subnets:
                let l = try await client.listSubnets(filter)
                if json { return try printJSON(l) }
                printTable(["vni", "cidr", "bouncer", "bouncers"], l.subnets.map { ["\($0.vni)", $0.cidr, $0.isBouncer ? "yes" : "no", $0.bouncers.map(hostText).joined(separator: ",")] })
            case .endpoints:
                let l = try await client.listEndpoints(filter)
                if json { return try printJSON(l) }
                printTable(["vni", "ip", "mac", "host", "subnet"], l.endpoints.map { ["\($0.vni)", $0.ip, $0.mac, hostText($0.host), $0.subnet] })
            case .interfaces:
                let l = try await client.listEndpointInterfaces(filter)
                if json { return try printJSON(l) }
                printTable(["vni", "ip", "mac", "subnet", "netns", "host-ifname", "ifindex", "agent", "host-access"], l.interfaces.map {
                    ["\($0.spec.vni)", $0.spec.ip, $0.spec.mac, $0.spec.subnet, $0.spec.netns, $0.hostIfname, "\($0.hostIfindex)", $0.agentHook,
                     $0.hostAccess ? "yes" : "no"]
                })
            case .hostcache:
                let l = try await client.listHostCache(filter)
                if json { return try printJSON(l) }
                printTable(["vni", "ip", "host", "age"], l.entries.map { ["\($0.vni)", $0.ip, hostText($0.host), "\(Int($0.ageSeconds))s"] })
            case .services:
                let l = try await client.listServices(filter)
                if json { return try printJSON(l) }
                printTable(["vni", "vip", "ports", "backend", "host", "table", "share", "new-flows"], l.services.flatMap { s in
                    let ports = s.service.ports.map { "\($0.port)/\($0.protocol)->\($0.targetPort)" }.joined(separator: ",")
                    if s.backends.isEmpty { return [["\(s.service.vni)", s.service.ip, ports, "-", "-", "0", "-", "0"]] }
                    return s.backends.map { b in
                        ["\(s.service.vni)", s.service.ip, ports, b.ip, b.host.ip, "\(b.tableEntries)",
                         percent(Double(b.tableEntries), Double(s.tableSize)), "\(b.flows)"]
                    }
                })
            case .flows:
                let l = try await client.listServiceFlows(filter)
                if json { return try printJSON(l) }
                printTable(["vni", "direction", "flow", "rewritten to", "vip", "backend"], l.flows.map { f in
                    ["\(f.vni)", f.reverse ? "reply" : "to-vip", "\(f.src):\(f.sport) > \(f.dst):\(f.dport) \(f.protocol)",
                     "\(f.toIp):\(f.toPort)", f.vip, f.backend]
                })
            case .policy:
                let l = try await client.listPolicy(filter)
                if json { return try printJSON(l) }
                func set(_ id: UInt64) -> String { id == 0 ? "open" : String(id, radix: 16) }
                printTable(["vni", "endpoint", "member bits", "ingress set", "egress set", "named ports"], l.endpoints.map { e in
                    ["\(e.vni)", e.ip, bitList(e.members.words), set(e.ingressSet), set(e.egressSet),
                     e.namedPorts.map { "\($0.bit):\($0.port)/\(protocolName($0.protocol))" }.joined(separator: ",")]
                })
                print("")
                printTable(["vni", "set", "protocol", "ports", "peers"], l.sets.flatMap { s in
                    s.rules.isEmpty ? [["\(s.vni)", set(s.id), "-", "-", "nothing admitted"]] : s.rules.map { r in
                        ["\(s.vni)", set(s.id), r.protocol == 0 ? "any" : protocolName(r.protocol), r.protocol == 0 ? "any" : "\(r.firstPort)-\(r.lastPort)",
                         r.anyPeer ? "any" : "bits " + bitList(r.bits.words)]
                    }
                })
                print("")
                printTable(["vni", "ipBlock prefix", "bits"], l.blocks.flatMap { b in b.blocks.map { ["\(b.vni)", $0.cidr, bitList($0.bits.words)] } })
            case .conntrack:
                let l = try await client.listConntrack(filter)
                if json { return try printJSON(l) }
                printTable(["vni", "flow (opener first)", "state", "admitted", "idle"], l.entries.map { c in
                    ["\(c.vni)", "\(c.src):\(c.srcPort) > \(c.dst):\(c.dstPort) \(c.protocol)", c.state, "\(Int(c.admittedS))s ago", "\(Int(c.idleS))s"]
                })
            case .published:
                let l = try await client.listPublished(filter)
                if json { return try printJSON(l) }
                printTable(["vni", "vip", "host port", "service port", "backends"], l.published.flatMap { p in
                    p.ports.map { ["\(p.service.vni)", p.service.ip, "\($0.protocol)/\($0.hostPort)", "\($0.port)", "\(p.service.backends.count)"] }
                })
                print("")
                printTable(["vni", "client", "host port", "backend", "on host", "via port", "state", "idle"], l.flows.map { f in
                    ["\(f.vni)", "\(f.client):\(f.clientPort)", "\(f.protocol)/\(f.hostPort)", "\(f.backend):\(f.backendPort)",
                     f.backendHost, "\(f.natPort)", f.state, "\(Int(f.idleS))s"]
                })
            case .snat:
                let l = try await client.listSNAT(filter)
                if json { return try printJSON(l) }
                print("droplet address \(l.address), ports \(l.ports.isEmpty ? "none (no egress on this host)" : l.ports), \(l.entries.count) flow(s)")
                printTable(["vni", "endpoint", "remote", "protocol", "translated to", "state", "age", "idle"], l.entries.map { e in
                    ["\(e.vni)", "\(e.endpoint):\(e.endpointPort)", "\(e.remote):\(e.remotePort)", e.protocol,
                     "\(l.address):\(e.port)", e.state, "\(Int(e.ageS))s", "\(Int(e.idleS))s"]
                })
            }
        }
    }
}

/// The set bits of 32-bit words, as "0,5,17" (or "-").
func bitList(_ words: [UInt32]) -> String {
    let bits: [Int] = words.enumerated().flatMap { (i, w) -> [Int] in (0..<32).filter { w & (1 << UInt32($0)) != 0 }.map { i * 32 + $0 } }
    return bits.isEmpty ? "-" : bits.map(String.init).joined(separator: ",")
}

func protocolName(_ n: UInt32) -> String {
    switch n {
    case 1: "ICMP"
    case 6: "TCP"
    case 17: "UDP"
    case 132: "SCTP"
    default: "\(n)"
    }
}

/// "12.34%": a share with two decimals, without Foundation.
func percent(_ part: Double, _ whole: Double) -> String {
    let hundredths = Int((part * 10000 / max(whole, 1)).rounded())
    let fraction = hundredths % 100
    return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)%"
}

struct Counters: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show packet counters and drops by reason.")
    @Flag(help: "Also show counters that are zero.")
    var all = false
    @OptionGroup var target: TargetOptions

    func run() async throws {
        let c = try await withTransitClient(try target.resolved(), tls: try target.tls()) { try await $0.getCounters(.init()) }
        if target.json { return try printJSON(c) }
        let shown = { (list: [Mizar_Transit_V1_Counter]) in list.filter { all || $0.packets > 0 }.map { [$0.name, "\($0.packets)", "\($0.bytes)"] } }
        printTable(["counter", "packets", "bytes"], shown(c.counters))
        print("")
        printTable(["drop reason", "packets", "bytes"], shown(c.drops))
    }
}

struct Invalidate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Forget a learned direct path; the next packet goes through a bouncer again.")
    @Option(help: "The endpoint's VNI.")
    var vni: UInt32
    @Argument(help: "The endpoint's IP.")
    var ip: String
    @OptionGroup var target: TargetOptions

    func run() async throws {
        var key = Mizar_Transit_V1_EndpointKey()
        key.vni = vni
        key.ip = ip
        let r = try await withTransitClient(try target.resolved(), tls: try target.tls()) { try await $0.invalidateHostCache(key) }
        print(r.existed ? "invalidated \(ip) in VNI \(vni)" : "no cached path for \(ip) in VNI \(vni)")
    }
}
