import Glibc

/// Runs a command to completion and returns its exit status (-1 if it could
/// not be started). For set-up in tests, benchmarks and the testbed; the
/// daemon itself talks netlink instead.
@discardableResult
public func runCommand(_ argv: [String]) -> Int32 {
    var pid: pid_t = 0
    let cArgs = argv.map { strdup($0) } + [nil]
    defer { cArgs.forEach { free($0) } }
    guard posix_spawnp(&pid, argv[0], nil, nil, cArgs, environ) == 0 else { return -1 }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return (status >> 8) & 0xff
}

public struct CommandError: Error, CustomStringConvertible, Sendable {
    public let description: String
}

/// Creates a veth pair `name`/`name`p, brings `name` up and returns its
/// ifindex. BPF_PROG_TEST_RUN needs a real interface to arrive on.
public func createVethPair(_ name: String) throws(CommandError) -> UInt32 {
    guard runCommand(["ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"]) == 0,
          runCommand(["ip", "link", "set", name, "up"]) == 0 else {
        throw CommandError(description: "ip link add \(name) type veth failed (this needs root)")
    }
    return if_nametoindex(name)
}
