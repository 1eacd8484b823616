import MizarCore

// Whole Ethernet + IPv4 + L4 frames for the common case. Anything unusual
// (TTL, fragments, IP options, corrupted fields) composes the layer builders
// directly instead of growing these signatures.
extension Packet {
    public static func udpPacket(
        srcMAC: MACAddress, dstMAC: MACAddress, srcIP: IPv4Address, dstIP: IPv4Address,
        srcPort: UInt16, dstPort: UInt16, payload: [UInt8]
    ) -> [UInt8] {
        let segment = udp(src: srcIP, dst: dstIP, srcPort: srcPort, dstPort: dstPort, payload: payload)
        return ethernet(
            dst: dstMAC, src: srcMAC, etherType: EtherType.ipv4,
            payload: ipv4(src: srcIP, dst: dstIP, protocol: IPProtocol.udp, payload: segment))
    }

    public static func tcpPacket(
        srcMAC: MACAddress, dstMAC: MACAddress, srcIP: IPv4Address, dstIP: IPv4Address,
        srcPort: UInt16, dstPort: UInt16, seq: UInt32 = 0, ack: UInt32 = 0, flags: UInt8, payload: [UInt8]
    ) -> [UInt8] {
        let segment = tcp(
            src: srcIP, dst: dstIP, srcPort: srcPort, dstPort: dstPort, seq: seq, ack: ack, flags: flags,
            payload: payload)
        return ethernet(
            dst: dstMAC, src: srcMAC, etherType: EtherType.ipv4,
            payload: ipv4(src: srcIP, dst: dstIP, protocol: IPProtocol.tcp, payload: segment))
    }

    public static func icmpPacket(
        srcMAC: MACAddress, dstMAC: MACAddress, srcIP: IPv4Address, dstIP: IPv4Address,
        request: Bool = true, id: UInt16, sequence: UInt16, payload: [UInt8]
    ) -> [UInt8] {
        let message = icmpEcho(request: request, id: id, sequence: sequence, payload: payload)
        return ethernet(
            dst: dstMAC, src: srcMAC, etherType: EtherType.ipv4,
            payload: ipv4(src: srcIP, dst: dstIP, protocol: IPProtocol.icmp, payload: message))
    }

    /// An outer Ethernet + IPv4 + UDP(→6081) + Geneve frame carrying `inner`
    /// (an Ethernet frame) — the shape Mizar's data plane emits between hosts.
    /// The UDP checksum defaults to off (0) as in Linux's geneve driver for IPv4
    /// underlays, which RFC 8926 permits; `srcPort` is the flow-entropy port.
    public static func genevePacket(
        srcMAC: MACAddress, dstMAC: MACAddress, srcIP: IPv4Address, dstIP: IPv4Address,
        srcPort: UInt16, vni: UInt32, options: [GeneveOption] = [], udpChecksum: Bool = false, inner: [UInt8]
    ) -> [UInt8] {
        let tunnel = geneve(vni: vni, options: options, payload: inner)
        let segment = udp(
            src: srcIP, dst: dstIP, srcPort: srcPort, dstPort: genevePort, payload: tunnel, checksum: udpChecksum)
        return ethernet(
            dst: dstMAC, src: srcMAC, etherType: EtherType.ipv4,
            payload: ipv4(src: srcIP, dst: dstIP, protocol: IPProtocol.udp, payload: segment))
    }
}
