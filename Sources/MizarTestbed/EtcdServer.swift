import Glibc
import MizarSystem

/// A real etcd server (Debian's etcd-server) on loopback, for tests, the
/// demo and benchmarks: its own data directory, client and peer ports
/// chosen free, started in a session of its own and stopped by its pid.
public final class EtcdServer: Sendable {
    public let directory: String
    public let clientPort: Int
    public let peerPort: Int
    public let pid: pid_t
    public var endpoint: String { "127.0.0.1:\(clientPort)" }
    public var log: String { "\(directory)/etcd.log" }

    /// Starts etcd under `directory` (created; an old data directory there
    /// is removed first) and waits until it serves. `binary` is searched
    /// on PATH when it has no slash.
    /// `listen` are the addresses it serves clients on (loopback by
    /// default; add a testbed's management IP for its transitds).
    public init(directory: String, listen: [String] = ["127.0.0.1"], clientPort: Int? = nil, binary: String = "etcd") throws {
        guard let exe = Self.find(binary) else {
            throw TestbedError("\(binary) not found: install Debian's etcd-server (make deps does)")
        }
        self.directory = directory
        _ = removeTree("\(directory)/data")
        try makeDirectories(directory)
        let port = try clientPort ?? Self.freePort()
        self.clientPort = port
        peerPort = try Self.freePort(avoiding: port)
        let clients = listen.map { "http://\($0):\(port)" }.joined(separator: ",")
        let peer = "http://127.0.0.1:\(peerPort)"
        pid = try spawnDaemon([exe, "--name", "mizar-test", "--data-dir", "\(directory)/data",
                               "--listen-client-urls", clients, "--advertise-client-urls", clients,
                               "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                               "--initial-cluster", "mizar-test=\(peer)", "--initial-cluster-state", "new",
                               "--log-level", "warn", "--logger", "zap"], log: "\(directory)/etcd.log")
        try writeFile("\(directory)/etcd.pid", "\(pid)\n")
        // etcd's own advice: give it the CPU first, or a busy machine lets
        // its leases lapse and its requests time out.
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(pid), -10)
        try waitReady()
    }

    /// Stops etcd (SIGTERM, then SIGKILL) and removes its data.
    public func stop() {
        if isProcess(pid, named: "etcd") {
            kill(pid, SIGTERM)
            for _ in 0..<200 where waitpid(pid, nil, WNOHANG) != pid && kill(pid, 0) == 0 { usleep(10_000) }
            if kill(pid, 0) == 0 { kill(pid, SIGKILL); reap(pid) }
        }
        _ = removeTree(directory)
    }

    /// etcd answers its health endpoint once it has elected itself leader.
    private func waitReady() throws {
        for _ in 0..<400 {
            if kill(pid, 0) != 0 || waitpid(pid, nil, WNOHANG) == pid {
                throw TestbedError("etcd exited; \(log) says:\n\((try? readText(log)) ?? "")")
            }
            if Self.httpGet(port: clientPort, path: "/health")?.contains("\"health\":\"true\"") == true { return }
            usleep(25_000)
        }
        throw TestbedError("etcd did not become healthy on \(endpoint) within 10 s; see \(log)")
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
    public static func freePort(avoiding other: Int = 0) throws -> Int {
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
            if ok && port != other { return port }
        }
        throw TestbedError("no free loopback port")
    }

    /// A minimal HTTP/1.0 GET on loopback; the whole answer, or nil.
    static func httpGet(port: Int, path: String) -> String? {
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
            let s = try EtcdServer(directory: "\(base)/mizar-etcd-test-\(getpid())")
            atexit { if case .success(let s) = EtcdServer.processShared { s.stop() } }
            return .success(s)
        } catch let e as TestbedError { return .failure(e) } catch { return .failure(TestbedError("\(error)")) }
    }()

    /// One etcd for the whole test process, started on first use and
    /// stopped (its data removed) when the process exits.
    public static func shared() throws(TestbedError) -> EtcdServer { try processShared.get() }
}

extension Testbed {
    /// A testbed whose transitds register with an etcd of its own, which
    /// serves loopback and the testbed's management network (where the
    /// transitds reach it). `options.management` and `options.etcd` are
    /// set here (and returned, for restarting hosts alike); a testbed of the
    /// same name left over is removed first.
    public static func upWithEtcd(name: String, options: Options, etcdDirectory: String) throws -> (Testbed, EtcdServer, Options) {
        var options = options
        options.management = true
        let port = try EtcdServer.freePort()
        options.etcd = "\(managementIP(underlayNet: options.underlayNet)):\(port)"
        down(name: name)
        let bed = try up(name: name, options: options)
        do {
            return (bed, try EtcdServer(directory: etcdDirectory, listen: ["127.0.0.1", "\(bed.managementIP)"], clientPort: port), options)
        } catch {
            bed.down()
            throw error
        }
    }
}
