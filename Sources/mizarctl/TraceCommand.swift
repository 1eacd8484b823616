// mizarctl trace: where one packet would go, hop by hop, read from the
// hosts' installed tables (transitd's read-only Explain) and computed from
// the declared objects; where the two disagree, it says so.
import ArgumentParser
import Foundation
import MizarAPI
import MizarCore
import MizarPacket
import MizarRPC
import MizarStore
import MizarTransitClient

struct Trace: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show where a packet from an endpoint would go, hop by hop, and why.",
        discussion: """
            Builds the packet SOURCE would send (a TCP SYN, a UDP datagram or an ICMP echo) and asks each host \
            on its way what its data plane would do with it: the same programs' logic, built to write nothing \
            (transitd's Explain), over that host's tables as they are. Each hop shows the tables read, the path \
            taken (a direct path, a bouncer picked by the flow's hash, a divider, a service backend, a policy \
            judgment) and where the packet goes next; the end is a delivery into an endpoint on a host, or a drop \
            and its reason. It also computes the end from the declared objects in etcd, and says whether the two \
            agree. Nothing is sent and nothing is learned.
            """)

    @Argument(help: "The source endpoint's name.") var source: String
    @Argument(help: "The destination: an IP address in the source's VPC, or an endpoint's name.") var destination: String
    @Argument(help: "tcp/PORT, udp/PORT or icmp.") var flow = "tcp/80"
    @Option(help: "The source's VPC (checked).") var vpc: String?
    @Option(help: "The source port (TCP, UDP) or echo id (ICMP).") var sport: UInt16 = 40000
    @Option(help: "Reach the hosts of this running testbed through their unix sockets instead of their registered addresses.") var testbed: String?
    @Option(name: [.customShort("o"), .long], help: "table or json.") var output = "table"
    @OptionGroup var etcd: EtcdOptions

    func validate() throws {
        _ = try parsedFlow()
        if !["table", "json"].contains(output) { throw ValidationError("-o: \"\(output)\" is not table or json") }
    }

    func parsedFlow() throws -> (proto: UInt8, port: UInt16) {
        let parts = flow.lowercased().split(separator: "/").map(String.init)
        switch (parts.first, parts.count) {
        case ("icmp", 1): return (1, 0)
        case ("tcp", 2), ("udp", 2):
            guard let port = UInt16(parts[1]), port > 0 else { throw ValidationError("\(flow): the port is not 1 to 65535") }
            return (parts[0] == "tcp" ? 6 : 17, port)
        default: throw ValidationError("\(flow): expected tcp/PORT, udp/PORT or icmp")
        }
    }

    struct Hop: Codable {
        var droplet: String
        var dropletIP: String
        var arrived: String
        var lookups: [[String]]
        var path: [String]
        var verdict: String
        var reason: String?
        var nextHop: String?
        var nextDroplet: String?
        var deliveredTo: String?
        var note: String?
    }

    struct End: Codable {
        var verdict: String          // delivered, dropped, to-host, lost
        var droplet: String?
        var endpoint: String?
        var ip: String?
        var reason: String?
    }

    struct Report: Codable {
        var source: String
        var vpc: String
        var vni: UInt32
        var destination: String
        var flow: String
        var hops: [Hop]
        var end: End
        var declared: End?
        var declaredNote: String
        var agree: Bool?
    }

    func run() async throws {
        let (proto, port) = try parsedFlow()
        let report = try await etcd.withStore { store in try await trace(store, proto: proto, port: port) }
        if output == "json" {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            printReport(report)
        }
        if report.agree == false { throw ExitCode(3) }
    }

    func trace(_ store: Store, proto: UInt8, port: UInt16) async throws -> Report {
        guard let src = try await store.get(EndpointSpec.self, source) else { throw CommandFailure(description: "no endpoint \(source)") }
        if let vpc, vpc != src.spec.vpc { throw CommandFailure(description: "\(source) is in VPC \(src.spec.vpc), not \(vpc)") }
        guard let srcIP = src.status?.ip, let srcMAC = src.status?.mac, let srcDroplet = src.status?.droplet ?? src.spec.droplet else {
            throw CommandFailure(description: "\(source) is not provisioned yet (no address or droplet)")
        }
        guard let vpcObject = try await store.get(VpcSpec.self, src.spec.vpc), let vni = vpcObject.status?.vni ?? vpcObject.spec.vni else {
            throw CommandFailure(description: "VPC \(src.spec.vpc) has no VNI yet")
        }
        let endpoints = try await store.list(EndpointSpec.self).objects.filter { $0.spec.vpc == src.spec.vpc }
        let dstIP: IPv4Address
        if let ip = try? IPv4Address(parsing: destination) {
            dstIP = ip
        } else if let e = endpoints.first(where: { $0.name == destination }), let ip = e.status?.ip ?? e.spec.ip {
            dstIP = ip
        } else {
            throw CommandFailure(description: "\(destination) is neither an address nor an endpoint of VPC \(src.spec.vpc)")
        }
        let droplets = try await store.list(DropletSpec.self).objects
        func dropletName(_ ip: String) -> String { droplets.first { "\($0.spec.ip)" == ip }?.name ?? ip }
        func target(_ name: String) throws -> TransitTarget {
            if let testbed {
                let prefix = testbed.lowercased() + "-"
                guard name.hasPrefix(prefix) else { throw CommandFailure(description: "droplet \(name) is not a host of testbed \(testbed)") }
                return .testbed(testbed, host: String(name.dropFirst(prefix.count)))
            }
            guard let d = droplets.first(where: { $0.name == name }) else { throw CommandFailure(description: "no droplet \(name)") }
            return try TransitTarget(parsing: d.spec.transitd, field: "droplet \(name)")
        }
        let endpointName: (UInt32, String) -> String? = { v, ip in v == vni.value ? endpoints.first { "\($0.status?.ip ?? $0.spec.ip.map { $0 } ?? IPv4Address(value: 0))" == ip }?.name : nil }

        // The packet the source sends.
        let dstMAC = endpoints.first { $0.status?.ip == dstIP }?.status?.mac ?? MACAddress(0x0e, 0, 0, 0, 0, 1)
        var frame: [UInt8] = switch proto {
        case 6: Packet.tcpPacket(srcMAC: srcMAC, dstMAC: dstMAC, srcIP: srcIP, dstIP: dstIP, srcPort: sport, dstPort: port, seq: 1, flags: 0x02, payload: [])
        case 17: Packet.udpPacket(srcMAC: srcMAC, dstMAC: dstMAC, srcIP: srcIP, dstIP: dstIP, srcPort: sport, dstPort: port, payload: Array("mizar trace".utf8))
        default: Packet.icmpPacket(srcMAC: srcMAC, dstMAC: dstMAC, srcIP: srcIP, dstIP: dstIP, id: sport, sequence: 1, payload: Array("mizar trace".utf8))
        }

        var hops: [Hop] = []
        var end = End(verdict: "lost", reason: "more than 8 hops")
        var at = srcDroplet
        var fromEndpoint = true
        let tls = try etcd.tls.files()
        for _ in 0..<8 {
            var request = Mizar_Transit_V1_ExplainRequest()
            request.frame = Data(frame)
            if fromEndpoint {
                request.vni = vni.value
                request.endpointIp = "\(srcIP)"
            }
            let reply = try await withTransitClient(try target(at), tls: tls) { try await $0.explain(request) }
            var hop = Hop(droplet: at, dropletIP: reply.droplet, arrived: reply.arrived,
                          lookups: reply.lookups.map { [$0.table, $0.key, $0.entry] }, path: reply.path, verdict: reply.verdict,
                          reason: reply.reason.isEmpty ? nil : reply.reason)
            frame = Array(reply.frame)
            if reply.verdict == "drop" {
                hops.append(hop)
                end = End(verdict: "dropped", droplet: at, reason: reply.reason)
                break
            }
            if !reply.deliveredIp.isEmpty {
                let name = endpointName(reply.deliveredVni, reply.deliveredIp)
                hop.deliveredTo = name ?? "\(reply.deliveredIp) (VNI \(reply.deliveredVni))"
                hops.append(hop)
                end = End(verdict: reply.deliveredVni == vni.value ? "delivered" : "delivered-other-vpc", droplet: at, endpoint: name, ip: reply.deliveredIp)
                break
            }
            if reply.verdict == "pass" {
                hops.append(hop)
                end = End(verdict: "to-host", droplet: at)
                break
            }
            guard !reply.nextHop.isEmpty else {
                hops.append(hop)
                end = End(verdict: "lost", droplet: at, reason: "redirected to interface with no next hop")
                break
            }
            let next = dropletName(reply.nextHop)
            hop.nextHop = reply.nextHop
            hop.nextDroplet = next
            hops.append(hop)
            guard droplets.contains(where: { $0.name == next }) else {
                end = End(verdict: "left", ip: reply.nextHop, reason: "out to \(reply.nextHop), not a droplet")
                break
            }
            at = next
            fromEndpoint = false
        }

        // The same question, answered from the declared objects.
        let (declared, note) = try await declaredEnd(store, vni: vni, srcVPC: vpcObject, dstIP: dstIP, endpoints: endpoints)
        var agree: Bool?
        if let declared {
            agree = declared.verdict == end.verdict && declared.droplet == (end.verdict == "delivered" ? end.droplet : declared.droplet)
                && declared.endpoint == end.endpoint && (declared.reason == nil || declared.reason == end.reason)
            if end.verdict == "dropped", let reason = end.reason, reason.hasPrefix("policy_") {
                agree = nil   // the objects alone do not judge policy here
            }
        }
        let flowText = proto == 1 ? "icmp" : "\(proto == 6 ? "tcp" : "udp")/\(port)"
        return Report(source: source, vpc: src.spec.vpc, vni: vni.value, destination: "\(dstIP)", flow: flowText, hops: hops, end: end,
                      declared: declared, declaredNote: note, agree: agree)
    }

    /// Where the objects say the packet ends: the endpoint at that address in
    /// the source's VPC and its droplet, or the drop an address without one
    /// meets. Policy is not judged here.
    func declaredEnd(_ store: Store, vni: VNI, srcVPC: Vpc, dstIP: IPv4Address, endpoints: [Endpoint]) async throws -> (End?, String) {
        if let e = endpoints.first(where: { $0.status?.ip == dstIP }) {
            guard e.spec.backends == nil else { return (nil, "\(e.name) is a scaled endpoint: its backend is chosen by its bouncers") }
            return (End(verdict: "delivered", droplet: e.status?.droplet ?? e.spec.droplet, endpoint: e.name, ip: "\(dstIP)"),
                    "\(e.name) lives on \(e.status?.droplet ?? e.spec.droplet ?? "?") (its status)")
        }
        let subnets = try await store.list(SubnetSpec.self).objects.filter { $0.spec.vpc == srcVPC.name && $0.spec.cidr.contains(dstIP) }
        if let s = subnets.first {
            return (End(verdict: "dropped", reason: "no_endpoint"),
                    "no endpoint at \(dstIP) in subnet \(s.name): its bouncers [\((s.status?.bouncers ?? []).joined(separator: ", "))] know none")
        }
        if srcVPC.spec.cidr.contains(dstIP) {
            return (nil, "\(dstIP) is in VPC \(srcVPC.name)'s space but in none of its subnets")
        }
        return (nil, "\(dstIP) is outside VPC \(srcVPC.name) (egress)")
    }

    func printReport(_ r: Report) {
        print("trace \(r.source) -> \(r.destination) \(r.flow) in VPC \(r.vpc) (VNI \(r.vni))")
        for (i, h) in r.hops.enumerated() {
            print("")
            print("\(i + 1)  \(h.droplet) (\(h.dropletIP)), \(h.arrived == "endpoint" ? "from \(r.source)'s interface: the agent program" : "from the underlay: the transit program")")
            printTable(["  table", "key", "entry"], h.lookups.map { ["  " + $0[0], $0[1], $0[2]] })
            if !h.path.isEmpty { print("   path: \(h.path.joined(separator: ", "))") }
            if let d = h.deliveredTo {
                print("   -> delivered into \(d)")
            } else if let n = h.nextDroplet {
                print("   -> \(h.verdict == "tx" ? "sent back out" : "encapsulated") to \(h.nextHop ?? "") (\(n))")
            } else if h.verdict == "drop" {
                print("   -> DROPPED: \(h.reason ?? "")")
            } else if h.verdict == "pass" {
                print("   -> to the host's own stack")
            }
        }
        print("")
        switch r.end.verdict {
        case "delivered": print("result: delivered to \(r.end.endpoint ?? r.end.ip ?? "?") on \(r.end.droplet ?? "?") (\(r.hops.count) hops)")
        case "dropped": print("result: DROPPED on \(r.end.droplet ?? "?"): \(r.end.reason ?? "")")
        default: print("result: \(r.end.verdict) \(r.end.reason ?? "")")
        }
        let verdictText = r.agree.map { $0 ? "agrees" : "DISAGREES" } ?? "not compared"
        print("declared: \(r.declaredNote); \(verdictText)")
        if r.agree == false, let d = r.declared {
            print("  the objects say: \(d.verdict) \(d.endpoint ?? "") \(d.droplet.map { "on \($0)" } ?? "") \(d.reason ?? "")")
        }
    }
}
