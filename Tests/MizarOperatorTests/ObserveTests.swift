import Foundation
import Glibc
import MizarAPI
import MizarCore
import MizarStore
import MizarSystem
import MizarTestbed
import Testing

extension OperatorTests {
    /// mizarctl observe over the plane's three droplets, named from etcd.
    static func observe(_ plane: Plane, _ arguments: [String]) async throws -> (status: Int32, output: String) {
        let argv = [siblingExecutable("mizarctl"), "observe", "--testbed", plane.bed.name, "--etcd", plane.etcd.endpoint, "--root", plane.root]
            + plane.tlsFlags + arguments
        return try await onOwnThread { runCapturing(argv) }
    }

    /// Its JSON lines, parsed (other lines, such as warnings, left out).
    static func flowRecords(_ text: String) -> [[String: Any]] {
        text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    @Test("mizarctl observe: one named event with ports for each drop reason provoked (egress disabled, host access, policy), merged over the droplets; --vpc separates two tenants with the same addresses; --endpoint and --reason filter; -f shows a new drop within 1 s")
    func observeDrops() async throws {
        let plane = try await Plane.get()
        let bed = plane.bed
        try await plane.withOperator { store, op in
            #expect(try await plane.dropletsReady(store))
            let object = objectYAML
            try await plane.apply([
                object("Vpc", "obsa", "cidr: 10.0.0.0/16"), object("Subnet", "obsa-1", "vpc: obsa, cidr: 10.0.1.0/24"),
                object("Vpc", "obsb", "cidr: 10.0.0.0/16"), object("Subnet", "obsb-1", "vpc: obsb, cidr: 10.0.1.0/24"),
            ].joined(separator: "---\n"))
            try await Self.cleanly(plane, store, vpcs: ["obsa", "obsb"], endpoints: ["oa1", "oa2", "oa3", "ob1"]) {
                defer { Task { _ = try? await store.delete(NetworkPolicySpec.self, "default/obs-deny") } }
                // oa1 and ob1: one address in two tenants on one droplet;
                // oa2 on another, every ingress to it denied.
                let endpoints: [(name: String, vpc: String, host: String, ip: String, labels: String)] = [
                    ("oa1", "obsa", "h1", "10.0.1.50", ""), ("ob1", "obsb", "h1", "10.0.1.50", ""),
                    ("oa2", "obsa", "h2", "10.0.1.51", ", labels: {app: obs-target}"), ("oa3", "obsa", "h3", "10.0.1.52", ""),
                ]
                var docs: [String] = []
                for e in endpoints {
                    let netns = try bed.addEndpointNetns(e.name)
                    docs.append("apiVersion: mizar.com/v1\nkind: Endpoint\nmetadata: {name: \(e.name)\(e.labels)}\n"
                                + "spec: {vpc: \(e.vpc), subnet: \(e.vpc)-1, droplet: \(plane.droplet(e.host)), netns: \(netns), ip: \(e.ip)}\n")
                }
                docs.append("""
                    apiVersion: networking.k8s.io/v1
                    kind: NetworkPolicy
                    metadata: {name: obs-deny, namespace: default}
                    spec: {podSelector: {matchLabels: {app: obs-target}}, policyTypes: [Ingress]}

                    """)
                try await plane.apply(docs.joined(separator: "---\n"))
                let ready = try await eventually(30) {
                    let all = try await store.list(EndpointSpec.self).objects
                    let policy = try await store.get(NetworkPolicySpec.self, "default/obs-deny")
                    return endpoints.allSatisfy { e in all.contains { $0.name == e.name && $0.status?.common.phase == .provisioned } }
                        && policy?.status?.common.phase == .provisioned
                }
                try #require(ready, "endpoints or policy not provisioned")
                let oa1 = bed.endpointNetns("oa1"), ob1 = bed.endpointNetns("ob1")
                let outside = IPv4Address(172, 30, bed.underlayNet, 77)
                // Each drop provoked once, with its own destination port.
                try Traffic.sendUDP(from: oa1, to: outside, port: 5353, payload: Array("egress-a".utf8))
                try Traffic.sendUDP(from: ob1, to: outside, port: 5353, payload: Array("egress-b".utf8))
                try Traffic.sendUDP(from: oa1, to: bed.hosts[0].ip, port: 9999, payload: Array("host".utf8))
                try Traffic.sendUDP(from: oa1, to: IPv4Address(10, 0, 1, 51), port: 7000, payload: Array("denied".utf8))
                try await Task.sleep(for: .milliseconds(300))

                let all = try await Self.observe(plane, ["--last", "500", "-o", "json"])
                #expect(all.status == 0, "\(all.output.suffix(500))")
                let records = Self.flowRecords(all.output)
                func side(_ r: [String: Any], _ key: String) -> [String: Any] { r[key] as? [String: Any] ?? [:] }
                func find(_ reason: String, port: Int, vpc: String) -> [String: Any]? {
                    records.last { r in
                        r["reason"] as? String == reason && r["vpc"] as? String == vpc && side(r, "destination")["port"] as? Int == port
                    }
                }
                let cases: [(reason: String, port: Int, vpc: String, from: String, to: String?, droplet: String)] = [
                    ("egress_disabled", 5353, "obsa", "oa1", nil, plane.droplet("h1")),
                    ("egress_disabled", 5353, "obsb", "ob1", nil, plane.droplet("h1")),
                    ("host_access_denied", 9999, "obsa", "oa1", nil, plane.droplet("h1")),
                    // Judged by oa2's bouncer: whichever droplet that is.
                    ("policy_ingress_denied", 7000, "obsa", "oa1", "oa2", ""),
                ]
                for c in cases {
                    let r = try #require(find(c.reason, port: c.port, vpc: c.vpc), "no \(c.reason) event in \(c.vpc) to port \(c.port): \(all.output.suffix(3000))")
                    #expect(side(r, "source")["endpoint"] as? String == c.from, "\(r)")
                    #expect(side(r, "source")["subnet"] as? String == "\(c.vpc)-1")
                    #expect((side(r, "source")["port"] as? Int ?? 0) > 0)
                    #expect(r["protocol"] as? String == "UDP" && r["verdict"] as? String == "dropped")
                    if let to = c.to { #expect(side(r, "destination")["endpoint"] as? String == to, "\(r)") }
                    if !c.droplet.isEmpty { #expect(r["droplet"] as? String == c.droplet, "\(r)") }
                    #expect((r["droplet"] as? String ?? "").hasPrefix(bed.name.lowercased()))
                }
                // The merged output is in time order.
                let times = records.compactMap { $0["time"] as? String }
                #expect(times == times.sorted())
                // The table names them too.
                let table = try await Self.observe(plane, ["--last", "50", "--vpc", "obsa", "--reason", "policy_ingress_denied"])
                #expect(table.output.contains("(oa1) -> 10.0.1.51:7000 (oa2)") && table.output.contains("DROPPED policy_ingress_denied"), "\(table.output)")

                // --vpc: the two tenants' identical drops apart.
                for (vpc, other, who) in [("obsa", "obsb", "oa1"), ("obsb", "obsa", "ob1")] {
                    let one = Self.flowRecords(try await Self.observe(plane, ["--last", "500", "-o", "json", "--vpc", vpc, "--reason", "egress_disabled"]).output)
                    #expect(!one.isEmpty && one.allSatisfy { $0["vpc"] as? String == vpc }, "--vpc \(vpc): \(one)")
                    #expect(one.contains { side($0, "source")["endpoint"] as? String == who })
                    #expect(!one.contains { $0["vpc"] as? String == other })
                }
                // --endpoint: only packets from or to oa2 (in obsa).
                let toOA2 = Self.flowRecords(try await Self.observe(plane, ["--last", "500", "-o", "json", "--endpoint", "oa2"]).output)
                #expect(!toOA2.isEmpty && toOA2.allSatisfy { r in
                    r["vpc"] as? String == "obsa" && [side(r, "source")["endpoint"], side(r, "destination")["endpoint"]].contains { $0 as? String == "oa2" }
                }, "\(toOA2)")
                // Bad input: a clear error, nothing shown.
                let bad = try await Self.observe(plane, ["--reason", "no_such_reason"])
                #expect(bad.status != 0 && bad.output.contains("not a drop reason"), "\(bad.output)")
                let missing = try await Self.observe(plane, ["--vpc", "nope"])
                #expect(missing.status != 0 && missing.output.contains("no VPC nope"), "\(missing.output)")

                // -f: a new drop shows within a second.
                let log = "/tmp/mizar-observe-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).log"
                defer { unlink(log) }
                let follower = try spawnDaemon([siblingExecutable("mizarctl"), "observe", "-f", "-o", "json", "--vpc", "obsa", "--reason", "egress_disabled",
                                                "--testbed", bed.name, "--etcd", plane.etcd.endpoint, "--root", plane.root] + plane.tlsFlags, log: log)
                defer {
                    kill(follower, SIGINT)
                    reap(follower)
                    if kill(follower, 0) == 0 {
                        kill(follower, SIGKILL)
                        reap(follower)
                    }
                }
                try await Task.sleep(for: .seconds(2))   // connected to the three droplets
                let sent = ContinuousClock.now
                try Traffic.sendUDP(from: oa1, to: outside, port: 5454, payload: Array("follow".utf8))
                var seenAfter: Duration?
                while ContinuousClock.now - sent < .seconds(3) {
                    let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                    if Self.flowRecords(text).contains(where: { side($0, "destination")["port"] as? Int == 5454 }) {
                        seenAfter = ContinuousClock.now - sent
                        break
                    }
                    try await Task.sleep(for: .milliseconds(10))
                }
                let shown = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                #expect(seenAfter.map { $0 < .seconds(1) } == true, "-f showed the drop after \(seenAfter.map { "\($0)" } ?? "never"): \(shown.suffix(1000))")
                print("observe -f: a new drop shown after \(seenAfter.map { "\($0)" } ?? "never")")

                // Every packet, only while someone follows with --every-packet,
                // and only of the VPC asked for.
                func forwarded(port: Int) async throws -> [[String: Any]] {
                    Self.flowRecords(try await Self.observe(plane, ["--last", "1000", "-o", "json", "--verdict", "forwarded"]).output)
                        .filter { side($0, "destination")["port"] as? Int == port }
                }
                let oa3 = IPv4Address(10, 0, 1, 52)
                try Traffic.sendUDP(from: oa1, to: oa3, port: 7100, payload: Array("before".utf8))
                try await Task.sleep(for: .milliseconds(300))
                #expect(try await forwarded(port: 7100).isEmpty, "a forwarded packet traced with nobody asking")
                let everyLog = log + ".every"
                defer { unlink(everyLog) }
                let every = try spawnDaemon([siblingExecutable("mizarctl"), "observe", "-f", "--every-packet", "-o", "json", "--vpc", "obsa",
                                             "--testbed", bed.name, "--etcd", plane.etcd.endpoint, "--root", plane.root] + plane.tlsFlags, log: everyLog)
                try await Task.sleep(for: .seconds(2))
                try Traffic.sendUDP(from: oa1, to: oa3, port: 7101, payload: Array("during".utf8))
                try Traffic.sendUDP(from: ob1, to: oa3, port: 7102, payload: Array("other-vpc".utf8))
                let seen = try await eventually(3) {
                    Self.flowRecords((try? String(contentsOfFile: everyLog, encoding: .utf8)) ?? "").contains { side($0, "destination")["port"] as? Int == 7101 }
                }
                kill(every, SIGINT)
                reap(every)
                if kill(every, 0) == 0 { kill(every, SIGKILL); reap(every) }
                let during = Self.flowRecords((try? String(contentsOfFile: everyLog, encoding: .utf8)) ?? "")
                #expect(seen, "--every-packet -f did not show oa1 -> oa3:7101: \(during.suffix(5))")
                #expect(during.contains { side($0, "destination")["port"] as? Int == 7101 && $0["verdict"] as? String == "forwarded"
                                          && side($0, "destination")["endpoint"] as? String == "oa3" })
                #expect(!during.contains { $0["vpc"] as? String == "obsb" }, "another VPC's packets shown")
                // Kept while traced: forwarded packets of obsa only (obsb's not traced at all).
                #expect(try await !forwarded(port: 7101).isEmpty)
                #expect(try await forwarded(port: 7102).isEmpty)
                // The follower gone, tracing is back to drops only.
                try await Task.sleep(for: .milliseconds(300))
                try Traffic.sendUDP(from: oa1, to: oa3, port: 7103, payload: Array("after".utf8))
                try await Task.sleep(for: .milliseconds(300))
                #expect(try await forwarded(port: 7103).isEmpty, "still tracing every packet after the follower left")
            }
        }
    }
}
