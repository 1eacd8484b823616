import MizarCore
import Testing

@Suite struct CIDRTests {
    @Test(arguments: ["10.0.0.0/16", "0.0.0.0/0", "10.1.2.3/32", "192.168.128.0/17", "128.0.0.0/1"])
    func parsesAndFormatsRoundTrip(text: String) throws {
        let cidr = try CIDR(parsing: text)
        #expect(cidr.description == text)
        #expect(try CIDR(parsing: cidr.description) == cidr)
    }

    @Test func hostBitsErrorSuggestsTheNetwork() {
        let error = #expect(throws: ValidationError.self) { try CIDR(parsing: "10.0.0.1/16", field: "spec.cidr") }
        #expect(error == ValidationError(
            field: "spec.cidr", reason: "\"10.0.0.1/16\" has host bits set; did you mean 10.0.0.0/16?"))
    }

    @Test(arguments: [
        ("", "is empty"),
        ("10.0.0.0", "missing the \"/prefix\""),
        ("10.0.0.0/", "empty prefix length"),
        ("10.0.0.0/1/2", "more than one '/'"),
        ("10.0.0.0/33", "\"33\" is out of range; expected 0...32"),
        ("10.0.0.0/999999999999", "is out of range; expected 0...32"),
        ("10.0.0.0/08", "\"08\" is not a plain decimal number"),
        ("10.0.0.0/-1", "\"-1\" is not a plain decimal number"),
        ("10.0.0.0/ 8", "\" 8\" is not a plain decimal number"),
        ("10.0.0/8", "invalid address: \"10.0.0\" has 3 dot-separated parts"),
        ("/8", "invalid address: is empty"),
        ("10.0.0.128/24", "did you mean 10.0.0.0/24?"),
    ])
    func rejectsMalformedInput(text: String, mentions: String) {
        let error = #expect(throws: ValidationError.self) { try CIDR(parsing: text, field: "vpc.cidr") }
        #expect(error?.field == "vpc.cidr")
        #expect(error?.reason.contains(mentions) == true, "reason was: \(error?.reason ?? "nil")")
    }

    @Test func memberwiseInitAppliesTheSameChecks() throws {
        #expect(try CIDR(address: IPv4Address(10, 0, 0, 0), prefixLength: 8) == CIDR(parsing: "10.0.0.0/8"))
        let tooLong = #expect(throws: ValidationError.self) {
            try CIDR(address: IPv4Address(10, 0, 0, 0), prefixLength: 33)
        }
        #expect(tooLong?.field == "cidr")
        #expect(tooLong?.reason.contains("0...32") == true)
        let hostBits = #expect(throws: ValidationError.self) {
            try CIDR(address: IPv4Address(10, 0, 0, 1), prefixLength: 8, field: "route.dest")
        }
        #expect(hostBits?.field == "route.dest")
        #expect(hostBits?.reason.contains("did you mean 10.0.0.0/8?") == true)
    }

    @Test func netmaskFirstLastAndSize() throws {
        let all = try CIDR(parsing: "0.0.0.0/0")
        #expect(all.netmask == 0)
        #expect(all.size == 1 << 32)
        #expect(all.firstAddress == .zero)
        #expect(all.lastAddress == .broadcast)

        let host = try CIDR(parsing: "10.1.2.3/32")
        #expect(host.netmask == 0xFFFF_FFFF)
        #expect(host.size == 1)
        #expect(host.firstAddress == IPv4Address(10, 1, 2, 3))
        #expect(host.lastAddress == IPv4Address(10, 1, 2, 3))

        let subnet = try CIDR(parsing: "192.168.1.0/24")
        #expect(subnet.netmask == 0xFFFF_FF00)
        #expect(subnet.size == 256)
        #expect(subnet.lastAddress == IPv4Address(192, 168, 1, 255))
    }

    @Test func containsAddressAtTheEdges() throws {
        let all = try CIDR(parsing: "0.0.0.0/0")
        #expect(all.contains(.zero))
        #expect(all.contains(.broadcast))

        let host = try CIDR(parsing: "10.1.2.3/32")
        #expect(host.contains(IPv4Address(10, 1, 2, 3)))
        #expect(!host.contains(IPv4Address(10, 1, 2, 2)))
        #expect(!host.contains(IPv4Address(10, 1, 2, 4)))

        let subnet = try CIDR(parsing: "10.0.0.0/16")
        #expect(subnet.contains(IPv4Address(10, 0, 0, 0)))
        #expect(subnet.contains(IPv4Address(10, 0, 255, 255)))
        #expect(!subnet.contains(IPv4Address(10, 1, 0, 0)))
        #expect(!subnet.contains(IPv4Address(9, 255, 255, 255)))
    }

    @Test func containsAndOverlapsPrefixes() throws {
        let all = try CIDR(parsing: "0.0.0.0/0")
        let vpc = try CIDR(parsing: "10.0.0.0/16")
        let subnet = try CIDR(parsing: "10.0.1.0/24")
        let neighbour = try CIDR(parsing: "10.0.2.0/24")
        let host = try CIDR(parsing: "10.0.1.7/32")

        #expect(all.contains(vpc) && all.contains(host) && all.contains(all))
        #expect(vpc.contains(subnet) && vpc.contains(host) && vpc.contains(vpc))
        #expect(!subnet.contains(vpc))
        #expect(host.contains(host))
        #expect(!host.contains(subnet))

        #expect(vpc.overlaps(subnet) && subnet.overlaps(vpc))
        #expect(all.overlaps(host) && host.overlaps(all))
        #expect(!subnet.overlaps(neighbour) && !neighbour.overlaps(subnet))
        #expect(!host.overlaps(neighbour))
        #expect(try !CIDR(parsing: "10.0.0.0/8").overlaps(CIDR(parsing: "11.0.0.0/8")))
    }
}
