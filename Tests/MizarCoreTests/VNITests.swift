import MizarCore
import Testing

@Suite struct VNITests {
    @Test(arguments: [UInt32(1), 100, 0xFF_FFFF])
    func acceptsTheValidRange(value: UInt32) throws {
        let vni = try VNI(value)
        #expect(vni.value == value)
        #expect(vni.description == String(value))
    }

    @Test func rejectsZeroAsReservedForSubstrate() {
        let error = #expect(throws: ValidationError.self) { try VNI(0, field: "spec.vni") }
        #expect(error?.field == "spec.vni")
        #expect(error?.reason.contains("reserved") == true)
        #expect(error?.reason.contains("1...16777215") == true)
    }

    @Test(arguments: [UInt32(0x100_0000), .max])
    func rejectsValuesWiderThan24Bits(value: UInt32) {
        let error = #expect(throws: ValidationError.self) { try VNI(value) }
        #expect(error?.field == "vni")
        #expect(error?.reason.contains("\(value)") == true)
        #expect(error?.reason.contains("1...16777215") == true)
    }

    @Test func ordersByValue() throws {
        #expect(try VNI(2) < VNI(10))
        #expect(VNI.validRange == 1...16_777_215)
    }
}
