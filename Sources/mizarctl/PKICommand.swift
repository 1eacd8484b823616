// mizarctl pki: the CA and the certificates every party needs.
import ArgumentParser
import MizarCore
import MizarPKI

struct PKICommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pki",
        abstract: "Create the certificate authority and the certificates that are missing.",
        discussion: """
            In DIR (mode 0700): ca.crt and ca.key, and a .crt and .key for the operator (CN mizar-operator), \
            the administrator (admin: CN root, etcd's root user), each --droplet (droplet-NAME, its IP as the \
            subject alternative name, server and client use) and each --etcd-member (etcd-NAME, its IP, \
            127.0.0.1 and localhost, server and client use). Keys are P-256 and mode 0600. What exists is \
            kept, so running it again with a new --droplet adds that droplet's certificate only.
            """)

    @Option(help: "The directory (made 0700 if absent).") var dir: String
    @Option(name: .customLong("droplet"), help: "NAME=IP of a droplet; repeatable.") var droplets: [String] = []
    @Option(name: .customLong("etcd-member"), help: "NAME=IP of an etcd member; repeatable.") var members: [String] = []

    func run() throws {
        let ids = [Identity.operator, .admin]
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
