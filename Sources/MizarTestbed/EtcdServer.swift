import Glibc
import MizarCore
import MizarPKI
import MizarSystem
import MizarTLS
import Synchronization

/// A real etcd server (Debian's etcd-server) for tests, the demo and
/// benchmarks: its own data directory, ports chosen free, started in a
/// session of its own and stopped by its pid. Alone or one member of a
/// cluster (`EtcdCluster`). With a PKI it serves clients and peers over
/// mutual TLS only, a client certificate required (its name is the etcd
/// user); its health is read on a plaintext metrics port on loopback.
public final class EtcdServer: Sendable {
    public let name: String
    public let directory: String
    public let clientPort: Int
    public let peerPort: Int
    public let metricsPort: Int
    /// The addresses it serves clients on.
    public let listen: [String]
    /// mizarctl pki's directory when it serves TLS.
    public let pkiDirectory: String?
    public let pid: pid_t
    /// How it was started: what a restart runs again.
    let argv: [String]
    public var endpoint: String { "127.0.0.1:\(clientPort)" }
    public var log: String { "\(directory)/etcd.log" }
    /// etcd's root user (admin.crt), when it serves TLS.
    public var adminTLS: TLSFiles? { pkiDirectory.map { TLSFiles(pkiDirectory: $0, stem: "admin") } }
    /// The operator (operator.crt), when it serves TLS.
    public var operatorTLS: TLSFiles? { pkiDirectory.map { TLSFiles(pkiDirectory: $0, stem: "operator") } }

    /// The ports one member takes: client, peer, metrics.
    public struct Ports: Sendable {
        public var client: Int, peer: Int, metrics: Int
        public static func free() throws -> Ports {
            let c = try EtcdServer.freePort()
            let p = try EtcdServer.freePort(avoiding: [c])
            return Ports(client: c, peer: p, metrics: try EtcdServer.freePort(avoiding: [c, p]))
        }
    }

    /// Starts etcd under `directory` (created; an old data directory there
    /// is removed first) and, with `wait`, waits until it serves. `binary`
    /// is searched on PATH when it has no slash. `listen` are the addresses
    /// it serves clients on (loopback by default; add a testbed's
    /// management IP for its transitds). `pkiDirectory`: serve TLS with the
    /// certificate of etcd member NAME there (made if missing, for the
    /// first non-loopback address of `listen`). `cluster`: every member's
    /// name and peer port (all on loopback), this one's included; alone
    /// when nil.
    public init(name: String = "mizar-test", directory: String, listen: [String] = ["127.0.0.1"], ports: Ports? = nil,
                pkiDirectory: String? = nil, cluster: [(name: String, peerPort: Int)]? = nil,
                wait: Bool = true, binary: String = "etcd") throws {
        guard let exe = Self.find(binary) else {
            throw TestbedError("\(binary) not found: install Debian's etcd-server (make deps does)")
        }
        self.name = name
        self.directory = directory
        self.listen = listen
        self.pkiDirectory = pkiDirectory
        _ = removeTree("\(directory)/data")
        try makeDirectories(directory)
        let ports = try ports ?? Ports.free()
        (clientPort, peerPort, metricsPort) = (ports.client, ports.peer, ports.metrics)
        let scheme = pkiDirectory == nil ? "http" : "https"
        let clients = listen.map { "\(scheme)://\($0):\(ports.client)" }.joined(separator: ",")
        let members = cluster ?? [(name, ports.peer)]
        let initial = members.map { "\($0.name)=\(scheme)://127.0.0.1:\($0.peerPort)" }.joined(separator: ",")
        let peer = "\(scheme)://127.0.0.1:\(ports.peer)"
        var argv = [exe, "--name", name, "--data-dir", "\(directory)/data",
                    "--listen-client-urls", clients, "--advertise-client-urls", clients,
                    "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                    "--listen-metrics-urls", "http://127.0.0.1:\(ports.metrics)",
                    "--initial-cluster", initial, "--initial-cluster-state", "new",
                    "--log-level", "warn", "--logger", "zap"] + EtcdCluster.retentionFlags
        if let pkiDirectory {
            let ip = listen.lazy.compactMap { try? IPv4Address(parsing: $0, field: "listen") }.first { $0.value != 0x7f00_0001 }
                ?? IPv4Address(value: 0x7f00_0001)
            let id = try Identity.etcdMember(name, ip: ip)
            do { _ = try PKI(directory: pkiDirectory).ensure([.operator, .admin, id]) } catch {
                throw TestbedError("PKI in \(pkiDirectory): \(error)")
            }
            let (crt, key, ca) = ("\(pkiDirectory)/\(id.fileStem).crt", "\(pkiDirectory)/\(id.fileStem).key", "\(pkiDirectory)/ca.crt")
            argv += ["--cert-file", crt, "--key-file", key, "--client-cert-auth", "--trusted-ca-file", ca,
                     "--peer-cert-file", crt, "--peer-key-file", key, "--peer-client-cert-auth", "--peer-trusted-ca-file", ca]
        }
        self.argv = argv
        pid = try spawnDaemon(argv, log: "\(directory)/etcd.log")
        try writeFile("\(directory)/etcd.pid", "\(pid)\n")
        // etcd's own advice: give it the CPU first, or a busy machine lets
        // its leases lapse and its requests time out.
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(pid), -10)
        if wait { try waitReady() }
    }

    /// The same member started again on its data (after a kill): it
    /// rejoins its cluster. Returns at once; `waitReady` waits.
    public func restarted() throws -> EtcdServer { try EtcdServer(restarting: self) }

    private init(restarting old: EtcdServer) throws {
        (name, directory, clientPort, peerPort, metricsPort) = (old.name, old.directory, old.clientPort, old.peerPort, old.metricsPort)
        (listen, pkiDirectory, argv) = (old.listen, old.pkiDirectory, old.argv)
        pid = try spawnDaemon(argv, log: "\(directory)/etcd.log")
        try writeFile("\(directory)/etcd.pid", "\(pid)\n")
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(pid), -10)
    }

    /// Stops etcd (SIGTERM, then SIGKILL) and removes its data.
    public func stop() {
        kill(signal: SIGTERM)
        _ = removeTree(directory)
    }

    /// Sends `signal` and, unless the process survives it, reaps it
    /// (SIGTERM is followed by SIGKILL after 2 s). Its data stays.
    public func kill(signal: Int32) {
        guard isProcess(pid, named: "etcd") else { return }
        Glibc.kill(pid, signal)
        guard signal == SIGTERM || signal == SIGKILL else { return }
        for _ in 0..<200 where waitpid(pid, nil, WNOHANG) != pid && Glibc.kill(pid, 0) == 0 { usleep(10_000) }
        if Glibc.kill(pid, 0) == 0 { Glibc.kill(pid, SIGKILL); reap(pid) }
    }

    /// Whether it says it is healthy: a member of a cluster with a leader.
    public var healthy: Bool {
        Self.httpGet(port: metricsPort, path: "/health")?.contains("\"health\":\"true\"") == true
    }

    /// Whether it is the cluster's leader now.
    public var isLeader: Bool {
        Self.httpGet(port: metricsPort, path: "/metrics")?.split(separator: "\n").contains("etcd_server_is_leader 1") == true
    }

    /// Waits until it answers its health endpoint (it has a leader).
    public func waitReady(seconds: Int = 10) throws {
        for _ in 0..<(seconds * 40) {
            if Glibc.kill(pid, 0) != 0 || waitpid(pid, nil, WNOHANG) == pid {
                throw TestbedError("etcd exited; \(log) says:\n\((try? readText(log)) ?? "")")
            }
            if healthy { return }
            usleep(25_000)
        }
        throw TestbedError("etcd did not become healthy on \(endpoint) within \(seconds) s; see \(log)")
    }

    /// Gives etcd Mizar's users and roles and turns access control on, with
    /// the real tool (mizarctl access, as root): the operator reads and
    /// writes under `operatorPrefix`, each of `droplets` its own keys under
    /// `root`.
    public func enableAccessControl(operatorPrefix: String, root: String = "/mizar/v1/", droplets: [String] = []) throws {
        guard let admin = adminTLS else { throw TestbedError("etcd \(name) serves no TLS: no access control without certificates") }
        let r = runCapturing([siblingExecutable("mizarctl"), "access", "--etcd", endpoint, "--root", root,
                              "--operator-prefix", operatorPrefix] + Testbed.flags(admin) + droplets.flatMap { ["--droplet", $0] })
        guard r.status == 0 else { throw TestbedError("mizarctl access: \(r.output)") }
    }

    static func find(_ binary: String) -> String? {
        if binary.contains("/") { return access(binary, X_OK) == 0 ? binary : nil }
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") + ["/usr/bin", "/usr/sbin"] where access("\(dir)/\(binary)", X_OK) == 0 {
            return "\(dir)/\(binary)"
        }
        return nil
    }

    /// A loopback TCP port nobody listens on now.
    public static func freePort(avoiding others: [Int] = []) throws -> Int {
        for _ in 0..<20 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            let ok = withUnsafeMutablePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0
                }
            }
            let port = Int(UInt16(bigEndian: addr.sin_port))
            if ok && !others.contains(port) { return port }
        }
        throw TestbedError("no free loopback port")
    }

    /// A minimal HTTP/1.0 GET on loopback; the whole answer, or nil.
    /// etcd's own metrics text (Prometheus' format).
    public func metricsText() -> String? { Self.httpGet(port: metricsPort, path: "/metrics") }

    public static func httpGet(port: Int, path: String) -> String? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        var tv = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let connected = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return nil }
        let request = Array("GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".utf8)
        guard send(fd, request, request.count, Int32(MSG_NOSIGNAL)) == request.count else { return nil }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            answer += buffer.prefix(n)
        }
        return String(decoding: answer, as: UTF8.self)
    }
}

extension EtcdServer {
    private static let processShared: Result<EtcdServer, TestbedError> = {
        do {
            // tmpfs where there is one: the tests time etcd, not the disk.
            let base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
            let dir = "\(base)/mizar-etcd-test-\(getpid())"
            let s = try EtcdServer(directory: dir, pkiDirectory: "\(dir)/pki")
            atexit { if case .success(let s) = EtcdServer.processShared { s.stop() } }
            // As in production: TLS, and users. Tests pick roots of their
            // own, so the operator may write anywhere here.
            try s.enableAccessControl(operatorPrefix: "/")
            return .success(s)
        } catch let e as TestbedError { return .failure(e) } catch { return .failure(TestbedError("\(error)")) }
    }()

    /// One etcd for the whole test process, started on first use and
    /// stopped (its data removed) when the process exits. It serves mutual
    /// TLS with access control on: connect with `adminTLS` (root) or
    /// `operatorTLS`. Started on a thread of its own: the tests that wait
    /// for it do not hold the concurrency pool meanwhile.
    public static func shared() async throws -> EtcdServer { try await onOwnThread { try processShared.get() } }
}

/// A cluster of etcd members on this machine, each a real etcd process
/// with its own data, ports and (with a PKI) certificate; peers talk over
/// mutual TLS on loopback.
public final class EtcdCluster: Sendable {
    /// What Mizar runs etcd with beyond its addresses and certificates:
    /// history compacted automatically (the last 100,000 revisions kept: a
    /// watcher further behind lists again), and an 8 GiB backend quota
    /// instead of etcd's 2 GiB default (reached after roughly 800,000
    /// endpoint creations without compaction). docs/operations.md gives the
    /// same flags.
    public static let retentionFlags = ["--auto-compaction-mode", "revision", "--auto-compaction-retention", "100000",
                                        "--quota-backend-bytes", "\(8 << 30)"]

    private let current: Mutex<[EtcdServer]>
    public var members: [EtcdServer] { current.withLock { $0 } }

    /// Starts `size` members named NAME-1... under `directory`/NAME-i and
    /// waits until the cluster has a leader.
    public init(name: String = "mizar", size: Int, directory: String, listen: [String] = ["127.0.0.1"],
                pkiDirectory: String? = nil) throws {
        var taken: [Int] = []
        var ports: [EtcdServer.Ports] = []
        for _ in 0..<size {
            let c = try EtcdServer.freePort(avoiding: taken), p = try EtcdServer.freePort(avoiding: taken + [c])
            let m = try EtcdServer.freePort(avoiding: taken + [c, p])
            taken += [c, p, m]
            ports.append(EtcdServer.Ports(client: c, peer: p, metrics: m))
        }
        let names = (1...size).map { "\(name)-\($0)" }
        let cluster = zip(names, ports).map { ($0, $1.peer) }
        var started: [EtcdServer] = []
        do {
            for (n, p) in zip(names, ports) {
                started.append(try EtcdServer(name: n, directory: "\(directory)/\(n)", listen: listen, ports: p,
                                              pkiDirectory: pkiDirectory, cluster: cluster, wait: false))
            }
            for m in started { try m.waitReady(seconds: 20) }
        } catch {
            for m in started { m.stop() }
            throw error
        }
        current = Mutex(started)
    }

    /// Starts member `index` again on its data, once it has been killed;
    /// waits until it is back in the cluster.
    public func restart(_ index: Int) throws {
        let old = members[index]
        let new = try old.restarted()
        current.withLock { $0[index] = new }
        try new.waitReady(seconds: 20)
    }

    /// Every member's client address on `host` (loopback by default), as
    /// --etcd takes them.
    public func endpoints(on host: String = "127.0.0.1") -> [HostPort] { members.map { HostPort(host: host, port: $0.clientPort) } }
    public func flag(on host: String = "127.0.0.1") -> String { endpoints(on: host).map(\.description).joined(separator: ",") }
    /// Every member on loopback, as --etcd takes them.
    public var endpoint: String { flag() }

    public func enableAccessControl(operatorPrefix: String, root: String = "/mizar/v1/", droplets: [String] = []) throws {
        guard let any = members.first(where: { $0.healthy }) else { throw TestbedError("no etcd member is healthy") }
        try any.enableAccessControl(operatorPrefix: operatorPrefix, root: root, droplets: droplets)
    }

    public func stop() { for m in members { m.stop() } }
}

extension Testbed {
    /// A testbed whose transitds register with an etcd of its own (a
    /// cluster of `etcdMembers`), which serves loopback and the testbed's
    /// management network (where the transitds reach it), over mutual TLS
    /// with the testbed's PKI, access control on: the operator reads and
    /// writes under the testbed's root, each host's transitd only its own
    /// keys. `options.management` and `options.etcd` are set here (and
    /// returned, for restarting hosts alike); a testbed of the same name
    /// left over is removed first.
    public static func upWithEtcd(name: String, options: Options, etcdDirectory: String, etcdMembers: Int = 1) throws -> (Testbed, EtcdCluster, Options) {
        var options = options
        options.management = true
        let management = managementIP(underlayNet: options.underlayNet)
        down(name: name)
        let bed = try up(name: name, options: options, startTransitds: false)
        do {
            let etcd = try EtcdCluster(name: "\(name)-etcd", size: etcdMembers, directory: etcdDirectory,
                                       listen: ["127.0.0.1", "\(management)"], pkiDirectory: bed.pkiDirectory)
            do {
                try etcd.enableAccessControl(operatorPrefix: options.etcdRoot, root: options.etcdRoot, droplets: bed.hosts.map(bed.dropletName))
                options.etcd = etcd.flag(on: "\(management)")
                try bed.startTransitds(options: options)
                return (bed, etcd, options)
            } catch {
                etcd.stop()
                throw error
            }
        } catch {
            bed.down()
            throw error
        }
    }
}
