import Glibc
import MizarCore
import MizarSystem
import MizarTestbed
import Testing

@Suite("testbed lifecycle", .serialized)
struct TestbedTests {
    static func binary(_ name: String) -> String { siblingExecutable(name) }

    @Test("testbed up refuses with a clear message when not run as root")
    func refusesNonRoot() {
        let r = runCapturing(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              Self.binary("mizar-testbed"), "up", "--name", "mzn\(getpid() % 1000)", "--hosts", "1"])
        #expect(r.status != 0)
        #expect(r.output.contains("needs root"), "\(r.output)")
    }

    @Test("testbed down removes everything it made, and leftovers of a crash by prefix")
    func downCleansUp() async throws {
        let name = "mzd\(getpid() % 10000)"
        let cwd = String(cString: getcwd(nil, 0))
        var options = Testbed.Options(transitd: Self.binary("transitd"), objects: "\(cwd)/build/bpf")
        options.hosts = 1
        // (Seconds of blocking work: off the concurrency pool.)
        let made = options
        let bed = try await onOwnThread { try Testbed.up(name: name, options: made) }
        let pid = try #require(bed.pid(of: bed.hosts[0]))
        // What a crash mid-way would leave: a namespace with the prefix and no record of it.
        try NetworkNamespace.create(path: "/run/netns/\(name)-h9")
        let removed = try await onOwnThread { Testbed.down(name: name) }
        #expect(removed.contains("netns \(name)-h9"))
        #expect(kill(pid, 0) != 0, "transitd \(pid) still runs")
        #expect(listDirectory("/run/netns").filter { $0.hasPrefix("\(name)-") }.isEmpty)
        #expect(access("\(Testbed.pinRoot)/\(name)", F_OK) != 0)
        #expect(access("\(Testbed.runRoot)/\(name)", F_OK) != 0)
        #expect(try await onOwnThread { Testbed.down(name: name) }.isEmpty, "a second down found something left")
    }
}
