// Endpoint provisioning latency through the whole system: a real etcd, the
// operator, transitds on a simulated cluster. For each host count, endpoints
// are provisioned in the background up to each level (they go through the
// whole controller path and get a parked interface on their droplet and
// entries on their bouncers), then endpoints with a namespace of their own
// are created one at a time and timed: create -> Provisioned (seen through
// an etcd watch) and create -> first packet delivered (a ping from another
// endpoint, sent every 2 ms from before the create, is answered; the
// prober has the new endpoint's MAC in its neighbor table).
//
// Run inside a network namespace of its own (scripts/run-bench.sh).
// Usage: mizar-bench-provisioning [HOSTS,..] [LEVELS,..] [SAMPLES]
import Foundation
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

let args = CommandLine.arguments
let hostCounts = (args.count > 1 ? args[1] : "3,10,30").split(separator: ",").compactMap { Int($0) }
let levels = (args.count > 2 ? args[2] : "0,1000,5000,10000").split(separator: ",").compactMap { Int($0) }
let samples = args.count > 3 ? Int(args[3]) ?? 40 : 40

/// Waits until `count` endpoints named with `prefix` are Provisioned.
func waitProvisioned(_ store: Store, prefix: String, count: Int, timeout: Double) async throws {
    let deadline = monotonicSeconds() + timeout
    while monotonicSeconds() < deadline {
        let done = try await store.list(EndpointSpec.self).objects
            .filter { $0.name.hasPrefix(prefix) && $0.status?.common.phase == .provisioned }.count
        if done >= count { return }
        try await Task.sleep(for: .milliseconds(250))
    }
    throw TestbedError("endpoints \(prefix)*: not all \(count) provisioned within \(Int(timeout)) s")
}

/// When each timed endpoint was seen Provisioned, from one watch that
/// runs all along (a watch set up per sample would time its own set-up).
actor Arrivals {
    private var seen: [String: (time: Double, delay: Double)] = [:]
    private var waiting: [String: CheckedContinuation<(time: Double, delay: Double), Never>] = [:]

    func arrived(_ name: String, _ delay: Double) {
        let t = monotonicSeconds()
        if seen[name] != nil { return }
        seen[name] = (t, delay)
        waiting.removeValue(forKey: name)?.resume(returning: (t, delay))
    }

    func wait(_ name: String) async -> (time: Double, delay: Double) {
        if let s = seen[name] { return s }
        return await withCheckedContinuation { waiting[name] = $0 }
    }

    func follow(_ store: Store, from revision: Int64) async {
        do {
            for try await batch in store.etcd.watch(prefix: store.prefix(.endpoint) + "t", fromRevision: revision + 1) {
                for e in batch where e.kind == .put {
                    guard let o = try? ObjectCoding.decode(Endpoint.self, from: e.kv.value),
                          o.status?.common.phase == .provisioned else { continue }
                    arrived(o.name, o.status?.common.provisioningDelayMs ?? 0)
                }
            }
        } catch {}
    }
}

/// One timed endpoint: (create -> Provisioned, create -> first answered ping, operator's own delay), ms.
func timedEndpoint(_ store: Store, bed: Testbed, arrivals: Arrivals, name: String, ip: IPv4Address, droplet: String,
                   prober: String) async throws -> (Double, Double, Double) {
    let netns = try bed.addEndpointNetns(name)
    // The prober knows the new endpoint's MAC already (as a peer that had
    // it from DNS and ARP would), so the kernel's 1 s ARP retry timer is
    // not what gets measured; the first ping is answered once the agent,
    // the bouncer and the endpoint's host are programmed.
    let mac = MACAddress(0x0a, 0x58, 0xfe, ip.bytes[1], ip.bytes[2], ip.bytes[3])
    _ = runCapturing(["nsenter", "--net=\(prober)", "ip", "neigh", "replace", "\(ip)", "lladdr", "\(mac)", "dev", "eth0", "nud", "permanent"])
    // The prober pings every 2 ms until the first answer (at most 10 s).
    let pingDone = Task.detached { () -> Double in
        _ = runCapturing(["nsenter", "--net=\(prober)", "ping", "-n", "-q", "-c", "1", "-w", "10", "-i", "0.002", "\(ip)"])
        return monotonicSeconds()
    }
    try await Task.sleep(for: .milliseconds(20))
    let t0 = monotonicSeconds()
    try await store.create(Endpoint(name: name, spec: EndpointSpec(vpc: "bench", subnet: "bench-1", ip: ip,
                                                                  mac: mac, droplet: droplet, netns: netns)))
    let provisioned = await arrivals.wait(name)
    let firstPacket = await pingDone.value
    return ((provisioned.time - t0) * 1000, (firstPacket - t0) * 1000, provisioned.delay)
}

var summary: [String] = []
/// Least-squares slope of p50 (ms) over endpoints already there, per 1,000.
func slope(_ points: [(Double, Double)]) -> Double {
    guard points.count > 1 else { return 0 }
    let mx = points.map(\.0).reduce(0, +) / Double(points.count), my = points.map(\.1).reduce(0, +) / Double(points.count)
    let num = points.map { ($0.0 - mx) * ($0.1 - my) }.reduce(0, +), den = points.map { ($0.0 - mx) * ($0.0 - mx) }.reduce(0, +)
    return den == 0 ? 0 : num / den * 1000
}

for (round, hosts) in hostCounts.enumerated() {
    let name = "mpb\(round)"
    try await withBenchCluster(name: name, hosts: hosts, underlayNet: UInt8(10 + round)) { bed, store in
        let prober = try bed.addEndpointNetns("probe")
        try await store.create(Endpoint(name: "probe", spec: EndpointSpec(vpc: "bench", subnet: "bench-1", ip: "10.0.255.250",
                                                                          droplet: "\(name)-h1", netns: prober)))
        try await waitProvisioned(store, prefix: "probe", count: 1, timeout: 30)

        var background = 0
        var p50AtZero: (Double, Double)?
        var curve: [(Double, Double)] = []
        defer {
            say("BENCH provisioning.h\(hosts).slope \(String(format: "%.3f", slope(curve))) ms_per_1000_endpoints (least squares of create->Provisioned p50)")
        }
        let arrivals = Arrivals()
        let following = Task { await arrivals.follow(store, from: try await store.list(EndpointSpec.self).revision) }
        defer { following.cancel() }
        for (levelIndex, level) in levels.enumerated() {
            // Background endpoints up to the level, 32 creates in flight.
            let started = monotonicSeconds()
            try await withThrowingTaskGroup(of: Void.self) { group in
                var next = background
                func add(_ i: Int) {
                    group.addTask {
                        try await store.create(Endpoint(name: "bg\(i)", spec: EndpointSpec(
                            vpc: "bench", subnet: "bench-1", ip: IPv4Address(value: 0x0a00_0000 + 256 + UInt32(i)),
                            droplet: "\(name)-h\(i % hosts + 1)")))
                    }
                }
                while next < level && next < background + 32 { add(next); next += 1 }
                while try await group.next() != nil {
                    if next < level { add(next); next += 1 }
                }
            }
            if level > background {
                try await waitProvisioned(store, prefix: "bg", count: level, timeout: 60 + Double(level) / 20)
                let rate = Double(level - background) / (monotonicSeconds() - started)
                say("BENCH provisioning.h\(hosts).background_rate \(String(format: "%.0f", rate)) endpoints/s from=\(background) to=\(level)")
            }
            background = max(background, level)

            var toProvisioned: [Double] = [], toPacket: [Double] = [], operatorSide: [Double] = []
            for s in 0..<samples {
                let ip = IPv4Address(value: 0x0a00_0000 + 0xF000 + UInt32(levelIndex * 200 + s))
                let (p, f, o) = try await timedEndpoint(store, bed: bed, arrivals: arrivals, name: "t\(level)x\(s)", ip: ip,
                                                        droplet: "\(name)-h\(s % hosts + 1)", prober: prober)
                toProvisioned.append(p)
                toPacket.append(f)
                operatorSide.append(o)
            }
            let p50 = (percentile(toProvisioned, 0.5), percentile(toPacket, 0.5))
            curve.append((Double(level), p50.0))
            if level == levels.first { p50AtZero = p50 }
            let base = p50AtZero ?? p50
            say("BENCH provisioning.h\(hosts).n\(level).provisioned_p50 \(String(format: "%.2f", p50.0)) ms p99=\(String(format: "%.2f", percentile(toProvisioned, 0.99))) baseline=n\(levels.first ?? 0) ratio=\(String(format: "%.2f", p50.0 / base.0)) samples=\(samples)")
            say("BENCH provisioning.h\(hosts).n\(level).first_packet_p50 \(String(format: "%.2f", p50.1)) ms p99=\(String(format: "%.2f", percentile(toPacket, 0.99))) baseline=n\(levels.first ?? 0) ratio=\(String(format: "%.2f", p50.1 / base.1)) samples=\(samples)")
            say("BENCH provisioning.h\(hosts).n\(level).operator_delay_p50 \(String(format: "%.2f", percentile(operatorSide, 0.5))) ms p99=\(String(format: "%.2f", percentile(operatorSide, 0.99)))")
            summary.append(String(format: "| %d | %d | %.1f | %.1f | %.1f | %.1f |", hosts, level, p50.0, percentile(toProvisioned, 0.99), p50.1, percentile(toPacket, 0.99)))
        }
    }
}
say("")
say("| hosts | endpoints already | create->Provisioned p50 ms | p99 ms | create->first packet p50 ms | p99 ms |")
say("|---|---|---|---|---|---|")
summary.forEach(say)
