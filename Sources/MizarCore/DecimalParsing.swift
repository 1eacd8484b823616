/// Outcome of reading one strict decimal component (an octet or a prefix length).
enum DecimalComponent {
    case value(UInt32)
    case empty
    case notDecimal
    case leadingZero
    case tooLarge
}

/// Strict unsigned decimal: ASCII digits only, no sign, no whitespace, and no
/// leading zeros. Leading zeros are rejected because some resolvers (inet_aton)
/// read "010" as octal, so accepting it would silently disagree with them.
func parseDecimalComponent(_ digits: Substring.UTF8View, max: UInt32) -> DecimalComponent {
    guard let first = digits.first else { return .empty }
    var value: UInt32 = 0
    for byte in digits {
        guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return .notDecimal }
    }
    if first == UInt8(ascii: "0"), digits.count > 1 { return .leadingZero }
    for byte in digits {
        // Checked before multiplying so arbitrarily long digit runs cannot overflow.
        guard value <= max / 10 else { return .tooLarge }
        value = value * 10 + UInt32(byte - UInt8(ascii: "0"))
        guard value <= max else { return .tooLarge }
    }
    return .value(value)
}
