import Foundation
import MizarCore
import Testing

/// Typed values in JSON: the same text as the strings they replace, and a
/// malformed one refused with the parser's reason at its own path.
@Suite struct CodingTests {
    struct Doc: Codable, Equatable {
        var cidr: CIDR
        var ip: IPv4Address?
        var mac: MACAddress?
        var vni: VNI?
    }

    @Test func encodesAsTheSameTextAndReadsItBack() throws {
        let doc = Doc(cidr: "10.0.0.0/16", ip: "10.0.1.7", mac: "02:00:0a:00:01:07", vni: try VNI(4097))
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let text = String(decoding: try encoder.encode(doc), as: UTF8.self)
        #expect(text == #"{"cidr":"10.0.0.0\/16","ip":"10.0.1.7","mac":"02:00:0a:00:01:07","vni":4097}"#)
        #expect(try JSONDecoder().decode(Doc.self, from: Data(text.utf8)) == doc)
    }

    @Test(arguments: [
        (#"{"cidr":"10.0.0.0/33"}"#, "cidr", try! CIDR.reason("10.0.0.0/33")),
        (#"{"cidr":"10.0.0.0/16","ip":"10.0.1.300"}"#, "ip", try! IPv4Address.reason("10.0.1.300")),
        (#"{"cidr":"10.0.0.0/16","mac":"zz"}"#, "mac", try! MACAddress.reason("zz")),
        (#"{"cidr":"10.0.0.0/16","vni":16777216}"#, "vni", "16777216 does not fit in 24 bits; expected a value in 1...16777215"),
        (#"{"cidr":"10.0.0.0/16","vni":0}"#, "vni", "0 is reserved for the substrate network; expected a value in 1...16777215"),
    ])
    func malformedValuesAreRefusedAtTheirPath(json: String, field: String, reason: String) {
        do {
            _ = try JSONDecoder().decode(Doc.self, from: Data(json.utf8))
            Issue.record("accepted \(json)")
        } catch DecodingError.dataCorrupted(let context) {
            #expect(context.codingPath.map(\.stringValue) == [field])
            #expect(context.debugDescription == reason)
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func aNumberWhereTextBelongsIsATypeMismatch() {
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(Doc.self, from: Data(#"{"cidr":7}"#.utf8)) }
    }
}

extension TextValue {
    /// What the parser says of `text`: the reason a decode must carry.
    static func reason(_ text: String) throws -> String {
        do {
            _ = try Self(parsing: text, field: "x")
            return "accepted"
        } catch {
            return error.reason
        }
    }
}
