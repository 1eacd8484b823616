@testable import MizarEtcd
import NIOCore
import NIOEmbedded
import Testing

func frame(type: UInt8, flags: UInt8 = 0, stream: UInt32 = 0, payload: [UInt8]) -> [UInt8] {
    let n = payload.count
    return [UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff), type, flags]
        + [UInt8(stream >> 24), UInt8(stream >> 16 & 0xff), UInt8(stream >> 8 & 0xff), UInt8(stream & 0xff)] + payload
}

@Suite("HTTP/2 PING answerer")
struct PingAnswererTests {
    @Test("PINGs are answered below HTTP/2 and removed; every other frame passes whole, however the bytes arrive")
    func frames() throws {
        let settings = frame(type: 0x4, payload: [0, 3, 0, 0, 0, 100])
        let ping = frame(type: 0x6, payload: [1, 2, 3, 4, 5, 6, 7, 8])
        let pingAck = frame(type: 0x6, flags: 0x1, payload: [9, 9, 9, 9, 9, 9, 9, 9])   // an answer to our own PING
        let data = frame(type: 0x0, flags: 0x1, stream: 1, payload: Array(repeating: 0xab, count: 3000))
        let stream = settings + ping + data + pingAck + ping
        // Every way of cutting the stream in two, and byte by byte.
        var cuts = (0...stream.count).map { [Array(stream[..<$0]), Array(stream[$0...])] }
        cuts.append(stream.map { [$0] })
        for pieces in cuts {
            let channel = EmbeddedChannel(handler: PingAnswerer())
            for piece in pieces where !piece.isEmpty {
                try channel.writeInbound(ByteBuffer(bytes: piece))
            }
            var passed: [[UInt8]] = []
            while let b = try channel.readInbound(as: ByteBuffer.self) { passed.append(Array(b.readableBytesView)) }
            var answered: [UInt8] = []
            while let b = try channel.readOutbound(as: ByteBuffer.self) { answered += Array(b.readableBytesView) }
            #expect(passed == [settings, data, pingAck])
            #expect(answered == frame(type: 0x6, flags: 0x1, payload: [1, 2, 3, 4, 5, 6, 7, 8]) + frame(type: 0x6, flags: 0x1, payload: [1, 2, 3, 4, 5, 6, 7, 8]))
            _ = try channel.finish()
        }
    }
}
