internal import CLibBPF
internal import CMizarABI
import Glibc
import MizarCore
import Synchronization

/// What one run of the explain build made of a packet.
public struct Explained: Sendable, Equatable {
    /// "pass", "tx", "redirect" or "drop".
    public var verdict: String
    /// The drop reason, or "".
    public var reason: String
    /// Counters the run moved, by name, in the counters' order (the
    /// program's own verdict counter left out): the path taken.
    public var path: [String]
    /// Redirected or sent back out: the interface.
    public var targetIfindex: UInt32
    /// Into a local endpoint (behind targetIfindex).
    public var intoEndpoint: Bool
    /// The outer destination after encapsulation or a bounce.
    public var nextHop: IPv4Address?
    public var vni: UInt32
    /// The packet as it leaves.
    public var frame: [UInt8]
}

/// The data plane's logic built to explain (bpf/lib/common.h, MZ_EXPLAIN):
/// the transit and agent programs over this data plane's own tables,
/// reading them and writing none (nothing learned, admitted, translated,
/// counted or traced), run on a packet with BPF_PROG_TEST_RUN. What the
/// packet would do here, decided by the same code that forwards it. Runs
/// are one at a time (each program's record is one entry).
public final class Explainer: @unchecked Sendable {
    // @unchecked: the objects are only used under `lock`.
    public enum Program: String, Sendable { case transit, agent }

    private let objects: [Program: (object: BPFObject, program: BPFProgram, record: Int32)]
    private let cpus: Int
    private let lock = Mutex(())

    /// Loads `transit.explain.xdp.o` and `agent.explain.xdp.o` from
    /// `objectDirectory` over `dataplane`'s maps, with its settings.
    public init(dataplane: Dataplane, objectDirectory: String) throws(SystemError) {
        cpus = Int(try SystemError.check(libbpf_num_possible_cpus(), "libbpf_num_possible_cpus"))
        var loaded: [Program: (BPFObject, BPFProgram, Int32)] = [:]
        for p in [Program.transit, .agent] {
            let object = try BPFObject(path: "\(objectDirectory)/\(p.rawValue).explain.xdp.o")
            try Dataplane.prepare(object, settings: dataplane.settings, shared: dataplane.sharedFDs, pinDirectory: nil)
            try object.load()
            guard let record = object.maps.first(where: { $0.name == "mz_explain" }) else {
                throw SystemError(call: "find map", subject: "mz_explain", errno: ENOENT)
            }
            let fd = try SystemError.check(bpf_map__fd(record.map), "bpf_map__fd", "mz_explain")
            loaded[p] = (object, try object.program(named: "mz_\(p.rawValue)", hook: .xdp), fd)
        }
        objects = loaded.mapValues { (object: $0.0, program: $0.1, record: $0.2) }
    }

    /// Runs `frame` through `program` as if it arrived on `ifindex`.
    public func explain(_ frame: [UInt8], program: Program, ifindex: UInt32) throws(SystemError) -> Explained {
        guard let o = objects[program] else { throw SystemError(call: "explain", subject: program.rawValue, errno: ENOENT) }
        return try lock.withLock { _ throws(SystemError) -> Explained in
            let stride = (MemoryLayout<mz_explain>.size + 7) & ~7
            var zero: UInt32 = 0
            let zeros = [UInt8](repeating: 0, count: stride * cpus)
            try SystemError.check(zeros.withUnsafeBytes { bpf_map_update_elem(o.record, &zero, $0.baseAddress!, UInt64(BPF_ANY)) },
                                  "bpf_map_update_elem", "mz_explain")
            let run = try o.program.testRun(frame, ifindex: ifindex)
            guard let records: [mz_explain] = try lookupPerCPU(fd: o.record, name: "mz_explain", key: zero, cpus: cpus),
                  var r = records.first(where: { $0.verdict != 0 }) else {
                throw SystemError(call: "explain", subject: "the program recorded no verdict", errno: EIO)
            }
            let names = CounterID.all
            let verdictCounters: Set<UInt32> = [UInt32(MZ_CNT_TRANSIT_PASS.rawValue), UInt32(MZ_CNT_TRANSIT_DROP.rawValue),
                                                UInt32(MZ_CNT_TRANSIT_TX.rawValue), UInt32(MZ_CNT_TRANSIT_REDIRECT.rawValue),
                                                UInt32(MZ_CNT_AGENT_PASS.rawValue), UInt32(MZ_CNT_AGENT_DROP.rawValue),
                                                UInt32(MZ_CNT_AGENT_TX.rawValue), UInt32(MZ_CNT_AGENT_REDIRECT.rawValue)]
            let counts: [UInt32] = withUnsafeBytes(of: &r.counts) { Array($0.bindMemory(to: UInt32.self)) }
            let path = names.filter { !verdictCounters.contains($0.id) && Int($0.id) < counts.count && counts[Int($0.id)] > 0 }.map(\.name)
            let verdict: String = switch r.verdict {
            case MZ_V_PASS.rawValue: "pass"
            case MZ_V_TX.rawValue: "tx"
            case MZ_V_REDIRECT.rawValue: "redirect"
            default: "drop"
            }
            return Explained(verdict: verdict, reason: r.reason == 0 ? "" : DropReason.name(r.reason), path: path,
                             targetIfindex: r.target_ifindex, intoEndpoint: r.into_endpoint != 0,
                             nextHop: r.next_hop == 0 ? nil : IPv4Address(networkOrder: r.next_hop), vni: r.vni, frame: run.output)
        }
    }
}
