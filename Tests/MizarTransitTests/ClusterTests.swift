import GRPCCore
import Glibc
import MizarCore
import MizarDataplane
import MizarPacket
import MizarRPC
import MizarSystem
import MizarTestbed
import MizarTransit
import MizarTransitClient
import Testing

/// The endpoints every test uses, provisioned once.
/// VPC A (100) and VPC B (200): 10.0.0.0/16, subnets 10.0.1.0/24 (bouncer
/// h1) and 10.0.2.0/24 (bouncer h2), divider h3. Same addresses in both.
struct World: Sendable {
    let c: Cluster
    let a1, a2, a3, a4, a5: Cluster.Endpoint
    let b1, b2, b6: Cluster.Endpoint

    static let shared = Task { () throws -> World in try await World() }

    init() async throws {
        c = try await Cluster.get()
        for vni in [Cluster.vniA, Cluster.vniB] {
            try await c.putVPC(vni, dividers: [3])
            try await c.putSubnet(vni, Cluster.s1, bouncers: [1])
            try await c.putSubnet(vni, Cluster.s2, bouncers: [2])
        }
        let A = Cluster.vniA, B = Cluster.vniB
        a1 = try await c.addEndpoint("a1", vni: A, ip: "10.0.1.10", subnet: Cluster.s1, host: 1, bouncers: [1])
        a2 = try await c.addEndpoint("a2", vni: A, ip: "10.0.1.20", subnet: Cluster.s1, host: 2, bouncers: [1])
        a3 = try await c.addEndpoint("a3", vni: A, ip: "10.0.2.30", subnet: Cluster.s2, host: 3, bouncers: [2])
        a4 = try await c.addEndpoint("a4", vni: A, ip: "10.0.1.40", subnet: Cluster.s1, host: 1, bouncers: [1])
        a5 = try await c.addEndpoint("a5", vni: A, ip: "10.0.1.50", subnet: Cluster.s1, host: 3, bouncers: [1])
        b1 = try await c.addEndpoint("b1", vni: B, ip: "10.0.1.10", subnet: Cluster.s1, host: 2, bouncers: [1])
        b2 = try await c.addEndpoint("b2", vni: B, ip: "10.0.1.20", subnet: Cluster.s1, host: 1, bouncers: [1])
        b6 = try await c.addEndpoint("b6", vni: B, ip: "10.0.1.60", subnet: Cluster.s1, host: 3, bouncers: [1])
    }

    static func get() async throws -> World { try await shared.value }
}

func payload(_ tag: String) -> [UInt8] { Array("mizar \(tag) \(getpid())".utf8) }

/// Ping, TCP and UDP from `x` to `y`, all answered.
func expectReachable(_ x: Cluster.Endpoint, _ y: Cluster.Endpoint, port: UInt16) throws {
    let ping = Traffic.ping(from: x.netns, y.ip, count: 3, interval: 0.1)
    #expect(ping.received == 3, "ping \(x.name) -> \(y.name): \(ping.output)")
    for transport in [Traffic.Transport.tcp, .udp] {
        let p = payload("\(transport) \(x.name)->\(y.name)")
        let r = try Traffic.exchange(transport, from: x.netns, to: y.netns, address: y.ip, port: port, payload: p)
        #expect(r.atServer == p, "\(transport) \(x.name) -> \(y.name): the server got \(r.atServer.map { "\($0.count) bytes" } ?? "nothing")")
        #expect(r.atClient == p.reversed(), "\(transport) \(x.name) -> \(y.name): no answer came back")
    }
}

@Suite("simulated cluster", .serialized)
struct ClusterTests {
    @Test("same subnet on two hosts, two subnets, same host: ping, TCP and UDP both ways")
    func reachability() async throws {
        let w = try await World.get()
        for (x, y) in [(w.a1, w.a2), (w.a1, w.a3), (w.a1, w.a4), (w.b1, w.b2)] {
            try expectReachable(x, y, port: 7100)
            try expectReachable(y, x, port: 7101)
        }
    }

    @Test("VPC A and VPC B share addresses and never meet, in both directions")
    func isolation() async throws {
        let w = try await World.get()
        let before = try await w.c.counters(1)
        // 10.0.1.60 exists only in B, 10.0.1.40 only in A.
        let fromA = try Traffic.listenUDP(in: w.b6.netns, port: 7200, timeout: 0.5) {
            try Traffic.sendUDP(from: w.a1.netns, to: w.b6.ip, port: 7200, payload: payload("A to B"))
        }
        #expect(fromA == nil, "a datagram from VPC A reached VPC B's 10.0.1.60")
        let fromB = try Traffic.listenUDP(in: w.a4.netns, port: 7201, timeout: 0.5) {
            try Traffic.sendUDP(from: w.b6.netns, to: w.a4.ip, port: 7201, payload: payload("B to A"))
        }
        #expect(fromB == nil, "a datagram from VPC B reached VPC A's 10.0.1.40")
        #expect(Traffic.ping(from: w.a1.netns, w.b6.ip, count: 2, interval: 0.1, wait: 0.3).received == 0)
        #expect(Traffic.ping(from: w.b6.netns, w.a4.ip, count: 2, interval: 0.1, wait: 0.3).received == 0)
        // The same address in both: only the sender's own VPC answers.
        let overlap = try Traffic.listenUDP(in: w.b2.netns, port: 7202, timeout: 0.5) {
            try Traffic.sendUDP(from: w.a1.netns, to: w.a2.ip, port: 7202, payload: payload("A to 10.0.1.20"))
        }
        #expect(overlap == nil, "VPC B's 10.0.1.20 received what VPC A sent to its own 10.0.1.20")
        let overlapBack = try Traffic.listenUDP(in: w.a1.netns, port: 7203, timeout: 0.5) {
            try Traffic.sendUDP(from: w.b2.netns, to: w.b1.ip, port: 7203, payload: payload("B to 10.0.1.10"))
        }
        #expect(overlapBack == nil, "VPC A's 10.0.1.10 received what VPC B sent to its own 10.0.1.10")
        // The bouncer says why: it knows no such endpoint in the sender's VPC.
        let after = try await w.c.counters(1)
        #expect(after["drop.arp_unknown_target", default: 0] > before["drop.arp_unknown_target", default: 0])
    }

    @Test("a bulk TCP stream crosses hosts intact, with the sender's TSO packets kept whole")
    func bulkStream() async throws {
        let w = try await World.get()
        // a1 on h1 to a2 on h2, both ways.
        for (x, y, i) in [(w.a1, w.a2, 1), (w.a2, w.a1, 2)] {
            let before = try await w.c.counterValues(i)
            let r = try Traffic.stream(from: x.netns, to: y.netns, address: y.ip, port: 7150, bytes: 32 << 20, timeout: 10)
            #expect(r.intact, "\(x.name) -> \(y.name): \(r.received) of \(32 << 20) bytes arrived\(r.intact ? "" : " or they differ")")
            let after = try await w.c.counterValues(i)
            let packets = after["encap_direct", default: (0, 0)].packets - before["encap_direct", default: (0, 0)].packets
            let bytes = after["encap_direct", default: (0, 0)].bytes - before["encap_direct", default: (0, 0)].bytes
            // Whole TSO packets are far larger than the droplet's 1500-byte MTU.
            #expect(packets > 0 && bytes / packets > 3000, "\(x.name)'s host encapsulated \(packets) packets of \(bytes) bytes: TSO was lost")
            let drops = after.filter { $0.key.hasPrefix("drop.") && $0.value.packets != before[$0.key]?.packets }
            #expect(drops.isEmpty, "drops on \(x.name)'s host: \(drops.keys.sorted())")
        }
    }

    @Test("forged Geneve from a machine on the underlay that is not a droplet: dropped under not_from_droplet, nothing learned or injected; real traffic unaffected")
    func forgedGeneveRefused() async throws {
        let w = try await World.get()
        let c = w.c
        let h1 = c.host(1)
        // The attacker: a port on the underlay, an address in its /24, no droplet.
        let attacker = HostAddress(ip: IPv4Address(172, 30, c.bed.underlayNet, 66), mac: "02:4d:00:00:00:66")
        let ns = try await onOwnThread { try c.bed.addStranger("atk", ip: attacker.ip, mac: attacker.mac) }
        let a1mac = try MACAddress(parsing: w.a1.mac), a2mac = try MACAddress(parsing: w.a2.mac)
        // Real traffic first, so that h1 has learned where a2 lives.
        #expect(Traffic.ping(from: w.a2.netns, w.a1.ip, count: 2, interval: 0.1).received == 2)
        let before = try await c.counters(1)
        func cache() async throws -> [String] {
            try await c.client(1) { try await $0.listHostCache(.init()) }.entries.map { "\($0.vni)/\($0.ip)->\($0.host.ip)/\($0.host.mac)" }.sorted()
        }
        let cacheBefore = try await cache()
        // The hijack: a2's address as the inner source, the attacker named as
        // its host in RTS; and a gratuitous ARP binding a2's address to the
        // attacker's MAC, both into VPC A's a1 on h1.
        let rts = GeneveOption(optionClass: Dataplane.geneveOptionClass, type: Dataplane.rtsOptionType,
                               data: attacker.ip.bytes + attacker.mac.bytes + [0, 0])
        let forged = Packet.udpPacket(srcMAC: a2mac, dstMAC: a1mac, srcIP: w.a2.ip, dstIP: w.a1.ip,
                                      srcPort: 4444, dstPort: 7300, payload: payload("forged"))
        let garp = Packet.ethernet(dst: MACAddress(0xff, 0xff, 0xff, 0xff, 0xff, 0xff), src: attacker.mac, etherType: EtherType.arp,
                                   payload: Packet.arp(operation: 2, senderMAC: attacker.mac, senderIP: w.a2.ip, targetMAC: a1mac, targetIP: w.a1.ip))
        let heard = try Traffic.listenUDP(in: w.a1.netns, port: 7300, timeout: 1) {
            for inner in [forged, garp, forged] {
                try Traffic.sendUDP(from: ns, to: h1.ip, port: 6081, payload: Packet.geneve(vni: Cluster.vniA, options: [rts], payload: inner))
            }
        }
        #expect(heard == nil, "a forged datagram reached a1")
        let after = try await c.counters(1)
        let dropped = after["drop.not_from_droplet", default: 0] - before["drop.not_from_droplet", default: 0]
        #expect(dropped == 3, "h1 dropped \(dropped) of 3 forged packets as not from a droplet")
        #expect(after["deliver", default: 0] == before["deliver", default: 0], "h1 delivered something meanwhile")
        let cacheAfter = try await cache()
        #expect(cacheAfter == cacheBefore, "h1's direct-path cache changed: \(cacheAfter)")
        #expect(!cacheAfter.contains { $0.hasSuffix("->\(attacker.ip)/\(attacker.mac)") })
        // a1 never heard the ARP: a2's address is not bound to the attacker's MAC.
        let neighbours = runCapturing(["ip", "-n", String(w.a1.netns.split(separator: "/").last!), "neigh", "show", "\(w.a2.ip)"])
        #expect(neighbours.status == 0, "ip neigh in a1's namespace: \(neighbours.output)")
        #expect(!neighbours.output.contains("\(attacker.mac)"), "a1 binds a2's address to the attacker: \(neighbours.output)")
        // The tenant's real traffic goes on, both ways.
        #expect(Traffic.ping(from: w.a2.netns, w.a1.ip, count: 3, interval: 0.1).received == 3)
        let real = try Traffic.listenUDP(in: w.a1.netns, port: 7301, timeout: 2) {
            try Traffic.sendUDP(from: w.a2.netns, to: w.a1.ip, port: 7301, payload: payload("real"))
        }
        #expect(real == payload("real"))
    }

    @Test("after the first exchange the bouncer is out of the path")
    func directPath() async throws {
        let w = try await World.get()
        // a2 on h2 and a5 on h3; their subnet's bouncer is h1.
        #expect(Traffic.ping(from: w.a2.netns, w.a5.ip, count: 2, interval: 0.1).received == 2)
        let bouncerBefore = try await w.c.counters(1), h2Before = try await w.c.counters(2), h3Before = try await w.c.counters(3)
        let ping = Traffic.ping(from: w.a2.netns, w.a5.ip, count: 20, interval: 0.02)
        #expect(ping.received == 20, "\(ping.output)")
        let bouncerAfter = try await w.c.counters(1), h2After = try await w.c.counters(2), h3After = try await w.c.counters(3)
        for name in ["bouncer_forward", "bouncer_arp_reply"] {
            #expect(bouncerAfter[name] == bouncerBefore[name], "the bouncer's \(name) grew")
        }
        func grew(_ before: [String: UInt64], _ after: [String: UInt64], _ name: String) -> UInt64 { after[name, default: 0] - before[name, default: 0] }
        // One flow (one ping run): its first packet judged once by the
        // bouncer, every other packet host to host, both ways.
        #expect(grew(h2Before, h2After, "policy_judge") == 1)
        #expect(grew(bouncerBefore, bouncerAfter, "policy_admit") == 1)
        #expect(grew(h2Before, h2After, "encap_direct") >= 19)
        #expect(grew(h3Before, h3After, "encap_direct") >= 20)
        let cache = try await w.c.client(2) { try await $0.listHostCache(.init()) }
        #expect(cache.entries.contains { $0.ip == "10.0.1.50" && $0.host.ip == "\(w.c.host(3).ip)" })
    }

    @Test("a bouncer whose entry for an endpoint changes revokes the endpoint's flows on its host, over the wire; removing the entry admits them again")
    func revocationAcrossHosts() async throws {
        let w = try await World.get()
        // a2 on h2 talks to a5 on h3; their subnet's bouncer is h1.
        #expect(Traffic.ping(from: w.a2.netns, w.a5.ip, count: 2, interval: 0.1).received == 2)
        let before = try await w.c.counters(3)
        // a5 isolated for ingress with nothing admitted; its host told.
        var deny = Mizar_Transit_V1_PolicySet()
        deny.vni = Cluster.vniA
        deny.id = 0xdead
        var entry = Mizar_Transit_V1_PolicyEndpoint()
        entry.vni = Cluster.vniA
        entry.ip = "\(w.a5.ip)"
        entry.ingressSet = deny.id
        entry.revoke = true
        var update = Mizar_Transit_V1_PolicyUpdate()
        update.sets = [deny]
        update.endpoints = [entry]
        let request = update
        let reply = try await w.c.client(1) { try await $0.putPolicy(request) }
        #expect(reply.changed == 1 && reply.revoked == 1, "\(reply)")
        var revoked = false
        for _ in 0..<50 where !revoked {
            revoked = try await w.c.counters(3)["policy_revoked", default: 0] > before["policy_revoked", default: 0]
            if !revoked { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(revoked, "h3 never counted the revocation h1 sent")
        #expect(Traffic.ping(from: w.a2.netns, w.a5.ip, count: 3, interval: 0.05, wait: 0.3).received == 0, "a5 still answers under a policy admitting nothing")
        // The entry removed: open again.
        var open = Mizar_Transit_V1_PolicyUpdate()
        var key = Mizar_Transit_V1_EndpointKey()
        key.vni = Cluster.vniA
        key.ip = "\(w.a5.ip)"
        open.removed = [key]
        let reopen = open
        _ = try await w.c.client(1) { try await $0.putPolicy(reopen) }
        #expect(Traffic.ping(from: w.a2.netns, w.a5.ip, count: 3, interval: 0.1).received == 3)
    }

    @Test("a bouncer drops a rule set when its last entry naming it goes, and not before; a set no entry names goes at once")
    func policySetsCounted() async throws {
        let w = try await World.get()
        func sets() async throws -> Set<UInt64> {
            var r = Mizar_Transit_V1_ListRequest()
            r.vni = Cluster.vniA
            let request = r
            return Set(try await w.c.client(1) { try await $0.listPolicy(request) }.sets.map(\.id))
        }
        func put(_ u: Mizar_Transit_V1_PolicyUpdate) async throws -> Mizar_Transit_V1_PolicyReply {
            try await w.c.client(1) { try await $0.putPolicy(u) }
        }
        func key(_ ip: String) -> Mizar_Transit_V1_EndpointKey {
            var k = Mizar_Transit_V1_EndpointKey()
            k.vni = Cluster.vniA
            k.ip = ip
            return k
        }
        // Addresses of no endpoint; set 0xa11 named by both entries (one
        // each way), 0xb22 by the second's egress, 0xc33 by none.
        let ids: [UInt64] = [0xa11, 0xb22, 0xc33]
        var update = Mizar_Transit_V1_PolicyUpdate()
        update.sets = ids.map { id in
            var s = Mizar_Transit_V1_PolicySet()
            s.vni = Cluster.vniA
            s.id = id
            return s
        }
        update.endpoints = [("10.0.1.201", UInt64(0xa11), UInt64(0)), ("10.0.1.202", 0xb22, 0xa11)].map { ip, ingress, egress in
            var e = Mizar_Transit_V1_PolicyEndpoint()
            e.vni = Cluster.vniA
            e.ip = ip
            e.ingressSet = ingress
            e.egressSet = egress
            return e
        }
        #expect(try await put(update).changed == 2)
        var held = try await sets()
        #expect(held.isSuperset(of: [0xa11, 0xb22]) && !held.contains(0xc33), "held: \(held)")
        // The first entry goes: 0xa11 is still named by the second.
        var removal = Mizar_Transit_V1_PolicyUpdate()
        removal.removed = [key("10.0.1.201")]
        #expect(try await put(removal).changed == 1)
        held = try await sets()
        #expect(held.isSuperset(of: [0xa11, 0xb22]), "held: \(held)")
        // The second entry's egress changes to no set: 0xa11 goes, 0xb22 stays.
        var change = Mizar_Transit_V1_PolicyUpdate()
        var second = update.endpoints[1]
        second.egressSet = 0
        change.endpoints = [second]
        #expect(try await put(change).changed == 1)
        held = try await sets()
        #expect(held.contains(0xb22) && !held.contains(0xa11), "held: \(held)")
        // The last entry goes, and with it the last set.
        removal.removed = [key("10.0.1.202")]
        #expect(try await put(removal).changed == 1)
        held = try await sets()
        #expect(held.isDisjoint(with: ids), "held: \(held)")
    }

    @Test("two bouncers on a subnet and two dividers on a VPC: traffic arrives and both are used (for judging; dividers when policy is off)",
          arguments: [true, false])
    func twoBouncersTwoDividers(policy: Bool) async throws {
        if policy { _ = try await World.get() }
        let c = try await Cluster.get(policy: policy), C = Cluster.vniC
        try await c.putVPC(C, dividers: [1, 2])
        try await c.putSubnet(C, Cluster.s1, bouncers: [1, 2])
        try await c.putSubnet(C, Cluster.s2, bouncers: [3])
        let s1 = [try await c.addEndpoint("c1", vni: C, ip: "10.0.1.11", subnet: Cluster.s1, host: 1, bouncers: [1, 2]),
                  try await c.addEndpoint("c2", vni: C, ip: "10.0.1.12", subnet: Cluster.s1, host: 2, bouncers: [1, 2]),
                  try await c.addEndpoint("c3", vni: C, ip: "10.0.1.13", subnet: Cluster.s1, host: 3, bouncers: [1, 2])]
        let s2 = [try await c.addEndpoint("c4", vni: C, ip: "10.0.2.14", subnet: Cluster.s2, host: 3, bouncers: [3]),
                  try await c.addEndpoint("c5", vni: C, ip: "10.0.2.15", subnet: Cluster.s2, host: 1, bouncers: [3])]
        // Which bouncer (index into [h1, h2]) each ARP picks, and which
        // divider each first inter-subnet packet (ICMP) picks: the data
        // plane's own hash, so the test knows both must be used.
        let arpPicks = Set(s1.flatMap { x in s1.filter { $0.name != x.name }.map { Int(Dataplane.flowHash(x.ip.value, $0.ip.value, 0x0806) % 2) } })
        let dividerPicks = Set(s1.flatMap { x in s2.map { Int(Dataplane.flowHash(x.ip.value, $0.ip.value, 1) % 2) } })
        #expect(arpPicks == [0, 1] && dividerPicks == [0, 1], "the chosen addresses must exercise both")

        let before = [try await c.counters(1), try await c.counters(2)]
        for x in s1 {
            for y in s1 + s2 where y.name != x.name {
                let ping = Traffic.ping(from: x.netns, y.ip, count: 2, interval: 0.05)
                #expect(ping.received == 2, "\(x.name) -> \(y.name): \(ping.output)")
            }
        }
        let after = [try await c.counters(1), try await c.counters(2)]
        for i in 0..<2 {
            func grew(_ names: [String]) -> UInt64 { names.reduce(0) { $0 + after[i][$1, default: 0] - before[i][$1, default: 0] } }
            #expect(grew(["bouncer_arp_reply"]) > 0, "bouncer h\(i + 1) was never used")
            if policy {
                // Flows are judged by a bouncer of their source's subnet,
                // picked by the flow's hash: both judge.
                #expect(grew(["policy_admit", "policy_forward"]) > 0, "bouncer h\(i + 1) never judged a flow")
                #expect(grew(["divider_forward", "divider_direct"]) == 0, "a first packet went to a divider, unjudged")
            } else {
                #expect(grew(["divider_forward", "divider_direct"]) > 0, "divider h\(i + 1) was never used")
                #expect(grew(["policy_admit", "policy_forward", "policy_judge"]) == 0)
            }
        }
    }

    @Test("a deleted endpoint recreated on another host is reached there within 1 s; the old host gets nothing more")
    func deleteAndMove() async throws {
        let w = try await World.get()
        let c = w.c, A = Cluster.vniA
        let old = try await c.addEndpoint("m", vni: A, ip: "10.0.1.70", subnet: Cluster.s1, host: 2, bouncers: [1])
        #expect(Traffic.ping(from: w.a5.netns, old.ip, count: 2, interval: 0.05).received == 2)
        let cached = try await c.client(3) { try await $0.listHostCache(.init()) }
        #expect(cached.entries.contains { $0.ip == "10.0.1.70" && $0.host.ip == "\(c.host(2).ip)" }, "h3 should have learned m -> h2")

        try await c.removeEndpoint(old, bouncers: [1])
        let gone = try await c.client(2) { try await $0.listEndpointInterfaces(.init()) }
        #expect(!gone.interfaces.contains { $0.spec.ip == "10.0.1.70" })
        _ = try await c.addEndpoint("m", vni: A, ip: "10.0.1.70", subnet: Cluster.s1, host: 1, bouncers: [1])
        let t0 = monotonicSeconds()
        let first = Traffic.ping(from: w.a5.netns, old.ip, count: 1, wait: 1)
        let seconds = monotonicSeconds() - t0
        #expect(first.received == 1 && seconds < 1.0, "not reached at its new host within 1 s: \(first.output)")

        let oldHostBefore = try await c.transitPackets(2)
        let ping = Traffic.ping(from: w.a5.netns, old.ip, count: 10, interval: 0.02)
        #expect(ping.received == 10, "\(ping.output)")
        #expect(try await c.transitPackets(2) == oldHostBefore, "the old host still receives traffic for the moved endpoint")
        // A new flow is judged, by the bouncer that knows where m lives now:
        // the stale direct path is never taken for it.
        #expect(try await c.counters(3)["policy_judge", default: 0] >= 2, "h3's new flows to m were not judged")
        let relearned = try await c.client(3) { try await $0.listHostCache(.init()) }
        #expect(relearned.entries.contains { $0.ip == "10.0.1.70" && $0.host.ip == "\(c.host(1).ip)" })
    }

    @Test("transitd killed with -9 and restarted under a running ping: at most 1 s lost, tables intact")
    func killAndRestart() async throws {
        let w = try await World.get()
        let c = w.c, h2 = c.host(2)
        let tablesBefore = try await c.tables(2)
        let pidBefore = try #require(c.bed.pid(of: h2))
        let netns = w.a2.netns, target = w.a5.ip
        let pinger = Task.detached { Traffic.ping(from: netns, target, count: 150, interval: 0.02) }
        usleep(500_000)
        kill(pidBefore, SIGKILL)
        reap(pidBefore)
        usleep(300_000)
        try c.bed.restart(h2, options: c.options)
        let ping = await pinger.value
        #expect(ping.sent == 150)
        #expect(ping.sent - ping.received <= 50, "lost \(ping.sent - ping.received) of \(ping.sent) at 20 ms: more than 1 s\n\(ping.output)")
        let pidAfter = try #require(c.bed.pid(of: h2))
        #expect(pidAfter != pidBefore)
        #expect(try await c.tables(2) == tablesBefore, "the restarted transitd's tables differ")
        #expect(Traffic.ping(from: w.a2.netns, w.a1.ip, count: 2, interval: 0.05).received == 2)
    }

    @Test("an interface made without a namespace is parked on the host, idempotent, and removed on delete")
    func parkedInterface() async throws {
        let w = try await World.get()
        let c = w.c
        var e = Mizar_Transit_V1_EndpointInterface()
        e.vni = Cluster.vniA
        e.ip = "10.0.1.77"
        e.mac = "0a:58:64:00:01:4d"
        e.subnet = Cluster.s1
        let reply = try await c.client(1) { try await $0.createEndpointInterface(e) }
        let hostNS = try NetworkNamespace(path: c.host(1).netns)
        let parkedName = "mp" + reply.interface.hostIfname.dropFirst(2)
        let links = try Netlink(in: hostNS)
        #expect(try links.index(of: reply.interface.hostIfname) != nil && links.index(of: parkedName) != nil,
                "\(reply.interface.hostIfname)/\(parkedName) not both in h1's namespace")
        let again = try await c.client(1) { try await $0.createEndpointInterface(e) }
        #expect(!again.changed, "the same request again changed something")
        let listed = try await c.client(1) { try await $0.listEndpointInterfaces(.init()) }
        #expect(listed.interfaces.contains { $0.spec.ip == "10.0.1.77" && $0.spec.netns.isEmpty })
        var key = Mizar_Transit_V1_EndpointKey()
        key.vni = Cluster.vniA
        key.ip = "10.0.1.77"
        _ = try await c.client(1) { try await $0.deleteEndpointInterface(key) }
        #expect(try links.index(of: reply.interface.hostIfname) == nil && links.index(of: parkedName) == nil)
    }

    @Test("bad gRPC input is refused with the right status, names the field, and changes nothing")
    func badInput() async throws {
        let w = try await World.get()
        let c = w.c
        let before = try await c.tables(1)
        func expectRefused(_ code: RPCError.Code, _ field: String, _ what: String,
                           _ call: @escaping @Sendable (TransitClient) async throws -> Void) async throws {
            do {
                try await c.client(1) { try await call($0) }
                Issue.record("\(what): accepted")
            } catch let e as RPCError {
                #expect(e.code == code, "\(what): \(e.code) \(e.message)")
                #expect(e.message.hasPrefix("\(field):"), "\(what): message does not name \(field): \(e.message)")
            }
        }
        @Sendable func iface(_ ip: String, mac: String = "0a:58:00:00:00:99", subnet: String = Cluster.s1, netns: String? = nil) -> Mizar_Transit_V1_EndpointInterface {
            var e = Mizar_Transit_V1_EndpointInterface()
            e.vni = Cluster.vniA
            e.ip = ip
            e.mac = mac
            e.subnet = subnet
            e.netns = netns ?? w.a1.netns
            return e
        }
        @Sendable func subnet(_ vni: UInt32, _ cidr: String) -> Mizar_Transit_V1_Subnet {
            var s = Mizar_Transit_V1_Subnet()
            s.vni = vni
            s.cidr = cidr
            return s
        }
        @Sendable func endpoint(_ vni: UInt32, _ ip: String) -> Mizar_Transit_V1_Endpoint {
            var e = Mizar_Transit_V1_Endpoint()
            e.vni = vni
            e.ip = ip
            e.mac = "0a:58:00:00:00:98"
            e.subnet = Cluster.s1
            e.host = c.hostMessage(2)
            return e
        }
        try await expectRefused(.notFound, "vni", "subnet of an unknown VPC") { _ = try await $0.putSubnet(subnet(999, "10.0.1.0/24")) }
        try await expectRefused(.notFound, "vni", "endpoint of an unknown VPC") { _ = try await $0.putEndpoint(endpoint(999, "10.0.1.99")) }
        try await expectRefused(.invalidArgument, "ip", "endpoint outside its subnet") { _ = try await $0.putEndpoint(endpoint(Cluster.vniA, "10.0.2.99")) }
        try await expectRefused(.invalidArgument, "ip", "interface outside its subnet") { _ = try await $0.createEndpointInterface(iface("10.0.3.5")) }
        try await expectRefused(.alreadyExists, "ip", "duplicate endpoint IP") { _ = try await $0.createEndpointInterface(iface("10.0.1.10")) }
        try await expectRefused(.invalidArgument, "mac", "malformed MAC") { _ = try await $0.createEndpointInterface(iface("10.0.1.99", mac: "0a:58:zz:00:00:01")) }
        try await expectRefused(.invalidArgument, "mac", "multicast MAC") { _ = try await $0.createEndpointInterface(iface("10.0.1.99", mac: "01:00:5e:00:00:01")) }
        try await expectRefused(.invalidArgument, "subnet", "malformed CIDR") { _ = try await $0.createEndpointInterface(iface("10.0.1.99", subnet: "10.0.1.0/33")) }
        try await expectRefused(.invalidArgument, "cidr", "malformed CIDR") { _ = try await $0.putSubnet(subnet(Cluster.vniA, "10.0.1.0/33")) }
        try await expectRefused(.invalidArgument, "cidr", "CIDR with host bits") { _ = try await $0.putSubnet(subnet(Cluster.vniA, "10.0.1.5/24")) }
        try await expectRefused(.invalidArgument, "cidr", "overlapping subnet") { _ = try await $0.putSubnet(subnet(Cluster.vniA, "10.0.1.128/25")) }
        try await expectRefused(.invalidArgument, "vni", "VNI beyond 24 bits") { _ = try await $0.putSubnet(subnet(1 << 24, "10.0.9.0/24")) }
        try await expectRefused(.notFound, "netns", "missing namespace") { _ = try await $0.createEndpointInterface(iface("10.0.1.99", netns: "/run/netns/mizar-no-such-ns")) }
        try await expectRefused(.failedPrecondition, "vni", "deleting a VPC that has subnets") { var k = Mizar_Transit_V1_VPCKey(); k.vni = Cluster.vniA; _ = try await $0.deleteVPC(k) }
        @Sendable func service(_ vni: UInt32 = Cluster.vniA, ip: String = "10.0.1.250", proto: String = "TCP", port: UInt32 = 80,
                               backendHost: Bool = true) -> Mizar_Transit_V1_Service {
            var m = Mizar_Transit_V1_Service()
            m.vni = vni
            m.ip = ip
            m.mac = "0a:58:00:00:00:97"
            m.subnet = Cluster.s1
            var p = Mizar_Transit_V1_ServicePort()
            p.protocol = proto
            p.port = port
            p.targetPort = 8080
            m.ports = [p]
            var b = Mizar_Transit_V1_ServiceBackend()
            b.ip = "10.0.1.20"
            if backendHost { b.host = c.hostMessage(2) }
            m.backends = [b]
            return m
        }
        try await expectRefused(.invalidArgument, "ports[0].protocol", "service port of another protocol") { _ = try await $0.putService(service(proto: "SCTP")) }
        try await expectRefused(.invalidArgument, "ports[0].port", "service port 0") { _ = try await $0.putService(service(port: 0)) }
        try await expectRefused(.invalidArgument, "backends[0].host", "backend without its host") { _ = try await $0.putService(service(backendHost: false)) }
        try await expectRefused(.invalidArgument, "ip", "VIP outside its subnet") { _ = try await $0.putService(service(ip: "10.0.2.99")) }
        try await expectRefused(.invalidArgument, "ip", "multicast VIP") { _ = try await $0.putService(service(ip: "224.0.0.5")) }
        try await expectRefused(.notFound, "vni", "service of an unknown VPC") { _ = try await $0.putService(service(999)) }
        try await expectRefused(.invalidArgument, "vip", "invalidating flows of a malformed VIP") {
            var r = Mizar_Transit_V1_InvalidateServiceFlowsRequest(); r.vni = Cluster.vniA; r.vip = "10.0.1"; _ = try await $0.invalidateServiceFlows(r)
        }
        let services = try await c.client(1) { try await $0.listServices(.init()).services.count }
        #expect(services == 0, "a refused service was written")
        #expect(try await c.tables(1) == before, "a refused call changed the tables")
        // Idempotent: the same put twice changes nothing the second time.
        var vpc = Mizar_Transit_V1_VPC()
        vpc.vni = Cluster.vniA
        vpc.dividers = [c.hostMessage(3)]
        let again = try await c.client(1) { try await $0.putVPC(vpc) }
        #expect(again.changed == false)
    }
}
