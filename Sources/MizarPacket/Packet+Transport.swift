import MizarCore

extension Packet {
    /// UDP header + payload. `src`/`dst` are needed only for the pseudo-header
    /// checksum. With `checksum: false` the field is 0 ("no checksum", legal on
    /// IPv4 and common for tunnels); a computed 0 is sent as 0xFFFF so it is not
    /// mistaken for that.
    public static func udp(
        src: IPv4Address, dst: IPv4Address, srcPort: UInt16, dstPort: UInt16, payload: [UInt8], checksum: Bool = true
    ) -> [UInt8] {
        let length = 8 + payload.count
        precondition(length <= Int(UInt16.max), "UDP length \(length) exceeds 65535")
        var segment: [UInt8] = []
        segment.reserveCapacity(length)
        segment.append(be: srcPort)
        segment.append(be: dstPort)
        segment.append(be: UInt16(length))
        segment.append(be: UInt16(0))
        segment += payload
        if checksum {
            let sum = transportChecksum(src: src, dst: dst, protocol: IPProtocol.udp, segment: segment)
            segment.put(be: sum == 0 ? 0xFFFF : sum, at: 6)
        }
        return segment
    }

    /// TCP header (no options, data offset 5, urgent pointer 0) + payload with
    /// the pseudo-header checksum. `flags` is a combination of `TCPFlag` bits.
    public static func tcp(
        src: IPv4Address,
        dst: IPv4Address,
        srcPort: UInt16,
        dstPort: UInt16,
        seq: UInt32,
        ack: UInt32,
        flags: UInt8,
        window: UInt16 = 65535,
        payload: [UInt8]
    ) -> [UInt8] {
        var segment: [UInt8] = []
        segment.reserveCapacity(20 + payload.count)
        segment.append(be: srcPort)
        segment.append(be: dstPort)
        segment.append(be: seq)
        segment.append(be: ack)
        segment.append(5 << 4)
        segment.append(flags)
        segment.append(be: window)
        segment.append(be: UInt16(0))  // checksum, filled below
        segment.append(be: UInt16(0))  // urgent pointer
        segment += payload
        segment.put(be: transportChecksum(src: src, dst: dst, protocol: IPProtocol.tcp, segment: segment), at: 16)
        return segment
    }

    /// ICMP echo request (type 8) or reply (type 0), code 0, with checksum.
    /// ICMP has no pseudo-header, so no addresses are needed.
    public static func icmpEcho(request: Bool = true, id: UInt16, sequence: UInt16, payload: [UInt8]) -> [UInt8] {
        var message: [UInt8] = [request ? 8 : 0, 0, 0, 0]
        message.reserveCapacity(8 + payload.count)
        message.append(be: id)
        message.append(be: sequence)
        message += payload
        message.put(be: internetChecksum(message), at: 2)
        return message
    }
}
