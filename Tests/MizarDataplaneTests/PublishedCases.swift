import CMizarABI
import MizarCore
@testable import MizarDataplane
import MizarPacket
import Testing

/// Rows for published services: a client on the underlay reaches VPC A's
/// service (ServiceCases' VIP, ports 80->8080/TCP and 53->5353/UDP) on
/// H1's address at host port 30080, source NAT mode. The publishing
/// droplet's first packet, its translation both ways, the backend's host
/// admitting the flow and sending replies back, and the drops.
enum PublishedCases {
    static let client = EgressCases.server   // a machine on the underlay
    static let hostPort: UInt16 = 30080
    static let range = DataplaneSettings.defaultSNATPorts

    /// H1 publishes the service at 30080/TCP (and 30053/UDP).
    static func publish(_ backends: [ServiceBackend] = ServiceCases.backends) -> @Sendable (Dataplane) throws -> Void {
        { (dp: Dataplane) throws in
            try EgressCases.egress()(dp)
            try ServiceCases.installService(backends)(dp)
            try dp.putPublished(PublishedPort(proto: .tcp, port: hostPort, vni: T.vniA, vip: ServiceCases.vip, vipPort: 80))
            try dp.putPublished(PublishedPort(proto: .udp, port: 30053, vni: T.vniA, vip: ServiceCases.vip, vipPort: 53))
        }
    }

    /// The port the flow gets on H1's address (the first it tries), as the
    /// program hashes the flow: the client, the backend, and the client's
    /// ports as they sit in its packet (to the host port).
    static func natPort(client: IPv4Address, sport: UInt16, backend: IPv4Address, dport: UInt16, proto: UInt8) -> UInt16 {
        let ports = (UInt32(sport.bigEndian) << 16 | UInt32(dport.bigEndian)) ^ UInt32(proto)
        let n = UInt32(range.upperBound - range.lowerBound) + 1
        return range.lowerBound + UInt16(mz_flow_hash(client.value, backend.value, ports) % n)
    }

    /// The outer UDP source port of the publishing droplet's tunnel packet.
    static func tunnelPort(backend: IPv4Address, nat: UInt16, backendPort: UInt16, proto: UInt8) -> UInt16 {
        let ports = (UInt32(nat.bigEndian) << 16 | UInt32(backendPort.bigEndian)) ^ UInt32(proto)
        return mz_flow_sport(mz_flow_hash(T.h1.ip.value, backend.value, ports))
    }

    /// A published flow as the programs make it.
    /// (`back: false`: its reverse entry went, evicted or swept.)
    static func flow(_ dp: Dataplane, client: IPv4Address, _ cport: UInt16, backend: IPv4Address, _ bport: UInt16,
                     host: HostAddress, nat: UInt16, proto: UInt8 = 6, port: UInt16 = hostPort,
                     state: mz_ct_state = MZ_CT_ESTABLISHED, back: Bool = true, forward: Bool = true,
                     seen: UInt64 = Dataplane.nowNs) throws {
        if forward { try dp.publishedFlows.update(
            mz_pub_flow_key(client: client.networkOrder, client_port: cport.bigEndian, port: port.bigEndian, proto: proto, reserved: (0, 0, 0)),
            mz_pub_flow(vni: T.vniA.value, backend: backend.networkOrder, backend_port: bport.bigEndian, nat_port: nat.bigEndian,
                        host: mz_host(host), client_mac: Self.client.mac.tuple, reserved: 0, created_ns: Dataplane.nowNs)) }
        guard back else { return }
        try dp.publishedBack.update(
            mz_pub_back_key(vni: T.vniA.value, backend: backend.networkOrder, backend_port: bport.bigEndian, nat_port: nat.bigEndian,
                            proto: proto, reserved: (0, 0, 0)),
            mz_pub_back(client: client.networkOrder, client_port: cport.bigEndian, port: port.bigEndian,
                        client_mac: Self.client.mac.tuple, state: UInt8(state.rawValue), flags: 0, seen_ns: seen))
    }

    /// Each flow as "client > port => backend on host via port, state".
    static func flows(_ dp: Dataplane) throws -> [String] {
        try dp.publishedFlowEntries().map {
            "\($0.client):\($0.clientPort) > :\($0.port)/\($0.proto) => \($0.backend):\($0.backendPort) on \($0.backendHost) via :\($0.natPort), \($0.stateName)"
        }.sorted()
    }

    static var all: [PacketCase] {
        let c = client.ip
        let syn = ServiceCases.tcp(client.mac, T.h1.mac, c, 44000, T.h1.ip, hostPort)
        let b = ServiceCases.chosen(ServiceCases.backends, client: c, sport: 44000, dport: 80, proto: 6)
        let p = natPort(client: c, sport: 44000, backend: b.ip, dport: hostPort, proto: 6)
        let inner = ServiceCases.tcp(T.h1.mac, T.h1.mac, T.h1.ip, p, b.ip, 8080)
        let query = ServiceCases.udp(client.mac, T.h1.mac, c, 45000, T.h1.ip, 30053)
        let bu = ServiceCases.chosen(ServiceCases.backends, client: c, sport: 45000, dport: 53, proto: 17)
        let pu = natPort(client: c, sport: 45000, backend: bu.ip, dport: 30053, proto: 17)
        let local = [ServiceBackend(ip: T.a1, host: T.h1)]
        let pl = natPort(client: c, sport: 44000, backend: T.a1, dport: hostPort, proto: 6)

        return [
            PacketCase(name: "published: a client's SYN to a host port goes to the Maglev backend, from this droplet's address", program: .transit, port: .droplet,
                       prepare: publish(),
                       input: syn,
                       expect: .tx,
                       output: P.tunnel(from: T.h1, to: b.host, vni: T.vniA, rts: T.h1, rtsFlags: UInt8(MZ_RTS_F_DIRECT),
                                        sport: tunnelPort(backend: b.ip, nat: p, backendPort: 8080, proto: 6), inner: inner),
                       counters: ["published_new", "published_in"], vni: T.vniA,
                       after: { (dp: Dataplane) throws in
                           #expect(try flows(dp) == ["\(c):44000 > :30080/6 => \(b.ip):8080 on \(b.host.ip) via :\(p), syn"])
                       }),
            PacketCase(name: "published: UDP, to the port's target port", program: .transit, port: .droplet,
                       prepare: publish(),
                       input: query,
                       expect: .tx,
                       output: P.tunnel(from: T.h1, to: bu.host, vni: T.vniA, rts: T.h1, rtsFlags: UInt8(MZ_RTS_F_DIRECT),
                                        sport: tunnelPort(backend: bu.ip, nat: pu, backendPort: 5353, proto: 17),
                                        inner: ServiceCases.udp(T.h1.mac, T.h1.mac, T.h1.ip, pu, bu.ip, 5353)),
                       counters: ["published_new", "published_in"]),
            PacketCase(name: "published: a datagram too big for the tunnel (droplet MTU less 66 bytes) is dropped by name", program: .transit, port: .droplet,
                       prepare: publish(),
                       input: Packet.udpPacket(srcMAC: client.mac, dstMAC: T.h1.mac, srcIP: c, dstIP: T.h1.ip, srcPort: 45000, dstPort: 30053,
                                               payload: [UInt8](repeating: 0x5a, count: 1420)),
                       expect: .drop(MZ_DROP_PUB_TOO_BIG),
                       // (translated before the check: the drop leaves the translated frame)
                       output: Packet.udpPacket(srcMAC: client.mac, dstMAC: T.h1.mac, srcIP: T.h1.ip, dstIP: bu.ip, srcPort: pu, dstPort: 5353,
                                                payload: [UInt8](repeating: 0x5a, count: 1420)),
                       counters: ["published_new", "published_in"]),
            PacketCase(name: "published: a flow's next packet keeps its backend and port", program: .transit, port: .droplet,
                       prepare: { (dp: Dataplane) throws in
                           try publish()(dp)
                           try flow(dp, client: c, 44000, backend: T.a5, 8080, host: T.h4, nat: 62222)
                       },
                       input: ServiceCases.tcp(client.mac, T.h1.mac, c, 44000, T.h1.ip, hostPort, flags: 0x10),
                       expect: .tx,
                       output: P.tunnel(from: T.h1, to: T.h4, vni: T.vniA, rts: T.h1, rtsFlags: UInt8(MZ_RTS_F_DIRECT),
                                        sport: tunnelPort(backend: T.a5, nat: 62222, backendPort: 8080, proto: 6),
                                        inner: ServiceCases.tcp(T.h1.mac, T.h1.mac, T.h1.ip, 62222, T.a5, 8080, flags: 0x10)),
                       counters: ["published_in"]),
            PacketCase(name: "published: the backend's reply, back in the tunnel, goes to the client from the host port; the flow is established", program: .transit, port: .droplet,
                       prepare: { (dp: Dataplane) throws in
                           try publish()(dp)
                           try flow(dp, client: c, 44000, backend: T.a3, 8080, host: T.h2, nat: 62222, state: MZ_CT_SYN)
                       },
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, rtsFlags: UInt8(MZ_RTS_F_DIRECT),
                                       inner: ServiceCases.tcp(T.a3mac, T.gwMAC, T.a3, 8080, T.h1.ip, 62222, flags: 0x12)),
                       expect: .tx,
                       output: ServiceCases.tcp(T.h1.mac, client.mac, T.h1.ip, hostPort, c, 44000, flags: 0x12),
                       counters: ["published_out"],
                       after: { (dp: Dataplane) throws in
                           #expect(try flows(dp) == ["\(c):44000 > :30080/6 => \(T.a3):8080 on \(T.h2.ip) via :62222, established"])
                       }),
            PacketCase(name: "published: the client's FIN moves its flow to closing", program: .transit, port: .droplet,
                       prepare: { (dp: Dataplane) throws in
                           try publish()(dp)
                           try flow(dp, client: c, 44000, backend: T.a5, 8080, host: T.h4, nat: 62222)
                       },
                       input: ServiceCases.tcp(client.mac, T.h1.mac, c, 44000, T.h1.ip, hostPort, flags: 0x11),
                       expect: .tx,
                       output: P.tunnel(from: T.h1, to: T.h4, vni: T.vniA, rts: T.h1, rtsFlags: UInt8(MZ_RTS_F_DIRECT),
                                        sport: tunnelPort(backend: T.a5, nat: 62222, backendPort: 8080, proto: 6),
                                        inner: ServiceCases.tcp(T.h1.mac, T.h1.mac, T.h1.ip, 62222, T.a5, 8080, flags: 0x11)),
                       counters: ["published_in"],
                       after: { (dp: Dataplane) throws in
                           #expect(try flows(dp) == ["\(c):44000 > :30080/6 => \(T.a5):8080 on \(T.h4.ip) via :62222, closing"])
                       }),
            PacketCase(name: "published: a flow whose reverse entry went is picked afresh (a new port, its backend by Maglev)", program: .transit, port: .droplet,
                       prepare: { (dp: Dataplane) throws in
                           try publish()(dp)
                           try flow(dp, client: c, 44000, backend: T.a5, 8080, host: T.h4, nat: 62222, back: false)
                       },
                       input: syn,
                       expect: .tx,
                       output: P.tunnel(from: T.h1, to: b.host, vni: T.vniA, rts: T.h1, rtsFlags: UInt8(MZ_RTS_F_DIRECT),
                                        sport: tunnelPort(backend: b.ip, nat: p, backendPort: 8080, proto: 6), inner: inner),
                       counters: ["published_new", "published_in"],
                       after: { (dp: Dataplane) throws in
                           #expect(try flows(dp) == ["\(c):44000 > :30080/6 => \(b.ip):8080 on \(b.host.ip) via :\(p), syn"])
                       }),
            PacketCase(name: "published: a packet in the tunnel to this droplet's address that is no published flow's", program: .transit, port: .droplet,
                       prepare: publish(),
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2,
                                       inner: ServiceCases.tcp(T.a3mac, T.gwMAC, T.a3, 8080, T.h1.ip, 62222, flags: 0x12)),
                       expect: .drop(MZ_DROP_PUB_NO_FLOW),
                       // (decapsulated before the lookup: the drop leaves the inner frame)
                       output: ServiceCases.tcp(T.a3mac, T.gwMAC, T.a3, 8080, T.h1.ip, 62222, flags: 0x12)),
            PacketCase(name: "published: the backend lives here: delivered from this droplet's address", program: .transit, port: .droplet,
                       prepare: publish(local),
                       input: syn,
                       expect: .redirect(.a),
                       output: ServiceCases.tcp(T.h1.mac, T.a1mac, T.h1.ip, pl, T.a1, 8080),
                       counters: ["published_new", "published_in", "published_admit"]),
            PacketCase(name: "published: a local backend's reply goes to the client", program: .agent, port: .a,
                       prepare: { (dp: Dataplane) throws in
                           try publish(local)(dp)
                           try flow(dp, client: c, 44000, backend: T.a1, 8080, host: T.h1, nat: 62222)
                       },
                       input: ServiceCases.tcp(T.a1mac, T.gwMAC, T.a1, 8080, T.h1.ip, 62222, flags: 0x12),
                       expect: .redirect(.droplet),
                       output: ServiceCases.tcp(T.h1.mac, client.mac, T.h1.ip, hostPort, c, 44000, flags: 0x12),
                       counters: ["published_out"]),
            PacketCase(name: "published: on the backend's host, a flow from a droplet's own address is admitted and its sender learned", program: .transit, port: .droplet,
                       prepare: EgressCases.egress(),
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, rtsFlags: UInt8(MZ_RTS_F_DIRECT),
                                       inner: ServiceCases.tcp(T.h2.mac, T.h2.mac, T.h2.ip, 62222, T.a1, 8080)),
                       expect: .redirect(.a),
                       output: ServiceCases.tcp(T.h2.mac, T.a1mac, T.h2.ip, 62222, T.a1, 8080),
                       counters: ["deliver", "published_admit", "cache_learn"],
                       learns: [Learned(vni: T.vniA, ip: T.h2.ip, host: T.h2)]),
            PacketCase(name: "published: the same with policy on: admitted into conntrack, not judged", program: .transit, port: .droplet,
                       prepare: EgressCases.egress(),
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, rtsFlags: UInt8(MZ_RTS_F_DIRECT),
                                       inner: ServiceCases.tcp(T.h2.mac, T.h2.mac, T.h2.ip, 62222, T.a1, 8080)),
                       expect: .redirect(.a),
                       output: ServiceCases.tcp(T.h2.mac, T.a1mac, T.h2.ip, 62222, T.a1, 8080),
                       counters: ["deliver", "published_admit", "cache_learn", "policy_ct_learn"],
                       learns: [Learned(vni: T.vniA, ip: T.h2.ip, host: T.h2)],
                       after: { (dp: Dataplane) throws in
                           #expect(try dp.conntrackEntries().contains { $0.vni == T.vniA && Set([$0.a, $0.b]) == Set([T.h2.ip, T.a1]) })
                       }, policy: true),
            PacketCase(name: "published: the backend's reply to the publishing droplet goes back in the tunnel, not out through SNAT", program: .agent, port: .a,
                       prepare: { (dp: Dataplane) throws in
                           try EgressCases.egress()(dp)
                           try dp.setCachedHost(CachedHost(vni: T.vniA, ip: T.h2.ip, host: T.h2))
                       },
                       input: ServiceCases.tcp(T.a1mac, T.gwMAC, T.a1, 8080, T.h2.ip, 62222, flags: 0x12),
                       expect: .redirect(.droplet),
                       output: P.tunnel(from: T.h1, to: T.h2, vni: T.vniA, rts: T.h1, rtsFlags: UInt8(MZ_RTS_F_DIRECT),
                                        inner: ServiceCases.tcp(T.a1mac, T.gwMAC, T.a1, 8080, T.h2.ip, 62222, flags: 0x12)),
                       counters: ["encap_direct"],
                       after: { (dp: Dataplane) throws in #expect(try EgressCases.table(dp).isEmpty, "translated") }),
            PacketCase(name: "published: a host port with no service entry here", program: .transit, port: .droplet,
                       prepare: { (dp: Dataplane) throws in
                           try EgressCases.egress()(dp)
                           try dp.putPublished(PublishedPort(proto: .tcp, port: hostPort, vni: T.vniA, vip: ServiceCases.vip, vipPort: 80))
                       },
                       input: syn,
                       expect: .drop(MZ_DROP_PUB_NO_BACKEND)),
            PacketCase(name: "published: a fragment to a host port", program: .transit, port: .droplet,
                       prepare: publish(),
                       input: P.patched(syn, [20: 0x20]), // more fragments
                       expect: .drop(MZ_DROP_PUB_PROTO)),
            PacketCase(name: "published: a host port that is not published is the host's", program: .transit, port: .droplet,
                       prepare: publish(),
                       input: ServiceCases.tcp(client.mac, T.h1.mac, c, 44000, T.h1.ip, 30081),
                       expect: .pass),
        ]
    }
}

extension DataplaneTests.Packets {
    @Test("published flows are swept once expired by their state, or when either entry went; a reverse entry just made is kept")
    func publishedSweep() throws {
        let env = try TestEnvironment.get()
        try env.reset()
        let dp = env.dataplane
        typealias C = PublishedCases
        let c = C.client.ip, minute: UInt64 = 60_000_000_000
        try C.publish()(dp)
        // Kept: established and fresh; established a minute ago; a reverse
        // entry alone, just made (its flow entry comes right after).
        try C.flow(dp, client: c, 40001, backend: T.a5, 8080, host: T.h4, nat: 62001)
        try C.flow(dp, client: c, 40002, backend: T.a5, 8080, host: T.h4, nat: 62002, seen: Dataplane.nowNs - minute)
        try C.flow(dp, client: c, 40003, backend: T.a5, 8080, host: T.h4, nat: 62003, forward: false)
        // Swept: closed a minute ago; a SYN never answered for a minute; a
        // flow whose reverse entry went; a reverse entry alone for a minute.
        try C.flow(dp, client: c, 40004, backend: T.a5, 8080, host: T.h4, nat: 62004, state: MZ_CT_CLOSED, seen: Dataplane.nowNs - minute)
        try C.flow(dp, client: c, 40005, backend: T.a5, 8080, host: T.h4, nat: 62005, state: MZ_CT_SYN, seen: Dataplane.nowNs - minute)
        try C.flow(dp, client: c, 40006, backend: T.a5, 8080, host: T.h4, nat: 62006, back: false)
        try C.flow(dp, client: c, 40007, backend: T.a5, 8080, host: T.h4, nat: 62007, forward: false, seen: Dataplane.nowNs - minute)
        #expect(try dp.sweepPublished() == 3)
        #expect(try C.flows(dp) == [
            "\(c):40001 > :30080/6 => \(T.a5):8080 on \(T.h4.ip) via :62001, established",
            "\(c):40002 > :30080/6 => \(T.a5):8080 on \(T.h4.ip) via :62002, established",
        ])
        let backPorts = try dp.publishedBack.keys().map { UInt16(bigEndian: $0.nat_port) }.sorted()
        #expect(backPorts == [62001, 62002, 62003])
        try dp.publishedFlows.clear()
        try dp.publishedBack.clear()
    }
}
