// The scale simulation (issue 18): what each management operation costs at
// 100 to 100,000 hosts, and how it compares with real transitds.
//
// Real: etcd (on disk), the Operator's code (in calibration, in this
// process; in the sweep, the release mizar-operator executable), each
// droplet's DropletRegistration (its Droplet, its lease and renewals; in
// the sweep, run by a registrar process of their own at nice -5),
// Store and admission, gRPC over TCP with one connection per droplet.
// Simulated: each droplet's local work (SimFleet: tables in dictionaries,
// transitd's preconditions), all droplets behind one listener. TLS is off
// in the sweep (one listener cannot show each droplet's certificate);
// calibration's real side runs with it.
//
// Run by bench/scale.sh inside a network namespace of its own.
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Glibc
import Logging
import MizarAPI
import MizarBenchSupport
import MizarCore
import MizarEtcd
import MizarOperator
import MizarStore
import MizarSystem
import MizarTestbed
import MizarTransit
import MizarTransitClient
import Synchronization

// MARK: - Helpers

func env(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }

/// CPU idle fraction between two readings of /proc/stat.
struct CPUSample {
    var idle: Double, total: Double
    static func now() -> CPUSample {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let line = text.split(separator: "\n").first else { return CPUSample(idle: 0, total: 0) }
        let v = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        return CPUSample(idle: v.count > 4 ? v[3] + v[4] : 0, total: v.reduce(0, +))
    }
    static func idle(from a: CPUSample, to b: CPUSample) -> Double {
        b.total > a.total ? (b.idle - a.idle) / (b.total - a.total) : 1
    }
}

func rssMiB(_ pid: pid_t) -> Double {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return .nan }
    for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return (Double(line.split(separator: " ")[1]) ?? .nan) / 1024
    }
    return .nan
}

/// A metric's value from Prometheus text (the sum of its series).
func metric(_ text: String?, _ name: String) -> Double {
    guard let text else { return .nan }
    var sum = 0.0, seen = false
    for line in text.split(separator: "\n") where line.hasPrefix(name) && !line.hasPrefix("#") {
        let rest = line.dropFirst(name.count)
        guard rest.first == " " || rest.first == "{" else { continue }
        if let v = Double(line.split(separator: " ").last ?? "") { sum += v; seen = true }
    }
    return seen ? sum : .nan
}

/// Waits until `done` or the timeout; false at the timeout.
/// Asks `done` until it holds or `seconds` pass. An etcd call that times
/// out while the machine is saturated (the 100,000-host join) is asked
/// again, not taken as the step's failure; the last such error is thrown
/// if time runs out on it.
func until(_ seconds: Double, every: Duration = .milliseconds(20), _ done: () async throws -> Bool) async throws -> Bool {
    let deadline = monotonicSeconds() + seconds
    var lastError: (any Error)?
    while monotonicSeconds() < deadline {
        do {
            if try await done() { return true }
            lastError = nil
        } catch {
            lastError = error
        }
        try await Task.sleep(for: every)
    }
    if let lastError { throw lastError }
    return false
}

/// The simulated droplet i's address: 127.16.0.1 onwards.
func simAddress(_ i: Int) -> IPv4Address { IPv4Address(value: 0x7f10_0000 + UInt32(i + 1)) }
/// Named as the testbed names its hosts (PREFIX-hN from 1), so that
/// placement, which breaks ties by name, picks the same droplets.
func simName(_ i: Int) -> String { "sim-h\(i + 1)" }

// MARK: - What one operation cost

struct Cost {
    var methods: [String: Int] = [:]
    var calls: Int { methods.values.reduce(0, +) }
    var distinct = 0
    var most = 0
    var writes: Int64 = 0
    var keys: Int64 = 0
    var events = 0
    /// Bytes written: key and value of every put the operation made.
    var bytes = 0
    var seconds = 0.0
    var idle = 1.0
    var refusals: [String] = []

    var summary: String {
        let m = methods.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        return "\(calls) calls to \(distinct) droplets (most to one: \(most)) [\(m)]; etcd: \(writes) revisions, \(bytes) bytes put, \(keys >= 0 ? "+" : "")\(keys) keys, \(events) watch events; \(String(format: "%.3f", seconds)) s"
            + (idle < 0.2 ? String(format: "  INVALID: %.0f%% CPU idle", idle * 100) : "")
    }
}

/// Counts every event under the root, as one replica's watch would see,
/// and the bytes (key and value) of the puts among them.
final class EventCounter: Sendable {
    let count = Atomic<Int>(0)
    let bytes = Atomic<Int>(0)
    let task: Mutex<Task<Void, Never>?> = Mutex(nil)

    init(_ etcd: Etcd, root: String) async throws {
        let (_, revision) = try await etcd.list(prefix: root + "\u{0}none")
        let t = Task { [self] in
            do {
                for try await batch in etcd.watch(prefix: root, fromRevision: revision + 1) {
                    count.add(batch.count, ordering: .relaxed)
                    bytes.add(batch.reduce(0) { $0 + ($1.kind == .put ? $1.kv.key.utf8.count + $1.kv.value.count : 0) }, ordering: .relaxed)
                }
            } catch {}
        }
        task.withLock { $0 = t }
    }
    var value: Int { count.load(ordering: .relaxed) }
    var bytesPut: Int { bytes.load(ordering: .relaxed) }
    func stop() { task.withLock { $0?.cancel() } }
}

/// Runs `body` and measures what it cost: calls (from the simulated
/// droplets, or the operator's pool for real ones), etcd revisions and
/// keys, watch events, time and CPU idle.
func measure(_ store: Store, fleet: SimFleet?, pool: HTTP2TransitPool?, events: EventCounter,
             _ body: () async throws -> Void) async throws -> Cost {
    let before = fleet?.callCount
    pool?.resetCounts()
    let (_, r0) = try await store.etcd.list(prefix: store.root + "\u{0}none")
    let k0 = try await store.etcd.count(prefix: store.root)
    let e0 = events.value, b0 = events.bytesPut
    let cpu0 = CPUSample.now()
    let t0 = monotonicSeconds()
    try await body()
    var c = Cost()
    c.seconds = monotonicSeconds() - t0
    c.idle = CPUSample.idle(from: cpu0, to: .now())
    try await Task.sleep(for: .milliseconds(300))   // the last watch events arrive
    let (_, r1) = try await store.etcd.list(prefix: store.root + "\u{0}none")
    c.writes = r1 - r0
    c.keys = try await store.etcd.count(prefix: store.root) - k0
    c.events = events.value - e0
    c.bytes = events.bytesPut - b0
    if let fleet, let before {
        let d = fleet.callCount - before
        c.methods = d.byMethod
        c.refusals = fleet.takeRefusals()
        c.distinct = d.distinctDroplets
        c.most = d.mostToOne
    } else if let pool {
        c.methods = pool.methodCounts()
        let byTarget = pool.callCounts()
        c.distinct = byTarget.count
        c.most = byTarget.values.max() ?? 0
    }
    return c
}

// MARK: - The workload

func phase<S: ObjectSpec>(_ store: Store, _ type: S.Type, _ name: String) async throws -> Phase? {
    try await store.get(type, name)?.status?.common.phase
}

func waitPhase<S: ObjectSpec>(_ store: Store, _ type: S.Type, _ name: String, _ want: Phase, seconds: Double = 120) async throws {
    guard try await until(seconds, { try await phase(store, type, name) == want }) else {
        throw TestbedError("\(S.kind) \(name) not \(want) within \(Int(seconds)) s (\(String(describing: try await phase(store, type, name))))")
    }
}

/// The calibration's scripted workload; the same steps as the sweep's.
func workload(_ store: Store, droplets: [String], fleet: SimFleet?, pool: HTTP2TransitPool?, events: EventCounter,
              leave: () async throws -> Void, join: () async throws -> Void) async throws -> [(String, Cost)] {
    var out: [(String, Cost)] = []
    out.append(("VPC create", try await measure(store, fleet: fleet, pool: pool, events: events) {
        try await store.create(Vpc(name: "cal", spec: VpcSpec(cidr: "10.0.0.0/8")))
        try await waitPhase(store, VpcSpec.self, "cal", .provisioned)
    }))
    out.append(("subnet create", try await measure(store, fleet: fleet, pool: pool, events: events) {
        try await store.create(Subnet(name: "cal-1", spec: SubnetSpec(vpc: "cal", cidr: "10.1.0.0/16", bouncers: 2)))
        try await waitPhase(store, SubnetSpec.self, "cal-1", .provisioned)
    }))
    out.append(("6 endpoints", try await measure(store, fleet: fleet, pool: pool, events: events) {
        for i in 0..<6 {
            try await store.create(Endpoint(name: "cal-e\(i)", spec: EndpointSpec(vpc: "cal", subnet: "cal-1", ip: IPv4Address(10, 1, 0, UInt8(10 + i)),
                                                                                 droplet: droplets[i % droplets.count])))
        }
        for i in 0..<6 { try await waitPhase(store, EndpointSpec.self, "cal-e\(i)", .provisioned) }
    }))
    out.append(("droplet leave", try await measure(store, fleet: fleet, pool: pool, events: events) {
        try await leave()
        try await waitPhase(store, DropletSpec.self, droplets.last!, .notReady, seconds: 30)
        try await Task.sleep(for: .seconds(1))   // placements settle
    }))
    out.append(("droplet join", try await measure(store, fleet: fleet, pool: pool, events: events) {
        try await join()
        try await waitPhase(store, DropletSpec.self, droplets.last!, .ready, seconds: 30)
        try await Task.sleep(for: .seconds(1))
    }))
    out.append(("VPC delete", try await measure(store, fleet: fleet, pool: pool, events: events) {
        try await store.delete(VpcSpec.self, "cal")
        guard try await until(60, { try await store.get(VpcSpec.self, "cal") == nil }) else { throw TestbedError("VPC cal not deleted") }
    }))
    return out
}

// MARK: - Simulated droplets

/// The fleet's listener and each droplet's registration: in this process
/// (the calibration), or in a registrar process of their own (the sweep).
final class SimCluster: Sendable {
    let fleet = SimFleet()
    let server: GRPCServer<HTTP2ServerTransport.Posix>
    let serving: Task<Void, Never>
    let registrations = Mutex<[Int: Task<Void, Never>]>([:])
    let registrar: RegistrarProcess?
    let port: Int

    init(port: Int, registrar: RegistrarProcess? = nil) {
        self.port = port
        self.registrar = registrar
        let transport = HTTP2ServerTransport.Posix(address: .ipv4(host: "0.0.0.0", port: port), transportSecurity: .plaintext)
        server = GRPCServer(transport: transport, services: [TransitService(host: fleet)], interceptors: [SimRouting(fleet: fleet)])
        serving = Task { [server] in try? await server.serve() }
        if let registrar {
            fleet.roleChanged.withLock { $0 = { ip, role in registrar.send("role \(ip.value - simAddress(0).value) \(role ? 1 : 0)") } }
        }
    }

    func spec(_ i: Int) -> DropletSpec { SimCluster.spec(i, port: port) }
    static func spec(_ i: Int, port: Int) -> DropletSpec {
        let ip = simAddress(i)
        return DropletSpec(ip: ip, mac: MACAddress(value: 0x0200_0000_0000 + UInt64(i + 1)), transitd: "\(ip):\(port)")
    }

    /// Droplet i comes up: its tables, then its registration (as transitd;
    /// through `store`, or the registrar's own connections).
    func register(_ i: Int, store: Store?, ttl: Int64, roleTTL: Int64, logger: Logger) {
        let ip = simAddress(i), fleet = fleet, spec = spec(i)
        if !fleet.has(ip) { fleet.add(ip) }
        if let registrar {
            registrar.send("start \(i) \(ttl) \(roleTTL) \(fleet.holdsRole(ip) ? 1 : 0)")
            return
        }
        guard let store else { preconditionFailure("droplet \(i)'s registration needs a store without a registrar") }
        let t = Task {
            await DropletRegistration.run(store: store, name: simName(i), spec: spec,
                                          liveness: .init(ttl: ttl, roleTTL: roleTTL, holdsRole: fleet.roleFlag(ip)), logger: logger)
        }
        registrations.withLock { $0[i] = t }
    }

    /// Droplet i's transitd stops renewing (killed): its lease lapses.
    func stopRegistration(_ i: Int) {
        if let registrar { registrar.send("stop \(i)") }
        registrations.withLock { $0.removeValue(forKey: i) }?.cancel()
    }

    func stop() async {
        for t in registrations.withLock({ $0.values }) { t.cancel() }
        registrar?.stop()
        server.beginGracefulShutdown()
        serving.cancel()
    }
}

// MARK: - The registrar: the droplets' registrations in a process of their own

/// The simulated droplets' registrations (DropletRegistration: each its
/// Droplet, lease and renewals), run by this executable in a process of
/// its own and told over its standard input which to start and stop and
/// which hold a role. A real droplet renews from its own host; sharing the
/// fleet's process, 100,000 renewals were starved while that process served
/// a join's 100,000 calls, and the leases lapsed.
final class RegistrarProcess: Sendable {
    let pid: pid_t
    private let input: Mutex<FileHandle?>

    init(etcd: Int, hosts: Int, fleetPort: Int, log: String) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: siblingExecutable("mizar-bench-scale"))
        p.arguments = ["registrar", "\(etcd)", "\(hosts)", "\(fleetPort)"]
        let pipe = Pipe()
        p.standardInput = pipe
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let out = FileHandle(forWritingAtPath: log)
        p.standardOutput = out
        p.standardError = out
        try p.run()
        pid = p.processIdentifier
        // It stands for every droplet's own CPU: its renewals go before
        // the operator's and the fleet's work on this machine's two cores
        // (etcd, which stands for etcd's own machines, goes first: -10).
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(pid), -5)
        input = Mutex(pipe.fileHandleForWriting)
    }

    /// One line to the registrar, in the order sent.
    func send(_ line: String) {
        input.withLock { try? $0?.write(contentsOf: Array((line + "\n").utf8)) }
    }

    /// Its input closed: it ends every registration (their leases revoked
    /// or left to lapse) and exits; SIGKILL by its pid after 30 s.
    func stop() {
        guard let h = input.withLock({ i in defer { i = nil }; return i }) else { return }
        try? h.close()
        awaitExit(pid, seconds: 30)
    }
}

/// Waits up to `seconds` for child `pid` to exit, then SIGKILLs it (by its
/// pid) and reaps it.
func awaitExit(_ pid: pid_t, seconds: Int) {
    var status: Int32 = 0
    for _ in 0..<(seconds * 10) {
        if waitpid(pid, &status, WNOHANG) == pid { return }
        usleep(100_000)
    }
    kill(pid, SIGKILL)
    reap(pid)
}

/// The registrar's side: `start I TTL ROLETTL ROLE`, `stop I`, `role I 0|1`
/// lines until its input closes. Droplet i registers through connection
/// i / dropletsPerConnection.
func runRegistrar(etcdPort: Int, hosts: Int, fleetPort: Int, logger: Logger) async throws {
    let connections = max(1, (hosts + dropletsPerConnection - 1) / dropletsPerConnection)
    try await withClients(connections, port: etcdPort) { clients in
        let stores = clients.map { Store(etcd: $0) }
        let running = Mutex<[Int: Task<Void, Never>]>([:])
        let flags = Mutex<[Int: WatchedFlag]>([:])
        @Sendable func flag(_ i: Int) -> WatchedFlag {
            flags.withLock { f in
                if let x = f[i] { return x }
                let x = WatchedFlag()
                f[i] = x
                return x
            }
        }
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread {
                while let line = readLine() {
                    let w = line.split(separator: " ").compactMap { Int($0) }
                    guard let i = w.first, i >= 0, i < hosts else { continue }
                    switch line.split(separator: " ").first {
                    case "start" where w.count == 4:
                        let holdsRole = flag(i)
                        holdsRole.set(w[3] == 1)
                        let store = stores[i / dropletsPerConnection], spec = SimCluster.spec(i, port: fleetPort)
                        let t = Task {
                            await DropletRegistration.run(store: store, name: simName(i), spec: spec,
                                                          liveness: .init(ttl: Int64(w[1]), roleTTL: Int64(w[2]), holdsRole: holdsRole),
                                                          logger: logger)
                        }
                        running.withLock { r in defer { r[i] = t }; return r[i] }?.cancel()
                    case "stop":
                        running.withLock { $0.removeValue(forKey: i) }?.cancel()
                    case "role" where w.count == 2:
                        flag(i).set(w[1] == 1)
                    default:
                        continue
                    }
                }
                done.resume()
            }
        }
        // The registrations end before their connections close.
        let all = running.withLock { r in defer { r = [:] }; return Array(r.values) }
        for t in all { t.cancel() }
        for t in all { await t.value }
    }
}

// MARK: - Calibration: 3 and 30 real transitds against 3 and 30 simulated droplets

func calibrate(hosts: Int, logger: Logger) async throws -> (real: [(String, Cost)], sim: [(String, Cost)]) {
    // Real transitds (the testbed), etcd with TLS, the operator in process.
    var options = Testbed.Options.besideThisExecutable()
    options.hosts = hosts
    options.underlayNet = 40
    let name = "mzcal\(hosts)"
    let realDir = "/var/tmp/mizar-scale-\(name)-\(getpid())"
    let (bed, etcd, started) = try Testbed.upWithEtcd(name: name, options: options, etcdDirectory: realDir)
    let real: [(String, Cost)]
    do {
        defer { bed.down(); etcd.stop(); _ = removeTree(realDir) }
        real = try await withEtcd(etcd.endpoints(), tls: bed.operatorTLS) { client in
            let store = Store(etcd: client)
            let pool = HTTP2TransitPool(tls: bed.operatorTLS)
            let op = Operator(store: store, pool: pool, logger: logger)
            let running = Task { await op.run() }
            let names = bed.hosts.map(bed.dropletName)
            guard try await until(60, { try await store.list(DropletSpec.self).objects.filter { $0.status?.common.phase == .ready }.count == hosts }) else {
                throw TestbedError("\(hosts) real droplets not ready")
            }
            let events = try await EventCounter(client, root: store.root)
            let leaver = bed.hosts.last!
            let costs = try await workload(store, droplets: names, fleet: nil, pool: pool, events: events, leave: {
                if let pid = bed.pid(of: leaver) { kill(pid, SIGKILL); reap(pid) }
            }, join: {
                try await onOwnThread { try bed.restart(leaver, options: started) }
            })
            events.stop()
            running.cancel()
            await running.value
            for (op, c) in costs { say("\(hosts) real transitds  \(op): \(c.summary)") }
            return costs
        }
    }
    // Simulated droplets, etcd without TLS, the same operator code.
    let dir = "/var/tmp/mizar-scale-sim\(hosts)-\(getpid())"
    let simEtcd = try EtcdServer(name: "sim", directory: dir)
    defer { simEtcd.stop(); _ = removeTree(dir) }
    let sim = SimCluster(port: 7070)
    let simCosts = try await withEtcd(host: "127.0.0.1", port: simEtcd.clientPort) { client in
        let store = Store(etcd: client)
        // Droplet leases as the testbed's transitds hold them (3 s).
        for i in 0..<hosts { sim.register(i, store: store, ttl: 3, roleTTL: 3, logger: logger) }
        let pool = HTTP2TransitPool()
        let op = Operator(store: store, pool: pool, logger: logger)
        let running = Task { await op.run() }
        guard try await until(60, { try await store.list(DropletSpec.self).objects.filter { $0.status?.common.phase == .ready }.count == hosts }) else {
            throw TestbedError("\(hosts) simulated droplets not ready")
        }
        let events = try await EventCounter(client, root: store.root)
        let costs = try await workload(store, droplets: (0..<hosts).map(simName), fleet: sim.fleet, pool: nil, events: events, leave: {
            sim.stopRegistration(hosts - 1)
        }, join: {
            sim.register(hosts - 1, store: store, ttl: 3, roleTTL: 3, logger: logger)
        })
        // Everything that streams from etcd ends before the client closes.
        events.stop()
        await sim.stop()
        running.cancel()
        await running.value
        return costs
    }
    return (real, simCosts)
}

// MARK: - Main

// A registrar that died must not end the benchmark through its pipe.
signal(SIGPIPE, SIG_IGN)
var logger = Logger(label: "scale")
logger.logLevel = .error
let mode = CommandLine.arguments.dropFirst().first ?? "all"

if mode == "registrar" {
    let a = CommandLine.arguments.dropFirst(2).compactMap { Int($0) }
    guard a.count == 3 else { fatalError("usage: mizar-bench-scale registrar ETCD-PORT HOSTS FLEET-PORT") }
    try await runRegistrar(etcdPort: a[0], hosts: a[1], fleetPort: a[2], logger: logger)
    exit(0)
}

if mode == "calibrate" || mode == "all" {
    say("== Calibration: the same workload on real transitds and on simulated droplets (per-method calls, etcd revisions and keys)")
    for hosts in [3, 30] {
        let (real, sim) = try await calibrate(hosts: hosts, logger: logger)
        var same = true
        for ((op, r), (_, s)) in zip(real, sim) {
            let equal = r.methods == s.methods && r.writes == s.writes && r.keys == s.keys && r.distinct == s.distinct
            same = same && equal
            say("\(hosts) hosts  \(op)\n  real:      \(r.summary)\n  simulated: \(s.summary)\n  \(equal ? "identical" : "DIFFERENT")"
                + (s.refusals.isEmpty ? "" : "\n  refused by simulated droplets: \(s.refusals.joined(separator: "; "))"))
        }
        say("calibration at \(hosts) hosts: \(same ? "identical" : "DIFFERENT") per-method calls and etcd deltas")
    }
}

// MARK: - The sweep: 100 to 100,000 simulated hosts, the release operator

/// Operator replicas in the sweep (REPLICAS, 1 by default): they split
/// the VPCs and droplets on their ring.
let replicas = max(1, Int(env("REPLICAS") ?? "1") ?? 1)
/// The lease TTL of a droplet without a role (DROPLET_TTL, seconds): 60
/// as transitd ships; a longer one shows an operation's cost apart from
/// the renewals' load on this one machine, and the sweep says so.
nonisolated var dropletTTL: Int64 { max(3, Int64(env("DROPLET_TTL") ?? "60") ?? 60) }

/// The release mizar-operator, started as a process; stopped by its pid.
struct OperatorProcess {
    let pid: pid_t
    let metricsPort: Int
    let log: String

    init(etcd: Int, directory: String, id: String = "op-1") throws {
        metricsPort = try EtcdServer.freePort()
        log = "\(directory)/\(id).log"
        pid = try spawnDaemon([siblingExecutable("mizar-operator"), "--etcd", "127.0.0.1:\(etcd)", "--id", id,
                               "--metrics-address", "127.0.0.1:\(metricsPort)", "--log-level", env("OPERATOR_LOG") ?? "warning"], log: log)
    }
    var metrics: String? { EtcdServer.httpGet(port: metricsPort, path: "/metrics") }
    /// SIGTERM, and SIGKILL if it has not exited within 10 s. The last
    /// lines of its log (warnings and errors) are printed: the log goes
    /// with the run's directory.
    func stop() {
        defer {
            let lines = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n")
            if !lines.isEmpty {
                say("\(URL(fileURLWithPath: log).lastPathComponent): \(lines.count) lines, the last:\n  " + lines.suffix(10).joined(separator: "\n  "))
            }
        }
        kill(pid, SIGTERM)
        awaitExit(pid, seconds: 10)
    }

    /// Waits until its queues are empty and no reconcile ran for `quiet`
    /// seconds; the seconds it took.
    func settle(from start: Double, quiet: Double = 1, timeout: Double = 1800) async throws -> Double {
        var last = -1.0, lastChange = monotonicSeconds(), reconciled = 0.0
        while monotonicSeconds() - start < timeout {
            let text = metrics
            let n = metric(text, "mizar_operator_reconciles_total"), depth = metric(text, "mizar_operator_queue_depth")
            if n != last { last = n; lastChange = monotonicSeconds(); reconciled = monotonicSeconds() }
            if !n.isNaN && depth == 0 && monotonicSeconds() - lastChange >= quiet { return reconciled - start }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestbedError("the operator did not settle within \(Int(timeout)) s")
    }
}

/// Runs `count` jobs, `width` at a time.
func concurrently(_ count: Int, width: Int = 64, _ job: @escaping @Sendable (Int) async throws -> Void) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        var next = 0
        while next < min(width, count) { let i = next; group.addTask { try await job(i) }; next += 1 }
        while try await group.next() != nil {
            if next < count { let i = next; group.addTask { try await job(i) }; next += 1 }
        }
    }
}

/// `n` etcd clients (connections) at once.
func withClients<R: Sendable>(_ n: Int, port: Int, _ have: [Etcd] = [], _ body: ([Etcd]) async throws -> R) async throws -> R {
    if have.count == n { return try await body(have) }
    return try await withEtcd(host: "127.0.0.1", port: port) { try await withClients(n, port: port, have + [$0], body) }
}

/// Droplets whose registrations share one etcd connection (a transitd has
/// its own; 100,000 connections would pass this machine's descriptor cap).
/// (Computed: the registrar mode runs before the top level reaches here.)
nonisolated var dropletsPerConnection: Int { 200 }

/// Loads a cluster of `hosts` simulated droplets at rest: every Droplet
/// Ready as the operator leaves it (the join path costs one call per host
/// per join, measured in the sweep; D joins one by one would cost D² calls
/// to set up), every registration live in the registrar process.
func loadDroplets(_ hosts: Int, store: Store, sim: SimCluster, logger: Logger) async throws {
    try await concurrently(hosts) { i in
        try await store.create(Droplet(name: simName(i), spec: sim.spec(i)))
        try await store.updateStatus(DropletSpec.self, simName(i)) { $0.common.phase = .ready }
    }
    // Registrations start 1,000 at a time, as a cluster's transitds come
    // up over time (100,000 grants at once queue behind each other).
    for start in stride(from: 0, to: hosts, by: 1000) {
        for i in start..<min(hosts, start + 1000) { sim.register(i, store: nil, ttl: dropletTTL, roleTTL: 3, logger: logger) }
        let want = min(hosts, start + 1000)
        guard try await until(600, every: .milliseconds(50), { try await store.etcd.count(prefix: store.dropletLeasePrefix) >= want - 100 }) else {
            throw TestbedError("registrations \(start)..<\(want) not made")
        }
    }
    guard try await until(600, every: .milliseconds(250), { try await store.etcd.count(prefix: store.dropletLeasePrefix) == hosts }) else {
        throw TestbedError("\(hosts) registrations not made")
    }
}

/// etcd on disk under `dir`, the simulated droplets' listener, their
/// registrar process, and `hosts` droplets loaded at rest
/// (`loadDroplets`): `body` gets etcd, the fleet and the benchmark's own
/// store. Everything is stopped afterwards.
func withSimulatedCluster(hosts: Int, dir: String, logger: Logger,
                          _ body: (EtcdServer, SimCluster, Store) async throws -> Void) async throws {
    let etcd = try EtcdServer(name: "scale", directory: dir)
    defer { etcd.stop(); _ = removeTree(dir) }
    let sim = SimCluster(port: 7070, registrar: try RegistrarProcess(etcd: etcd.clientPort, hosts: hosts, fleetPort: 7070,
                                                                      log: "\(dir)/registrar.log"))
    try await withEtcd(host: "127.0.0.1", port: etcd.clientPort) { client in
        let store = Store(etcd: client)
        let t0 = monotonicSeconds()
        // The registrations end (the registrar exits) before etcd stops,
        // on failure as well.
        do {
            try await loadDroplets(hosts, store: store, sim: sim, logger: logger)
            say("\(hosts) hosts: loaded in \(String(format: "%.1f", monotonicSeconds() - t0)) s")
            try await body(etcd, sim, store)
        } catch {
            say("\(hosts) hosts: stopping after: \(error)")
            await sim.stop()
            throw error
        }
        await sim.stop()
    }
}

func sweep(hosts: Int, logger: Logger) async throws {
    let dir = "/var/tmp/mizar-scale-\(hosts)-\(getpid())"
    try await withSimulatedCluster(hosts: hosts, dir: dir, logger: logger) { etcd, sim, store in
        let client = store.etcd
        // Renewals at rest: etcd's own count over 40 s (two renewal
        // periods of a droplet without a role).
        let r0 = metric(etcd.metricsText(), "etcd_debugging_lease_renewed_total"), c0 = CPUSample.now()
        try await Task.sleep(for: .seconds(40))
        let renewals = (metric(etcd.metricsText(), "etcd_debugging_lease_renewed_total") - r0) / 40
        say("\(hosts) hosts: lease renewals \(String(format: "%.0f", renewals))/s at rest (\(String(format: "%.0f", CPUSample.idle(from: c0, to: .now()) * 100))% CPU idle)")

        let t0 = monotonicSeconds()
        let ops = try (1...replicas).map { try OperatorProcess(etcd: etcd.clientPort, directory: dir, id: "op-\($0)") }
        defer { for op in ops { op.stop() } }
        var settled = 0.0
        for op in ops { settled = max(settled, try await op.settle(from: t0)) }
        func rss() -> String { ops.map { String(format: "%.0f", rssMiB($0.pid)) }.joined(separator: ", ") }
        say("\(hosts) hosts: \(replicas) operator replica(s) start -> settled \(String(format: "%.2f", settled)) s, RSS \(rss()) MiB")

        let events = try await EventCounter(client, root: store.root)
        defer { events.stop() }
        func report(_ what: String, _ c: Cost) { say("\(hosts) hosts  \(what): \(c.summary)") }
        report("VPC create", try await measure(store, fleet: sim.fleet, pool: nil, events: events) {
            try await store.create(Vpc(name: "v", spec: VpcSpec(cidr: "10.0.0.0/8")))
            try await waitPhase(store, VpcSpec.self, "v", .provisioned)
        })
        report("subnet create", try await measure(store, fleet: sim.fleet, pool: nil, events: events) {
            try await store.create(Subnet(name: "v-1", spec: SubnetSpec(vpc: "v", cidr: "10.1.0.0/16", bouncers: 2)))
            try await waitPhase(store, SubnetSpec.self, "v-1", .provisioned)
        })
        // Endpoints one after another on droplets spread over the cluster:
        // create -> Provisioned.
        var latencies: [Double] = []
        let n = 200
        let endpoints = try await measure(store, fleet: sim.fleet, pool: nil, events: events) {
            for i in 0..<n {
                let start = monotonicSeconds()
                try await store.create(Endpoint(name: "e\(i)", spec: EndpointSpec(vpc: "v", subnet: "v-1", droplet: simName(i * 7919 % hosts))))
                try await waitPhase(store, EndpointSpec.self, "e\(i)", .provisioned, seconds: 30)
                latencies.append(monotonicSeconds() - start)
            }
        }
        report("\(n) endpoints", endpoints)
        say(String(format: "\(hosts) hosts  endpoint create -> Provisioned: p50 %.1f ms, p99 %.1f ms (%d, one at a time)",
                   percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000, n))
        // A droplet without a role leaves (its lease revoked: a lapse without the wait).
        let plain = (0..<hosts).first { !sim.fleet.holdsRole(simAddress($0)) }!
        report("droplet leave (no role)", try await measure(store, fleet: sim.fleet, pool: nil, events: events) {
            sim.stopRegistration(plain)
            if let lease = try await store.etcd.get(store.dropletLeasePrefix + simName(plain))?.lease { try await store.etcd.revokeLease(lease) }
            try await waitPhase(store, DropletSpec.self, simName(plain), .notReady, seconds: 60)
            try await Task.sleep(for: .seconds(1))
        })
        // A bouncer leaves: its subnet gets another.
        let bouncer = try await store.get(SubnetSpec.self, "v-1")?.status?.bouncers?.first
        if let bouncer, let i = Int(bouncer.dropFirst(5)).map({ $0 - 1 }) {
            report("droplet leave (a bouncer)", try await measure(store, fleet: sim.fleet, pool: nil, events: events) {
                sim.stopRegistration(i)
                if let lease = try await store.etcd.get(store.dropletLeasePrefix + bouncer)?.lease { try await store.etcd.revokeLease(lease) }
                try await waitPhase(store, DropletSpec.self, bouncer, .notReady, seconds: 60)
                guard try await until(60, { try await store.get(SubnetSpec.self, "v-1")?.status?.bouncers?.contains(bouncer) == false }) else {
                    throw TestbedError("bouncer \(bouncer) not replaced")
                }
                try await Task.sleep(for: .seconds(1))
            })
            // (It stays away: its return would be a second join.)
        }
        report("subnet create (a second)", try await measure(store, fleet: sim.fleet, pool: nil, events: events) {
            try await store.create(Subnet(name: "v-2", spec: SubnetSpec(vpc: "v", cidr: "10.2.0.0/16", bouncers: 2)))
            try await waitPhase(store, SubnetSpec.self, "v-2", .provisioned)
        })
        report("subnet delete (no endpoints)", try await measure(store, fleet: sim.fleet, pool: nil, events: events) {
            try await store.delete(SubnetSpec.self, "v-2")
            guard try await until(60, { try await store.get(SubnetSpec.self, "v-2") == nil }) else { throw TestbedError("subnet v-2 not deleted") }
        })
        report("VPC delete (\(n) endpoints)", try await measure(store, fleet: sim.fleet, pool: nil, events: events) {
            try await store.delete(VpcSpec.self, "v")
            guard try await until(120, { try await store.get(VpcSpec.self, "v") == nil }) else { throw TestbedError("VPC v not deleted") }
        })
        // The join last: at 100,000 hosts it is the heaviest step for this
        // machine (one call to every droplet), and the others come first.
        report("droplet join", try await measure(store, fleet: sim.fleet, pool: nil, events: events) {
            sim.register(plain, store: nil, ttl: dropletTTL, roleTTL: 3, logger: logger)
            try await waitPhase(store, DropletSpec.self, simName(plain), .ready, seconds: 1200)
            try await Task.sleep(for: .seconds(1))
        })
        say("\(hosts) hosts: operator RSS \(rss()) MiB; etcd RSS \(String(format: "%.0f", rssMiB(etcd.pid))) MiB")
        events.stop()
    }
}

if mode == "sweep" || mode == "all" {
    say("== Sweep: \(replicas) mizar-operator replica(s) (the executable) over simulated droplets; watch events are one watcher's (each replica receives them)"
        + (dropletTTL == 60 ? "" : "; droplets without a role hold leases of \(dropletTTL) s, NOT the 60 s transitd ships"))
    for hosts in (env("HOSTS") ?? "100 1000 10000").split(separator: " ").compactMap({ Int($0) }) {
        // A step that fails ends its size (everything it started stopped)
        // and says why; the next size runs.
        do { try await sweep(hosts: hosts, logger: logger) } catch { say("\(hosts) hosts: FAILED: \(error)") }
    }
}

// MARK: - Endpoints present: 0, 100,000 and 1,000,000 at 1,000 hosts

/// Writes `count` endpoints (from `first` on) of VPC "bulk" as the operator
/// leaves them — copies of `model`, a real Provisioned endpoint, each with
/// its own name, uid, address and droplet — with their ipam keys.
func bulkLoad(_ store: Store, model: MizarAPI.Endpoint, from first: Int, count: Int, hosts: Int) async throws {
    let batch = 32
    try await concurrently((count + batch - 1) / batch, width: 16) { b in
        var ops: [EtcdOperation] = []
        for j in (first + b * batch)..<min(first + count, first + (b + 1) * batch) {
            var e = model
            e.metadata.name = "bulk-\(j)"
            e.metadata.uid = UUID().uuidString.lowercased()
            e.metadata.resourceVersion = nil
            let ip = IPv4Address(value: 0x0a80_0000 + UInt32(j) + 3)
            e.spec.ip = ip
            e.spec.droplet = simName(j % hosts)
            e.status?.ip = ip
            e.status?.mac = MACAddress(value: 0x0a58_0000_0000 + UInt64(j))
            e.status?.droplet = simName(j % hosts)
            ops.append(.put(store.key(.endpoint, e.name), ObjectCoding.encode(e)))
            ops.append(.put(store.ipKey(vpc: "bulk", ip: ip), Array(e.name.utf8)))
        }
        _ = try await store.etcd.transaction(if: [], then: ops)
    }
}

func endpointScale(hosts: Int, steps: [Int], logger: Logger) async throws {
    let dir = "/var/tmp/mizar-scale-e\(hosts)-\(getpid())"
    try await withSimulatedCluster(hosts: hosts, dir: dir, logger: logger) { etcd, sim, store in
        var op = try OperatorProcess(etcd: etcd.clientPort, directory: dir)
        defer { op.stop() }
        _ = try await op.settle(from: monotonicSeconds())
        // The VPC the bulk lives in, and one real endpoint as its model.
        try await store.create(Vpc(name: "bulk", spec: VpcSpec(cidr: "10.0.0.0/8")))
        try await waitPhase(store, VpcSpec.self, "bulk", .provisioned)
        try await store.create(Subnet(name: "bulk-1", spec: SubnetSpec(vpc: "bulk", cidr: "10.128.0.0/9", bouncers: 2)))
        try await waitPhase(store, SubnetSpec.self, "bulk-1", .provisioned)
        try await store.create(Endpoint(name: "model", spec: EndpointSpec(vpc: "bulk", subnet: "bulk-1", ip: IPv4Address(value: 0x0a80_0002),
                                                                         droplet: simName(0))))
        try await waitPhase(store, EndpointSpec.self, "model", .provisioned)
        let model = try await store.get(EndpointSpec.self, "model")!
        try await store.create(Vpc(name: "v", spec: VpcSpec(cidr: "10.0.0.0/8")))
        try await waitPhase(store, VpcSpec.self, "v", .provisioned)
        try await store.create(Subnet(name: "v-1", spec: SubnetSpec(vpc: "v", cidr: "10.1.0.0/16", bouncers: 2)))
        try await waitPhase(store, SubnetSpec.self, "v-1", .provisioned)
        var loaded = 0, round = 0
        let events = try await EventCounter(store.etcd, root: store.root)
        for target in steps {
            if target > loaded {
                op.stop()
                let t0 = monotonicSeconds()
                try await bulkLoad(store, model: model, from: loaded, count: target - loaded, hosts: hosts)
                say(String(format: "\(hosts) hosts: %d endpoints written in %.1f s", target - loaded, monotonicSeconds() - t0))
                loaded = target
                // Restart: the operator lists and settles every object.
                let start = monotonicSeconds()
                op = try OperatorProcess(etcd: etcd.clientPort, directory: dir, id: "op-\(target)")
                let settled = try await op.settle(from: start, quiet: 2)
                say(String(format: "\(hosts) hosts, %d endpoints: operator start -> settled %.1f s, RSS %.0f MiB", loaded, settled, rssMiB(op.pid)))
            }
            let db = metric(etcd.metricsText(), "etcd_mvcc_db_total_size_in_use_in_bytes")
            let keys = try await store.etcd.count(prefix: store.root)
            say(String(format: "\(hosts) hosts, %d endpoints: etcd %.0f MiB in use, %d keys, RSS %.0f MiB", loaded, db / 1048576, keys, rssMiB(etcd.pid)))
            var latencies: [Double] = []
            let cost = try await measure(store, fleet: sim.fleet, pool: nil, events: events) {
                for i in 0..<100 {
                    let start = monotonicSeconds()
                    try await store.create(Endpoint(name: "r\(round)-\(i)", spec: EndpointSpec(vpc: "v", subnet: "v-1", droplet: simName(i * 7919 % hosts))))
                    try await waitPhase(store, EndpointSpec.self, "r\(round)-\(i)", .provisioned, seconds: 60)
                    latencies.append(monotonicSeconds() - start)
                }
            }
            say(String(format: "\(hosts) hosts, %d endpoints: create -> Provisioned p50 %.1f ms, p99 %.1f ms (100, one at a time); ", loaded,
                       percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000) + cost.summary)
            let sub = try await measure(store, fleet: sim.fleet, pool: nil, events: events) {
                try await store.create(Subnet(name: "v-s\(round)", spec: SubnetSpec(vpc: "v", cidr: CIDR(parsing: "10.\(2 + round).0.0/16"), bouncers: 2)))
                try await waitPhase(store, SubnetSpec.self, "v-s\(round)", .provisioned)
            }
            say("\(hosts) hosts, \(loaded) endpoints: subnet create: " + sub.summary)
            round += 1
        }
        // Everything that streams from etcd ends before the clients close.
        events.stop()
    }
}

if mode == "endpoints" {
    say("== Endpoints present: the mizar-operator executable at \(env("HOSTS") ?? "1000") simulated hosts")
    try await endpointScale(hosts: Int(env("HOSTS") ?? "1000") ?? 1000,
                            steps: (env("ENDPOINTS") ?? "0 100000 1000000").split(separator: " ").compactMap { Int($0) }, logger: logger)
}
