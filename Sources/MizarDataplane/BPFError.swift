import Glibc

/// A failed libbpf call or syscall: which call, on what, and the errno.
public struct BPFError: Error, CustomStringConvertible, Sendable {
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
}

/// libbpf 1.x returns 0 or a negative errno; every result goes through here.
@discardableResult
func check(_ result: Int32, _ call: String, _ subject: String = "") throws(BPFError) -> Int32 {
    if result < 0 { throw BPFError(call: call, subject: subject, errno: -result) }
    return result
}

/// For calls that return NULL and set errno.
func check<T>(_ pointer: T?, _ call: String, _ subject: String = "") throws(BPFError) -> T {
    guard let pointer else { throw BPFError(call: call, subject: subject, errno: Glibc.errno) }
    return pointer
}
