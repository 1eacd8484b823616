// mizarctl pki: the CA and the certificates every party needs.
import ArgumentParser
import Foundation
import MizarCore
import MizarPKI

struct PKICommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pki",
        abstract: "Create the certificate authority and the certificates that are missing.",
        discussion: """
            In DIR (mode 0700): ca.crt and ca.key, and a .crt and .key for the operator (CN mizar-operator), the metrics reader (metrics: CN mizar-metrics, for a Prometheus scraping over mutual TLS), \
            the administrator (admin: CN root, etcd's root user), each --droplet (droplet-NAME, its IP as the \
            subject alternative name, server and client use) and each --etcd-member (etcd-NAME, its IP, \
            127.0.0.1 and localhost, server and client use). Keys are P-256 and mode 0600. What exists is \
            kept, so running it again with a new --droplet adds that droplet's certificate only.
            """)

    @Option(help: "The directory (made 0700 if absent).") var dir: String
    @Option(name: .customLong("droplet"), help: "NAME=IP of a droplet; repeatable.") var droplets: [String] = []
    @Option(name: .customLong("etcd-member"), help: "NAME=IP of an etcd member; repeatable.") var members: [String] = []
    @Option(help: "Sign this certificate request (PEM), made on the host with its own key, for the one --droplet or --etcd-member given, instead.") var sign: String?
    @Option(help: "With --sign: where to write the certificate (a new file).") var out: String?

    func validate() throws {
        if sign != nil {
            guard droplets.count + members.count == 1 else { throw ValidationError("--sign: give exactly one --droplet or --etcd-member") }
            guard out != nil else { throw ValidationError("--sign: give --out for the certificate") }
        }
    }

    func run() throws {
        if let sign, let out {
            let id = try droplets.first.map { try Identity.parse($0, role: .droplet, field: "--droplet") }
                ?? Identity.parse(members[0], role: .etcdMember, field: "--etcd-member")
            guard let request = try? String(contentsOfFile: sign, encoding: .utf8) else { throw CommandFailure(description: "\(sign): cannot read the file") }
            guard !FileManager.default.fileExists(atPath: out) else { throw CommandFailure(description: "\(out) exists; it is never overwritten") }
            let pem: String
            do { pem = try PKI(directory: dir).sign(request: request, for: id) } catch let e as PKIError {
                throw CommandFailure(description: e.description)
            }
            guard FileManager.default.createFile(atPath: out, contents: Data(pem.utf8), attributes: [.posixPermissions: 0o644]) else {
                throw CommandFailure(description: "\(out): cannot write")
            }
            print("wrote \(out) (\(id.commonName), signed by \(dir)/ca.crt)")
            return
        }
        let ids = [Identity.operator, .admin, .metrics]
            + (try droplets.map { try Identity.parse($0, role: .droplet, field: "--droplet") })
            + (try members.map { try Identity.parse($0, role: .etcdMember, field: "--etcd-member") })
        do {
            let written = try PKI(directory: dir).ensure(ids)
            for f in written { print("wrote \(f)") }
            if written.isEmpty { print("\(dir): nothing missing") }
        } catch let e as PKIError {
            throw CommandFailure(description: e.description)
        }
    }
}
