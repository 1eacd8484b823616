import NIOCore

/// Answers the server's HTTP/2 PINGs below the HTTP/2 stack.
///
/// etcd 3.4 sends a PING after nearly every response. swift-nio-http2
/// counts every control frame it receives and closes the connection after
/// 200 in 30 s (its defence against control-frame floods), so a busy
/// client would lose its connection every couple of hundred calls. This
/// handler sits where the bytes are raw HTTP/2 frames (first in the
/// pipeline, or right behind TLS), answers each PING with its ACK
/// itself and hands every other frame on unchanged, whole.
final class PingAnswerer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let frameHeaderLength = 9
    static let pingType: UInt8 = 0x6
    static let ackFlag: UInt8 = 0x1

    private var buffer: ByteBuffer?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if buffer == nil {
            buffer = incoming
        } else {
            buffer!.writeBuffer(&incoming)
        }
        var answered = false
        while let frame = nextFrame() {
            if isPingRequest(frame) {
                var ack = frame
                ack.setInteger(Self.ackFlag, at: ack.readerIndex + 4)
                context.write(wrapOutboundOut(ack), promise: nil)
                answered = true
            } else {
                context.fireChannelRead(wrapInboundOut(frame))
            }
        }
        if answered { context.flush() }
    }

    /// The next complete frame, taken off the buffer; nil until one is.
    private func nextFrame() -> ByteBuffer? {
        guard var b = buffer, b.readableBytes >= Self.frameHeaderLength,
              let high = b.getInteger(at: b.readerIndex, as: UInt8.self),
              let low = b.getInteger(at: b.readerIndex + 1, as: UInt16.self) else { return nil }
        let length = Int(high) << 16 | Int(low)
        guard b.readableBytes >= Self.frameHeaderLength + length,
              let frame = b.readSlice(length: Self.frameHeaderLength + length) else { return nil }
        buffer = b.readableBytes > 0 ? b : nil
        return frame
    }

    /// A PING that asks for an answer: type 6, no ACK flag, 8 bytes, stream 0.
    private func isPingRequest(_ frame: ByteBuffer) -> Bool {
        let at = frame.readerIndex
        return frame.readableBytes == Self.frameHeaderLength + 8
            && frame.getInteger(at: at + 3, as: UInt8.self) == Self.pingType
            && (frame.getInteger(at: at + 4, as: UInt8.self) ?? 0) & Self.ackFlag == 0
            && frame.getInteger(at: at + 5, as: UInt32.self) == 0
    }
}
