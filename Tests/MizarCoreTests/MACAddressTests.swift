import MizarCore
import Testing

@Suite struct MACAddressTests {
    @Test func parsesCaseInsensitivelyAndFormatsLowercase() throws {
        let mac = try MACAddress(parsing: "02:42:AC:11:0a:Ff")
        #expect(mac.bytes == [0x02, 0x42, 0xAC, 0x11, 0x0A, 0xFF])
        #expect(mac.description == "02:42:ac:11:0a:ff")
        #expect(try MACAddress(parsing: mac.description) == mac)
        #expect(mac == MACAddress(0x02, 0x42, 0xAC, 0x11, 0x0A, 0xFF))
        #expect(mac == MACAddress(bytes: [0x02, 0x42, 0xAC, 0x11, 0x0A, 0xFF]))
        #expect(mac.value == 0x0242_AC11_0AFF)
    }

    @Test(arguments: [
        ("", "is empty"),
        ("02:42:ac:11:00", "has 5 ':'-separated groups"),
        ("02:42:ac:11:00:02:03", "has 7 ':'-separated groups"),
        ("02-42-ac-11-00-02", "has 1 ':'-separated group;"),
        ("0242.ac11.0002", "has 1 ':'-separated group;"),
        ("2:42:ac:11:00:02", "group 1 \"2\" is not two hex digits"),
        ("02:42:ac:11:00:0g", "group 6 \"0g\" is not two hex digits"),
        ("02:42:ac:11:00:", "group 6 \"\" is not two hex digits"),
        ("02:42:ac:11:00:002", "group 6 \"002\" is not two hex digits"),
        ("02:42:ac:11:00:+2", "group 6 \"+2\" is not two hex digits"),
        (" 02:42:ac:11:00:02", "group 1 \" 02\" is not two hex digits"),
    ])
    func rejectsMalformedInput(text: String, mentions: String) {
        let error = #expect(throws: ValidationError.self) {
            try MACAddress(parsing: text, field: "spec.mac")
        }
        #expect(error?.field == "spec.mac")
        #expect(error?.reason.contains(mentions) == true, "reason was: \(error?.reason ?? "nil")")
        #expect(error?.reason.contains("02:42:ac:11:00:02") == true, "reason should show the expected form")
    }

    @Test func defaultFieldNameIsMac() {
        let error = #expect(throws: ValidationError.self) { try MACAddress(parsing: "x") }
        #expect(error?.field == "mac")
    }

    @Test func classification() {
        #expect(MACAddress.broadcast.isBroadcast)
        #expect(MACAddress.broadcast.isMulticast)
        #expect(MACAddress.broadcast.description == "ff:ff:ff:ff:ff:ff")
        #expect(MACAddress.zero.isZero)
        #expect(MACAddress.zero.description == "00:00:00:00:00:00")
        #expect(MACAddress(0x01, 0x00, 0x5E, 0x00, 0x00, 0x01).isMulticast)
        // Locally administered (0x02) is a different bit from I/G (0x01).
        #expect(!MACAddress(0x02, 0x00, 0x00, 0x00, 0x00, 0x01).isMulticast)
        #expect(!MACAddress(0x00, 0x00, 0x00, 0x00, 0x00, 0x01).isMulticast)
        #expect(!MACAddress(0x00, 0x00, 0x00, 0x00, 0x00, 0x01).isZero)
    }
}
