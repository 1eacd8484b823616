import GRPCCore
import Glibc
import MizarCore
import MizarRPC
import MizarTestbed
import MizarTransit
import MizarTransitClient
import Synchronization
import Testing

/// The testbeds the suite brought up, taken down at exit.
private let clusterBeds = Mutex<[Testbed]>([])

/// One simulated cluster for the whole suite: 3 hosts, each with its own
/// transitd, programmed through their gRPC APIs the way the management
/// plane will. VPC A (VNI 100) and VPC B (VNI 200) use the very same CIDRs.
final class Cluster: Sendable {
    /// Brought up on a thread of its own (seconds of blocking work: the
    /// tests waiting for it do not hold the concurrency pool meanwhile).
    static let shared = Task { try await onOwnThread { try Cluster() } }

    /// Another, made only when a test asks for it: transitds with network
    /// policy off (no judgment, no conntrack), where dividers carry every
    /// first packet between subnets.
    static let unjudged = Task { try await onOwnThread { try Cluster(prefix: "mzu", extraArguments: ["--no-policy"], underlayNet: 7) } }

    static func get(policy: Bool = true) async throws -> Cluster { try await (policy ? shared : unjudged).value }

    let bed: Testbed
    let options: Testbed.Options

    static let vniA: UInt32 = 100, vniB: UInt32 = 200, vniC: UInt32 = 300
    static let s1 = "10.0.1.0/24", s2 = "10.0.2.0/24"

    init(prefix: String = "mzt", extraArguments: [String] = [], underlayNet: UInt8 = 0) throws {
        var options = Testbed.Options.besideThisExecutable()
        options.extraArguments += extraArguments
        options.underlayNet = underlayNet
        self.options = options
        let name = "\(prefix)\(getpid() % 100000)"
        Testbed.down(name: name)
        bed = try Testbed.up(name: name, options: options)
        if getenv("MIZAR_KEEP_TESTBED") == nil {
            let first = clusterBeds.withLock { beds in
                defer { beds.append(bed) }
                return beds.isEmpty
            }
            if first { atexit { for bed in clusterBeds.withLock({ $0 }) { bed.down() } } }
        }
    }

    func host(_ i: Int) -> Testbed.Host { bed.hosts[i - 1] }

    func hostMessage(_ i: Int) -> Mizar_Transit_V1_Host { .init(host(i).peer.address) }

    func client<R: Sendable>(_ i: Int, _ body: (TransitClient) async throws -> R) async throws -> R {
        try await withTransitClient(.unix(host(i).socket), body)
    }

    // MARK: Provisioning, as the operator will do it

    /// The VPC on every host; `dividers` divide for it.
    func putVPC(_ vni: UInt32, dividers: [Int]) async throws {
        try await Provisioning.putVPC(vni: try VNI(vni), dividers: dividers.map { host($0).peer }, on: bed.hosts.map(\.peer))
    }

    func putSubnet(_ vni: UInt32, _ cidr: String, bouncers: [Int]) async throws {
        try await Provisioning.putSubnet(vni: try VNI(vni), cidr: try CIDR(parsing: cidr), bouncers: bouncers.map { host($0).peer }, on: bed.hosts.map(\.peer))
    }

    struct Endpoint: Sendable {
        let name: String
        let vni: UInt32
        let ip: IPv4Address
        let mac: String
        let subnet: String
        let host: Int
        let netns: String
    }

    /// Exactly the calls the design allows: one to the endpoint's host, one
    /// to each bouncer of its subnet.
    @discardableResult
    func addEndpoint(_ name: String, vni: UInt32, ip: String, subnet: String, host i: Int, bouncers: [Int],
                     mac: String? = nil) async throws -> Endpoint {
        let netns = bed.endpointNetns(name)
        if access(netns, F_OK) != 0 { _ = try bed.addEndpointNetns(name) }
        let addr = try IPv4Address(parsing: ip)
        let mac = try mac.map { try MACAddress(parsing: $0) } ?? MACAddress.derived(vni: try VNI(vni), ip: addr)
        try await Provisioning.addEndpoint(vni: try VNI(vni), ip: addr, mac: mac, subnet: try CIDR(parsing: subnet), netns: netns,
                                           on: host(i).peer, bouncers: bouncers.map { host($0).peer })
        return Endpoint(name: name, vni: vni, ip: addr, mac: "\(mac)", subnet: subnet, host: i, netns: netns)
    }

    func removeEndpoint(_ e: Endpoint, bouncers: [Int]) async throws {
        try await Provisioning.removeEndpoint(vni: try VNI(e.vni), ip: e.ip, on: host(e.host).peer, bouncers: bouncers.map { host($0).peer })
    }

    // MARK: Observing

    func counters(_ i: Int) async throws -> [String: UInt64] {
        try await counterValues(i).mapValues(\.packets)
    }

    func counterValues(_ i: Int) async throws -> [String: (packets: UInt64, bytes: UInt64)] {
        let c = try await client(i) { try await $0.getCounters(.init()) }
        var result: [String: (packets: UInt64, bytes: UInt64)] = [:]
        for x in c.counters { result[x.name] = (x.packets, x.bytes) }
        for x in c.drops { result["drop." + x.name] = (x.packets, x.bytes) }
        return result
    }

    /// Every packet the transit program of host i has seen.
    func transitPackets(_ i: Int) async throws -> UInt64 {
        let c = try await counters(i)
        return ["transit_pass", "transit_drop", "transit_tx", "transit_redirect"].reduce(0) { $0 + (c[$1] ?? 0) }
    }

    /// Every table of a host, as text, for before/after comparisons.
    func tables(_ i: Int) async throws -> String {
        try await client(i) { c in
            let all = Mizar_Transit_V1_ListRequest()
            return [try await c.listVPCs(all).textFormatString(), try await c.listSubnets(all).textFormatString(),
                    try await c.listEndpoints(all).textFormatString(), try await c.listEndpointInterfaces(all).textFormatString()]
                .joined(separator: "\n---\n")
        }
    }
}
