import MizarCore

/// RFC 1071 Internet checksum (IPv4 header, ICMP, UDP, TCP).
///
/// `initial` is an *unfolded, uncomplemented* partial sum, so a pseudo-header
/// sum from `ipv4PseudoHeaderSum` can be chained in without building the
/// pseudo-header bytes. An odd trailing byte is treated as if followed by a zero
/// byte, as the RFC requires.
///
/// Verifying: the checksum over data that already contains a correct checksum
/// field is 0.
public func internetChecksum(_ bytes: some Collection<UInt8>, initial: UInt32 = 0) -> UInt16 {
    // Contiguous fast path because benchmarks and fuzzers checksum whole frames.
    let sum = bytes.withContiguousStorageIfAvailable { onesComplementSum($0, initial: UInt64(initial)) }
        ?? Array(bytes).withUnsafeBufferPointer { onesComplementSum($0, initial: UInt64(initial)) }
    return ~fold(sum)
}

/// Sum of the IPv4 pseudo-header (RFC 768 / RFC 793) to pass as `initial` to
/// `internetChecksum`. `length` is the transport header plus payload length.
public func ipv4PseudoHeaderSum(src: IPv4Address, dst: IPv4Address, protocol: UInt8, length: UInt16) -> UInt32 {
    (src.value >> 16) + (src.value & 0xFFFF)
        + (dst.value >> 16) + (dst.value & 0xFFFF)
        + UInt32(`protocol`) + UInt32(length)
}

/// Checksum of a UDP or TCP segment (header + payload) including the IPv4
/// pseudo-header. The segment's own checksum field must be zero when computing
/// a checksum to store, and left in place when verifying (result 0 == valid).
public func transportChecksum(
    src: IPv4Address, dst: IPv4Address, protocol: UInt8, segment: some Collection<UInt8>
) -> UInt16 {
    precondition(segment.count <= Int(UInt16.max), "segment of \(segment.count) bytes exceeds IPv4 limits")
    let pseudo = ipv4PseudoHeaderSum(src: src, dst: dst, protocol: `protocol`, length: UInt16(segment.count))
    return internetChecksum(segment, initial: pseudo)
}

// A 64-bit accumulator cannot overflow for any input that fits in memory, so
// carries are folded once at the end instead of per word.
private func onesComplementSum(_ buffer: UnsafeBufferPointer<UInt8>, initial: UInt64) -> UInt64 {
    var sum = initial
    var index = 0
    while index + 1 < buffer.count {
        sum += UInt64(buffer[index]) << 8 | UInt64(buffer[index + 1])
        index += 2
    }
    if index < buffer.count {
        sum += UInt64(buffer[index]) << 8
    }
    return sum
}

private func fold(_ sum: UInt64) -> UInt16 {
    var folded = sum
    while folded >> 16 != 0 {
        folded = (folded & 0xFFFF) + (folded >> 16)
    }
    return UInt16(folded)
}
