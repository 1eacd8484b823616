#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import MizarCore

/// Classic libpcap files (not pcapng) so failing test inputs and outputs can be
/// opened in Wireshark/tcpdump. Little-endian, microsecond timestamps, v2.4,
/// LINKTYPE_ETHERNET.
///
/// Timestamps are synthetic (frame i at 0 s + i µs) so the same frames always
/// produce byte-identical files and diffs stay meaningful.
public struct PcapWriter: Sendable {
    public static let magic: UInt32 = 0xA1B2_C3D4
    public static let snapLength: UInt32 = 65535
    public static let linkTypeEthernet: UInt32 = 1

    public static func data(frames: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(24 + frames.reduce(0) { $0 + 16 + $1.count })
        out.append(le: magic)
        out.append(le: UInt16(2))
        out.append(le: UInt16(4))
        out.append(le: UInt32(0))  // thiszone: timestamps are UTC
        out.append(le: UInt32(0))  // sigfigs: always 0 in practice
        out.append(le: snapLength)
        out.append(le: linkTypeEthernet)
        for (index, frame) in frames.enumerated() {
            // Longer frames are cut to the snap length but keep their original
            // length, exactly as a capture would record them.
            let captured = min(frame.count, Int(snapLength))
            out.append(le: UInt32(0))
            out.append(le: UInt32(truncatingIfNeeded: index))
            out.append(le: UInt32(captured))
            out.append(le: UInt32(truncatingIfNeeded: frame.count))
            out += frame.prefix(captured)
        }
        return out
    }

    public static func write(frames: [[UInt8]], to path: String) throws(SystemError) {
        let bytes = data(frames: frames)
        guard let file = fopen(path, "wb") else {
            throw SystemError(call: "fopen", subject: path, errno: errno)
        }
        let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        let writeErrno = errno
        // fclose flushes buffered data, so its failure is a lost write too.
        let closed = fclose(file) == 0
        guard written == bytes.count else {
            throw SystemError(call: "fwrite", subject: path, errno: writeErrno)
        }
        guard closed else {
            throw SystemError(call: "fclose", subject: path, errno: errno)
        }
    }
}

extension Array where Element == UInt8 {
    fileprivate mutating func append(le value: UInt16) {
        append(UInt8(truncatingIfNeeded: value))
        append(UInt8(truncatingIfNeeded: value >> 8))
    }

    fileprivate mutating func append(le value: UInt32) {
        append(le: UInt16(truncatingIfNeeded: value))
        append(le: UInt16(truncatingIfNeeded: value >> 16))
    }
}
