// mizarctl apply/get/describe/delete/wait: the declared objects in etcd.
import ArgumentParser
import Foundation
import MizarAPI
import MizarCore
import MizarEtcd
import MizarPolicy
import MizarRPC
import MizarStore
import MizarTLS
import MizarTransitClient
import Yams

struct EtcdOptions: ParsableArguments {
    @Option(help: "etcd's members, HOST:PORT[,HOST:PORT...] (default: $MIZAR_ETCD, else 127.0.0.1:2379).")
    var etcd = ProcessInfo.processInfo.environment["MIZAR_ETCD"] ?? "127.0.0.1:2379"

    @Option(help: "Root of Mizar's keys in etcd.")
    var root = Store.defaultRoot

    /// etcd takes the certificate's name as the user: operator.crt reads
    /// and writes Mizar's keys, admin.crt (root) anything. Also what a
    /// transitd is dialled with (only the operator's is admitted there).
    @OptionGroup var tls: TLSOptions

    func validate() throws { _ = try HostPort.list(parsing: etcd, field: "--etcd") }

    func withStore<R: Sendable>(_ body: (Store) async throws -> R) async throws -> R {
        try await withEtcd(try HostPort.list(parsing: etcd, field: "--etcd"), tls: try tls.files()) { try await body(Store(etcd: $0, root: root)) }
    }
}

/// A refusal as mizarctl prints it; the exit status is 1.
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
}

/// The documents of a YAML file ("-" for standard input), each decoded and
/// validated on its own; the first bad one stops everything.
func readObjects(_ path: String) throws -> [AnyMizarObject] {
    let text: String
    if path == "-" {
        text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
    } else {
        guard let data = FileManager.default.contents(atPath: path) else { throw CommandFailure(description: "\(path): cannot read the file") }
        text = String(decoding: data, as: UTF8.self)
    }
    var objects: [AnyMizarObject] = []
    do {
        // Parser.nextRoot throws on bad YAML (compose_all's sequence would
        // just end there).
        let parser = try Parser(yaml: text)
        var i = 0
        while let node = try parser.nextRoot() {
            i += 1
            let where_ = "\(path) document \(i)"
            do {
                let o = try YAMLDecoder().decode(AnyMizarObject.self, from: node)
                do { try o.validate() } catch {
                    throw CommandFailure(description: "\(where_) (\(o.kind.rawValue) \(o.name)): \(error)")
                }
                objects.append(o)
            } catch let e as DecodingError {
                throw CommandFailure(description: "\(where_)\(identity(of: node, failing: e)): \(ObjectCoding.validationError(e))")
            }
        }
    } catch let e as YamlError {
        throw CommandFailure(description: "\(path): not valid YAML: \(e)")
    }
    guard !objects.isEmpty else { throw CommandFailure(description: "\(path): no objects in the file") }
    return objects
}

/// " (Kind name)" for a document whose shape is right but one of whose
/// values is malformed (an address, a CIDR, a VNI out of range), as for a
/// document that decodes and fails validation; nothing for a document
/// missing a field or holding one of the wrong type.
func identity(of node: Node, failing error: DecodingError) -> String {
    guard case .dataCorrupted(let context) = error, !context.codingPath.isEmpty,
          let kind = node["kind"]?.string.flatMap({ try? Kind(parsing: $0) }),
          let name = node["metadata"]?["name"]?.string else { return "" }
    return " (\(kind.rawValue) \(name))"
}

/// Runs `body` for the object's spec type.
func withSpec<R>(_ kind: Kind, _ body: (any ObjectSpec.Type) async throws -> R) async rethrows -> R {
    switch kind {
    case .vpc: try await body(VpcSpec.self)
    case .subnet: try await body(SubnetSpec.self)
    case .endpoint: try await body(EndpointSpec.self)
    case .droplet: try await body(DropletSpec.self)
    case .bouncer: try await body(BouncerSpec.self)
    case .divider: try await body(DividerSpec.self)
    case .namespace: try await body(NamespaceSpec.self)
    case .networkPolicy: try await body(NetworkPolicySpec.self)
    }
}

struct Apply: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create or update the objects in a YAML file (several documents allowed).",
        discussion: "Every document is checked before any is written; a refusal names the document, the field and the reason.")
    @OptionGroup var etcd: EtcdOptions
    @Option(name: .shortAndLong, help: "The YAML file, or - for standard input.") var filename: String

    func run() async throws {
        let objects = try readObjects(filename)
        try await etcd.withStore { store in
            for o in objects {
                let result: String
                do {
                    result = try await apply(o, store)
                } catch let e as StoreError {
                    throw CommandFailure(description: "\(o.kind.rawValue.lowercased())/\(o.storeName): \(e)")
                }
                print("\(o.kind.rawValue.lowercased())/\(o.storeName) \(result)")
            }
        }
    }

    func apply(_ o: AnyMizarObject, _ store: Store) async throws -> String {
        switch o {
        case .vpc(let x): try await upsert(x, store)
        case .subnet(let x): try await upsert(x, store)
        case .endpoint(let x): try await upsert(x, store)
        case .droplet(let x): try await upsert(x, store)
        case .bouncer(let x): try await upsert(x, store)
        case .divider(let x): try await upsert(x, store)
        case .namespace(let x): try await upsert(x, store)
        case .networkPolicy(let x): try await upsert(x, store)
        }
    }

    func upsert<S: ObjectSpec>(_ o: Object<S>, _ store: Store) async throws -> String {
        for _ in 0..<10 {
            guard var current = try await store.get(S.self, o.storeName) else {
                do { try await store.create(o); return "created" } catch StoreError.alreadyExists(_, _) { continue }
            }
            var wanted = o.metadata
            S.normalize(&wanted)
            if current.spec == o.spec && current.metadata.labels == wanted.labels && current.metadata.namespace == o.metadata.namespace { return "unchanged" }
            current.spec = o.spec
            current.metadata.labels = o.metadata.labels
            current.metadata.namespace = o.metadata.namespace
            do { try await store.update(current); return "configured" } catch StoreError.conflict(_, _) { continue }
        }
        throw StoreError.conflict(S.kind, o.storeName)
    }
}

struct Get: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List objects of a kind, or show one.")
    @OptionGroup var etcd: EtcdOptions
    @Argument(help: "vpcs, subnets, endpoints, droplets, bouncers, dividers, namespaces or networkpolicies.") var kind: String
    @Argument(help: "An object's name.") var name: String?
    @Option(name: .shortAndLong, help: "table (default), wide, yaml or json.") var output = "table"
    @Option(name: .shortAndLong, help: "Only objects of this namespace (networkpolicies and endpoints); a networkpolicy's name is looked up in it (default: default).")
    var namespace: String?

    func validate() throws {
        _ = try Kind(parsing: kind)
        guard ["table", "wide", "yaml", "json"].contains(output) else { throw ValidationError("-o: \"\(output)\" is not table, wide, yaml or json") }
    }

    func run() async throws {
        let kind = try Kind(parsing: kind)
        let key = name.map { kind.storeName($0, namespace: namespace) }
        var objects: [AnyMizarObject] = try await etcd.withStore { store in
            try await withSpec(kind) { spec in try await listObjects(spec, store, name: key) }
        }
        if let namespace { objects = objects.filter { $0.metadata.effectiveNamespace == namespace } }
        if let key, objects.isEmpty { throw CommandFailure(description: "\(kind.rawValue) \(key) not found") }
        try printObjects(objects, kind: kind, output: output)
    }
}

func listObjects<S: ObjectSpec>(_ type: S.Type, _ store: Store, name: String?) async throws -> [AnyMizarObject] {
    let objects = if let name { try await store.get(S.self, name).map { [$0] } ?? [] } else { try await store.list(S.self).objects }
    return try objects.map { try ObjectCoding.decode(AnyMizarObject.self, from: ObjectCoding.encode($0)) }
}

func printObjects(_ objects: [AnyMizarObject], kind: Kind, output: String) throws {
    switch output {
    case "json":
        let text = objects.count == 1 ? ObjectCoding.encode(objects[0], pretty: true) : ObjectCoding.encode(objects, pretty: true)
        print(String(decoding: text, as: UTF8.self))
    case "yaml":
        print(try objects.map { try YAMLEncoder().encode($0) }.joined(separator: "---\n"), terminator: "")
    default:
        let wide = output == "wide"
        printTable(columns(kind, wide: wide), objects.map { row($0, wide: wide) })
    }
}

func columns(_ kind: Kind, wide: Bool) -> [String] {
    let specific: [String] = switch kind {
    case .vpc: ["CIDR", "VNI", "DIVIDERS", "EGRESS"]
    case .subnet: ["VPC", "CIDR", "BOUNCERS"]
    case .endpoint: ["VPC", "SUBNET", "IP", "DROPLET"]
    case .droplet: ["IP", "TRANSITD"]
    case .bouncer: ["VPC", "SUBNET", "DROPLET"]
    case .divider: ["VPC", "DROPLET"]
    case .namespace: ["LABELS"]
    case .networkPolicy: ["POD-SELECTOR", "TYPES"]
    }
    let namespaced = kind.namespaced || kind == .endpoint
    return (namespaced ? ["NAMESPACE"] : []) + ["NAME", "PHASE"] + specific + (wide ? ["DELAY", "REASON"] : [])
}

func row(_ o: AnyMizarObject, wide: Bool) -> [String] {
    func list(_ l: [String]?) -> String { l.map { $0.isEmpty ? "-" : $0.joined(separator: ",") } ?? "-" }
    let specific: [String] = switch o {
    case .vpc(let v): ["\(v.spec.cidr)", v.status?.vni.map { "\($0)" } ?? "-", list(v.status?.dividers), v.spec.egress.map { "\($0.mode)" } ?? "none"]
    case .subnet(let s): [s.spec.vpc, "\(s.spec.cidr)", list(s.status?.bouncers)]
    case .endpoint(let e): [e.spec.vpc, e.spec.subnet, (e.status?.ip ?? e.spec.ip).map { "\($0)" } ?? "-", e.status?.droplet ?? e.spec.droplet ?? "-"]
    case .droplet(let d): ["\(d.spec.ip)", d.spec.transitd]
    case .bouncer(let b): [b.spec.vpc, b.spec.subnet, b.spec.droplet]
    case .divider(let d): [d.spec.vpc, d.spec.droplet]
    case .namespace(let n): [labelText(n.metadata.labels)]
    case .networkPolicy(let p): [selectorText(p.spec.podSelector), p.spec.effectiveTypes.map(\.rawValue).sorted().joined(separator: ",")]
    }
    let common = o.common
    let deleting = o.metadata.deletionTimestamp != nil
    let phase = deleting ? "Deleting" : common?.phase.rawValue ?? "-"
    let reason = [common?.reasonCode?.rawValue, common?.reason].compactMap { $0 }.joined(separator: ": ")
    let extra = wide ? [common?.provisioningDelayMs.map { String(format: "%.1fms", $0) } ?? "-", reason] : []
    let namespaced = o.kind.namespaced || o.kind == .endpoint
    return (namespaced ? [o.metadata.effectiveNamespace] : []) + [o.name, phase] + specific + extra
}

/// "a=b,c=d", or "-" for none.
func labelText(_ labels: [String: String]?) -> String {
    let l = (labels ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
    return l.isEmpty ? "-" : l.joined(separator: ",")
}

/// A selector as kubectl prints one: "pod=a,tier in (x,y)"; "<all>" when empty.
func selectorText(_ s: LabelSelector) -> String {
    var parts = (s.matchLabels ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
    for e in s.matchExpressions ?? [] {
        switch e.operator {
        case .in: parts.append("\(e.key) in (\((e.values ?? []).joined(separator: ",")))")
        case .notIn: parts.append("\(e.key) notin (\((e.values ?? []).joined(separator: ",")))")
        case .exists: parts.append(e.key)
        case .doesNotExist: parts.append("!\(e.key)")
        }
    }
    return parts.isEmpty ? "<all>" : parts.joined(separator: ",")
}

struct Describe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show one object whole, with its status and its events.")
    @OptionGroup var etcd: EtcdOptions
    @Argument(help: "The kind.") var kind: String
    @Argument(help: "The object's name.") var name: String
    @Option(name: .shortAndLong, help: "A networkpolicy's namespace (default: default).") var namespace: String?

    func validate() throws { _ = try Kind(parsing: kind) }

    func run() async throws {
        let kind = try Kind(parsing: kind)
        let key = kind.storeName(name, namespace: namespace)
        let (objects, events): ([AnyMizarObject], [ObjectEvent]) = try await etcd.withStore { store in
            (try await withSpec(kind) { spec in try await listObjects(spec, store, name: key) }, try await store.events(kind, key))
        }
        guard let o = objects.first else { throw CommandFailure(description: "\(kind.rawValue) \(key) not found") }
        print(try YAMLEncoder().encode(o), terminator: "")
        try await describePolicies(o)
        if case .endpoint(let e) = o {
            if e.spec.isScaled {
                try await describeService(e)
            } else if let ip = e.status?.ip, let droplet = e.status?.droplet,
                      let vni = try await etcd.withStore({ try await $0.get(VpcSpec.self, e.spec.vpc)?.status?.vni }) {
                // Derived from (VNI, IP), so never stored.
                print("host interface: \(HostInterface.name(vni: vni, ip: ip)) on droplet \(droplet)")
                try await describeWayOut(e, vni: vni, ip: ip, droplet: droplet)
            }
        }
        if case .vpc(let v) = o {
            print(v.spec.egress == nil
                  ? "egress: none (a packet to an address outside \(v.spec.cidr) is dropped as egress_disabled)"
                  : "egress: SNAT (to an address outside \(v.spec.cidr), translated on the endpoint's own droplet to the droplet's address)")
        }
        print("events:")
        if events.isEmpty { print("  (none)") }
        printTable(["  TIME", "TYPE", "REASON", "BY", "MESSAGE"],
                   events.map { ["  " + $0.time, $0.type.rawValue, $0.reason, $0.controller ?? "-", $0.message] })
    }
}

extension Describe {
    /// An endpoint's ways beyond its VPC: egress through its droplet, and
    /// whether its host reaches it (asked of the droplet's transitd).
    func describeWayOut(_ e: Endpoint, vni: VNI, ip: IPv4Address, droplet: String) async throws {
        let (vpc, d) = try await etcd.withStore { store in
            (try await store.get(VpcSpec.self, e.spec.vpc), try await store.get(DropletSpec.self, droplet))
        }
        if vpc?.spec.egress != nil {
            print("egress: SNAT to \(d.map { "\($0.spec.ip)" } ?? "droplet \(droplet)'s address") (VPC \(e.spec.vpc))")
        } else {
            print("egress: none (VPC \(e.spec.vpc) has none: outside \(vpc.map { "\($0.spec.cidr)" } ?? "the VPC") is dropped as egress_disabled)")
        }
        guard let d else { print("host access: unknown (no droplet \(droplet))"); return }
        do {
            var filter = Mizar_Transit_V1_ListRequest()
            filter.vni = vni.value
            let request = filter
            let all = try await withTransitClient(try TransitTarget(parsing: d.spec.transitd), tls: try etcd.tls.files()) { c in
                (try await c.listEndpointInterfaces(request).interfaces, try await c.listEndpointInterfaces(.init()).interfaces)
            }
            guard let mine = all.0.first(where: { $0.spec.ip == "\(ip)" }) else {
                print("host access: unknown (droplet \(droplet) has no interface for it yet)")
                return
            }
            if mine.hostAccess {
                print("host access: yes (the host of droplet \(droplet) reaches \(ip); the endpoint answers only the host's own connections)")
            } else {
                let holder = all.1.first { $0.spec.ip == "\(ip)" && $0.hostAccess }
                print("host access: no (\(holder.map { "the endpoint of VNI \($0.spec.vni) with the same address holds the host's route" } ?? "the host has no route to \(ip)"))")
            }
        } catch {
            print("host access: unknown (\(droplet): \(error))")
        }
    }

    /// For an endpoint, the policies that select it and the directions they
    /// isolate; for a policy, the endpoints it selects.
    func describePolicies(_ o: AnyMizarObject) async throws {
        switch o {
        case .endpoint(let e) where !e.spec.isScaled:
            let policies = try await etcd.withStore { try await $0.list(NetworkPolicySpec.self).objects }
            let target = PolicyEndpoint(name: e.name, ip: e.status?.ip ?? .zero, namespace: e.metadata.effectiveNamespace,
                                        labels: e.metadata.labels ?? [:], ports: e.spec.ports ?? [])
            let selecting = policies.filter { $0.selects(target) }
            print("policies:")
            if selecting.isEmpty { print("  (none: it admits and sends everything in its VPC)") }
            for p in selecting {
                print("  \(p.storeName) (\(p.spec.effectiveTypes.map(\.rawValue).sorted().joined(separator: ", ")))")
            }
        case .networkPolicy(let p):
            let endpoints = try await etcd.withStore { try await $0.list(EndpointSpec.self).objects }
            let selected = endpoints.compactMap(PolicyEndpoint.init).filter { p.selects($0) }.map(\.name).sorted()
            print("selects: \(selected.isEmpty ? "(no endpoint)" : selected.joined(separator: ", "))")
        default:
            break
        }
    }

    /// A scaled endpoint as its bouncers hold it: ports, backends, how the
    /// Maglev table divides among them and the flows each was given.
    func describeService(_ e: Endpoint) async throws {
        guard let vip = e.status?.ip else { return }
        let ip = "\(vip)"
        let bouncers: [(String, TransitTarget)] = try await etcd.withStore { store in
            guard let names = try await store.get(SubnetSpec.self, e.spec.subnet)?.status?.bouncers else { return [] }
            var result: [(String, TransitTarget)] = []
            for n in names {
                if let d = try await store.get(DropletSpec.self, n) { result.append((n, try TransitTarget(parsing: d.spec.transitd))) }
            }
            return result
        }
        var infos: [(String, Mizar_Transit_V1_ServiceInfo)] = []
        var failures: [String] = []
        for (name, target) in bouncers {
            do {
                let vni = try await withTransitClient(target, tls: try etcd.tls.files()) { c in
                    try await c.listEndpoints(.init()).endpoints.first { $0.ip == ip && $0.kind == .scaled }?.vni
                }
                guard let vni else { failures.append("\(name): no entry for \(ip)"); continue }
                var key = Mizar_Transit_V1_EndpointKey()
                key.vni = vni
                key.ip = ip
                let k = key
                infos.append((name, try await withTransitClient(target, tls: try etcd.tls.files()) { try await $0.getService(k) }))
            } catch {
                failures.append("\(name): \(error)")
            }
        }
        print("service:")
        print("  bouncers: \(bouncers.map(\.0).joined(separator: ", "))")
        for f in failures { print("  unreachable: \(f)") }
        if let hostPorts = try? e.spec.hostPorts(), !hostPorts.isEmpty {
            let on = e.status?.published ?? []
            print("  published: " + hostPorts.map { "\($0.proto) \($0.hostPort) -> \($0.port)" }.joined(separator: ", ")
                  + " on \(e.spec.publishOn.map { $0.joined(separator: ", ") } ?? "every droplet")"
                  + "; programmed on \(on.isEmpty ? "(none yet)" : on.joined(separator: ", "))")
        }
        guard let first = infos.first?.1 else { return }
        print("  ports: " + first.service.ports.map { "\($0.port)/\($0.protocol) -> \($0.targetPort)" }.joined(separator: ", "))
        print("  maglev table: \(first.tableSize) entries")
        let names = Dictionary((e.status?.backends ?? []).map { ("\($0.ip)", $0.name) }, uniquingKeysWith: { a, _ in a })
        var flows: [String: UInt64] = [:]
        for (_, info) in infos { for b in info.backends { flows[b.ip, default: 0] += b.flows } }
        printTable(["  BACKEND", "IP", "HOST", "TABLE ENTRIES", "SHARE", "NEW FLOWS"], first.backends.map { b in
            ["  " + (names[b.ip] ?? "-"), b.ip, b.host.ip, "\(b.tableEntries)",
             percent(Double(b.tableEntries), Double(first.tableSize)),
             "\(flows[b.ip] ?? 0)"]
        })
        if first.backends.isEmpty { print("  (no live backend)") }
        let clients = Set(infos.flatMap(\.1.clientHosts)).sorted()
        print("  client hosts taught: \(clients.isEmpty ? "(none)" : clients.joined(separator: ", "))")
    }
}

struct Delete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete objects by kind and name, or those in a YAML file.",
        discussion: "Deleting a VPC deletes its subnets, and a subnet its endpoints; the operator cleans every host.")
    @OptionGroup var etcd: EtcdOptions
    @Argument(help: "The kind and the name.") var target: [String] = []
    @Option(name: .shortAndLong, help: "A YAML file whose objects to delete.") var filename: String?
    @Option(name: .shortAndLong, help: "A networkpolicy's namespace (default: default).") var namespace: String?

    func validate() throws {
        if filename == nil {
            guard target.count == 2 else { throw ValidationError("give KIND NAME, or -f FILE") }
            _ = try Kind(parsing: target[0])
        }
    }

    func run() async throws {
        let items: [(Kind, String)] = if let filename {
            try readObjects(filename).reversed().map { ($0.kind, $0.storeName) }
        } else {
            [(try Kind(parsing: target[0]), try Kind(parsing: target[0]).storeName(target[1], namespace: namespace))]
        }
        try await etcd.withStore { store in
            for (kind, name) in items {
                let existed = try await withSpec(kind) { spec in try await store.delete(spec, name) }
                print("\(kind.rawValue.lowercased())/\(name) \(existed ? "deleted" : "not found")")
            }
        }
    }
}

struct Wait: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Wait until objects reach a phase (or are deleted).")
    @OptionGroup var etcd: EtcdOptions
    @Option(help: "provisioned, ready or deleted.") var `for`: String = "provisioned"
    @Argument(help: "The kind.") var kind: String
    @Argument(help: "An object's name (default: every object of the kind).") var name: String?
    @Option(help: "Seconds to wait at most.") var timeout: Double = 60
    @Option(help: "Without a name: how many objects of the kind must exist and be there (provisioned or ready; not for deleted).")
    var count: Int = 1

    func validate() throws {
        _ = try Kind(parsing: kind)
        guard ["provisioned", "ready", "deleted"].contains(self.for) else { throw ValidationError("--for: \"\(self.for)\" is not provisioned, ready or deleted") }
        guard count >= 1 else { throw ValidationError("--count: \(count) is not a positive number of objects") }
    }

    func run() async throws {
        let kind = try Kind(parsing: kind)
        let goal = self.for
        let deadline = Date().addingTimeInterval(timeout)
        try await etcd.withStore { store in
            // Watch-driven: re-check on every change of the kind, until the
            // deadline.
            var lastSeen: [AnyMizarObject] = []
            while Date() < deadline {
                // The revision is taken before the objects are read, so the
                // watch below starts no later than what was read: a change
                // between the two is seen again, never missed.
                let (objects, revision): ([AnyMizarObject], Int64) = try await withSpec(kind) { spec in
                    let before = try await store.etcd.list(prefix: store.prefix(kind)).revision
                    return (try await listObjects(spec, store, name: name), before)
                }
                lastSeen = objects
                if satisfied(objects, goal) { print("\(kind.plural)\(name.map { "/\($0)" } ?? ""): \(goal)"); return }
                if goal != "deleted", case let failed = Self.failures(objects), !failed.isEmpty {
                    throw CommandFailure(description: "\(failed.joined(separator: ", ")); not waiting for \(goal)")
                }
                let changed = store.etcd.watch(prefix: store.prefix(kind), fromRevision: revision + 1)
                let waited = Task {
                    for try await _ in changed { return }
                }
                let timer = Task { try await Task.sleep(for: .seconds(max(0, deadline.timeIntervalSinceNow))); waited.cancel() }
                _ = try? await waited.value
                timer.cancel()
            }
            let pending = lastSeen.filter { !satisfied([$0], goal) }.map { o in
                "\(o.name) (\(row(o, wide: true)[1])\(row(o, wide: true).last.map { $0.isEmpty ? "" : ": \($0)" } ?? ""))"
            }
            throw CommandFailure(description: "timed out after \(Int(timeout)) s waiting for \(goal): \(pending.isEmpty ? "nothing listed" : pending.joined(separator: ", "))")
        }
    }

    func satisfied(_ objects: [AnyMizarObject], _ goal: String) -> Bool {
        if goal == "deleted" { return objects.isEmpty }
        let want: Phase = goal == "ready" ? .ready : .provisioned
        // A kind with none (or too few) of its objects yet is not "all provisioned".
        return objects.count >= (name == nil ? count : 1)
            && objects.allSatisfy { $0.metadata.deletionTimestamp == nil && $0.common?.phase == want }
    }

    /// Objects that failed for good: waiting longer cannot help.
    static func failures(_ objects: [AnyMizarObject]) -> [String] {
        objects.compactMap { o in
            guard o.metadata.deletionTimestamp == nil, let c = o.common, c.phase == .failed else { return nil }
            return "\(o.name) failed (\(c.reasonCode?.rawValue ?? "no reason code")\(c.reason.map { ": \($0)" } ?? ""))"
        }
    }
}

struct Matrix: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ping between every pair of provisioned endpoints (inside their network namespaces) and print who reaches whom.",
        discussion: "Endpoints of one VPC must reach each other; endpoints of different VPCs never. Exits 1 if any pair does otherwise.")
    @OptionGroup var etcd: EtcdOptions

    func run() async throws {
        let endpoints: [MizarAPI.Endpoint] = try await etcd.withStore { store in
            try await store.list(EndpointSpec.self).objects
        }.filter { $0.status?.common.phase == .provisioned && $0.spec.netns != nil && $0.status?.ip != nil }
            .sorted { ($0.spec.vpc, $0.name) < ($1.spec.vpc, $1.name) }
        guard endpoints.count >= 2 else { throw CommandFailure(description: "fewer than two provisioned endpoints with a network namespace") }
        let pairs = endpoints.indices.flatMap { i in endpoints.indices.filter { $0 != i }.map { (i, $0) } }
        let reached = parallelMap(pairs, threads: 16) { (i, j) -> Bool in
            // ping exits 0 once an answer came.
            let ping = Process()
            ping.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
            ping.arguments = ["--net=\(endpoints[i].spec.netns!)", "ping", "-n", "-q", "-c", "1", "-W", "1", "\(endpoints[j].status!.ip!)"]
            ping.standardOutput = FileHandle.nullDevice
            ping.standardError = FileHandle.nullDevice
            guard (try? ping.run()) != nil else { return false }
            ping.waitUntilExit()
            return ping.terminationStatus == 0
        }
        var result: [Int: [Int: Bool]] = [:]
        for (k, (i, j)) in pairs.enumerated() { result[i, default: [:]][j] = reached[k] }
        let labels = endpoints.map { "\($0.name) (\($0.spec.vpc) \($0.status!.ip!))" }
        print("ping from each row to each column: ✓ reached, · no answer; ! marks what should not be")
        let width = labels.map(\.count).max() ?? 0
        print(String(repeating: " ", count: width) + "  " + endpoints.map { $0.name.padding(to: max(3, $0.name.count)) }.joined(separator: " "))
        var within = 0, across = 0, wrong = 0
        for i in endpoints.indices {
            let cells = endpoints.indices.map { j -> String in
                let w = max(3, endpoints[j].name.count)
                guard i != j else { return "-".padding(to: w) }
                let ok = result[i]![j]!, same = endpoints[i].spec.vpc == endpoints[j].spec.vpc
                if ok == same { if same { within += 1 } else { across += 1 } } else { wrong += 1 }
                return ((ok ? "✓" : "·") + (ok == same ? "" : "!")).padding(to: w)
            }
            print(labels[i].padding(to: width) + "  " + cells.joined(separator: " "))
        }
        print("\(within) pairs in the same VPC reached each other; \(across) pairs across VPCs did not\(wrong > 0 ? "; \(wrong) pairs did otherwise" : "")")
        if wrong > 0 { throw ExitCode(1) }
    }
}

/// Runs `body` over `items` on up to `threads` threads (each ping is a
/// process that mostly waits); results in the items' order.
func parallelMap<T: Sendable, R: Sendable>(_ items: [T], threads: Int, _ body: @escaping @Sendable (T) -> R) -> [R] {
    let box = ParallelResults<R>(items.count)
    let group = DispatchGroup()
    for _ in 0..<min(threads, items.count) {
        group.enter()
        Thread.detachNewThread {
            while true {
                box.lock.lock()
                let k = box.next
                box.next += 1
                box.lock.unlock()
                guard k < items.count else { break }
                let r = body(items[k])
                box.lock.lock()
                box.results[k] = r
                box.lock.unlock()
            }
            group.leave()
        }
    }
    group.wait()
    return box.results.map { $0! }
}

/// The shared state of parallelMap, guarded by its lock.
final class ParallelResults<R>: @unchecked Sendable {
    var results: [R?]
    var next = 0
    let lock = NSLock()
    init(_ n: Int) { results = Array(repeating: nil, count: n) }
}
