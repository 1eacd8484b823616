/// One Geneve TLV option (RFC 8926 §3.5).
///
/// Always well-formed: the length field is derived from `data`. To test a
/// decoder against a lying length, take `encoded`, patch byte 3, and pass the
/// result to `Packet.geneve(rawOptions:)`.
public struct GeneveOption: Hashable, Sendable {
    public let optionClass: UInt16
    /// The high bit is the option's own "critical" flag; see `isCritical`.
    public let type: UInt8
    /// Variable data; its length is carried in 4-byte words, hence the
    /// multiple-of-4 rule, and the 5-bit field caps it at 31 words.
    public let data: [UInt8]

    public init(optionClass: UInt16, type: UInt8, data: [UInt8] = []) {
        precondition(data.count % 4 == 0 && data.count <= 124, "Geneve option data must be 0...124 bytes in 4-byte words")
        self.optionClass = optionClass
        self.type = type
        self.data = data
    }

    public var isCritical: Bool { type & 0x80 != 0 }

    /// Wire form: class(2) type(1) R(3 bits)|length-in-words(5 bits), data.
    public var encoded: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(4 + data.count)
        bytes.append(be: optionClass)
        bytes.append(type)
        bytes.append(UInt8(data.count / 4))
        bytes += data
        return bytes
    }
}

extension Packet {
    /// Geneve header + options + payload (RFC 8926), i.e. the UDP payload of an
    /// encapsulated packet. The default protocol type means `payload` is an
    /// Ethernet frame, which is what Mizar carries.
    ///
    /// `rawOptions` is appended verbatim after `options` for malformed-input
    /// tests; the header's Opt Len counts both, so the total must still be a
    /// whole number of 4-byte words (at most 63). To make Opt Len itself lie,
    /// patch byte 0 of the result before wrapping it in UDP.
    public static func geneve(
        vni: UInt32,
        protocolType: UInt16 = EtherType.transparentEthernet,
        options: [GeneveOption] = [],
        rawOptions: [UInt8] = [],
        oam: Bool = false,
        critical: Bool = false,
        version: UInt8 = 0,
        payload: [UInt8]
    ) -> [UInt8] {
        precondition(vni <= 0xFF_FFFF, "VNI is a 24-bit field")
        precondition(version < 4, "Geneve version is a 2-bit field")
        let optionBytes = options.flatMap(\.encoded) + rawOptions
        precondition(
            optionBytes.count % 4 == 0 && optionBytes.count <= 63 * 4,
            "Geneve options must total 0...252 bytes in 4-byte words, got \(optionBytes.count)")

        var header: [UInt8] = []
        header.reserveCapacity(8 + optionBytes.count + payload.count)
        header.append(version << 6 | UInt8(optionBytes.count / 4))
        header.append((oam ? 0x80 : 0) | (critical ? 0x40 : 0))
        header.append(be: protocolType)
        header.append(be: vni << 8)  // VNI in the top 24 bits, reserved byte 0
        header += optionBytes
        header += payload
        return header
    }
}
