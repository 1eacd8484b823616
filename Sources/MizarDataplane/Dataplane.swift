internal import CLibBPF
internal import CMizarABI
import Glibc
import MizarCore

/// The data plane of one host: the transit and agent programs, built for the
/// requested hooks, over one shared set of maps.
///
/// Maps are shared by name: the first object loaded creates each `mz_*` map
/// and later objects reuse it. With a pin directory, maps are pinned there
/// and an existing pin is adopted instead, so a restarted daemon keeps the
/// tables the kernel is forwarding with.
public final class Dataplane: @unchecked Sendable {
    // @unchecked: every stored property is immutable after init; the kernel
    // serialises concurrent map operations.

    public struct Programs: Sendable {
        public let transit: BPFProgram
        public let agent: BPFProgram
    }

    public let programs: [Hook: Programs]
    public let settings: DataplaneSettings
    private let objects: [BPFObject]
    /// Every shared map by name: what the explain build reuses.
    let sharedFDs: [String: Int32]

    let droplet: BPFMap<UInt32, mz_droplet>
    let knobs: BPFMap<UInt32, mz_knobs>
    let vpcs: BPFMap<mz_vpc_key, mz_vpc>
    let subnets: BPFMap<mz_subnet_key, mz_subnet>
    let endpoints: BPFMap<mz_ep_key, mz_endpoint>
    let local: BPFMap<mz_ep_key, mz_local_ep>
    let ifaces: BPFMap<mz_iface_key, mz_iface>
    let hostCache: BPFMap<mz_ep_key, mz_cached_host>
    let droplets: BPFMap<mz_droplet_key, mz_droplet_entry>
    let services: RawValueMap<mz_ep_key>
    let nat: BPFMap<mz_flow_key, mz_nat>
    /// 1 once the programs were taught a service flow here (they alone set it).
    let natActive: BPFMap<UInt32, UInt32>
    let serviceClients: BPFMap<mz_svc_client_key, mz_svc_client>
    let serviceStats: PerCPUHash<mz_svc_stat_key, mz_counter>
    let vpcStats: PerCPUHash<UInt32, mz_vpc_stat>
    let traceVPCs: BPFMap<mz_trace_vpc_key, UInt32>
    let counters: PerCPUArray<mz_counter>
    let drops: PerCPUArray<mz_counter>
    let eventsFD: Int32
    let policyEndpoints: BPFMap<mz_ep_key, mz_pol_ep>
    let policySets: BPFMap<mz_pol_set_key, mz_pol_set>
    let policyBlocks: BPFMap<mz_pol_block_key, mz_pol_bits>
    let conntrack: BPFMap<mz_flow_key, mz_ct>
    let snatOut: BPFMap<mz_flow_key, mz_snat>
    let snatIn: BPFMap<mz_snat_in_key, mz_snat_back>
    let published: BPFMap<mz_pub_key, mz_pub>
    let publishedFlows: BPFMap<mz_pub_flow_key, mz_pub_flow>
    let publishedBack: BPFMap<mz_pub_back_key, mz_pub_back>

    /// Bytes the agent prepends to an endpoint's frame (outer Ethernet,
    /// IPv4, UDP, Geneve and Mizar's options): an endpoint's MTU is the
    /// droplet's less this.
    public static let encapOverhead = Int(MZ_ENCAP_OVERHEAD)
    /// The Geneve option class of Mizar's options.
    public static let geneveOptionClass = UInt16(MZ_GENEVE_CLASS)
    /// The RTS option's type: the host to return to (its IPv4, MAC, flags).
    public static let rtsOptionType = UInt8(MZ_OPT_RTS.rawValue)

    /// The hash the programs spread flows with (bouncer and divider picks):
    /// tests predict which of several hosts a flow goes to with it.
    public static func flowHash(_ src: UInt32, _ dst: UInt32, _ portsProto: UInt32) -> UInt32 {
        mz_flow_hash(src, dst, portsProto)
    }

    /// The names of the maps every program shares.
    public static let sharedMaps = [
        "mz_droplet", "mz_knobs", "mz_vpcs", "mz_subnets", "mz_endpoints", "mz_local",
        "mz_ifaces", "mz_hostcache", "mz_droplets", "mz_counters", "mz_drops", "mz_events",
        "mz_services", "mz_nat", "mz_nat_active", "mz_svc_clients", "mz_svc_stats",
        "mz_pol_eps", "mz_pol_sets", "mz_pol_blocks", "mz_ct", "mz_snat_out", "mz_snat_in",
        "mz_published", "mz_pub_flows", "mz_pub_back", "mz_vpc_stats", "mz_trace_vpcs",
    ]

    public init(objectDirectory: String, hooks: [Hook] = Hook.allCases, settings: DataplaneSettings = DataplaneSettings(),
                pinDirectory: String? = nil) throws(SystemError) {
        self.settings = settings
        var fds: [String: Int32] = [:]
        var objects: [BPFObject] = []
        var programs: [Hook: Programs] = [:]
        for hook in hooks {
            var loaded: [String: BPFProgram] = [:]
            for program in ["transit", "agent"] {
                let object = try BPFObject(path: "\(objectDirectory)/\(program).\(hook.rawValue).o")
                try Dataplane.prepare(object, settings: settings, shared: fds, pinDirectory: pinDirectory)
                try object.load()
                for (name, map) in object.maps where Dataplane.sharedMaps.contains(name) {
                    fds[name] = try SystemError.check(bpf_map__fd(map), "bpf_map__fd", name)
                }
                loaded[program] = try object.program(named: "mz_\(program)", hook: hook)
                objects.append(object)
            }
            programs[hook] = Programs(transit: loaded["transit"]!, agent: loaded["agent"]!)
        }
        self.objects = objects
        sharedFDs = fds
        self.programs = programs

        func fd(_ name: String) throws(SystemError) -> Int32 {
            guard let fd = fds[name] else { throw SystemError(call: "find map", subject: name, errno: ENOENT) }
            return fd
        }
        droplet = BPFMap(name: "mz_droplet", fd: try fd("mz_droplet"))
        knobs = BPFMap(name: "mz_knobs", fd: try fd("mz_knobs"))
        vpcs = BPFMap(name: "mz_vpcs", fd: try fd("mz_vpcs"))
        subnets = BPFMap(name: "mz_subnets", fd: try fd("mz_subnets"))
        endpoints = BPFMap(name: "mz_endpoints", fd: try fd("mz_endpoints"))
        local = BPFMap(name: "mz_local", fd: try fd("mz_local"))
        ifaces = BPFMap(name: "mz_ifaces", fd: try fd("mz_ifaces"))
        hostCache = BPFMap(name: "mz_hostcache", fd: try fd("mz_hostcache"))
        droplets = BPFMap(name: "mz_droplets", fd: try fd("mz_droplets"))
        services = RawValueMap(name: "mz_services", fd: try fd("mz_services"), valueSize: Int(MZ_SVC_VALUE_SIZE))
        nat = BPFMap(name: "mz_nat", fd: try fd("mz_nat"))
        natActive = BPFMap(name: "mz_nat_active", fd: try fd("mz_nat_active"))
        serviceClients = BPFMap(name: "mz_svc_clients", fd: try fd("mz_svc_clients"))
        serviceStats = try PerCPUHash(name: "mz_svc_stats", fd: try fd("mz_svc_stats"))
        vpcStats = try PerCPUHash(name: "mz_vpc_stats", fd: try fd("mz_vpc_stats"))
        traceVPCs = BPFMap(name: "mz_trace_vpcs", fd: try fd("mz_trace_vpcs"))
        counters = try PerCPUArray(name: "mz_counters", fd: try fd("mz_counters"))
        drops = try PerCPUArray(name: "mz_drops", fd: try fd("mz_drops"))
        eventsFD = try fd("mz_events")
        policyEndpoints = BPFMap(name: "mz_pol_eps", fd: try fd("mz_pol_eps"))
        policySets = BPFMap(name: "mz_pol_sets", fd: try fd("mz_pol_sets"))
        policyBlocks = BPFMap(name: "mz_pol_blocks", fd: try fd("mz_pol_blocks"))
        conntrack = BPFMap(name: "mz_ct", fd: try fd("mz_ct"))
        snatOut = BPFMap(name: "mz_snat_out", fd: try fd("mz_snat_out"))
        snatIn = BPFMap(name: "mz_snat_in", fd: try fd("mz_snat_in"))
        published = BPFMap(name: "mz_published", fd: try fd("mz_published"))
        publishedFlows = BPFMap(name: "mz_pub_flows", fd: try fd("mz_pub_flows"))
        publishedBack = BPFMap(name: "mz_pub_back", fd: try fd("mz_pub_back"))
    }

    static func prepare(_ object: BPFObject, settings: DataplaneSettings, shared: [String: Int32],
                                pinDirectory: String?) throws(SystemError) {
        for (name, map) in object.maps {
            if name == "mz_ct" {
                try SystemError.check(bpf_map__set_max_entries(map, settings.conntrackSize), "bpf_map__set_max_entries", name)
            }
            if name == "mz_snat_out" || name == "mz_snat_in" {
                try SystemError.check(bpf_map__set_max_entries(map, settings.snatSize), "bpf_map__set_max_entries", name)
            }
            if name == ".rodata.mzcfg" {
                var value = settings.abi
                try SystemError.check(bpf_map__set_initial_value(map, &value, MemoryLayout<mz_config>.size),
                          "bpf_map__set_initial_value", name)
            } else if sharedMaps.contains(name) {
                if let pinDirectory {
                    try SystemError.check(bpf_map__set_pin_path(map, "\(pinDirectory)/\(name)"), "bpf_map__set_pin_path", name)
                } else if let fd = shared[name] {
                    try SystemError.check(bpf_map__reuse_fd(map, fd), "bpf_map__reuse_fd", name)
                }
            }
        }
    }

    /// Key and value sizes and member offsets of every map, as the BTF of the
    /// loaded objects records them: what the layout check compares.
    func btfLayouts() -> [MapLayout] {
        var result: [MapLayout] = []
        for object in objects {
            guard let btf = object.btf() else { continue }
            for (name, map) in object.maps where Dataplane.sharedMaps.contains(name) {
                let keyID = bpf_map__btf_key_type_id(map)
                let valueID = bpf_map__btf_value_type_id(map)
                result.append(MapLayout(
                    object: object.path, map: name,
                    key: keyID == 0 ? nil : TypeLayout(btf: btf, id: keyID),
                    value: valueID == 0 ? nil : TypeLayout(btf: btf, id: valueID),
                    keySize: bpf_map__key_size(map), valueSize: bpf_map__value_size(map)))
            }
        }
        return result
    }
}

/// A map's layout in one object.
public struct MapLayout: Sendable {
    public let object: String
    public let map: String
    public let key: TypeLayout?
    public let value: TypeLayout?
    public let keySize: UInt32
    public let valueSize: UInt32
}

/// A BTF type: its name, size and (for a struct) members' byte offsets.
public struct TypeLayout: Sendable, Equatable {
    public let name: String
    public let size: Int
    public let members: [String: Int]

    init(btf: OpaquePointer, id: UInt32) {
        let resolved = btf__resolve_type(btf, id)
        let typeID = resolved < 0 ? id : UInt32(resolved)
        let t = btf__type_by_id(btf, typeID)!
        name = String(cString: btf__name_by_offset(btf, t.pointee.name_off))
        size = Int(btf__resolve_size(btf, typeID))
        var members: [String: Int] = [:]
        if mz_btf_kind(t) == BTF_KIND_STRUCT {
            for i in 0..<mz_btf_vlen(t) {
                var bits: UInt32 = 0, memberType: UInt32 = 0
                let memberName = String(cString: mz_btf_member(btf, t, i, &bits, &memberType))
                members[memberName] = Int(bits / 8)
            }
        }
        self.members = members
    }

    public init(name: String, size: Int, members: [String: Int]) {
        self.name = name
        self.size = size
        self.members = members
    }
}

extension Dataplane {
    /// libbpf prints warnings (and verifier logs on failure) to stderr
    /// unless quiet.
    public static func setLibbpfQuiet(_ quiet: Bool) { mz_libbpf_quiet(quiet ? 1 : 0) }
}

/// What the programs are built with at load time (their read-only
/// configuration): fixed for the life of a loaded data plane.
public struct DataplaneSettings: Sendable, Equatable {
    /// The TTL of the outer IPv4 header of encapsulated packets.
    public var outerTTL: UInt8 = 64
    /// Learn endpoint -> host entries from bouncers' and dividers' answers,
    /// and send later packets host to host.
    public var directPath = true
    /// XDP only: send a packet back out of its arrival interface as a
    /// redirect rather than XDP_TX (a veth droplet needs it: its peer flushes
    /// XDP_TX frames only if it runs XDP itself).
    public var xdpTxRedirect = false
    /// Network policy: every new flow is judged by the bouncers, and hosts
    /// keep conntrack. Off, every flow inside a VPC is admitted (the
    /// benchmarks' baseline; packet tests of other paths).
    public var policy = false
    /// Flows a host's conntrack holds (an LRU map, allocated whole).
    public var conntrackSize: UInt32 = DataplaneSettings.defaultConntrackSize
    /// 1,048,576: a million flows a host.
    public static let defaultConntrackSize = UInt32(MZ_CT_DEFAULT)
    /// The droplet's ports that egress flows are translated to (nil: this
    /// host translates nothing, and egress is dropped as egress_disabled).
    public var snatPorts: ClosedRange<UInt16>? = DataplaneSettings.defaultSNATPorts
    /// 61000-65535: above Linux's ephemeral ports (32768-60999).
    public static let defaultSNATPorts: ClosedRange<UInt16> = 61000...65535
    /// Egress flows a host holds (two LRU maps of this size).
    public var snatSize: UInt32 = DataplaneSettings.defaultSNATSize
    /// 262,144 flows a host.
    public static let defaultSNATSize = UInt32(MZ_SNAT_DEFAULT)

    public init(outerTTL: UInt8 = 64, directPath: Bool = true, xdpTxRedirect: Bool = false, policy: Bool = false,
                conntrackSize: UInt32 = DataplaneSettings.defaultConntrackSize,
                snatPorts: ClosedRange<UInt16>? = DataplaneSettings.defaultSNATPorts,
                snatSize: UInt32 = DataplaneSettings.defaultSNATSize) {
        self.outerTTL = outerTTL
        self.directPath = directPath
        self.xdpTxRedirect = xdpTxRedirect
        self.policy = policy
        self.conntrackSize = conntrackSize
        self.snatPorts = snatPorts
        self.snatSize = snatSize
    }

    var abi: mz_config {
        mz_config(outer_ttl: outerTTL, direct_path: directPath ? 1 : 0, xdp_tx_redirect: xdpTxRedirect ? 1 : 0,
                  policy: policy ? 1 : 0, snat_first: snatPorts?.lowerBound ?? 0, snat_last: snatPorts?.upperBound ?? 0)
    }
}
