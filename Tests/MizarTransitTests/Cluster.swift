import CMizarABI
import GRPCCore
import Glibc
import MizarCore
import MizarRPC
import MizarTestbed
import MizarTransit
import Testing

/// One simulated cluster for the whole suite: 3 hosts, each with its own
/// transitd, programmed through their gRPC APIs the way the management
/// plane will. VPC A (VNI 100) and VPC B (VNI 200) use the very same CIDRs.
final class Cluster: Sendable {
    static let shared: Result<Cluster, TestbedError> = {
        do { return .success(try Cluster()) } catch let e as TestbedError { return .failure(e) } catch {
            return .failure(TestbedError("\(error)"))
        }
    }()

    static func get() throws -> Cluster { try shared.get() }

    let bed: Testbed
    let options: Testbed.Options

    static let vniA: UInt32 = 100, vniB: UInt32 = 200, vniC: UInt32 = 300
    static let s1 = "10.0.1.0/24", s2 = "10.0.2.0/24"

    init() throws {
        var exe = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &exe, exe.count - 1)
        let path = String(decoding: exe.prefix(max(0, n)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let binDir = String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)])
        let cwd = String(cString: getcwd(nil, 0))
        options = Testbed.Options(transitd: "\(binDir)/transitd", objects: "\(cwd)/build/bpf")
        let name = "mzt\(getpid() % 100000)"
        Testbed.down(name: name)
        bed = try Testbed.up(name: name, options: options)
        if getenv("MIZAR_KEEP_TESTBED") == nil {
            atexit { if case .success(let c) = Cluster.shared { c.bed.down() } }
        }
    }

    func host(_ i: Int) -> Testbed.Host { bed.hosts[i - 1] }

    func hostMessage(_ i: Int) -> Mizar_Transit_V1_Host {
        var h = Mizar_Transit_V1_Host()
        h.ip = "\(host(i).ip)"
        h.mac = "\(host(i).mac)"
        return h
    }

    func client<R: Sendable>(_ i: Int, _ body: (TransitClient) async throws -> R) async throws -> R {
        try await withTransitClient(.unix(host(i).socket), body)
    }

    // MARK: Provisioning, as the operator will do it

    /// The VPC on every host; `dividers` divide for it.
    func putVPC(_ vni: UInt32, dividers: [Int]) async throws {
        for i in 1...bed.hosts.count {
            var v = Mizar_Transit_V1_VPC()
            v.vni = vni
            v.dividers = dividers.map(hostMessage)
            v.isDivider = dividers.contains(i)
            _ = try await client(i) { try await $0.putVPC(v) }
        }
    }

    func putSubnet(_ vni: UInt32, _ cidr: String, bouncers: [Int]) async throws {
        for i in 1...bed.hosts.count {
            var s = Mizar_Transit_V1_Subnet()
            s.vni = vni
            s.cidr = cidr
            s.bouncers = bouncers.map(hostMessage)
            s.isBouncer = bouncers.contains(i)
            _ = try await client(i) { try await $0.putSubnet(s) }
        }
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
        let mac = mac ?? "\(MACAddress(0x0a, 0x58, UInt8(vni & 0xff), 0, addr.bytes[2], addr.bytes[3]))"
        var e = Mizar_Transit_V1_EndpointInterface()
        e.vni = vni
        e.ip = ip
        e.mac = mac
        e.subnet = subnet
        e.netns = netns
        _ = try await client(i) { try await $0.createEndpointInterface(e) }
        for b in bouncers {
            var entry = Mizar_Transit_V1_Endpoint()
            entry.vni = vni
            entry.ip = ip
            entry.mac = mac
            entry.subnet = subnet
            entry.host = hostMessage(i)
            _ = try await client(b) { try await $0.putEndpoint(entry) }
        }
        return Endpoint(name: name, vni: vni, ip: addr, mac: mac, subnet: subnet, host: i, netns: netns)
    }

    func removeEndpoint(_ e: Endpoint, bouncers: [Int]) async throws {
        var key = Mizar_Transit_V1_EndpointKey()
        key.vni = e.vni
        key.ip = "\(e.ip)"
        _ = try await client(e.host) { try await $0.deleteEndpointInterface(key) }
        for b in bouncers { _ = try await client(b) { try await $0.deleteEndpoint(key) } }
    }

    // MARK: Observing

    func counters(_ i: Int) async throws -> [String: UInt64] {
        let c = try await client(i) { try await $0.getCounters(.init()) }
        var result: [String: UInt64] = [:]
        for x in c.counters { result[x.name] = x.packets }
        for x in c.drops { result["drop." + x.name] = x.packets }
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
