// Big-endian helpers: every multi-byte wire field is network order, and keeping
// the shifts in one place keeps the builders and the decoder symmetric.

extension Array where Element == UInt8 {
    mutating func append(be value: UInt16) {
        append(UInt8(truncatingIfNeeded: value >> 8))
        append(UInt8(truncatingIfNeeded: value))
    }

    mutating func append(be value: UInt32) {
        append(be: UInt16(truncatingIfNeeded: value >> 16))
        append(be: UInt16(truncatingIfNeeded: value))
    }

    mutating func put(be value: UInt16, at offset: Int) {
        self[offset] = UInt8(truncatingIfNeeded: value >> 8)
        self[offset + 1] = UInt8(truncatingIfNeeded: value)
    }

    // Readers assume the caller has bounds-checked; ParsedFrame does so with
    // descriptive errors before reading.
    func u16(at offset: Int) -> UInt16 {
        UInt16(self[offset]) << 8 | UInt16(self[offset + 1])
    }

    func u24(at offset: Int) -> UInt32 {
        UInt32(self[offset]) << 16 | UInt32(u16(at: offset + 1))
    }

    func u32(at offset: Int) -> UInt32 {
        UInt32(u16(at: offset)) << 16 | UInt32(u16(at: offset + 2))
    }
}
