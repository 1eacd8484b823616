// mizar-operator: the management plane. Watches etcd and takes every
// declared object from Init to Provisioned through the transitds concerned.
import ArgumentParser
import Glibc
import Logging
import MizarEtcd
import MizarOperator
import MizarStore
import MizarTransitClient
import MizarCore
import ServiceLifecycle

struct MizarOperatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mizar-operator",
        abstract: "Mizar's management plane: one controller per kind, driven by etcd watches.")

    @Option(help: "etcd's client address, HOST:PORT.")
    var etcd = "127.0.0.1:2379"

    @Option(help: "Root of Mizar's keys in etcd.")
    var root = Store.defaultRoot

    @Option(help: "Endpoints provisioned at once.")
    var workers = 8

    @Option(help: "This replica's name; replicas split the VPCs between them on a consistent-hash ring (default: random).")
    var id: String?

    @OptionGroup var tls: TLSOptions

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func validate() throws {
        _ = try HostPort(parsing: etcd, field: "--etcd")
        guard (1...256).contains(workers) else { throw ValidationError("--workers: \(workers) is out of range; expected 1...256") }
    }

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = logLevel
            return handler
        }
        let logger = Logger(label: "mizar-operator")
        let at = try HostPort(parsing: etcd, field: "--etcd")
        var config = Operator.Config()
        config.workers = workers
        if let id { config.id = id }
        let root = self.root
        let pool = HTTP2TransitPool(tls: try tls.files())
        try await withEtcd(host: at.host, port: at.port) { client in
            let op = Operator(store: Store(etcd: client, root: root), pool: pool, config: config, logger: logger)
            logger.info("running", metadata: ["etcd": "\(at)", "etcd.root": "\(root)"])
            // SIGTERM and SIGINT stop the controllers, then the replica leaves
            // the ring, then the watches end; whatever was under way is
            // finished by the next operator, from the objects' status.
            try await ServiceGroup(services: op.services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger).run()
            logger.info("stopped")
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

do {
    let command = try MizarOperatorCommand.parse()
    try await command.run()
} catch {
    MizarOperatorCommand.exit(withError: error)
}
