import MizarCore
import MizarPacket
import Testing

@Suite struct ARPTests {
    @Test func layoutBytes() {
        let body = Packet.arp(
            operation: ARPOperation.request, senderMAC: Fixture.macA, senderIP: Fixture.hostA,
            targetMAC: .zero, targetIP: Fixture.hostB)
        #expect(body == [
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01,
            0x02, 0x00, 0x00, 0x00, 0x00, 0x0A, 10, 0, 0, 1,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 10, 0, 0, 2,
        ])
    }

    @Test func parsesBackIncludingEthernetPadding() throws {
        let body = Packet.arp(
            operation: ARPOperation.reply, senderMAC: Fixture.macB, senderIP: Fixture.hostB,
            targetMAC: Fixture.macA, targetIP: Fixture.hostA)
        let frame = Packet.ethernet(dst: Fixture.macA, src: Fixture.macB, etherType: EtherType.arp, payload: body)
            + [UInt8](repeating: 0, count: 18)
        let parsed = try ParsedFrame(frame)
        let arp = try #require(parsed.arp)
        #expect(parsed.etherType == EtherType.arp && parsed.ipv4 == nil)
        #expect(arp.hardwareType == 1 && arp.protocolType == EtherType.ipv4)
        #expect(arp.hardwareLength == 6 && arp.protocolLength == 4)
        #expect(arp.operation == ARPOperation.reply)
        #expect(arp.senderMAC == Fixture.macB && arp.senderIP == Fixture.hostB)
        #expect(arp.targetMAC == Fixture.macA && arp.targetIP == Fixture.hostA)
        #expect(parsed.l4Payload.isEmpty)
    }

    @Test func nonEthernetIPv4AddressLengthsAreRejected() {
        var body = Packet.arp(
            operation: ARPOperation.request, senderMAC: Fixture.macA, senderIP: Fixture.hostA,
            targetMAC: .zero, targetIP: Fixture.hostB)
        body[4] = 8
        let frame = Packet.ethernet(dst: .broadcast, src: Fixture.macA, etherType: EtherType.arp, payload: body)
        let error = #expect(throws: ValidationError.self) { try ParsedFrame(frame) }
        #expect(error?.field == "arp")
        #expect(error?.reason.contains("6/4") == true)
    }
}
