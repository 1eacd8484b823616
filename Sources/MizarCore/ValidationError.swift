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
    static func quote(_ text: some StringProtocol) -> String {
        let limit = 64
        if text.count <= limit { return String(reflecting: String(text)) }
        return String(reflecting: String(text.prefix(limit))) + "…"
    }
}
