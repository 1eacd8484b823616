import Foundation
import Glibc
import MizarAPI
import MizarCore
import MizarRPC
import MizarStore
import MizarSystem
import MizarTestbed
import MizarTransitClient
import Testing

extension OperatorTests {
    /// What mizarctl trace predicts for one packet, and its hops.
    struct Predicted {
        var verdict: String
        var endpoint: String?
        var droplet: String?
        var reason: String?
        var agree: Bool?
        var hops: [[String: Any]]
        var raw: String

        /// The first hop's path (what the source's host did).
        var firstPath: [String] { hops.first?["path"] as? [String] ?? [] }
    }

    /// The traced flow and the real one are the same flow (conntrack and
    /// the bouncers' choice are per flow).
    static let traceSourcePort: UInt16 = 40123

    static func trace(_ plane: Plane, _ source: String, _ ip: IPv4Address, _ flow: String = "udp/7007") async throws -> Predicted {
        let argv = [siblingExecutable("mizarctl"), "trace", source, "\(ip)", flow, "--sport", "\(Self.traceSourcePort)", "-o", "json", "--testbed", plane.bed.name,
                    "--etcd", plane.etcd.endpoint, "--root", plane.root] + plane.tlsFlags
        let r = try await onOwnThread { runCapturing(argv) }
        guard let line = r.output.split(separator: "\n").last(where: { $0.hasPrefix("{") }),
              let json = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let end = json["end"] as? [String: Any] else {
            return Predicted(verdict: "none", hops: [], raw: r.output)
        }
        return Predicted(verdict: end["verdict"] as? String ?? "", endpoint: end["endpoint"] as? String, droplet: end["droplet"] as? String,
                         reason: end["reason"] as? String, agree: json["agree"] as? Bool, hops: json["hops"] as? [[String: Any]] ?? [], raw: r.output)
    }

    @Test("mizarctl trace predicts, for every pair of endpoints of deploy/examples/two-tenants.yaml, the endpoint and droplet the packets then really reach, agreeing with the declared objects; again once direct paths are learned, after invalidate, and after a subnet's bouncers change; an address only the other tenant has is dropped, as traced")
    func tracePredicts() async throws {
        let plane = try await Plane.get()
        let bed = plane.bed
        try await plane.withOperator { store, op in
            #expect(try await plane.dropletsReady(store))
            var yaml = try String(contentsOfFile: "deploy/examples/two-tenants.yaml", encoding: .utf8)
            let names = ["red-web1", "red-web2", "red-db", "blue-web1", "blue-web2", "blue-db"]
            func key(_ name: String) -> String { name.replacingOccurrences(of: "-", with: "") }
            for name in names {
                let netns = try bed.addEndpointNetns(key(name))
                yaml = yaml.replacingOccurrences(of: "netns: /run/netns/demo-e-\(name)\n", with: "netns: \(netns)\n")
            }
            for host in bed.hosts { yaml = yaml.replacingOccurrences(of: "droplet: demo-\(host.name)\n", with: "droplet: \(plane.droplet(host.name))\n") }
            // Isolation: an address only blue has.
            let only = try bed.addEndpointNetns("blueonly")
            yaml += "---\n" + objectYAML("Endpoint", "blue-only", "vpc: blue, subnet: blue-front, droplet: \(plane.droplet("h2")), netns: \(only), ip: 10.0.1.200")
            try await plane.apply(yaml)
            try await Self.cleanly(plane, store, vpcs: ["red", "blue"], endpoints: names.map(key) + ["blueonly"]) {
                let provisioned = try await eventually(40) {
                    let all = try await store.list(EndpointSpec.self).objects
                    return (names + ["blue-only"]).allSatisfy { n in all.contains { $0.name == n && $0.status?.common.phase == .provisioned } }
                }
                try #require(provisioned, "the example's endpoints not provisioned")
                let all = try await store.list(EndpointSpec.self).objects.filter { ($0.spec.vpc == "red" || $0.spec.vpc == "blue") }
                let byName = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })
                let servers = try (names + ["blue-only"]).map { n in
                    try IdentityServer(name: n, netns: bed.endpointNetns(n == "blue-only" ? "blueonly" : key(n)), tcpPort: 8080, udpPort: 7007)
                }
                defer { for s in servers { s.stop() } }
                func ip(_ n: String) throws -> IPv4Address { try #require(byName[n]?.status?.ip) }
                /// Who really answers a datagram from `source` to `address`.
                func reached(_ source: String, _ address: IPv4Address) async throws -> String? {
                    let netns = bed.endpointNetns(key(source))
                    let answer = try await onOwnThread { try Sock.udpAsk(from: netns, address, 7007, "who", localPort: Self.traceSourcePort) }
                    return answer.map { String($0.0.split(separator: "|").first ?? "") }
                }
                /// The endpoint of `source`'s VPC at `address`: what isolation says must answer.
                func twin(_ source: String, _ address: IPv4Address) -> String? {
                    all.first { $0.spec.vpc == byName[source]?.spec.vpc && $0.status?.ip == address }?.name
                }
                func check(_ source: String, _ address: IPv4Address, _ what: String) async throws -> Predicted {
                    let p = try await Self.trace(plane, source, address)
                    let really = try await reached(source, address)
                    let want = twin(source, address)
                    #expect(p.endpoint == want && p.verdict == (want == nil ? "dropped" : "delivered"),
                            "\(what): \(source) -> \(address): traced \(p.verdict) \(p.endpoint ?? "-"), the VPC has \(want ?? "none") \(p.raw.suffix(600))")
                    #expect(really == p.endpoint, "\(what): \(source) -> \(address): traced \(p.endpoint ?? "a drop"), really reached \(really ?? "nobody")")
                    if let e = p.endpoint {
                        #expect(p.droplet == byName[e]?.status?.droplet, "\(what): delivered on \(p.droplet ?? "-"), \(e) lives on \(byName[e]?.status?.droplet ?? "-")")
                    }
                    #expect(p.agree == true, "\(what): \(source) -> \(address): the hosts and the objects disagree: \(p.raw.suffix(600))")
                    return p
                }

                // Every ordered pair (within and across the tenants, whose
                // address plans are the same), first packets, then again
                // with the direct paths learned.
                for round in ["first packets", "direct paths learned"] {
                    for s in names {
                        for d in names where d != s {
                            let p = try await check(s, try ip(d), round)
                            let crossHost = p.droplet != byName[s]?.status?.droplet
                            if round == "direct paths learned" && crossHost && p.endpoint != nil {
                                #expect(p.firstPath.contains("encap_direct"), "\(s) -> \(d): \(p.firstPath)")
                            }
                        }
                    }
                }
                // Isolation: red has nothing at 10.0.1.200 (blue-only's).
                let onlyIP = IPv4Address(10, 0, 1, 200)
                let dropped = try await check("red-web1", onlyIP, "isolation")
                #expect(dropped.reason == "no_endpoint", "\(dropped.raw.suffix(400))")
                #expect(try await check("blue-web1", onlyIP, "isolation").endpoint == "blue-only")

                // invalidate: the direct path forgotten, through a bouncer again.
                let redVNI = try #require(try await store.get(VpcSpec.self, "red")?.status?.vni)
                /// mizarctl invalidate on `source`'s host, for `address`.
                func invalidate(_ source: String, _ address: IPv4Address) async throws {
                    let host = try #require(byName[source]?.status?.droplet).replacingOccurrences(of: "\(bed.name.lowercased())-", with: "")
                    let r = try await onOwnThread {
                        runCapturing([siblingExecutable("mizarctl"), "invalidate", "--vni", "\(redVNI.value)", "\(address)", "--testbed", "\(bed.name)/\(host)"])
                    }
                    #expect(r.status == 0, "\(r.output)")
                }
                let src = "red-web1", dst = "red-db"
                try await invalidate(src, try ip(dst))
                let after = try await check(src, try ip(dst), "after invalidate")
                #expect(!after.firstPath.contains("encap_direct") && after.hops.count >= 2, "after invalidate: \(after.firstPath)")

                // The subnet's bouncers change (2 -> 1): a packet within
                // red-front goes to the one left, as traced.
                var front = try #require(try await store.get(SubnetSpec.self, "red-front"))
                front.spec.bouncers = 1
                try await store.update(front)
                let scaled = try await eventually(15) {
                    let s = try await store.get(SubnetSpec.self, "red-front")
                    return s?.status?.bouncers?.count == 1 && s?.status?.common.phase == .provisioned
                        && s?.status?.common.observedGeneration == s?.metadata.generation
                }
                try #require(scaled, "red-front not down to one bouncer")
                let bouncer = try #require(try await store.get(SubnetSpec.self, "red-front")?.status?.bouncers?.first)
                for (s, d) in [("red-web1", "red-web2"), ("red-web2", "red-web1")] {
                    try await invalidate(s, try ip(d))
                    let p = try await check(s, try ip(d), "after the bouncers changed")
                    let first = p.hops.first?["nextDroplet"] as? String
                    if byName[s]?.status?.droplet != bouncer {
                        #expect(first == bouncer, "\(s) -> \(d): first hop to \(first ?? "-"), red-front's bouncer is \(bouncer)")
                    }
                }

                // The table form, as a user reads it; a wrong --vpc is refused.
                let mizarctl = [siblingExecutable("mizarctl"), "trace", "--testbed", bed.name, "--etcd", plane.etcd.endpoint, "--root", plane.root] + plane.tlsFlags
                let table = try await onOwnThread { runCapturing(mizarctl + ["--vpc", "red", "red-web1", "red-db", "tcp/80"]) }
                let dbHost = try #require(byName["red-db"]?.status?.droplet)
                #expect(table.status == 0 && table.output.contains("result: delivered to red-db on \(dbHost)") && table.output.contains("agrees")
                        && table.output.contains("mz_subnets"), "\(table.output)")
                print(table.output)
                let wrong = try await onOwnThread { runCapturing(mizarctl + ["--vpc", "blue", "red-web1", "red-db"]) }
                #expect(wrong.status != 0 && wrong.output.contains("is in VPC red, not blue"), "\(wrong.output)")

                // A host that lost an entry: red-front's bouncer forgets an
                // endpoint that does not live on it (a bouncer delivers its
                // own endpoints before it reads its table). The hosts now
                // drop what the objects say is delivered: the trace says so
                // (and exits 3), and the real packet is indeed not delivered.
                let bouncerHost = try #require(bed.hosts.first { plane.droplet($0.name) == bouncer })
                let victim = try #require(["red-web1", "red-web2"].first { byName[$0]?.status?.droplet != bouncer })
                let sender = victim == "red-web1" ? "red-web2" : "red-web1"
                let victimIP = try ip(victim)
                var gone = Mizar_Transit_V1_EndpointKey()
                gone.vni = redVNI.value
                gone.ip = "\(victimIP)"
                _ = try await withTransitClient(.unix(bouncerHost.socket)) { try await $0.deleteEndpoint(gone) }
                try await invalidate(sender, victimIP)
                let stale = try await onOwnThread { runCapturing(mizarctl + [sender, victim, "udp/7007", "--sport", "\(Self.traceSourcePort)"]) }
                #expect(stale.status == 3 && stale.output.contains("DROPPED on \(bouncer): no_endpoint") && stale.output.contains("DISAGREES"),
                        "bouncer \(bouncer), \(sender) -> \(victim): \(stale.output.suffix(1500))")
                #expect(try await reached(sender, victimIP) == nil, "delivered although the bouncer forgot \(victim)")
            }
        }
    }
}
