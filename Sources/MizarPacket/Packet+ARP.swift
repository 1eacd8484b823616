import MizarCore

extension Packet {
    /// The 28-byte ARP body for Ethernet/IPv4 (htype 1, ptype 0x0800, hlen 6,
    /// plen 4). `operation` is usually `ARPOperation.request` or `.reply`; wrap it
    /// with `ethernet(etherType: EtherType.arp)`.
    public static func arp(
        operation: UInt16,
        senderMAC: MACAddress,
        senderIP: IPv4Address,
        targetMAC: MACAddress,
        targetIP: IPv4Address
    ) -> [UInt8] {
        var body: [UInt8] = []
        body.reserveCapacity(28)
        body.append(be: UInt16(1))
        body.append(be: EtherType.ipv4)
        body.append(6)
        body.append(4)
        body.append(be: operation)
        body += senderMAC.bytes
        body += senderIP.bytes
        body += targetMAC.bytes
        body += targetIP.bytes
        return body
    }
}
