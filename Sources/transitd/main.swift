// transitd: the per-host daemon. Loads the data plane (adopting pinned
// maps), attaches it, and serves the Transit gRPC API.
import ArgumentParser
import Glibc
import Logging
import MizarAPI
import MizarCNI
import MizarCore
import MizarDataplane
import MizarEtcd
import MizarMetrics
import MizarStore
import MizarSystem
import MizarTransit
import MizarTLS
import MizarTransitClient
import ServiceLifecycle

// setns is per thread: enter the host's namespace before any other thread
// exists, so every thread the runtime starts later inherits it.
if let i = CommandLine.arguments.firstIndex(of: "--netns"), i + 1 < CommandLine.arguments.count {
    do { try NetworkNamespace.enter(path: CommandLine.arguments[i + 1]) } catch {
        Transitd.exit(withError: ValidationError("--netns: \(error)"))
    }
}

struct Transitd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transitd",
        abstract: "Mizar's per-host daemon: attaches the data plane and serves the Transit API.")

    @Option(help: "The droplet interface (the host's interface on the substrate network).")
    var interface: String

    @Option(help: "Run inside this network namespace (a path such as /run/netns/NAME).")
    var netns: String?

    @Option(help: "Name of this host's pins and state; defaults to the interface name.")
    var name: String?

    @Option(help: "Directory with the built BPF objects (transit/agent .xdp.o and .tc.o).")
    var objects = "build/bpf"

    @Option(help: "bpffs directory for the pinned maps (default /sys/fs/bpf/mizar/NAME).")
    var pinDir: String?

    @Option(help: "Directory for state (default /run/mizar/NAME).")
    var stateDir: String?

    @Option(help: "Unix socket to serve on (default STATE-DIR/transitd.sock).")
    var socket: String?

    @Option(help: "TCP address for the management plane: HOST:PORT, 'droplet' for the droplet's IP on port 7070, or 'none'. Served with mutual TLS (--tls-*), admitting the operator alone; without TLS material, not opened unless --insecure.")
    var listen = "droplet"

    @OptionGroup var tlsOptions: TLSOptions

    @Flag(help: "Serve the TCP API in plaintext, to anyone who reaches it. Only for a network you trust whole.")
    var insecure = false

    @Option(help: "Droplets to believe from the start, one \"IP MAC\" per line (added to the pinned table; the operator keeps it current).")
    var droplets: String?

    @Option(help: "Hook of the transit program on the droplet interface: auto (tc on a veth, XDP elsewhere), tc or xdp.")
    var transitHook: TransitConfig.HookChoice = .auto

    @Option(help: "Hook of the agent on endpoint interfaces: tc (keeps the endpoint's TSO) or xdp.")
    var agentHook: Hook = .tc

    @Flag(help: "Always go through bouncers and dividers (no learned direct path).")
    var noDirectPath = false

    @Flag(help: "No network policy: admit every flow inside a VPC without judging it at the bouncers, and keep no conntrack (for comparison).")
    var noPolicy = false

    @Option(help: "Flows the conntrack table holds (allocated whole at start).")
    var conntrackSize: UInt32 = DataplaneSettings.defaultConntrackSize

    @Option(help: "Ports of the droplet's address that endpoints' egress is translated to, FIRST-LAST (reserved from the host's own sockets), or 'none' for no egress on this host.")
    var snatPorts: String = "\(DataplaneSettings.defaultSNATPorts.lowerBound)-\(DataplaneSettings.defaultSNATPorts.upperBound)"

    @Option(help: "Egress flows the SNAT tables hold (allocated whole at start).")
    var snatSize: UInt32 = DataplaneSettings.defaultSNATSize

    @Option(help: "etcd to register this droplet in, HOST:PORT[,HOST:PORT...] (with --tls-*, as user droplet-NAME).")
    var etcd: String?

    @Option(help: "Root of Mizar's keys in etcd.")
    var etcdRoot = Store.defaultRoot

    @Option(help: "The Droplet's name in etcd (default: --name).")
    var droplet: String?

    @Option(help: "Seconds the droplet's etcd lease lasts while it is neither a bouncer nor a divider (renewed every third of it); the operator marks it NotReady this long after it dies.")
    var leaseTTL: Int64 = 60

    @Option(help: "Seconds the lease lasts while the droplet is a bouncer or a divider: how soon the operator moves its roles after it dies.")
    var roleLeaseTTL: Int64 = 3

    @Option(help: "Where the operator reaches this transitd: HOST:PORT or unix:/PATH (default: the TCP listener, else the unix socket).")
    var advertise: String?

    @Option(help: "Unix socket for the CNI plugin (default /run/mizar/cni.sock, where mizar-cni looks, or STATE-DIR/cni.sock with --state-dir; 'none' to serve no CNI).")
    var cniSocket: String?

    @Option(help: "Where Prometheus metrics are served (GET /metrics): HOST:PORT, 'droplet' for the droplet's IP on port 9470, or 'none'. On loopback plain HTTP; anywhere else HTTPS with mutual TLS (--tls-*), admitting the metrics reader (mizarctl pki's metrics.crt) and the administrator.")
    var metricsAddress = DatapathMetrics.defaultAddress

    @Option(help: "Trace events kept for mizarctl observe (the last N; drops are always traced, every packet only while someone follows it). 0: keep none, trace nothing.")
    var flowEvents = 8192

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func validate() throws {
        if let etcd { _ = try HostPort.list(parsing: etcd, field: "--etcd") }
        if let droplet { try validateName(droplet, field: "--droplet") }
        if listen != "droplet" && listen != "none" && (try? HostPort(parsing: listen, field: "--listen")) == nil {
            throw ValidationError("--listen: \"\(listen)\" is not HOST:PORT, 'droplet' or 'none'")
        }
        if try tlsOptions.files() != nil && insecure {
            throw ValidationError("--insecure: TLS material is given; plaintext would serve beside it")
        }
        guard conntrackSize >= 1024 else { throw ValidationError("--conntrack-size: \(conntrackSize) is too small; at least 1024") }
        guard (0...1_000_000).contains(flowEvents) else { throw ValidationError("--flow-events: \(flowEvents) is not between 0 and 1000000") }
        guard (2...3600).contains(leaseTTL) else { throw ValidationError("--lease-ttl: \(leaseTTL) is not between 2 and 3600 seconds") }
        guard (2...leaseTTL).contains(roleLeaseTTL) else { throw ValidationError("--role-lease-ttl: \(roleLeaseTTL) is not between 2 and --lease-ttl (\(leaseTTL))") }
        guard snatSize >= 1024 else { throw ValidationError("--snat-size: \(snatSize) is too small; at least 1024") }
        _ = try Self.portRange(snatPorts)
        _ = try MetricsServer.address(parsing: metricsAddress == "droplet" ? "0.0.0.0:9470" : metricsAddress,
                                      field: "--metrics-address", tls: try tlsOptions.files() != nil)
    }

    /// "FIRST-LAST" within 1024-65535, or "none".
    static func portRange(_ text: String) throws -> ClosedRange<UInt16>? {
        if text == "none" { return nil }
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let first = UInt16(parts[0]), let last = UInt16(parts[1]), first >= 1024, first <= last else {
            throw ValidationError("--snat-ports: \"\(text)\" is not FIRST-LAST with 1024 <= FIRST <= LAST <= 65535, or 'none'")
        }
        return first...last
    }

    func run() async throws {
        let name = self.name ?? interface
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = logLevel
            return handler
        }
        var logger = Logger(label: "transitd")
        logger[metadataKey: "host"] = "\(name)"
        let stateDir = self.stateDir ?? "/run/mizar/\(name)"
        var config = TransitConfig(interface: interface, objectDirectory: objects,
                                   pinDirectory: pinDir ?? "/sys/fs/bpf/mizar/\(name)", stateDirectory: stateDir)
        config.transitHook = transitHook
        config.agentHook = agentHook
        config.dataplane.directPath = !noDirectPath
        config.dataplane.policy = !noPolicy
        config.dataplane.conntrackSize = conntrackSize
        config.dataplane.snatPorts = try Self.portRange(snatPorts)
        config.dataplane.snatSize = snatSize
        Dataplane.setLibbpfQuiet(false)

        let host = try await TransitHost(config: config, logger: logger)
        if let droplets {
            guard let text = try readFile(droplets) else { throw ValidationError("--droplets: \(droplets) does not exist") }
            let table = try DropletTableText.parse(text, source: droplets)
            _ = try await host.putDroplets(table, replace: false)
            logger.info("droplet table", metadata: ["from": "\(droplets)", "droplets": "\(table.count)"])
        }
        var tcp: (host: String, port: Int)?
        switch listen {
        case "none": tcp = nil
        case "droplet": tcp = ("\(host.droplet.ip)", 7070)
        default: let at = try HostPort(parsing: listen, field: "--listen"); tcp = (at.host, at.port)
        }
        let tls = try tlsOptions.files()
        if tcp != nil && tls == nil && !insecure {
            logger.warning("no TLS material (--tls-cert, --tls-key, --tls-ca): no TCP listener; serving the unix socket only (--insecure serves plaintext TCP)")
            tcp = nil
        }
        let listeners = TransitListeners(unixSocket: socket ?? "\(stateDir)/transitd.sock", tcp: tcp, tls: tls)
        logger.info("serving", metadata: ["rpc.unix": "\(listeners.unixSocket)", "rpc.tcp.security": "\(tcp == nil ? "none" : tls == nil ? "plaintext (--insecure)" : "mutual TLS, operator only")",
                                          "rpc.tcp": "\(tcp.map { "\($0.host):\($0.port)" } ?? "none")"])
        let spec = DropletSpec(ip: host.droplet.ip, mac: host.droplet.mac,
                               transitd: advertise ?? tcp.map { "\($0.host):\($0.port)" } ?? "unix:\(listeners.unixSocket)")
        let dropletName = droplet ?? name
        // One transitd per host serves CNI where the plugin looks by default;
        // several on one machine (the testbed) each serve in their state dir.
        let cniPath = cniSocket ?? (self.stateDir == nil ? "/run/mizar/cni.sock" : "\(stateDir)/cni.sock")

        // The daemon's long-running parts, started in this order and, on
        // SIGTERM or SIGINT, stopped in the reverse one: no new containers,
        // then no registration, then no API. Programs and pins stay, so the
        // data plane keeps forwarding until the next transitd adopts it.
        func serve(_ store: Store?) async throws {
            let metricsAt = try MetricsServer.address(parsing: metricsAddress == "droplet" ? "\(host.droplet.ip):9470" : metricsAddress,
                                                      field: "--metrics-address", tls: tls != nil)
            let metrics = DatapathMetrics(host: host, logger: logger)
            let flows = flowEvents == 0 ? nil : FlowEvents(dataplane: host.dataplane, droplet: host.droplet.ip, capacity: flowEvents, logger: logger)
            var services: [any Service] = flows.map { [$0] } ?? []
            // The explain build over the same tables (mizarctl trace); a
            // missing object leaves Explain unavailable, nothing else.
            var explainer: Explainer?
            do {
                explainer = try Explainer(dataplane: host.dataplane, objectDirectory: objects)
            } catch {
                logger.warning("no explain build: mizarctl trace cannot read this host", metadata: ["error": "\(error)"])
            }
            services.append(TransitServer(host: host, listeners: listeners,
                                          interceptors: metricsAt == nil ? [] : [RPCMetrics(registry: metrics.registry)], flows: flows,
                                          explaining: explainer.map { (host, $0) }))
            services.append(FlowSweeper(host: host, logger: logger, conntrack: !noPolicy))
            if let metricsAt {
                services.append(try MetricsServer(address: metricsAt, tls: tls, registry: metrics.registry, logger: logger, refresh: metrics.refresh))
            }
            if let store { services.append(DropletRegistration(
                store: store, name: dropletName, spec: spec,
                liveness: .init(ttl: leaseTTL, roleTTL: roleLeaseTTL, holdsRole: host.holdsRole), logger: logger)) }
            // CNI makes Endpoints in etcd; without etcd it answers with a clear error.
            if cniPath != "none" {
                services.append(CNIServer(path: cniPath, handler: CNIHandler(host: host, store: store, droplet: dropletName, logger: logger),
                                          logger: logger))
            }
            try await ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger).run()
        }
        if let etcd {
            if tls == nil { logger.warning("no TLS material (--tls-cert, --tls-key, --tls-ca): etcd in plaintext, as no user") }
            let members = try HostPort.list(parsing: etcd, field: "--etcd"), root = etcdRoot
            try await withEtcd(members, tls: tls) { client in try await serve(Store(etcd: client, root: root)) }
        } else {
            try await serve(nil)
        }
        logger.info("stopped; the data plane stays attached")
    }
}

extension TransitConfig.HookChoice: ExpressibleByArgument {}
extension Hook: ExpressibleByArgument {}
extension Logger.Level: @retroactive ExpressibleByArgument {}

do {
    let command = try Transitd.parse()
    try await command.run()
} catch {
    Transitd.exit(withError: error)
}
