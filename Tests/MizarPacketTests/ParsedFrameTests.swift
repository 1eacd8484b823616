import MizarCore
import MizarPacket
import Testing

@Suite struct ParsedFrameTests {
    static let udpFrame = Packet.udpPacket(
        srcMAC: Fixture.macA, dstMAC: Fixture.macB, srcIP: Fixture.hostA, dstIP: Fixture.hostB,
        srcPort: 1000, dstPort: 2000, payload: Fixture.payload)

    static let geneveFrame = Packet.genevePacket(
        srcMAC: Fixture.macA, dstMAC: Fixture.macB, srcIP: Fixture.nodeA, dstIP: Fixture.nodeB, srcPort: 40000,
        vni: 99, options: [GeneveOption(optionClass: 1, type: 2, data: [0, 0, 0, 1])], inner: udpFrame)

    @Test func everyTruncationThrowsInsteadOfTrapping() {
        for frame in [Self.udpFrame, Self.geneveFrame] {
            for length in 0..<frame.count {
                #expect(throws: ValidationError.self, "prefix of \(length) bytes") {
                    try ParsedFrame(Array(frame.prefix(length)))
                }
            }
            #expect(throws: Never.self) { try ParsedFrame(frame) }
        }
    }

    @Test func truncatedEthernetReportsLayerAndOffsets() {
        let error = #expect(throws: ValidationError.self) { try ParsedFrame(Array(repeating: 0, count: 10)) }
        #expect(error == ValidationError(
            field: "ethernet", reason: "truncated: needs 14 bytes at offset 0 but only 10 remain before offset 10"))
    }

    @Test func truncatedIPv4PayloadBlamesTotalLength() {
        let error = #expect(throws: ValidationError.self) { try ParsedFrame(Array(Self.udpFrame.dropLast())) }
        #expect(error?.field == "ipv4.totalLength")
        #expect(error?.reason.contains("needs 33 bytes at offset 14") == true)
    }

    @Test func impossibleHeaderLengthsAreRejected() {
        var shortIHL = Self.udpFrame
        shortIHL[14] = 0x44
        #expect((#expect(throws: ValidationError.self) { try ParsedFrame(shortIHL) })?.field == "ipv4.ihl")

        var shortTotal = Self.udpFrame
        shortTotal[16] = 0
        shortTotal[17] = 19
        #expect((#expect(throws: ValidationError.self) { try ParsedFrame(shortTotal) })?.field == "ipv4.totalLength")

        var shortUDP = Self.udpFrame
        shortUDP[34 + 5] = 7
        #expect((#expect(throws: ValidationError.self) { try ParsedFrame(shortUDP) })?.field == "udp.length")

        var longUDP = Self.udpFrame
        longUDP[34 + 5] = 14
        #expect((#expect(throws: ValidationError.self) { try ParsedFrame(longUDP) })?.field == "udp.length")
    }

    @Test func badChecksumsAreReportedNotThrown() throws {
        var frame = Packet.tcpPacket(
            srcMAC: Fixture.macA, dstMAC: Fixture.macB, srcIP: Fixture.hostA, dstIP: Fixture.hostB,
            srcPort: 1, dstPort: 2, flags: TCPFlag.ack, payload: [1, 2, 3, 4])
        frame[14 + 8] -= 1  // TTL changed without fixing the header checksum
        frame[frame.count - 1] ^= 0xFF
        let parsed = try ParsedFrame(frame)
        #expect(parsed.ipv4?.checksumValid == false)
        #expect(parsed.tcp?.checksumValid == false)
        #expect(parsed.l4Payload == [1, 2, 3, 0xFB])
    }

    @Test func ethernetPaddingIsIgnored() throws {
        let padded = Self.udpFrame + [UInt8](repeating: 0, count: 20)
        let parsed = try ParsedFrame(padded)
        #expect(parsed.l4Payload == Fixture.payload)
        #expect(parsed.udp?.checksumValid == true)
        #expect(parsed.ethernetPayload.count == padded.count - 14)
    }

    @Test func unknownEtherTypeKeepsPayloadOnly() throws {
        let frame = Packet.ethernet(dst: Fixture.macB, src: Fixture.macA, etherType: EtherType.ipv6, payload: [1, 2])
        let parsed = try ParsedFrame(frame)
        #expect(parsed.etherType == EtherType.ipv6)
        #expect(parsed.ipv4 == nil && parsed.arp == nil && parsed.udp == nil)
        #expect(parsed.ethernetPayload == [1, 2])
        #expect(parsed.l4Payload.isEmpty)
    }

    @Test func unknownIPProtocolExposesIPPayload() throws {
        let frame = Packet.ethernet(
            dst: Fixture.macB, src: Fixture.macA, etherType: EtherType.ipv4,
            payload: Packet.ipv4(src: Fixture.hostA, dst: Fixture.hostB, protocol: 47, payload: [7, 7, 7]))
        let parsed = try ParsedFrame(frame)
        #expect(parsed.ipv4?.protocol == 47)
        #expect(parsed.udp == nil && parsed.tcp == nil && parsed.icmp == nil)
        #expect(parsed.l4Payload == [7, 7, 7])
    }

    /// Smoke fuzz: random and bit-flipped frames must decode or throw, never trap.
    @Test func randomAndMutatedInputNeverTraps() {
        var rng = SplitMix64(seed: 0x5EED)
        let seeds = [Self.udpFrame, Self.geneveFrame]
        for iteration in 0..<4000 {
            var input: [UInt8]
            if iteration.isMultiple(of: 4) {
                input = rng.bytes(Int(rng.next() % 128))
            } else {
                input = seeds[iteration % seeds.count]
                for _ in 0..<(1 + rng.next() % 4) {
                    let index = Int(rng.next() % UInt64(input.count))
                    input[index] ^= UInt8(truncatingIfNeeded: rng.next()) | 1
                }
            }
            _ = try? ParsedFrame(input)
        }
    }
}
