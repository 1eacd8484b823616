// mizar-cni: Mizar's CNI plugin (spec 1.0.0 and 1.1.0). The runtime execs it
// once per container operation, so it does almost nothing itself: it
// answers VERSION, and hands ADD, DEL, CHECK, STATUS and GC with the
// runtime's CNI_* variables and its stdin to the host's transitd over a
// unix socket (the network configuration's "transitd", default
// /run/mizar/cni.sock), then prints transitd's answer and exits with its
// status. Only libc: it starts in about a millisecond.
import Glibc

let supported = ["1.0.0", "1.1.0"]
let defaultSocket = "/run/mizar/cni.sock"

/// A JSON string literal.
func quote(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 {
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    return out + "\""
}

/// Just enough JSON to read the configuration's top-level strings: a whole
/// value is checked and skipped, strings are decoded.
struct MiniJSON {
    let b: [UInt8]
    var i = 0

    init(_ bytes: [UInt8]) { b = bytes }

    mutating func ws() { while i < b.count, [0x20, 0x09, 0x0a, 0x0d].contains(b[i]) { i += 1 } }

    mutating func expect(_ c: UInt8) -> Bool {
        ws()
        guard i < b.count, b[i] == c else { return false }
        i += 1
        return true
    }

    mutating func string() -> String? {
        guard expect(0x22) else { return nil }
        var out: [UInt8] = []
        while i < b.count {
            let c = b[i]
            i += 1
            if c == 0x22 { return String(decoding: out, as: UTF8.self) }
            if c == 0x5c {
                guard i < b.count else { return nil }
                let e = b[i]
                i += 1
                switch e {
                case 0x6e: out.append(0x0a)
                case 0x74: out.append(0x09)
                case 0x72: out.append(0x0d)
                case 0x62: out.append(0x08)
                case 0x66: out.append(0x0c)
                case 0x75:
                    guard i + 4 <= b.count, let v = UInt32(String(decoding: b[i..<i + 4], as: UTF8.self), radix: 16) else { return nil }
                    i += 4
                    out += Array(String(Unicode.Scalar(v) ?? "?").utf8)
                default: out.append(e)
                }
            } else {
                out.append(c)
            }
        }
        return nil
    }

    /// Skips any value; false if it is not valid JSON.
    mutating func skip(depth: Int = 0) -> Bool {
        ws()
        guard i < b.count, depth < 64 else { return false }
        switch b[i] {
        case 0x22: return string() != nil
        case 0x7b:
            i += 1
            if expect(0x7d) { return true }
            repeat {
                guard string() != nil, expect(0x3a), skip(depth: depth + 1) else { return false }
            } while expect(0x2c)
            return expect(0x7d)
        case 0x5b:
            i += 1
            if expect(0x5d) { return true }
            repeat { guard skip(depth: depth + 1) else { return false } } while expect(0x2c)
            return expect(0x5d)
        default:
            let start = i
            while i < b.count, !([0x2c, 0x7d, 0x5d, 0x20, 0x09, 0x0a, 0x0d].contains(b[i])) { i += 1 }
            let word = String(decoding: b[start..<i], as: UTF8.self)
            return ["true", "false", "null"].contains(word) || Double(word) != nil
        }
    }

    /// The top-level object's string members, or nil if this is not a JSON object.
    static func topLevelStrings(_ bytes: [UInt8]) -> [String: String]? {
        var p = MiniJSON(bytes)
        guard p.expect(0x7b) else { return nil }
        var result: [String: String] = [:]
        if p.expect(0x7d) { p.ws(); return p.i == bytes.count ? result : nil }
        repeat {
            guard let key = p.string(), p.expect(0x3a) else { return nil }
            p.ws()
            if p.i < bytes.count, bytes[p.i] == 0x22 {
                guard let v = p.string() else { return nil }
                result[key] = v
            } else if !p.skip() {
                return nil
            }
        } while p.expect(0x2c)
        guard p.expect(0x7d) else { return nil }
        p.ws()
        return p.i == bytes.count ? result : nil
    }
}

func env(_ name: String) -> String { getenv(name).map { String(cString: $0) } ?? "" }

func write(_ text: String, to fd: Int32) {
    let bytes = Array(text.utf8)
    var done = 0
    while done < bytes.count {
        let n = bytes[done...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        if n <= 0 { return }
        done += n
    }
}

func fail(_ code: Int, _ msg: String, details: String = "", version: String) -> Never {
    var out = "{\"cniVersion\":\(quote(version)),\"code\":\(code),\"msg\":\(quote(msg))"
    if !details.isEmpty { out += ",\"details\":\(quote(details))" }
    write(out + "}\n", to: 1)
    exit(1)
}

func readAll(_ fd: Int32) -> [UInt8] {
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return out }
        out += buffer.prefix(n)
    }
}

let command = env("CNI_COMMAND")
let stdinBytes = readAll(0)
let config = MiniJSON.topLevelStrings(stdinBytes)
let version = config?["cniVersion"] ?? "1.0.0"

if command == "VERSION" {
    write("{\"cniVersion\":\(quote(supported.contains(version) ? version : "1.1.0")),\"supportedVersions\":[\(supported.map(quote).joined(separator: ","))]}\n", to: 1)
    exit(0)
}
if command.isEmpty { fail(4, "CNI_COMMAND is not set; mizar-cni is run by a container runtime", version: version) }
guard let config else {
    fail(6, "the network configuration on stdin is not a JSON object", version: "1.0.0")
}
let socketPath = config["transitd"] ?? defaultSocket

// One request to transitd: the CNI_* variables and stdin as given.
var request = "{\"env\":{"
request += ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"]
    .map { "\(quote($0)):\(quote(env($0)))" }.joined(separator: ",")
request += "},\"stdin\":\(quote(String(decoding: stdinBytes, as: UTF8.self)))}"

let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
if fd < 0 { fail(5, "cannot make a socket: \(String(cString: strerror(errno)))", version: version) }
var address = sockaddr_un()
address.sun_family = sa_family_t(AF_UNIX)
let pathBytes = Array(socketPath.utf8)
if pathBytes.count >= MemoryLayout.size(ofValue: address.sun_path) {
    fail(7, "the transitd socket path \(socketPath) is too long", version: version)
}
withUnsafeMutableBytes(of: &address.sun_path) { raw in for (i, b) in pathBytes.enumerated() { raw[i] = b } }
let connected = withUnsafePointer(to: &address) { p in
    p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
}
if connected != 0 {
    let reason = String(cString: strerror(errno))
    fail(11, "transitd is not running on this host: cannot connect to \(socketPath): \(reason)",
         details: "start transitd (it serves CNI on \(socketPath)), or set \"transitd\" in the network configuration", version: version)
}
write(request, to: fd)
shutdown(fd, Int32(SHUT_WR))
let answer = readAll(fd)
close(fd)
guard let newline = answer.firstIndex(of: 0x0a), let status = Int(String(decoding: answer[..<newline], as: UTF8.self)) else {
    fail(5, "transitd closed the connection without an answer (\(answer.count) bytes)", version: version)
}
let output = answer[(newline + 1)...]
if !output.isEmpty { write(String(decoding: output, as: UTF8.self) + "\n", to: 1) }
exit(status == 0 ? 0 : 1)
