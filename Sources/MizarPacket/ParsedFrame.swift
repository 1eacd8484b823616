import MizarCore

/// A decoded Ethernet frame for assertions in BPF tests, fuzzers and event
/// decoding.
///
/// Tolerant by design: checksums are reported (`checksumValid`), not enforced;
/// unknown EtherTypes, protocols and reserved bits are kept as-is; bytes after
/// the IPv4 total length (Ethernet padding) are ignored. It throws a
/// `ValidationError` only when a length field points past its enclosing layer
/// or below a header's minimum, because nothing sound can be reported then.
///
/// IPv4 fragments (MF set or non-zero offset) are not decoded past IPv4: only
/// the first fragment holds the L4 header and even it cannot be length- or
/// checksum-checked, so `l4Payload` is the raw IP payload for them.
public struct ParsedFrame: Hashable, Sendable {
    public let dst: MACAddress
    public let src: MACAddress
    public let etherType: UInt16
    /// Everything after the 14-byte Ethernet header, padding included.
    public let ethernetPayload: [UInt8]

    public let arp: ARPPacket?
    public let ipv4: IPv4Header?
    public let udp: UDPHeader?
    public let tcp: TCPHeader?
    public let icmp: ICMPHeader?
    /// Set when the UDP destination port is 6081.
    public let geneve: GeneveHeader?

    /// Bytes after the L4 header (UDP/TCP/ICMP), or the IP payload for other
    /// protocols and fragments; empty for non-IPv4 frames.
    public let l4Payload: [UInt8]

    /// The encapsulated Ethernet frame when Geneve's protocol type is 0x6558.
    public var inner: ParsedFrame? { innerFrame.first }

    // An array gives the recursive value the indirection a struct needs while
    // staying a value type that is trivially Sendable and Hashable.
    private let innerFrame: [ParsedFrame]

    public init(_ bytes: [UInt8]) throws(ValidationError) {
        try self.init(WireReader(bytes: bytes, fieldPrefix: ""))
    }

    private init(_ wire: WireReader) throws(ValidationError) {
        let end = wire.bytes.count
        try wire.need(14, at: 0, end: end, "ethernet")
        dst = wire.mac(at: 0)
        src = wire.mac(at: 6)
        etherType = wire.u16(at: 12)
        ethernetPayload = wire.slice(14..<end)

        var arp: ARPPacket?
        var ipv4: IPv4Header?
        var udp: UDPHeader?
        var tcp: TCPHeader?
        var icmp: ICMPHeader?
        var geneve: GeneveHeader?
        var l4Payload: [UInt8] = []
        var inner: [ParsedFrame] = []

        switch etherType {
        case EtherType.arp:
            arp = try ARPPacket(wire, at: 14)
        case EtherType.ipv4:
            let ip = try IPv4Header(wire, at: 14)
            ipv4 = ip
            let l4 = 14 + Int(ip.ihl) * 4
            let ipEnd = 14 + Int(ip.totalLength)
            l4Payload = wire.slice(l4..<ipEnd)
            guard !ip.moreFragments, ip.fragmentOffset == 0 else { break }
            switch ip.protocol {
            case IPProtocol.udp:
                let header = try UDPHeader(wire, at: l4, end: ipEnd, src: ip.src, dst: ip.dst)
                udp = header
                let payloadStart = l4 + 8
                let udpEnd = l4 + Int(header.length)
                l4Payload = wire.slice(payloadStart..<udpEnd)
                if header.dstPort == genevePort {
                    let tunnel = try GeneveHeader(wire, at: payloadStart, end: udpEnd)
                    geneve = tunnel
                    if tunnel.protocolType == EtherType.transparentEthernet {
                        inner = [try ParsedFrame(WireReader(bytes: tunnel.payload, fieldPrefix: wire.fieldPrefix + "inner."))]
                    }
                }
            case IPProtocol.tcp:
                let header = try TCPHeader(wire, at: l4, end: ipEnd, src: ip.src, dst: ip.dst)
                tcp = header
                l4Payload = wire.slice(l4 + Int(header.dataOffset) * 4..<ipEnd)
            case IPProtocol.icmp:
                icmp = try ICMPHeader(wire, at: l4, end: ipEnd)
                l4Payload = wire.slice(l4 + 8..<ipEnd)
            default:
                break
            }
        default:
            break
        }

        self.arp = arp
        self.ipv4 = ipv4
        self.udp = udp
        self.tcp = tcp
        self.icmp = icmp
        self.geneve = geneve
        self.l4Payload = l4Payload
        self.innerFrame = inner
    }
}
