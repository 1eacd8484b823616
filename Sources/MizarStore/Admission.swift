import MizarAPI
import MizarCore
import MizarEtcd

/// The checks of an object against the others it names, made when it is
/// created, and the index keys that make them hold under concurrency: the
/// write of the object happens in one etcd transaction with the conditions
/// returned here (what was read is unchanged) and the writes (the object's
/// claims: its address, its VNI, its subnet's range).
///
/// Index keys, beside the objects:
/// (under the store's root, /mizar/v1/ by default)
///   index/vnis/<vni>                  -> Vpc name
///   index/subnets/<vpc>/<subnet>      -> the subnet's CIDR
///   index/subnet-guard/<vpc>          -> bumped by every subnet create
///   ipam/<vpc>/<ip>                   -> Endpoint name
///   index/host-ports/<PROTO>/<port>   -> the scaled Endpoint published there
struct Admission {
    let store: Store
    var etcd: Etcd { store.etcd }

    var index: String { "\(store.root)index/" }
    func vniKey(_ vni: VNI) -> String { "\(index)vnis/\(vni)" }
    func subnetIndexPrefix(_ vpc: String) -> String { "\(index)subnets/\(vpc)/" }
    func subnetGuardKey(_ vpc: String) -> String { "\(index)subnet-guard/\(vpc)" }
    /// The key that holds an address of a VPC for one endpoint.
    func ipKey(_ vpc: String, _ ip: IPv4Address) -> String { "\(store.root)ipam/\(vpc)/\(ip)" }
    /// The key that holds a published host port ("TCP/30080") for one
    /// scaled endpoint, cluster-wide.
    func hostPortKey(_ published: String) -> String { "\(index)host-ports/\(published)" }

    struct Result {
        var conditions: [EtcdCondition] = []
        var writes: [EtcdOperation] = []
    }

    func check<S: ObjectSpec>(_ o: Object<S>) async throws -> Result {
        switch o.spec {
        case let spec as VpcSpec: return try await vpc(o.name, spec)
        case let spec as SubnetSpec: return try await subnet(o.name, spec)
        case let spec as EndpointSpec: return try await endpoint(o.name, spec, selfKey: store.key(.endpoint, o.name))
        case let spec as BouncerSpec: return try await exists(vpc: spec.vpc, subnet: spec.subnet)
        case let spec as DividerSpec: return try await exists(vpc: spec.vpc, subnet: nil)
        default: return Result()
        }
    }

    /// A requested VNI is claimed for this VPC alone.
    func vpc(_ name: String, _ spec: VpcSpec) async throws -> Result {
        guard let vni = spec.vni else { return Result() }
        let key = vniKey(vni)
        if let holder = try await etcd.get(key) {
            throw StoreError.invalid(ValidationError(field: "spec.vni", reason: "\(vni) is already used by Vpc \(String(decoding: holder.value, as: UTF8.self))"))
        }
        return Result(conditions: [.absent(key)], writes: [.put(key, Array(name.utf8))])
    }

    /// Inside its VPC, overlapping none of the VPC's other subnets.
    func subnet(_ name: String, _ spec: SubnetSpec) async throws -> Result {
        let (vpcKV, vpc) = try await existing(VpcSpec.self, spec.vpc, field: "spec.vpc")
        let cidr = spec.cidr
        let vpcCIDR = vpc.spec.cidr
        guard vpcCIDR.contains(cidr) else {
            throw StoreError.invalid(ValidationError(field: "spec.cidr", reason: "\(cidr) is outside Vpc \(vpc.name)'s \(vpcCIDR)"))
        }
        let guardKey = subnetGuardKey(spec.vpc)
        let guardKV = try await etcd.get(guardKey)
        let (siblings, _) = try await etcd.list(prefix: subnetIndexPrefix(spec.vpc))
        for s in siblings {
            let other = String(s.key.dropFirst(subnetIndexPrefix(spec.vpc).count))
            if let c = try? CIDR(parsing: String(decoding: s.value, as: UTF8.self)), c.overlaps(cidr), other != name {
                throw StoreError.invalid(ValidationError(field: "spec.cidr", reason: "\(cidr) overlaps Subnet \(other) (\(c)) in Vpc \(spec.vpc)"))
            }
        }
        return Result(
            conditions: [.createRevision(store.key(.vpc, spec.vpc), vpcKV.createRevision),
                         guardKV.map { .modRevision(guardKey, $0.modRevision) } ?? .absent(guardKey)],
            writes: [.put(guardKey, Array(name.utf8)), .put(subnetIndexPrefix(spec.vpc) + name, Array("\(cidr)".utf8))])
    }

    /// In an existing subnet of its VPC; a requested address inside the
    /// subnet, not its network, gateway or broadcast address, and free.
    /// Endpoints are the many: everything they are checked against is read
    /// in one round trip (the endpoint itself, its VPC, its subnet, its
    /// requested address's claim).
    func endpoint(_ name: String, _ spec: EndpointSpec, selfKey: String) async throws -> Result {
        var reads: [EtcdOperation] = [.get(selfKey), .get(store.key(.vpc, spec.vpc)), .get(store.key(.subnet, spec.subnet))]
        let published = spec.publishedPorts
        reads += published.map { .get(hostPortKey($0)) }
        if let requested = spec.ip { reads.append(.get(ipKey(spec.vpc, requested))) }
        let got = try await etcd.transaction(if: [], then: reads).reads
        if got[0] != nil { throw StoreError.alreadyExists(.endpoint, name) }
        _ = try existing(VpcSpec.self, got[1], spec.vpc, field: "spec.vpc")
        let (subnetKV, subnet) = try existing(SubnetSpec.self, got[2], spec.subnet, field: "spec.subnet")
        guard subnet.spec.vpc == spec.vpc else {
            throw StoreError.invalid(ValidationError(field: "spec.subnet", reason: "Subnet \(spec.subnet) belongs to Vpc \(subnet.spec.vpc), not \(spec.vpc)"))
        }
        var result = Result(conditions: [.createRevision(store.key(.subnet, spec.subnet), subnetKV.createRevision)])
        // Each published host port: this endpoint's alone, cluster-wide.
        for (i, port) in published.enumerated() {
            if let holder = got[3 + i] {
                let field = (spec.ports ?? []).firstIndex { $0.hostPort.map { "\($0)" } == String(port.split(separator: "/")[1]) }
                    .map { "spec.ports[\($0)].hostPort" } ?? "spec.ports"
                throw StoreError.invalid(ValidationError(field: field, reason: "\(port) is already published by Endpoint \(String(decoding: holder.value, as: UTF8.self))"))
            }
            result.conditions.append(.absent(hostPortKey(port)))
            result.writes.append(.put(hostPortKey(port), Array(name.utf8)))
        }
        guard let ip = spec.ip else { return result }
        let cidr = subnet.spec.cidr
        guard cidr.contains(ip) else {
            throw StoreError.invalid(ValidationError(field: "spec.ip", reason: "\(ip) is outside Subnet \(subnet.name)'s \(cidr)"))
        }
        if let reserved = cidr.reservedRole(of: ip) {
            throw StoreError.invalid(ValidationError(field: "spec.ip", reason: "\(ip) is Subnet \(subnet.name)'s \(reserved) address"))
        }
        let key = ipKey(spec.vpc, ip)
        if let holder = got[3 + published.count] {
            throw StoreError.invalid(ValidationError(field: "spec.ip", reason: "\(ip) is already taken in Vpc \(spec.vpc) by Endpoint \(String(decoding: holder.value, as: UTF8.self))"))
        }
        result.conditions.append(.absent(key))
        result.writes.append(.put(key, Array(name.utf8)))
        return result
    }

    func exists(vpc: String, subnet: String?) async throws -> Result {
        let (vpcKV, _) = try await existing(VpcSpec.self, vpc, field: "spec.vpc")
        var result = Result(conditions: [.createRevision(store.key(.vpc, vpc), vpcKV.createRevision)])
        if let subnet {
            let (kv, s) = try await existing(SubnetSpec.self, subnet, field: "spec.subnet")
            guard s.spec.vpc == vpc else {
                throw StoreError.invalid(ValidationError(field: "spec.subnet", reason: "Subnet \(subnet) belongs to Vpc \(s.spec.vpc), not \(vpc)"))
            }
            result.conditions.append(.createRevision(store.key(.subnet, subnet), kv.createRevision))
        }
        return result
    }

    func existing<S: ObjectSpec>(_ type: S.Type, _ name: String, field: String) async throws -> (EtcdKeyValue, Object<S>) {
        try existing(S.self, try await etcd.get(store.key(S.kind, name)), name, field: field)
    }

    /// What was read of a referenced object: it must exist and not be going.
    func existing<S: ObjectSpec>(_ type: S.Type, _ read: EtcdKeyValue?, _ name: String, field: String) throws -> (EtcdKeyValue, Object<S>) {
        guard let kv = read else {
            throw StoreError.invalid(ValidationError(field: field, reason: "no \(S.kind.rawValue) named \(String(reflecting: name))"))
        }
        let o: Object<S> = try Store.decode(kv)
        if o.metadata.deletionTimestamp != nil {
            throw StoreError.invalid(ValidationError(field: field, reason: "\(S.kind.rawValue) \(name) is being deleted"))
        }
        return (kv, o)
    }

    /// Fields that cannot change once the object exists: what it was
    /// checked against and what it claimed.
    static func checkUpdate<S: ObjectSpec>(from old: Object<S>, to new: Object<S>) throws {
        func same<V: Equatable & CustomStringConvertible>(_ a: V?, _ b: V?, _ field: String) throws {
            guard a == b else {
                throw StoreError.invalid(ValidationError(field: field, reason: "cannot change from \(a?.description ?? "unset") to \(b?.description ?? "unset"); delete and create the \(S.kind.rawValue) instead"))
            }
        }
        switch (old.spec, new.spec) {
        case let (a as VpcSpec, b as VpcSpec):
            try same(a.cidr, b.cidr, "spec.cidr")
            try same(a.vni, b.vni, "spec.vni")
        case let (a as SubnetSpec, b as SubnetSpec):
            try same(a.vpc, b.vpc, "spec.vpc")
            try same(a.cidr, b.cidr, "spec.cidr")
        case let (a as EndpointSpec, b as EndpointSpec):
            try same(a.vpc, b.vpc, "spec.vpc")
            try same(a.subnet, b.subnet, "spec.subnet")
            try same(a.ip, b.ip, "spec.ip")
            try same(a.mac, b.mac, "spec.mac")
            try same(a.netns, b.netns, "spec.netns")
            try same(a.ifname, b.ifname, "spec.ifname")
            try same(a.publishedPorts.isEmpty ? nil : a.publishedPorts.joined(separator: ","),
                     b.publishedPorts.isEmpty ? nil : b.publishedPorts.joined(separator: ","), "spec.ports[].hostPort")
        case let (a as BouncerSpec, b as BouncerSpec):
            try same(a.subnet, b.subnet, "spec.subnet")
            try same(a.droplet, b.droplet, "spec.droplet")
        case let (a as DividerSpec, b as DividerSpec):
            try same(a.vpc, b.vpc, "spec.vpc")
            try same(a.droplet, b.droplet, "spec.droplet")
        default:
            break
        }
    }

    /// What an object gives back when it goes: the claims made at admission
    /// and the address the operator allocated.
    func releases<S: ObjectSpec>(_ o: Object<S>) -> [EtcdOperation] {
        switch (o.spec, o.status) {
        case let (spec as VpcSpec, status as VpcStatus?):
            return Set([spec.vni, status?.vni].compactMap { $0 }).map { .delete(vniKey($0)) }
                + [.delete(subnetGuardKey(o.name)), .deletePrefix(subnetIndexPrefix(o.name))]
        case let (spec as SubnetSpec, _):
            return [.delete(subnetIndexPrefix(spec.vpc) + o.name)]
        case let (spec as EndpointSpec, status as EndpointStatus?):
            let ips = Set([spec.ip, status?.ip].compactMap { $0 })
            return ips.map { .delete(ipKey(spec.vpc, $0)) } + spec.publishedPorts.map { .delete(hostPortKey($0)) }
        default:
            return []
        }
    }
}
