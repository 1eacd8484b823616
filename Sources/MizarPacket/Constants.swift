/// Ethernet type values used by Mizar. Plain `UInt16` constants rather than an
/// enum so tests can also build frames with arbitrary or invalid types.
public enum EtherType {
    public static let ipv4: UInt16 = 0x0800
    public static let arp: UInt16 = 0x0806
    public static let ipv6: UInt16 = 0x86DD
    /// Geneve's protocol type for an encapsulated Ethernet frame.
    public static let transparentEthernet: UInt16 = 0x6558
}

public enum IPProtocol {
    public static let icmp: UInt8 = 1
    public static let tcp: UInt8 = 6
    public static let udp: UInt8 = 17
}

/// TCP header flag bits, combined with `|` for `Packet.tcp(flags:)`.
public enum TCPFlag {
    public static let fin: UInt8 = 0x01
    public static let syn: UInt8 = 0x02
    public static let rst: UInt8 = 0x04
    public static let psh: UInt8 = 0x08
    public static let ack: UInt8 = 0x10
    public static let urg: UInt8 = 0x20
    public static let ece: UInt8 = 0x40
    public static let cwr: UInt8 = 0x80
}

public enum ARPOperation {
    public static let request: UInt16 = 1
    public static let reply: UInt16 = 2
}

/// IANA-assigned UDP destination port for Geneve (RFC 8926).
public let genevePort: UInt16 = 6081
