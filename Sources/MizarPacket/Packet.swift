import MizarCore

/// Builders for exact wire bytes. Each returns one layer (header + the given
/// payload), so layers compose by nesting calls and tests can corrupt any layer
/// before wrapping it. Builders trap on arguments that cannot be encoded at
/// all; anything encodable but wrong is allowed, because malformed packets are
/// test inputs too.
public enum Packet {
    /// Ethernet II header + payload. No minimum-size padding and no FCS, which
    /// matches what XDP/TC programs see and emit.
    public static func ethernet(dst: MACAddress, src: MACAddress, etherType: UInt16, payload: [UInt8]) -> [UInt8] {
        var frame: [UInt8] = []
        frame.reserveCapacity(14 + payload.count)
        frame += dst.bytes
        frame += src.bytes
        frame.append(be: etherType)
        frame += payload
        return frame
    }

    /// IPv4 header + payload with IHL, total length and header checksum filled in.
    /// `fragmentOffset` is in 8-byte units, exactly as carried in the header.
    public static func ipv4(
        src: IPv4Address,
        dst: IPv4Address,
        protocol: UInt8,
        payload: [UInt8],
        ttl: UInt8 = 64,
        tos: UInt8 = 0,
        id: UInt16 = 0,
        dontFragment: Bool = false,
        moreFragments: Bool = false,
        fragmentOffset: UInt16 = 0,
        options: [UInt8] = []
    ) -> [UInt8] {
        precondition(options.count % 4 == 0 && options.count <= 40, "IPv4 options must be 0...40 bytes in 4-byte words")
        precondition(fragmentOffset <= 0x1FFF, "fragment offset is a 13-bit field")
        let headerLength = 20 + options.count
        let totalLength = headerLength + payload.count
        precondition(totalLength <= Int(UInt16.max), "IPv4 total length \(totalLength) exceeds 65535")

        var packet: [UInt8] = []
        packet.reserveCapacity(totalLength)
        packet.append(0x40 | UInt8(headerLength / 4))
        packet.append(tos)
        packet.append(be: UInt16(totalLength))
        packet.append(be: id)
        packet.append(be: (dontFragment ? 0x4000 : 0) | (moreFragments ? 0x2000 : 0) | fragmentOffset)
        packet.append(ttl)
        packet.append(`protocol`)
        packet.append(be: UInt16(0))
        packet += src.bytes
        packet += dst.bytes
        packet += options
        packet.put(be: internetChecksum(packet), at: 10)
        packet += payload
        return packet
    }
}
