/// An Ethernet address. Stored as the low 48 bits of a `UInt64` so it is a
/// single scalar for hashing, comparison and BPF map keys.
public struct MACAddress: Hashable, Sendable, CustomStringConvertible {
    /// The address as a 48-bit big-endian number: byte 0 is bits 47...40.
    public let value: UInt64

    public static let zero = MACAddress(value: 0)
    public static let broadcast = MACAddress(value: 0xFFFF_FFFF_FFFF)

    public init(value: UInt64) {
        precondition(value >> 48 == 0, "MACAddress value must fit in 48 bits")
        self.value = value
    }

    public init(_ b0: UInt8, _ b1: UInt8, _ b2: UInt8, _ b3: UInt8, _ b4: UInt8, _ b5: UInt8) {
        self.init(bytes: [b0, b1, b2, b3, b4, b5])
    }

    public init(bytes: some Collection<UInt8>) {
        precondition(bytes.count == 6, "MACAddress needs exactly 6 bytes, got \(bytes.count)")
        value = bytes.reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// Only the canonical colon form: other spellings ("aabb.ccdd.eeff",
    /// "aa-bb-...") are not produced by Linux tooling or the Mizar API, so
    /// accepting them would only widen what has to be tested.
    public init(parsing text: String, field: String = "mac") throws(ValidationError) {
        let expected = "expected six two-digit hex groups separated by ':' like 02:42:ac:11:00:02"
        guard !text.isEmpty else {
            throw ValidationError(field: field, reason: "is empty; \(expected)")
        }
        let quoted = ValidationError.quote(text)
        let groups = text.utf8.split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false)
        guard groups.count == 6 else {
            throw ValidationError(
                field: field,
                reason: "\(quoted) has \(groups.count) ':'-separated group\(groups.count == 1 ? "" : "s"); \(expected)")
        }
        var result: UInt64 = 0
        for (index, group) in groups.enumerated() {
            guard group.count == 2,
                  let high = hexValue(group[group.startIndex]),
                  let low = hexValue(group[group.index(after: group.startIndex)])
            else {
                throw ValidationError(
                    field: field,
                    reason: "\(quoted) group \(index + 1) \(ValidationError.quote(Substring(group))) is not two hex digits; \(expected)")
            }
            result = result << 8 | UInt64(high << 4 | low)
        }
        value = result
    }

    /// The six octets in wire order.
    public var bytes: [UInt8] {
        (0..<6).map { UInt8(truncatingIfNeeded: value >> (40 - 8 * $0)) }
    }

    /// The I/G bit: the least significant bit of the first octet on the wire.
    public var isMulticast: Bool { value >> 40 & 1 == 1 }
    public var isBroadcast: Bool { self == .broadcast }
    public var isZero: Bool { value == 0 }

    public var description: String {
        bytes.map { byte in
            let digits = String(byte, radix: 16)
            return byte < 0x10 ? "0" + digits : digits
        }.joined(separator: ":")
    }
}

private func hexValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
    default: nil
    }
}
