internal import CLibBPF
internal import CMizarABI
import Glibc
import MizarCore

/// The hook a program is built for and attached to.
public enum Hook: String, CaseIterable, Sendable {
    case xdp, tc
}

/// A loaded BPF program.
public struct BPFProgram: Sendable {
    public let name: String
    public let hook: Hook
    public let fd: Int32
}

/// An opened (and then loaded) BPF object file. Closing it closes its
/// programs; maps live on while another object or a pin holds them.
final class BPFObject {
    let path: String
    let pointer: OpaquePointer

    init(path: String) throws(SystemError) {
        self.path = path
        pointer = try SystemError.check(bpf_object__open_file(path, nil), "bpf_object__open_file", path)
    }

    deinit { bpf_object__close(pointer) }

    var maps: [(name: String, map: OpaquePointer)] {
        var result: [(String, OpaquePointer)] = []
        var map = bpf_object__next_map(pointer, nil)
        while let m = map {
            result.append((String(cString: bpf_map__name(m)), m))
            map = bpf_object__next_map(pointer, m)
        }
        return result
    }

    func load() throws(SystemError) {
        try SystemError.check(bpf_object__load(pointer), "bpf_object__load", path)
    }

    func program(named name: String, hook: Hook) throws(SystemError) -> BPFProgram {
        let prog = try SystemError.check(bpf_object__find_program_by_name(pointer, name), "bpf_object__find_program_by_name", name)
        let fd = try SystemError.check(bpf_program__fd(prog), "bpf_program__fd", name)
        return BPFProgram(name: name, hook: hook, fd: fd)
    }

    /// The BTF type ids of a map's key and value, for the layout check.
    func btf() -> OpaquePointer? { bpf_object__btf(pointer) }
}

/// What a BPF_PROG_TEST_RUN returned.
public struct TestRunResult: Sendable {
    public let retval: UInt32
    public let output: [UInt8]
    public let durationNs: UInt32
}

extension BPFProgram {
    /// Runs the program on one packet, as if it arrived on `ifindex`.
    public func testRun(_ packet: [UInt8], ifindex: UInt32, repeat count: UInt32 = 1) throws(SystemError) -> TestRunResult {
        var output = [UInt8](repeating: 0, count: packet.count + 512)
        var outSize = UInt32(output.count)
        var retval: UInt32 = 0
        var duration: UInt32 = 0
        let r = packet.withUnsafeBytes { input in
            output.withUnsafeMutableBytes { out in
                mz_prog_test_run(fd, hook == .xdp ? 1 : 0, ifindex, input.baseAddress, UInt32(input.count),
                                 out.baseAddress, &outSize, count, &retval, &duration)
            }
        }
        try SystemError.check(r, "bpf_prog_test_run_opts", name)
        return TestRunResult(retval: retval, output: Array(output.prefix(Int(outSize))), durationNs: duration)
    }
}

/// A program loaded on its own from an object file, with no shared maps:
/// the benchmarks' baselines.
public final class StandaloneProgram: @unchecked Sendable {
    // @unchecked: immutable after init.
    public let program: BPFProgram
    private let object: BPFObject

    public init(path: String, name: String, hook: Hook) throws(SystemError) {
        object = try BPFObject(path: path)
        try object.load()
        program = try object.program(named: name, hook: hook)
    }
}
