import MizarCore
import MizarPacket

// Shared addresses so tests read as "host A to host B" rather than literals.
enum Fixture {
    static let macA = MACAddress(0x02, 0x00, 0x00, 0x00, 0x00, 0x0A)
    static let macB = MACAddress(0x02, 0x00, 0x00, 0x00, 0x00, 0x0B)
    static let hostA = IPv4Address(10, 0, 0, 1)
    static let hostB = IPv4Address(10, 0, 0, 2)
    static let nodeA = IPv4Address(172, 16, 0, 1)
    static let nodeB = IPv4Address(172, 16, 0, 2)
    static let payload = Array("hello".utf8)
}

/// Deliberately naive RFC 1071 reference (per-word carry folding over explicit
/// pseudo-header bytes) so checksum tests do not verify the code with itself.
func referenceChecksum(_ bytes: [UInt8]) -> UInt16 {
    var sum: UInt32 = 0
    var index = 0
    while index < bytes.count {
        let high = UInt32(bytes[index])
        let low = index + 1 < bytes.count ? UInt32(bytes[index + 1]) : 0
        sum += high << 8 | low
        sum = (sum & 0xFFFF) + (sum >> 16)
        index += 2
    }
    return ~UInt16(sum)
}

func referenceTransportChecksum(src: IPv4Address, dst: IPv4Address, protocol: UInt8, segment: [UInt8]) -> UInt16 {
    let length = UInt16(segment.count)
    let pseudo = src.bytes + dst.bytes + [0, `protocol`, UInt8(length >> 8), UInt8(length & 0xFF)]
    return referenceChecksum(pseudo + segment)
}

func hex(_ text: String) -> [UInt8] {
    let digits = Array(text.filter { !$0.isWhitespace })
    return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(digits[$0...$0 + 1]), radix: 16)! }
}
