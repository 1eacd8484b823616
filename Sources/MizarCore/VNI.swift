/// A Geneve Virtual Network Identifier: the 24-bit tenant network id carried in
/// every encapsulated packet.
public struct VNI: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let value: UInt32

    /// The valid range. 0 is excluded because Mizar reserves it for the
    /// substrate (underlay) network; a tenant VPC must never alias it.
    public static let validRange: ClosedRange<UInt32> = 1...0xFF_FFFF

    public init(_ value: UInt32, field: String = "vni") throws(ValidationError) {
        guard value != 0 else {
            throw ValidationError(
                field: field,
                reason: "0 is reserved for the substrate network; expected a value in 1...16777215")
        }
        guard Self.validRange.contains(value) else {
            throw ValidationError(
                field: field,
                reason: "\(value) does not fit in 24 bits; expected a value in 1...16777215")
        }
        self.value = value
    }

    public var description: String { String(value) }

    public static func < (lhs: VNI, rhs: VNI) -> Bool { lhs.value < rhs.value }
}
