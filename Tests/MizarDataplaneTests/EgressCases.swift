import CMizarABI
import Glibc
import MizarCore
@testable import MizarDataplane
import MizarPacket
import MizarTestbed
import Testing

/// Rows for egress through SNAT: an endpoint's flow out of its VPC
/// translated to the droplet's address on the way out (agent), its replies
/// translated back on the way in (transit), and every drop on either way.
/// Output bytes are packets built from scratch with the translated fields,
/// so every checksum (IPv4, TCP, UDP, ICMP) is checked.
///
/// The droplet interface of the test (a veth in the suite's own network
/// namespace) gets H1's address and MAC, a server on its link with a
/// permanent neighbour entry, and a route through a gateway whose MAC is
/// not known: the programs' FIB lookups find those. The endpoints' veths
/// forward, as transitd makes them.
enum EgressCases {
    static let server = HostAddress(ip: T.ip("192.168.50.99"), mac: T.mac("02:00:00:00:00:99"))
    /// Behind 192.168.50.254, whose MAC nobody resolved.
    static let far = T.ip("198.51.100.7")
    /// Under an unreachable route.
    static let nowhere = T.ip("203.0.113.5")
    static let vpcCIDR = T.cidr("10.0.0.0/16")
    static let range = DataplaneSettings.defaultSNATPorts

    private static let underlay: Result<Void, any Error> = Result {
        let env = try TestEnvironment.get()
        func name(_ ifindex: UInt32) throws -> String {
            var name = [CChar](repeating: 0, count: Int(IF_NAMESIZE))
            guard if_indextoname(ifindex, &name) != nil else { throw SetupError(what: "no interface \(ifindex)") }
            return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        let dev = try name(env.ifs.droplet)
        let endpoints = try [env.ifs.a, env.ifs.b, env.ifs.c].map(name)
        // The kernel's FIB lookup for a program answers only for an arrival
        // interface that forwards (transitd turns it on for endpoint veths
        // likewise).
        let forwarding = endpoints.map { ["sysctl", "-q", "-w", "net.ipv4.conf.\($0).forwarding=1"] }
        for argv in forwarding + [
            ["ip", "link", "set", "dev", dev, "address", "\(T.h1.mac)"],
            ["ip", "link", "set", "dev", dev, "up"],
            ["ip", "link", "set", "dev", dev + "p", "up"],
            ["ip", "addr", "replace", "\(T.h1.ip)/24", "dev", dev],
            ["ip", "neigh", "replace", "\(server.ip)", "lladdr", "\(server.mac)", "dev", dev, "nud", "permanent"],
            ["ip", "route", "replace", "198.51.100.0/24", "via", "192.168.50.254", "dev", dev],
            ["ip", "route", "replace", "unreachable", "203.0.113.0/24"],
        ] where runCommand(argv) != 0 {
            throw SetupError(what: "\(argv.joined(separator: " ")) failed")
        }
    }

    /// The host's own sockets the host-access rows look for: a TCP
    /// connection the host opened to a1:80 (SYN sent, from port 45001), a
    /// UDP socket connected to a1:53 (port 45002), an unconnected UDP
    /// socket (45003) and a listening TCP socket (45004), on H1's address.
    /// Kept open for the life of the test process.
    static let hostSockets: Result<[Int32], any Error> = Result {
        try underlay.get()
        let env = try TestEnvironment.get()
        var name = [CChar](repeating: 0, count: Int(IF_NAMESIZE))
        guard if_indextoname(env.ifs.a, &name) != nil else { throw SetupError(what: "no interface a") }
        let a = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard runCommand(["ip", "route", "replace", "\(T.a1)/32", "dev", a, "src", "\(T.h1.ip)"]) == 0 else {
            throw SetupError(what: "route to a1")
        }
        func socketAt(_ type: Int32, _ port: UInt16) throws -> Int32 {
            let fd = socket(AF_INET, type | Int32(SOCK_NONBLOCK.rawValue), 0)
            var addr = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: port.bigEndian,
                                   sin_addr: in_addr(s_addr: T.h1.ip.networkOrder), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
            let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            guard fd >= 0, r == 0 else { throw SetupError(what: "bind \(port): errno \(errno)") }
            return fd
        }
        func connectTo(_ fd: Int32, _ port: UInt16) {
            var to = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: port.bigEndian,
                                 sin_addr: in_addr(s_addr: T.a1.networkOrder), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
            _ = withUnsafePointer(to: &to) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        let tcp = try socketAt(Int32(SOCK_STREAM.rawValue), 45001)
        var syns: Int32 = 127
        setsockopt(tcp, Int32(IPPROTO_TCP), TCP_SYNCNT, &syns, socklen_t(MemoryLayout<Int32>.size))
        connectTo(tcp, 80)
        let udp = try socketAt(Int32(SOCK_DGRAM.rawValue), 45002)
        connectTo(udp, 53)
        let loose = try socketAt(Int32(SOCK_DGRAM.rawValue), 45003)
        let listener = try socketAt(Int32(SOCK_STREAM.rawValue), 45004)
        guard listen(listener, 4) == 0 else { throw SetupError(what: "listen") }
        return [tcp, udp, loose, listener]
    }

    /// a1 holds the host's route to its address.
    static func hostAccess(_ on: Bool = true) -> @Sendable (Dataplane) throws -> Void {
        { (dp: Dataplane) throws in
            _ = try hostSockets.get()
            try dp.setHostAccess(T.vniA, T.a1, on)
        }
    }

    /// VPC A (and B) with their address space, egress on unless said.
    static func egress(a: Bool = true, b: Bool = true) -> @Sendable (Dataplane) throws -> Void {
        { (dp: Dataplane) throws in
            try underlay.get()
            try dp.upsertVPC(VPCEntry(vni: T.vniA, dividers: [T.h3], cidr: vpcCIDR, egress: a))
            try dp.upsertVPC(VPCEntry(vni: T.vniB, dividers: [T.h2], cidr: vpcCIDR, egress: b))
        }
    }

    /// The port a new flow of a1 (or b1) gets first.
    static func port(_ vni: VNI, _ ip: IPv4Address, _ sport: UInt16, _ remote: IPv4Address, _ dport: UInt16, _ proto: UInt8) -> UInt16 {
        Dataplane.snatFirstPort(vni: vni, endpoint: ip, remote: remote, endpointPort: sport, remotePort: dport,
                                proto: proto, range: range)
    }

    /// A translation as the programs make it.
    static func mapping(_ dp: Dataplane, vni: VNI, ip: IPv4Address, _ sport: UInt16, remote: IPv4Address, _ dport: UInt16,
                        proto: UInt8, port: UInt16, outbound: Bool = true) throws {
        let now = Dataplane.nowNs
        try dp.snatIn.update(
            mz_snat_in_key(remote: remote.networkOrder, remote_port: dport.bigEndian, port: port.bigEndian, proto: proto, reserved: (0, 0, 0)),
            mz_snat_back(vni: vni.value, ip: ip.networkOrder, port: sport.bigEndian, state: proto == 6 ? UInt8(MZ_CT_SYN.rawValue) : 0,
                         flags: 0, reserved2: 0, created_ns: now, seen_ns: now))
        if outbound {
            try dp.snatOut.update(
                mz_flow_key(vni: vni.value, src: ip.networkOrder, dst: remote.networkOrder, sport: sport.bigEndian,
                            dport: dport.bigEndian, proto: proto, reserved: (0, 0, 0)),
                mz_snat(port: port.bigEndian, reserved: 0, reserved2: 0, created_ns: now))
        }
    }

    /// The translations, as "vni endpoint:port > remote:port/proto = port state".
    static func table(_ dp: Dataplane) throws -> [String] {
        try dp.snatEntries().map {
            "\($0.vni) \($0.endpoint):\($0.endpointPort) > \($0.remote):\($0.remotePort)/\($0.proto) = \($0.port) \($0.stateName)\($0.complete ? "" : " (no outbound)")"
        }.sorted()
    }

    static func tcp(_ smac: MACAddress, _ dmac: MACAddress, _ src: IPv4Address, _ sport: UInt16,
                    _ dst: IPv4Address, _ dport: UInt16, flags: UInt8 = 0x02) -> [UInt8] {
        ServiceCases.tcp(smac, dmac, src, sport, dst, dport, flags: flags)
    }

    static func udp(_ smac: MACAddress, _ dmac: MACAddress, _ src: IPv4Address, _ sport: UInt16,
                    _ dst: IPv4Address, _ dport: UInt16) -> [UInt8] {
        ServiceCases.udp(smac, dmac, src, sport, dst, dport)
    }

    static func ping(_ smac: MACAddress, _ dmac: MACAddress, _ src: IPv4Address, _ dst: IPv4Address, id: UInt16,
                     request: Bool = true) -> [UInt8] {
        Packet.icmpPacket(srcMAC: smac, dstMAC: dmac, srcIP: src, dstIP: dst, request: request, id: id,
                          sequence: 3, payload: Array(repeating: 0x61, count: 16))
    }

    static var all: [PacketCase] {
        let s = server.ip
        let pTCP = port(T.vniA, T.a1, 33000, s, 80, 6)
        let pUDP = port(T.vniA, T.a1, 40000, s, 53, 17)
        let pPing = port(T.vniA, T.a1, 7, s, 0, 1)
        // b1 has a1's address and port: its first choice is another port,
        // since the VNI is in the hash; with a1 holding that very port too
        // it takes the next one.
        let pB = port(T.vniB, T.b1, 33000, s, 80, 6)
        let next = pB == range.upperBound ? range.lowerBound : pB + 1
        let gw = T.gwMAC

        return [
            // ---- out (agent) ----
            PacketCase(name: "egress: a TCP SYN out of the VPC gets the droplet's address and a port", program: .agent, port: .a,
                       prepare: egress(),
                       input: tcp(T.a1mac, gw, T.a1, 33000, s, 80),
                       expect: .redirect(.droplet),
                       output: tcp(T.h1.mac, server.mac, T.h1.ip, pTCP, s, 80),
                       counters: ["snat_new", "snat_out"], vni: T.vniA,
                       after: { (dp: Dataplane) throws in
                           #expect(try table(dp) == ["100 10.0.1.10:33000 > 192.168.50.99:80/6 = \(pTCP) syn"])
                       }),
            PacketCase(name: "egress: the same address and port in another VPC, to the same server, gets another port",
                       program: .agent, port: .c,
                       prepare: { (dp: Dataplane) throws in
                           try egress()(dp)
                           try mapping(dp, vni: T.vniA, ip: T.a1, 33000, remote: s, 80, proto: 6, port: pB)
                       },
                       input: tcp(T.b1mac, gw, T.b1, 33000, s, 80),
                       expect: .redirect(.droplet),
                       output: tcp(T.h1.mac, server.mac, T.h1.ip, next, s, 80),
                       counters: ["snat_new", "snat_out"], vni: T.vniB,
                       after: { (dp: Dataplane) throws in
                           #expect(try table(dp) == ["100 10.0.1.10:33000 > 192.168.50.99:80/6 = \(pB) syn",
                                                     "200 10.0.1.10:33000 > 192.168.50.99:80/6 = \(next) syn"].sorted())
                       }),
            PacketCase(name: "egress: a flow's next packet keeps its port", program: .agent, port: .a,
                       prepare: { (dp: Dataplane) throws in
                           try egress()(dp)
                           try mapping(dp, vni: T.vniA, ip: T.a1, 33000, remote: s, 80, proto: 6, port: 61234)
                       },
                       input: tcp(T.a1mac, gw, T.a1, 33000, s, 80, flags: 0x10),
                       expect: .redirect(.droplet),
                       output: tcp(T.h1.mac, server.mac, T.h1.ip, 61234, s, 80, flags: 0x10),
                       counters: ["snat_out"],
                       after: { (dp: Dataplane) throws in
                           #expect(try table(dp) == ["100 10.0.1.10:33000 > 192.168.50.99:80/6 = 61234 syn"])
                       }),
            PacketCase(name: "egress: a flow whose reverse entry went gets a port afresh", program: .agent, port: .a,
                       prepare: { (dp: Dataplane) throws in
                           try egress()(dp)
                           try mapping(dp, vni: T.vniA, ip: T.a1, 33000, remote: s, 80, proto: 6, port: 61234)
                           _ = try dp.snatIn.clear()
                       },
                       input: tcp(T.a1mac, gw, T.a1, 33000, s, 80),
                       expect: .redirect(.droplet),
                       output: tcp(T.h1.mac, server.mac, T.h1.ip, pTCP, s, 80),
                       counters: ["snat_new", "snat_out"],
                       after: { (dp: Dataplane) throws in
                           #expect(try table(dp) == ["100 10.0.1.10:33000 > 192.168.50.99:80/6 = \(pTCP) syn"])
                       }),
            PacketCase(name: "egress: UDP, checksum updated", program: .agent, port: .a,
                       prepare: egress(),
                       input: udp(T.a1mac, gw, T.a1, 40000, s, 53),
                       expect: .redirect(.droplet),
                       output: udp(T.h1.mac, server.mac, T.h1.ip, pUDP, s, 53),
                       counters: ["snat_new", "snat_out"],
                       after: { (dp: Dataplane) throws in
                           #expect(try table(dp) == ["100 10.0.1.10:40000 > 192.168.50.99:53/17 = \(pUDP) other"])
                       }),
            PacketCase(name: "egress: an ICMP echo gets a translated identifier, ICMP checksum updated", program: .agent, port: .a,
                       prepare: egress(),
                       input: ping(T.a1mac, gw, T.a1, s, id: 7),
                       expect: .redirect(.droplet),
                       output: ping(T.h1.mac, server.mac, T.h1.ip, s, id: pPing),
                       counters: ["snat_new", "snat_out"],
                       after: { (dp: Dataplane) throws in
                           #expect(try table(dp) == ["100 10.0.1.10:7 > 192.168.50.99:0/1 = \(pPing) other"])
                       }),
            PacketCase(name: "egress: next hop not resolved: tc hands it to the kernel's neighbour resolution", program: .agent, port: .a,
                       prepare: egress(),
                       input: tcp(T.a1mac, gw, T.a1, 33000, far, 443),
                       expect: .redirect(.droplet),
                       output: tcp(T.a1mac, gw, T.h1.ip, port(T.vniA, T.a1, 33000, far, 443, 6), far, 443),
                       counters: ["snat_new", "snat_out"], hooks: [.tc]),
            PacketCase(name: "egress: next hop not resolved: XDP drops it, and takes no port", program: .agent, port: .a,
                       prepare: egress(),
                       input: tcp(T.a1mac, gw, T.a1, 33000, far, 443),
                       expect: .drop(MZ_DROP_SNAT_NO_NEIGH),
                       after: { (dp: Dataplane) throws in #expect(try table(dp).isEmpty) }, hooks: [.xdp]),
            PacketCase(name: "egress: no route from the droplet: dropped, no port taken", program: .agent, port: .a,
                       prepare: egress(),
                       input: tcp(T.a1mac, gw, T.a1, 33000, nowhere, 443),
                       expect: .drop(MZ_DROP_SNAT_NO_ROUTE),
                       after: { (dp: Dataplane) throws in #expect(try table(dp).isEmpty) }),
            PacketCase(name: "egress: off for the VPC", program: .agent, port: .c,
                       prepare: egress(b: false),
                       input: tcp(T.b1mac, gw, T.b1, 33000, s, 80),
                       expect: .drop(MZ_DROP_EGRESS_DISABLED), vni: T.vniB),
            PacketCase(name: "egress: every port the flow may try is another flow's to that server", program: .agent, port: .a,
                       prepare: { (dp: Dataplane) throws in
                           try egress()(dp)
                           let n = Int(range.upperBound - range.lowerBound) + 1
                           for i in 0..<Int(MZ_SNAT_PROBES) {
                               let p = range.lowerBound + UInt16((Int(pTCP - range.lowerBound) + i) % n)
                               try mapping(dp, vni: T.vniB, ip: T.ip("10.0.9.\(i + 1)"), 50000, remote: s, 80, proto: 6, port: p)
                           }
                       },
                       input: tcp(T.a1mac, gw, T.a1, 33000, s, 80),
                       expect: .drop(MZ_DROP_SNAT_EXHAUSTED),
                       after: { (dp: Dataplane) throws in
                           #expect(try dp.snatEntries().count == Int(MZ_SNAT_PROBES), "nothing added")
                           #expect(try dp.snatEntries().allSatisfy { $0.vni == T.vniB }, "nothing of a1's")
                       }),
            PacketCase(name: "egress: an ICMP echo reply out of the VPC is not a flow out", program: .agent, port: .a,
                       prepare: egress(),
                       input: ping(T.a1mac, gw, T.a1, s, id: 7, request: false),
                       expect: .drop(MZ_DROP_SNAT_PROTO)),
            PacketCase(name: "egress: an endpoint to its own host's address", program: .agent, port: .a,
                       prepare: egress(),
                       input: tcp(T.a1mac, gw, T.a1, 33000, T.h1.ip, 22),
                       expect: .drop(MZ_DROP_HOST_DENIED)),
            PacketCase(name: "egress: an address inside the VPC's space is never translated (no subnet: no route)",
                       program: .agent, port: .a,
                       prepare: egress(),
                       input: tcp(T.a1mac, gw, T.a1, 33000, T.ip("10.0.7.7"), 80),
                       expect: .redirect(.droplet),
                       output: P.tunnel(from: T.h1, to: T.h3, vni: T.vniA, rts: T.h1, inner: tcp(T.a1mac, gw, T.a1, 33000, T.ip("10.0.7.7"), 80)),
                       counters: ["encap_to_divider"],
                       after: { (dp: Dataplane) throws in #expect(try table(dp).isEmpty) }),

            // ---- host access (agent) ----
            PacketCase(name: "host access: the reply to the host's TCP connection goes to the host", program: .agent, port: .a,
                       prepare: hostAccess(),
                       input: tcp(T.a1mac, gw, T.a1, 80, T.h1.ip, 45001, flags: 0x12),
                       expect: .pass, counters: ["host_reply"]),
            PacketCase(name: "host access: the same reply from the other VPC's endpoint with that address is refused", program: .agent, port: .c,
                       prepare: hostAccess(),
                       input: tcp(T.b1mac, gw, T.b1, 80, T.h1.ip, 45001, flags: 0x12),
                       expect: .drop(MZ_DROP_HOST_DENIED), vni: T.vniB),
            PacketCase(name: "host access: the reply, from an endpoint that does not hold the host's route, is refused", program: .agent, port: .a,
                       prepare: hostAccess(false),
                       input: tcp(T.a1mac, gw, T.a1, 80, T.h1.ip, 45001, flags: 0x12),
                       expect: .drop(MZ_DROP_HOST_DENIED)),
            PacketCase(name: "host access: an endpoint's connection to a port the host listens on is refused", program: .agent, port: .a,
                       prepare: hostAccess(),
                       input: tcp(T.a1mac, gw, T.a1, 33000, T.h1.ip, 45004),
                       expect: .drop(MZ_DROP_HOST_DENIED)),
            PacketCase(name: "host access: an endpoint's connection to a closed host port is refused", program: .agent, port: .a,
                       prepare: hostAccess(),
                       input: tcp(T.a1mac, gw, T.a1, 33000, T.h1.ip, 22),
                       expect: .drop(MZ_DROP_HOST_DENIED)),
            PacketCase(name: "host access: a UDP reply to the host's socket connected to the endpoint goes to the host", program: .agent, port: .a,
                       prepare: hostAccess(),
                       input: udp(T.a1mac, gw, T.a1, 53, T.h1.ip, 45002),
                       expect: .pass, counters: ["host_reply"]),
            PacketCase(name: "host access: UDP to a host socket not connected to the endpoint is refused", program: .agent, port: .a,
                       prepare: hostAccess(),
                       input: udp(T.a1mac, gw, T.a1, 53, T.h1.ip, 45003),
                       expect: .drop(MZ_DROP_HOST_DENIED)),
            PacketCase(name: "host access: a UDP reply from another port than the host's socket is connected to is refused", program: .agent, port: .a,
                       prepare: hostAccess(),
                       input: udp(T.a1mac, gw, T.a1, 54, T.h1.ip, 45002),
                       expect: .drop(MZ_DROP_HOST_DENIED)),
            PacketCase(name: "host access: an echo reply to the host's ping goes to the host", program: .agent, port: .a,
                       prepare: hostAccess(),
                       input: ping(T.a1mac, gw, T.a1, T.h1.ip, id: 9, request: false),
                       expect: .pass, counters: ["host_reply"]),
            PacketCase(name: "host access: an endpoint's ping to its host is refused", program: .agent, port: .a,
                       prepare: hostAccess(),
                       input: ping(T.a1mac, gw, T.a1, T.h1.ip, id: 9),
                       expect: .drop(MZ_DROP_HOST_DENIED)),

            // ---- back (transit) ----
            PacketCase(name: "egress reply: TCP back to its endpoint, gateway's MAC as source", program: .transit, port: .droplet,
                       prepare: { (dp: Dataplane) throws in
                           try egress()(dp)
                           try mapping(dp, vni: T.vniA, ip: T.a1, 33000, remote: s, 80, proto: 6, port: 61234)
                       },
                       input: tcp(server.mac, T.h1.mac, s, 80, T.h1.ip, 61234, flags: 0x12),
                       expect: .redirect(.a),
                       output: tcp(gw, T.a1mac, s, 80, T.a1, 33000, flags: 0x12),
                       counters: ["snat_in"], vni: T.vniA,
                       after: { (dp: Dataplane) throws in
                           #expect(try table(dp) == ["100 10.0.1.10:33000 > 192.168.50.99:80/6 = 61234 established"])
                       }),
            PacketCase(name: "egress reply: the same port for the other tenant's flow goes to that tenant", program: .transit, port: .droplet,
                       prepare: { (dp: Dataplane) throws in
                           try egress()(dp)
                           try mapping(dp, vni: T.vniA, ip: T.a1, 33000, remote: s, 80, proto: 6, port: 61234)
                           try mapping(dp, vni: T.vniB, ip: T.b1, 33000, remote: s, 80, proto: 6, port: 61235)
                       },
                       input: tcp(server.mac, T.h1.mac, s, 80, T.h1.ip, 61235, flags: 0x12),
                       expect: .redirect(.c),
                       output: tcp(gw, T.b1mac, s, 80, T.b1, 33000, flags: 0x12),
                       counters: ["snat_in"], vni: T.vniB),
            PacketCase(name: "egress reply: UDP", program: .transit, port: .droplet,
                       prepare: { (dp: Dataplane) throws in
                           try egress()(dp)
                           try mapping(dp, vni: T.vniA, ip: T.a1, 40000, remote: s, 53, proto: 17, port: 62000)
                       },
                       input: udp(server.mac, T.h1.mac, s, 53, T.h1.ip, 62000),
                       expect: .redirect(.a),
                       output: udp(gw, T.a1mac, s, 53, T.a1, 40000),
                       counters: ["snat_in"]),
            PacketCase(name: "egress reply: ICMP echo reply, identifier restored", program: .transit, port: .droplet,
                       prepare: { (dp: Dataplane) throws in
                           try egress()(dp)
                           try mapping(dp, vni: T.vniA, ip: T.a1, 7, remote: s, 0, proto: 1, port: 63000)
                       },
                       input: ping(server.mac, T.h1.mac, s, T.h1.ip, id: 63000, request: false),
                       expect: .redirect(.a),
                       output: ping(gw, T.a1mac, s, T.a1, id: 7, request: false),
                       counters: ["snat_in"]),
            PacketCase(name: "egress reply: unsolicited TCP to the range", program: .transit, port: .droplet,
                       prepare: egress(),
                       input: tcp(server.mac, T.h1.mac, s, 80, T.h1.ip, 61234),
                       expect: .drop(MZ_DROP_SNAT_NO_MAPPING)),
            PacketCase(name: "egress reply: from another remote port than the flow's", program: .transit, port: .droplet,
                       prepare: { (dp: Dataplane) throws in
                           try egress()(dp)
                           try mapping(dp, vni: T.vniA, ip: T.a1, 33000, remote: s, 80, proto: 6, port: 61234)
                       },
                       input: tcp(server.mac, T.h1.mac, s, 81, T.h1.ip, 61234, flags: 0x12),
                       expect: .drop(MZ_DROP_SNAT_NO_MAPPING)),
            PacketCase(name: "egress reply: for an endpoint no longer here (a deleted VPC's), never delivered", program: .transit, port: .droplet,
                       prepare: { (dp: Dataplane) throws in
                           try egress()(dp)
                           try mapping(dp, vni: try! VNI(300), ip: T.a1, 33000, remote: s, 80, proto: 6, port: 61234)
                       },
                       input: tcp(server.mac, T.h1.mac, s, 80, T.h1.ip, 61234, flags: 0x12),
                       expect: .drop(MZ_DROP_SNAT_NO_MAPPING)),
            PacketCase(name: "egress reply: the host's own traffic outside the range passes", program: .transit, port: .droplet,
                       prepare: egress(),
                       input: tcp(server.mac, T.h1.mac, s, 80, T.h1.ip, 45000, flags: 0x12),
                       expect: .pass),
            PacketCase(name: "egress reply: an echo reply in the range that matches no flow is the host's", program: .transit, port: .droplet,
                       prepare: egress(),
                       input: ping(server.mac, T.h1.mac, s, T.h1.ip, id: 63000, request: false),
                       expect: .pass),
            PacketCase(name: "egress reply: a packet to a private address is not the data plane's: the host's, which has no route to it", program: .transit, port: .droplet,
                       prepare: { (dp: Dataplane) throws in
                           try egress()(dp)
                           try mapping(dp, vni: T.vniA, ip: T.a1, 33000, remote: s, 80, proto: 6, port: 61234)
                       },
                       input: tcp(server.mac, T.h1.mac, s, 80, T.a1, 33000, flags: 0x12),
                       expect: .pass),
        ]
    }
}
