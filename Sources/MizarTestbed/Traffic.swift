import CNetlink
import Glibc
import MizarCore
import MizarSystem

/// Real traffic between endpoint namespaces, for tests: sockets are made
/// inside each namespace, then used from this thread. Every wait is bounded.
public enum Traffic {
    public enum Transport: Sendable { case tcp, udp }

    /// Sends `payload` from a socket in `client` to `server`:`port`, where a
    /// socket in `serverNetns` receives it and answers with its reverse.
    /// Returns what the server received and what the client got back; nil
    /// where nothing arrived within `timeout` seconds.
    public static func exchange(_ transport: Transport, from client: String, to serverNetns: String, address: IPv4Address,
                                port: UInt16, payload: [UInt8], timeout: Double = 1.0) throws -> (atServer: [UInt8]?, atClient: [UInt8]?) {
        let clientNS = try NetworkNamespace(path: client), serverNS = try NetworkNamespace(path: serverNetns)
        let type = transport == .tcp ? Int32(SOCK_STREAM.rawValue) : Int32(SOCK_DGRAM.rawValue)
        let listener = try serverNS.socket(domain: AF_INET, type: type)
        defer { close(listener) }
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        try bindOrConnect(listener, .zero, port, connect: false)
        if transport == .tcp { guard listen(listener, 4) == 0 else { throw failure("listen") } }
        setTimeout(listener, timeout)

        let sender = try clientNS.socket(domain: AF_INET, type: type)
        defer { close(sender) }
        setTimeout(sender, timeout)
        if transport == .tcp {
            do { try bindOrConnect(sender, address, port, connect: true) } catch { return (nil, nil) }
        } else {
            try bindOrConnect(sender, address, port, connect: true)
        }
        guard payload.withUnsafeBytes({ send(sender, $0.baseAddress, $0.count, 0) }) == payload.count else { throw failure("send") }

        var peer = listener
        if transport == .tcp {
            peer = accept(listener, nil, nil)
            guard peer >= 0 else { return (nil, nil) }
            setTimeout(peer, timeout)
        }
        defer { if peer != listener { close(peer) } }
        var from = sockaddr_in(), fromLen = socklen_t(MemoryLayout<sockaddr_in>.size)
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = withUnsafeMutablePointer(to: &from) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                buffer.withUnsafeMutableBytes { recvfrom(peer, $0.baseAddress, $0.count, 0, sa, &fromLen) }
            }
        }
        guard n > 0 else { return (nil, nil) }
        let atServer = Array(buffer.prefix(n))
        let answer = Array(atServer.reversed())
        let sent = withUnsafePointer(to: &from) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                answer.withUnsafeBytes {
                    transport == .tcp ? send(peer, $0.baseAddress, $0.count, 0) : sendto(peer, $0.baseAddress, $0.count, 0, sa, fromLen)
                }
            }
        }
        guard sent == answer.count else { throw failure("send answer") }
        let m = buffer.withUnsafeMutableBytes { recv(sender, $0.baseAddress, $0.count, 0) }
        return (atServer, m > 0 ? Array(buffer.prefix(m)) : nil)
    }

    /// Streams `bytes` of pseudo-random data over one TCP connection from
    /// `client` to `serverNetns` (the sender's TSO packets at full size, the
    /// way bulk traffic travels) and returns how many bytes arrived and
    /// whether they are exactly the bytes sent. Stops at `timeout` seconds.
    public static func stream(from client: String, to serverNetns: String, address: IPv4Address, port: UInt16,
                              bytes: Int, timeout: Double) throws -> (received: Int, intact: Bool) {
        let clientNS = try NetworkNamespace(path: client), serverNS = try NetworkNamespace(path: serverNetns)
        let stream = Int32(SOCK_STREAM.rawValue)
        let listener = try serverNS.socket(domain: AF_INET, type: stream)
        defer { close(listener) }
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        try bindOrConnect(listener, .zero, port, connect: false)
        guard listen(listener, 1) == 0 else { throw failure("listen") }
        setTimeout(listener, timeout)
        let sender = try clientNS.socket(domain: AF_INET, type: stream)
        defer { close(sender) }
        setTimeout(sender, timeout)
        do { try bindOrConnect(sender, address, port, connect: true) } catch { return (0, false) }
        let peer = accept(listener, nil, nil)
        guard peer >= 0 else { return (0, false) }
        defer { close(peer) }
        for fd in [sender, peer] { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }

        // The same generator on both sides: what arrives is checked byte for
        // byte without keeping a copy of what was sent.
        var sendState: UInt64 = 0x9E37_79B9_7F4A_7C15, checkState = sendState
        func fill(_ chunk: inout [UInt8], _ state: inout UInt64) {
            chunk.withUnsafeMutableBytes { raw in
                let words = raw.bindMemory(to: UInt64.self)
                for i in words.indices {
                    state = state &* 6364136223846793005 &+ 1442695040888963407
                    words[i] = state ^ (state >> 29)
                }
            }
        }
        let chunk = 256 * 1024
        var out = [UInt8](repeating: 0, count: chunk), outStart = chunk
        var input = [UInt8](repeating: 0, count: chunk), expected = input, expectedStart = chunk
        var sent = 0, received = 0, intact = true
        let deadline = monotonicSeconds() + timeout
        while received < bytes && monotonicSeconds() < deadline {
            var progressed = false
            if sent < bytes {
                if outStart == chunk { fill(&out, &sendState); outStart = 0 }
                let want = min(chunk - outStart, bytes - sent)
                let n = out.withUnsafeBytes { send(sender, $0.baseAddress! + outStart, want, Int32(MSG_NOSIGNAL)) }
                if n > 0 { sent += n; outStart += n; progressed = true } else if errno != EAGAIN { throw failure("send") }
            }
            let n = input.withUnsafeMutableBytes { recv(peer, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                var offset = 0
                while offset < n {   // compare against the regenerated stream
                    if expectedStart == chunk { fill(&expected, &checkState); expectedStart = 0 }
                    let k = min(chunk - expectedStart, n - offset)
                    if intact {
                        intact = input.withUnsafeBytes { i in expected.withUnsafeBytes { e in
                            memcmp(i.baseAddress! + offset, e.baseAddress! + expectedStart, k) == 0
                        } }
                    }
                    offset += k; expectedStart += k
                }
                received += n
                progressed = true
            } else if n == 0 {
                break
            } else if errno != EAGAIN {
                throw failure("recv")
            }
            if !progressed {
                var fds = [pollfd(fd: peer, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: sender, events: Int16(sent < bytes ? POLLOUT : 0), revents: 0)]
                _ = poll(&fds, 2, 50)
            }
        }
        return (received, intact && received == bytes)
    }

    /// Waits up to `timeout` seconds for one datagram on `port` inside
    /// `netns` while `trigger` runs: what must not arrive, arriving.
    public static func listenUDP(in netns: String, port: UInt16, timeout: Double, while trigger: () throws -> Void) throws -> [UInt8]? {
        let ns = try NetworkNamespace(path: netns)
        let s = try ns.socket(domain: AF_INET, type: Int32(SOCK_DGRAM.rawValue))
        defer { close(s) }
        try bindOrConnect(s, .zero, port, connect: false)
        setTimeout(s, timeout)
        try trigger()
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = buffer.withUnsafeMutableBytes { recv(s, $0.baseAddress, $0.count, 0) }
        return n > 0 ? Array(buffer.prefix(n)) : nil
    }

    /// One datagram from inside `netns`, no answer expected.
    public static func sendUDP(from netns: String, to address: IPv4Address, port: UInt16, payload: [UInt8]) throws {
        let ns = try NetworkNamespace(path: netns)
        let s = try ns.socket(domain: AF_INET, type: Int32(SOCK_DGRAM.rawValue))
        defer { close(s) }
        try bindOrConnect(s, address, port, connect: true)
        _ = payload.withUnsafeBytes { send(s, $0.baseAddress, $0.count, 0) }
    }

    /// `ping` inside a namespace: how many of `count` echoes were answered.
    public static func ping(from netns: String, _ address: IPv4Address, count: Int, interval: Double = 0.2,
                            wait: Double = 1) -> (sent: Int, received: Int, output: String) {
        let (_, output) = runCapturing(["nsenter", "--net=\(netns)", "ping", "-n", "-q", "-c", "\(count)",
                                        "-i", "\(interval)", "-W", "\(wait)", "\(address)"])
        // "5 packets transmitted, 5 received, ..."
        guard let line = output.split(separator: "\n").first(where: { $0.contains("packets transmitted") }) else {
            return (0, 0, output)
        }
        let numbers = line.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
        return (numbers.first ?? 0, numbers.count > 1 ? numbers[1] : 0, output)
    }

    static func bindOrConnect(_ fd: Int32, _ ip: IPv4Address, _ port: UInt16, connect doConnect: Bool) throws {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = ip.networkOrder
        let r = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                doConnect ? connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) : bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard r == 0 else { throw failure(doConnect ? "connect \(ip):\(port)" : "bind :\(port)") }
    }

    static func setTimeout(_ fd: Int32, _ seconds: Double) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    static func failure(_ what: String) -> SystemError { SystemError(call: what, subject: "", errno: errno) }
}

/// Runs a command to completion; its exit status and what it printed
/// (stdout and stderr together).
public func runCapturing(_ argv: [String]) -> (status: Int32, output: String) {
    var pipeFDs: [Int32] = [0, 0]
    // Close-on-exec: a child that outlives the command (podman leaves conmon
    // behind) must not inherit the write end, or the read below never ends.
    // dup2 onto 1 and 2 clears the flag on the child's copies only.
    let piped = mz_pipe_cloexec(&pipeFDs)
    guard piped == 0 else { return (-1, "pipe: \(String(cString: strerror(-piped)))") }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
    posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 2)
    posix_spawn_file_actions_addclose(&actions, pipeFDs[0])
    _ = mz_spawn_close_from(&actions, 3)
    var pid: pid_t = 0
    let cArgs = argv.map { strdup($0) } + [nil]
    defer { cArgs.forEach { free($0) } }
    let r = posix_spawnp(&pid, argv[0], &actions, nil, cArgs, environ)
    close(pipeFDs[1])
    defer { close(pipeFDs[0]) }
    guard r == 0 else { return (-1, "cannot run \(argv[0]): \(String(cString: strerror(r)))") }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(pipeFDs[0], $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        bytes += chunk.prefix(n)
    }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return ((status >> 8) & 0xff, String(decoding: bytes, as: UTF8.self))
}
