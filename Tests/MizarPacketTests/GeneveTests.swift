import MizarCore
import MizarPacket
import Testing

@Suite struct GeneveTests {
    static let inner = Packet.tcpPacket(
        srcMAC: Fixture.macA, dstMAC: Fixture.macB, srcIP: Fixture.hostA, dstIP: Fixture.hostB,
        srcPort: 33000, dstPort: 22, flags: TCPFlag.syn, payload: [])

    /// Wraps Geneve bytes in Ethernet/IPv4/UDP(6081) without going through
    /// `genevePacket`, so malformed Geneve can be embedded.
    static func outer(_ geneve: [UInt8]) -> [UInt8] {
        Packet.ethernet(
            dst: Fixture.macB, src: Fixture.macA, etherType: EtherType.ipv4,
            payload: Packet.ipv4(
                src: Fixture.nodeA, dst: Fixture.nodeB, protocol: IPProtocol.udp,
                payload: Packet.udp(
                    src: Fixture.nodeA, dst: Fixture.nodeB, srcPort: 50000, dstPort: genevePort, payload: geneve)))
    }

    @Test func headerLayout() {
        let header = Packet.geneve(vni: 0xAB_CDEF, oam: true, critical: true, version: 1, payload: [0xEE])
        #expect(header == [0x40, 0xC0, 0x65, 0x58, 0xAB, 0xCD, 0xEF, 0x00, 0xEE])
    }

    @Test func optionEncoding() {
        let option = GeneveOption(optionClass: 0x0102, type: 0x83, data: [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(option.encoded == [0x01, 0x02, 0x83, 0x02, 1, 2, 3, 4, 5, 6, 7, 8])
        #expect(option.isCritical)
        #expect(GeneveOption(optionClass: 1, type: 1).encoded == [0, 1, 1, 0])
    }

    @Test func roundTripWithTwoOptions() throws {
        let options = [
            GeneveOption(optionClass: 0x0102, type: 0x81, data: [0xDE, 0xAD, 0xBE, 0xEF]),
            GeneveOption(optionClass: 0xFFFF, type: 0x02, data: [1, 2, 3, 4, 5, 6, 7, 8]),
        ]
        let frame = Packet.genevePacket(
            srcMAC: Fixture.macA, dstMAC: Fixture.macB, srcIP: Fixture.nodeA, dstIP: Fixture.nodeB,
            srcPort: 51234, vni: 4242, options: options, inner: Self.inner)

        let parsed = try ParsedFrame(frame)
        let udp = try #require(parsed.udp)
        #expect(udp.dstPort == genevePort && udp.srcPort == 51234)
        #expect(udp.checksum == 0 && udp.checksumValid == nil)
        let geneve = try #require(parsed.geneve)
        #expect(geneve.version == 0 && !geneve.oam && !geneve.critical)
        #expect(geneve.optLenWords == 5)
        #expect(geneve.protocolType == EtherType.transparentEthernet)
        #expect(geneve.vni == 4242)
        #expect(geneve.options == options)
        #expect(geneve.payload == Self.inner)

        let inner = try #require(parsed.inner)
        #expect(inner.src == Fixture.macA && inner.dst == Fixture.macB)
        #expect(inner.ipv4?.src == Fixture.hostA && inner.ipv4?.dst == Fixture.hostB)
        #expect(inner.tcp?.dstPort == 22 && inner.tcp?.flags == TCPFlag.syn && inner.tcp?.checksumValid == true)
        #expect(inner.inner == nil)
        #expect(try ParsedFrame(Self.inner) == inner)
    }

    @Test func udpChecksumCanBeEnabled() throws {
        let frame = Packet.genevePacket(
            srcMAC: Fixture.macA, dstMAC: Fixture.macB, srcIP: Fixture.nodeA, dstIP: Fixture.nodeB,
            srcPort: 1, vni: 1, udpChecksum: true, inner: Self.inner)
        #expect(try ParsedFrame(frame).udp?.checksumValid == true)
    }

    @Test func otherProtocolTypesHaveNoInnerFrame() throws {
        let parsed = try ParsedFrame(Self.outer(Packet.geneve(vni: 7, protocolType: EtherType.ipv4, payload: [1, 2])))
        #expect(parsed.geneve?.protocolType == EtherType.ipv4)
        #expect(parsed.geneve?.payload == [1, 2])
        #expect(parsed.inner == nil)
    }

    @Test func optionLengthPastOptLenIsRejected() {
        // One word of options whose length field claims 31 more words.
        let geneve = Packet.geneve(vni: 7, rawOptions: [0x01, 0x02, 0x03, 0x1F], payload: Self.inner)
        let error = #expect(throws: ValidationError.self) { try ParsedFrame(Self.outer(geneve)) }
        #expect(error?.field == "geneve.options[0].length")
        #expect(error?.reason.contains("truncated") == true)
    }

    @Test func rawOptionsFollowEncodedOptions() throws {
        let good = GeneveOption(optionClass: 9, type: 9, data: [1, 2, 3, 4])
        let geneve = Packet.geneve(vni: 7, options: [good], rawOptions: [0, 8, 8, 0], payload: Self.inner)
        let parsed = try ParsedFrame(Self.outer(geneve))
        #expect(parsed.geneve?.options == [good, GeneveOption(optionClass: 8, type: 8)])
        #expect(parsed.geneve?.optLenWords == 3)
    }

    @Test func optLenPastThePacketIsRejected() {
        var geneve = Packet.geneve(vni: 7, payload: [1, 2, 3, 4])
        geneve[0] = 0x3F
        let error = #expect(throws: ValidationError.self) { try ParsedFrame(Self.outer(geneve)) }
        #expect(error?.field == "geneve.optLenWords")
    }

    @Test func truncatedInnerFrameNamesTheInnerLayer() {
        let error = #expect(throws: ValidationError.self) {
            try ParsedFrame(Self.outer(Packet.geneve(vni: 7, payload: Array(Self.inner.prefix(30)))))
        }
        #expect(error?.field == "inner.ipv4")
    }
}
