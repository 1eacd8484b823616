/// A value of the model that travels as text in JSON, YAML and flags: it is
/// parsed from that text (with the error naming what is wrong) and printed
/// as it, so typed fields keep the stored format of string fields.
public protocol TextValue: Codable, ExpressibleByStringLiteral, CustomStringConvertible where StringLiteralType == String {
    init(parsing text: String, field: String) throws(ValidationError)
}

extension TextValue {
    /// A malformed value is a decoding error at its own coding path, whose
    /// description is the parser's reason ("spec.cidr: ..." once the path
    /// is put in front).
    public init(from decoder: any Decoder) throws {
        self = try Self.decodeText(from: decoder)
    }

    public func encode(to encoder: any Encoder) throws {
        try encodeText(to: encoder)
    }

    /// The decoding, for a type that must spell out `init(from:)` (an enum
    /// with raw values has a second default).
    public static func decodeText(from decoder: any Decoder) throws -> Self {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        do {
            return try Self(parsing: text, field: "")
        } catch {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: error.reason)
        }
    }

    public func encodeText(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    /// For literals in code and tests: a malformed literal is a programming
    /// error and stops the program.
    public init(stringLiteral text: String) {
        do {
            try self.init(parsing: text, field: "literal")
        } catch {
            preconditionFailure("\(error)")
        }
    }
}

extension IPv4Address: TextValue {}
extension CIDR: TextValue {}
extension MACAddress: TextValue {}

/// "TCP" or "UDP"; read in any case.
extension ServicePort.Proto: TextValue {
    public init(from decoder: any Decoder) throws { self = try Self.decodeText(from: decoder) }
    public func encode(to encoder: any Encoder) throws { try encodeText(to: encoder) }
}

/// A VNI travels as a number.
extension VNI: Codable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let value = try container.decode(UInt32.self)
        do {
            try self.init(value)
        } catch {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: error.reason)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(value)
    }
}
