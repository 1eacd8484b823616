/// An IPv4 address held in host byte order, so arithmetic and ordering are
/// numeric; use `networkOrder`/`bytes` at the wire or kernel boundary.
public struct IPv4Address: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var value: UInt32

    public static let zero = IPv4Address(value: 0)
    public static let broadcast = IPv4Address(value: .max)

    public init(value: UInt32) {
        self.value = value
    }

    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        value = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// For values read straight out of a packet or a BPF map (`__be32`).
    public init(networkOrder: UInt32) {
        value = UInt32(bigEndian: networkOrder)
    }

    public init(bytes: some Collection<UInt8>) {
        precondition(bytes.count == 4, "IPv4Address needs exactly 4 bytes, got \(bytes.count)")
        value = bytes.reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// Strict dotted quad only. Shorthand forms that inet_aton accepts ("10.1",
    /// "0x0a.0.0.1", "010.0.0.1") are rejected: in tenant specs they are far more
    /// likely to be typos than intent.
    public init(parsing text: String, field: String = "ip") throws(ValidationError) {
        let quoted = ValidationError.quote(text)
        let expected = "expected a dotted-quad IPv4 address like 10.0.0.1"
        guard !text.isEmpty else {
            throw ValidationError(field: field, reason: "is empty; \(expected)")
        }
        let parts = text.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 4 else {
            throw ValidationError(
                field: field,
                reason: "\(quoted) has \(parts.count) dot-separated part\(parts.count == 1 ? "" : "s"); \(expected)")
        }
        var result: UInt32 = 0
        for (index, part) in parts.enumerated() {
            let position = "part \(index + 1)"
            let shown = ValidationError.quote(Substring(part))
            switch parseDecimalComponent(part, max: 255) {
            case .value(let octet):
                result = result << 8 | octet
            case .empty:
                throw ValidationError(field: field, reason: "\(quoted) has an empty \(position); \(expected)")
            case .notDecimal:
                throw ValidationError(
                    field: field,
                    reason: "\(quoted) \(position) \(shown) is not a decimal number; \(expected)")
            case .leadingZero:
                throw ValidationError(
                    field: field,
                    reason: "\(quoted) \(position) \(shown) has a leading zero (ambiguous with octal); write it without leading zeros")
            case .tooLarge:
                throw ValidationError(
                    field: field,
                    reason: "\(quoted) \(position) \(shown) is out of range; each part must be 0-255")
            }
        }
        value = result
    }

    /// The value as stored in packets and `__be32` kernel fields.
    public var networkOrder: UInt32 { value.bigEndian }

    /// The four octets in wire (network) order.
    public var bytes: [UInt8] {
        [UInt8(truncatingIfNeeded: value >> 24), UInt8(truncatingIfNeeded: value >> 16),
         UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)]
    }

    /// 224.0.0.0/4.
    public var isMulticast: Bool { value >> 28 == 0xE }

    /// 255.255.255.255 only; directed (subnet) broadcast depends on a prefix
    /// and so lives on `CIDR.lastAddress`.
    public var isLimitedBroadcast: Bool { value == .max }

    public var description: String {
        "\(value >> 24).\(value >> 16 & 0xFF).\(value >> 8 & 0xFF).\(value & 0xFF)"
    }

    public static func < (lhs: IPv4Address, rhs: IPv4Address) -> Bool { lhs.value < rhs.value }
}
