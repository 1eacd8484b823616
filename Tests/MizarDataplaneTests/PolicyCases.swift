import CMizarABI
import MizarCore
@testable import MizarDataplane
import MizarPacket
import Testing

/// Rows for network policy, on the data plane with policy on: judgment at
/// the bouncers (B1 the source's, B2 the destination's), verdicts, the
/// hosts' conntrack, the detour of unknown flows, revocation.
enum PolicyCases {
    static let judge = UInt8(MZ_RTS_F_JUDGE)
    static let reverse = UInt8(MZ_RTS_F_REVERSE)
    static let direct = UInt8(MZ_RTS_F_DIRECT)
    static let tcpProto: UInt8 = 6, udpProto: UInt8 = 17

    // MARK: Options, as the programs write them

    static func opt(_ type: mz_opt_type, _ data: [UInt8]) -> GeneveOption {
        GeneveOption(optionClass: UInt16(MZ_GENEVE_CLASS), type: UInt8(MZ_GENEVE_CRITICAL) | UInt8(type.rawValue), data: data)
    }

    /// A bit set as the options carry it: 16 host-order (little-endian) words.
    static func bitBytes(_ list: [Int]) -> [UInt8] {
        bits(list).words.flatMap { w in (0..<4).map { UInt8(truncatingIfNeeded: w >> ($0 * 8)) } }
    }

    static func bits(_ list: [Int]) -> PolicyBitWords {
        var words = [UInt32](repeating: 0, count: PolicyBitWords.count)
        for b in list { words[b / 32] |= 1 << UInt32(b % 32) }
        return PolicyBitWords(words: words)
    }

    static func verdict(_ host: HostAddress, reverse: Bool = false) -> GeneveOption {
        opt(MZ_OPT_VERDICT, host.ip.bytes + [reverse ? UInt8(MZ_POL_F_REVERSE) : 0, 0, 0, 0])
    }

    static func policy(members: [Int], egressOK: Bool, reverse: Bool = false, dstHost: IPv4Address = .zero) -> GeneveOption {
        let flags = (egressOK ? UInt8(MZ_POL_F_EGRESS_OK) : 0) | (reverse ? UInt8(MZ_POL_F_REVERSE) : 0)
        return opt(MZ_OPT_POLICY, [flags, 0, 0, 0] + dstHost.bytes + bitBytes(members))
    }

    static func egress(_ b: [Int]) -> GeneveOption { opt(MZ_OPT_POLICY_EG, bitBytes(b)) }

    static func revoke(_ ip: IPv4Address) -> GeneveOption { opt(MZ_OPT_REVOKE, ip.bytes + [0, 0, 0, 0]) }

    // MARK: Tables

    /// A conntrack entry for a flow opened by (src, sport).
    static func admit(_ dp: Dataplane, _ src: IPv4Address, _ sport: UInt16, _ dst: IPv4Address, _ dport: UInt16, _ proto: UInt8,
                      state: mz_ct_state = MZ_CT_ESTABLISHED, age: UInt64 = 0) throws {
        let s = UInt64(src.value) << 16 | UInt64(sport), d = UInt64(dst.value) << 16 | UInt64(dport)
        let second = s > d
        let key = mz_flow_key(vni: T.vniA.value, src: (second ? dst : src).networkOrder, dst: (second ? src : dst).networkOrder,
                              sport: (second ? dport : sport).bigEndian, dport: (second ? sport : dport).bigEndian, proto: proto,
                              reserved: (0, 0, 0))
        let now = Dataplane.nowNs
        try dp.conntrack.update(key, mz_ct(admitted_ns: now - age, seen_ns: now - age, state: UInt8(state.rawValue),
                                           flags: second ? UInt8(MZ_CT_F_REPLY_FIRST) : 0, proto: proto, reserved: 0, reserved2: 0))
    }

    /// The entry of the flow between (x, xport) and (y, yport), either way.
    static func entry(_ dp: Dataplane, _ x: IPv4Address, _ xport: UInt16, _ y: IPv4Address, _ yport: UInt16) throws -> ConntrackEntry? {
        try dp.conntrackEntries().first { ($0.a == x && $0.aPort == xport && $0.b == y && $0.bPort == yport) ||
                                          ($0.a == y && $0.aPort == yport && $0.b == x && $0.bPort == xport) }
    }

    /// Who opened an entry's flow.
    static func opener(_ e: ConntrackEntry) -> IPv4Address { e.openedByB ? e.b : e.a }

    static func cache(_ dp: Dataplane, _ ip: IPv4Address, _ host: HostAddress) throws {
        try dp.setCachedHost(CachedHost(vni: T.vniA, ip: ip, host: host, learnedNs: 1))
    }

    static func isolate(_ dp: Dataplane, _ ip: IPv4Address, members: [Int] = [], ingress: [PolicyRuleEntry]? = nil,
                        egress: [PolicyRuleEntry]? = nil, named: [PolicyNamedPort] = []) throws {
        if let ingress { try dp.setPolicySet(T.vniA, id: 0x1111, ingress) }
        if let egress { try dp.setPolicySet(T.vniA, id: 0x2222 + UInt64(ip.value & 0xff), egress) }
        try dp.setPolicyEndpoint(PolicyEndpointEntry(vni: T.vniA, ip: ip, members: bits(members), ingress: ingress == nil ? 0 : 0x1111,
                                                     egress: egress == nil ? 0 : 0x2222 + UInt64(ip.value & 0xff), named: named))
    }

    static func rule(_ proto: UInt8, _ port: UInt16, _ b: [Int], any: Bool = false) -> PolicyRuleEntry {
        PolicyRuleEntry(proto: proto, first: port, last: port, anyPeer: any, bits: bits(b))
    }

    // MARK: Packets

    static let a1ToA3 = P.udp(T.a1mac, T.a3mac, T.a1, T.a3)
    static let a3ToA1 = P.udp(T.a3mac, T.gwMAC, T.a3, T.a1)
    static let a3ToA5 = P.udp(T.a3mac, T.a5mac, T.a3, T.a5)
    static let a3ToA4 = P.udp(T.a3mac, T.gwMAC, T.a3, T.a4)
    static let a4ToA3 = P.udp(T.a4mac, T.gwMAC, T.a4, T.a3)
    static let a4ToA1 = P.udp(T.a4mac, T.gwMAC, T.a4, T.a1)
    static let a1ToA4 = P.udp(T.a1mac, T.gwMAC, T.a1, T.a4)
    static let a1ToA2 = P.udp(T.a1mac, T.a2mac, T.a1, T.a2)

    static func tcp(_ smac: MACAddress, _ dmac: MACAddress, _ src: IPv4Address, _ dst: IPv4Address, _ sport: UInt16, _ dport: UInt16,
                    flags: UInt8) -> [UInt8] {
        Packet.tcpPacket(srcMAC: smac, dstMAC: dmac, srcIP: src, dstIP: dst, srcPort: sport, dstPort: dport, seq: 1, flags: flags, payload: [])
    }

    static var all: [PacketCase] {
        var rows = agentRows + transitRows
        for i in rows.indices { rows[i].policy = true }
        return rows
    }

    // MARK: The agent: what a host sends

    static var agentRows: [PacketCase] {
        [
            PacketCase(name: "a new flow goes to a bouncer of the source's subnet to be judged", program: .agent, port: .a,
                       input: a1ToA3, expect: .redirect(.droplet),
                       output: P.tunnel(from: T.h1, to: T.h4, vni: T.vniA, rts: T.h1, rtsFlags: judge, inner: a1ToA3),
                       counters: ["policy_judge"], vni: T.vniA),
            PacketCase(name: "an admitted flow goes straight to the destination's host", program: .agent, port: .a,
                       prepare: { dp in try admit(dp, T.a1, 40000, T.a3, 7, udpProto); try cache(dp, T.a3, T.h2) },
                       input: a1ToA3, expect: .redirect(.droplet),
                       output: P.tunnel(from: T.h1, to: T.h2, vni: T.vniA, rts: T.h1, rtsFlags: direct, inner: a1ToA3),
                       counters: ["encap_direct"]),
            PacketCase(name: "a flow admitted before its endpoint was revoked is judged again", program: .agent, port: .a,
                       prepare: { dp in
                           try admit(dp, T.a1, 40000, T.a3, 7, udpProto); try cache(dp, T.a3, T.h2)
                           try dp.revokeLocal(T.vniA, T.a1)
                       },
                       input: a1ToA3, expect: .redirect(.droplet),
                       output: P.tunnel(from: T.h1, to: T.h4, vni: T.vniA, rts: T.h1, rtsFlags: judge, inner: a1ToA3),
                       counters: ["policy_judge"]),
            PacketCase(name: "a reply whose flow needs judging again goes to the opener's subnet, marked REVERSE", program: .agent, port: .a,
                       prepare: { dp in try admit(dp, T.a4, 7, T.a1, 40000, udpProto); try dp.revokeLocal(T.vniA, T.a1) },
                       input: a1ToA4, expect: .redirect(.droplet),
                       output: P.tunnel(from: T.h1, to: T.h3, vni: T.vniA, rts: T.h1, rtsFlags: judge | reverse, inner: a1ToA4),
                       counters: ["policy_judge"]),
            PacketCase(name: "a reply whose flow was revoked is still marked REVERSE after the conntrack sweep (the entry says who opened it)",
                       program: .agent, port: .a,
                       prepare: { dp in
                           try admit(dp, T.a4, 7, T.a1, 40000, udpProto); try dp.revokeLocal(T.vniA, T.a1)
                           #expect(try dp.sweepConntrack() == 0)
                       },
                       input: a1ToA4, expect: .redirect(.droplet),
                       output: P.tunnel(from: T.h1, to: T.h3, vni: T.vniA, rts: T.h1, rtsFlags: judge | reverse, inner: a1ToA4),
                       counters: ["policy_judge"]),
            PacketCase(name: "a reply of an admitted flow passes, straight to the opener's host", program: .agent, port: .a,
                       prepare: { dp in try admit(dp, T.a4, 7, T.a1, 40000, udpProto); try cache(dp, T.a4, T.h3) },
                       input: a1ToA4, expect: .redirect(.droplet),
                       output: P.tunnel(from: T.h1, to: T.h3, vni: T.vniA, rts: T.h1, rtsFlags: direct, inner: a1ToA4),
                       counters: ["encap_direct"]),
            PacketCase(name: "an expired UDP entry admits nothing", program: .agent, port: .a,
                       prepare: { dp in
                           try admit(dp, T.a1, 40000, T.a3, 7, udpProto, state: MZ_CT_OTHER, age: UInt64(MZ_CT_TIMEOUT_UDP + 1) * 1_000_000_000)
                           try cache(dp, T.a3, T.h2)
                       },
                       input: a1ToA3, expect: .redirect(.droplet),
                       output: P.tunnel(from: T.h1, to: T.h4, vni: T.vniA, rts: T.h1, rtsFlags: judge, inner: a1ToA3),
                       counters: ["policy_judge"]),
            PacketCase(name: "same host: a new flow is judged too", program: .agent, port: .a,
                       input: a1ToA2, expect: .redirect(.droplet),
                       output: P.tunnel(from: T.h1, to: T.h4, vni: T.vniA, rts: T.h1, rtsFlags: judge, inner: a1ToA2),
                       counters: ["policy_judge"]),
            PacketCase(name: "same host: an admitted flow is delivered", program: .agent, port: .a,
                       prepare: { dp in try admit(dp, T.a1, 40000, T.a2, 7, udpProto) },
                       input: a1ToA2, expect: .redirect(.b), counters: ["local_deliver"]),
            PacketCase(name: "same host: revoking the destination stops the flow too", program: .agent, port: .a,
                       prepare: { dp in try admit(dp, T.a1, 40000, T.a2, 7, udpProto); try dp.revokeLocal(T.vniA, T.a2) },
                       input: a1ToA2, expect: .redirect(.droplet),
                       output: P.tunnel(from: T.h1, to: T.h4, vni: T.vniA, rts: T.h1, rtsFlags: judge, inner: a1ToA2),
                       counters: ["policy_judge"]),
            PacketCase(name: "judged here (this host bounces for the subnet): admitted, entry installed, delivered", program: .agent, port: .a,
                       roles: Roles(bouncerS1: true, s1Bouncers: [T.h1]),
                       input: a1ToA2, expect: .redirect(.b),
                       counters: ["policy_judge", "self_handoff", "policy_admit", "policy_ct_learn", "deliver"],
                       after: { dp in
                           let e = try #require(try entry(dp, T.a1, 40000, T.a2, 7))
                           #expect(opener(e) == T.a1 && e.proto == udpProto)
                       }),
            PacketCase(name: "judged here and denied: the destination's ingress admits nothing", program: .agent, port: .a,
                       roles: Roles(bouncerS1: true, s1Bouncers: [T.h1]),
                       prepare: { dp in try isolate(dp, T.a2, ingress: []) },
                       input: a1ToA2, expect: .drop(MZ_DROP_POL_INGRESS),
                       output: P.tunnel(from: T.h1, to: T.h1, vni: T.vniA, rts: T.h1, rtsFlags: judge, inner: a1ToA2),
                       counters: ["policy_judge", "self_handoff"],
                       after: { dp throws in #expect(try dp.conntrackEntries().isEmpty) }),
            PacketCase(name: "a SYN-ACK from the answering side makes the entry established", program: .agent, port: .a,
                       prepare: { dp in try admit(dp, T.a3, 33000, T.a1, 80, tcpProto, state: MZ_CT_SYN); try cache(dp, T.a3, T.h2) },
                       input: tcp(T.a1mac, T.a3mac, T.a1, T.a3, 80, 33000, flags: 0x12), expect: .redirect(.droplet),
                       output: P.tunnel(from: T.h1, to: T.h2, vni: T.vniA, rts: T.h1, rtsFlags: direct,
                                        inner: tcp(T.a1mac, T.a3mac, T.a1, T.a3, 80, 33000, flags: 0x12)),
                       counters: ["encap_direct"],
                       after: { dp throws in #expect(try entry(dp, T.a1, 80, T.a3, 33000)?.stateName == "established") }),
            PacketCase(name: "a FIN makes the entry closing; a RST closed", program: .agent, port: .a,
                       prepare: { dp in try admit(dp, T.a3, 33000, T.a1, 80, tcpProto); try cache(dp, T.a3, T.h2) },
                       input: tcp(T.a1mac, T.a3mac, T.a1, T.a3, 80, 33000, flags: 0x11), expect: .redirect(.droplet),
                       output: P.tunnel(from: T.h1, to: T.h2, vni: T.vniA, rts: T.h1, rtsFlags: direct,
                                        inner: tcp(T.a1mac, T.a3mac, T.a1, T.a3, 80, 33000, flags: 0x11)),
                       counters: ["encap_direct"],
                       after: { dp in
                           #expect(try entry(dp, T.a1, 80, T.a3, 33000)?.stateName == "closing")
                           let rst = tcp(T.a1mac, T.a3mac, T.a1, T.a3, 80, 33000, flags: 0x04)
                           let r = try TestEnvironment.get(policy: true).dataplane.programs[.tc]!.agent.testRun(rst, ifindex: TestEnvironment.get(policy: true).ifs.a)
                           #expect(r.retval == 7)
                           #expect(try entry(dp, T.a1, 80, T.a3, 33000)?.stateName == "closed")
                       }),
            PacketCase(name: "a new SYN on the ports of a closed connection is judged anew", program: .agent, port: .a,
                       prepare: { dp in try admit(dp, T.a1, 33000, T.a3, 80, tcpProto, state: MZ_CT_CLOSED); try cache(dp, T.a3, T.h2) },
                       input: P.tcp(T.a1mac, T.a3mac, T.a1, T.a3), expect: .redirect(.droplet),
                       output: P.tunnel(from: T.h1, to: T.h4, vni: T.vniA, rts: T.h1, rtsFlags: judge, inner: P.tcp(T.a1mac, T.a3mac, T.a1, T.a3)),
                       counters: ["policy_judge"]),
            PacketCase(name: "ICMP echo: the identifier keys the flow", program: .agent, port: .a,
                       prepare: { dp in try admit(dp, T.a1, 7, T.a3, 0, 1); try cache(dp, T.a3, T.h2) },
                       input: P.ping(T.a1mac, T.a3mac, T.a1, T.a3), expect: .redirect(.droplet),
                       output: P.tunnel(from: T.h1, to: T.h2, vni: T.vniA, rts: T.h1, rtsFlags: direct, inner: P.ping(T.a1mac, T.a3mac, T.a1, T.a3)),
                       counters: ["encap_direct"]),
            PacketCase(name: "ARP is never judged", program: .agent, port: .a,
                       input: P.arpRequest(from: T.a1mac, T.a1, for: T.a3), expect: .redirect(.droplet),
                       output: P.tunnel(from: T.h1, to: T.h4, vni: T.vniA, rts: T.h1, inner: P.arpRequest(from: T.a1mac, T.a1, for: T.a3)),
                       counters: ["encap_to_bouncer"]),
        ]
    }

    // MARK: The transit program: bouncers and hosts

    static var transitRows: [PacketCase] {
        let s1 = Roles(bouncerS1: true)
        return [
            // B1, both ends in a subnet it bounces for.
            PacketCase(name: "B1: admitted, the verdict goes back to the sending host naming the destination's", program: .transit, port: .droplet,
                       roles: s1,
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, rtsFlags: judge, inner: a3ToA5), expect: .tx,
                       output: P.tunnel(from: T.h1, to: T.h2, vni: T.vniA, rts: T.h2, options: [verdict(T.h4), P.rts(T.h2)], inner: a3ToA5),
                       counters: ["policy_admit"], vni: T.vniA),
            PacketCase(name: "B1: the destination's ingress denies", program: .transit, port: .droplet,
                       roles: s1, prepare: { dp in try isolate(dp, T.a5, ingress: [rule(tcpProto, 80, [3])]) },
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, rtsFlags: judge, inner: a3ToA5),
                       expect: .drop(MZ_DROP_POL_INGRESS)),
            PacketCase(name: "B1: the source's egress denies", program: .transit, port: .droplet,
                       roles: s1, prepare: { dp in try isolate(dp, T.a3, egress: [rule(udpProto, 8, [], any: true)]) },
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, rtsFlags: judge, inner: a3ToA5),
                       expect: .drop(MZ_DROP_POL_EGRESS)),
            PacketCase(name: "B1: admitted by a rule on the port for the source's bits", program: .transit, port: .droplet,
                       roles: s1, prepare: { dp in
                           try isolate(dp, T.a5, ingress: [rule(tcpProto, 7, [3]), rule(udpProto, 7, [3])])
                           try isolate(dp, T.a3, members: [3])
                       },
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, rtsFlags: judge, inner: a3ToA5), expect: .tx,
                       output: P.tunnel(from: T.h1, to: T.h2, vni: T.vniA, rts: T.h2, options: [verdict(T.h4), P.rts(T.h2)], inner: a3ToA5),
                       counters: ["policy_admit"]),
            PacketCase(name: "B1: the first packet of a reply judged as its flow, REVERSE: the verdict names the opener's host", program: .transit,
                       port: .droplet, roles: s1,
                       prepare: { dp in try isolate(dp, T.a5, ingress: [rule(udpProto, 7, [3])]); try isolate(dp, T.a3, members: [3]) },
                       input: P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h4, rtsFlags: judge | reverse, inner: P.udp(T.a5mac, T.a3mac, T.a5, T.a3, sport: 7, dport: 40000)),
                       expect: .tx,
                       output: P.tunnel(from: T.h1, to: T.h4, vni: T.vniA, rts: T.h4, options: [verdict(T.h2, reverse: true), P.rts(T.h4)],
                                        inner: P.udp(T.a5mac, T.a3mac, T.a5, T.a3, sport: 7, dport: 40000)),
                       counters: ["policy_admit"]),

            // B1, the destination in another subnet: on to B2 with the source's side.
            PacketCase(name: "B1: the source's members go on to the destination's bouncer (egress decided)", program: .transit, port: .droplet,
                       roles: s1, prepare: { dp in try isolate(dp, T.a3, members: [2, 300]) },
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, rtsFlags: judge, inner: a3ToA4), expect: .tx,
                       output: P.tunnel(from: T.h1, to: T.h3, vni: T.vniA, rts: T.h2, ttl: 63,
                                        options: [policy(members: [2, 300], egressOK: true), P.rts(T.h2, flags: judge)], inner: a3ToA4),
                       counters: ["policy_forward"]),
            PacketCase(name: "B1: egress undecided: the bits its rules admit go too", program: .transit, port: .droplet,
                       roles: s1, prepare: { dp in try isolate(dp, T.a3, members: [2], egress: [rule(udpProto, 7, [9]), rule(tcpProto, 7, [10])]) },
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, rtsFlags: judge, inner: a3ToA4), expect: .tx,
                       output: P.tunnel(from: T.h1, to: T.h3, vni: T.vniA, rts: T.h2, ttl: 63,
                                        options: [policy(members: [2], egressOK: false), egress([9]), P.rts(T.h2, flags: judge)], inner: a3ToA4),
                       counters: ["policy_forward"]),
            PacketCase(name: "B1: too big to carry the judgment", program: .transit, port: .droplet,
                       roles: s1,
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, rtsFlags: judge,
                                       inner: Packet.udpPacket(srcMAC: T.a3mac, dstMAC: T.gwMAC, srcIP: T.a3, dstIP: T.a4, srcPort: 40000, dstPort: 7,
                                                               payload: [UInt8](repeating: 7, count: 1400))),
                       expect: .drop(MZ_DROP_POL_NO_ROOM)),
            PacketCase(name: "asked to judge a flow whose source it does not bounce for", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, rtsFlags: judge, inner: a3ToA4),
                       expect: .drop(MZ_DROP_POL_NO_JUDGE)),

            // B2: the destination's bouncer decides.
            PacketCase(name: "B2: admitted on the source's members; the policy options give way to the verdict", program: .transit, port: .droplet,
                       roles: s1, prepare: { dp in try isolate(dp, T.a3, ingress: [rule(udpProto, 7, [3])]) },
                       input: P.tunnel(from: T.h3, to: T.h1, vni: T.vniA, rts: T.h3, ttl: 63,
                                       options: [policy(members: [3], egressOK: true), P.rts(T.h3, flags: judge)], inner: a4ToA3),
                       expect: .tx,
                       output: P.tunnel(from: T.h1, to: T.h3, vni: T.vniA, rts: T.h3, options: [verdict(T.h2), P.rts(T.h3)], inner: a4ToA3),
                       counters: ["policy_admit"]),
            PacketCase(name: "B2: the source's members are not admitted", program: .transit, port: .droplet,
                       roles: s1, prepare: { dp in try isolate(dp, T.a3, ingress: [rule(udpProto, 7, [3])]) },
                       input: P.tunnel(from: T.h3, to: T.h1, vni: T.vniA, rts: T.h3, ttl: 63,
                                       options: [policy(members: [4], egressOK: true), P.rts(T.h3, flags: judge)], inner: a4ToA3),
                       expect: .drop(MZ_DROP_POL_INGRESS)),
            PacketCase(name: "B2: egress by a named port the destination serves as this port", program: .transit, port: .droplet,
                       roles: s1, prepare: { dp in try isolate(dp, T.a3, named: [PolicyNamedPort(bit: 9, proto: udpProto, port: 7)]) },
                       input: P.tunnel(from: T.h3, to: T.h1, vni: T.vniA, rts: T.h3, ttl: 63,
                                       options: [policy(members: [], egressOK: false), egress([9]), P.rts(T.h3, flags: judge)], inner: a4ToA3),
                       expect: .tx,
                       output: P.tunnel(from: T.h1, to: T.h3, vni: T.vniA, rts: T.h3, options: [verdict(T.h2), P.rts(T.h3)], inner: a4ToA3),
                       counters: ["policy_admit"]),
            PacketCase(name: "B2: egress by the destination's members", program: .transit, port: .droplet,
                       roles: s1, prepare: { dp in try isolate(dp, T.a3, members: [5]) },
                       input: P.tunnel(from: T.h3, to: T.h1, vni: T.vniA, rts: T.h3, ttl: 63,
                                       options: [policy(members: [], egressOK: false), egress([5, 6]), P.rts(T.h3, flags: judge)], inner: a4ToA3),
                       expect: .tx,
                       output: P.tunnel(from: T.h1, to: T.h3, vni: T.vniA, rts: T.h3, options: [verdict(T.h2), P.rts(T.h3)], inner: a4ToA3),
                       counters: ["policy_admit"]),
            PacketCase(name: "B2: a named port on another port number does not admit", program: .transit, port: .droplet,
                       roles: s1, prepare: { dp in try isolate(dp, T.a3, named: [PolicyNamedPort(bit: 9, proto: udpProto, port: 8)]) },
                       input: P.tunnel(from: T.h3, to: T.h1, vni: T.vniA, rts: T.h3, ttl: 63,
                                       options: [policy(members: [], egressOK: false), egress([9]), P.rts(T.h3, flags: judge)], inner: a4ToA3),
                       expect: .drop(MZ_DROP_POL_EGRESS)),
            PacketCase(name: "B2: an ipBlock of the source's address admits it", program: .transit, port: .droplet,
                       roles: s1, prepare: { dp in
                           try isolate(dp, T.a3, ingress: [rule(udpProto, 7, [40])])
                           try dp.replacePolicyBlocks(T.vniA, [T.cidr("10.0.2.0/24"): bits([40]), T.cidr("10.0.2.30/32"): bits([41])])
                       },
                       input: P.tunnel(from: T.h3, to: T.h1, vni: T.vniA, rts: T.h3, ttl: 63,
                                       options: [policy(members: [], egressOK: true), P.rts(T.h3, flags: judge)], inner: a4ToA3),
                       expect: .drop(MZ_DROP_POL_INGRESS),
                       after: { dp in
                           // The /32 is a4's own, and holds only bit 41: the /24's bit 40 is an except of it.
                           try dp.replacePolicyBlocks(T.vniA, [T.cidr("10.0.2.0/24"): bits([40])])
                           let again = P.tunnel(from: T.h3, to: T.h1, vni: T.vniA, rts: T.h3, ttl: 63,
                                                options: [policy(members: [], egressOK: true), P.rts(T.h3, flags: judge)], inner: a4ToA3)
                           let env = try TestEnvironment.get(policy: true)
                           #expect(try env.dataplane.programs[.xdp]!.transit.testRun(again, ifindex: env.ifs.droplet).retval == 3) // XDP_TX
                       }),

            // Verdicts on the hosts.
            PacketCase(name: "the sending host installs its entry and sends the packet on with the verdict", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h1, options: [verdict(T.h2), P.rts(T.h1)], inner: a1ToA3),
                       expect: .tx,
                       output: P.tunnel(from: T.h1, to: T.h2, vni: T.vniA, rts: T.h1, options: [verdict(T.h2), P.rts(T.h1, flags: direct)], inner: a1ToA3),
                       counters: ["policy_ct_learn", "cache_learn"], learns: [Learned(vni: T.vniA, ip: T.a3, host: T.h2)],
                       after: { dp throws in #expect(try entry(dp, T.a1, 40000, T.a3, 7).map(opener) == T.a1) }),
            PacketCase(name: "the destination's host installs its entry and delivers", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, options: [verdict(T.h1), P.rts(T.h2, flags: direct)], inner: a3ToA1),
                       expect: .redirect(.a), output: P.withDstMAC(a3ToA1, T.a1mac),
                       counters: ["policy_ct_learn", "cache_learn", "deliver"], learns: [Learned(vni: T.vniA, ip: T.a3, host: T.h2)],
                       after: { dp throws in #expect(try entry(dp, T.a3, 40000, T.a1, 7).map(opener) == T.a3) }),
            PacketCase(name: "a REVERSE verdict records the destination as the flow's opener", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, options: [verdict(T.h1, reverse: true), P.rts(T.h2)], inner: a3ToA1),
                       expect: .redirect(.a), output: P.withDstMAC(a3ToA1, T.a1mac),
                       counters: ["policy_ct_learn", "cache_learn", "deliver"], learns: [Learned(vni: T.vniA, ip: T.a3, host: T.h2)],
                       after: { dp throws in #expect(try entry(dp, T.a3, 40000, T.a1, 7).map(opener) == T.a1) }),
            PacketCase(name: "a verdict for a host that neither sent the packet nor has its destination", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h2, options: [verdict(T.h4), P.rts(T.h2)], inner: a3ToA5),
                       expect: .drop(MZ_DROP_POL_VERDICT),
                       after: { dp throws in #expect(try dp.conntrackEntries().isEmpty) }),

            // The direct path: never delivered unjudged.
            PacketCase(name: "a direct packet of a flow this host does not know goes to a bouncer, not the endpoint", program: .transit,
                       port: .droplet,
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, rtsFlags: direct, inner: a3ToA1), expect: .tx,
                       output: P.tunnel(from: T.h1, to: T.h4, vni: T.vniA, rts: T.h2, rtsFlags: judge, ttl: 63, inner: a3ToA1),
                       counters: ["policy_reroute"]),
            PacketCase(name: "a direct reply of a revoked flow goes to the opener's bouncer, REVERSE", program: .transit, port: .droplet,
                       prepare: { dp in try admit(dp, T.a1, 7, T.a4, 40000, udpProto); try dp.revokeLocal(T.vniA, T.a1) },
                       input: P.tunnel(from: T.h3, to: T.h1, vni: T.vniA, rts: T.h3, rtsFlags: direct, inner: P.udp(T.a4mac, T.gwMAC, T.a4, T.a1, sport: 40000, dport: 7)),
                       expect: .tx,
                       output: P.tunnel(from: T.h1, to: T.h4, vni: T.vniA, rts: T.h3, rtsFlags: judge | reverse, ttl: 63,
                                        inner: P.udp(T.a4mac, T.gwMAC, T.a4, T.a1, sport: 40000, dport: 7)),
                       counters: ["policy_reroute"]),
            PacketCase(name: "a direct packet of an admitted flow is delivered", program: .transit, port: .droplet,
                       prepare: { dp in try admit(dp, T.a3, 40000, T.a1, 7, udpProto) },
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, rtsFlags: direct, inner: a3ToA1),
                       expect: .redirect(.a), output: P.withDstMAC(a3ToA1, T.a1mac),
                       counters: ["deliver", "cache_learn"], learns: [Learned(vni: T.vniA, ip: T.a3, host: T.h2)]),
            PacketCase(name: "an unknown direct flow judged right here, when this host bounces for its source", program: .transit, port: .droplet,
                       roles: Roles(bouncerS1: true, s1Bouncers: [T.h1]),
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, rtsFlags: direct, inner: a3ToA1), expect: .tx,
                       output: P.tunnel(from: T.h1, to: T.h2, vni: T.vniA, rts: T.h2, options: [verdict(T.h1), P.rts(T.h2)], inner: a3ToA1),
                       counters: ["policy_reroute", "policy_admit"]),

            // Revocation.
            PacketCase(name: "a bouncer's revocation marks a local endpoint's flows", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h4, sport: 50000, options: [revoke(T.a1)],
                                       inner: Packet.ethernet(dst: .zero, src: .zero, etherType: UInt16(MZ_ETH_P_REVOKE), payload: [])),
                       expect: .consumed, counters: ["policy_revoked"],
                       after: { dp in
                           let a1 = try #require(try dp.localRevokedNs(T.vniA, T.a1)), a2 = try #require(try dp.localRevokedNs(T.vniA, T.a2))
                           #expect(a1 > a2, "a1 revoked after a2 was made")
                       }),
            PacketCase(name: "a revocation for no endpoint here", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h4, sport: 50000, options: [revoke(T.a3)],
                                       inner: Packet.ethernet(dst: .zero, src: .zero, etherType: UInt16(MZ_ETH_P_REVOKE), payload: [])),
                       expect: .drop(MZ_DROP_POL_VERDICT)),
            PacketCase(name: "a revocation from a non-droplet is not believed", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.stranger, to: T.h1, vni: T.vniA, rts: T.stranger, sport: 50000, options: [revoke(T.a1)],
                                       inner: Packet.ethernet(dst: .zero, src: .zero, etherType: UInt16(MZ_ETH_P_REVOKE), payload: [])),
                       expect: .drop(MZ_DROP_NOT_DROPLET)),
            PacketCase(name: "a policy option of the wrong length", program: .transit, port: .droplet, roles: s1,
                       input: P.tunnel(from: T.h3, to: T.h1, vni: T.vniA, rts: T.h3,
                                       options: [opt(MZ_OPT_POLICY, [0, 0, 0, 0]), P.rts(T.h3, flags: judge)], inner: a4ToA3),
                       expect: .drop(MZ_DROP_GENEVE_OPTIONS)),
        ]
    }
}

extension DataplaneTests.Packets {
    @Test("the conntrack sweep drops expired entries and those with no end on this host, and keeps a revoked one until its timeout")
    func conntrackSweep() throws {
        let env = try TestEnvironment.get(policy: true)
        let dp = env.dataplane
        try env.reset()
        try seed(env, Roles())
        typealias C = PolicyCases
        // Kept: revoked (a1 is local), it names a4 as the opener.
        try C.admit(dp, T.a4, 7, T.a1, 40000, C.udpProto)
        try dp.revokeLocal(T.vniA, T.a1)
        // Swept: expired; no end on this host (a3 and a4 are elsewhere).
        try C.admit(dp, T.a4, 8, T.a1, 40001, C.udpProto, state: MZ_CT_OTHER, age: UInt64(MZ_CT_TIMEOUT_UDP + 1) * 1_000_000_000)
        try C.admit(dp, T.a4, 9, T.a3, 40002, C.udpProto)
        #expect(try dp.sweepConntrack() == 2)
        let left = try dp.conntrackEntries()
        #expect(left.count == 1, "\(left)")
        let kept = try C.entry(dp, T.a4, 7, T.a1, 40000)
        #expect(kept.map(C.opener) == T.a4)
        try dp.conntrack.clear()
    }
}
