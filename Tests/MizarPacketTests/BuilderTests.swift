import MizarCore
import MizarPacket
import Testing

@Suite struct BuilderTests {
    @Test func ethernetLayoutHasNoPaddingOrFCS() {
        let frame = Packet.ethernet(dst: Fixture.macB, src: Fixture.macA, etherType: 0x1234, payload: [0xAA])
        #expect(frame == Fixture.macB.bytes + Fixture.macA.bytes + [0x12, 0x34, 0xAA])
    }

    @Test func ipv4HeaderMatchesWikipediaExample() {
        let packet = Packet.ipv4(
            src: IPv4Address(192, 168, 0, 1), dst: IPv4Address(192, 168, 0, 199), protocol: IPProtocol.udp,
            payload: [UInt8](repeating: 0, count: 0x73 - 20), dontFragment: true)
        #expect(Array(packet.prefix(20)) == ChecksumTests.wikipediaHeader)
        #expect(packet.count == 0x73)
    }

    @Test func ipv4OptionsFlagsAndFragmentOffset() throws {
        let packet = Packet.ipv4(
            src: Fixture.hostA, dst: Fixture.hostB, protocol: 200, payload: [1, 2, 3], ttl: 5, tos: 0xB8, id: 0xBEEF,
            moreFragments: true, fragmentOffset: 185, options: [0x01, 0x01, 0x01, 0x00])
        #expect(packet[0] == 0x46)
        #expect(packet[1] == 0xB8)
        #expect(Array(packet[2...7]) == [0x00, 27, 0xBE, 0xEF, 0x20, 0xB9])
        #expect(packet[8] == 5 && packet[9] == 200)
        #expect(internetChecksum(packet.prefix(24)) == 0)

        let parsed = try ParsedFrame(Packet.ethernet(dst: Fixture.macB, src: Fixture.macA, etherType: EtherType.ipv4, payload: packet))
        let ip = try #require(parsed.ipv4)
        #expect(ip.ihl == 6 && ip.totalLength == 27 && ip.id == 0xBEEF && ip.tos == 0xB8 && ip.ttl == 5)
        #expect(ip.moreFragments && !ip.dontFragment && ip.flags == 0b001 && ip.fragmentOffset == 185)
        #expect(ip.options == [0x01, 0x01, 0x01, 0x00])
        #expect(ip.checksumValid)
        #expect(parsed.l4Payload == [1, 2, 3], "fragments expose the raw IP payload")
    }

    @Test func udpKnownAnswer() {
        let segment = Packet.udp(src: Fixture.hostA, dst: Fixture.hostB, srcPort: 12345, dstPort: 80, payload: Fixture.payload)
        #expect(segment == [0x30, 0x39, 0x00, 0x50, 0x00, 0x0D, 0x77, 0x76] + Fixture.payload)
    }

    @Test func udpChecksumVerifiedByRecomputationFromParsedFrame() throws {
        let frame = Packet.udpPacket(
            srcMAC: Fixture.macA, dstMAC: Fixture.macB, srcIP: Fixture.hostA, dstIP: Fixture.hostB,
            srcPort: 5353, dstPort: 9999, payload: Array("odd-length!".utf8))
        let parsed = try ParsedFrame(frame)
        let ip = try #require(parsed.ipv4)
        let udp = try #require(parsed.udp)
        #expect(ip.checksumValid && ip.protocol == IPProtocol.udp)
        #expect(udp.srcPort == 5353 && udp.dstPort == 9999 && Int(udp.length) == 8 + 11)
        #expect(udp.checksumValid == true)
        #expect(parsed.l4Payload == Array("odd-length!".utf8))

        var segment = [UInt8](frame[(14 + 20)...])
        segment[6] = 0
        segment[7] = 0
        #expect(udp.checksum == referenceTransportChecksum(src: ip.src, dst: ip.dst, protocol: IPProtocol.udp, segment: segment))
    }

    @Test func udpWithoutChecksumSendsZero() throws {
        let segment = Packet.udp(
            src: Fixture.hostA, dst: Fixture.hostB, srcPort: 1, dstPort: 2, payload: Fixture.payload, checksum: false)
        #expect(segment[6] == 0 && segment[7] == 0)
        let frame = Packet.ethernet(
            dst: Fixture.macB, src: Fixture.macA, etherType: EtherType.ipv4,
            payload: Packet.ipv4(src: Fixture.hostA, dst: Fixture.hostB, protocol: IPProtocol.udp, payload: segment))
        #expect(try ParsedFrame(frame).udp?.checksumValid == nil)
    }

    @Test func udpComputedZeroChecksumIsSentAsAllOnes() throws {
        // Choose the last payload word so the one's complement sum is 0xFFFF,
        // which makes the computed checksum 0.
        let probe = Packet.udp(src: Fixture.hostA, dst: Fixture.hostB, srcPort: 7, dstPort: 7, payload: [0, 0])
        let word = UInt16(probe[6]) << 8 | UInt16(probe[7])
        let payload = [UInt8(word >> 8), UInt8(word & 0xFF)]
        let segment = Packet.udp(src: Fixture.hostA, dst: Fixture.hostB, srcPort: 7, dstPort: 7, payload: payload)
        #expect(segment[6] == 0xFF && segment[7] == 0xFF)
        let frame = Packet.ethernet(
            dst: Fixture.macB, src: Fixture.macA, etherType: EtherType.ipv4,
            payload: Packet.ipv4(src: Fixture.hostA, dst: Fixture.hostB, protocol: IPProtocol.udp, payload: segment))
        #expect(try ParsedFrame(frame).udp?.checksumValid == true)
    }

    @Test func tcpKnownAnswer() {
        let segment = Packet.tcp(
            src: Fixture.hostA, dst: Fixture.hostB, srcPort: 40000, dstPort: 443, seq: 1, ack: 0, flags: TCPFlag.syn,
            payload: [])
        #expect(segment == hex("9c40 01bb 00000001 00000000 5002 ffff fde3 0000"))
    }

    @Test func tcpChecksumVerifiedByRecomputationFromParsedFrame() throws {
        let frame = Packet.tcpPacket(
            srcMAC: Fixture.macA, dstMAC: Fixture.macB, srcIP: Fixture.hostA, dstIP: Fixture.hostB,
            srcPort: 40000, dstPort: 80, seq: 0xDEAD_BEEF, ack: 0x0102_0304, flags: TCPFlag.psh | TCPFlag.ack,
            payload: Array("GET / HTTP/1.1\r\n".utf8))
        let parsed = try ParsedFrame(frame)
        let ip = try #require(parsed.ipv4)
        let tcp = try #require(parsed.tcp)
        #expect(tcp.srcPort == 40000 && tcp.dstPort == 80)
        #expect(tcp.seq == 0xDEAD_BEEF && tcp.ack == 0x0102_0304)
        #expect(tcp.flags == 0x18 && tcp.dataOffset == 5 && tcp.window == 65535 && tcp.urgentPointer == 0)
        #expect(tcp.options.isEmpty)
        #expect(tcp.checksumValid)
        #expect(parsed.l4Payload == Array("GET / HTTP/1.1\r\n".utf8))

        var segment = [UInt8](frame[(14 + 20)...])
        segment[16] = 0
        segment[17] = 0
        #expect(tcp.checksum == referenceTransportChecksum(src: ip.src, dst: ip.dst, protocol: IPProtocol.tcp, segment: segment))
    }

    @Test func icmpEchoRequestAndReply() throws {
        let request = Packet.icmpEcho(id: 0x1234, sequence: 1, payload: [9, 8, 7])
        #expect(Array(request.prefix(2)) == [8, 0])
        #expect(Array(request[4..<8]) == [0x12, 0x34, 0x00, 0x01])
        #expect(internetChecksum(request) == 0)
        #expect(Packet.icmpEcho(request: false, id: 1, sequence: 1, payload: [])[0] == 0)

        let frame = Packet.icmpPacket(
            srcMAC: Fixture.macA, dstMAC: Fixture.macB, srcIP: Fixture.hostA, dstIP: Fixture.hostB,
            request: false, id: 0x1234, sequence: 42, payload: [1, 2, 3])
        let parsed = try ParsedFrame(frame)
        let icmp = try #require(parsed.icmp)
        #expect(icmp.type == 0 && icmp.code == 0 && icmp.id == 0x1234 && icmp.sequence == 42)
        #expect(icmp.checksumValid)
        #expect(parsed.l4Payload == [1, 2, 3])
        #expect(parsed.ipv4?.protocol == IPProtocol.icmp)
    }
}
