/// Maglev consistent hashing (Eisenbud et al., NSDI 2016): a lookup table of
/// `size` entries (a prime), each naming one backend. Every backend gets
/// the same number of entries, give or take one, and adding or removing one
/// backend of N moves about 1/N of the entries and leaves the others alone.
///
/// The table depends only on the set of backend keys, not on their order:
/// keys are sorted first, so every bouncer of a service computes the very
/// same table and a flow gets the same backend whichever bouncer it meets.
public enum Maglev {
    /// The table: for each entry, an index into `keys` sorted ascending.
    /// Empty when there are no keys.
    public static func table(keys: [UInt64], size: Int) -> [UInt16] {
        precondition(size > 1 && isPrime(size), "the table size must be a prime")
        let sorted = Array(Set(keys)).sorted()
        precondition(sorted.count <= Int(UInt16.max), "at most 65535 backends")
        guard !sorted.isEmpty else { return [] }
        let m = UInt64(size)
        // Each backend's preference list is offset + j * skip (mod size):
        // skip is never 0 and size is prime, so it visits every entry.
        let offsets = sorted.map { mix($0 ^ 0x6d61_676c_6576_3031) % m }
        let skips = sorted.map { mix($0 ^ 0x6d61_676c_6576_3032) % (m - 1) + 1 }
        var next = [UInt64](repeating: 0, count: sorted.count)
        var table = [Int32](repeating: -1, count: size)
        var filled = 0
        while true {
            for i in sorted.indices {
                var c = (offsets[i] &+ next[i] &* skips[i]) % m
                while table[Int(c)] >= 0 {
                    next[i] += 1
                    c = (offsets[i] &+ next[i] &* skips[i]) % m
                }
                table[Int(c)] = Int32(i)
                next[i] += 1
                filled += 1
                if filled == size { return table.map { UInt16($0) } }
            }
        }
    }

    /// The keys in table order (what `table` indexes).
    public static func order(keys: [UInt64]) -> [UInt64] { Array(Set(keys)).sorted() }

    /// SplitMix64's finaliser: a fixed, well-mixed 64-bit hash.
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    static func isPrime(_ n: Int) -> Bool {
        if n < 2 { return false }
        var d = 2
        while d * d <= n {
            if n % d == 0 { return false }
            d += 1
        }
        return true
    }
}
