import CNetlink
import Glibc
import MizarCore
import MizarPKI
import MizarSystem
import MizarTLS
import MizarTransitClient

/// A simulated cluster on one machine, the way kind does it for Kubernetes:
/// an underlay namespace with a bridge, N host namespaces each with a
/// droplet veth on that bridge and its own transitd, and endpoint
/// namespaces made on demand. Everything it creates carries its name as a
/// prefix, so `down` finds and removes it even after a crash.
public struct Testbed: Sendable {
    public struct Host: Sendable, Equatable {
        public let index: Int
        public let name: String
        public let netns: String
        public let ip: IPv4Address
        public let mac: MACAddress
        public let socket: String
        public let pinDirectory: String
        public let stateDirectory: String
        public let log: String
        /// Where its transitd serves the CNI plugin.
        public var cniSocket: String { "\(stateDirectory)/cni.sock" }
    }

    public struct Options: Sendable {
        public var hosts = 3
        public var transitd: String
        public var objects: String
        public var transitHook = "auto"
        public var agentHook = "tc"
        public var mtu: UInt32 = 1500
        public var extraArguments: [String] = []
        /// Each simulated host's conntrack room. transitd's own default
        /// (1,048,576 flows, about 100 MB allocated and cleared at start) is
        /// a real host's; dozens of simulated hosts on one machine take less.
        public var conntrackSize = 65_536
        /// Each simulated host's SNAT room (transitd's default: 262,144 flows).
        public var snatSize = 16_384
        /// A management port: a veth from the underlay bridge into the
        /// namespace that calls `up`, with the testbed's managementIP, so that an
        /// etcd and an operator there reach every host's transitd over TCP
        /// and the transitds reach etcd, as on a real management network.
        public var management = false
        /// The underlay is 172.30.NET.0/24: testbeds whose management ports
        /// share a namespace need different ones.
        public var underlayNet: UInt8 = 0
        /// etcd (HOST:PORT, usually on the management IP) and key root for
        /// the transitds to register their droplets in, as TESTBED-hN.
        public var etcd: String?
        public var etcdRoot = "/mizar/v1/"
        /// The transitds' lease TTLs (--lease-ttl, --role-lease-ttl):
        /// testbed hosts are killed on purpose and their leaves awaited,
        /// so both are short by default.
        public var leaseTTL: Int64 = 3
        public var roleLeaseTTL: Int64 = 3

        public init(transitd: String, objects: String) {
            self.transitd = transitd
            self.objects = objects
        }
    }

    public let name: String
    public let hosts: [Host]
    /// The third byte of the underlay's 172.30.NET.0/24.
    public let underlayNet: UInt8

    public static let netnsDirectory = "/run/netns"
    public static let runRoot = "/run/mizar-testbed"
    public static let pinRoot = "/sys/fs/bpf/mizar-testbed"

    public var runDirectory: String { "\(Self.runRoot)/\(name)" }
    /// The testbed's own PKI (`mizarctl pki`'s layout): a CA, the
    /// operator's and the administrator's certificates, and one per host.
    public var pkiDirectory: String { "\(runDirectory)/pki" }
    /// Every host of the testbed, as each transitd's first droplet table.
    public var dropletTable: String { "\(runDirectory)/droplets" }
    /// What the operator (or mizarctl) dials transitds with.
    public var operatorTLS: TLSFiles { TLSFiles(pkiDirectory: pkiDirectory, stem: "operator") }
    /// The droplet name a host's transitd registers as.
    public func dropletName(_ host: Host) -> String { "\(name)-\(host.name)".lowercased() }
    /// A host's transitd's TLS files.
    public func tls(_ host: Host) -> TLSFiles { TLSFiles(pkiDirectory: pkiDirectory, stem: "droplet-\(dropletName(host))") }
    /// --tls-cert, --tls-key and --tls-ca for a command line.
    public static func flags(_ tls: TLSFiles) -> [String] { ["--tls-cert", tls.certificate, "--tls-key", tls.key, "--tls-ca", tls.ca] }
    public var underlayNetns: String { "\(Self.netnsDirectory)/\(name)-u" }
    /// The management port's name in the namespace that called `up`.
    public var managementInterface: String { Self.managementInterface(of: name) }
    static func managementInterface(of testbed: String) -> String { "\(testbed)-m" }
    /// The management port's address on the underlay (hosts are .1 up).
    public var managementIP: IPv4Address { Self.managementIP(underlayNet: underlayNet) }
    public static func managementIP(underlayNet: UInt8) -> IPv4Address { IPv4Address(172, 30, underlayNet, 254) }

    /// Where a host's transitd listens, as mizarctl's `--testbed` finds it.
    static func socket(testbed: String, host: String) -> String {
        guard case .unix(let path) = TransitTarget.testbed(testbed, host: host) else { preconditionFailure("a testbed's transitd is on a unix socket") }
        return path
    }

    /// The testbed `name` with `count` hosts, as `up` lays it out.
    public init(name: String, hosts count: Int, underlayNet: UInt8 = 0) {
        self.name = name
        self.underlayNet = underlayNet
        hosts = (1...max(count, 1)).map { i in
            let host = "h\(i)"
            let run = "\(Self.runRoot)/\(name)/\(host)"
            return Host(index: i, name: host, netns: "\(Self.netnsDirectory)/\(name)-\(host)",
                        ip: IPv4Address(172, 30, underlayNet, UInt8(i)), mac: MACAddress(0x02, 0x4d, 0, 0, underlayNet, UInt8(i)),
                        socket: Self.socket(testbed: name, host: host), pinDirectory: "\(Self.pinRoot)/\(name)/\(host)",
                        stateDirectory: run, log: "\(Self.runRoot)/\(name)/\(host).log")
        }
    }

    /// The testbed as `up` left it (the host count is read from its run directory).
    public static func existing(name: String) throws(TestbedError) -> Testbed {
        var count = 0
        while access("\(runRoot)/\(name)/h\(count + 1).pid", F_OK) == 0 { count += 1 }
        guard count > 0 else { throw TestbedError("testbed \(name) is not up (no \(runRoot)/\(name)/h1.pid)") }
        let net = (try? readText("\(runRoot)/\(name)/underlay")).flatMap { UInt8($0.trimmed) } ?? 0
        return Testbed(name: name, hosts: count, underlayNet: net)
    }

    public func host(_ name: String) -> Host? { hosts.first { $0.name == name } }

    /// Where an endpoint's namespace lives.
    public func endpointNetns(_ endpoint: String) -> String { "\(Self.netnsDirectory)/\(name)-e-\(endpoint)" }

    // MARK: - up

    /// Builds the underlay and the hosts and starts a transitd in each
    /// (unless told not to yet), waiting until every one answers on its
    /// socket. On failure everything made so far is removed again.
    public static func up(name: String, options: Options, startTransitds: Bool = true) throws -> Testbed {
        try requireRoot()
        guard isValidName(name) else {
            throw TestbedError("name \"\(name)\": expected 1 to 8 letters or digits (it prefixes every interface and namespace)")
        }
        guard (1...250).contains(options.hosts) else { throw TestbedError("hosts: \(options.hosts) is out of range; expected 1...250") }
        guard access(options.transitd, X_OK) == 0 else { throw TestbedError("transitd: \(options.transitd) is not an executable") }
        guard access("\(options.objects)/transit.tc.o", R_OK) == 0 else {
            throw TestbedError("objects: no transit.tc.o in \(options.objects) (run make bpf)")
        }
        let bed = Testbed(name: name, hosts: options.hosts, underlayNet: options.underlayNet)
        if access(bed.underlayNetns, F_OK) == 0 || access(bed.runDirectory, F_OK) == 0 {
            throw TestbedError("testbed \(name) exists already; run `mizar-testbed down --name \(name)` first")
        }
        do {
            try bed.build(options)
            if startTransitds { try bed.startTransitds(options: options) }
        } catch {
            _ = bed.down()
            throw error
        }
        return bed
    }

    /// Starts every host's transitd and waits until each answers.
    public func startTransitds(options: Options) throws {
        // Two at a time: each transitd's program loads keep a core busy,
        // and a machine's worth of them at once starves everything else
        // (an etcd beside them lets leases lapse).
        for pair in stride(from: 0, to: hosts.count, by: 2) {
            let batch = hosts[pair..<min(pair + 2, hosts.count)]
            for host in batch { try start(host, options) }
            for host in batch { try waitReady(host) }
        }
    }

    private func build(_ options: Options) throws {
        try makeDirectories(runDirectory)
        try writeFile("\(runDirectory)/underlay", "\(underlayNet)\n")
        try PKI(directory: pkiDirectory).ensure([.operator, .admin, .metrics] + hosts.map { try Identity.droplet(dropletName($0), ip: $0.ip) })
        try writeFile(dropletTable, DropletTableText.format(hosts.map { HostAddress(ip: $0.ip, mac: $0.mac) }))
        try makeDirectories("\(Self.pinRoot)/\(name)")
        try NetworkNamespace.create(path: underlayNetns)
        let underlay = try NetworkNamespace(path: underlayNetns)
        let u = try Netlink(in: underlay)
        try u.addBridge("br0")
        let bridge = try require(u.index(of: "br0"), "br0")
        try u.disableIPv6(bridge)
        try u.setLink(bridge, up: true)
        if options.management {
            // The veth is made in the underlay, its peer put here; both go
            // when the underlay namespace is deleted.
            let here = try NetworkNamespace(path: "/proc/self/ns/net")
            try u.addVeth("mgmt", peer: managementInterface, peerNamespace: here, mtu: options.mtu,
                          peerMAC: MACAddress(0x02, 0x4d, 0, 0, underlayNet, 0xfe))
            let port = try require(u.index(of: "mgmt"), "mgmt")
            try u.disableIPv6(port)
            try u.setMaster(port, master: bridge)
            try u.setLink(port, up: true)
            let local = try Netlink()
            let m = try require(local.index(of: managementInterface), managementInterface)
            try local.disableIPv6(m)
            try local.addAddress(m, managementIP, prefixLength: 24)
            try local.setLink(m, up: true)
        }
        for host in hosts {
            try NetworkNamespace.create(path: host.netns)
            let ns = try NetworkNamespace(path: host.netns)
            try u.addVeth(host.name, peer: "eth0", peerNamespace: ns, mtu: options.mtu, peerMAC: host.mac)
            let port = try require(u.index(of: host.name), host.name)
            try u.disableIPv6(port)
            try u.setMaster(port, master: bridge)
            try u.setLink(port, up: true)
            // Frames XDP-redirected into a veth are dropped unless its peer has GRO.
            try Ethtool.setGRO(true, ifname: host.name, in: underlay)
            let h = try Netlink(in: ns)
            let eth0 = try require(h.index(of: "eth0"), "eth0")
            try h.disableIPv6(eth0)
            try h.addAddress(eth0, host.ip, prefixLength: 24)
            try h.setLink(eth0, up: true)
            if let lo = try h.index(of: "lo") { try h.setLink(lo, up: true) }
        }
    }

    private func start(_ host: Host, _ options: Options) throws {
        try makeDirectories(host.stateDirectory)
        let argv = [options.transitd, "--netns", host.netns, "--interface", "eth0", "--name", "\(name)-\(host.name)",
                    "--objects", options.objects, "--pin-dir", host.pinDirectory, "--state-dir", host.stateDirectory,
                    "--socket", host.socket, "--transit-hook", options.transitHook, "--agent-hook", options.agentHook]
            + Self.flags(tls(host)) + ["--droplets", dropletTable, "--conntrack-size", "\(options.conntrackSize)",
                                                    "--snat-size", "\(options.snatSize)"]
            + options.extraArguments
            + (options.etcd.map { ["--etcd", $0, "--etcd-root", options.etcdRoot, "--droplet", dropletName(host),
                                  "--lease-ttl", "\(options.leaseTTL)", "--role-lease-ttl", "\(options.roleLeaseTTL)"] } ?? [])
        let pid = try spawnDaemon(argv, log: host.log)
        try writeFile("\(runDirectory)/\(host.name).pid", "\(pid)\n")
    }

    /// Restarts one host's transitd (after a crash, or to test adoption).
    public func restart(_ host: Host, options: Options) throws {
        try start(host, options)
        try waitReady(host)
    }

    /// The running transitd of a host, if any.
    public func pid(of host: Host) -> pid_t? {
        guard let text = try? readText("\(runDirectory)/\(host.name).pid"), let pid = pid_t(text.trimmed),
              isOurTransitd(pid) else { return nil }
        return pid
    }

    /// Each transitd loads and verifies its programs; started together on a
    /// small machine they share the CPU, so the wait grows with the hosts.
    private func waitReady(_ host: Host) throws {
        let seconds = 10 + hosts.count
        for _ in 0..<(seconds * 40) {
            if canConnect(host.socket) { return }
            if let text = try? readText("\(runDirectory)/\(host.name).pid"), let pid = pid_t(text.trimmed),
               kill(pid, 0) != 0 {
                throw TestbedError("transitd of \(host.name) exited; its log \(host.log) says:\n\((try? readText(host.log)) ?? "")")
            }
            usleep(25_000)
        }
        throw TestbedError("transitd of \(host.name) did not answer on \(host.socket) within \(seconds) s; see \(host.log)")
    }

    // MARK: - down

    /// Stops the transitds (by their recorded pids, and only if they are
    /// transitd), deletes every namespace with this testbed's prefix and its
    /// pins and run directory. Returns what it removed.
    @discardableResult
    public func down() -> [String] {
        Self.down(name: name)
    }

    @discardableResult
    public static func down(name: String) -> [String] {
        var removed: [String] = []
        let run = "\(runRoot)/\(name)"
        for file in listDirectory(run) where file.hasSuffix(".pid") {
            guard let text = try? readText("\(run)/\(file)"), let pid = pid_t(text.trimmed), isOurTransitd(pid) else { continue }
            kill(pid, SIGKILL)
            reap(pid)
            removed.append("process \(pid)")
        }
        // The management veth goes with the underlay namespace, but only once
        // the kernel has cleaned that namespace up, later: an `up` right after
        // would find its name taken. Deleted here and now instead.
        let management = managementInterface(of: name)
        if let local = try? Netlink(), let index = try? local.index(of: management), (try? local.deleteLink(index)) == true {
            removed.append("interface \(management)")
        }
        for entry in listDirectory(netnsDirectory) where entry.hasPrefix("\(name)-") {
            if (try? NetworkNamespace.delete(path: "\(netnsDirectory)/\(entry)")) == true { removed.append("netns \(entry)") }
        }
        if removeTree("\(pinRoot)/\(name)") { removed.append("pins \(pinRoot)/\(name)") }
        if removeTree(run) { removed.append("run directory \(run)") }
        return removed
    }

    // MARK: - endpoints and exec

    /// A machine on the underlay that is not a droplet (an attacker's, in
    /// tests): a namespace with a port on the underlay bridge and `ip` (in
    /// the underlay's /24). It goes with the testbed. Blocks until its link
    /// is up (about a second): call it off the concurrency pool
    /// (`onOwnThread`).
    public func addStranger(_ stranger: String, ip: IPv4Address, mac: MACAddress) throws -> String {
        guard Self.isValidName(stranger, max: 8) else { throw TestbedError("stranger \"\(stranger)\": expected 1 to 8 letters or digits") }
        let path = "\(Self.netnsDirectory)/\(name)-x-\(stranger)"
        try NetworkNamespace.create(path: path)
        let ns = try NetworkNamespace(path: path)
        let u = try Netlink(in: try NetworkNamespace(path: underlayNetns))
        let port = "x-\(stranger)"
        try u.addVeth(port, peer: "eth0", peerNamespace: ns, mtu: 1500, peerMAC: mac)
        let index = try require(u.index(of: port), port)
        try u.disableIPv6(index)
        try u.setMaster(index, master: try require(u.index(of: "br0"), "br0"))
        try u.setLink(index, up: true)
        let inside = try Netlink(in: ns)
        let eth0 = try require(inside.index(of: "eth0"), "eth0")
        try inside.disableIPv6(eth0)
        try inside.addAddress(eth0, ip, prefixLength: 24)
        try inside.setLink(eth0, up: true)
        // A link set up starts to transmit only once the kernel's link
        // watch has seen its carrier (up to a second later): until then its
        // frames are dropped. Wait for both ends to be operationally up.
        let ends = [("\(name)-x-\(stranger)", "eth0"), ("\(name)-u", port)]
        for _ in 0..<150 {
            if ends.allSatisfy({ runCapturing(["ip", "-n", $0.0, "-o", "link", "show", $0.1]).output.contains("state UP") }) { return path }
            usleep(20_000)
        }
        throw TestbedError("stranger \(stranger): its link did not come up within 3 s")
    }

    /// Creates an endpoint's namespace (transitd then puts its interface in).
    public func addEndpointNetns(_ endpoint: String) throws -> String {
        guard Self.isValidName(endpoint, max: 20) else {
            throw TestbedError("endpoint \"\(endpoint)\": expected 1 to 20 letters or digits")
        }
        let path = endpointNetns(endpoint)
        try NetworkNamespace.create(path: path)
        return path
    }

    public func removeEndpointNetns(_ endpoint: String) throws {
        try NetworkNamespace.delete(path: endpointNetns(endpoint))
    }

    /// The namespace of an endpoint or host ("h1") by name.
    public func netns(of target: String) throws(TestbedError) -> String {
        if let host = host(target) { return host.netns }
        let path = endpointNetns(target)
        guard access(path, F_OK) == 0 else {
            throw TestbedError("no endpoint or host \"\(target)\" in testbed \(name) (looked for \(path))")
        }
        return path
    }

    static func isValidName(_ s: String, max: Int = 8) -> Bool {
        !s.isEmpty && s.utf8.count <= max && s.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7a) }
    }
}

public struct TestbedError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public func requireRoot() throws(TestbedError) {
    guard geteuid() == 0 else {
        throw TestbedError("the testbed needs root: it creates network namespaces, interfaces and BPF programs (run it with sudo)")
    }
}

func require<T>(_ value: T?, _ what: String) throws(TestbedError) -> T {
    guard let value else { throw TestbedError("\(what) vanished right after it was created") }
    return value
}

/// Only a process whose executable is transitd is ever signalled: a pid
/// file can outlive its process and the pid be reused.
func isOurTransitd(_ pid: pid_t) -> Bool { isProcess(pid, named: "transitd") }

/// Whether pid runs the program `name` (checked before any kill, so a pid
/// file left behind never gets another process killed).
func isProcess(_ pid: pid_t, named name: String) -> Bool {
    guard pid > 1, let cmdline = try? readText("/proc/\(pid)/cmdline") else { return false }
    let argv0 = cmdline.split(separator: "\0").first.map(String.init) ?? ""
    return argv0.hasSuffix("/\(name)") || argv0 == name
}

/// Waits (up to 2 s) for a killed process to be gone; when it is our own
/// child (tests start transitds themselves) it is reaped, not left a zombie.
public func reap(_ pid: pid_t) {
    for _ in 0..<200 {
        if waitpid(pid, nil, WNOHANG) == pid || kill(pid, 0) != 0 { return }
        usleep(10_000)
    }
}

func canConnect(_ path: String) -> Bool {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { return false }
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
        for (i, b) in bytes.enumerated() { raw[i] = b }
    }
    return withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    } == 0
}

/// Starts a daemon in a session of its own, output to `log`; returns its pid.
public func spawnDaemon(_ argv: [String], log: String) throws(TestbedError) -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    // Nothing else of this process: a daemon that kept a command's pipe
    // open would leave its reader waiting for an end that never comes.
    _ = mz_spawn_close_from(&actions, 3)
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    posix_spawnattr_setflags(&attributes, 0x80) // POSIX_SPAWN_SETSID (glibc, _GNU_SOURCE only)
    var pid: pid_t = 0
    let cArgs = argv.map { strdup($0) } + [nil]
    defer { cArgs.forEach { free($0) } }
    let r = posix_spawn(&pid, argv[0], &actions, &attributes, cArgs, environ)
    guard r == 0 else { throw TestbedError("cannot start \(argv[0]): \(String(cString: strerror(r)))") }
    return pid
}

// MARK: - Files

func readText(_ path: String) throws -> String {
    guard let text = try readFile(path) else { throw TestbedError("\(path) does not exist") }
    return text
}

extension String {
    var trimmed: String {
        String(self.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}

extension Testbed.Host {
    /// This host's transitd, for Provisioning.
    public var peer: TransitPeer { TransitPeer(target: .unix(socket), ip: ip, mac: mac) }
}

extension Testbed.Options {
    /// For tests and benchmarks: the transitd built beside the running
    /// executable, the BPF objects under build/bpf of the working directory.
    public static func besideThisExecutable() -> Testbed.Options {
        let cwd = String(cString: getcwd(nil, 0))
        return Testbed.Options(transitd: siblingExecutable("transitd"), objects: "\(cwd)/build/bpf")
    }
}

/// An executable built beside the running one (same build directory).
public func siblingExecutable(_ name: String) -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX))
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else { return name }
    let exe = String(decoding: buffer.prefix(Int(n)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return String(exe[..<(exe.lastIndex(of: "/") ?? exe.endIndex)]) + "/" + name
}
