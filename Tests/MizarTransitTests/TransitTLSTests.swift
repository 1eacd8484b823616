import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Glibc
import MizarCore
import MizarPKI
import MizarRPC
import MizarTransit
import MizarTLS
import MizarTransitClient
import Testing

/// transitd's TCP API over real TLS on loopback, the real service in front
/// of a fake host: who gets in and who does not. No privileges needed.
@Suite("transitd's TCP API: mutual TLS, the operator alone")
struct TransitTLSTests {
    /// A PKI of the test's own (operator, droplet h1 at 127.0.0.1), and a
    /// stranger's with the same names.
    static func pkis() throws -> (mine: String, stranger: String) {
        let base = "\(NSTemporaryDirectory())mizar-tls-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let h1 = try Identity.droplet("h1", ip: "127.0.0.1")
        try PKI(directory: base + "-mine").ensure([.operator, .admin, h1, try Identity.droplet("h9", ip: "10.9.9.9")])
        try PKI(directory: base + "-stranger").ensure([.operator, h1])
        return (base + "-mine", base + "-stranger")
    }

    /// One call of GetDroplet with `security`: nil if it answered, else the
    /// error's code.
    static func call(_ port: Int, _ security: HTTP2ClientTransport.Posix.TransportSecurity) async -> RPCError.Code? {
        do {
            let transport = try HTTP2ClientTransport.Posix(target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: security)
            var options = CallOptions.defaults
            options.waitForReady = false
            options.timeout = .seconds(5)
            _ = try await withGRPCClient(transport: transport) { client in
                try await Mizar_Transit_V1_Transit.Client(wrapping: client).getDroplet(.init(), options: options)
            }
            return nil
        } catch let e as RPCError {
            return e.code
        } catch {
            return .unknown
        }
    }

    /// `dir`'s `stem` certificate, trusting `ca`'s CA, as the operator dials.
    static func mtls(_ dir: String, _ stem: String, trusting ca: String) -> HTTP2ClientTransport.Posix.TransportSecurity {
        TLSFiles(certificate: "\(dir)/\(stem).crt", key: "\(dir)/\(stem).key", ca: "\(ca)/ca.crt").client
    }

    @Test("the operator's certificate gets in; none, another CA's, a droplet's, plaintext and an untrusted server do not; the unix socket is 0600")
    func whoGetsIn() async throws {
        let (mine, stranger) = try Self.pkis()
        defer { for d in [mine, stranger] { try? FileManager.default.removeItem(atPath: d) } }
        let socket = "\(mine)/transitd.sock"
        let server = TransitServer(host: FakeHost(), listeners: TransitListeners(
            unixSocket: socket, tcp: ("127.0.0.1", 0), tls: TLSFiles(pkiDirectory: mine, stem: "droplet-h1")))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            defer { server.beginGracefulShutdown() }
            let port = try #require(try await server.tcpAddress()?.port)

            // The operator, through the client the management plane uses.
            let droplet = try await withTransitClient(.tcp(host: "127.0.0.1", port: port), tls: TLSFiles(pkiDirectory: mine, stem: "operator")) {
                try await $0.getDroplet(.init())
            }
            #expect(droplet == Mizar_Transit_V1_Droplet())
            #expect(await Self.call(port, Self.mtls(mine, "operator", trusting: mine)) == nil)
            // The CA's, but a droplet's: authenticated, not allowed.
            #expect(await Self.call(port, Self.mtls(mine, "droplet-h1", trusting: mine)) == .permissionDenied)
            #expect(await Self.call(port, Self.mtls(mine, "admin", trusting: mine)) == .permissionDenied)
            // Not authenticated: the handshake fails, nothing is served.
            #expect(await Self.call(port, Self.mtls(stranger, "operator", trusting: mine)) == .unavailable, "another CA's operator")
            #expect(await Self.call(port, .tls { $0.trustRoots = .certificates([.file(path: "\(mine)/ca.crt", format: .pem)]) }) == .unavailable,
                    "no client certificate")
            #expect(await Self.call(port, .plaintext) == .unavailable, "plaintext")
            // The server is checked too: a client trusting another CA hangs up.
            #expect(await Self.call(port, Self.mtls(stranger, "operator", trusting: stranger)) == .unavailable, "untrusted server")

            var st = stat()
            #expect(stat(socket, &st) == 0 && st.st_mode & 0o777 == 0o600, "unix socket mode \(String(st.st_mode & 0o777, radix: 8))")
            server.beginGracefulShutdown()
            try await group.waitForAll()
        }
    }

    @Test("a server whose certificate names another address is refused by the operator")
    func serverAddressChecked() async throws {
        let (mine, stranger) = try Self.pkis()
        defer { for d in [mine, stranger] { try? FileManager.default.removeItem(atPath: d) } }
        let server = TransitServer(host: FakeHost(), listeners: TransitListeners(
            unixSocket: "\(mine)/transitd.sock", tcp: ("127.0.0.1", 0), tls: TLSFiles(pkiDirectory: mine, stem: "droplet-h9")))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            let port = try #require(try await server.tcpAddress()?.port)
            #expect(await Self.call(port, Self.mtls(mine, "operator", trusting: mine)) == .unavailable,
                    "droplet h9's certificate (10.9.9.9) served from 127.0.0.1")
            server.beginGracefulShutdown()
            try await group.waitForAll()
        }
    }
}
