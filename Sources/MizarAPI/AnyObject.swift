import Foundation
import MizarCore

/// An object of any kind, as read from a file or a key whose kind is known
/// only from its content.
public enum AnyMizarObject: Codable, Sendable, Equatable {
    case vpc(Vpc), subnet(Subnet), endpoint(Endpoint), droplet(Droplet), bouncer(Bouncer), divider(Divider)
    case namespace(Namespace), networkPolicy(NetworkPolicy)

    private enum Header: String, CodingKey { case kind }

    public init(from decoder: any Decoder) throws {
        let kindText = try decoder.container(keyedBy: Header.self).decode(String.self, forKey: .kind)
        guard let kind = Kind(rawValue: kindText) else {
            throw DecodingError.dataCorrupted(.init(codingPath: [Header.kind],
                debugDescription: "unknown kind \(String(reflecting: kindText)); expected one of \(Kind.allCases.map(\.rawValue).joined(separator: ", "))"))
        }
        switch kind {
        case .vpc: self = .vpc(try Vpc(from: decoder))
        case .subnet: self = .subnet(try Subnet(from: decoder))
        case .endpoint: self = .endpoint(try Endpoint(from: decoder))
        case .droplet: self = .droplet(try Droplet(from: decoder))
        case .bouncer: self = .bouncer(try Bouncer(from: decoder))
        case .divider: self = .divider(try Divider(from: decoder))
        case .namespace: self = .namespace(try Namespace(from: decoder))
        case .networkPolicy: self = .networkPolicy(try NetworkPolicy.decodingKubernetes(from: decoder))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .vpc(let o): try o.encode(to: encoder)
        case .subnet(let o): try o.encode(to: encoder)
        case .endpoint(let o): try o.encode(to: encoder)
        case .droplet(let o): try o.encode(to: encoder)
        case .bouncer(let o): try o.encode(to: encoder)
        case .divider(let o): try o.encode(to: encoder)
        case .namespace(let o): try o.encode(to: encoder)
        case .networkPolicy(let o): try o.encode(to: encoder)
        }
    }

    public var kind: Kind {
        switch self {
        case .vpc: .vpc
        case .subnet: .subnet
        case .endpoint: .endpoint
        case .droplet: .droplet
        case .bouncer: .bouncer
        case .divider: .divider
        case .namespace: .namespace
        case .networkPolicy: .networkPolicy
        }
    }

    public var metadata: ObjectMeta {
        switch self {
        case .vpc(let o): o.metadata
        case .subnet(let o): o.metadata
        case .endpoint(let o): o.metadata
        case .droplet(let o): o.metadata
        case .bouncer(let o): o.metadata
        case .divider(let o): o.metadata
        case .namespace(let o): o.metadata
        case .networkPolicy(let o): o.metadata
        }
    }

    public var name: String { metadata.name }
    /// The name the store keys it by (NAMESPACE/NAME when namespaced).
    public var storeName: String { kind.storeName(metadata.name, namespace: metadata.namespace) }

    /// What every kind's status has; nil before the first status.
    public var common: CommonStatus? {
        switch self {
        case .vpc(let o): o.status?.common
        case .subnet(let o): o.status?.common
        case .endpoint(let o): o.status?.common
        case .droplet(let o): o.status?.common
        case .bouncer(let o): o.status?.common
        case .divider(let o): o.status?.common
        case .namespace(let o): o.status?.common
        case .networkPolicy(let o): o.status?.common
        }
    }

    public func validate() throws(ValidationError) {
        switch self {
        case .vpc(let o): try o.validate()
        case .subnet(let o): try o.validate()
        case .endpoint(let o): try o.validate()
        case .droplet(let o): try o.validate()
        case .bouncer(let o): try o.validate()
        case .divider(let o): try o.validate()
        case .namespace(let o): try o.validate()
        case .networkPolicy(let o): try o.validate()
        }
    }
}

/// JSON as the store keeps it and the CLI prints it: keys sorted, so equal
/// objects are equal bytes.
public enum ObjectCoding {
    public static func encode<T: Encodable>(_ value: T, pretty: Bool = false) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        // Every field of these types is encodable; a failure is a programming error.
        return Array(try! encoder.encode(value))
    }

    /// Decodes JSON; a malformed or incomplete document is a ValidationError
    /// naming the field ("spec.cidr: required").
    public static func decode<T: Decodable>(_ type: T.Type, from json: [UInt8]) throws(ValidationError) -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(json))
        } catch let error as DecodingError {
            throw validationError(error)
        } catch {
            throw ValidationError(field: "(document)", reason: "\(error)")
        }
    }

    static func path(_ codingPath: [any CodingKey]) -> String {
        codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().drop { $0 == "." }.description
    }

    /// A decoding failure (of JSON or YAML) as the field at fault and why.
    public static func validationError(_ error: DecodingError) -> ValidationError {
        switch error {
        case .keyNotFound(let key, let context):
            let field = path(context.codingPath + [key])
            return ValidationError(field: field, reason: "required")
        case .typeMismatch(let type, let context):
            return ValidationError(field: path(context.codingPath).orDocument, reason: "expected \(typeName(type))")
        case .valueNotFound(let type, let context):
            return ValidationError(field: path(context.codingPath).orDocument, reason: "expected \(typeName(type)), found null")
        case .dataCorrupted(let context):
            guard context.codingPath.isEmpty else {
                return ValidationError(field: path(context.codingPath), reason: context.debugDescription)
            }
            let detail = context.underlyingError.map { " (\($0))" } ?? ""
            return ValidationError(field: "(document)", reason: "not valid JSON\(detail)")
        @unknown default:
            return ValidationError(field: "(document)", reason: "\(error)")
        }
    }

    static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type, is Int64.Type, is UInt32.Type: "an integer"
        case is Double.Type: "a number"
        case is Bool.Type: "true or false"
        default: type == [String: String].self ? "a map of strings" : "an object"
        }
    }
}

extension String {
    var orDocument: String { isEmpty ? "(document)" : self }
}
