import GRPCCore
import MizarCore
import MizarTransitClient

/// A refused or failed request, with the gRPC status it maps to. Messages
/// start with the field they are about.
public struct TransitError: Error, CustomStringConvertible, Sendable {
    public enum Code: Sendable {
        case invalidArgument, notFound, alreadyExists, failedPrecondition, internalError
    }

    public let code: Code
    public let message: String
    /// Whether the same request can never succeed: bad input, an address
    /// already held, a namespace that is not there. Callers give up on it
    /// (the operator sets the object Failed) instead of retrying.
    public let permanent: Bool

    public init(_ code: Code, field: String, _ reason: String, permanent: Bool? = nil) {
        self.code = code
        message = "\(field): \(reason)"
        self.permanent = permanent ?? (code == .invalidArgument || code == .alreadyExists)
    }

    public init(internal error: any Error) {
        code = .internalError
        message = "\(error)"
        permanent = false
    }

    public var description: String { message }

    /// Any error as a TransitError: bad input is InvalidArgument, failures of
    /// the kernel or the system are Internal.
    static func from(_ error: any Error) -> TransitError {
        switch error {
        case let e as TransitError: e
        case let e as ValidationError: TransitError(.invalidArgument, field: e.field, e.reason)
        default: TransitError(internal: error)
        }
    }

    var rpcError: RPCError {
        let rpcCode: RPCError.Code = switch code {
        case .invalidArgument: .invalidArgument
        case .notFound: .notFound
        case .alreadyExists: .alreadyExists
        case .failedPrecondition: .failedPrecondition
        case .internalError: .internalError
        }
        return RPCError(code: rpcCode, message: message, metadata: permanent ? TransitRefusal.permanentMetadata : [:])
    }
}
