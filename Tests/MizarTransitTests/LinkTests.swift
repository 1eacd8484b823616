import Foundation
import Glibc
import MizarCore
import MizarSystem
import MizarTestbed
import Testing

/// The callers of transitd (the operator, mizarctl, the CNI plugin) are
/// built apart from the data plane: they link neither libbpf nor the C
/// shims over libbpf and netlink. transitd links both, which shows the
/// check finds what it looks for.
@Suite("what each executable links")
struct LinkTests {
    /// The functions a C shim declares in its header.
    static func shimFunctions(_ header: String) throws -> Set<String> {
        let text = try String(contentsOfFile: header, encoding: .utf8)
        var names = Set<String>()
        var rest = Substring(text)
        while let r = rest.range(of: "mz_") {
            let name = rest[r.lowerBound...].prefix { $0.isLetter || $0.isNumber || $0 == "_" }
            rest = rest[name.endIndex...]
            if rest.first == "(" { names.insert(String(name)) }
        }
        return names
    }

    /// Libraries the executable needs at run time, and the functions it defines.
    static func linked(_ executable: String) -> (needed: String, defined: Set<String>) {
        let path = siblingExecutable(executable)
        let needed = runCapturing(["readelf", "-d", path]).output
        let symbols = runCapturing(["nm", "--defined-only", path]).output
        let defined = Set(symbols.split(separator: "\n").compactMap { $0.split(separator: " ").last.map(String.init) })
        return (needed, defined)
    }

    static let libbpfShim = "Sources/CLibBPF/include/clibbpf.h"
    static let netlinkShim = "Sources/CNetlink/include/cnetlink.h"

    @Test("mizar-operator, mizarctl and mizar-cni link neither libbpf nor the netlink shim", arguments: ["mizar-operator", "mizarctl", "mizar-cni"])
    func callersAreApart(_ executable: String) async throws {
        let bpf = try Self.shimFunctions(Self.libbpfShim), netlink = try Self.shimFunctions(Self.netlinkShim)
        #expect(bpf.count > 5 && netlink.count > 5, "the shims' headers declare their functions")
        // (readelf and nm on a large binary: off the concurrency pool.)
        let (needed, defined) = try await onOwnThread { Self.linked(executable) }
        #expect(needed.contains("NEEDED"), "readelf read \(executable)")
        #expect(!needed.contains("libbpf"), "\(executable) needs libbpf:\n\(needed)")
        #expect(defined.intersection(bpf).isEmpty, "\(executable) carries the libbpf shim: \(defined.intersection(bpf).sorted())")
        #expect(defined.intersection(netlink).isEmpty, "\(executable) carries the netlink shim: \(defined.intersection(netlink).sorted())")
    }

    @Test("transitd links both, so the check above can fail")
    func daemonLinksBoth() async throws {
        let (needed, defined) = try await onOwnThread { Self.linked("transitd") }
        #expect(needed.contains("libbpf"))
        #expect(!defined.intersection(try Self.shimFunctions(Self.libbpfShim)).isEmpty)
        #expect(!defined.intersection(try Self.shimFunctions(Self.netlinkShim)).isEmpty)
    }
}
