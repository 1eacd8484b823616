#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import MizarCore
import MizarPacket
import Testing

@Suite struct PcapWriterTests {
    static let globalHeader: [UInt8] = [
        0xD4, 0xC3, 0xB2, 0xA1,  // magic 0xa1b2c3d4, little-endian
        0x02, 0x00, 0x04, 0x00,  // version 2.4
        0x00, 0x00, 0x00, 0x00,  // thiszone
        0x00, 0x00, 0x00, 0x00,  // sigfigs
        0xFF, 0xFF, 0x00, 0x00,  // snaplen 65535
        0x01, 0x00, 0x00, 0x00,  // LINKTYPE_ETHERNET
    ]

    @Test func globalHeaderBytes() {
        #expect(PcapWriter.data(frames: []) == Self.globalHeader)
    }

    @Test func recordHeadersUseSyntheticTimestamps() {
        let data = PcapWriter.data(frames: [[0xAA, 0xBB], [0xCC]])
        #expect(data == Self.globalHeader
            + [0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 0xAA, 0xBB]
            + [0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0xCC])
    }

    @Test func oversizedFramesAreCutToSnapLength() {
        let data = PcapWriter.data(frames: [[UInt8](repeating: 7, count: 70_000)])
        #expect(data.count == 24 + 16 + 65535)
        #expect(Array(data[32..<40]) == [0xFF, 0xFF, 0x00, 0x00, 0x70, 0x11, 0x01, 0x00])
    }

    @Test func writesTheSameBytesToDisk() throws {
        let path = "/tmp/mizar-pcap-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).pcap"
        defer { unlink(path) }
        let frames = [ParsedFrameTests.udpFrame, ParsedFrameTests.geneveFrame]
        try PcapWriter.write(frames: frames, to: path)

        let file = try #require(fopen(path, "rb"))
        defer { fclose(file) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
        #expect(Array(buffer.prefix(count)) == PcapWriter.data(frames: frames))
    }

    @Test func unwritablePathThrowsWithErrno() {
        let error = #expect(throws: SystemError.self) {
            try PcapWriter.write(frames: [], to: "/nonexistent-mizar-dir/x.pcap")
        }
        #expect(error?.call == "fopen")
        #expect(error?.errno == ENOENT)
        #expect(error?.description.contains("/nonexistent-mizar-dir/x.pcap") == true)
    }
}
