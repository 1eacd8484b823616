import Logging
import MizarAPI
import MizarEtcd
import MizarStore
import Synchronization

/// Every host's endpoint claims (ROOT hosts/DROPLET/endpoints/NAME), kept
/// by a watch: what the CNI side of each transitd asks for.
final class ClaimSet: Sendable {
    struct Held: Sendable, Equatable {
        var claim: EndpointClaim
        var modRevision: Int64
    }

    /// "DROPLET/ENDPOINT" -> the claim (a droplet's name has no "/").
    private let claims = Mutex<[String: Held]>([:])
    private let handlers = Mutex<[@Sendable (String) -> Void]>([])
    private let synced = Latch()

    static func id(_ droplet: String, _ endpoint: String) -> String { "\(droplet)/\(endpoint)" }
    static func split(_ id: String) -> (droplet: String, endpoint: String)? {
        guard let slash = id.firstIndex(of: "/") else { return nil }
        return (String(id[..<slash]), String(id[id.index(after: slash)...]))
    }

    func get(_ id: String) -> Held? { claims.withLock { $0[id] } }
    var ids: [String] { claims.withLock { Array($0.keys) } }
    func waitSynced() async { await synced.wait() }
    func onChange(_ h: @escaping @Sendable (String) -> Void) { handlers.withLock { $0.append(h) } }

    /// A write of our own, seen before its watch event arrives.
    func record(_ id: String, _ held: Held) {
        claims.withLock { c in if (c[id]?.modRevision ?? 0) < held.modRevision { c[id] = held } }
    }

    func run(store: Store, logger: Logger) async {
        let (list, watch) = Reflector.keys(store.etcd, under: store.hostsPrefix)
        func decode(_ kv: EtcdKeyValue) -> (String, Held)? {
            guard let name = store.claimName(kv.key) else { return nil }
            do { return (Self.id(name.droplet, name.endpoint), Held(claim: try Store.decodeClaim(kv), modRevision: kv.modRevision)) } catch {
                logger.warning("claim ignored", metadata: ["key": "\(kv.key)", "error": "\(error)"])
                return nil
            }
        }
        await Reflector.run("endpoint claims", logger: logger, list: list, watch: watch, replace: { kvs in
            let fresh = Dictionary(kvs.compactMap(decode), uniquingKeysWith: { $1 })
            let old = claims.withLock { c in defer { c = fresh }; return c }
            synced.open()
            for id in Set(old.keys).union(fresh.keys) where old[id] != fresh[id] { notify(id) }
        }, apply: { batch in
            for e in batch {
                guard let name = store.claimName(e.kv.key) else { continue }
                let id = Self.id(name.droplet, name.endpoint)
                if e.kind == .delete {
                    claims.withLock { _ = $0.removeValue(forKey: id) }
                } else if let (_, held) = decode(e.kv) {
                    claims.withLock { $0[id] = held }
                }
                notify(id)
            }
        })
    }

    private func notify(_ id: String) {
        for h in handlers.withLock({ $0 }) { h(id) }
    }
}

extension Operator {
    /// One claim against the endpoint of its name. A claim not yet decided
    /// gets the endpoint made (admitted like any other: its address, its
    /// subnet), or the existing one on the claiming droplet adopted, and is
    /// marked accepted; or it is marked refused, with why. An endpoint that
    /// carries a droplet's claimed-by label and has no claim of that
    /// droplet is deleted: the container is gone. The claiming droplet is
    /// the key's, which only that droplet (and the operator) may write:
    /// whatever the claim says, the endpoint is made on it.
    func reconcileClaim(_ id: String) async throws -> Outcome {
        guard let (droplet, name) = ClaimSet.split(id) else { return .done }
        guard membership.owns("droplet/\(droplet)") else { return .done }
        let e = endpoints.get(name)
        guard let held = claims.get(id) else {
            if let e, e.metadata.labels?[EndpointClaim.claimedByLabel] == droplet, e.metadata.deletionTimestamp == nil {
                try await store.delete(EndpointSpec.self, name)
            }
            return .done
        }
        let claim = held.claim
        if claim.accepted != nil || claim.refused != nil { return .done }
        if let e {
            if let why = EndpointClaim.conflict(e, vpc: claim.spec.vpc, subnet: claim.spec.subnet, droplet: droplet) {
                return try await decide(id, held, refused: why)
            }
            if e.metadata.deletionTimestamp != nil { return .retryAfter(.milliseconds(200), "endpoint \(name) is being deleted") }
            if e.metadata.labels?[EndpointClaim.claimedByLabel] != droplet {
                var adopted = e
                adopted.metadata.labels = (e.metadata.labels ?? [:]).merging([EndpointClaim.claimedByLabel: droplet]) { $1 }
                do { try await store.update(adopted) } catch StoreError.conflict { return .retry("endpoint \(name) changed") }
            }
            return try await decide(id, held, accepted: e.metadata.uid ?? "")
        }
        var spec = claim.spec
        spec.droplet = droplet
        let labels = (claim.labels ?? [:]).merging([EndpointClaim.claimedByLabel: droplet]) { $1 }
        do {
            let made = try await store.create(Endpoint(name: name, spec: spec, labels: labels))
            endpoints.record(made)
            return try await decide(id, held, accepted: made.metadata.uid ?? "")
        } catch StoreError.alreadyExists {
            return .retry("endpoint \(name) appeared meanwhile")
        } catch StoreError.invalid(let e) {
            return try await decide(id, held, refused: "\(e)")
        }
    }

    /// Writes the decision into the claim, if it is still the one decided
    /// on.
    private func decide(_ id: String, _ held: Held, accepted: String? = nil, refused: String? = nil) async throws -> Outcome {
        guard let (droplet, name) = ClaimSet.split(id) else { return .done }
        var claim = held.claim
        claim.accepted = accepted
        claim.refused = refused
        if let refused { logger.info("claim refused", metadata: ["droplet": "\(droplet)", "endpoint": "\(name)", "reason": "\(refused)"]) }
        let key = store.claimKey(droplet, name)
        let result = try await store.etcd.transaction(if: [.modRevision(key, held.modRevision)], then: [.put(key, ObjectCoding.encode(claim))])
        guard result.succeeded else { return .done }   // withdrawn or rewritten: its own event follows
        claims.record(id, Held(claim: claim, modRevision: result.revision))
        return .done
    }

    typealias Held = ClaimSet.Held
}
