import MizarCore
import MizarPacket
import Testing

@Suite struct ChecksumTests {
    /// The IPv4 header from Wikipedia's "IPv4 header checksum" example.
    static let wikipediaHeader = hex("4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7")

    @Test func wikipediaIPv4HeaderKnownAnswer() {
        var zeroed = Self.wikipediaHeader
        zeroed[10] = 0
        zeroed[11] = 0
        #expect(internetChecksum(zeroed) == 0xB861)
        #expect(internetChecksum(Self.wikipediaHeader) == 0, "a header with a correct checksum sums to zero")
    }

    @Test func rfc1071ExampleKnownAnswer() {
        // RFC 1071 §3: the one's complement sum of these bytes is 0xddf2.
        #expect(internetChecksum(hex("0001 f203 f4f5 f6f7")) == ~UInt16(0xDDF2))
    }

    @Test func oddLengthIsPaddedWithZero() {
        #expect(internetChecksum([0x01]) == 0xFEFF)
        #expect(internetChecksum([0x00, 0x01, 0xF2]) == internetChecksum([0x00, 0x01, 0xF2, 0x00]))
        #expect(internetChecksum([]) == 0xFFFF)
    }

    @Test func nonContiguousCollectionsMatchArrays() {
        let bytes = Self.wikipediaHeader
        #expect(internetChecksum(bytes.reversed()) == internetChecksum(Array(bytes.reversed())))
        #expect(internetChecksum(bytes[3...]) == referenceChecksum(Array(bytes[3...])))
    }

    @Test func largeInputsDoNotOverflow() {
        var rng = SplitMix64(seed: 7)
        let bytes = rng.bytes(200_001)
        #expect(internetChecksum(bytes) == referenceChecksum(bytes))
        #expect(internetChecksum([UInt8](repeating: 0xFF, count: 300_000)) == 0)
    }

    @Test func pseudoHeaderSumChainsLikeExplicitBytes() {
        let segment = Array("pseudo header".utf8)
        let sum = ipv4PseudoHeaderSum(
            src: Fixture.hostA, dst: Fixture.hostB, protocol: IPProtocol.udp, length: UInt16(segment.count))
        #expect(internetChecksum(segment, initial: sum)
            == referenceTransportChecksum(src: Fixture.hostA, dst: Fixture.hostB, protocol: IPProtocol.udp, segment: segment))
        #expect(transportChecksum(src: Fixture.hostA, dst: Fixture.hostB, protocol: IPProtocol.udp, segment: segment)
            == internetChecksum(segment, initial: sum))
    }
}
