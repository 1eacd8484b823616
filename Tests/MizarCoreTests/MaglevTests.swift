import MizarCore
import Testing

@Suite struct MaglevTests {
    /// The data plane's table size (MZ_MAGLEV_SIZE).
    static let size = 65521

    /// Backend keys as the data plane makes them: VNI << 32 | IPv4 address.
    static func keys(_ n: Int, from first: Int = 0) -> [UInt64] {
        (first..<first + n).map { UInt64(100) << 32 | UInt64(0x0a00_0100 + $0) }
    }

    /// The key each table entry names.
    static func owners(_ keys: [UInt64]) -> [UInt64] {
        let order = Maglev.order(keys: keys)
        return Maglev.table(keys: keys, size: size).map { order[Int($0)] }
    }

    @Test("every backend's share is within 1% of even", arguments: [5, 17, 100])
    func evenShares(_ n: Int) {
        let table = Maglev.table(keys: Self.keys(n), size: Self.size)
        #expect(table.count == Self.size)
        var counts = [Int](repeating: 0, count: n)
        for e in table { counts[Int(e)] += 1 }
        let even = Double(Self.size) / Double(n)
        for (i, c) in counts.enumerated() {
            #expect(abs(Double(c) - even) / even <= 0.01, "backend \(i): \(c) entries, even is \(even)")
        }
    }

    @Test("removing one backend of N moves its 1/N and little else", arguments: [5, 17, 100])
    func removeOne(_ n: Int) {
        let all = Self.keys(n)
        let before = Self.owners(all)
        let removed = all[n / 2]
        let after = Self.owners(all.filter { $0 != removed })
        var moved = 0, movedOthers = 0
        for i in 0..<Self.size where before[i] != after[i] {
            moved += 1
            if before[i] != removed { movedOthers += 1 }
        }
        #expect(!after.contains(removed))
        let share = Double(moved) / Double(Self.size)
        print("maglev remove 1 of \(n): \(moved) entries moved (\(share), 1/N = \(1 / Double(n))), \(movedOthers) of live backends")
        // Every entry of the removed backend must move. Maglev moves a few
        // more (the paper's known cost of its even shares): measured here
        // 1.00x of 1/N at 5 backends, 1.10x at 17, 1.58x at 100.
        #expect(share >= 1 / Double(n) * 0.97)
        #expect(share <= 1 / Double(n) * 1.7, "moved \(share) of the table")
        #expect(Double(movedOthers) / Double(Self.size) <= 0.7 / Double(n))
    }

    @Test("adding one backend to N moves about 1/(N+1), mostly to the new one", arguments: [5, 17, 100])
    func addOne(_ n: Int) {
        let all = Self.keys(n)
        let added = Self.keys(1, from: 1000)[0]
        let before = Self.owners(all)
        let after = Self.owners(all + [added])
        var moved = 0, toNew = 0
        for i in 0..<Self.size where before[i] != after[i] {
            moved += 1
            if after[i] == added { toNew += 1 }
        }
        let share = Double(moved) / Double(Self.size)
        print("maglev add 1 to \(n): \(moved) entries moved (\(share), 1/(N+1) = \(1 / Double(n + 1))), \(toNew) to the new backend")
        #expect(share >= 1 / Double(n + 1) * 0.97)
        #expect(share <= 1 / Double(n + 1) * 1.7)
        #expect(Double(toNew) / Double(Self.size) >= 1 / Double(n + 1) * 0.97, "the new backend gets its full share")
    }

    @Test func orderOfKeysDoesNotMatter() {
        let k = Self.keys(17)
        #expect(Maglev.table(keys: k, size: Self.size) == Maglev.table(keys: k.reversed(), size: Self.size))
        #expect(Maglev.table(keys: [], size: Self.size).isEmpty)
        #expect(Set(Maglev.table(keys: Self.keys(1), size: Self.size)) == [0])
    }
}
