import CMizarABI
import Glibc
import MizarCore
@testable import MizarDataplane
import MizarPacket
import MizarTestbed
import Testing

/// Where `make bpf` puts the objects; MIZAR_BPF_DIR overrides.
let bpfDirectory: String = {
    if let dir = getenv("MIZAR_BPF_DIR") { return String(cString: dir) }
    let file = #filePath
    var parts = file.split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3) // Tests/MizarDataplaneTests/Environment.swift
    return parts.joined(separator: "/") + "/build/bpf"
}()


/// Interfaces the tests create: a droplet and three endpoint host-side ends.
/// BPF_PROG_TEST_RUN needs real ifindexes for an arrival interface. They are
/// veth pairs (these kernels have no dummy driver) with a per-run prefix; `make test` runs the suite in a network
/// namespace of its own, and they are removed at exit regardless.
nonisolated(unsafe) private var createdInterfaces: [String] = []

struct Interfaces {
    let droplet: UInt32
    let a: UInt32
    let b: UInt32
    let c: UInt32

    static func create(_ tag: String = "") throws -> Interfaces {
        let prefix = "mzt\(tag)\(getpid() % 100000)"
        func make(_ suffix: String) throws -> UInt32 {
            let name = prefix + suffix
            let ifindex = try createVethPair(name)
            createdInterfaces.append(name)
            return ifindex
        }
        atexit {
            for name in createdInterfaces { runCommand(["ip", "link", "del", name]) }
        }
        return Interfaces(droplet: try make("d"), a: try make("a"), b: try make("b"), c: try make("c"))
    }
}

/// One loaded data plane shared by every BPF test; the suites using it are
/// serialised (see DataplaneTests).
final class TestEnvironment: @unchecked Sendable {
    let dataplane: Dataplane
    let events: EventReader
    let ifs: Interfaces

    private static let shared: Result<TestEnvironment, any Error> = Result {
        Dataplane.setLibbpfQuiet(false)
        let ifs = try Interfaces.create()
        let dp = try Dataplane(objectDirectory: bpfDirectory)
        return TestEnvironment(dataplane: dp, events: try EventReader(dp), ifs: ifs)
    }

    /// Another data plane, with network policy on (and a small conntrack).
    private static let sharedPolicy: Result<TestEnvironment, any Error> = Result {
        Dataplane.setLibbpfQuiet(false)
        let ifs = try Interfaces.create("p")
        let dp = try Dataplane(objectDirectory: bpfDirectory, settings: DataplaneSettings(policy: true, conntrackSize: 4096))
        return TestEnvironment(dataplane: dp, events: try EventReader(dp), ifs: ifs)
    }

    private init(dataplane: Dataplane, events: EventReader, ifs: Interfaces) {
        self.dataplane = dataplane
        self.events = events
        self.ifs = ifs
    }

    static func get(policy: Bool = false) throws -> TestEnvironment { try (policy ? sharedPolicy : shared).get() }

    /// Clean tables, zero counters, every packet traced.
    func reset() throws {
        try dataplane.reset()
        while try !events.drain().isEmpty {}
        try dataplane.setTrace(UInt32(MZ_TRACE_ALL))
    }
}

struct SetupError: Error, CustomStringConvertible {
    let what: String
    var description: String { what }
}
