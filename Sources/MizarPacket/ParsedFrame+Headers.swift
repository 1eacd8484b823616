import MizarCore

// Decoded header fields, kept raw (numbers as on the wire, host byte order) so
// tests can assert on malformed values as easily as on valid ones.

extension ParsedFrame {
    public struct IPv4Header: Hashable, Sendable {
        public let version: UInt8
        /// Header length in 4-byte words.
        public let ihl: UInt8
        public let tos: UInt8
        public let totalLength: UInt16
        public let id: UInt16
        /// The 3 flag bits: 0b010 = DF, 0b001 = MF.
        public let flags: UInt8
        /// In 8-byte units, as on the wire.
        public let fragmentOffset: UInt16
        public let ttl: UInt8
        public let `protocol`: UInt8
        public let checksum: UInt16
        public let src: IPv4Address
        public let dst: IPv4Address
        public let options: [UInt8]
        public let checksumValid: Bool

        public var dontFragment: Bool { flags & 0b010 != 0 }
        public var moreFragments: Bool { flags & 0b001 != 0 }

        init(_ wire: WireReader, at offset: Int) throws(ValidationError) {
            let end = wire.bytes.count
            try wire.need(20, at: offset, end: end, "ipv4")
            version = wire[offset] >> 4
            ihl = wire[offset] & 0x0F
            guard ihl >= 5 else {
                throw wire.error("ipv4.ihl", "\(ihl) is below the minimum of 5 (a 20-byte header)")
            }
            let headerLength = Int(ihl) * 4
            try wire.need(headerLength, at: offset, end: end, "ipv4.ihl")
            tos = wire[offset + 1]
            totalLength = wire.u16(at: offset + 2)
            guard Int(totalLength) >= headerLength else {
                throw wire.error("ipv4.totalLength", "\(totalLength) is smaller than the \(headerLength)-byte header")
            }
            try wire.need(Int(totalLength), at: offset, end: end, "ipv4.totalLength")
            id = wire.u16(at: offset + 4)
            flags = wire[offset + 6] >> 5
            fragmentOffset = wire.u16(at: offset + 6) & 0x1FFF
            ttl = wire[offset + 8]
            `protocol` = wire[offset + 9]
            checksum = wire.u16(at: offset + 10)
            src = wire.ipv4(at: offset + 12)
            dst = wire.ipv4(at: offset + 16)
            options = wire.slice(offset + 20..<offset + headerLength)
            checksumValid = internetChecksum(wire.bytes[offset..<offset + headerLength]) == 0
        }
    }

    public struct UDPHeader: Hashable, Sendable {
        public let srcPort: UInt16
        public let dstPort: UInt16
        /// Header + payload, as claimed by the packet.
        public let length: UInt16
        public let checksum: UInt16
        /// nil when the checksum field is 0, which on IPv4 means "not computed".
        public let checksumValid: Bool?

        init(_ wire: WireReader, at offset: Int, end: Int, src: IPv4Address, dst: IPv4Address) throws(ValidationError) {
            try wire.need(8, at: offset, end: end, "udp")
            srcPort = wire.u16(at: offset)
            dstPort = wire.u16(at: offset + 2)
            length = wire.u16(at: offset + 4)
            checksum = wire.u16(at: offset + 6)
            guard length >= 8 else {
                throw wire.error("udp.length", "\(length) is smaller than the 8-byte header")
            }
            try wire.need(Int(length), at: offset, end: end, "udp.length")
            let segment = wire.bytes[offset..<offset + Int(length)]
            checksumValid = checksum == 0
                ? nil
                : transportChecksum(src: src, dst: dst, protocol: IPProtocol.udp, segment: segment) == 0
        }
    }

    public struct TCPHeader: Hashable, Sendable {
        public let srcPort: UInt16
        public let dstPort: UInt16
        public let seq: UInt32
        public let ack: UInt32
        /// Header length in 4-byte words.
        public let dataOffset: UInt8
        /// The eight `TCPFlag` bits (CWR...FIN).
        public let flags: UInt8
        public let window: UInt16
        public let checksum: UInt16
        public let urgentPointer: UInt16
        public let options: [UInt8]
        public let checksumValid: Bool

        init(_ wire: WireReader, at offset: Int, end: Int, src: IPv4Address, dst: IPv4Address) throws(ValidationError) {
            try wire.need(20, at: offset, end: end, "tcp")
            srcPort = wire.u16(at: offset)
            dstPort = wire.u16(at: offset + 2)
            seq = wire.u32(at: offset + 4)
            ack = wire.u32(at: offset + 8)
            dataOffset = wire[offset + 12] >> 4
            guard dataOffset >= 5 else {
                throw wire.error("tcp.dataOffset", "\(dataOffset) is below the minimum of 5 (a 20-byte header)")
            }
            try wire.need(Int(dataOffset) * 4, at: offset, end: end, "tcp.dataOffset")
            flags = wire[offset + 13]
            window = wire.u16(at: offset + 14)
            checksum = wire.u16(at: offset + 16)
            urgentPointer = wire.u16(at: offset + 18)
            options = wire.slice(offset + 20..<offset + Int(dataOffset) * 4)
            checksumValid = transportChecksum(
                src: src, dst: dst, protocol: IPProtocol.tcp, segment: wire.bytes[offset..<end]) == 0
        }
    }

    public struct ICMPHeader: Hashable, Sendable {
        public let type: UInt8
        public let code: UInt8
        public let checksum: UInt16
        /// Bytes 4...7 read as echo identifier and sequence; meaningful only for
        /// echo request/reply (types 8/0), raw header bytes otherwise.
        public let id: UInt16
        public let sequence: UInt16
        /// Over the whole ICMP message, which has no pseudo-header.
        public let checksumValid: Bool

        init(_ wire: WireReader, at offset: Int, end: Int) throws(ValidationError) {
            try wire.need(8, at: offset, end: end, "icmp")
            type = wire[offset]
            code = wire[offset + 1]
            checksum = wire.u16(at: offset + 2)
            id = wire.u16(at: offset + 4)
            sequence = wire.u16(at: offset + 6)
            checksumValid = internetChecksum(wire.bytes[offset..<end]) == 0
        }
    }

    public struct ARPPacket: Hashable, Sendable {
        public let hardwareType: UInt16
        public let protocolType: UInt16
        public let hardwareLength: UInt8
        public let protocolLength: UInt8
        public let operation: UInt16
        public let senderMAC: MACAddress
        public let senderIP: IPv4Address
        public let targetMAC: MACAddress
        public let targetIP: IPv4Address

        init(_ wire: WireReader, at offset: Int) throws(ValidationError) {
            let end = wire.bytes.count
            try wire.need(8, at: offset, end: end, "arp")
            hardwareType = wire.u16(at: offset)
            protocolType = wire.u16(at: offset + 2)
            hardwareLength = wire[offset + 4]
            protocolLength = wire[offset + 5]
            operation = wire.u16(at: offset + 6)
            // The address fields' positions depend on these lengths, so other
            // shapes cannot be decoded into MAC/IPv4 fields at all.
            guard hardwareLength == 6, protocolLength == 4 else {
                throw wire.error(
                    "arp",
                    "address lengths \(hardwareLength)/\(protocolLength) are not Ethernet/IPv4; expected 6/4")
            }
            try wire.need(28, at: offset, end: end, "arp")
            senderMAC = wire.mac(at: offset + 8)
            senderIP = wire.ipv4(at: offset + 14)
            targetMAC = wire.mac(at: offset + 18)
            targetIP = wire.ipv4(at: offset + 24)
        }
    }

    public struct GeneveHeader: Hashable, Sendable {
        public let version: UInt8
        public let optLenWords: UInt8
        public let oam: Bool
        public let critical: Bool
        public let protocolType: UInt16
        /// Raw 24-bit value; not a `VNI` because 0 must be reportable.
        public let vni: UInt32
        public let options: [GeneveOption]
        /// Bytes after the options: the inner frame for protocol type 0x6558.
        public let payload: [UInt8]

        init(_ wire: WireReader, at offset: Int, end: Int) throws(ValidationError) {
            try wire.need(8, at: offset, end: end, "geneve")
            version = wire[offset] >> 6
            optLenWords = wire[offset] & 0x3F
            oam = wire[offset + 1] & 0x80 != 0
            critical = wire[offset + 1] & 0x40 != 0
            protocolType = wire.u16(at: offset + 2)
            vni = wire.u24(at: offset + 4)
            let optionsStart = offset + 8
            let optionsEnd = optionsStart + Int(optLenWords) * 4
            try wire.need(Int(optLenWords) * 4, at: optionsStart, end: end, "geneve.optLenWords")

            var options: [GeneveOption] = []
            var cursor = optionsStart
            while cursor < optionsEnd {
                let field = "geneve.options[\(options.count)]"
                try wire.need(4, at: cursor, end: optionsEnd, field)
                let dataLength = Int(wire[cursor + 3] & 0x1F) * 4
                // Bounded by Opt Len, not the packet: an option must not spill
                // into the payload even if bytes happen to be there.
                try wire.need(4 + dataLength, at: cursor, end: optionsEnd, field + ".length")
                options.append(
                    GeneveOption(
                        optionClass: wire.u16(at: cursor),
                        type: wire[cursor + 2],
                        data: wire.slice(cursor + 4..<cursor + 4 + dataLength)))
                cursor += 4 + dataLength
            }
            self.options = options
            payload = wire.slice(optionsEnd..<end)
        }
    }
}
