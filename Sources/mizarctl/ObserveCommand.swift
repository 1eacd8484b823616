// mizarctl observe: the flow and drop stream of every droplet, merged by
// time, named from the declared objects.
import ArgumentParser
import Foundation
import MizarAPI
import MizarCore
import MizarRPC
import MizarStore
import MizarTransitClient
import Synchronization

struct Observe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what the data plane did with packets: every drop, and every packet of chosen VPCs while following.",
        discussion: """
            Reads the flow events each droplet's transitd keeps (the last --flow-events, by default 8192) and, \
            with -f, new ones as they come, from every droplet registered in etcd (or the --target transitds, \
            or the hosts of a --testbed), merged by time. Names (VPC, subnet, endpoint, droplet) come from the \
            declared objects in etcd; without etcd, addresses and VNIs are shown. Drops are always traced; \
            --every-packet with -f also traces every packet of the VPCs asked for, for as long as it follows. \
            Events a droplet could not keep (its events ring was full) or this command read too slowly are \
            shown as "lost".
            """)

    @Option(help: "Only this VPC (its name; needs etcd).") var vpc: String?
    @Option(help: "Only this VPC, by VNI.") var vni: UInt32?
    @Option(help: "Only packets from or to this endpoint (its name; needs etcd); repeatable.") var endpoint: [String] = []
    @Option(help: "Only packets from or to an address inside this CIDR; repeatable.") var cidr: [String] = []
    @Option(help: "dropped or forwarded.") var verdict: String?
    @Option(help: "Only drops for this reason (as mizarctl counters names them); repeatable.") var reason: [String] = []
    @Option(help: "The last N events that match, over all droplets (default 20; 0 with -f).") var last: UInt32?
    @Flag(name: [.customShort("f"), .long], help: "Then follow: new events as they come, until interrupted.") var follow = false
    @Flag(help: "While following, every packet of the VPCs asked for (of every VPC if none), not only drops.") var everyPacket = false
    @Option(name: [.customShort("o"), .long], help: "table, or json: one object per line (an exportable flow log).") var output = "table"
    @Option(name: .shortAndLong, help: "A transitd to read instead of every droplet's (unix:/path or HOST:PORT); repeatable.") var target: [String] = []
    @Option(help: "The hosts of a running testbed instead: NAME (every host) or NAME/HOST.") var testbed: String?
    @Flag(help: "Do not read names from etcd.") var noNames = false
    @OptionGroup var etcd: EtcdOptions

    func validate() throws {
        if let verdict, !["dropped", "forwarded"].contains(verdict) { throw ValidationError("--verdict: \"\(verdict)\" is not dropped or forwarded") }
        if !["table", "json"].contains(output) { throw ValidationError("-o: \"\(output)\" is not table or json") }
        for c in cidr { _ = try CIDR(parsing: c, field: "--cidr") }
        if vpc != nil && vni != nil { throw ValidationError("--vpc and --vni: give one") }
        if everyPacket && !follow { throw ValidationError("--every-packet: only while following (-f)") }
        if noNames && (vpc != nil || !endpoint.isEmpty) { throw ValidationError("--vpc and --endpoint are names: they need etcd (drop --no-names)") }
    }

    func run() async throws {
        let names = try await loadNames()
        var request = Mizar_Transit_V1_WatchFlowsRequest()
        if let vni { request.vnis = [vni] }
        if let vpc {
            guard let n = names?.vpcVNI[vpc] else { throw CommandFailure(description: "--vpc: no VPC \(vpc) with a VNI in etcd") }
            request.vnis = [n]
        }
        request.cidrs = cidr
        for name in endpoint {
            guard let e = names?.endpoints[name] else { throw CommandFailure(description: "--endpoint: no endpoint \(name) with an address in etcd") }
            if !request.vnis.isEmpty && !request.vnis.contains(e.vni) {
                throw CommandFailure(description: "--endpoint: \(name) is not in the VPC asked for")
            }
            request.vnis = Array(Set(request.vnis + [e.vni]))
            request.cidrs.append("\(e.ip)/32")
        }
        request.verdict = verdict ?? ""
        request.reasons = reason
        let targets = try await droplets(names)
        guard !targets.isEmpty else { throw CommandFailure(description: "no droplet to read: none registered in etcd (give --target or --testbed)") }
        let printer = FlowPrinter(names: names, json: output == "json")

        // The last N over all droplets, merged by time.
        let wanted = last ?? (follow ? 0 : 20)
        if wanted > 0 {
            request.last = wanted
            request.follow = false
            var all: [Mizar_Transit_V1_FlowEvent] = []
            var reached = 0
            try await withThrowingTaskGroup(of: [Mizar_Transit_V1_FlowEvent]?.self) { group in
                for t in targets {
                    group.addTask { [request, tls = try etcd.tls.files()] in
                        do {
                            return try await withTransitClient(t.target, tls: tls) { client in
                                try await client.watchFlows(request) { response in
                                    var got: [Mizar_Transit_V1_FlowEvent] = []
                                    for try await e in response.messages { got.append(e) }
                                    return got
                                }
                            }
                        } catch {
                            warn("\(t.name): \(error)")
                            return nil
                        }
                    }
                }
                for try await events in group {
                    guard let events else { continue }
                    reached += 1
                    all += events
                }
            }
            if reached == 0 { throw CommandFailure(description: "no droplet answered") }
            for e in all.sorted(by: { $0.timeNs < $1.timeNs }).suffix(Int(wanted)) { printer.print(e) }
        }
        guard follow else { return }
        request.last = 0
        request.follow = true
        request.everyPacket = everyPacket
        let tls = try etcd.tls.files()
        // Each droplet's events in its order, as they come.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for t in targets {
                group.addTask { [request] in
                    do {
                        try await withTransitClient(t.target, tls: tls) { client in
                            try await client.watchFlows(request, options: .defaults) { response in
                                for try await e in response.messages { printer.print(e) }
                            }
                        }
                    } catch is CancellationError {
                    } catch {
                        warn("\(t.name): \(error)")
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    struct Target: Sendable {
        var name: String
        var target: TransitTarget
    }

    /// Where to read: --target, the testbed's hosts, or every droplet in etcd.
    func droplets(_ names: Names?) async throws -> [Target] {
        if !target.isEmpty { return try target.map { Target(name: $0, target: try TransitTarget(parsing: $0, field: "--target")) } }
        if let testbed {
            let parts = testbed.split(separator: "/").map(String.init)
            let hosts = parts.count == 2 ? [parts[1]] : (1...).lazy.map { "h\($0)" }.prefix { access(Self.socket(parts[0], $0), F_OK) == 0 }.map { $0 }
            guard !hosts.isEmpty, hosts.allSatisfy({ access(Self.socket(parts[0], $0), F_OK) == 0 }) else {
                throw ValidationError("--testbed: no running testbed \(testbed)")
            }
            return hosts.map { Target(name: "\(parts[0])-\($0)", target: .testbed(parts[0], host: $0)) }
        }
        guard let names else { throw CommandFailure(description: "without etcd, give --target or --testbed") }
        return try names.droplets.map { Target(name: $0.name, target: try TransitTarget(parsing: $0.transitd, field: "droplet \($0.name)")) }
    }

    static func socket(_ testbed: String, _ host: String) -> String {
        if case .unix(let path) = TransitTarget.testbed(testbed, host: host) { return path }
        return ""
    }

    /// The declared objects' names, or nil without etcd (a warning, unless
    /// a name was asked for).
    func loadNames() async throws -> Names? {
        if noNames { return nil }
        let etcd = self.etcd
        let loading = Task { try await etcd.withStore { try await Names.load($0) } }
        let timeout = Task {
            try await Task.sleep(for: .seconds(5))
            loading.cancel()
        }
        defer { timeout.cancel() }
        do {
            return try await loading.value
        } catch {
            if vpc != nil || !endpoint.isEmpty || (target.isEmpty && testbed == nil) {
                throw CommandFailure(description: "etcd at \(etcd.etcd): \(error)")
            }
            warn("no names: etcd at \(etcd.etcd) did not answer (\(error)); showing addresses")
            return nil
        }
    }
}

func warn(_ text: String) {
    FileHandle.standardError.write(Data("mizarctl: \(text)\n".utf8))
}

/// What the declared objects call VNIs, addresses and droplets.
struct Names: Sendable {
    var vpcName: [UInt32: String] = [:]
    var vpcVNI: [String: UInt32] = [:]
    var subnets: [(vni: UInt32, cidr: CIDR, name: String)] = []
    var endpointName: [String: String] = [:]   // "VNI/IP"
    var endpoints: [String: (vni: UInt32, ip: IPv4Address)] = [:]
    var dropletName: [String: String] = [:]     // by IP
    var droplets: [(name: String, transitd: String)] = []

    static func load(_ store: Store) async throws -> Names {
        var n = Names()
        for v in try await store.list(VpcSpec.self).objects {
            guard let vni = v.status?.vni ?? v.spec.vni else { continue }
            n.vpcName[vni.value] = v.metadata.name
            n.vpcVNI[v.metadata.name] = vni.value
        }
        for s in try await store.list(SubnetSpec.self).objects {
            guard let vni = n.vpcVNI[s.spec.vpc] else { continue }
            n.subnets.append((vni, s.spec.cidr, s.metadata.name))
        }
        for e in try await store.list(EndpointSpec.self).objects {
            guard let vni = n.vpcVNI[e.spec.vpc], let ip = e.status?.ip ?? e.spec.ip else { continue }
            n.endpointName["\(vni)/\(ip)"] = e.metadata.name
            n.endpoints[e.metadata.name] = (vni, ip)
        }
        for d in try await store.list(DropletSpec.self).objects {
            n.dropletName["\(d.spec.ip)"] = d.metadata.name
            n.droplets.append((d.metadata.name, d.spec.transitd))
        }
        return n
    }

    func subnet(_ vni: UInt32, _ ip: String) -> String? {
        guard let a = try? IPv4Address(parsing: ip) else { return nil }
        return subnets.filter { $0.vni == vni && $0.cidr.contains(a) }.max { $0.cidr.prefixLength < $1.cidr.prefixLength }?.name
    }
}

/// Prints events, one line each, whole lines at a time.
final class FlowPrinter: Sendable {
    let names: Names?
    let json: Bool
    private let lock = Mutex(())

    init(names: Names?, json: Bool) {
        self.names = names
        self.json = json
    }

    struct Side: Codable {
        var ip: String
        var port: UInt32?
        var endpoint: String?
        var subnet: String?
    }

    struct Record: Codable {
        var time: String
        var droplet: String
        var dropletIP: String
        var vni: UInt32?
        var vpc: String?
        var source: Side?
        var destination: Side?
        var protocolName: String?
        var tcpFlags: String?
        var verdict: String?
        var action: String?
        var reason: String?
        var observationPoint: String?
        var nextHop: String?
        var length: UInt32?
        var lost: UInt64?

        enum CodingKeys: String, CodingKey {
            case time, droplet, vni, vpc, source, destination, verdict, action, reason, length, lost
            case dropletIP = "droplet_ip", protocolName = "protocol", tcpFlags = "tcp_flags", observationPoint = "observation_point", nextHop = "next_hop"
        }
    }

    static func protocolName(_ p: UInt32) -> String {
        switch p {
        case 1: "ICMP"
        case 6: "TCP"
        case 17: "UDP"
        case 132: "SCTP"
        case 0: ""
        default: "proto \(p)"
        }
    }

    static func flags(_ f: UInt32) -> String {
        let names: [(UInt32, String)] = [(0x02, "SYN"), (0x10, "ACK"), (0x01, "FIN"), (0x04, "RST"), (0x08, "PSH"), (0x20, "URG")]
        return names.filter { f & $0.0 != 0 }.map(\.1).joined(separator: ",")
    }

    static func time(_ ns: UInt64) -> String {
        let seconds = time_t(ns / 1_000_000_000)
        var tm = tm()
        var s = seconds
        gmtime_r(&s, &tm)
        let nanos = ns % 1_000_000_000
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%09luZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, UInt(nanos))
    }

    func record(_ e: Mizar_Transit_V1_FlowEvent) -> Record {
        let droplet = names?.dropletName[e.droplet] ?? e.droplet
        if e.verdict.isEmpty {
            return Record(time: Self.time(e.timeNs), droplet: droplet, dropletIP: e.droplet, lost: e.lost)
        }
        let ported = e.protocol == 6 || e.protocol == 17 || e.protocol == 132
        func side(_ ip: String, _ port: UInt32) -> Side {
            Side(ip: ip, port: ported ? port : nil, endpoint: names?.endpointName["\(e.vni)/\(ip)"], subnet: names?.subnet(e.vni, ip))
        }
        return Record(time: Self.time(e.timeNs), droplet: droplet, dropletIP: e.droplet, vni: e.vni, vpc: names?.vpcName[e.vni],
                      source: side(e.src, e.sport), destination: side(e.dst, e.dport),
                      protocolName: Self.protocolName(e.protocol).isEmpty ? nil : Self.protocolName(e.protocol),
                      tcpFlags: e.protocol == 6 ? Self.flags(e.tcpFlags) : nil,
                      verdict: e.verdict == "drop" ? "dropped" : "forwarded", action: e.verdict,
                      reason: e.reason.isEmpty ? nil : e.reason, observationPoint: "\(e.program)/\(e.hook)",
                      nextHop: e.nextHop.isEmpty ? nil : e.nextHop, length: e.length, lost: e.lost > 0 ? e.lost : nil)
    }

    func line(_ e: Mizar_Transit_V1_FlowEvent) -> String {
        let r = record(e)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return (try? encoder.encode(r)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        }
        let time = String(r.time.dropFirst(11).prefix(12))
        guard let src = r.source, let dst = r.destination else {
            return "\(time)  \(r.droplet)  LOST \(r.lost ?? 0) events"
        }
        func text(_ s: Side) -> String {
            let at = s.port.map { "\(s.ip):\($0)" } ?? s.ip
            return s.endpoint.map { "\(at) (\($0))" } ?? at
        }
        let vpc = r.vpc ?? (r.vni == 0 ? "-" : "vni \(r.vni ?? 0)")
        let proto = [r.protocolName ?? (e.protocol == 0 ? "" : "proto \(e.protocol)"), r.tcpFlags ?? ""].filter { !$0.isEmpty }.joined(separator: " ")
        let outcome = r.verdict == "dropped" ? "DROPPED \(r.reason ?? "")" : "FORWARDED \(r.action ?? "")" + (r.nextHop.map { " to \($0)" } ?? "")
        let lost = r.lost.map { "  (\($0) lost before)" } ?? ""
        return "\(time)  \(r.droplet)  \(vpc)  \(text(src)) -> \(text(dst))  \(proto)  \(outcome)  \(r.observationPoint ?? "")\(lost)"
    }

    func print(_ e: Mizar_Transit_V1_FlowEvent) {
        let text = line(e) + "\n"
        lock.withLock { _ in
            FileHandle.standardOutput.write(Data(text.utf8))
        }
    }
}
