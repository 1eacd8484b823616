import Foundation
import Glibc
import MizarAPI
import MizarCore
@testable import MizarOperator
import MizarPolicyConformance
import MizarRPC
import MizarStore
import MizarSystem
import MizarTestbed
import MizarTransitClient
import Synchronization
import Testing

/// One reachability probe: from a namespace to an address, TCP (a
/// connection made) or UDP (a datagram echoed back).
struct Probe {
    var key: String
    var netns: String
    var ip: IPv4Address
    var udp: Bool
    var port: UInt16
}

/// Runs probes all at once, each on a non-blocking socket of its own, and
/// says which succeeded within `wait` seconds. A refused or unreachable
/// one fails at once; a dropped one when the time is up.
enum Prober {
    static func run(_ probes: [Probe], wait: Double) throws -> [String: Bool] {
        var namespaces: [String: NetworkNamespace] = [:]
        var fds: [Int32] = []
        defer { for fd in fds { close(fd) } }
        var result: [String: Bool] = [:]
        for p in probes {
            let ns = try namespaces[p.netns] ?? NetworkNamespace(path: p.netns)
            namespaces[p.netns] = ns
            let fd = try ns.socket(domain: AF_INET, type: Int32(p.udp ? SOCK_DGRAM.rawValue : SOCK_STREAM.rawValue))
            fds.append(fd)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            // A closed probe resets: nothing lingers in TIME_WAIT.
            var l = linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
            let connected = Sock.connect(fd, p.ip, p.port)
            if p.udp {
                let payload = Array(p.key.utf8)
                _ = payload.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            } else if !connected && errno != EINPROGRESS {
                result[p.key] = false
            }
        }
        var pending = Set(probes.indices.filter { result[probes[$0].key] == nil })
        let deadline = monotonicSeconds() + wait
        var buffer = [UInt8](repeating: 0, count: 2048)
        while !pending.isEmpty && monotonicSeconds() < deadline {
            let order = Array(pending)
            var polls = order.map { pollfd(fd: fds[$0], events: Int16(probes[$0].udp ? POLLIN : POLLOUT), revents: 0) }
            guard poll(&polls, nfds_t(polls.count), 20) > 0 else { continue }
            for (i, pfd) in zip(order, polls) where pfd.revents != 0 {
                let p = probes[i]
                if p.udp {
                    let n = buffer.withUnsafeMutableBytes { recv(pfd.fd, $0.baseAddress, $0.count, 0) }
                    if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { continue }
                    result[p.key] = n > 0 && Array(buffer.prefix(n)) == Array(p.key.utf8)
                } else {
                    var err: Int32 = 0
                    var len = socklen_t(MemoryLayout<Int32>.size)
                    getsockopt(pfd.fd, SOL_SOCKET, SO_ERROR, &err, &len)
                    result[p.key] = err == 0
                }
                pending.remove(i)
            }
        }
        for i in pending { result[probes[i].key] = false }
        return result
    }
}

/// TCP and UDP listeners on ports 80 and 81 in every pod's namespace: one
/// thread accepts (and closes) connections and echoes datagrams.
final class PortServers: Sendable {
    let fds: [(fd: Int32, udp: Bool)]
    let stopped = Mutex(false)
    let finished = Mutex(false)

    init(netns: [String], ports: [UInt16] = [80, 81]) throws {
        var fds: [(Int32, Bool)] = []
        for path in netns {
            let ns = try NetworkNamespace(path: path)
            for port in ports {
                for udp in [false, true] {
                    let fd = try ns.socket(domain: AF_INET, type: Int32(udp ? SOCK_DGRAM.rawValue : SOCK_STREAM.rawValue))
                    var one: Int32 = 1
                    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
                    guard Sock.bind(fd, .zero, port), udp || listen(fd, 512) == 0 else {
                        throw TestbedError("\(path): cannot serve \(udp ? "UDP" : "TCP") \(port): errno \(errno)")
                    }
                    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
                    fds.append((fd, udp))
                }
            }
        }
        self.fds = fds
        Thread.detachNewThread { [self] in serve() }
    }

    private func serve() {
        var buffer = [UInt8](repeating: 0, count: 2048)
        while !stopped.withLock({ $0 }) {
            var polls = fds.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            guard poll(&polls, nfds_t(polls.count), 50) > 0 else { continue }
            for (entry, pfd) in zip(fds, polls) where pfd.revents != 0 {
                if entry.udp {
                    while true {
                        var from = sockaddr_in(), len = socklen_t(MemoryLayout<sockaddr_in>.size)
                        let n = withUnsafeMutablePointer(to: &from) { p in
                            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                                buffer.withUnsafeMutableBytes { recvfrom(entry.fd, $0.baseAddress, $0.count, 0, sa, &len) }
                            }
                        }
                        guard n > 0 else { break }
                        _ = withUnsafePointer(to: &from) { p in
                            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                                buffer.withUnsafeBytes { sendto(entry.fd, $0.baseAddress, n, 0, sa, len) }
                            }
                        }
                    }
                } else {
                    while true {
                        let c = accept(entry.fd, nil, nil)
                        if c < 0 { break }
                        close(c)
                    }
                }
            }
        }
        finished.withLock { $0 = true }
    }

    func stop() {
        stopped.withLock { $0 = true }
        while !finished.withLock({ $0 }) { usleep(10_000) }
        for f in fds { close(f.fd) }
    }
}

/// The conformance topology on the operator's cluster: VPC "np" with
/// subnets np-1 (x's pods and z/a) and np-2 (the rest), nine endpoints
/// spread over the three hosts in namespaces x, y and z, and a service VIP
/// in front of each.
struct PolicyBed {
    static let vpc = "np"
    let ips: [String: IPv4Address]
    let vips: [String: IPv4Address]
    let netns: [String: String]

    static var ids: [String] { Conformance.namespaces.flatMap { ns in Conformance.pods.map { "\(ns)/\($0)" } } }
    static func endpoint(_ id: String) -> String { "np" + id.replacingOccurrences(of: "/", with: "") }
    static func vip(_ id: String) -> String { "npv" + id.replacingOccurrences(of: "/", with: "") }
    static func subnet(_ id: String) -> String { id.hasPrefix("x/") || id == "z/a" ? "np-1" : "np-2" }

    /// Makes what is missing and waits for all of it.
    static func ensure(_ plane: Plane, _ store: Store) async throws -> PolicyBed {
        if try await store.get(VpcSpec.self, vpc) == nil {
            try await store.create(Vpc(name: vpc, spec: VpcSpec(cidr: "10.30.0.0/16")))
            try await store.create(Subnet(name: "np-1", spec: SubnetSpec(vpc: vpc, cidr: "10.30.1.0/24")))
            try await store.create(Subnet(name: "np-2", spec: SubnetSpec(vpc: vpc, cidr: "10.30.2.0/24")))
        }
        var netns: [String: String] = [:]
        for (k, id) in ids.enumerated() {
            let name = endpoint(id)
            netns[id] = plane.bed.endpointNetns(name)
            guard try await store.get(EndpointSpec.self, name) == nil else { continue }
            // A namespace left by an earlier test is used again.
            let path = access(netns[id]!, F_OK) == 0 ? netns[id]! : try plane.bed.addEndpointNetns(name)
            let parts = id.split(separator: "/").map(String.init)
            try await store.create(Endpoint(name: name, namespace: parts[0], spec: EndpointSpec(
                vpc: vpc, subnet: subnet(id), droplet: plane.droplet("h\(k % 3 + 1)"), netns: path, ports: Conformance.namedPorts()),
                labels: ["pod": parts[1]]))
            try await store.create(Endpoint(name: vip(id), spec: EndpointSpec(
                vpc: vpc, subnet: subnet(id), type: .scaled,
                ports: [EndpointPort(port: 80, targetPort: 80), EndpointPort(port: 81, targetPort: 81),
                        EndpointPort(port: 80, protocol: .udp, targetPort: 80), EndpointPort(port: 81, protocol: .udp, targetPort: 81)],
                backends: [name])))
        }
        let names = ids.flatMap { [endpoint($0), vip($0)] }
        let ready = try await eventually(40) {
            let all = try await store.list(EndpointSpec.self).objects
            return names.allSatisfy { n in all.contains { $0.name == n && $0.status?.common.phase == .provisioned && ($0.spec.isScaled ? $0.status?.backends?.count == 1 : true) } }
        }
        if !ready {
            let all = try await store.list(EndpointSpec.self).objects.filter { names.contains($0.name) }
            let stuck = all.filter { $0.status?.common.phase != .provisioned || ($0.spec.isScaled && $0.status?.backends?.count != 1) }
            Issue.record("not provisioned: \(stuck.map { "\($0.name) \($0.status?.common.phase.rawValue ?? "-") \($0.status?.common.reason ?? "") backends \($0.status?.backends?.count ?? 0)" })")
        }
        var ips: [String: IPv4Address] = [:], vips: [String: IPv4Address] = [:]
        for id in ids {
            ips[id] = try #require(try await store.get(EndpointSpec.self, endpoint(id))?.status?.ip)
            vips[id] = try #require(try await store.get(EndpointSpec.self, vip(id))?.status?.ip)
        }
        return PolicyBed(ips: ips, vips: vips, netns: netns)
    }

    /// Deletes the VPC (its endpoints go with it), the namespaces and the
    /// policies of x, y and z, and waits until they are gone.
    static func remove(_ store: Store) async throws {
        for p in try await store.list(NetworkPolicySpec.self).objects where Conformance.namespaces.contains(p.metadata.effectiveNamespace) {
            _ = try await store.delete(NetworkPolicySpec.self, p.storeName)
        }
        for ns in Conformance.namespaces { _ = try await store.delete(NamespaceSpec.self, ns) }
        _ = try await store.delete(VpcSpec.self, vpc)
        #expect(try await eventually(30) { try await store.get(VpcSpec.self, vpc) == nil }, "VPC \(vpc) not deleted")
    }

    /// Every pair and probe of the conformance table; through each
    /// destination's VIP when `viaService`.
    func probes(viaService: Bool) -> [Probe] {
        Self.ids.flatMap { s in
            // Not through its own VIP: a VIP's flow that comes back to
            // the client itself (hairpin) is not carried (docs/services.md).
            Self.ids.filter { !viaService || $0 != s }.flatMap { d in
                Conformance.probes.map { (proto, port) in
                    Probe(key: "\(s) \(d) \(proto)/\(port)", netns: netns[s]!, ip: viaService ? vips[d]! : ips[d]!, udp: proto == "UDP", port: UInt16(port))
                }
            }
        }
    }

    /// Declares a step: its policies (others in x, y, z deleted), its
    /// namespace labels and pod labels; waits until the VPC's bouncers
    /// enforce exactly those policies' generations.
    func declare(_ step: Conformance.Step, _ store: Store) async throws {
        var wanted: [String: NetworkPolicy] = [:]
        for p in step.policies { wanted[p.storeName] = p }
        for p in try await store.list(NetworkPolicySpec.self).objects where Conformance.namespaces.contains(p.metadata.effectiveNamespace) {
            if wanted[p.storeName] == nil { _ = try await store.delete(NetworkPolicySpec.self, p.storeName) }
        }
        for (name, p) in wanted {
            if var current = try await store.get(NetworkPolicySpec.self, name) {
                if current.spec != p.spec {
                    current.spec = p.spec
                    _ = try await store.update(current)
                }
            } else {
                _ = try await store.create(p)
            }
        }
        for ns in Conformance.namespaces {
            let want = step.namespaceLabels[ns] ?? [:]
            if var current = try await store.get(NamespaceSpec.self, ns) {
                var have = current.metadata.labels ?? [:]
                have[namespaceNameLabel] = nil
                if have != want {
                    current.metadata.labels = want
                    _ = try await store.update(current)
                }
            } else if !want.isEmpty {
                _ = try await store.create(Namespace(name: ns, spec: NamespaceSpec(), labels: want))
            }
        }
        for id in Self.ids {
            var want = ["pod": String(id.split(separator: "/")[1])]
            want.merge(step.podLabels[id] ?? [:]) { $1 }
            for _ in 0..<10 {
                guard var e = try await store.get(EndpointSpec.self, Self.endpoint(id)), e.metadata.labels != want else { break }
                e.metadata.labels = want
                do { _ = try await store.update(e); break } catch StoreError.conflict(_, _) { continue }
            }
        }
        // Enforced: every policy Provisioned at its generation, and the
        // VPC's record lists exactly these.
        let enforced = try await eventually(20) {
            var generations: [String: Int64] = [:]
            for name in wanted.keys {
                guard let p = try await store.get(NetworkPolicySpec.self, name), p.status?.common.phase == .provisioned,
                      p.status?.common.observedGeneration == p.metadata.generation else { return false }
                generations[name] = p.metadata.generation ?? 0
            }
            // No record: the VPC never had a policy.
            let kv = try await store.etcd.get("\(store.root)policy-state/\(Self.vpc)")
            let record = try kv.map { try JSONDecoder().decode(VpcPolicyRecord.self, from: Data($0.value)) } ?? VpcPolicyRecord()
            return record.applied.filter { Conformance.namespaces.contains(String($0.key.split(separator: "/")[0])) } == generations
        }
        #expect(enforced, "\(step.note): the policies are not enforced in time")
    }
}

/// Waits until `op` is the only operator on the ring: an earlier test's
/// operator, still shutting down, would own some VPCs for a while and
/// skew what these tests time.
func aloneOnRing(_ store: Store, _ op: Operator) async throws -> Bool {
    let start = monotonicSeconds()
    var others: [String] = []
    let alone = try await eventually(15) {
        let keys = try await store.etcd.list(prefix: store.operatorPrefix).kvs.map { String($0.key.dropFirst(store.operatorPrefix.count)) }
        if keys != [op.config.id] { others = keys.filter { $0 != op.config.id } }
        return keys == [op.config.id]
    }
    if !others.isEmpty { print(String(format: "waited %.1f s for operators %@ to leave the ring", monotonicSeconds() - start, others.joined(separator: ","))) }
    return alone
}

extension OperatorTests {
    @Test("network policy conformance: for 28 cases of the Kubernetes e2e suite and cyclonus, real probes over 81 pairs x 4 ports agree with an independent model")
    func policyConformance() async throws {
        let plane = try await Plane.get()
        try await plane.withOperator { store, op in
            #expect(try await plane.dropletsReady(store))
            #expect(try await aloneOnRing(store, op), "another operator is still on the ring")
            let bed = try await PolicyBed.ensure(plane, store)
            let servers = try PortServers(netns: PolicyBed.ids.map { bed.netns[$0]! })
            defer { servers.stop() }
            let cases = Conformance.cases { ns, pod in bed.ips["\(ns)/\(pod)"]! }
            #expect(cases.count >= 25)
            var total = 0, denied = 0, retried = 0
            let started = monotonicSeconds()
            for c in cases {
                for step in c.steps {
                    try await bed.declare(step, store)
                    let probes = bed.probes(viaService: step.viaService)
                    let probed = Set(probes.map(\.key))
                    // A pod reaches itself directly over its own loopback,
                    // whatever the policies say (as in Kubernetes).
                    let expected = modelTable(step, pods: conformancePods(step) { bed.ips["\($0)/\($1)"]! }, probes: Conformance.probes,
                                              loopback: !step.viaService).filter { probed.contains($0.key) }
                    var observed = try await onOwnThread { try Prober.run(probes, wait: 1.0) }
                    // A lost packet or a label change still on its way: the
                    // probes that disagree are made again (up to 3 times).
                    for _ in 0..<3 {
                        let wrong = Set(expected.keys.filter { expected[$0] != observed[$0] })
                        if wrong.isEmpty { break }
                        retried += wrong.count
                        let again = try await onOwnThread { try Prober.run(probes.filter { wrong.contains($0.key) }, wait: 1.0) }
                        observed.merge(again) { $1 }
                    }
                    let wrong = expected.keys.filter { expected[$0] != observed[$0] }.sorted()
                    #expect(wrong.isEmpty, "\(c.name) / \(step.note): \(wrong.count) of \(expected.count) probes differ from the model, e.g. \(wrong.prefix(4))\n\(truthTables(expected, observed, probes: Conformance.probes))")
                    total += expected.count
                    denied += expected.values.filter { !$0 }.count
                }
            }
            try await bed.declare(Conformance.Step(note: "cleared", policies: []), store)
            print(String(format: "policy conformance: %d cases, %d probes (%d denied by the model), %d probes made again; %.1f s",
                         cases.count, total, denied, retried, monotonicSeconds() - started))
            // The cases are not vacuous.
            #expect(denied > 1000)
            try await PolicyBed.remove(store)
            _ = op
        }
    }
}

extension OperatorTests {
    @Test("a TCP connection sending every 10 ms is cut within 1 s of a policy that denies it, and flows again once the policy is deleted")
    func policyRevocation() async throws {
        let plane = try await Plane.get()
        try await plane.withOperator { store, op in
            #expect(try await plane.dropletsReady(store))
            #expect(try await aloneOnRing(store, op), "another operator is still on the ring")
            let bed = try await PolicyBed.ensure(plane, store)
            try await bed.declare(Conformance.Step(note: "open", policies: []), store)
            let server = try IdentityServer(name: "yb", netns: bed.netns["y/b"]!, tcpPort: 8080, udpPort: 5353)
            defer { server.stop() }
            let fd = try #require(try Sock.dial(from: bed.netns["x/a"]!, bed.ips["y/b"]!, 8080), "x/a cannot connect to y/b")
            defer { close(fd) }
            Sock.timeout(fd, 0.01)
            // Every 10 ms a message; the times answers arrive.
            let answers = Mutex<[Double]>([])
            let running = Mutex(true)
            let talker = Thread {
                var buffer = [UInt8](repeating: 0, count: 4096)
                while running.withLock({ $0 }) {
                    _ = "m".withCString { send(fd, $0, 1, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
                    let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                    if n > 0 { answers.withLock { $0.append(monotonicSeconds()) } }
                    usleep(10_000)
                }
            }
            talker.start()
            defer { running.withLock { $0 = false } }
            try await Task.sleep(for: .seconds(1))
            let flowing = answers.withLock { $0.count }
            #expect(flowing > 30, "only \(flowing) answers in the first second")
            // The flow is in conntrack on x/a's host (h1), established.
            let host = try #require(plane.bed.hosts.first { $0.name == "h1" })
            let ct = runCapturing([siblingExecutable("mizarctl"), "dump", "conntrack", "--target", "unix:\(host.socket)"])
            let row = ct.output.split(separator: "\n").first { $0.contains("\(bed.ips["y/b"]!):8080 TCP") }
            #expect(ct.status == 0 && row?.contains("\(bed.ips["x/a"]!):") == true && row?.contains("established") == true, "\(ct.output)")

            // Counters on every host, to say what happened if the cut fails.
            func counters() async throws -> [String: [String: UInt64]] {
                var out: [String: [String: UInt64]] = [:]
                for h in plane.bed.hosts {
                    let c = try await withTransitClient(.unix(h.socket)) { try await $0.getCounters(.init()) }
                    out[h.name] = Dictionary((c.counters + c.drops).filter { $0.name.hasPrefix("policy") }.map { ($0.name, $0.packets) }, uniquingKeysWith: +)
                }
                return out
            }
            let countersBefore = try await counters()
            // y's pods admit nothing from now on.
            let deny = Conformance.policy("deny", "y", NetworkPolicySpec(podSelector: .all, policyTypes: [.ingress]))
            let t0 = monotonicSeconds()
            try await store.create(deny)
            let provisioned = try await eventually(10) {
                try await store.get(NetworkPolicySpec.self, deny.storeName)?.status?.common.phase == .provisioned
            }
            let statusAt = monotonicSeconds() - t0
            #expect(provisioned)
            try await Task.sleep(for: .seconds(3))
            let last = answers.withLock { $0.last ?? 0 }
            let cut = max(0, last - t0)
            let after = answers.withLock { $0.filter { $0 > t0 + 1.0 }.count }
            print(String(format: "policy revocation: connection cut %.0f ms after the policy was written (status Provisioned after %.0f ms); %d answers after 1 s",
                         cut * 1000, statusAt * 1000, after))
            if cut > 1.0 {
                // What each host counted, the bouncers' entries and y/b's host's conntrack.
                let countersAfter = try await counters()
                let subnet = try await store.get(SubnetSpec.self, "np-2")
                var dumps = ""
                for h in plane.bed.hosts {
                    let grew = countersAfter[h.name, default: [:]].filter { $0.value != countersBefore[h.name]?[$0.key] }
                    dumps += "\n\(h.name) counters grew: \(grew.sorted { $0.key < $1.key })"
                    for table in ["policy", "conntrack"] {
                        dumps += "\n" + runCapturing([siblingExecutable("mizarctl"), "dump", table, "--target", "unix:\(h.socket)"]).output
                    }
                }
                Issue.record("the connection was still answered \(cut) s after the denying policy; np-2's bouncers \(subnet?.status?.bouncers ?? []); y/b on h2\(dumps)")
            }
            #expect(after == 0)
            #expect(try Sock.dial(from: bed.netns["x/a"]!, bed.ips["y/b"]!, 8080).map { close($0); return true } == nil,
                    "a new connection to y/b succeeded under the denying policy")

            // Deleted: what it denied is admitted again, the old connection too.
            let t1 = monotonicSeconds()
            _ = try await store.delete(NetworkPolicySpec.self, deny.storeName)
            var attempts: [String] = []
            let reopened = try await eventually(5) {
                let at = monotonicSeconds() - t1
                let ok = try await onOwnThread { try Sock.dial(from: bed.netns["x/a"]!, bed.ips["y/b"]!, 8080, timeout: 0.2).map { close($0); return true } ?? false }
                attempts.append(String(format: "%.0f ms %@", at * 1000, ok ? "connected" : "failed"))
                return ok
            }
            #expect(reopened, "no new connection after the policy was deleted")
            let resumed = try await eventually(15) { answers.withLock { ($0.last ?? 0) > t1 } }
            print(String(format: "policy deleted: new connections (dialled until one connects): %@; the cut connection answered again after %.1f s (TCP's retransmission backoff)",
                         attempts.joined(separator: ", "), (answers.withLock { $0.last ?? t1 }) - t1))
            #expect(resumed, "the cut connection never flowed again")
            running.withLock { $0 = false }
            usleep(50_000)
            try await PolicyBed.remove(store)
        }
    }

    @Test("an endpoint in a VPC with 100 policies makes the same transitd calls as with none; creating or changing a policy calls only bouncers")
    func policyCallCounts() async throws {
        let plane = try await Plane.get()
        try await plane.withOperator { store, op in
            #expect(try await plane.dropletsReady(store))
            #expect(try await aloneOnRing(store, op), "another operator is still on the ring")
            _ = try await PolicyBed.ensure(plane, store)
            func bouncerTargets() async throws -> Set<TransitTarget> {
                var out: Set<TransitTarget> = []
                for s in try await store.list(SubnetSpec.self).objects {
                    for b in s.status?.bouncers ?? [] {
                        if let d = try await store.get(DropletSpec.self, b) { out.insert(try TransitTarget(parsing: d.spec.transitd)) }
                    }
                }
                return out
            }
            func hostNames(_ calls: [TransitTarget: Int]) async throws -> [String: Int] {
                var out: [String: Int] = [:]
                for d in try await store.list(DropletSpec.self).objects {
                    if let n = calls[try TransitTarget(parsing: d.spec.transitd)] { out[d.name] = n }
                }
                return out
            }
            func create(_ name: String) async throws -> [TransitTarget: Int] {
                op.pool.resetCounts()
                let path = plane.bed.endpointNetns(name)
                let netns = access(path, F_OK) == 0 ? path : try plane.bed.addEndpointNetns(name)
                try await store.create(Endpoint(name: name, namespace: "w", spec: EndpointSpec(vpc: PolicyBed.vpc, subnet: "np-2", droplet: plane.droplet("h2"), netns: netns),
                                                labels: ["app": "w0"]))
                #expect(try await eventually(10) { try await store.get(EndpointSpec.self, name)?.status?.common.phase == .provisioned })
                return op.pool.callCounts()
            }
            func waitProvisioned(_ names: [String]) async throws -> Bool {
                try await eventually(30) {
                    let all = try await store.list(NetworkPolicySpec.self).objects
                    return names.allSatisfy { n in all.contains { $0.storeName == n && $0.status?.common.phase == .provisioned && $0.status?.common.observedGeneration == $0.metadata.generation } }
                }
            }
            let none = try await create("npq0")
            // 100 policies in namespace w, each selecting app=wI.
            var names: [String] = []
            for i in 0..<100 {
                let p = Conformance.policy("w\(i)", "w", NetworkPolicySpec(
                    podSelector: Conformance.sel(["app": "w\(i)"]), policyTypes: [.ingress, .egress],
                    ingress: [Conformance.ingress([NetworkPolicyPeer(podSelector: Conformance.sel(["pod": "a"]), namespaceSelector: .all)], [Conformance.tcp(1000 + i)])],
                    egress: [Conformance.egress([NetworkPolicyPeer(namespaceSelector: Conformance.nsName("x"))])]))
                try await store.create(p)
                names.append(p.storeName)
            }
            #expect(try await waitProvisioned(names), "the 100 policies are not all Provisioned")
            let hundred = try await create("npq1")
            print("calls to create an endpoint: with no policy \(try await hostNames(none)), with 100 policies \(try await hostNames(hundred))")
            #expect(Set(none.keys) == Set(hundred.keys) && none.values.reduce(0, +) == hundred.values.reduce(0, +),
                    "with 100 policies: \(hundred), with none: \(none)")
            // Its entry went with it: its bouncer holds it, isolated both ways.
            let ip = try #require(try await store.get(EndpointSpec.self, "npq1")?.status?.ip)
            let bouncer = try #require(try await store.get(SubnetSpec.self, "np-2")?.status?.bouncers?.first)
            let socket = try #require(plane.bed.hosts.first { plane.droplet($0.name) == bouncer }?.socket)
            let state = try await withTransitClient(.unix(socket)) { try await $0.listPolicy(.init()) }
            let entry = state.endpoints.first { $0.ip == "\(ip)" }
            #expect(entry != nil && entry?.ingressSet != 0 && entry?.egressSet != 0, "npq1's entry on its bouncer: \(String(describing: entry))")

            // A policy created, then changed: only bouncers are called.
            let bouncers = try await bouncerTargets()
            op.pool.resetCounts()
            let extra = Conformance.policy("wx", "w", NetworkPolicySpec(podSelector: Conformance.sel(["app": "w0"]), ingress: [Conformance.ingress(nil, [Conformance.udp(53)])]))
            try await store.create(extra)
            #expect(try await waitProvisioned([extra.storeName]))
            let created = op.pool.callCounts()
            var changed = try #require(try await store.get(NetworkPolicySpec.self, extra.storeName))
            changed.spec.ingress = [Conformance.ingress(nil, [Conformance.udp(54)])]
            op.pool.resetCounts()
            try await store.update(changed)
            #expect(try await waitProvisioned([extra.storeName]))
            let updated = op.pool.callCounts()
            print("calls per host: policy created \(try await hostNames(created)), changed \(try await hostNames(updated)); bouncers are \(try await hostNames(Dictionary(uniqueKeysWithValues: bouncers.map { ($0, 1) })).keys.sorted())")
            #expect(!created.isEmpty && Set(created.keys).isSubset(of: bouncers), "creating a policy called \(created)")
            #expect(!updated.isEmpty && Set(updated.keys).isSubset(of: bouncers), "changing a policy called \(updated)")

            // Rules an endpoint's entry cannot hold (33 port ranges; at
            // most 32): the policy is Failed with PolicyRejected, and the
            // endpoints it selects are isolated with nothing admitted,
            // never left open.
            let big = Conformance.policy("wbig", "w", NetworkPolicySpec(podSelector: Conformance.sel(["app": "w0"]),
                                                                        ingress: [Conformance.ingress(nil, (0..<33).map { Conformance.tcp(2000 + 2 * $0) })]))
            try await store.create(big)
            let refused = try await eventually(10) { try await store.get(NetworkPolicySpec.self, big.storeName)?.status?.common.phase == .failed }
            let bigStatus = try await store.get(NetworkPolicySpec.self, big.storeName)?.status?.common
            #expect(refused && bigStatus?.reasonCode == .policyRejected && bigStatus?.reason?.contains("at most 32") == true,
                    "a policy needing 33 port ranges: \(String(describing: bigStatus))")
            let closed = try await eventually(10) {
                let state = try await withTransitClient(.unix(socket)) { try await $0.listPolicy(.init()) }
                guard let e = state.endpoints.first(where: { $0.ip == "\(ip)" }) else { return false }
                let sets = Dictionary(state.sets.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
                return sets[e.ingressSet]?.rules.isEmpty == true && sets[e.egressSet]?.rules.isEmpty == true
            }
            #expect(closed, "npq1 is not isolated with nothing admitted while its rules cannot be compiled")
            // mizarctl shows the bouncer's entries and rule sets.
            let dumped = runCapturing([siblingExecutable("mizarctl"), "dump", "policy", "--target", "unix:\(socket)"])
            #expect(dumped.status == 0 && dumped.output.contains("\(ip)") && dumped.output.contains("nothing admitted"), "\(dumped.output)")

            for n in names + [extra.storeName, big.storeName] { _ = try await store.delete(NetworkPolicySpec.self, n) }
            try await PolicyBed.remove(store)
        }
    }
}
