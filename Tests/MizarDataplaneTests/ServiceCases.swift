import CMizarABI
import MizarCore
@testable import MizarDataplane
import MizarPacket
import Testing

/// Rows for scaled endpoints (service VIPs): the bouncer's answer, the
/// client host learning and rewriting a flow, the agent's rewrite of later
/// packets, and the reverse rewrite of replies. Checksums are checked by
/// comparing with packets built from scratch.
enum ServiceCases {
    static let vip = T.ip("10.0.1.100"), vipMAC = T.mac("0a:58:0a:00:01:64")
    static let ports = [ServicePort(proto: .tcp, port: 80, targetPort: 8080),
                        ServicePort(proto: .udp, port: 53, targetPort: 5353)]
    /// Backends of VPC A: a3 on H2, a4 (other subnet) on H3, a5 on H4.
    static let backends = [ServiceBackend(ip: T.a3, host: T.h2), ServiceBackend(ip: T.a4, host: T.h3),
                           ServiceBackend(ip: T.a5, host: T.h4)]

    /// The backend the bouncer's Maglev table gives a flow.
    static func chosen(_ list: [ServiceBackend], client: IPv4Address, sport: UInt16, dport: UInt16, proto: UInt8) -> ServiceBackend {
        let sorted = ServiceEntry(vni: T.vniA, vip: vip, ports: ports, backends: list).backends
        let table = Maglev.table(keys: sorted.map { ServiceEntry.maglevKey(T.vniA, $0.ip) }, size: Int(MZ_MAGLEV_SIZE))
        return sorted[Int(table[Int(mz_maglev_slot(client.value, vip.value, sport, dport, proto))])]
    }

    static func rewrite(_ b: ServiceBackend, port: UInt16) -> GeneveOption {
        GeneveOption(optionClass: UInt16(MZ_GENEVE_CLASS), type: UInt8(MZ_GENEVE_CRITICAL) | UInt8(MZ_OPT_REWRITE.rawValue),
                     data: b.ip.bytes + [UInt8(port >> 8), UInt8(port & 0xff), 0, 0] + b.host.ip.bytes + b.host.mac.bytes + [0, 0])
    }

    static func tcp(_ smac: MACAddress, _ dmac: MACAddress, _ src: IPv4Address, _ sport: UInt16,
                    _ dst: IPv4Address, _ dport: UInt16, flags: UInt8 = 0x02) -> [UInt8] {
        Packet.tcpPacket(srcMAC: smac, dstMAC: dmac, srcIP: src, dstIP: dst, srcPort: sport, dstPort: dport,
                         seq: 1, flags: flags, payload: Array("hello".utf8))
    }

    static func udp(_ smac: MACAddress, _ dmac: MACAddress, _ src: IPv4Address, _ sport: UInt16,
                    _ dst: IPv4Address, _ dport: UInt16) -> [UInt8] {
        Packet.udpPacket(srcMAC: smac, dstMAC: dmac, srcIP: src, dstIP: dst, srcPort: sport, dstPort: dport,
                         payload: Array("query".utf8))
    }

    static func ping(_ smac: MACAddress, _ dmac: MACAddress, _ src: IPv4Address, _ dst: IPv4Address,
                     request: Bool = true) -> [UInt8] {
        Packet.icmpPacket(srcMAC: smac, dstMAC: dmac, srcIP: src, dstIP: dst, request: request, id: 0x4d5a,
                          sequence: 3, payload: Array(repeating: 0x61, count: 16))
    }

    static func sport(_ inner: [UInt8]) -> UInt16 { mz_flow_sport(P.flowHash(inner)) }

    /// This host bounces for subnet 1, which holds the VIP.
    static let bouncerRoles = Roles(bouncerS1: true, s1Bouncers: [T.h1])

    static func installService(_ list: [ServiceBackend] = backends) -> @Sendable (Dataplane) throws -> Void {
        { dp in
            try dp.upsertEndpoint(EndpointEntry(vni: T.vniA, ip: vip, mac: vipMAC,
                                                host: HostAddress(ip: .zero, mac: .zero), kind: .scaled))
            try dp.putService(ServiceEntry(vni: T.vniA, vip: vip, ports: ports, backends: list))
        }
    }

    static func nat(_ dp: Dataplane) throws -> [String] {
        try dp.natFlows().map { f in
            "\(f.reverse ? "rev" : "fwd") \(f.src):\(f.sport)>\(f.dst):\(f.dport)/\(f.proto) => \(f.toIP):\(f.toPort) vip \(f.vip) backend \(f.backend)"
        }.sorted()
    }

    static func natEntry(_ dp: Dataplane, _ src: IPv4Address, _ sport: UInt16, _ dst: IPv4Address, _ dport: UInt16,
                         proto: UInt8, to: IPv4Address, _ toPort: UInt16, reverse: Bool, backend: IPv4Address) throws {
        try dp.nat.update(
            mz_flow_key(vni: T.vniA.value, src: src.networkOrder, dst: dst.networkOrder, sport: sport.bigEndian,
                        dport: dport.bigEndian, proto: proto, reserved: (0, 0, 0)),
            mz_nat(to_ip: to.networkOrder, to_port: toPort.bigEndian, flags: reverse ? UInt16(MZ_NAT_F_REVERSE) : 0,
                   vip: vip.networkOrder, backend: backend.networkOrder, created_ns: 1))
        // What svc_apply does when it stores a flow.
        try dp.natActive.update(0, 1)
    }

    static var all: [PacketCase] {
        // The bouncer's answer to a3 (on H2) opening a TCP connection to the VIP.
        let syn = tcp(T.a3mac, vipMAC, T.a3, 33000, vip, 80)
        let b1 = chosen(backends, client: T.a3, sport: 33000, dport: 80, proto: 6)
        let pingA3 = ping(T.a3mac, vipMAC, T.a3, vip)
        let bPing = chosen(backends, client: T.a3, sport: 0x4d5a, dport: 0, proto: 1)
        let udpA3 = udp(T.a3mac, vipMAC, T.a3, 40000, vip, 53)
        let bUDP = chosen(backends, client: T.a3, sport: 40000, dport: 53, proto: 17)

        // The client a1 (on this host) and its flow to the VIP, answered with a3 on H2.
        let a1syn = tcp(T.a1mac, vipMAC, T.a1, 33000, vip, 80)
        let a3b = ServiceBackend(ip: T.a3, host: T.h2)
        let a2b = ServiceBackend(ip: T.a2, host: T.h1)
        let a1ping = ping(T.a1mac, vipMAC, T.a1, vip)
        let a1udp = udp(T.a1mac, vipMAC, T.a1, 40000, vip, 53)

        return [
            PacketCase(name: "bouncer answers a TCP flow's first packet with a backend", program: .transit, port: .droplet,
                       roles: bouncerRoles, prepare: installService(),
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, inner: syn),
                       expect: .tx,
                       output: P.tunnel(from: T.h1, to: T.h2, vni: T.vniA, rts: T.h2, sport: sport(syn),
                                        options: [rewrite(b1, port: 8080), P.rts(T.h2)], inner: syn),
                       counters: ["service_answer"], vni: T.vniA,
                       after: { (dp: Dataplane) throws in
                           #expect(try dp.serviceClients(T.vniA, vip) == [T.h2.ip], "the client host is remembered")
                           #expect(try dp.serviceFlowCounts(T.vniA, vip) == [b1.ip: 1], "one flow for the chosen backend")
                           #expect(try nat(dp).isEmpty, "the bouncer keeps no flow")
                       }),
            PacketCase(name: "bouncer answers UDP, to the port's target port", program: .transit, port: .droplet,
                       roles: bouncerRoles, prepare: installService(),
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, inner: udpA3),
                       expect: .tx,
                       output: P.tunnel(from: T.h1, to: T.h2, vni: T.vniA, rts: T.h2, sport: sport(udpA3),
                                        options: [rewrite(bUDP, port: 5353), P.rts(T.h2)], inner: udpA3),
                       counters: ["service_answer"]),
            PacketCase(name: "bouncer answers a ping to the VIP (no port)", program: .transit, port: .droplet,
                       roles: bouncerRoles, prepare: installService(),
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, inner: pingA3),
                       expect: .tx,
                       output: P.tunnel(from: T.h1, to: T.h2, vni: T.vniA, rts: T.h2, sport: sport(pingA3),
                                        options: [rewrite(bPing, port: 0), P.rts(T.h2)], inner: pingA3),
                       counters: ["service_answer"]),
            PacketCase(name: "bouncer: a port the service does not have", program: .transit, port: .droplet,
                       roles: bouncerRoles, prepare: installService(),
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, inner: tcp(T.a3mac, vipMAC, T.a3, 33000, vip, 81)),
                       expect: .drop(MZ_DROP_SVC_PORT)),
            PacketCase(name: "bouncer: UDP to a TCP-only port", program: .transit, port: .droplet,
                       roles: bouncerRoles, prepare: installService(),
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, inner: udp(T.a3mac, vipMAC, T.a3, 33000, vip, 80)),
                       expect: .drop(MZ_DROP_SVC_PORT)),
            PacketCase(name: "bouncer: a service without backends", program: .transit, port: .droplet,
                       roles: bouncerRoles, prepare: installService([]),
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, inner: syn),
                       expect: .drop(MZ_DROP_SVC_NO_BACKEND)),
            PacketCase(name: "bouncer: a scaled endpoint whose service is not written yet", program: .transit, port: .droplet,
                       roles: bouncerRoles,
                       prepare: { dp in try dp.upsertEndpoint(EndpointEntry(vni: T.vniA, ip: vip, mac: vipMAC, host: HostAddress(ip: .zero, mac: .zero), kind: .scaled)) },
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, inner: syn),
                       expect: .drop(MZ_DROP_SVC_NO_SERVICE)),
            PacketCase(name: "bouncer: ICMP other than echo to a VIP", program: .transit, port: .droplet,
                       roles: bouncerRoles, prepare: installService(),
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, inner: P.patched(pingA3, [34: 13])),
                       expect: .drop(MZ_DROP_SVC_PROTO)),
            PacketCase(name: "VPC B's identical address is no service", program: .transit, port: .droplet,
                       roles: bouncerRoles, prepare: installService(),
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniB, rts: T.h2, inner: syn),
                       expect: .drop(MZ_DROP_NO_ROUTE)),

            // The client's host receives the answer.
            PacketCase(name: "client host learns the flow, rewrites it and sends it to the backend's host", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h1, sport: sport(a1syn),
                                       options: [rewrite(a3b, port: 8080), P.rts(T.h1)], inner: a1syn),
                       expect: .tx,
                       output: P.tunnel(from: T.h1, to: T.h2, vni: T.vniA, rts: T.h1, rtsFlags: UInt8(MZ_RTS_F_DIRECT), sport: sport(a1syn),
                                        inner: tcp(T.a1mac, vipMAC, T.a1, 33000, T.a3, 8080)),
                       counters: ["service_learn", "cache_learn"], learns: [Learned(vni: T.vniA, ip: T.a3, host: T.h2)],
                       after: { (dp: Dataplane) throws in
                           #expect(try nat(dp) == [
                               "fwd 10.0.1.10:33000>10.0.1.100:80/6 => 10.0.1.20:8080 vip 10.0.1.100 backend 10.0.1.20",
                               "rev 10.0.1.20:8080>10.0.1.10:33000/6 => 10.0.1.100:80 vip 10.0.1.100 backend 10.0.1.20",
                           ])
                       }),
            PacketCase(name: "client host: a ping's answer", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h1, sport: sport(a1ping),
                                       options: [rewrite(a3b, port: 0), P.rts(T.h1)], inner: a1ping),
                       expect: .tx,
                       output: P.tunnel(from: T.h1, to: T.h2, vni: T.vniA, rts: T.h1, rtsFlags: UInt8(MZ_RTS_F_DIRECT), sport: sport(a1ping),
                                        inner: ping(T.a1mac, vipMAC, T.a1, T.a3)),
                       counters: ["service_learn", "cache_learn"], learns: [Learned(vni: T.vniA, ip: T.a3, host: T.h2)],
                       after: { (dp: Dataplane) throws in
                           #expect(try nat(dp) == [
                               "fwd 10.0.1.10:19802>10.0.1.100:0/1 => 10.0.1.20:0 vip 10.0.1.100 backend 10.0.1.20",
                               "rev 10.0.1.20:0>10.0.1.10:19802/1 => 10.0.1.100:0 vip 10.0.1.100 backend 10.0.1.20",
                           ])
                       }),
            PacketCase(name: "client host: the backend lives here too, straight in", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h1, sport: sport(a1udp),
                                       options: [rewrite(a2b, port: 5353), P.rts(T.h1)], inner: a1udp),
                       expect: .redirect(.b),
                       output: udp(T.a1mac, T.a2mac, T.a1, 40000, T.a2, 5353),
                       counters: ["service_learn", "deliver"]),
            PacketCase(name: "an answer for a client not on this host", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h1, options: [rewrite(a3b, port: 8080), P.rts(T.h1)],
                                       inner: tcp(T.a5mac, vipMAC, T.a5, 33000, vip, 80)),
                       expect: .drop(MZ_DROP_SVC_REWRITE)),
            PacketCase(name: "a rewrite option of the wrong length", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h1,
                                       options: [GeneveOption(optionClass: UInt16(MZ_GENEVE_CLASS), type: 0x82, data: [0, 0, 0, 0]), P.rts(T.h1)],
                                       inner: a1syn),
                       expect: .drop(MZ_DROP_GENEVE_OPTIONS)),
            PacketCase(name: "divider passes an answer on to the client's host it learned", program: .transit, port: .droplet,
                       roles: Roles(dividerA: true),
                       prepare: { try $0.hostCache.update(mz_ep_key(T.vniA, T.a5), mz_cached_host(host: mz_host(ip: T.h4.ip.networkOrder, mac: (2, 0, 0, 0, 0, 4), reserved: 0), flags: 0, learned_ns: 1)) },
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h1, options: [rewrite(a3b, port: 8080), P.rts(T.h1)],
                                       inner: tcp(T.a5mac, vipMAC, T.a5, 33000, vip, 80)),
                       expect: .tx,
                       output: P.tunnel(from: T.h1, to: T.h4, vni: T.vniA, rts: T.h1, ttl: 63, options: [rewrite(a3b, port: 8080), P.rts(T.h1)],
                                        inner: tcp(T.a5mac, vipMAC, T.a5, 33000, vip, 80)),
                       counters: ["service_relay"]),

            // The agent: later packets of a taught flow, and replies.
            PacketCase(name: "agent rewrites a taught flow to its backend", program: .agent, port: .a,
                       prepare: { dp in
                           try natEntry(dp, T.a1, 33000, vip, 80, proto: 6, to: T.a3, 8080, reverse: false, backend: T.a3)
                           try dp.hostCache.update(mz_ep_key(T.vniA, T.a3), mz_cached_host(host: mz_host(ip: T.h2.ip.networkOrder, mac: (2, 0, 0, 0, 0, 2), reserved: 0), flags: 0, learned_ns: 1))
                       },
                       input: tcp(T.a1mac, vipMAC, T.a1, 33000, vip, 80, flags: 0x10),
                       expect: .redirect(.droplet),
                       output: P.tunnel(from: T.h1, to: T.h2, vni: T.vniA, rts: T.h1, rtsFlags: UInt8(MZ_RTS_F_DIRECT),
                                        inner: tcp(T.a1mac, vipMAC, T.a1, 33000, T.a3, 8080, flags: 0x10)),
                       counters: ["service_dnat", "encap_direct"]),
            PacketCase(name: "agent rewrites UDP and keeps its checksum right", program: .agent, port: .a,
                       prepare: { dp in
                           try natEntry(dp, T.a1, 40000, vip, 53, proto: 17, to: T.a2, 5353, reverse: false, backend: T.a2)
                       },
                       input: a1udp, expect: .redirect(.b),
                       output: udp(T.a1mac, T.a2mac, T.a1, 40000, T.a2, 5353),
                       counters: ["service_dnat", "local_deliver"]),
            PacketCase(name: "a flow nobody taught goes to the VIP's bouncer", program: .agent, port: .a,
                       input: a1syn, expect: .redirect(.droplet),
                       output: P.tunnel(from: T.h1, to: T.h4, vni: T.vniA, rts: T.h1, inner: a1syn),
                       counters: ["encap_to_bouncer"]),
            PacketCase(name: "client on the bouncer's own host", program: .agent, port: .a,
                       roles: bouncerRoles, prepare: installService([a3b]),
                       input: a1syn, expect: .redirect(.droplet),
                       output: P.tunnel(from: T.h1, to: T.h2, vni: T.vniA, rts: T.h1, rtsFlags: UInt8(MZ_RTS_F_DIRECT), sport: sport(a1syn),
                                        inner: tcp(T.a1mac, vipMAC, T.a1, 33000, T.a3, 8080)),
                       counters: ["encap_to_bouncer", "self_handoff", "service_answer", "service_learn", "cache_learn"],
                       learns: [Learned(vni: T.vniA, ip: T.a3, host: T.h2)],
                       after: { (dp: Dataplane) throws in
                           #expect(try nat(dp).count == 2)
                           #expect(try dp.serviceClients(T.vniA, vip) == [T.h1.ip])
                           #expect(try dp.natActive.lookup(0) == 1, "delivery would skip the replies' rewrite")
                       }),
            PacketCase(name: "a backend's reply gets the VIP back on delivery", program: .transit, port: .droplet,
                       prepare: { dp in try natEntry(dp, T.a3, 8080, T.a1, 33000, proto: 6, to: vip, 80, reverse: true, backend: T.a3) },
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, rtsFlags: UInt8(MZ_RTS_F_DIRECT),
                                       inner: tcp(T.a3mac, T.a1mac, T.a3, 8080, T.a1, 33000, flags: 0x12)),
                       expect: .redirect(.a),
                       output: tcp(T.a3mac, T.a1mac, vip, 80, T.a1, 33000, flags: 0x12),
                       counters: ["deliver", "service_rnat", "cache_learn"], learns: [Learned(vni: T.vniA, ip: T.a3, host: T.h2)]),
            PacketCase(name: "a host never taught a service flow delivers without looking for one", program: .transit, port: .droplet,
                       prepare: { dp in
                           try natEntry(dp, T.a3, 8080, T.a1, 33000, proto: 6, to: vip, 80, reverse: true, backend: T.a3)
                           try dp.natActive.update(0, 0)
                       },
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, rtsFlags: UInt8(MZ_RTS_F_DIRECT),
                                       inner: tcp(T.a3mac, T.a1mac, T.a3, 8080, T.a1, 33000, flags: 0x12)),
                       expect: .redirect(.a),
                       output: tcp(T.a3mac, T.a1mac, T.a3, 8080, T.a1, 33000, flags: 0x12),
                       counters: ["deliver", "cache_learn"], learns: [Learned(vni: T.vniA, ip: T.a3, host: T.h2)]),
            PacketCase(name: "a ping reply gets the VIP back", program: .transit, port: .droplet,
                       prepare: { dp in try natEntry(dp, T.a3, 0, T.a1, 0x4d5a, proto: 1, to: vip, 0, reverse: true, backend: T.a3) },
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, rtsFlags: UInt8(MZ_RTS_F_DIRECT),
                                       inner: ping(T.a3mac, T.a1mac, T.a3, T.a1, request: false)),
                       expect: .redirect(.a),
                       output: ping(T.a3mac, T.a1mac, vip, T.a1, request: false),
                       counters: ["deliver", "service_rnat", "cache_learn"], learns: [Learned(vni: T.vniA, ip: T.a3, host: T.h2)]),
            PacketCase(name: "a direct SYN reusing a service flow's client port and backend ends that flow", program: .agent, port: .a,
                       prepare: { dp in
                           try natEntry(dp, T.a1, 40000, vip, 53, proto: 6, to: T.a2, 5353, reverse: false, backend: T.a2)
                           try natEntry(dp, T.a2, 5353, T.a1, 40000, proto: 6, to: vip, 53, reverse: true, backend: T.a2)
                       },
                       input: tcp(T.a1mac, T.a2mac, T.a1, 40000, T.a2, 5353), expect: .redirect(.b),
                       output: tcp(T.a1mac, T.a2mac, T.a1, 40000, T.a2, 5353),
                       counters: ["service_flow_ended", "local_deliver"],
                       after: { (dp: Dataplane) throws in #expect(try nat(dp).isEmpty) }),
            PacketCase(name: "a direct packet that is no SYN leaves the service flow alone", program: .agent, port: .a,
                       prepare: { dp in
                           try natEntry(dp, T.a1, 40000, vip, 53, proto: 6, to: T.a2, 5353, reverse: false, backend: T.a2)
                           try natEntry(dp, T.a2, 5353, T.a1, 40000, proto: 6, to: vip, 53, reverse: true, backend: T.a2)
                       },
                       input: tcp(T.a1mac, T.a2mac, T.a1, 40000, T.a2, 5353, flags: 0x10), expect: .redirect(.b),
                       output: tcp(T.a1mac, T.a2mac, T.a1, 40000, T.a2, 5353, flags: 0x10),
                       counters: ["local_deliver"],
                       after: { (dp: Dataplane) throws in #expect(try nat(dp).count == 2) }),
            PacketCase(name: "a same-host backend's reply gets the VIP back", program: .agent, port: .b,
                       prepare: { dp in try natEntry(dp, T.a2, 5353, T.a1, 40000, proto: 17, to: vip, 53, reverse: true, backend: T.a2) },
                       input: udp(T.a2mac, T.a1mac, T.a2, 5353, T.a1, 40000), expect: .redirect(.a),
                       output: udp(T.a2mac, T.a1mac, vip, 53, T.a1, 40000),
                       counters: ["local_deliver", "service_rnat"]),
            PacketCase(name: "a reverse entry never rewrites the forward direction", program: .agent, port: .a,
                       prepare: { dp in try natEntry(dp, T.a1, 40000, vip, 53, proto: 17, to: T.a2, 5353, reverse: true, backend: T.a2) },
                       input: a1udp, expect: .redirect(.droplet),
                       output: P.tunnel(from: T.h1, to: T.h4, vni: T.vniA, rts: T.h1, inner: a1udp),
                       counters: ["encap_to_bouncer"]),
        ]
    }
}
