import Foundation
import Glibc
import MizarAPI
import MizarCore
@testable import MizarOperator
import MizarRPC
import MizarStore
import MizarSystem
import MizarTestbed
import MizarTransit
import MizarTransitClient
import Synchronization
import Testing

/// Every frame one namespace's interfaces see (an AF_PACKET socket), while
/// it runs: the proof that a tenant never receives another's packets.
final class Capture: Sendable {
    let fd: Int32
    let frames = Mutex<[[UInt8]]>([])
    let stopped = Mutex(false)
    let done = Mutex(false)

    init(netns: String) throws {
        fd = try NetworkNamespace(path: netns).socket(domain: AF_PACKET, type: Int32(SOCK_RAW.rawValue),
                                                       protocol: Int32(UInt16(0x0003).bigEndian)) // ETH_P_ALL
        Sock.timeout(fd, 0.05)
        Thread.detachNewThread { [self] in
            var buffer = [UInt8](repeating: 0, count: 65536)
            while !stopped.withLock({ $0 }) {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n > 0 { let f = Array(buffer.prefix(n)); frames.withLock { $0.append(f) } }
            }
            done.withLock { $0 = true }
        }
    }

    /// Stops and returns what was seen.
    func stop() -> [[UInt8]] {
        stopped.withLock { $0 = true }
        while !done.withLock({ $0 }) { usleep(10_000) }
        close(fd)
        return frames.withLock { $0 }
    }

    static func contains(_ frames: [[UInt8]], _ token: String) -> Bool {
        let t = Array(token.utf8)
        return frames.contains { f in f.count >= t.count && (0...(f.count - t.count)).contains { Array(f[$0..<($0 + t.count)]) == t } }
    }
}

extension Sock {
    /// One ICMP echo from `netns` with identifier `id` (a ping socket bound
    /// to it) and `payload`; the payload of the reply, or nil.
    static func ping(from netns: String, _ ip: IPv4Address, id: UInt16, payload: String) throws -> String? {
        _ = runCapturing(["nsenter", "--net=\(netns)", "sysctl", "-q", "-w", "net.ipv4.ping_group_range=0 0"])
        let fd = try NetworkNamespace(path: netns).socket(domain: AF_INET, type: Int32(SOCK_DGRAM.rawValue), protocol: Int32(IPPROTO_ICMP))
        defer { close(fd) }
        timeout(fd, 1.0)
        guard bind(fd, .zero, id) else { return nil }
        let packet: [UInt8] = [8, 0, 0, 0, UInt8(id >> 8), UInt8(id & 0xff), 0, 1] + Array(payload.utf8)
        var to = address(ip, 0)
        _ = withUnsafePointer(to: &to) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                packet.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, sa, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n > 8, buffer[0] == 0 else { return nil }
        return String(decoding: buffer[8..<n], as: UTF8.self)
    }
}

/// One tenant's exchange with the server from fixed ports: the peer the
/// server saw for TCP and UDP, and whether every answer was this tenant's own.
struct EgressSeen: Sendable {
    var tcpPeer: String?
    var udpPeer: String?
    var tcpOK = false
    var udpOK = false
    var pingOK = false
    var fd: Int32?

    static func talk(_ netns: String, server: IPv4Address, token: String) throws -> EgressSeen {
        var seen = EgressSeen()
        if let fd = try Sock.dial(from: netns, server, 9000, localPort: 40000) {
            seen.fd = fd
            let answer = Sock.ask(fd, "t-\(token)")
            let parts = answer?.split(separator: "|").map(String.init) ?? []
            seen.tcpPeer = parts.count == 3 ? parts[1] : nil
            seen.tcpOK = parts.count == 3 && parts[0] == "srv" && parts[2] == "t-\(token)"
        }
        if let r = try Sock.udpAsk(from: netns, server, 9001, "u-\(token)", localPort: 40001) {
            let parts = r.0.split(separator: "|").map(String.init)
            seen.udpPeer = parts.count == 3 ? parts[1] : nil
            seen.udpOK = r.1 == "\(server):9001" && parts.count == 3 && parts[2] == "u-\(token)"
        }
        seen.pingOK = try Sock.ping(from: netns, server, id: 4242, payload: "p-\(token)") == "p-\(token)"
        return seen
    }

    /// Both tenants at once, each capturing what reaches it.
    static func together(_ bed: Testbed, _ a: String, _ b: String, server: IPv4Address,
                         tokens: (String, String)) async throws -> (EgressSeen, EgressSeen, [[UInt8]], [[UInt8]]) {
        let nsA = bed.endpointNetns(a), nsB = bed.endpointNetns(b)
        let capA = try Capture(netns: nsA), capB = try Capture(netns: nsB)
        let ta = Task { try await onOwnThread { try talk(nsA, server: server, token: tokens.0) } }
        let tb = Task { try await onOwnThread { try talk(nsB, server: server, token: tokens.1) } }
        let x = try await ta.value
        let y = try await tb.value
        usleep(200_000)
        return (x, y, capA.stop(), capB.stop())
    }
}

extension OperatorTests {
    /// Runs `body`, then, whatever happened, deletes the VPCs (their subnets
    /// and endpoints go with them) and the endpoints' namespaces, and waits
    /// until every droplet is Ready: the next test starts from a clean plane.
    static func cleanly(_ plane: Plane, _ store: Store, vpcs: [String], endpoints: [String],
                        _ body: () async throws -> Void) async throws {
        var failure: (any Error)?
        do { try await body() } catch { failure = error }
        for v in vpcs { _ = try? await store.delete(VpcSpec.self, v) }
        let gone = try await eventually(30) {
            try await store.list(VpcSpec.self).objects.allSatisfy { !vpcs.contains($0.name) }
        }
        for e in endpoints { try? plane.bed.removeEndpointNetns(e) }
        #expect(gone, "the test's VPCs were not deleted")
        #expect(try await plane.dropletsReady(store), "droplets not Ready after the test")
        if let failure { throw failure }
    }

    static func drops(_ host: Testbed.Host) async throws -> [String: UInt64] {
        let c = try await withTransitClient(.unix(host.socket)) { try await $0.getCounters(.init()) }
        return Dictionary(uniqueKeysWithValues: c.drops.map { ($0.name, $0.packets) })
    }

    static func snat(_ host: Testbed.Host) async throws -> Mizar_Transit_V1_SNATList {
        try await withTransitClient(.unix(host.socket)) { try await $0.listSNAT(.init()) }
    }

    @Test("egress: two VPCs with the same addresses and ports reach an underlay server through SNAT, each gets only its own replies; unsolicited, private, disabled and exhausted are dropped by name; a TCP flow survives kill -9 of transitd; a deleted endpoint's stale replies never reach the next tenant at its address")
    func egressSNAT() async throws {
        let plane = try await Plane.get()
        let bed = plane.bed
        try await plane.withOperator { store, op in
            #expect(try await plane.dropletsReady(store))
            let object = objectYAML
            try await plane.apply([
                object("Vpc", "egred", "cidr: 10.0.0.0/16, egress: {mode: SNAT}"),
                object("Subnet", "egred-1", "vpc: egred, cidr: 10.0.1.0/24"),
                object("Vpc", "egblue", "cidr: 10.0.0.0/16, egress: {mode: SNAT}"),
                object("Subnet", "egblue-1", "vpc: egblue, cidr: 10.0.1.0/24"),
                object("Vpc", "egshut", "cidr: 10.0.0.0/16"),
                object("Subnet", "egshut-1", "vpc: egshut, cidr: 10.0.1.0/24"),
                object("Vpc", "eggreen", "cidr: 10.0.0.0/16, egress: {mode: SNAT}"),
                object("Subnet", "eggreen-1", "vpc: eggreen, cidr: 10.0.1.0/24"),
            ].joined(separator: "---\n"))
            try await Self.cleanly(plane, store, vpcs: ["egred", "egblue", "egshut", "eggreen"],
                                   endpoints: ["xr1", "xb1", "xr2", "xb2", "xr3", "xs1", "xg1"]) {
                // The same address in each VPC: first on one droplet, then on two.
                let endpoints: [(name: String, vpc: String, host: String, ip: String)] = [
                    ("xr1", "egred", "h1", "10.0.1.50"), ("xb1", "egblue", "h1", "10.0.1.50"),
                    ("xr2", "egred", "h2", "10.0.1.60"), ("xb2", "egblue", "h3", "10.0.1.60"),
                    ("xr3", "egred", "h2", "10.0.1.70"), ("xs1", "egshut", "h1", "10.0.1.50"),
                ]
                var docs: [String] = []
                for e in endpoints {
                    let netns = try bed.addEndpointNetns(e.name)
                    docs.append(object("Endpoint", e.name, "vpc: \(e.vpc), subnet: \(e.vpc)-1, droplet: \(plane.droplet(e.host)), netns: \(netns), ip: \(e.ip)"))
                }
                try await plane.apply(docs.joined(separator: "---\n"))
                let provisioned = try await eventually(30) {
                    let all = try await store.list(EndpointSpec.self).objects
                    return endpoints.allSatisfy { e in all.contains { $0.name == e.name && $0.status?.common.phase == .provisioned } }
                }
                try #require(provisioned, "endpoints not provisioned")
                func ns(_ name: String) -> String { bed.endpointNetns(name) }
                func host(_ name: String) throws -> Testbed.Host {
                    guard let h = bed.host(name) else { throw TestbedError("no host \(name)") }
                    return h
                }

                // The server on the underlay: a namespace of the test's own.
                let serverIP = IPv4Address(172, 30, bed.underlayNet, 200)
                let serverMAC = try MACAddress(parsing: "02:4d:00:00:00:c8")
                // (It waits for its link: on a thread of its own, not the test pool's.)
                let serverNetns = try await onOwnThread { try bed.addStranger("egsrv", ip: serverIP, mac: serverMAC) }
                defer { _ = try? NetworkNamespace.delete(path: serverNetns) }
                let server = try IdentityServer(name: "srv", netns: serverNetns, tcpPort: 9000, udpPort: 9001, showPeer: true)
                defer { server.stop() }
                let h1 = try host("h1"), h2 = try host("h2"), h3 = try host("h3")

                func together(_ a: String, _ b: String, tokens: (String, String)) async throws -> (EgressSeen, EgressSeen, [[UInt8]], [[UInt8]]) {
                    try await EgressSeen.together(bed, a, b, server: serverIP, tokens: tokens)
                }

                // 1. Same address, same ports, one droplet.
                let (red, blue, redFrames, blueFrames) = try await together("xr1", "xb1", tokens: ("red-7f3a", "blue-91c2"))
                defer { for fd in [red.fd, blue.fd].compactMap({ $0 }) { close(fd) } }
                for (tenant, s) in [("red", red), ("blue", blue)] {
                    #expect(s.tcpOK && s.udpOK && s.pingOK, "\(tenant) on h1: tcp \(s.tcpOK) udp \(s.udpOK) ping \(s.pingOK)")
                    #expect(s.tcpPeer?.hasPrefix("\(h1.ip):") == true && s.udpPeer?.hasPrefix("\(h1.ip):") == true,
                            "\(tenant) seen from \(s.tcpPeer ?? "-") / \(s.udpPeer ?? "-"), not from h1's address")
                }
                #expect(red.tcpPeer != blue.tcpPeer && red.udpPeer != blue.udpPeer,
                        "the server saw red as \(red.tcpPeer ?? "-")/\(red.udpPeer ?? "-") and blue as \(blue.tcpPeer ?? "-")/\(blue.udpPeer ?? "-")")
                print("egress test: on one droplet the server saw red as \(red.tcpPeer ?? "-") (TCP), \(red.udpPeer ?? "-") (UDP); blue as \(blue.tcpPeer ?? "-"), \(blue.udpPeer ?? "-")")
                #expect(Capture.contains(redFrames, "t-red-7f3a") && Capture.contains(blueFrames, "t-blue-91c2"), "the captures see their own tenant's traffic")
                for t in ["t-blue-91c2", "u-blue-91c2", "p-blue-91c2"] { #expect(!Capture.contains(redFrames, t), "red's endpoint saw \(t)") }
                for t in ["t-red-7f3a", "u-red-7f3a", "p-red-7f3a"] { #expect(!Capture.contains(blueFrames, t), "blue's endpoint saw \(t)") }
                // ICMP: the same identifier, two translations.
                let table1 = try await Self.snat(h1)
                let pings = table1.entries.filter { $0.protocol == "ICMP" && $0.endpointPort == 4242 && $0.endpoint == "10.0.1.50" }
                #expect(pings.count == 2 && Set(pings.map(\.vni)).count == 2 && Set(pings.map(\.port)).count == 2,
                        "two tenants' pings with id 4242: \(pings.map { "vni \($0.vni) -> \($0.port)" })")

                // 2. Same address, same ports, two droplets.
                let (red2, blue2, red2Frames, blue2Frames) = try await together("xr2", "xb2", tokens: ("red-2b8d", "blue-6e01"))
                for fd in [red2.fd, blue2.fd].compactMap({ $0 }) { close(fd) }
                #expect(red2.tcpOK && red2.udpOK && red2.pingOK && blue2.tcpOK && blue2.udpOK && blue2.pingOK, "on two droplets: \(red2) \(blue2)")
                #expect(red2.tcpPeer?.hasPrefix("\(h2.ip):") == true && blue2.tcpPeer?.hasPrefix("\(h3.ip):") == true,
                        "red from \(red2.tcpPeer ?? "-"), blue from \(blue2.tcpPeer ?? "-")")
                for t in ["t-blue-6e01", "u-blue-6e01", "p-blue-6e01"] { #expect(!Capture.contains(red2Frames, t), "red's endpoint saw \(t)") }
                for t in ["t-red-2b8d", "u-red-2b8d", "p-red-2b8d"] { #expect(!Capture.contains(blue2Frames, t), "blue's endpoint saw \(t)") }

                // 3. In the VPC: never translated.
                let peer = try IdentityServer(name: "xr3", netns: ns("xr3"), tcpPort: 9100, udpPort: 9101, showPeer: true)
                defer { peer.stop() }
                let er3IP = try IPv4Address(parsing: "10.0.1.70")
                let inside = try #require(try Sock.dial(from: ns("xr1"), er3IP, 9100, localPort: 40100), "xr1 cannot reach xr3")
                #expect(Sock.ask(inside, "hello")?.hasPrefix("xr3|10.0.1.50:40100|") == true, "in-VPC traffic was translated")
                close(inside)

                // 4. Egress off: a named drop, on the endpoint's own droplet.
                let shutBefore = try await Self.drops(h1)["egress_disabled"] ?? 0
                #expect(try Sock.dial(from: ns("xs1"), serverIP, 9000, timeout: 0.5) == nil, "a VPC without egress reached the server")
                #expect(try await Self.drops(h1)["egress_disabled"] ?? 0 > shutBefore, "no egress_disabled drop counted")

                // 5. From outside: unsolicited packets to the range are dropped and
                // counted; the endpoints' private address is unreachable.
                let used = Set(table1.entries.map(\.port))
                let probes = (61_000...61_100).filter { !used.contains(UInt32($0)) }.prefix(10)
                let unsolicitedBefore = try await Self.drops(h1)["snat_no_mapping"] ?? 0
                for port in probes { try Traffic.sendUDP(from: serverNetns, to: h1.ip, port: UInt16(port), payload: Array("knock".utf8)) }
                #expect(try await eventually(2) { (try await Self.drops(h1)["snat_no_mapping"] ?? 0) >= unsolicitedBefore + UInt64(probes.count) },
                        "unsolicited datagrams to the SNAT range not dropped as snat_no_mapping")
                _ = runCapturing(["nsenter", "--net=\(serverNetns)", "ip", "route", "replace", "10.0.1.0/24", "via", "\(h1.ip)"])
                let privCapture = try Capture(netns: ns("xr1"))
                #expect(Traffic.ping(from: serverNetns, try IPv4Address(parsing: "10.0.1.50"), count: 2, interval: 0.1, wait: 0.3).received == 0,
                        "an endpoint's private address answered from the underlay")
                #expect(try Sock.dial(from: serverNetns, try IPv4Address(parsing: "10.0.1.50"), 9100, timeout: 0.5) == nil)
                let privFrames = privCapture.stop()
                #expect(!privFrames.contains { $0.count >= 34 && Array($0[26..<30]) == serverIP.bytes }, "a packet from the underlay server reached xr1")

                // 6. kill -9 of transitd with a TCP flow through SNAT open: the
                // flow goes on while it is down and after it is back.
                let flow = try #require(red.fd, "red's TCP connection")
                let pid = try #require(bed.pid(of: h1))
                kill(pid, SIGKILL)
                reap(pid)
                #expect(Sock.ask(flow, "while-down")?.hasSuffix("|while-down") == true, "the flow stopped when transitd died")
                try bed.restart(h1, options: plane.options)
                #expect(Sock.ask(flow, "after-restart")?.hasSuffix("|after-restart") == true, "the flow did not survive transitd's restart")
                let table2 = try await Self.snat(h1)
                #expect(table2.entries.contains { $0.protocol == "TCP" && $0.endpointPort == 40000 && "\(h1.ip):\($0.port)" == red.tcpPeer },
                        "the flow's translation is gone after the restart")

                // 7. A range of two ports: the third flow to the same server and
                // port is a named drop; another server port still has room.
                let pid3 = try #require(bed.pid(of: h3))
                kill(pid3, SIGKILL)
                reap(pid3)
                var small = plane.options
                small.extraArguments += ["--snat-ports", "61000-61001"]
                try bed.restart(h3, options: small)
                defer {
                    if let p = bed.pid(of: h3) { kill(p, SIGKILL); reap(p) }
                    try? bed.restart(h3, options: plane.options)
                }
                let exhaustedBefore = try await Self.drops(h3)["snat_ports_exhausted"] ?? 0
                var open: [Int32] = []
                defer { for fd in open { close(fd) } }
                for local in UInt16(41_001)...41_002 {
                    if let fd = try Sock.dial(from: ns("xb2"), serverIP, 9000, localPort: local) { open.append(fd) }
                }
                #expect(open.count == 2, "two flows fit two ports")
                #expect(try Sock.dial(from: ns("xb2"), serverIP, 9000, localPort: 41_003, timeout: 0.5) == nil, "a third flow got a port")
                #expect(try await Self.drops(h3)["snat_ports_exhausted"] ?? 0 > exhaustedBefore, "no snat_ports_exhausted drop counted")
                #expect(try Sock.udpAsk(from: ns("xb2"), serverIP, 9001, "other-port")?.0.hasSuffix("|other-port") == true,
                        "another remote port had no room")
                for fd in open { #expect(Sock.ask(fd, "still")?.hasSuffix("|still") == true, "an admitted flow broke") }

                // 8. xr2 (red, 10.0.1.60 on h2) is deleted and another tenant's
                // endpoint made at its address on that droplet: replies still
                // on their way to xr2's translations are dropped, never
                // delivered to the newcomer.
                let stalePorts = [red2.tcpPeer, red2.udpPeer].compactMap { $0?.split(separator: ":").last.flatMap { UInt16($0) } }
                #expect(stalePorts.count == 2, "xr2's translations: \(red2)")
                _ = try await store.delete(EndpointSpec.self, "xr2")
                #expect(try await eventually(10) { try await store.get(EndpointSpec.self, "xr2") == nil })
                let xg1 = try bed.addEndpointNetns("xg1")
                try await plane.apply(object("Endpoint", "xg1", "vpc: eggreen, subnet: eggreen-1, droplet: \(plane.droplet("h2")), netns: \(xg1), ip: 10.0.1.60"))
                #expect(try await eventually(15) { try await store.get(EndpointSpec.self, "xg1")?.status?.common.phase == .provisioned })
                let staleBefore = try await Self.drops(h2)["snat_no_mapping"] ?? 0
                let newcomer = try Capture(netns: ns("xg1"))
                for port in stalePorts {
                    for i in 0..<5 { try Traffic.sendUDP(from: serverNetns, to: h2.ip, port: port, payload: Array("stale-\(i)".utf8)) }
                }
                #expect(try Sock.dial(from: serverNetns, h2.ip, stalePorts[0], timeout: 0.5) == nil, "a connection to xr2's old port was answered")
                let green = try EgressSeen.talk(ns("xg1"), server: serverIP, token: "green-44d0")
                if let fd = green.fd { close(fd) }
                let newcomerFrames = newcomer.stop()
                #expect(!Capture.contains(newcomerFrames, "stale-"), "a stale reply reached the new tenant at xr2's address")
                #expect(green.tcpOK && green.udpOK && green.pingOK, "the new tenant's own egress: \(green)")
                #expect(try await Self.drops(h2)["snat_no_mapping"] ?? 0 >= staleBefore + 10, "stale replies not dropped as snat_no_mapping")
            }
        }
    }
}

extension OperatorTests {
    @Test("host access: the host's TCP, HTTP and ping probes reach each local endpoint; endpoints cannot open connections to their host; of two local endpoints with one address the first made is reached, the other after it goes")
    func hostAccess() async throws {
        let plane = try await Plane.get()
        let bed = plane.bed
        try await plane.withOperator { store, op in
            #expect(try await plane.dropletsReady(store))
            let object = objectYAML
            try await plane.apply([
                object("Vpc", "hared", "cidr: 10.0.0.0/16"), object("Subnet", "hared-1", "vpc: hared, cidr: 10.0.1.0/24"),
                object("Vpc", "hablue", "cidr: 10.0.0.0/16"), object("Subnet", "hablue-1", "vpc: hablue, cidr: 10.0.1.0/24"),
            ].joined(separator: "---\n"))
            try await Self.cleanly(plane, store, vpcs: ["hared", "hablue"], endpoints: ["ha1", "ha2", "ha3"]) {
                #expect(try await eventually(15) {
                    try await store.list(SubnetSpec.self).objects.filter { $0.spec.vpc.hasPrefix("ha") }
                        .allSatisfy { $0.status?.common.phase == .provisioned }
                })
                // ha1 and ha2: one address in two VPCs on one host, ha1 first.
                let endpoints: [(name: String, vpc: String, ip: String)] = [
                    ("ha1", "hared", "10.0.1.80"), ("ha2", "hablue", "10.0.1.80"), ("ha3", "hared", "10.0.1.81"),
                ]
                for e in endpoints {
                    let netns = try bed.addEndpointNetns(e.name)
                    try await plane.apply(object("Endpoint", e.name, "vpc: \(e.vpc), subnet: \(e.vpc)-1, droplet: \(plane.droplet("h1")), netns: \(netns), ip: \(e.ip)"))
                    #expect(try await eventually(15) { try await store.get(EndpointSpec.self, e.name)?.status?.common.phase == .provisioned })
                }
                let h1 = try #require(bed.host("h1"))
                let servers = try endpoints.map { try IdentityServer(name: $0.name, netns: bed.endpointNetns($0.name), tcpPort: 8080, udpPort: 8081) }
                defer { for s in servers { s.stop() } }

                /// What a kubelet does: TCP connect, an HTTP request, a ping.
                func probe(_ ip: String) throws -> (tcp: String?, ping: Int) {
                    let address = try IPv4Address(parsing: ip)
                    var answer: String?
                    if let fd = try Sock.dial(from: h1.netns, address, 8080) {
                        answer = Sock.ask(fd, "GET /healthz HTTP/1.1\r\nHost: \(ip)\r\n\r\n")
                        close(fd)
                    }
                    return (answer, Traffic.ping(from: h1.netns, address, count: 2, interval: 0.1, wait: 0.5).received)
                }
                let first = try probe("10.0.1.80"), other = try probe("10.0.1.81")
                #expect(first.tcp?.hasPrefix("ha1|GET /healthz HTTP/1.1") == true && first.ping == 2, "probe of 10.0.1.80: \(first)")
                #expect(other.tcp?.hasPrefix("ha3|GET /healthz") == true && other.ping == 2, "probe of 10.0.1.81: \(other)")

                // An endpoint's own connections to its host are refused: to a
                // port the host listens on, and to one it does not.
                let hostListener = try IdentityServer(name: "host", netns: h1.netns, tcpPort: 7999, udpPort: 7998)
                defer { hostListener.stop() }
                let deniedBefore = try await Self.drops(h1)["host_access_denied"] ?? 0
                for e in ["ha1", "ha3"] {
                    #expect(try Sock.dial(from: bed.endpointNetns(e), h1.ip, 7999, timeout: 0.5) == nil, "\(e) connected to its host")
                    #expect(try Sock.udpAsk(from: bed.endpointNetns(e), h1.ip, 7998, "hello") == nil, "\(e)'s datagram reached its host")
                    #expect(Traffic.ping(from: bed.endpointNetns(e), h1.ip, count: 1, wait: 0.3).received == 0, "\(e) pinged its host")
                }
                #expect(try await Self.drops(h1)["host_access_denied"] ?? 0 >= deniedBefore + 6, "refusals not counted as host_access_denied")

                // describe says who the host reaches.
                func describe(_ name: String) async throws -> String {
                    let argv = [siblingExecutable("mizarctl"), "describe", "endpoint", name, "--etcd", plane.etcd.endpoint, "--root", plane.root] + plane.tlsFlags
                    return try await onOwnThread { runCapturing(argv) }.output
                }
                let d1 = try await describe("ha1"), d2 = try await describe("ha2")
                #expect(d1.contains("host access: yes") && d1.contains("egress: none"), "\(d1)")
                #expect(d2.contains("host access: no (the endpoint of VNI"), "\(d2)")

                // ha1 goes: the host's route is ha2's now.
                _ = try await store.delete(EndpointSpec.self, "ha1")
                #expect(try await eventually(10) { try await store.get(EndpointSpec.self, "ha1") == nil })
                let handed = try await eventually(5) { try probe("10.0.1.80").tcp?.hasPrefix("ha2|") == true }
                #expect(handed, "the host does not reach ha2 after ha1 went")
                #expect(try await describe("ha2").contains("host access: yes"))
            }
        }
    }
}
