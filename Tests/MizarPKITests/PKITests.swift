import Foundation
import Glibc
import MizarCore
import MizarPKI
import MizarTestbed
import Testing

/// Runs openssl with the arguments; its exit status and its output.
/// (Through runCapturing: its pipe is close-on-exec, so a daemon another
/// test starts meanwhile cannot hold it open and leave this read waiting.)
func openssl(_ arguments: [String]) throws -> (status: Int32, output: String) {
    runCapturing(["/usr/bin/openssl"] + arguments)
}

func mode(_ path: String) -> mode_t? {
    var st = stat()
    return stat(path, &st) == 0 ? st.st_mode & 0o777 : nil
}

/// A fresh directory path (not made) under the temporary directory.
func freshPath(_ tag: String) -> String {
    "\(NSTemporaryDirectory())mizar-pki-\(getpid())-\(tag)-\(UInt32.random(in: 0...UInt32.max))"
}

@Suite("PKI")
struct PKITests {
    @Test("the CA signs each party's certificate for exactly its uses and addresses; keys are 0600 in a 0700 directory")
    func issues() throws {
        let dir = freshPath("a")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pki = PKI(directory: dir)
        let h1 = try Identity.droplet("h1", ip: "172.30.0.1")
        let e1 = try Identity.etcdMember("e1", ip: "172.30.0.9")
        let written = try pki.ensure([.operator, .admin, h1, e1])
        #expect(written.count == 10)
        #expect(mode(dir) == 0o700)
        for id in [Identity.operator, .admin, h1, e1] {
            #expect(mode(pki.keyPath(id)) == 0o600, "\(id.fileStem).key")
            #expect(mode(pki.certificatePath(id)) == 0o644)
        }
        #expect(mode("\(dir)/ca.key") == 0o600)
        let ca = pki.caCertificatePath
        func verify(_ id: Identity, _ purpose: String) throws -> Bool {
            try openssl(["verify", "-CAfile", ca, "-purpose", purpose, pki.certificatePath(id)]).status == 0
        }
        // What each may do, as openssl checks it against the CA.
        #expect(try verify(h1, "sslserver") && verify(h1, "sslclient"))
        #expect(try verify(e1, "sslserver") && verify(e1, "sslclient"))
        #expect(try verify(.operator, "sslclient"))
        #expect(try !verify(.operator, "sslserver"), "the operator's certificate must not serve")
        #expect(try !verify(.admin, "sslserver"))
        // Names: the CN is the etcd user; the droplet's IP is its SAN.
        let text = try openssl(["x509", "-in", pki.certificatePath(h1), "-noout", "-subject", "-ext", "subjectAltName,basicConstraints"]).output
        #expect(text.contains("CN=droplet-h1") || text.contains("CN = droplet-h1"), "\(text)")
        #expect(text.contains("IP Address:172.30.0.1") && text.contains("CA:FALSE"), "\(text)")
        let etcd = try openssl(["x509", "-in", pki.certificatePath(e1), "-noout", "-ext", "subjectAltName"]).output
        #expect(etcd.contains("IP Address:172.30.0.9") && etcd.contains("IP Address:127.0.0.1") && etcd.contains("DNS:localhost"), "\(etcd)")
        let admin = try openssl(["x509", "-in", pki.certificatePath(.admin), "-noout", "-subject"]).output
        #expect(admin.contains("CN=root") || admin.contains("CN = root"), "\(admin)")
        // The key is the certificate's.
        let certKey = try openssl(["x509", "-in", pki.certificatePath(h1), "-noout", "-pubkey"]).output
        let keyKey = try openssl(["pkey", "-in", pki.keyPath(h1), "-pubout"]).output
        #expect(!certKey.isEmpty && certKey == keyKey)
    }

    @Test("running again keeps every file and adds only what is missing; another CA's certificates do not verify")
    func keepsAndAdds() throws {
        let dir = freshPath("b"), other = freshPath("c")
        defer { for d in [dir, other] { try? FileManager.default.removeItem(atPath: d) } }
        let pki = PKI(directory: dir)
        try pki.ensure([.operator])
        let before = try String(contentsOfFile: "\(dir)/ca.crt", encoding: .utf8) + String(contentsOfFile: pki.keyPath(.operator), encoding: .utf8)
        let h2 = try Identity.droplet("h2", ip: "172.30.0.2")
        let written = try pki.ensure([.operator, h2])
        #expect(written == [pki.keyPath(h2), pki.certificatePath(h2)])
        let after = try String(contentsOfFile: "\(dir)/ca.crt", encoding: .utf8) + String(contentsOfFile: pki.keyPath(.operator), encoding: .utf8)
        #expect(before == after)
        #expect(try pki.ensure([.operator, h2]).isEmpty)
        // A second CA: its droplet certificate is refused by the first.
        let stranger = PKI(directory: other)
        try stranger.ensure([h2])
        #expect(try openssl(["verify", "-CAfile", pki.caCertificatePath, stranger.certificatePath(h2)]).status != 0)
        #expect(try openssl(["verify", "-CAfile", pki.caCertificatePath, pki.certificatePath(h2)]).status == 0)
    }

    @Test("a request made on the host is signed with the host's key and the CA's names and uses, never the request's; a forged request is refused")
    func signsRequests() throws {
        let dir = freshPath("s"), host = freshPath("h")
        defer { for d in [dir, host] { try? FileManager.default.removeItem(atPath: d) } }
        let pki = PKI(directory: dir)
        // Without a CA there is nothing to sign with.
        #expect(throws: PKIError.self) { try pki.sign(request: "", for: try Identity.droplet("h7", ip: "172.30.0.7")) }
        try pki.ensure([.operator])
        #expect(mkdir(host, 0o700) == 0)
        // On the host: its own key, and a request asking for more than it may have.
        let made = try openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                                "-keyout", "\(host)/key.pem", "-out", "\(host)/req.pem", "-subj", "/CN=mizar-operator",
                                "-addext", "subjectAltName=IP:10.66.66.66"])
        #expect(made.status == 0, "\(made.output)")
        let request = try String(contentsOfFile: "\(host)/req.pem", encoding: .utf8)
        let pem = try pki.sign(request: request, for: try Identity.droplet("h7", ip: "172.30.0.7"))
        try pem.write(toFile: "\(host)/cert.pem", atomically: true, encoding: .utf8)
        #expect(try openssl(["verify", "-CAfile", pki.caCertificatePath, "-purpose", "sslserver", "\(host)/cert.pem"]).status == 0)
        let text = try openssl(["x509", "-in", "\(host)/cert.pem", "-noout", "-subject", "-ext", "subjectAltName"]).output
        #expect(text.contains("droplet-h7") && text.contains("IP Address:172.30.0.7"), "\(text)")
        #expect(!text.contains("mizar-operator") && !text.contains("10.66.66.66"), "the request's own names leaked in: \(text)")
        // The certificate carries the host's key.
        let certKey = try openssl(["x509", "-in", "\(host)/cert.pem", "-noout", "-pubkey"]).output
        let hostKey = try openssl(["pkey", "-in", "\(host)/key.pem", "-pubout"]).output
        #expect(!certKey.isEmpty && certKey == hostKey)
        // A request whose signature does not match its key, and one that is not a request.
        let lines = request.split(separator: "\n")
        var body = Array(lines[1..<(lines.count - 1)].joined().utf8)
        let i = body.count - 8
        body[i] = body[i] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        let tampered = "-----BEGIN CERTIFICATE REQUEST-----\n" + String(decoding: body, as: UTF8.self) + "\n-----END CERTIFICATE REQUEST-----\n"
        #expect(throws: PKIError.self) { try pki.sign(request: tampered, for: try Identity.droplet("h7", ip: "172.30.0.7")) }
        #expect(throws: PKIError.self) { try pki.sign(request: "not a request", for: try Identity.droplet("h7", ip: "172.30.0.7")) }
    }

    @Test("a directory others can read, bad names and bad addresses are refused, and nothing is written")
    func refusals() throws {
        let dir = freshPath("d")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(mkdir(dir, 0o755) == 0)
        chmod(dir, 0o755)
        let error = #expect(throws: PKIError.self) { try PKI(directory: dir).ensure([.operator]) }
        #expect(error?.description.contains("must be 0700") == true)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
        #expect(throws: ValidationError.self) { try Identity.parse("h1=172.30.0.300", role: .droplet, field: "--droplet") }
        #expect(throws: ValidationError.self) { try Identity.parse("H_1=172.30.0.1", role: .droplet, field: "--droplet") }
        #expect(throws: ValidationError.self) { try Identity.parse("h1", role: .droplet, field: "--droplet") }
        #expect(try Identity.parse("h1=172.30.0.1", role: .droplet, field: "--droplet") == Identity.droplet("h1", ip: "172.30.0.1"))
    }
}
