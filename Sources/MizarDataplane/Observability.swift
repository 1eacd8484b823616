internal import CLibBPF
internal import CMizarABI
import Glibc
import MizarCore

/// Packets and bytes, summed over CPUs.
public struct CounterValue: Equatable, Sendable {
    public var packets: UInt64
    public var bytes: UInt64
    public static let zero = CounterValue(packets: 0, bytes: 0)
}

public enum DropReason {
    /// Every drop reason's number and the name the CLI and metrics show.
    public static var all: [(reason: UInt32, name: String)] {
        (1..<UInt32(MZ_DROP__MAX.rawValue)).map { ($0, String(cString: mz_drop_name($0))) }
    }

    public static func name(_ reason: UInt32) -> String {
        mz_drop_name(reason).map { String(cString: $0) } ?? "unknown(\(reason))"
    }
}

public enum CounterID {
    public static var all: [(id: UInt32, name: String)] {
        (0..<UInt32(MZ_CNT__MAX.rawValue)).map { ($0, String(cString: mz_counter_name($0))) }
    }
}

extension Dataplane {
    private static func sum(_ values: [mz_counter]) -> CounterValue {
        values.reduce(.zero) { CounterValue(packets: $0.packets + $1.packets, bytes: $0.bytes + $1.bytes) }
    }

    /// Every counter by name.
    public func counterValues() throws(SystemError) -> [String: CounterValue] {
        var result: [String: CounterValue] = [:]
        for (id, name) in CounterID.all { result[name] = Dataplane.sum(try counters.values(at: id)) }
        return result
    }

    /// Trace events the full events ring could not take, in all.
    public func traceLost() throws(SystemError) -> UInt64 {
        try counters.values(at: UInt32(MZ_CNT_TRACE_LOST.rawValue)).reduce(0) { $0 + $1.packets }
    }

    /// Drops by reason name.
    public func dropValues() throws(SystemError) -> [String: CounterValue] {
        var result: [String: CounterValue] = [:]
        for (reason, name) in DropReason.all { result[name] = Dataplane.sum(try drops.values(at: reason)) }
        return result
    }
}

/// How full one of the data plane's tables is.
public struct MapPressure: Sendable, Equatable {
    public var map: String
    public var entries: Int
    public var capacity: Int
}

extension Dataplane {
    /// The hash tables whose fill matters (learned, admitted and translated
    /// flows, endpoints, services): entries now and capacity. Counted in
    /// batches of a thousand entries per syscall (small batches for the
    /// services' big values).
    public func mapPressure() throws(SystemError) -> [MapPressure] {
        let maps: [(String, Int32)] = [
            ("mz_droplets", droplets.fd), ("mz_vpcs", vpcs.fd), ("mz_endpoints", endpoints.fd), ("mz_local", local.fd),
            ("mz_ifaces", ifaces.fd), ("mz_hostcache", hostCache.fd), ("mz_services", services.fd), ("mz_nat", nat.fd),
            ("mz_svc_clients", serviceClients.fd), ("mz_pol_eps", policyEndpoints.fd), ("mz_pol_sets", policySets.fd),
            ("mz_ct", conntrack.fd), ("mz_snat_out", snatOut.fd), ("mz_snat_in", snatIn.fd), ("mz_published", published.fd),
            ("mz_pub_flows", publishedFlows.fd), ("mz_pub_back", publishedBack.fd),
        ]
        var result: [MapPressure] = []
        for (name, fd) in maps {
            let entries = try SystemError.check64(mz_map_count(fd), "bpf_map_lookup_batch", name)
            let capacity = try SystemError.check64(mz_map_capacity(fd), "bpf_obj_get_info_by_fd", name)
            result.append(MapPressure(map: name, entries: Int(entries), capacity: Int(capacity)))
        }
        return result
    }
}

/// Reads the trace events the programs emit (mz_knobs.trace says which).
/// One thread reads at a time (transitd's flow events reader).
public final class EventReader: @unchecked Sendable {
    private let rb: OpaquePointer

    public init(_ dataplane: Dataplane) throws(SystemError) {
        rb = try SystemError.check(mz_ringbuf_open(dataplane.eventsFD, MemoryLayout<mz_event>.size), "ring_buffer__new", "mz_events")
    }

    deinit { mz_ringbuf_close(rb) }

    /// The events queued now, oldest first.
    func drain(max: Int = 4096) throws(SystemError) -> [mz_event] {
        var out = [mz_event](repeating: mz_event(), count: max)
        let n = out.withUnsafeMutableBytes { mz_ringbuf_read(rb, $0.baseAddress, Int32(max)) }
        try SystemError.check(n, "ring_buffer__consume", "mz_events")
        return Array(out.prefix(Int(n)))
    }

    /// Up to `max` events queued now, oldest first.
    public func read(max: Int = 4096) throws(SystemError) -> [TraceEvent] {
        try drain(max: max).map(TraceEvent.init)
    }

    /// Blocks up to `milliseconds` until there are events to read.
    public func wait(milliseconds: Int32) throws(SystemError) -> Bool {
        let r = mz_ringbuf_wait(rb, milliseconds)
        if r == -EINTR { return false }
        try SystemError.check(r, "poll", "mz_events")
        return r > 0
    }
}

/// One event of the programs, decoded: what happened to one packet.
public struct TraceEvent: Sendable, Equatable {
    /// CLOCK_MONOTONIC, as the programs read it.
    public var monotonicNs: UInt64
    public var vni: UInt32
    public var ifindex: UInt32
    public var targetIfindex: UInt32
    public var verdict: String
    /// The drop reason's name, or "" when not dropped.
    public var reason: String
    public var program: String
    public var hook: String
    public var length: UInt16
    public var src: IPv4Address
    public var dst: IPv4Address
    public var nextHop: IPv4Address?
    /// IP protocol number, 0 when not known (ARP, a later fragment).
    public var proto: UInt8
    /// TCP/UDP ports; ICMP: type << 8 | code, and the echo identifier.
    public var sport: UInt16
    public var dport: UInt16
    public var tcpFlags: UInt8

    init(_ e: mz_event) {
        monotonicNs = e.ts_ns
        vni = e.vni
        ifindex = e.ifindex
        targetIfindex = e.target_ifindex
        switch UInt32(e.verdict) {
        case MZ_V_PASS.rawValue: verdict = "pass"
        case MZ_V_TX.rawValue: verdict = "tx"
        case MZ_V_REDIRECT.rawValue: verdict = "redirect"
        default: verdict = "drop"
        }
        reason = e.reason == 0 ? "" : DropReason.name(UInt32(e.reason))
        program = UInt32(e.program) == MZ_PROG_AGENT.rawValue ? "agent" : "transit"
        hook = UInt32(e.hook) == MZ_HOOK_ID_XDP.rawValue ? "xdp" : "tc"
        length = e.length
        src = IPv4Address(networkOrder: e.inner_src)
        dst = IPv4Address(networkOrder: e.inner_dst)
        nextHop = e.next_hop == 0 ? nil : IPv4Address(networkOrder: e.next_hop)
        proto = e.proto
        sport = UInt16(bigEndian: e.sport)
        dport = UInt16(bigEndian: e.dport)
        tcpFlags = e.tcp_flags
    }
}

/// A VPC's packets on this host, by outcome.
public struct VPCCounters: Sendable, Equatable {
    public var vni: VNI
    public var forwarded: CounterValue
    public var dropped: CounterValue
}

extension Dataplane {
    /// Every VPC's packets here (those the table holds counters for).
    public func vpcCounters() throws(SystemError) -> [VPCCounters] {
        var result: [VPCCounters] = []
        for k in try vpcStats.keys() {
            guard let values = try vpcStats.values(k), let vni = try? VNI(k) else { continue }
            result.append(VPCCounters(vni: vni, forwarded: Dataplane.sum(values.map(\.forwarded)), dropped: Dataplane.sum(values.map(\.dropped))))
        }
        return result.sorted { $0.vni.value < $1.vni.value }
    }
}
