import MizarPacket
import Testing

@Suite struct SplitMix64Tests {
    @Test func matchesReferenceOutputForSeed1234567() {
        var rng = SplitMix64(seed: 1_234_567)
        let expected: [UInt64] = [
            6_457_827_717_110_365_317, 3_203_168_211_198_807_973, 9_817_491_932_198_370_423,
            4_593_380_528_125_082_431, 16_408_922_859_458_223_821,
        ]
        #expect((0..<5).map { _ in rng.next() } == expected)
    }

    @Test func sameSeedSameStream() {
        var first = SplitMix64(seed: 42)
        var second = SplitMix64(seed: 42)
        #expect(first.bytes(37) == second.bytes(37))
        #expect(first.next() == second.next())
        #expect(Int.random(in: 0..<1000, using: &first) == Int.random(in: 0..<1000, using: &second))
    }

    @Test func bytesAreLittleEndianWordsOfNext() {
        var words = SplitMix64(seed: 9)
        var bytes = SplitMix64(seed: 9)
        let word = words.next()
        let expected = (0..<8).map { UInt8(truncatingIfNeeded: word >> (8 * $0)) }
        #expect(bytes.bytes(3) == Array(expected.prefix(3)))
        #expect(bytes.bytes(0).isEmpty)
        #expect(bytes.next() == words.next(), "a partial word still consumes one next()")
    }
}
