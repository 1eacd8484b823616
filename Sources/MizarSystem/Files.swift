import Glibc
import MizarCore

/// The whole file as text; nil if it does not exist.
public func readFile(_ path: String) throws(SystemError) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 {
        if errno == ENOENT { return nil }
        throw SystemError(call: "open", subject: path, errno: errno)
    }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 { throw SystemError(call: "read", subject: path, errno: errno) }
        if n == 0 { break }
        bytes += chunk.prefix(n)
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Writes to a temporary file, syncs it and renames it over `path`, so a
/// crash leaves either the old contents or the new ones.
public func writeFile(_ path: String, _ text: String) throws(SystemError) {
    let tmp = path + ".tmp"
    let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    if fd < 0 { throw SystemError(call: "open", subject: tmp, errno: errno) }
    let bytes = Array(text.utf8)
    var written = 0
    while written < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
        if n < 0 { let e = errno; close(fd); throw SystemError(call: "write", subject: tmp, errno: e) }
        written += n
    }
    if fsync(fd) != 0 { let e = errno; close(fd); throw SystemError(call: "fsync", subject: tmp, errno: e) }
    close(fd)
    if rename(tmp, path) != 0 { throw SystemError(call: "rename", subject: path, errno: errno) }
}

/// Writes `text` into an existing file in place (a /proc or /sys setting),
/// in one write.
public func writeInPlace(_ path: String, _ text: String) throws(SystemError) {
    let fd = open(path, O_WRONLY | O_CLOEXEC)
    if fd < 0 { throw SystemError(call: "open", subject: path, errno: errno) }
    defer { close(fd) }
    let bytes = Array(text.utf8)
    let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    if n < 0 { throw SystemError(call: "write", subject: path, errno: errno) }
    if n != bytes.count { throw SystemError(call: "write", subject: path, errno: EIO) }
}

/// mkdir -p.
public func makeDirectories(_ path: String) throws(SystemError) {
    var built = path.hasPrefix("/") ? "" : "."
    for part in path.split(separator: "/") {
        built += "/" + part
        if mkdir(built, 0o755) != 0 && errno != EEXIST {
            throw SystemError(call: "mkdir", subject: built, errno: errno)
        }
    }
}

/// The names in a directory (without . and ..); empty if it cannot be read.
public func listDirectory(_ path: String) -> [String] {
    guard let dir = opendir(path) else { return [] }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}

/// rm -r without following symlinks; false if nothing was there.
@discardableResult
public func removeTree(_ path: String) -> Bool {
    var st = stat()
    guard lstat(path, &st) == 0 else { return false }
    if st.st_mode & S_IFMT == S_IFDIR {
        for name in listDirectory(path) { removeTree("\(path)/\(name)") }
        return rmdir(path) == 0
    }
    return unlink(path) == 0
}
