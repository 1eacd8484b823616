import Glibc

/// A failed call into the kernel or a C library (libbpf, netlink, a
/// syscall): which call, on what, and the errno. The one error type for
/// every such call, in the data plane and in the system layer alike.
public struct SystemError: Error, CustomStringConvertible, Sendable {
    public let call: String
    public let subject: String
    public let errno: Int32

    public init(call: String, subject: String = "", errno: Int32) {
        self.call = call
        self.subject = subject
        self.errno = errno
    }

    public var description: String {
        let what = subject.isEmpty ? call : "\(call)(\(subject))"
        return "\(what): \(String(cString: strerror(errno))) (errno \(errno))"
    }

    /// For calls that return 0 or more, or a negative errno (libbpf 1.x,
    /// the netlink shim).
    @discardableResult
    public static func check(_ result: Int32, _ call: String, _ subject: String = "") throws(SystemError) -> Int32 {
        if result < 0 { throw SystemError(call: call, subject: subject, errno: -result) }
        return result
    }

    /// The same for calls that return a 64-bit count or a negative errno.
    @discardableResult
    public static func check64(_ result: Int64, _ call: String, _ subject: String = "") throws(SystemError) -> Int64 {
        if result < 0 { throw SystemError(call: call, subject: subject, errno: Int32(clamping: -result)) }
        return result
    }

    /// For calls that return NULL and set errno.
    public static func check<T>(_ pointer: T?, _ call: String, _ subject: String = "") throws(SystemError) -> T {
        guard let pointer else { throw SystemError(call: call, subject: subject, errno: Glibc.errno) }
        return pointer
    }
}
