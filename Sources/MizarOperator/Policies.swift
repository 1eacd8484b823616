import Foundation
import MizarAPI
import MizarCore
import MizarEtcd
import MizarPolicy
import MizarRPC
import MizarStore
import MizarTransitClient

// Network policy: each VPC's policies are compiled by the replica that owns
// the VPC (MizarPolicy), and what changed goes to the bouncers of the
// endpoints whose entries changed, one PutPolicy per bouncer. No host but a
// bouncer is called; the bouncers tell the hosts of changed endpoints to
// judge their flows again. An endpoint's own entry goes with its
// provisioning (the calls it makes anyway), so it is isolated from its
// first packet.

/// A VPC's compiled policies, as this replica holds them.
struct VpcPolicies: Sendable {
    var compiled: CompiledPolicies
    /// One more at every compile: an endpoint provisioned with an older
    /// one has its entry looked at again.
    var generation: Int
    /// What was last written to etcd for the VPC.
    var record: VpcPolicyRecord
}

/// What one bouncer was last given of one subnet's policy entries.
struct BouncerPolicy: Sendable {
    /// By address; an open endpoint (no entry) is absent.
    var entries: [UInt32: EndpointPolicy] = [:]
    var blocks: [CIDR: PolicyBits]?
    /// Whether this replica has given it the subnet's entries: until then
    /// it may hold anything, and every open endpoint's entry is removed.
    var known = false
}

/// What a VPC's compile leaves in etcd (`policy-state/VPC`): the bits of
/// its peers, so that a restart or another replica renumbers nothing the
/// bouncers hold, and which policy generations its bouncers enforce.
struct VpcPolicyRecord: Codable, Sendable, Equatable {
    struct PeerBit: Codable, Sendable, Equatable {
        var peer: PeerKey
        var bit: Int
    }
    struct Refusal: Codable, Sendable, Equatable {
        var generation: Int64
        var reason: String
    }
    var bits: [PeerBit] = []
    /// NAMESPACE/NAME -> the generation the VPC's bouncers enforce.
    var applied: [String: Int64] = [:]
    /// NAMESPACE/NAME -> why that generation is not enforced.
    var failed: [String: Refusal] = [:]

    var table: BitTable { BitTable(bits: Dictionary(bits.map { ($0.peer, $0.bit) }, uniquingKeysWith: { a, _ in a })) }

    mutating func setTable(_ t: BitTable) {
        bits = t.bits.map { PeerBit(peer: $0.key, bit: $0.value) }.sorted { $0.bit < $1.bit }
    }
}

extension Operator {
    var policyRecordPrefix: String { "\(store.root)policy-state/" }

    /// The policies to compile: the latest of each, but a version that did
    /// not compile gives way to the last that did (or to nothing), with
    /// why. Compilation does not depend on the VPC, only on the bits it
    /// keeps.
    func compilePolicies(previous: BitTable) throws -> (CompiledPolicies, failed: [String: VpcPolicyRecord.Refusal]) {
        var current = Dictionary(policies.filter { $0.metadata.deletionTimestamp == nil }.map { ($0.storeName, $0) }, uniquingKeysWith: { a, _ in a })
        let good = lastGoodPolicies.withLock { $0 }
        let ns = namespaces.list()
        var failed: [String: VpcPolicyRecord.Refusal] = [:]
        for _ in 0...(current.count + 1) {
            do {
                let compiled = try CompiledPolicies(policies: Array(current.values), namespaces: ns, previous: previous)
                lastGoodPolicies.withLock { g in for (k, p) in current { g[k] = p } }
                return (compiled, failed)
            } catch {
                // The policy at fault, or (a limit of the whole VPC) every
                // policy changed since the last good compile.
                let culprits = error.policy.map { [$0] } ?? current.keys.filter { current[$0] != good[$0] }
                guard !culprits.isEmpty else { throw error }
                for name in culprits {
                    if let p = policies.get(name) { failed[name] = .init(generation: p.metadata.generation ?? 0, reason: error.reason) }
                    // Back to the last good version; out if that fails too.
                    current[name] = current[name] != nil && current[name] != good[name] ? good[name] : nil
                }
            }
        }
        throw PolicyCompileError(policy: nil, reason: "the VPC's policies do not compile")
    }

    /// One endpoint's entry; an endpoint whose rules cannot be compiled is
    /// isolated both ways with nothing admitted (never open), and the
    /// policy at fault is refused.
    func policyEntry(_ e: PolicyEndpoint, _ compiled: CompiledPolicies, failed: inout [String: VpcPolicyRecord.Refusal]) -> EndpointPolicy {
        do {
            return try compiled.entry(for: e)
        } catch {
            if let name = error.policy, let p = policies.get(name) {
                failed[name] = .init(generation: p.metadata.generation ?? 0, reason: error.reason)
            }
            logger.warning("endpoint isolated: its rules do not compile", metadata: ["endpoint": "\(e.name)", "error": "\(error)"])
            return EndpointPolicy(ingress: RuleSet(entries: []), egress: RuleSet(entries: []))
        }
    }

    /// The endpoints of a VPC that may have an entry on their bouncers,
    /// by subnet: read from the cache once per compile of the VPC.
    func policyMembers(vpc: String) -> [String: [Endpoint]] {
        Dictionary(grouping: endpoints.objects(by: .vpc, vpc).filter { !$0.spec.isScaled && $0.metadata.deletionTimestamp == nil }, by: \.spec.subnet)
    }

    /// Compiled entries of a subnet's endpoints (`members`), by address.
    func policyEntries(_ members: [Endpoint], _ compiled: CompiledPolicies,
                       failed: inout [String: VpcPolicyRecord.Refusal]) -> [UInt32: (IPv4Address, EndpointPolicy)] {
        var out: [UInt32: (IPv4Address, EndpointPolicy)] = [:]
        for e in members {
            guard e.status?.droplet != nil, let pe = PolicyEndpoint(e) else { continue }
            out[pe.ip.value] = (pe.ip, policyEntry(pe, compiled, failed: &failed))
        }
        return out
    }

    // MARK: The VPC's policies

    /// Compiles the VPC's policies (keeping its bits), records the bits
    /// before anything uses them, gives each bouncer of the VPC what
    /// changed for it, and records what is enforced.
    func reconcilePolicies(_ vpc: String) async throws -> Outcome {
        guard let v = vpcs.get(vpc), v.metadata.deletionTimestamp == nil, let vni = v.status?.vni else {
            vpcPolicies.withLock { $0[vpc] = nil }
            return .done
        }
        let key = policyRecordPrefix + vpc
        var record: VpcPolicyRecord
        if let held = vpcPolicies.withLock({ $0[vpc]?.record }) {
            record = held
        } else if let kv = try await store.etcd.get(key) {
            record = try JSONDecoder().decode(VpcPolicyRecord.self, from: Data(kv.value))
        } else {
            record = VpcPolicyRecord()
        }
        let written = record
        let (compiled, compileFailures) = try compilePolicies(previous: record.table)
        if compiled.table != record.table {
            record.setTable(compiled.table)
            try await store.etcd.put(key, Array(try JSONEncoder().encode(record)))
        }
        let generation = vpcPolicies.withLock { all in
            let g = (all[vpc]?.generation ?? 0) + 1
            all[vpc] = VpcPolicies(compiled: compiled, generation: g, record: record)
            return g
        }
        var failed = compileFailures
        let members = policyMembers(vpc: vpc)
        for s in subnets.objects(by: .vpc, vpc).filter({ $0.metadata.deletionTimestamp == nil && $0.status?.vni == vni }) {
            try await pushPolicies(vni: vni, subnet: s, members: members[s.name] ?? [], to: s.status?.bouncers ?? [], compiled,
                                   fresh: false, failed: &failed)
        }
        record.applied = Dictionary(compiled.policies.map { ($0.storeName, $0.metadata.generation ?? 0) }, uniquingKeysWith: { a, _ in a })
        for name in failed.keys { record.applied[name] = nil }
        record.failed = failed
        if record != written {
            try await store.etcd.put(key, Array(try JSONEncoder().encode(record)))
        }
        vpcPolicies.withLock { all in
            if all[vpc]?.generation == generation { all[vpc]?.record = record }
        }
        // The policies whose enforcement here changed: their status.
        let names = Set(record.applied.keys).union(written.applied.keys).union(record.failed.keys).union(written.failed.keys)
            .filter { record.applied[$0] != written.applied[$0] || record.failed[$0] != written.failed[$0] }
        if !names.isEmpty { Task { for n in names { await policyStatusQueue.add(n) } } }
        return .done
    }

    /// Gives `bouncers` (droplet names) of `subnet` what changed since they
    /// were last given its entries, with the VPC's prefix table; `fresh`
    /// bouncers (just placed) get everything, and no revocation.
    func pushPolicies(vni: VNI, subnet: Subnet, members: [Endpoint], to bouncers: [String], _ compiled: CompiledPolicies, fresh: Bool,
                      failed: inout [String: VpcPolicyRecord.Refusal]) async throws {
        let want = policyEntries(members, compiled, failed: &failed)
        let blocks = compiled.prefixes
        var updates: [(TransitPeer, Mizar_Transit_V1_PolicyUpdate)] = []
        var given: [(String, BouncerPolicy)] = []
        for b in bouncers where isReady(named: b) {
            guard let peer = try peer(named: b) else { continue }
            let key = "\(subnet.name)/\(b)"
            let before = fresh ? BouncerPolicy() : bouncerPolicies.withLock { $0[key] } ?? BouncerPolicy()
            var u = Mizar_Transit_V1_PolicyUpdate()
            var after = BouncerPolicy(entries: [:], blocks: blocks, known: true)
            var sets: [UInt64: Mizar_Transit_V1_PolicySet] = [:]
            for (addr, (ip, p)) in want.sorted(by: { $0.key < $1.key }) {
                if p.isOpen {
                    if before.entries[addr] != nil || !before.known { u.removed.append(Provisioning.endpointKey(vni, ip)) }
                    continue
                }
                after.entries[addr] = p
                guard before.entries[addr] != p, let m = EndpointPolicyMessage(vni: vni, ip: ip, p, revoke: !fresh) else { continue }
                u.endpoints.append(m.entry)
                for s in m.sets { sets[s.id] = s }
            }
            for (addr, _) in before.entries where want[addr] == nil {
                u.removed.append(Provisioning.endpointKey(vni, IPv4Address(value: addr)))
            }
            u.sets = sets.values.sorted { $0.id < $1.id }
            if before.blocks != blocks { u.blocks = [EndpointPolicyMessage.blocks(vni: vni, blocks)] }
            given.append((key, after))
            if u.endpoints.isEmpty && u.removed.isEmpty && u.blocks.isEmpty { continue }
            updates.append((peer, u))
        }
        try await Provisioning.putPolicy(updates, via: pool)
        bouncerPolicies.withLock { all in for (k, g) in given { all[k] = g } }
    }

    /// The policy entry an endpoint is provisioned with, from the VPC's
    /// compile; nil when the VPC has not been compiled yet (it is queued).
    func provisioningPolicy(_ e: Endpoint, vni: VNI) async -> (message: EndpointPolicyMessage?, entry: EndpointPolicy, generation: Int)? {
        guard let held = vpcPolicies.withLock({ $0[e.spec.vpc] }) else {
            await policyQueue.add(e.spec.vpc)
            return nil
        }
        guard let pe = PolicyEndpoint(e) else { return (nil, EndpointPolicy(), held.generation) }
        var failed: [String: VpcPolicyRecord.Refusal] = [:]
        let p = policyEntry(pe, held.compiled, failed: &failed)
        if !failed.isEmpty { await policyQueue.add(e.spec.vpc) }
        return (EndpointPolicyMessage(vni: vni, ip: pe.ip, p), p, held.generation)
    }

    /// After an endpoint's provisioning: its bouncers hold `entry`; if the
    /// VPC was compiled again meanwhile, its entry is looked at again.
    func provisioned(_ e: Endpoint, ip: IPv4Address, entry: EndpointPolicy, generation: Int, bouncers: [String]) async {
        bouncerPolicies.withLock { all in
            for b in bouncers {
                all["\(e.spec.subnet)/\(b)", default: BouncerPolicy()].entries[ip.value] = entry.isOpen ? nil : entry
            }
        }
        if vpcPolicies.withLock({ $0[e.spec.vpc]?.generation }) != generation { await policyQueue.add(e.spec.vpc) }
    }

    /// An endpoint gone: its bouncers dropped its entry with it.
    func forgetPolicyEntry(subnet: String, ip: IPv4Address) {
        bouncerPolicies.withLock { all in
            for k in all.keys where k.hasPrefix(subnet + "/") { all[k]?.entries[ip.value] = nil }
        }
    }

    /// A droplet whose tables may have been lost (its transitd came back):
    /// it is given every entry again.
    func forgetPoliciesGiven(droplet: String) {
        bouncerPolicies.withLock { all in
            for k in all.keys where k.hasSuffix("/" + droplet) { all[k] = nil }
        }
    }

    // MARK: A policy's status

    /// Provisioned once every VPC's bouncers enforce this generation;
    /// Failed when a VPC refused it.
    func reconcilePolicyStatus(_ name: String) async throws -> Outcome {
        guard let p = policies.get(name), p.metadata.deletionTimestamp == nil else { return .done }
        let generation = p.metadata.generation ?? 0
        if p.status?.common.observedGeneration == p.metadata.generation,
           p.status?.common.phase == .provisioned || p.status?.common.phase == .failed { return .done }
        var records: [String: VpcPolicyRecord] = [:]
        for kv in try await store.etcd.list(prefix: policyRecordPrefix).kvs {
            records[String(kv.key.dropFirst(policyRecordPrefix.count))] = try? JSONDecoder().decode(VpcPolicyRecord.self, from: Data(kv.value))
        }
        if let refusal = records.values.compactMap({ $0.failed[name] }).first(where: { $0.generation == generation }) {
            return .failed(.policyRejected, refusal.reason)
        }
        let live = vpcs.filter { $0.status?.vni != nil && $0.metadata.deletionTimestamp == nil }.map(\.name)
        let enforced = live.filter { records[$0]?.applied[name] == generation }.count
        var next = p
        var status = next.status ?? PlainStatus()
        if enforced == live.count {
            status.common.phase = .provisioned
            status.common.reason = nil
            status.common.observedGeneration = p.metadata.generation
            if status.common.provisioningDelayMs == nil {
                status.common.provisioningDelayMs = Self.milliseconds(since: p.metadata.creationTimestamp)
            }
        } else {
            status.common.phase = .programming
            status.common.reason = "enforced in \(enforced) of \(live.count) VPCs"
        }
        if status != p.status {
            next.status = status
            guard try await save(next, in: policies) != nil else { return .retry("conflict") }
        }
        return enforced == live.count ? .done : .retryAfter(.milliseconds(200), status.common.reason ?? "")
    }
}
