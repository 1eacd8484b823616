/// SplitMix64 (Steele, Lea & Flood 2014): tiny, fast, and fully determined by
/// its seed, so a fuzz failure is reproduced by logging one `UInt64`.
///
/// Only the `next()` stream is guaranteed stable. Standard-library helpers such
/// as `Int.random(in:using:)` may change how they consume it between Swift
/// releases, so derive fuzz inputs from `next()`/`bytes(_:)` when exact
/// cross-toolchain replay matters.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) {
        state = seed
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// `count` bytes, taken little-endian from successive `next()` values.
    public mutating func bytes(_ count: Int) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        while out.count < count {
            var word = next()
            for _ in 0..<min(8, count - out.count) {
                out.append(UInt8(truncatingIfNeeded: word))
                word >>= 8
            }
        }
        return out
    }
}
