import Dispatch
import Foundation
import Glibc
import Logging
import MizarSystem
import Synchronization

/// transitd's CNI socket: a unix stream socket where mizar-cni sends one
/// request (JSON, then it closes its sending side) and reads the answer:
/// the exit status on the first line, then what to print. Kept this plain
/// so the plugin needs nothing but libc and starts in a couple of
/// milliseconds.
public final class CNIServer: Sendable {
    public let path: String
    let handler: CNIHandler
    let listener: Int32

    public init(path: String, handler: CNIHandler) throws {
        self.path = path
        self.handler = handler
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError(call: "socket", subject: path, errno: errno) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(fd)
            throw SystemError(call: "bind", subject: path, errno: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        let bound = withUnsafePointer(to: &address) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(fd, 128) == 0 else {
            let e = errno
            close(fd)
            throw SystemError(call: "bind/listen", subject: path, errno: e)
        }
        chmod(path, 0o600)
        listener = fd
    }

    /// Accepts until `stop`; each request on its own thread.
    public func start() {
        Thread.detachNewThread { [self] in
            while true {
                let c = accept(listener, nil, nil)
                if c < 0 {
                    if errno == EINTR || errno == ECONNABORTED { continue }
                    return   // closed by stop()
                }
                Thread.detachNewThread { [self] in serve(c) }
            }
        }
    }

    public func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        unlink(path)
    }

    func serve(_ fd: Int32) {
        defer { close(fd) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var request: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while request.count < 1 << 20 {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            request += buffer.prefix(n)
        }
        let answer = Mutex<(Int, String)>((CNIError.ioFailure, ""))
        let done = DispatchSemaphore(value: 0)
        let handler = self.handler
        Task {
            let result: (Int, String)
            do throws(CNIError) {
                let parsed = try CNIRequest(json: request)
                result = await handler.handle(parsed)
            } catch {
                result = (error.code, CNIHandler.errorJSON(error, version: "1.0.0"))
            }
            answer.withLock { $0 = result }
            done.signal()
        }
        done.wait()
        let (code, output) = answer.withLock { $0 }
        let bytes = Array("\(code)\n\(output)".utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }
}
