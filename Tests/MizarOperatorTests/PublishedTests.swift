import Glibc
import MizarAPI
import MizarCore
@testable import MizarOperator
import MizarRPC
import MizarStore
import MizarSystem
import MizarTestbed
import MizarTransitClient
import Testing

extension OperatorTests {
    /// What one host has published, by VIP: its host ports and backends.
    static func published(_ host: Testbed.Host) async throws -> Mizar_Transit_V1_PublishedList {
        try await withTransitClient(.unix(host.socket)) { try await $0.listPublished(.init()) }
    }

    /// `count` connections from `netns` to ip:port, one message each, on a
    /// thread of their own: which backend answered each (nil: none did).
    static func connections(from netns: String, _ ip: IPv4Address, _ port: UInt16, count: Int, tag: String) async throws -> [String?] {
        try await onOwnThread {
            try (0..<count).map { i -> String? in
                guard let fd = try Sock.dial(from: netns, ip, port) else { return nil }
                defer { close(fd) }
                let answer = Sock.ask(fd, "\(tag)-\(i)")
                guard let parts = answer?.split(separator: "|"), parts.count == 2, parts[1] == "\(tag)-\(i)" else { return nil }
                return String(parts[0])
            }
        }
    }

    @Test("a scaled endpoint with a hostPort is published on every droplet: reached from the underlay at each, spread over 3 backends on 3 hosts; a removed backend's flows are forgotten; publishOn narrows it; deleted, every droplet drops it")
    func publishedThroughObjects() async throws {
        let plane = try await Plane.get()
        let bed = plane.bed
        try await plane.withOperator { store, op in
            #expect(try await plane.dropletsReady(store))
            let object = objectYAML
            try await plane.apply([
                object("Vpc", "pub", "cidr: 10.0.0.0/16"), object("Subnet", "pub-1", "vpc: pub, cidr: 10.0.1.0/24"),
            ].joined(separator: "---\n"))
            let backends = [("pbe1", "h1"), ("pbe2", "h2"), ("pbe3", "h3")]
            try await Self.cleanly(plane, store, vpcs: ["pub"], endpoints: backends.map(\.0)) {
                var docs: [String] = []
                for (name, host) in backends {
                    let netns = try bed.addEndpointNetns(name)
                    docs.append(object("Endpoint", name, "vpc: pub, subnet: pub-1, droplet: \(plane.droplet(host)), netns: \(netns)"))
                }
                func webYAML(_ members: [String], publishOn: [String]? = nil) -> String {
                    """
                    apiVersion: mizar.com/v1
                    kind: Endpoint
                    metadata: {name: pweb}
                    spec:
                      vpc: pub
                      subnet: pub-1
                      type: scaled
                      ports: [{port: 80, targetPort: 8080, hostPort: 30080}]
                      backends: [\(members.joined(separator: ", "))]
                    \(publishOn.map { "  publishOn: [\($0.joined(separator: ", "))]\n" } ?? "")
                    """
                }
                docs.append(webYAML(backends.map(\.0)))
                try await plane.apply(docs.joined(separator: "---\n"))
                let all = Set(bed.hosts.map { plane.droplet($0.name) })
                let ready = try await eventually(30) {
                    let web = try await store.get(EndpointSpec.self, "pweb")
                    return web?.status?.common.phase == .provisioned && web?.status?.backends?.count == 3
                        && Set(web?.status?.published ?? []) == all
                }
                let web = try #require(try await store.get(EndpointSpec.self, "pweb"))
                try #require(ready, "pweb: \(web.status?.common.reason ?? "-"), backends \(web.status?.backends?.map(\.name) ?? []), published on \(web.status?.published ?? [])")
                let vip = try #require(web.status?.ip)
                // Every droplet holds the service and its host port.
                for host in bed.hosts {
                    let list = try await Self.published(host)
                    let mine = list.published.first { $0.service.ip == "\(vip)" }
                    #expect(mine?.ports.map(\.hostPort) == [30080] && mine?.service.backends.count == 3, "\(host.name) publishes \(list.published)")
                }
                // mizarctl says where it is published.
                let argv = [siblingExecutable("mizarctl"), "describe", "endpoint", "pweb", "--etcd", plane.etcd.endpoint,
                            "--root", plane.root] + plane.tlsFlags
                let described = try await onOwnThread { runCapturing(argv) }
                let line = "  published: TCP 30080 -> 80 on every droplet; programmed on \(all.sorted().joined(separator: ", "))"
                #expect(described.output.split(separator: "\n").contains { $0 == line }, "describe says: \(described.output)")
                let servers = try backends.map { try IdentityServer(name: $0.0, netns: bed.endpointNetns($0.0), tcpPort: 8080, udpPort: 5353) }
                defer { for s in servers { s.stop() } }

                // A client on the underlay, in a namespace of the test's own.
                let clientIP = IPv4Address(172, 30, bed.underlayNet, 212)
                let clientMAC = try MACAddress(parsing: "02:4d:00:00:00:d4")
                let outside = try await onOwnThread { try bed.addStranger("pubx", ip: clientIP, mac: clientMAC) }
                defer { _ = try? NetworkNamespace.delete(path: outside) }

                // 30 connections to h1's address, 5 to each of the others.
                let h1 = try #require(bed.host("h1")), h2 = try #require(bed.host("h2")), h3 = try #require(bed.host("h3"))
                let first = try await Self.connections(from: outside, h1.ip, 30080, count: 30, tag: "one")
                let spread = Dictionary(grouping: first.compactMap { $0 }, by: { $0 }).mapValues(\.count)
                #expect(first.allSatisfy { $0 != nil } && spread.count == 3, "30 connections to h1:30080 reached \(spread), \(first.filter { $0 == nil }.count) unanswered")
                print("published test: 30 connections from the underlay to h1:30080 reached \(spread.sorted { $0.key < $1.key })")
                for h in [h2, h3] {
                    let answers = try await Self.connections(from: outside, h.ip, 30080, count: 5, tag: "at-\(h.name)")
                    #expect(answers.allSatisfy { $0 != nil }, "connections to \(h.name):30080: \(answers)")
                }
                let flows = try await Self.published(h1).flows
                #expect(flows.count >= 1 && flows.allSatisfy { $0.hostPort == 30080 }, "h1's published flows: \(flows)")

                // One backend removed from the spec, as for clients inside
                // the VPC: its flows are forgotten on every publishing
                // droplet and new connections reach the other two only.
                let removed = try #require(spread.keys.sorted().first)
                let removedIP = try #require(try await store.get(EndpointSpec.self, removed)?.status?.ip)
                #expect(flows.contains { $0.backend == "\(removedIP)" } || spread[removed] == nil)
                let rest = backends.map(\.0).filter { $0 != removed }
                try await plane.apply(webYAML(rest))
                let shrunk = try await eventually(15) {
                    let hostsDone = try await bed.hosts.asyncAllSatisfy { host in
                        let list = try await Self.published(host)
                        return list.published.first { $0.service.ip == "\(vip)" }?.service.backends.count == 2
                            && !list.flows.contains { $0.backend == "\(removedIP)" }
                    }
                    return try await store.get(EndpointSpec.self, "pweb")?.status?.backends?.count == 2 && hostsDone
                }
                var state: [String] = []
                for host in bed.hosts {
                    let list = try await Self.published(host)
                    state.append("\(host.name): backends \(list.published.map { $0.service.backends.map(\.ip) }), flows to \(list.flows.map(\.backend))")
                }
                let statusBackends = try await store.get(EndpointSpec.self, "pweb")?.status?.backends?.map(\.name) ?? []
                #expect(shrunk, "\(removed) (\(removedIP)) is still published or its flows stay: \(state); status \(statusBackends)")
                let later = try await Self.connections(from: outside, h1.ip, 30080, count: 20, tag: "two")
                let laterSpread = Dictionary(grouping: later.compactMap { $0 }, by: { $0 }).mapValues(\.count)
                #expect(later.allSatisfy { $0 != nil } && laterSpread[removed] == nil && laterSpread.count == 2,
                        "after removing \(removed): \(laterSpread)")

                // publishOn narrows it to h2: h1 and h3 no longer publish it
                // (nothing answers there), h2 still does.
                try await plane.apply(webYAML(rest, publishOn: [plane.droplet("h2")]))
                let narrowed = try await eventually(15) {
                    let on = try await store.get(EndpointSpec.self, "pweb")?.status?.published
                    let h1Gone = try await Self.published(h1).published.allSatisfy { $0.service.ip != "\(vip)" }
                    let h3Gone = try await Self.published(h3).published.allSatisfy { $0.service.ip != "\(vip)" }
                    return on == [plane.droplet("h2")] && h1Gone && h3Gone
                }
                let publishedOn = try await store.get(EndpointSpec.self, "pweb")?.status?.published ?? []
                #expect(narrowed, "publishOn [h2] not applied: published on \(publishedOn)")
                #expect(try await Self.connections(from: outside, h1.ip, 30080, count: 2, tag: "gone").allSatisfy { $0 == nil },
                        "h1 still answers on 30080")
                #expect(try await Self.connections(from: outside, h2.ip, 30080, count: 3, tag: "h2").allSatisfy { $0 != nil },
                        "h2 no longer answers on 30080")

                // Deleted: h2 drops it too; the host port is free again.
                try await store.delete(EndpointSpec.self, "pweb")
                let dropped = try await eventually(15) {
                    try await bed.hosts.asyncAllSatisfy { try await Self.published($0).published.isEmpty }
                }
                #expect(dropped, "a host still publishes after the delete")
                #expect(try await Self.connections(from: outside, h2.ip, 30080, count: 1, tag: "deleted") == [nil])
            }
        }
    }
}

extension Sequence where Element: Sendable {
    func asyncAllSatisfy(_ predicate: (Element) async throws -> Bool) async rethrows -> Bool {
        for e in self where try await !predicate(e) { return false }
        return true
    }
}
