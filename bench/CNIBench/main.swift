// mizar-cni as a container runtime meets it: a real etcd, the operator,
// transitds on a simulated cluster of 3 hosts. For each container the
// runtime's part is done as a runtime does it (a fresh network namespace,
// then the plugin exec'd with CNI_* variables and the configuration on
// stdin), and the time from exec to the result on stdout is measured.
//
// Printed beside it, from the same run:
//   - the plugin's own start-up (VERSION, answered without transitd);
//   - where an ADD's time goes, from an etcd watch on the container's
//     Endpoint: exec -> Endpoint created (plugin start, request to transitd,
//     admission), created -> Provisioned (the operator and the droplet's and
//     bouncers' programming, the same path a declared Endpoint takes), and
//     Provisioned -> result (transitd sees it, moves the interface into the
//     container and configures it);
//   - the baseline: an Endpoint created directly in etcd, create -> Provisioned;
//   - DEL, exec to result;
//   - ADDs 8 at a time, containers per second.
//
// Run inside a network namespace of its own (scripts/run-bench-cni.sh).
// Usage: mizar-bench-cni [CONTAINERS]
import CNetlink
import Foundation
import Glibc
import MizarAPI
import MizarCNI
import MizarCore
import MizarEtcd
import MizarBenchSupport
import MizarStore
import MizarSystem
import MizarTestbed

let containers = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 200 : 200
let plugin = siblingExecutable("mizar-cni")

func figure(_ name: String, _ values: [Double], unit: String = "ms", extra: String = "") {
    say("BENCH cni.\(name)_p50 \(String(format: "%.2f", percentile(values, 0.5))) \(unit) p99=\(String(format: "%.2f", percentile(values, 0.99))) samples=\(values.count)\(extra.isEmpty ? "" : " " + extra)")
}

/// Execs the plugin as a runtime does, on a thread of its own (the operator
/// runs in this process); returns (exit status, stdout, exec time, result time).
func execPlugin(_ command: String, config: String, containerID: String = "", netns: String = "",
                args: String = "") async throws -> (Int32, String, Double, Double) {
    try await onOwnThread { execPluginBlocking(command, config: config, containerID: containerID, netns: netns, args: args) }
}

func execPluginBlocking(_ command: String, config: String, containerID: String, netns: String, args: String) -> (Int32, String, Double, Double) {
    var inPipe: [Int32] = [0, 0], outPipe: [Int32] = [0, 0]
    guard mz_pipe_cloexec(&inPipe) == 0, mz_pipe_cloexec(&outPipe) == 0 else { return (-1, "pipe", 0, 0) }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
    posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
    let env = ["CNI_COMMAND=\(command)", "CNI_CONTAINERID=\(containerID)", "CNI_NETNS=\(netns)", "CNI_IFNAME=eth0",
               "CNI_PATH=/opt/cni/bin", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "CNI_ARGS=\(args)"]
    let cEnv = env.map { strdup($0) } + [nil], cArgs = [strdup(plugin), nil]
    defer { (cEnv + cArgs).forEach { free($0) } }
    var pid: pid_t = 0
    let started = monotonicSeconds()
    let r = posix_spawn(&pid, plugin, &actions, nil, cArgs, cEnv)
    close(inPipe[0])
    close(outPipe[1])
    defer { close(outPipe[0]) }
    guard r == 0 else { close(inPipe[1]); return (-1, "spawn \(plugin): \(r)", 0, 0) }
    _ = config.utf8CString.withUnsafeBufferPointer { write(inPipe[1], $0.baseAddress, $0.count - 1) }
    close(inPipe[1])
    var bytes: [UInt8] = [], chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(outPipe[0], $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        bytes += chunk.prefix(n)
    }
    let finished = monotonicSeconds()
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return ((status >> 8) & 0xff, String(decoding: bytes, as: UTF8.self), started, finished)
}

/// When each Endpoint was first seen and seen Provisioned, from one watch.
actor Sightings {
    private(set) var created: [String: Double] = [:]
    private(set) var provisioned: [String: Double] = [:]
    private var waiting: [String: CheckedContinuation<Double, Never>] = [:]

    func saw(_ o: Endpoint) {
        let t = monotonicSeconds()
        if created[o.name] == nil { created[o.name] = t }
        if o.status?.common.phase == .provisioned && provisioned[o.name] == nil {
            provisioned[o.name] = t
            waiting.removeValue(forKey: o.name)?.resume(returning: t)
        }
    }

    func waitProvisioned(_ name: String) async -> Double {
        if let t = provisioned[name] { return t }
        return await withCheckedContinuation { waiting[name] = $0 }
    }

    func follow(_ store: Store, from revision: Int64) async {
        do {
            for try await batch in store.etcd.watch(prefix: store.prefix(.endpoint), fromRevision: revision + 1) {
                for e in batch where e.kind == .put {
                    if let o = try? ObjectCoding.decode(Endpoint.self, from: e.kv.value) { saw(o) }
                }
            }
        } catch {}
    }
}

let name = "mcb"
let hosts = 3
try await withBenchCluster(name: name, hosts: hosts, underlayNet: 20) { bed, store in
    let sightings = Sightings()
    let following = Task { await sightings.follow(store, from: try await store.list(EndpointSpec.self).revision) }
    defer { following.cancel() }
    try await Task.sleep(for: .milliseconds(200))

    // The plugin's own start-up: VERSION needs nothing but itself.
    var starts: [Double] = []
    for _ in 0..<100 {
        let (_, _, t0, t1) = try await execPlugin("VERSION", config: #"{"cniVersion":"1.0.0"}"#)
        starts.append((t1 - t0) * 1000)
    }

    // Baseline: the same Endpoint path without CNI, create -> Provisioned.
    var direct: [Double] = []
    for i in 0..<40 {
        let t0 = monotonicSeconds()
        try await store.create(Endpoint(name: "direct\(i)", spec: EndpointSpec(vpc: "bench", subnet: "bench-1", droplet: "\(name)-h\(i % hosts + 1)")))
        direct.append((await sightings.waitProvisioned("direct\(i)") - t0) * 1000)
    }

    // ADD one container at a time, as a node brings pods up.
    func conf(_ host: Int) -> String {
        #"{"cniVersion":"1.0.0","name":"bench","type":"mizar-cni","vpc":"bench","subnet":"bench-1","transitd":"\#(bed.hosts[host].cniSocket)"}"#
    }
    func containerID(_ i: Int) -> String { String(format: "%064x", 0xbe0c_0000 + i) }
    var netns: [String] = []
    for i in 0..<containers { netns.append(try bed.addEndpointNetns("c\(i)")) }
    var adds: [Double] = [], toCreated: [Double] = [], toProvisioned: [Double] = [], toResult: [Double] = []
    for i in 0..<containers {
        let (status, out, t0, t1) = try await execPlugin("ADD", config: conf(i % hosts), containerID: containerID(i), netns: netns[i])
        guard status == 0 else { throw TestbedError("ADD \(i): \(out)") }
        adds.append((t1 - t0) * 1000)
        let endpoint = CNIHandler.endpointName(containerID: containerID(i), ifname: "eth0", override: nil)
        let created = await sightings.created[endpoint] ?? t0, provisioned = await sightings.waitProvisioned(endpoint)
        toCreated.append((created - t0) * 1000)
        toProvisioned.append((provisioned - created) * 1000)
        toResult.append((t1 - provisioned) * 1000)
    }
    // transitd's logs up to here cover the one-at-a-time ADDs only.
    let sequentialLogs = bed.hosts.map { (try? String(contentsOfFile: $0.log, encoding: .utf8)) ?? "" }
    var dels: [Double] = []
    for i in 0..<containers {
        let (status, out, t0, t1) = try await execPlugin("DEL", config: conf(i % hosts), containerID: containerID(i), netns: netns[i])
        guard status == 0 else { throw TestbedError("DEL \(i): \(out)") }
        dels.append((t1 - t0) * 1000)
    }

    // ADD 8 at a time: containers per second through one node's worth of runtimes.
    let spaces = netns, configs = (0..<hosts).map(conf)
    let started = monotonicSeconds()
    try await withThrowingTaskGroup(of: Void.self) { group in
        var next = 0
        func add(_ i: Int) {
            group.addTask {
                let (status, out, _, _) = try await execPlugin("ADD", config: configs[i % hosts], containerID: containerID(i), netns: spaces[i])
                guard status == 0 else { throw TestbedError("parallel ADD \(i): \(out)") }
            }
        }
        while next < min(8, containers) { add(next); next += 1 }
        while try await group.next() != nil {
            if next < containers { add(next); next += 1 }
        }
    }
    let rate = Double(containers) / (monotonicSeconds() - started)
    for i in 0..<containers { _ = try await execPlugin("DEL", config: conf(i % hosts), containerID: containerID(i), netns: netns[i]) }

    // Endpoints the management plane made beforehand (parked on their droplet)
    // and adopted by ADD: their interface is moved into the container.
    let adoptions = min(containers, 40)
    for i in 0..<adoptions {
        try await store.create(Endpoint(name: "adopt\(i)", spec: EndpointSpec(vpc: "bench", subnet: "bench-1", droplet: "\(name)-h\(i % hosts + 1)")))
        _ = await sightings.waitProvisioned("adopt\(i)")
    }
    let beforeAdoptions = bed.hosts.map { ((try? String(contentsOfFile: $0.log, encoding: .utf8)) ?? "").utf8.count }
    var adopts: [Double] = []
    for i in 0..<adoptions {
        let (status, out, t0, t1) = try await execPlugin("ADD", config: conf(i % hosts), containerID: containerID(i), netns: netns[i],
                                                         args: "MIZAR_ENDPOINT=adopt\(i)")
        guard status == 0 else { throw TestbedError("adopting ADD \(i): \(out)") }
        adopts.append((t1 - t0) * 1000)
    }
    let adoptionLogs = zip(bed.hosts, beforeAdoptions).map { host, offset in
        String(decoding: ((try? String(contentsOfFile: host.log, encoding: .utf8)) ?? "").utf8.dropFirst(offset), as: UTF8.self)
    }
    for i in 0..<adoptions {
        _ = try await execPlugin("DEL", config: conf(i % hosts), containerID: containerID(i), netns: netns[i], args: "MIZAR_ENDPOINT=adopt\(i)")
    }

    // transitd's own view, from its log: the whole ADD, and moving the interface into the container.
    var served: [Double] = [], attach: [Double] = [], move: [Double] = []
    for (log, adopting) in sequentialLogs.map({ ($0, false) }) + adoptionLogs.map({ ($0, true) }) {
        for line in log.split(separator: "\n") {
            func field(_ key: String) -> Double? {
                guard let r = line.range(of: " \(key)=") else { return nil }
                return Double(line[r.upperBound...].prefix { $0.isNumber }).map { $0 / 1000 }
            }
            if !adopting && line.contains("[MizarCNI] cni") && line.contains("cni.command=ADD"), let d = field("duration_us") { served.append(d) }
            if line.contains("endpoint interface attached"), let d = field("duration_us"), let m = field("move_us") {
                attach.append(d)
                move.append(m)
            }
        }
    }

    let directP50 = percentile(direct, 0.5)
    figure("plugin_start", starts, extra: "(VERSION, exec to exit)")
    figure("add", adds, extra: "(exec to result) baseline=direct_create_to_provisioned ratio=\(String(format: "%.2f", percentile(adds, 0.5) / directP50))")
    figure("add.exec_to_created", toCreated)
    figure("add.created_to_provisioned", toProvisioned)
    figure("add.provisioned_to_result", toResult)
    figure("add.transitd_served", served, extra: "(transitd's log: request in to result out)")
    figure("add_adopting", adopts, extra: "(exec to result, an Endpoint made beforehand and parked: its interface is moved in) baseline=add ratio=\(String(format: "%.2f", percentile(adopts, 0.5) / percentile(adds, 0.5)))")
    figure("add_adopting.transitd_attach", attach, extra: "(moving the parked interface in, address, route, up)")
    figure("add_adopting.transitd_attach_move", move, extra: "(the RTM_NEWLINK that moves it between namespaces, alone)")
    figure("direct_create_to_provisioned", direct, extra: "(an Endpoint created in etcd, no CNI)")
    figure("del", dels, extra: "(exec to result; returns once the Endpoint and its address are gone)")
    say("BENCH cni.add_parallel8 \(String(format: "%.0f", rate)) containers/s containers=\(containers)")
}
