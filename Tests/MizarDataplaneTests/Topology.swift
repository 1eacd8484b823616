import CMizarABI
import MizarCore
@testable import MizarDataplane
import MizarPacket

/// The little world the packet tests live in. This host is H1; H2..H4 are
/// other droplets. VPC A (VNI 100) and VPC B (VNI 200) use the very same
/// CIDRs: 10.0.0.0/16 with subnets 10.0.1.0/24 and 10.0.2.0/24.
enum T {
    static func ip(_ s: String) -> IPv4Address { try! IPv4Address(parsing: s) }
    static func mac(_ s: String) -> MACAddress { try! MACAddress(parsing: s) }
    static func cidr(_ s: String) -> CIDR { try! CIDR(parsing: s) }

    static let h1 = HostAddress(ip: ip("192.168.50.1"), mac: mac("02:00:00:00:00:01"))
    static let h2 = HostAddress(ip: ip("192.168.50.2"), mac: mac("02:00:00:00:00:02"))
    static let h3 = HostAddress(ip: ip("192.168.50.3"), mac: mac("02:00:00:00:00:03"))
    static let h4 = HostAddress(ip: ip("192.168.50.4"), mac: mac("02:00:00:00:00:04"))
    /// On the underlay, but not a droplet: an attacker's machine.
    static let stranger = HostAddress(ip: ip("192.168.50.66"), mac: mac("02:00:00:00:00:66"))
    /// A droplet's address with a MAC that is not the droplet's.
    static let h2WrongMAC = HostAddress(ip: h2.ip, mac: mac("02:00:00:00:66:66"))

    static let vniA = try! VNI(100)
    static let vniB = try! VNI(200)
    static let s1 = cidr("10.0.1.0/24")
    static let s2 = cidr("10.0.2.0/24")
    static let gw1 = ip("10.0.1.1")
    static let gwMAC = mac("0a:00:00:00:00:01")

    // Endpoints of VPC A: a1, a2 on this host; a3 on H2; a4 (other subnet) on H3; a5 on H4.
    static let a1 = ip("10.0.1.10"), a1mac = mac("0a:58:0a:00:01:0a")
    static let a2 = ip("10.0.1.11"), a2mac = mac("0a:58:0a:00:01:0b")
    static let a3 = ip("10.0.1.20"), a3mac = mac("0a:58:0a:00:01:14")
    static let a4 = ip("10.0.2.30"), a4mac = mac("0a:58:0a:00:02:1e")
    static let a5 = ip("10.0.1.40"), a5mac = mac("0a:58:0a:00:01:28")
    // VPC B's b1 has a1's very address, also on this host.
    static let b1 = a1, b1mac = mac("0a:58:0b:00:01:0a")
}

/// Which roles this host plays in a case.
struct Roles: Sendable {
    var bouncerS1 = false
    var dividerA = false
    var s1Bouncers: [HostAddress] = [T.h4]
    var s2Bouncers: [HostAddress] = [T.h3]
    var dividersA: [HostAddress] = [T.h3]
}

/// Seeds the tables through the same API the daemon uses.
func seed(_ env: TestEnvironment, _ roles: Roles) throws {
    let dp = env.dataplane
    try dp.setDroplet(T.h1, ifindex: env.ifs.droplet)
    try dp.replaceDroplets([T.h1, T.h2, T.h3, T.h4])
    try dp.upsertVPC(VPCEntry(vni: T.vniA, dividers: roles.dividersA, isDivider: roles.dividerA))
    try dp.upsertVPC(VPCEntry(vni: T.vniB, dividers: [T.h2]))
    try dp.upsertSubnet(SubnetEntry(vni: T.vniA, cidr: T.s1, bouncers: roles.s1Bouncers, isBouncer: roles.bouncerS1))
    try dp.upsertSubnet(SubnetEntry(vni: T.vniA, cidr: T.s2, bouncers: roles.s2Bouncers))
    try dp.upsertSubnet(SubnetEntry(vni: T.vniB, cidr: T.s1, bouncers: [T.h2]))
    func local(_ vni: VNI, _ ip: IPv4Address, _ mac: MACAddress, _ ifindex: UInt32) throws {
        try dp.upsertLocal(LocalEndpoint(vni: vni, ip: ip, mac: mac, ifindex: ifindex, subnet: T.s1,
                                         gateway: T.gw1, gatewayMAC: T.gwMAC))
    }
    try local(T.vniA, T.a1, T.a1mac, env.ifs.a)
    try local(T.vniA, T.a2, T.a2mac, env.ifs.b)
    try local(T.vniB, T.b1, T.b1mac, env.ifs.c)
    if roles.bouncerS1 {
        for (ip, mac, host) in [(T.a1, T.a1mac, T.h1), (T.a2, T.a2mac, T.h1), (T.a3, T.a3mac, T.h2), (T.a5, T.a5mac, T.h4)] {
            try dp.upsertEndpoint(EndpointEntry(vni: T.vniA, ip: ip, mac: mac, host: host))
        }
    }
}

// MARK: - Packets

enum P {
    /// What the agent hashes for a frame: inner addresses and the first four
    /// bytes after the IP header (ports), exactly as the program reads them.
    static func flowHash(_ frame: [UInt8]) -> UInt32 {
        let f = try! ParsedFrame(frame)
        if let arp = f.arp {
            return mz_flow_hash(arp.senderIP.value, arp.targetIP.value, 0x0806)
        }
        let ip = f.ipv4!
        var ports = UInt32(ip.protocol)
        if ip.protocol == 6 || ip.protocol == 17 {
            let l4 = 14 + Int(ip.ihl) * 4
            ports ^= UInt32(frame[l4]) | UInt32(frame[l4 + 1]) << 8 | UInt32(frame[l4 + 2]) << 16 | UInt32(frame[l4 + 3]) << 24
        }
        return mz_flow_hash(ip.src.value, ip.dst.value, ports)
    }

    static func rts(_ host: HostAddress, flags: UInt8 = 0) -> GeneveOption {
        GeneveOption(optionClass: UInt16(MZ_GENEVE_CLASS), type: UInt8(MZ_OPT_RTS.rawValue),
                     data: host.ip.bytes + host.mac.bytes + [flags, 0])
    }

    /// A tunnel packet exactly as the data plane builds it.
    static func tunnel(from: HostAddress, to: HostAddress, vni: VNI, rts: HostAddress, rtsFlags: UInt8 = 0,
                       ttl: UInt8 = 64, sport: UInt16? = nil, options: [GeneveOption]? = nil,
                       rawOptions: [UInt8] = [], inner: [UInt8]) -> [UInt8] {
        let port = sport ?? mz_flow_sport(flowHash(inner))
        let g = Packet.geneve(vni: vni.value, options: options ?? [P.rts(rts, flags: rtsFlags)], rawOptions: rawOptions,
                              payload: inner)
        let udp = Packet.udp(src: from.ip, dst: to.ip, srcPort: port, dstPort: 6081, payload: g, checksum: false)
        let ip = Packet.ipv4(src: from.ip, dst: to.ip, protocol: 17, payload: udp, ttl: ttl, dontFragment: true)
        return Packet.ethernet(dst: to.mac, src: from.mac, etherType: 0x0800, payload: ip)
    }

    /// Wraps raw Geneve bytes (for malformed headers) in UDP/IPv4/Ethernet to H1.
    static func rawGeneve(_ geneve: [UInt8], from: HostAddress = T.h2) -> [UInt8] {
        let udp = Packet.udp(src: from.ip, dst: T.h1.ip, srcPort: 50000, dstPort: 6081, payload: geneve, checksum: false)
        let ip = Packet.ipv4(src: from.ip, dst: T.h1.ip, protocol: 17, payload: udp, dontFragment: true)
        return Packet.ethernet(dst: T.h1.mac, src: from.mac, etherType: 0x0800, payload: ip)
    }

    static func udp(_ srcMAC: MACAddress, _ dstMAC: MACAddress, _ src: IPv4Address, _ dst: IPv4Address,
                    sport: UInt16 = 40000, dport: UInt16 = 7) -> [UInt8] {
        Packet.udpPacket(srcMAC: srcMAC, dstMAC: dstMAC, srcIP: src, dstIP: dst, srcPort: sport, dstPort: dport,
                         payload: Array("mizar".utf8))
    }

    static func tcp(_ srcMAC: MACAddress, _ dstMAC: MACAddress, _ src: IPv4Address, _ dst: IPv4Address) -> [UInt8] {
        Packet.tcpPacket(srcMAC: srcMAC, dstMAC: dstMAC, srcIP: src, dstIP: dst, srcPort: 33000, dstPort: 80,
                         seq: 1, flags: 0x02, payload: [])
    }

    static func ping(_ srcMAC: MACAddress, _ dstMAC: MACAddress, _ src: IPv4Address, _ dst: IPv4Address) -> [UInt8] {
        Packet.icmpPacket(srcMAC: srcMAC, dstMAC: dstMAC, srcIP: src, dstIP: dst, id: 7, sequence: 1,
                          payload: Array(repeating: 0x61, count: 16))
    }

    static func arpRequest(from mac: MACAddress, _ spa: IPv4Address, for tpa: IPv4Address) -> [UInt8] {
        Packet.ethernet(dst: .broadcast, src: mac, etherType: 0x0806,
                        payload: Packet.arp(operation: 1, senderMAC: mac, senderIP: spa, targetMAC: .zero, targetIP: tpa))
    }

    static func arpReply(_ mac: MACAddress, _ ip: IPv4Address, to dmac: MACAddress, _ dip: IPv4Address) -> [UInt8] {
        Packet.ethernet(dst: dmac, src: mac, etherType: 0x0806,
                        payload: Packet.arp(operation: 2, senderMAC: mac, senderIP: ip, targetMAC: dmac, targetIP: dip))
    }

    /// The same frame with a different destination MAC.
    static func withDstMAC(_ frame: [UInt8], _ mac: MACAddress) -> [UInt8] {
        mac.bytes + frame[6...]
    }

    static func patched(_ frame: [UInt8], _ changes: [Int: UInt8]) -> [UInt8] {
        var f = frame
        for (i, b) in changes { f[i] = b }
        return f
    }
}
