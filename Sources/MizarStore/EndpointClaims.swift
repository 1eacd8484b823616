import MizarAPI
import MizarCore
import MizarEtcd

/// A host's claim on an endpoint for one of its containers: the only write
/// a host makes about endpoints. A host may not write Endpoints itself (nor
/// the address claims that admit them), since etcd's permissions could then
/// not keep it from another host's endpoints; it writes its claims under a
/// prefix of its own, which etcd lets only it and the operator write. The
/// operator turns a claim into the Endpoint, admission and all, and deletes
/// the Endpoint when the claim goes.
public struct EndpointClaim: Codable, Sendable, Equatable {
    /// The endpoint to make, if there is none by that name (its droplet is
    /// the claiming host's, whatever this says).
    public var spec: EndpointSpec
    public var labels: [String: String]?
    /// Set by the operator once the endpoint is this claim's: its uid.
    public var accepted: String?
    /// Set by the operator when the endpoint cannot be the claim's: why.
    public var refused: String?

    public init(spec: EndpointSpec, labels: [String: String]? = nil) {
        self.spec = spec
        self.labels = labels
    }

    /// The label an endpoint made or adopted for a claim carries: the
    /// claiming droplet. The endpoint lives while the claim does.
    public static let claimedByLabel = "mizar.com/claimed-by"

    /// Why the existing endpoint `e` cannot be the one `droplet` claims in
    /// `vpc` and `subnet` (another VPC or subnet, another droplet, a
    /// service); nil if it can. The CNI asks before claiming, the operator
    /// again before adopting.
    public static func conflict(_ e: Endpoint, vpc: String, subnet: String, droplet: String) -> String? {
        guard e.spec.vpc == vpc, e.spec.subnet == subnet, !e.spec.isScaled, e.spec.droplet == nil || e.spec.droplet == droplet else {
            return "endpoint \(e.name) exists for VPC \(e.spec.vpc), subnet \(e.spec.subnet) on droplet \(e.spec.droplet ?? "-")\(e.spec.isScaled ? " (a service)" : "")"
        }
        return nil
    }
}

extension Store {
    /// Everything one host writes, its claims among it:
    /// ROOT hosts/DROPLET/...
    public func hostPrefix(_ droplet: String) -> String { "\(root)hosts/\(droplet)/" }
    /// Every host's claims, for the operator.
    public var hostsPrefix: String { "\(root)hosts/" }
    public func claimPrefix(_ droplet: String) -> String { hostPrefix(droplet) + "endpoints/" }
    public func claimKey(_ droplet: String, _ endpoint: String) -> String { claimPrefix(droplet) + endpoint }

    /// (droplet, endpoint) of a claim's key; nil for any other key.
    public func claimName(_ key: String) -> (droplet: String, endpoint: String)? {
        guard key.hasPrefix(hostsPrefix) else { return nil }
        let parts = key.dropFirst(hostsPrefix.count).split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[1] == "endpoints", !parts[0].isEmpty, !parts[2].isEmpty else { return nil }
        return (String(parts[0]), String(parts[2]))
    }

    /// Writes the claim if the host has none by that name; false if it had.
    public func putClaim(_ droplet: String, _ endpoint: String, _ claim: EndpointClaim) async throws -> Bool {
        try await etcd.create(claimKey(droplet, endpoint), ObjectCoding.encode(claim))
    }

    /// The claim and the revision it was last written at.
    public func claim(_ droplet: String, _ endpoint: String) async throws -> (claim: EndpointClaim, modRevision: Int64)? {
        guard let kv = try await etcd.get(claimKey(droplet, endpoint)) else { return nil }
        return (try Self.decodeClaim(kv), kv.modRevision)
    }

    /// Every claim of one host, by endpoint name.
    public func claims(of droplet: String) async throws -> [(endpoint: String, claim: EndpointClaim)] {
        try await etcd.list(prefix: claimPrefix(droplet)).kvs.compactMap { kv in
            guard let name = claimName(kv.key) else { return nil }
            return (name.endpoint, try Self.decodeClaim(kv))
        }
    }

    /// Withdraws the claim: the operator deletes the endpoint it made or
    /// adopted for it. False if there was none.
    @discardableResult
    public func deleteClaim(_ droplet: String, _ endpoint: String) async throws -> Bool {
        try await etcd.delete(claimKey(droplet, endpoint)) > 0
    }

    public static func decodeClaim(_ kv: EtcdKeyValue) throws -> EndpointClaim {
        do { return try ObjectCoding.decode(EndpointClaim.self, from: kv.value) } catch {
            throw StoreError.invalid(ValidationError(field: kv.key, reason: "stored claim does not decode: \(error)"))
        }
    }
}
