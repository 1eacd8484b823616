import CMizarABI
import MizarCore
@testable import MizarDataplane
import MizarPacket

/// Rows for the transit program: packets arriving on the droplet interface.
enum TransitCases {
    static let innerToA1 = P.udp(T.a3mac, T.gwMAC, T.a3, T.a1)
    static let fromH2 = P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, inner: innerToA1)
    static let geneveAt = 42 // offset of the Geneve header in an option-less outer IPv4 frame

    static var all: [PacketCase] {
        [
            // The host's own traffic is not ours.
            PacketCase(name: "IPv6 frame passes to the stack", program: .transit, port: .droplet,
                       input: Packet.ethernet(dst: T.h1.mac, src: T.h2.mac, etherType: 0x86dd, payload: [UInt8](repeating: 0x60, count: 40)),
                       expect: .pass),
            PacketCase(name: "TCP to the host passes", program: .transit, port: .droplet,
                       input: P.tcp(T.h2.mac, T.h1.mac, T.h2.ip, T.h1.ip), expect: .pass),
            PacketCase(name: "UDP to another port passes", program: .transit, port: .droplet,
                       input: P.udp(T.h2.mac, T.h1.mac, T.h2.ip, T.h1.ip, dport: 53), expect: .pass),
            PacketCase(name: "Geneve for another droplet passes", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h2, to: T.h3, vni: T.vniA, rts: T.h2, inner: innerToA1), expect: .pass),
            PacketCase(name: "a later fragment passes", program: .transit, port: .droplet,
                       input: P.patched(fromH2, [20: 0x00, 21: 0x10]), expect: .pass),
            PacketCase(name: "unconfigured droplet passes everything", program: .transit, port: .droplet,
                       prepare: { try $0.droplet.update(0, mz_droplet()) }, input: fromH2, expect: .pass),

            // Malformed outer headers.
            PacketCase(name: "truncated outer IPv4", program: .transit, port: .droplet,
                       input: Packet.ethernet(dst: T.h1.mac, src: T.h2.mac, etherType: 0x0800, payload: [0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17]),
                       expect: .drop(MZ_DROP_OUTER_IP), tcRefusedByKernel: true),
            PacketCase(name: "outer IHL below 5", program: .transit, port: .droplet,
                       input: P.patched(fromH2, [14: 0x44]), expect: .drop(MZ_DROP_OUTER_IP)),
            PacketCase(name: "outer total length beyond the frame", program: .transit, port: .droplet,
                       input: P.patched(fromH2, [16: 0x05, 17: 0xdc]), expect: .drop(MZ_DROP_OUTER_IP)),
            PacketCase(name: "fragmented tunnel packet", program: .transit, port: .droplet,
                       input: P.patched(fromH2, [20: 0x20]), expect: .drop(MZ_DROP_OUTER_FRAGMENT)),
            PacketCase(name: "Geneve header cut short", program: .transit, port: .droplet,
                       input: P.rawGeneve([0x00, 0x00, 0x65]), expect: .drop(MZ_DROP_TRUNC_GENEVE)),
            PacketCase(name: "Geneve version 1", program: .transit, port: .droplet,
                       input: P.patched(fromH2, [geneveAt: 0x44]), expect: .drop(MZ_DROP_GENEVE_VERSION)),
            PacketCase(name: "Geneve control (O) packet", program: .transit, port: .droplet,
                       input: P.patched(fromH2, [geneveAt + 1: 0x80]), expect: .drop(MZ_DROP_GENEVE_OAM)),
            PacketCase(name: "Geneve carrying IPv4, not Ethernet", program: .transit, port: .droplet,
                       input: P.patched(fromH2, [geneveAt + 2: 0x08, geneveAt + 3: 0x00]), expect: .drop(MZ_DROP_GENEVE_PROTO)),
            PacketCase(name: "option length beyond the packet", program: .transit, port: .droplet,
                       input: P.patched(fromH2, [geneveAt: 0x3f]), expect: .drop(MZ_DROP_GENEVE_OPTIONS)),
            PacketCase(name: "an option overruns the option area", program: .transit, port: .droplet,
                       input: P.patched(fromH2, [geneveAt + 11: 0x1f]), expect: .drop(MZ_DROP_GENEVE_OPTIONS)),
            PacketCase(name: "RTS option of the wrong length", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2,
                                       options: [GeneveOption(optionClass: UInt16(MZ_GENEVE_CLASS), type: 1, data: [1, 2, 3, 4, 5, 6, 7, 8])],
                                       inner: innerToA1),
                       expect: .drop(MZ_DROP_GENEVE_OPTIONS)),
            PacketCase(name: "unknown critical option", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2,
                                       options: [P.rts(T.h2), GeneveOption(optionClass: 0x0102, type: 0x85, data: [0, 0, 0, 0])],
                                       inner: innerToA1),
                       expect: .drop(MZ_DROP_GENEVE_CRITICAL)),
            PacketCase(name: "no RTS option", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, options: [], inner: innerToA1),
                       expect: .drop(MZ_DROP_NO_RTS)),
            PacketCase(name: "unknown VNI", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h2, to: T.h1, vni: try! VNI(999), rts: T.h2, inner: innerToA1),
                       expect: .drop(MZ_DROP_UNKNOWN_VNI)),
            PacketCase(name: "inner frame cut short", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, sport: 50000, inner: [1, 2, 3, 4, 5, 6]),
                       expect: .drop(MZ_DROP_TRUNC_INNER)),
            PacketCase(name: "inner IPv6", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, sport: 50000,
                                       inner: Packet.ethernet(dst: T.a1mac, src: T.a3mac, etherType: 0x86dd, payload: [UInt8](repeating: 0x60, count: 40))),
                       expect: .drop(MZ_DROP_UNSUPPORTED_L3)),
            PacketCase(name: "inner IPv4 with IHL 4", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, sport: 50000, inner: P.patched(innerToA1, [14: 0x44])),
                       expect: .drop(MZ_DROP_INNER_IP)),

            // Believed only from droplets.
            PacketCase(name: "from a non-droplet: dropped before anything is learned or delivered", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.stranger, to: T.h1, vni: T.vniA, rts: T.stranger, inner: innerToA1),
                       expect: .drop(MZ_DROP_NOT_DROPLET)),
            PacketCase(name: "from a non-droplet naming a droplet in RTS: dropped, nothing learned", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.stranger, to: T.h1, vni: T.vniA, rts: T.h2, inner: innerToA1),
                       expect: .drop(MZ_DROP_NOT_DROPLET)),
            PacketCase(name: "a gratuitous ARP from a non-droplet: dropped", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.stranger, to: T.h1, vni: T.vniA, rts: T.stranger,
                                       inner: P.arpReply(T.a3mac, T.a3, to: T.a1mac, T.a1)),
                       expect: .drop(MZ_DROP_NOT_DROPLET)),
            PacketCase(name: "a droplet's packet whose RTS names a non-droplet: delivered, not learned", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.stranger, inner: innerToA1),
                       expect: .redirect(.a), output: P.withDstMAC(innerToA1, T.a1mac),
                       counters: ["deliver", "learn_refused"], vni: T.vniA),
            PacketCase(name: "an RTS with a droplet's IP and another MAC: the table's MAC is learned", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2WrongMAC, inner: innerToA1),
                       expect: .redirect(.a), output: P.withDstMAC(innerToA1, T.a1mac),
                       counters: ["deliver", "cache_learn"], learns: [Learned(vni: T.vniA, ip: T.a3, host: T.h2)], vni: T.vniA),
            PacketCase(name: "a droplet removed from the table: its packets are dropped", program: .transit, port: .droplet,
                       prepare: { try $0.deleteDroplet(T.h2.ip) }, input: fromH2, expect: .drop(MZ_DROP_NOT_DROPLET)),

            // Delivery into local endpoints.
            PacketCase(name: "decapsulate and deliver, learning the sender's host", program: .transit, port: .droplet,
                       input: fromH2, expect: .redirect(.a), output: P.withDstMAC(innerToA1, T.a1mac),
                       counters: ["deliver", "cache_learn"], learns: [Learned(vni: T.vniA, ip: T.a3, host: T.h2)], vni: T.vniA),
            PacketCase(name: "same address in VPC B goes to VPC B's endpoint", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniB, rts: T.h2, inner: innerToA1),
                       expect: .redirect(.c), output: P.withDstMAC(innerToA1, T.b1mac),
                       counters: ["deliver", "cache_learn"], learns: [Learned(vni: T.vniB, ip: T.a3, host: T.h2)], vni: T.vniB),
            PacketCase(name: "a known sender is not learned again", program: .transit, port: .droplet,
                       prepare: { try $0.hostCache.update(mz_ep_key(vni: 100, ip: T.a3.networkOrder),
                                                          mz_cached_host(host: mz_host(ip: T.h2.ip.networkOrder, mac: (2, 0, 0, 0, 0, 2), reserved: 0), flags: 0, learned_ns: 1)) },
                       input: fromH2, expect: .redirect(.a), output: P.withDstMAC(innerToA1, T.a1mac), counters: ["deliver"]),
            PacketCase(name: "unknown non-critical option is skipped", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2,
                                       options: [GeneveOption(optionClass: 0x0102, type: 0x05, data: [9, 9, 9, 9]), P.rts(T.h2)],
                                       inner: innerToA1),
                       expect: .redirect(.a), output: P.withDstMAC(innerToA1, T.a1mac),
                       counters: ["deliver", "cache_learn"], learns: [Learned(vni: T.vniA, ip: T.a3, host: T.h2)]),

            // Bouncer.
            bouncerForward,
            PacketCase(name: "bouncer: unknown endpoint in its subnet", program: .transit, port: .droplet,
                       roles: Roles(bouncerS1: true),
                       input: P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h4, inner: P.udp(T.a5mac, T.gwMAC, T.a5, T.ip("10.0.1.99"))),
                       expect: .drop(MZ_DROP_NO_ENDPOINT)),
            PacketCase(name: "bouncer: outer TTL exhausted", program: .transit, port: .droplet,
                       roles: Roles(bouncerS1: true),
                       input: P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h4, ttl: 1, inner: P.udp(T.a5mac, T.a3mac, T.a5, T.a3)),
                       expect: .drop(MZ_DROP_TTL_EXCEEDED)),
            PacketCase(name: "bouncer: table says here, nothing local", program: .transit, port: .droplet,
                       roles: Roles(bouncerS1: true),
                       prepare: { try $0.upsertEndpoint(EndpointEntry(vni: T.vniA, ip: T.ip("10.0.1.77"), mac: T.a5mac, host: T.h1)) },
                       input: P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h4, inner: P.udp(T.a5mac, T.a3mac, T.a5, T.ip("10.0.1.77"))),
                       expect: .drop(MZ_DROP_LOOP)),
            bouncerARP,
            localARP,
            PacketCase(name: "bouncer: ARP for an unknown address", program: .transit, port: .droplet,
                       roles: Roles(bouncerS1: true),
                       input: P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h4, inner: P.arpRequest(from: T.a5mac, T.a5, for: T.ip("10.0.1.99"))),
                       expect: .drop(MZ_DROP_ARP_UNKNOWN)),
            PacketCase(name: "ARP request where this host bounces for nothing", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h4, inner: P.arpRequest(from: T.a5mac, T.a5, for: T.a3)),
                       expect: .drop(MZ_DROP_NO_ROUTE)),
            PacketCase(name: "ARP with a 8-byte hardware address", program: .transit, port: .droplet,
                       roles: Roles(bouncerS1: true),
                       input: P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h4, sport: 50000,
                                       inner: P.patched(P.arpRequest(from: T.a5mac, T.a5, for: T.a3), [18: 8])),
                       expect: .drop(MZ_DROP_ARP_MALFORMED)),
            PacketCase(name: "ARP cut short", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h4, sport: 50000,
                                       inner: Array(P.arpRequest(from: T.a5mac, T.a5, for: T.a3).prefix(30))),
                       expect: .drop(MZ_DROP_TRUNC_INNER)),
            PacketCase(name: "ARP request whose RTS names a non-droplet: not answered", program: .transit, port: .droplet,
                       roles: Roles(bouncerS1: true),
                       input: P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.stranger, inner: P.arpRequest(from: T.a5mac, T.a5, for: T.a1)),
                       expect: .drop(MZ_DROP_RTS_NOT_DROPLET), counters: ["learn_refused"]),
            PacketCase(name: "ARP reply reaches the requester, which learns the target's host", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h2, inner: P.arpReply(T.a3mac, T.a3, to: T.a1mac, T.a1)),
                       expect: .redirect(.a), output: P.arpReply(T.a3mac, T.a3, to: T.a1mac, T.a1),
                       counters: ["deliver", "cache_learn"], learns: [Learned(vni: T.vniA, ip: T.a3, host: T.h2)]),
            PacketCase(name: "ARP reply for nobody here", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h2, inner: P.arpReply(T.a3mac, T.a3, to: T.a5mac, T.a5)),
                       expect: .drop(MZ_DROP_ARP_UNSUPPORTED)),

            // Divider.
            dividerToBouncer,
            dividerDirect,
            PacketCase(name: "divider: subnet without bouncers", program: .transit, port: .droplet,
                       roles: Roles(dividerA: true, s2Bouncers: []),
                       input: P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h4, inner: P.udp(T.a5mac, T.gwMAC, T.a5, T.a4)),
                       expect: .drop(MZ_DROP_NO_BOUNCER), counters: ["cache_learn"], learns: [Learned(vni: T.vniA, ip: T.a5, host: T.h4)]),
            PacketCase(name: "divider: no subnet for the destination", program: .transit, port: .droplet,
                       roles: Roles(dividerA: true),
                       input: P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h4, inner: P.udp(T.a5mac, T.gwMAC, T.a5, T.ip("10.0.9.9"))),
                       expect: .drop(MZ_DROP_NO_ROUTE), counters: ["cache_learn"], learns: [Learned(vni: T.vniA, ip: T.a5, host: T.h4)]),

            // Nothing here for it.
            PacketCase(name: "direct-path packet for an endpoint that left: to its bouncer, RTS kept, flag cleared",
                       program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, rtsFlags: UInt8(MZ_RTS_F_DIRECT),
                                       inner: P.udp(T.a5mac, T.a3mac, T.a5, T.a3)),
                       expect: .tx,
                       output: P.tunnel(from: T.h1, to: T.h4, vni: T.vniA, rts: T.h2, ttl: 63,
                                        inner: P.udp(T.a5mac, T.a3mac, T.a5, T.a3)),
                       counters: ["stale_reroute"]),
            PacketCase(name: "direct-path packet for an endpoint that left, no subnet known here", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, rtsFlags: UInt8(MZ_RTS_F_DIRECT),
                                       inner: P.udp(T.a5mac, T.a3mac, T.a5, T.ip("10.0.3.7"))),
                       expect: .drop(MZ_DROP_STALE_DIRECT)),
            PacketCase(name: "no role and no endpoint for it", program: .transit, port: .droplet,
                       input: P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h4, inner: P.udp(T.a5mac, T.a3mac, T.a5, T.a3)),
                       expect: .drop(MZ_DROP_NO_ROUTE)),
        ]
    }

    static var bouncerForward: PacketCase {
        let inner = P.udp(T.a5mac, T.a3mac, T.a5, T.a3)
        return PacketCase(
            name: "bouncer: re-address to the endpoint's host", program: .transit, port: .droplet,
            roles: Roles(bouncerS1: true),
            input: P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h4, inner: inner), expect: .tx,
            output: P.tunnel(from: T.h1, to: T.h2, vni: T.vniA, rts: T.h4, ttl: 63, inner: inner),
            counters: ["bouncer_forward"], vni: T.vniA)
    }

    static var bouncerARP: PacketCase {
        let request = P.arpRequest(from: T.a5mac, T.a5, for: T.a3)
        let sport = mz_flow_sport(P.flowHash(request))
        return PacketCase(
            name: "bouncer: answers ARP with the target's host in RTS", program: .transit, port: .droplet,
            roles: Roles(bouncerS1: true),
            input: P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h4, inner: request), expect: .tx,
            output: P.tunnel(from: T.h1, to: T.h4, vni: T.vniA, rts: T.h2, sport: sport,
                             inner: P.arpReply(T.a3mac, T.a3, to: T.a5mac, T.a5)),
            counters: ["bouncer_arp_reply"], vni: T.vniA)
    }

    /// A request for an endpoint of this host (it bounces for the subnet):
    /// answered here with this host in RTS, not handed to the endpoint.
    static var localARP: PacketCase {
        let request = P.arpRequest(from: T.a5mac, T.a5, for: T.a1)
        let sport = mz_flow_sport(P.flowHash(request))
        return PacketCase(
            name: "ARP request for a local endpoint: answered here, RTS this host", program: .transit, port: .droplet,
            roles: Roles(bouncerS1: true),
            input: P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h4, inner: request), expect: .tx,
            output: P.tunnel(from: T.h1, to: T.h4, vni: T.vniA, rts: T.h1, sport: sport,
                             inner: P.arpReply(T.a1mac, T.a1, to: T.a5mac, T.a5)),
            counters: ["bouncer_arp_reply", "cache_learn"], learns: [Learned(vni: T.vniA, ip: T.a5, host: T.h4)], vni: T.vniA)
    }

    /// Two bouncers for subnet 2: the divider picks one by flow hash.
    static var dividerToBouncer: PacketCase {
        let inner = P.udp(T.a5mac, T.gwMAC, T.a5, T.a4)
        let bouncers = [T.h3, T.h2]
        let pick = bouncers[Int(mz_flow_hash(T.a5.value, T.a4.value, 17) % 2)]
        let sport = mz_flow_sport(P.flowHash(inner))
        return PacketCase(
            name: "divider: to one of the subnet's bouncers, RTS now the divider", program: .transit, port: .droplet,
            roles: Roles(dividerA: true, s2Bouncers: bouncers),
            input: P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h4, inner: inner), expect: .tx,
            output: P.tunnel(from: T.h1, to: pick, vni: T.vniA, rts: T.h1, ttl: 63, sport: sport, inner: inner),
            counters: ["divider_forward", "cache_learn"], learns: [Learned(vni: T.vniA, ip: T.a5, host: T.h4)], vni: T.vniA)
    }

    static var dividerDirect: PacketCase {
        let inner = P.udp(T.a5mac, T.gwMAC, T.a5, T.a4)
        return PacketCase(
            name: "divider: straight to a learned host", program: .transit, port: .droplet,
            roles: Roles(dividerA: true),
            prepare: { try $0.hostCache.update(mz_ep_key(vni: 100, ip: T.a4.networkOrder),
                                               mz_cached_host(host: mz_host(ip: T.h2.ip.networkOrder, mac: (2, 0, 0, 0, 0, 2), reserved: 0), flags: 0, learned_ns: 1)) },
            input: P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h4, inner: inner), expect: .tx,
            output: P.tunnel(from: T.h1, to: T.h2, vni: T.vniA, rts: T.h1, rtsFlags: UInt8(MZ_RTS_F_DIRECT), ttl: 63, inner: inner),
            counters: ["divider_direct", "cache_learn"], learns: [Learned(vni: T.vniA, ip: T.a5, host: T.h4)])
    }
}
