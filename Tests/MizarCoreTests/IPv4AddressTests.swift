import MizarCore
import Testing

@Suite struct IPv4AddressTests {
    @Test(arguments: ["0.0.0.0", "255.255.255.255", "10.0.0.1", "192.168.0.199", "1.22.100.0"])
    func parsesAndFormatsRoundTrip(text: String) throws {
        let ip = try IPv4Address(parsing: text)
        #expect(ip.description == text)
        #expect(try IPv4Address(parsing: ip.description) == ip)
    }

    @Test(arguments: [
        ("", "is empty"),
        ("1.2.3", "has 3 dot-separated parts"),
        ("1.2.3.4.5", "has 5 dot-separated parts"),
        ("10", "has 1 dot-separated part;"),
        ("1..2.3", "empty part 2"),
        ("1.2.3.", "empty part 4"),
        ("1.2.3.256", "\"256\" is out of range"),
        ("1.2.3.99999999999999999999", "is out of range"),
        ("01.2.3.4", "\"01\" has a leading zero"),
        ("1.2.3.00", "\"00\" has a leading zero"),
        ("+1.2.3.4", "\"+1\" is not a decimal number"),
        ("-1.2.3.4", "\"-1\" is not a decimal number"),
        ("1.2.3.4 ", "\"4 \" is not a decimal number"),
        (" 1.2.3.4", "\" 1\" is not a decimal number"),
        ("0x0a.0.0.1", "\"0x0a\" is not a decimal number"),
        ("a.b.c.d", "\"a\" is not a decimal number"),
        ("1.2.3.\u{0664}", "is not a decimal number"),
    ])
    func rejectsMalformedInput(text: String, mentions: String) {
        let error = #expect(throws: ValidationError.self) {
            try IPv4Address(parsing: text, field: "spec.gateway")
        }
        #expect(error?.field == "spec.gateway")
        #expect(error?.reason.contains(mentions) == true, "reason was: \(error?.reason ?? "nil")")
        #expect(error?.description.hasPrefix("spec.gateway: ") == true)
    }

    @Test func defaultFieldNameIsIP() {
        let error = #expect(throws: ValidationError.self) { try IPv4Address(parsing: "nope") }
        #expect(error?.field == "ip")
    }

    @Test func hugeInputIsQuotedButTruncatedInReason() {
        let error = #expect(throws: ValidationError.self) {
            try IPv4Address(parsing: String(repeating: "9", count: 10_000))
        }
        #expect((error?.reason.count ?? .max) < 200)
    }

    @Test func byteOrderViews() {
        let ip = IPv4Address(10, 0, 0, 1)
        #expect(ip.value == 0x0A00_0001)
        #expect(ip.bytes == [10, 0, 0, 1])
        #expect(ip.networkOrder == UInt32(0x0A00_0001).bigEndian)
        #expect(IPv4Address(networkOrder: ip.networkOrder) == ip)
        #expect(IPv4Address(bytes: [10, 0, 0, 1]) == ip)
        #expect(IPv4Address(bytes: [0, 10, 0, 0, 1].dropFirst()) == ip)
        #expect(IPv4Address(value: 0x0A00_0001) == ip)
    }

    @Test func constantsAndClassification() throws {
        #expect(IPv4Address.zero.description == "0.0.0.0")
        #expect(IPv4Address.broadcast.description == "255.255.255.255")
        #expect(IPv4Address.broadcast.isLimitedBroadcast)
        #expect(!IPv4Address(10, 0, 255, 255).isLimitedBroadcast)
        #expect(IPv4Address(224, 0, 0, 1).isMulticast)
        #expect(IPv4Address(239, 255, 255, 255).isMulticast)
        #expect(!IPv4Address(223, 255, 255, 255).isMulticast)
        #expect(!IPv4Address(240, 0, 0, 0).isMulticast)
    }

    @Test func ordersNumericallyNotLexically() {
        let sorted = [IPv4Address(10, 0, 0, 10), IPv4Address(9, 255, 255, 255), IPv4Address(10, 0, 0, 2)].sorted()
        #expect(sorted.map(\.description) == ["9.255.255.255", "10.0.0.2", "10.0.0.10"])
    }
}
