/// An IPv4 prefix such as 10.0.0.0/16. Always normalised: the address is the
/// network address, so two equal prefixes compare and hash equal.
public struct CIDR: Hashable, Sendable, CustomStringConvertible {
    public let address: IPv4Address
    public let prefixLength: UInt8

    /// Rejects host bits instead of masking them: "10.0.0.1/16" in a spec is
    /// usually a mistake (an interface address pasted as a subnet), and silently
    /// widening it could hand one tenant's range to another.
    public init(address: IPv4Address, prefixLength: UInt8, field: String = "cidr") throws(ValidationError) {
        guard prefixLength <= 32 else {
            throw ValidationError(
                field: field,
                reason: "prefix length \(prefixLength) is out of range; expected 0...32")
        }
        let mask = Self.netmask(prefixLength)
        guard address.value & ~mask == 0 else {
            let network = IPv4Address(value: address.value & mask)
            throw ValidationError(
                field: field,
                reason: "\"\(address)/\(prefixLength)\" has host bits set; did you mean \(network)/\(prefixLength)?")
        }
        self.address = address
        self.prefixLength = prefixLength
    }

    public init(parsing text: String, field: String = "cidr") throws(ValidationError) {
        let expected = "expected an IPv4 prefix like 10.0.0.0/16"
        guard !text.isEmpty else {
            throw ValidationError(field: field, reason: "is empty; \(expected)")
        }
        let quoted = ValidationError.quote(text)
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 else {
            let problem = parts.count == 1 ? "is missing the \"/prefix\" part" : "has more than one '/'"
            throw ValidationError(field: field, reason: "\(quoted) \(problem); \(expected)")
        }
        let ip: IPv4Address
        do {
            ip = try IPv4Address(parsing: String(parts[0]), field: field)
        } catch {
            throw ValidationError(field: field, reason: "\(quoted) has an invalid address: \(error.reason)")
        }
        let prefixText = ValidationError.quote(parts[1])
        switch parseDecimalComponent(parts[1].utf8, max: 32) {
        case .value(let length):
            try self.init(address: ip, prefixLength: UInt8(length), field: field)
        case .empty:
            throw ValidationError(field: field, reason: "\(quoted) has an empty prefix length; expected 0...32")
        case .notDecimal, .leadingZero:
            throw ValidationError(
                field: field,
                reason: "\(quoted) prefix length \(prefixText) is not a plain decimal number; expected 0...32")
        case .tooLarge:
            throw ValidationError(
                field: field,
                reason: "\(quoted) prefix length \(prefixText) is out of range; expected 0...32")
        }
    }

    /// Host byte order, like `IPv4Address.value`.
    public var netmask: UInt32 { Self.netmask(prefixLength) }

    public var firstAddress: IPv4Address { address }
    public var lastAddress: IPv4Address { IPv4Address(value: address.value | ~netmask) }

    /// UInt64 because a /0 holds 2^32 addresses, one more than UInt32 can count.
    public var size: UInt64 { 1 << (32 - UInt64(prefixLength)) }

    public func contains(_ ip: IPv4Address) -> Bool {
        ip.value & netmask == address.value
    }

    public func contains(_ other: CIDR) -> Bool {
        other.prefixLength >= prefixLength && contains(other.address)
    }

    /// Prefixes either nest or are disjoint, so overlap is containment one way.
    public func overlaps(_ other: CIDR) -> Bool {
        contains(other) || other.contains(self)
    }

    public var description: String { "\(address)/\(prefixLength)" }

    // Relies on Swift's smart shift: for /0 the shift count is 32, which yields
    // 0 instead of the undefined behaviour the same expression has in C.
    private static func netmask(_ length: UInt8) -> UInt32 {
        UInt32.max << (32 - UInt32(length))
    }
}
