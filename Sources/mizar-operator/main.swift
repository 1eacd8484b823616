// mizar-operator: the management plane. Watches etcd and takes every
// declared object from Init to Provisioned through the transitds concerned.
import ArgumentParser
import Glibc
import Logging
import MizarEtcd
import MizarMetrics
import MizarOperator
import MizarStore
import MizarTLS
import MizarTransitClient
import MizarCore
import ServiceLifecycle

struct MizarOperatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mizar-operator",
        abstract: "Mizar's management plane: one controller per kind, driven by etcd watches.")

    @Option(help: "etcd's members, HOST:PORT[,HOST:PORT...]: calls go to whichever are up.")
    var etcd = "127.0.0.1:2379"

    @Option(help: "Root of Mizar's keys in etcd.")
    var root = Store.defaultRoot

    @Option(help: "Endpoints provisioned at once.")
    var workers = 8

    @Option(help: "This replica's name; replicas split the VPCs between them on a consistent-hash ring (default: random).")
    var id: String?

    /// operator.crt: transitds admit it alone, and etcd takes it as the
    /// mizar-operator user.
    @OptionGroup var tls: TLSOptions

    @Option(help: "Where Prometheus metrics are served (GET /metrics): HOST:PORT on loopback, or 'none'.")
    var metricsAddress = "127.0.0.1:9471"

    @Option(help: "Seconds a replica stays on the ring without renewing its key: how soon the others take over a dead replica's VPCs, and how long an etcd stall it outlasts.")
    var membershipTtl: Int64 = 10

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func validate() throws {
        _ = try HostPort.list(parsing: etcd, field: "--etcd")
        _ = try MetricsServer.address(parsing: metricsAddress, field: "--metrics-address")
        guard (1...256).contains(workers) else { throw ValidationError("--workers: \(workers) is out of range; expected 1...256") }
        guard (2...120).contains(membershipTtl) else { throw ValidationError("--membership-ttl: \(membershipTtl) is out of range; expected 2...120 seconds") }
    }

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = logLevel
            return handler
        }
        let logger = Logger(label: "mizar-operator")
        let members = try HostPort.list(parsing: etcd, field: "--etcd")
        var config = Operator.Config()
        config.workers = workers
        config.membershipTTL = membershipTtl
        if let id { config.id = id }
        let root = self.root
        let tls = try tls.files()
        if tls == nil { logger.warning("no TLS material (--tls-cert, --tls-key, --tls-ca): etcd and transitds in plaintext") }
        try await withEtcd(members, tls: tls) { client in
            let op = Operator(store: Store(etcd: client, root: root), pool: HTTP2TransitPool(tls: tls), config: config, logger: logger)
            logger.info("running", metadata: ["etcd": "\(client.endpoint)", "etcd.root": "\(root)", "tls": "\(tls != nil)"])
            // SIGTERM and SIGINT stop the controllers, then the replica leaves
            // the ring, then the watches end; whatever was under way is
            // finished by the next operator, from the objects' status.
            var services = op.services
            if let at = try MetricsServer.address(parsing: metricsAddress, field: "--metrics-address") {
                services.append(try MetricsServer(address: at, registry: op.metrics.registry, logger: logger, refresh: op.refreshMetrics))
            }
            try await ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger).run()
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
