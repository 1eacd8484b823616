/// The single error type for rejected input.
///
/// `field` is supplied by the caller (e.g. "spec.cidr") because only the caller
/// knows where the value came from; `reason` says what is wrong and what was
/// expected, so the message is actionable without reading source.
public struct ValidationError: Error, Hashable, Sendable, CustomStringConvertible {
    public let field: String
    public let reason: String

    public init(field: String, reason: String) {
        self.field = field
        self.reason = reason
    }

    public var description: String { "\(field): \(reason)" }
}

extension ValidationError {
    /// Quotes user input for a reason string. Escaping keeps control characters
    /// visible; the cap keeps fuzzed or pasted megabyte inputs out of logs.
    public static func quote(_ text: some StringProtocol) -> String {
        let limit = 64
        if text.count <= limit { return String(reflecting: String(text)) }
        return String(reflecting: String(text.prefix(limit))) + "…"
    }
}

/// A Linux interface name: 1 to 15 bytes, not "." or "..", no '/', ':' or
/// whitespace. One rule for the API, transitd and the CNI plugin's input.
public func validateInterfaceName(_ name: String, field: String) throws(ValidationError) {
    guard !name.isEmpty, name.utf8.count < 16, name != ".", name != "..",
          !name.contains(where: { $0 == "/" || $0 == ":" || $0.isWhitespace }) else {
        throw ValidationError(field: field, reason: "\(ValidationError.quote(name)) is not an interface name (1 to 15 characters, no '/', ':' or spaces)")
    }
}
