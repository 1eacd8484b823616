import Foundation
import Logging
import MizarAPI
import MizarCore
import MizarRPC
import MizarStore
import MizarSystem
import MizarTransit

/// A CNI error: the spec's code, a message a person can act on, details.
public struct CNIError: Error, Sendable {
    public var code: Int
    public var msg: String
    public var details: String

    public init(_ code: Int, _ msg: String, details: String = "") {
        self.code = code
        self.msg = msg
        self.details = details
    }

    // The spec's codes (1-99) and Mizar's own (100 and up).
    public static let incompatibleVersion = 1
    public static let unknownContainer = 3
    public static let invalidEnvironment = 4
    public static let ioFailure = 5
    public static let decodeFailure = 6
    public static let invalidConfig = 7
    public static let tryAgainLater = 11
    public static let notAvailable = 50
    /// The subnet has no free address.
    public static let subnetExhausted = 100
    /// CHECK: the interface, its address or its routes drifted.
    public static let drifted = 101
    /// The endpoint exists, for another host or network.
    public static let conflict = 102
}

extension CNIError {
    /// The CNI error for an Endpoint the operator set Failed, from its
    /// reason code (never from the message, which is for people).
    public static func failed(_ code: ReasonCode?, reason: String?, endpoint: String, subnet: String) -> CNIError {
        switch code {
        case .subnetExhausted?:
            CNIError(subnetExhausted, "subnet \(subnet) has no free address for endpoint \(endpoint)",
                     details: "delete unused endpoints or add a subnet")
        case .refusedByHost?:
            CNIError(invalidConfig, "endpoint \(endpoint) was refused by this host: \(reason ?? "no reason given")")
        default:
            CNIError(ioFailure, "endpoint \(endpoint) failed (\(code?.rawValue ?? "no reason code")): \(reason ?? "no reason given")")
        }
    }
}

/// One CNI invocation as the plugin forwards it: the runtime's CNI_*
/// variables and the network configuration it gave on stdin.
public struct CNIRequest: Sendable {
    public var command: String
    public var containerID: String
    public var netns: String
    public var ifname: String
    public var args: String
    public var stdin: String

    public init(command: String, containerID: String, netns: String, ifname: String, args: String, stdin: String) {
        self.command = command
        self.containerID = containerID
        self.netns = netns
        self.ifname = ifname
        self.args = args
        self.stdin = stdin
    }

    /// The plugin's message: {"env": {"CNI_COMMAND": ...}, "stdin": "..."}.
    public init(json: [UInt8]) throws(CNIError) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(json)) as? [String: Any],
              let env = object["env"] as? [String: String] else {
            throw CNIError(CNIError.decodeFailure, "the plugin's request is not the JSON transitd expects")
        }
        command = env["CNI_COMMAND"] ?? ""
        containerID = env["CNI_CONTAINERID"] ?? ""
        netns = env["CNI_NETNS"] ?? ""
        ifname = env["CNI_IFNAME"] ?? ""
        args = env["CNI_ARGS"] ?? ""
        stdin = object["stdin"] as? String ?? ""
    }
}

/// The network configuration's fields Mizar reads, with per-container
/// overrides from CNI_ARGS (MIZAR_VPC, MIZAR_SUBNET, MIZAR_ENDPOINT) or
/// the runtime's `args.mizar` object (e.g. from a pod's annotations).
/// A container may ask for its address and MAC: CNI_ARGS IP= and MAC=
/// (what `podman run --ip --mac-address` sends), MIZAR_IP, `args.mizar.ip`
/// and `.mac`, or the `ips` and `mac` capabilities in `runtimeConfig`.
public struct CNIConfig: Sendable {
    public static let supportedVersions = ["1.0.0", "1.1.0"]
    public var cniVersion: String
    public var name: String
    public var vpc: String
    public var subnet: String
    public var endpoint: String?
    /// The address and MAC asked for, checked as far as they can be here
    /// (the subnet and who holds the address are checked at admission).
    public var ip: IPv4Address?
    public var mac: MACAddress?
    public var timeoutSeconds: Double
    public var validAttachments: [(containerID: String, ifname: String)]

    public init(stdin: String, args: String) throws(CNIError) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(stdin.utf8)) as? [String: Any] else {
            throw CNIError(CNIError.decodeFailure, "the network configuration on stdin is not a JSON object")
        }
        guard let version = object["cniVersion"] as? String else {
            throw CNIError(CNIError.invalidConfig, "the network configuration has no cniVersion")
        }
        guard Self.supportedVersions.contains(version) else {
            throw CNIError(CNIError.incompatibleVersion, "cniVersion \(version) is not supported; mizar-cni speaks \(Self.supportedVersions.joined(separator: " and "))")
        }
        cniVersion = version
        name = object["name"] as? String ?? ""
        var vpc = object["vpc"] as? String, subnet = object["subnet"] as? String, endpoint: String?
        // Where each requested address and MAC came from, for the error that names it.
        var ip: (text: String, source: String)?, mac: (text: String, source: String)?
        if let runtime = object["runtimeConfig"] as? [String: Any] {
            if let ips = runtime["ips"] as? [String] {
                guard ips.count <= 1 else {
                    throw CNIError(CNIError.invalidConfig, "runtimeConfig.ips asks for \(ips.count) addresses; a Mizar endpoint has one")
                }
                ip = ips.first.map { ($0, "runtimeConfig.ips") }
            }
            if let m = runtime["mac"] as? String { mac = (m, "runtimeConfig.mac") }
        }
        if let mizar = (object["args"] as? [String: Any])?["mizar"] as? [String: Any] {
            vpc = mizar["vpc"] as? String ?? vpc
            subnet = mizar["subnet"] as? String ?? subnet
            endpoint = mizar["endpoint"] as? String
            if let i = mizar["ip"] as? String { ip = (i, "args.mizar.ip") }
            if let m = mizar["mac"] as? String { mac = (m, "args.mizar.mac") }
        }
        for pair in args.split(separator: ";") {
            let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { continue }
            switch kv[0] {
            case "MIZAR_VPC": vpc = kv[1]
            case "MIZAR_SUBNET": subnet = kv[1]
            case "MIZAR_ENDPOINT": endpoint = kv[1]
            case "IP", "MIZAR_IP": ip = (kv[1], "CNI_ARGS \(kv[0])")
            case "MAC": mac = (kv[1], "CNI_ARGS MAC")
            default: break
            }
        }
        self.vpc = vpc ?? ""
        self.subnet = subnet ?? ""
        self.endpoint = endpoint
        self.ip = try ip.map { requested throws(CNIError) in
            // "10.0.1.5" or "10.0.1.5/24"; one address.
            let address = requested.text.split(separator: "/", maxSplits: 1).first.map(String.init) ?? ""
            guard !requested.text.contains(","), let parsed = try? IPv4Address(parsing: address) else {
                throw CNIError(CNIError.invalidConfig, "\(requested.source)=\(requested.text) is not one IPv4 address")
            }
            return parsed
        }
        self.mac = try mac.map { requested throws(CNIError) in
            guard let parsed = try? MACAddress(parsing: requested.text) else {
                throw CNIError(CNIError.invalidConfig, "\(requested.source)=\(requested.text) is not a MAC address")
            }
            return parsed
        }
        timeoutSeconds = (object["timeoutSeconds"] as? Double) ?? 30
        validAttachments = ((object["cni.dev/valid-attachments"] as? [[String: Any]]) ?? []).compactMap { a in
            guard let id = a["containerID"] as? String, let ifname = a["ifname"] as? String else { return nil }
            return (id, ifname)
        }
    }

    /// vpc and subnet must be named (ADD and CHECK need them).
    func requireNetwork() throws(CNIError) {
        if vpc.isEmpty { throw CNIError(CNIError.invalidConfig, "network configuration \(name): vpc is missing (set \"vpc\", or MIZAR_VPC in CNI_ARGS)") }
        if subnet.isEmpty { throw CNIError(CNIError.invalidConfig, "network configuration \(name): subnet is missing (set \"subnet\", or MIZAR_SUBNET in CNI_ARGS)") }
    }
}

/// Serves CNI for one host: ADD creates (or adopts) the container's
/// Endpoint on this droplet, waits until it is provisioned, and moves its
/// parked interface into the container; DEL deletes the Endpoint (which
/// releases the interface and the address); CHECK compares what is in the
/// container with what should be.
public struct CNIHandler: Sendable {
    public let host: TransitHost
    public let store: Store?
    public let droplet: String
    public let logger: Logger

    public static let containerLabel = "cni.mizar.com/container"
    public static let ifnameLabel = "cni.mizar.com/ifname"
    public static let dropletLabel = "cni.mizar.com/droplet"

    public init(host: TransitHost, store: Store?, droplet: String, logger: Logger) {
        self.host = host
        self.store = store
        self.droplet = droplet
        self.logger = logger
    }

    /// The plugin's exit status and what it prints.
    public func handle(_ request: CNIRequest) async -> (code: Int, output: String) {
        let started = monotonicSeconds()
        var version = "1.0.0"
        do {
            if let object = try? JSONSerialization.jsonObject(with: Data(request.stdin.utf8)) as? [String: Any],
               let v = object["cniVersion"] as? String, CNIConfig.supportedVersions.contains(v) {
                version = v
            }
            let output: String
            switch request.command {
            case "ADD": output = try await add(request)
            case "DEL": output = try await del(request)
            case "CHECK": output = try await check(request)
            case "STATUS": output = try await status(request)
            case "GC": output = try await gc(request)
            case "": throw CNIError(CNIError.invalidEnvironment, "CNI_COMMAND is missing")
            default: throw CNIError(CNIError.invalidEnvironment, "CNI_COMMAND \(request.command) is not ADD, DEL, CHECK, STATUS, GC or VERSION")
            }
            logger.info("cni", metadata: ["cni.command": "\(request.command)", "cni.container": "\(request.containerID.prefix(12))",
                                          "duration_us": "\(Int((monotonicSeconds() - started) * 1_000_000))"])
            return (0, output)
        } catch {
            let e = error as? CNIError ?? CNIError(CNIError.ioFailure, "\(error)")
            logger.warning("cni failed", metadata: ["cni.command": "\(request.command)", "cni.container": "\(request.containerID.prefix(12))",
                                                    "cni.code": "\(e.code)", "cni.msg": "\(e.msg)"])
            return (e.code, Self.errorJSON(e, version: version))
        }
    }

    public static func errorJSON(_ e: CNIError, version: String) -> String {
        var object: [String: Any] = ["cniVersion": version, "code": e.code, "msg": e.msg]
        if !e.details.isEmpty { object["details"] = e.details }
        return json(object)
    }

    static func json(_ object: Any) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    /// The Endpoint of a container's interface: named by the runtime (an
    /// endpoint the management plane made for it) or after the container.
    public static func endpointName(containerID: String, ifname: String, override: String?) -> String {
        if let override, !override.isEmpty { return override }
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in "\(containerID)/\(ifname)".utf8 {
            h ^= UInt64(b)
            h = h &* 0x100_0000_01b3
        }
        let hex = String(h, radix: 16)
        return "cni" + String(repeating: "0", count: 16 - hex.count) + hex
    }

    func requireStore() throws(CNIError) -> Store {
        guard let store else {
            throw CNIError(CNIError.tryAgainLater, "transitd on this host runs without --etcd, so it cannot create endpoints",
                           details: "start transitd with --etcd HOST:PORT")
        }
        return store
    }

    func requireEnv(_ request: CNIRequest, netns: Bool) throws(CNIError) {
        if request.containerID.isEmpty { throw CNIError(CNIError.invalidEnvironment, "CNI_CONTAINERID is missing") }
        if request.ifname.isEmpty { throw CNIError(CNIError.invalidEnvironment, "CNI_IFNAME is missing") }
        if netns && request.netns.isEmpty { throw CNIError(CNIError.invalidEnvironment, "CNI_NETNS is missing") }
    }

    // MARK: ADD

    func add(_ request: CNIRequest) async throws -> String {
        try requireEnv(request, netns: true)
        let config = try CNIConfig(stdin: request.stdin, args: request.args)
        try config.requireNetwork()
        let store = try requireStore()
        // The interface is made straight inside the container's namespace
        // (about 1.5 ms) rather than parked and moved in (about 14 ms: a move
        // between namespaces waits for RCU grace periods), so the namespace
        // must be there now.
        let namespace: NetworkNamespace
        do { namespace = try NetworkNamespace(path: request.netns) } catch {
            throw CNIError(CNIError.invalidEnvironment, "CNI_NETNS \(request.netns) cannot be opened: \(String(cString: strerror(error.errno)))")
        }
        do { try validateInterfaceName(request.ifname, field: "CNI_IFNAME") } catch {
            throw CNIError(CNIError.invalidEnvironment, "\(error)")
        }
        let name = Self.endpointName(containerID: request.containerID, ifname: request.ifname, override: config.endpoint)
        // The VPC, the subnet and the endpoint at once: one round trip's wait, not three.
        async let vpcRead = store.get(VpcSpec.self, config.vpc)
        async let subnetRead = store.get(SubnetSpec.self, config.subnet)
        async let endpointRead = store.get(EndpointSpec.self, name)
        let (vpcFound, subnetFound, existingFound) = try await (vpcRead, subnetRead, endpointRead)
        guard let vpc = vpcFound, vpc.metadata.deletionTimestamp == nil else {
            throw CNIError(CNIError.invalidConfig, "VPC \(config.vpc) does not exist (network configuration \(config.name) names it)",
                           details: "create it first: mizarctl apply -f a Vpc named \(config.vpc)")
        }
        guard let subnet = subnetFound, subnet.spec.vpc == vpc.name, subnet.metadata.deletionTimestamp == nil else {
            throw CNIError(CNIError.invalidConfig, "subnet \(config.subnet) does not exist in VPC \(config.vpc) (network configuration \(config.name) names it)")
        }
        let deadline = monotonicSeconds() + config.timeoutSeconds
        let labels = [Self.containerLabel: String(request.containerID.prefix(63)), Self.ifnameLabel: request.ifname,
                      Self.dropletLabel: droplet]
        if let existing = existingFound {
            // Adopted: made by the management plane for this container.
            guard existing.metadata.deletionTimestamp == nil else {
                throw CNIError(CNIError.tryAgainLater, "endpoint \(name) is still being deleted")
            }
            // Parked (made for this container beforehand), or already this container's (a repeated ADD).
            let parkedOrMine = existing.spec.netns == nil
                || (existing.spec.netns == request.netns && (existing.spec.ifname ?? "eth0") == request.ifname)
            if let why = EndpointClaim.conflict(existing, vpc: config.vpc, subnet: config.subnet, droplet: droplet)
                ?? (parkedOrMine ? nil : "endpoint \(name) is attached to \(existing.spec.netns ?? "-") \(existing.spec.ifname ?? "eth0")") {
                throw CNIError(CNIError.conflict, "\(why); this host is \(droplet)")
            }
            if let ip = config.ip, let has = existing.spec.ip ?? existing.status?.ip, has != ip {
                throw CNIError(CNIError.conflict, "endpoint \(name) exists with address \(has); this container asks for \(ip)")
            }
        } else if (try? Netlink(in: namespace).index(of: request.ifname)) != nil {
            throw CNIError(CNIError.invalidEnvironment, "CNI_NETNS \(request.netns) already has an interface \(request.ifname)")
        }
        // This host may not write endpoints: it claims one, under its own
        // keys, and the operator makes it (or adopts the existing one) and
        // deletes it when the claim goes.
        let spec = EndpointSpec(vpc: config.vpc, subnet: config.subnet, ip: config.ip, mac: config.mac, droplet: droplet, netns: request.netns, ifname: request.ifname)
        let claimed = try await store.putClaim(droplet, name, EndpointClaim(spec: spec, labels: labels))
        // Provisioned: its interface is parked on this host, its bouncers
        // know it. Or the operator refused the claim.
        let remaining = Duration.milliseconds(Int64(max(0, deadline - monotonicSeconds()) * 1000))
        enum Settled: Sendable { case provisioned(Endpoint), failed(CommonStatus), deleted, refused(String) }
        let (droplet, storeCopy) = (droplet, store)
        let settled: Settled? = try await withThrowingTaskGroup(of: Settled?.self) { group in
            group.addTask {
                try await storeCopy.follow(EndpointSpec.self, name, timeout: remaining) { e -> Settled? in
                    // Before the operator makes it, there is none: wait.
                    guard let e else { return nil }
                    if e.metadata.deletionTimestamp != nil { return .deleted }
                    if e.status?.common.phase == .provisioned { return .provisioned(e) }
                    if let common = e.status?.common, common.phase == .failed, common.observedGeneration == e.metadata.generation {
                        return .failed(common)
                    }
                    return nil
                }
            }
            group.addTask {
                try await storeCopy.follow(key: storeCopy.claimKey(droplet, name), timeout: remaining) { kv -> Settled? in
                    guard let kv else { return .deleted }
                    return try Store.decodeClaim(kv).refused.map(Settled.refused)
                }
            }
            defer { group.cancelAll() }
            // The first answer; a follower that timed out answers nil.
            return try await group.next() ?? nil
        }
        let endpoint: Endpoint
        switch settled {
        case .provisioned(let e):
            endpoint = e
        case .deleted:
            throw CNIError(CNIError.tryAgainLater, "endpoint \(name) was deleted while being added")
        case .refused(let reason):
            if claimed { _ = try? await store.deleteClaim(droplet, name) }
            throw CNIError(CNIError.invalidConfig, "endpoint \(name) refused: \(reason)")
        case .failed(let common):
            if claimed { _ = try? await store.deleteClaim(droplet, name) }
            throw CNIError.failed(common.reasonCode, reason: common.reason, endpoint: name, subnet: config.subnet)
        case nil:
            let e = try? await store.get(EndpointSpec.self, name)
            if claimed { _ = try? await store.deleteClaim(droplet, name) }
            let reason = e?.status?.common.reason ?? ""
            throw CNIError(CNIError.tryAgainLater,
                           "timed out after \(config.timeoutSeconds) s waiting for endpoint \(name) to be provisioned (phase \(e?.status?.common.phase.rawValue ?? "none")\(reason.isEmpty ? "" : ": \(reason)"))",
                           details: "is mizar-operator running?")
        }
        let vniRead = if let known = subnet.status?.vni { known } else { try await store.get(SubnetSpec.self, config.subnet)?.status?.vni }
        guard let vniValue = vniRead, let ip = endpoint.status?.ip else {
            throw CNIError(CNIError.ioFailure, "endpoint \(name) is provisioned but has no address or VNI")
        }
        let info: Mizar_Transit_V1_EndpointInterfaceInfo
        do {
            info = try await host.attachEndpointInterface(vniValue, ip, netns: request.netns, ifname: request.ifname)
        } catch let e as TransitError {
            throw CNIError(e.code == .notFound && e.message.hasPrefix("netns:") ? CNIError.invalidEnvironment : CNIError.ioFailure, "\(e)")
        }
        let cidr = subnet.spec.cidr
        var iface: [String: Any] = ["name": request.ifname, "mac": info.spec.mac, "sandbox": request.netns]
        if config.cniVersion == "1.1.0" { iface["mtu"] = Int(info.spec.mtu) }
        return Self.json([
            "cniVersion": config.cniVersion,
            "interfaces": [iface],
            "ips": [["address": "\(ip)/\(cidr.prefixLength)", "gateway": info.spec.gateway, "interface": 0]],
            "routes": [["dst": "0.0.0.0/0", "gw": info.spec.gateway]],
            "dns": [String: Any](),
        ])
    }

    // MARK: DEL

    /// Succeeds for a container never seen, and for one half torn down
    /// (its namespace gone): the Endpoint goes, and with it the interface
    /// and the address.
    func del(_ request: CNIRequest) async throws -> String {
        if request.containerID.isEmpty || request.ifname.isEmpty { return "" }
        let config = (try? CNIConfig(stdin: request.stdin, args: request.args))
        let store = try requireStore()
        let name = Self.endpointName(containerID: request.containerID, ifname: request.ifname, override: config?.endpoint)
        // The claim goes; the operator deletes the endpoint it made or
        // adopted for it.
        let hadClaim = try await store.deleteClaim(droplet, name)
        guard let e = try await store.get(EndpointSpec.self, name) else { return "" }
        guard e.spec.droplet == droplet else {
            throw CNIError(CNIError.conflict, "endpoint \(name) lives on droplet \(e.spec.droplet ?? "-"), not on this host (\(droplet))")
        }
        guard hadClaim || e.metadata.labels?[EndpointClaim.claimedByLabel] == droplet else {
            throw CNIError(CNIError.conflict, "endpoint \(name) was not claimed by this host's CNI; delete it with mizarctl")
        }
        let timeout = Duration.milliseconds(Int64((config?.timeoutSeconds ?? 30) * 1000))
        if try await store.follow(EndpointSpec.self, name, timeout: timeout, until: { $0 == nil ? true : nil }) != nil { return "" }
        // Marked deleted: the operator finishes it; a later DEL finds nothing.
        logger.warning("cni del: endpoint not gone yet; the operator will finish it", metadata: ["endpoint": "\(name)"])
        return ""
    }

    // MARK: CHECK

    func check(_ request: CNIRequest) async throws -> String {
        try requireEnv(request, netns: true)
        let config = try CNIConfig(stdin: request.stdin, args: request.args)
        let store = try requireStore()
        let name = Self.endpointName(containerID: request.containerID, ifname: request.ifname, override: config.endpoint)
        guard let e = try await store.get(EndpointSpec.self, name), e.metadata.deletionTimestamp == nil else {
            throw CNIError(CNIError.unknownContainer, "no endpoint \(name) for container \(request.containerID.prefix(12)) (ifname \(request.ifname))")
        }
        guard e.status?.common.phase == .provisioned, let ip = e.status?.ip,
              let vniValue = try await store.get(SubnetSpec.self, e.spec.subnet)?.status?.vni else {
            throw CNIError(CNIError.drifted, "endpoint \(name) is \(e.status?.common.phase.rawValue ?? "not provisioned")\(e.status?.common.reason.map { ": \($0)" } ?? "")")
        }
        let drift = try await host.checkEndpointInterface(vniValue, ip, netns: request.netns, ifname: request.ifname)
        guard drift.isEmpty else {
            throw CNIError(CNIError.drifted, drift.joined(separator: "; "), details: "endpoint \(name) in \(request.netns)")
        }
        return ""
    }

    // MARK: STATUS and GC (CNI 1.1)

    func status(_ request: CNIRequest) async throws -> String {
        let store = try requireStore()
        do { _ = try await store.get(DropletSpec.self, droplet) } catch {
            throw CNIError(CNIError.notAvailable, "transitd cannot reach etcd: \(error)")
        }
        return ""
    }

    /// Deletes this host's CNI endpoints whose container is not among the
    /// runtime's valid attachments.
    func gc(_ request: CNIRequest) async throws -> String {
        let config = try CNIConfig(stdin: request.stdin, args: request.args)
        let store = try requireStore()
        let valid = Set(config.validAttachments.map { "\($0.containerID.prefix(63))/\($0.ifname)" })
        // This host's claims only: the cost is its own containers', not the cluster's.
        for (name, claim) in try await store.claims(of: droplet) {
            guard let labels = claim.labels, let id = labels[Self.containerLabel], let ifname = labels[Self.ifnameLabel],
                  !valid.contains("\(id)/\(ifname)") else { continue }
            try await store.deleteClaim(droplet, name)
        }
        return ""
    }
}
