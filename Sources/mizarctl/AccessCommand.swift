// mizarctl access: etcd's users and roles for Mizar, and access control on.
import ArgumentParser
import MizarAPI
import MizarCore
import MizarEtcd
import MizarStore

struct Access: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Give etcd Mizar's users and roles, then turn its access control on (as etcd's root: admin.crt).",
        discussion: """
            Users are certificate names (etcd is started with --client-cert-auth): root; mizar-operator, \
            which reads and writes every key under --operator-prefix; and droplet-NAME for each --droplet, \
            which reads Mizar's keys under --root and writes only its own (its Droplet, its lease key, its \
            events and its endpoint claims). What exists is kept: run it again with a new --droplet when a \
            host joins.
            """)

    @OptionGroup var etcd: EtcdOptions
    @Option(help: "Where the operator may read and write.") var operatorPrefix = "/mizar/"
    @Option(name: .customLong("droplet"), help: "A droplet's name; repeatable.") var droplets: [String] = []

    func validate() throws {
        for d in droplets { try validateName(d, field: "--droplet") }
    }

    func run() async throws {
        try await etcd.withStore { store in
            try await AccessControl.enable(store.etcd, operatorPrefix: operatorPrefix)
            for d in droplets { try await AccessControl.admitDroplet(store, droplet: d) }
        }
        print("etcd access control on: root, \(Identities.operatorName) (read-write \(operatorPrefix))"
              + droplets.map { ", \(Identities.droplet($0))" }.joined())
    }
}
