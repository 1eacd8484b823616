import MizarCore

/// Bounds checks for the decoder. Every length a packet claims is checked here
/// before it is trusted, so malformed input becomes a `ValidationError` naming
/// the layer and offset instead of an out-of-bounds trap.
struct WireReader {
    let bytes: [UInt8]
    /// Prepended to field names, e.g. "inner." for the encapsulated frame, so
    /// an error says which of the nested frames was bad.
    let fieldPrefix: String

    /// Requires `count` bytes at `offset` that do not extend past `end`
    /// (the end of the enclosing layer, not necessarily of the buffer).
    func need(_ count: Int, at offset: Int, end: Int, _ field: String) throws(ValidationError) {
        guard offset + count > end else { return }
        throw error(
            field,
            "truncated: needs \(count) bytes at offset \(offset) but only \(max(0, end - offset)) remain before offset \(end)")
    }

    func error(_ field: String, _ reason: String) -> ValidationError {
        ValidationError(field: fieldPrefix + field, reason: reason)
    }

    subscript(offset: Int) -> UInt8 { bytes[offset] }
    func u16(at offset: Int) -> UInt16 { bytes.u16(at: offset) }
    func u24(at offset: Int) -> UInt32 { bytes.u24(at: offset) }
    func u32(at offset: Int) -> UInt32 { bytes.u32(at: offset) }
    func slice(_ range: Range<Int>) -> [UInt8] { Array(bytes[range]) }
    func mac(at offset: Int) -> MACAddress { MACAddress(bytes: bytes[offset..<offset + 6]) }
    func ipv4(at offset: Int) -> IPv4Address { IPv4Address(bytes: bytes[offset..<offset + 4]) }
}
