import Foundation
import Glibc
import MizarAPI
import MizarCore
@testable import MizarOperator
import MizarRPC
import MizarStore
import MizarSystem
import MizarTestbed
import MizarTransit
import MizarTransitClient
import Synchronization
import Testing

/// A backend's server: every TCP message and UDP datagram is answered with
/// the backend's name in front, so a client sees which backend it reached
/// (and, with `showPeer`, the address and port the server saw it from:
/// "name|ip:port|message").
final class IdentityServer: Sendable {
    let name: String
    let tcp: Int32
    let udp: Int32
    let showPeer: Bool
    let stopped = Mutex(false)

    init(name: String, netns: String, tcpPort: UInt16, udpPort: UInt16, showPeer: Bool = false) throws {
        self.name = name
        self.showPeer = showPeer
        let ns = try NetworkNamespace(path: netns)
        tcp = try ns.socket(domain: AF_INET, type: Int32(SOCK_STREAM.rawValue))
        udp = try ns.socket(domain: AF_INET, type: Int32(SOCK_DGRAM.rawValue))
        var one: Int32 = 1
        setsockopt(tcp, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard Sock.bind(tcp, .zero, tcpPort), listen(tcp, 128) == 0, Sock.bind(udp, .zero, udpPort) else {
            throw TestbedError("\(name): cannot listen on \(tcpPort)/\(udpPort): errno \(errno)")
        }
        Sock.timeout(tcp, 0.1)
        Sock.timeout(udp, 0.1)
        Thread.detachNewThread { [self] in acceptLoop() }
        Thread.detachNewThread { [self] in udpLoop() }
    }

    var isStopped: Bool { stopped.withLock { $0 } }

    func acceptLoop() {
        while !isStopped {
            let c = accept(tcp, nil, nil)
            guard c >= 0 else { continue }
            Thread.detachNewThread { [self] in serve(c) }
        }
    }

    func serve(_ c: Int32) {
        defer { close(c) }
        Sock.timeout(c, 0.1)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !isStopped {
            let n = buffer.withUnsafeMutableBytes { recv(c, $0.baseAddress, $0.count, 0) }
            if n == 0 { return }
            if n < 0 { if errno == EAGAIN || errno == EWOULDBLOCK { continue } else { return } }
            let answer = Array("\(name)|\(showPeer ? Sock.peer(c) + "|" : "")".utf8) + buffer.prefix(n)
            _ = answer.withUnsafeBytes { send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }
    }

    func udpLoop() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !isStopped {
            var from = sockaddr_in(), len = socklen_t(MemoryLayout<sockaddr_in>.size)
            let n = withUnsafeMutablePointer(to: &from) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                    buffer.withUnsafeMutableBytes { recvfrom(udp, $0.baseAddress, $0.count, 0, sa, &len) }
                }
            }
            guard n > 0 else { continue }
            let peer = "\(IPv4Address(networkOrder: from.sin_addr.s_addr)):\(UInt16(bigEndian: from.sin_port))|"
            let answer = Array("\(name)|\(showPeer ? peer : "")".utf8) + buffer.prefix(n)
            _ = withUnsafePointer(to: &from) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                    answer.withUnsafeBytes { sendto(udp, $0.baseAddress, $0.count, 0, sa, len) }
                }
            }
        }
    }

    func stop() {
        stopped.withLock { $0 = true }
        usleep(300_000)
        close(tcp)
        close(udp)
    }
}

/// Small socket helpers for the service test.
enum Sock {
    static func address(_ ip: IPv4Address, _ port: UInt16) -> sockaddr_in {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        a.sin_addr.s_addr = ip.networkOrder
        return a
    }

    static func bind(_ fd: Int32, _ ip: IPv4Address, _ port: UInt16) -> Bool {
        var a = address(ip, port)
        return withUnsafePointer(to: &a) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }

    static func connect(_ fd: Int32, _ ip: IPv4Address, _ port: UInt16) -> Bool {
        var a = address(ip, port)
        return withUnsafePointer(to: &a) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }

    static func timeout(_ fd: Int32, _ seconds: Double) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// The address the socket is connected to, as the client sees it.
    static func peer(_ fd: Int32) -> String {
        var a = sockaddr_in(), len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &a) { p in p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &len) } }
        return "\(IPv4Address(networkOrder: a.sin_addr.s_addr)):\(UInt16(bigEndian: a.sin_port))"
    }

    /// A TCP connection from `netns`, or nil when it cannot be made.
    static func dial(from netns: String, _ ip: IPv4Address, _ port: UInt16, localPort: UInt16? = nil, timeout seconds: Double = 1.0) throws -> Int32? {
        let fd = try NetworkNamespace(path: netns).socket(domain: AF_INET, type: Int32(SOCK_STREAM.rawValue))
        timeout(fd, seconds)
        if let localPort {
            // The port may still be in TIME_WAIT from an earlier connection to another peer.
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            guard bind(fd, .zero, localPort) else { close(fd); return nil }
        }
        guard connect(fd, ip, port) else { close(fd); return nil }
        return fd
    }

    /// Sends `message` and returns the answer, or nil.
    static func ask(_ fd: Int32, _ message: String) -> String? {
        let bytes = Array(message.utf8)
        guard bytes.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == bytes.count else { return nil }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return n > 0 ? String(decoding: buffer.prefix(n), as: UTF8.self) : nil
    }

    /// One UDP datagram from `netns` and its answer with the answer's source.
    static func udpAsk(from netns: String, _ ip: IPv4Address, _ port: UInt16, _ message: String,
                       localPort: UInt16? = nil) throws -> (String, String)? {
        let fd = try NetworkNamespace(path: netns).socket(domain: AF_INET, type: Int32(SOCK_DGRAM.rawValue))
        defer { close(fd) }
        timeout(fd, 1.0)
        if let localPort, !bind(fd, .zero, localPort) { return nil }
        var to = address(ip, port)
        let bytes = Array(message.utf8)
        _ = withUnsafePointer(to: &to) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, sa, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
        var from = sockaddr_in(), len = socklen_t(MemoryLayout<sockaddr_in>.size)
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = withUnsafeMutablePointer(to: &from) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                buffer.withUnsafeMutableBytes { recvfrom(fd, $0.baseAddress, $0.count, 0, sa, &len) }
            }
        }
        guard n > 0 else { return nil }
        return (String(decoding: buffer.prefix(n), as: UTF8.self),
                "\(IPv4Address(networkOrder: from.sin_addr.s_addr)):\(UInt16(bigEndian: from.sin_port))")
    }
}

extension OperatorTests {
    @Test("a scaled endpoint spreads TCP over 5 backends on 3 hosts by Maglev, answers UDP and ping, and a removed backend's flows are forgotten")
    func scaledEndpoint() async throws {
        let plane = try await Plane.get()
        try await plane.withOperator { store, op in
            #expect(try await plane.dropletsReady(store))
            func apply(_ yaml: String) async throws { try await plane.apply(yaml) }
            let object = objectYAML
            try await apply([
                object("Vpc", "svc", "cidr: 10.0.0.0/16"), object("Subnet", "svc-1", "vpc: svc, cidr: 10.0.1.0/24"),
                object("Subnet", "svc-2", "vpc: svc, cidr: 10.0.2.0/24"),
                object("Vpc", "other", "cidr: 10.0.0.0/16"), object("Subnet", "other-1", "vpc: other, cidr: 10.0.1.0/24"),
            ].joined(separator: "---\n"))
            #expect(try await eventually(15) {
                try await store.list(SubnetSpec.self).objects.filter { $0.spec.vpc == "svc" || $0.spec.vpc == "other" }
                    .allSatisfy { $0.status?.common.phase == .provisioned }
            })
            // Where the VIP's subnet bounces: a client there and one elsewhere.
            let bouncer = try #require(try await store.get(SubnetSpec.self, "svc-1")?.status?.bouncers?.first)
            let hostNames = plane.bed.hosts.map(\.name)
            let bouncerHost = try #require(hostNames.first { plane.droplet($0) == bouncer })
            let elsewhere = try #require(hostNames.first { $0 != bouncerHost })
            let backends: [(String, String, String)] = [
                ("sbe1", "svc-1", "h1"), ("sbe2", "svc-1", "h2"), ("sbe3", "svc-2", "h3"), ("sbe4", "svc-2", "h1"), ("sbe5", "svc-1", "h2"),
            ]
            let clients: [(String, String, String, String)] = [
                ("sc1", "svc", "svc-1", elsewhere), ("sc2", "svc", "svc-1", bouncerHost), ("sc3", "svc", "svc-2", elsewhere),
                ("sx1", "other", "other-1", elsewhere),
            ]
            var docs: [String] = []
            for (name, subnet, host) in backends {
                let netns = try plane.bed.addEndpointNetns(name)
                docs.append(object("Endpoint", name, "vpc: svc, subnet: \(subnet), droplet: \(plane.droplet(host)), netns: \(netns)"))
            }
            for (name, vpc, subnet, host) in clients {
                let netns = try plane.bed.addEndpointNetns(name)
                docs.append(object("Endpoint", name, "vpc: \(vpc), subnet: \(subnet), droplet: \(plane.droplet(host)), netns: \(netns)"))
            }
            docs.append("""
                apiVersion: mizar.com/v1
                kind: Endpoint
                metadata: {name: sweb}
                spec:
                  vpc: svc
                  subnet: svc-1
                  type: scaled
                  ports: [{port: 80, targetPort: 8080}, {port: 53, protocol: UDP, targetPort: 5353}]
                  backends: [sbe1, sbe2, sbe3, sbe4, sbe5]

                """)
            try await apply(docs.joined(separator: "---\n"))
            let names = backends.map(\.0) + clients.map(\.0)
            let ready = try await eventually(20) {
                let all = try await store.list(EndpointSpec.self).objects
                let web = all.first { $0.name == "sweb" }
                return names.allSatisfy { n in all.contains { $0.name == n && $0.status?.common.phase == .provisioned } }
                    && web?.status?.common.phase == .provisioned && web?.status?.backends?.count == 5
            }
            let web = try #require(try await store.get(EndpointSpec.self, "sweb"))
            #expect(ready, "not provisioned: \(web.status?.common.reason ?? "-") backends \(web.status?.backends?.map(\.name) ?? [])")
            let vip = try #require(web.status?.ip)
            #expect(web.status?.droplet == nil, "a VIP has no droplet")
            for host in plane.bed.hosts {
                let interfaces = try await withTransitClient(.unix(host.socket)) { try await $0.listEndpointInterfaces(.init()).interfaces }
                #expect(!interfaces.contains { $0.spec.ip == "\(vip)" }, "a VIP has no interface, but \(host.name) has one")
            }
            #expect(try CIDR(parsing: "10.0.1.0/24").contains(vip))
            let servers = try backends.map { try IdentityServer(name: $0.0, netns: plane.bed.endpointNetns($0.0), tcpPort: 8080, udpPort: 5353) }
            defer { for s in servers { s.stop() } }
            func ns(_ name: String) -> String { plane.bed.endpointNetns(name) }
            func backendOf(_ answer: String?) -> String? { answer.flatMap { $0.split(separator: "|").first.map(String.init) } }

            // 50 TCP connections from one client: each sees the VIP as its
            // peer, and they reach several backends.
            var conns: [(fd: Int32, backend: String)] = []
            defer { for c in conns { close(c.fd) } }
            for i in 0..<50 {
                guard let fd = try Sock.dial(from: ns("sc1"), vip, 80) else { Issue.record("connection \(i) to the VIP failed"); continue }
                #expect(Sock.peer(fd) == "\(vip):80")
                let answer = Sock.ask(fd, "c\(i)-m0")
                guard let b = backendOf(answer), answer == "\(b)|c\(i)-m0" else {
                    Issue.record("connection \(i): answer \(answer ?? "none")")
                    close(fd)
                    continue
                }
                conns.append((fd, b))
            }
            let spread = Dictionary(grouping: conns, by: \.backend).mapValues(\.count)
            #expect(conns.count == 50 && spread.count >= 3, "50 connections reached \(spread)")
            print("service test: 50 connections reached \(spread.sorted { $0.key < $1.key })")
            // Every message of a connection reaches its backend.
            for (i, c) in conns.enumerated() {
                for m in 1...2 { #expect(Sock.ask(c.fd, "c\(i)-m\(m)") == "\(c.backend)|c\(i)-m\(m)") }
            }
            // UDP: answered from the VIP's address and port.
            for i in 0..<5 {
                let r = try Sock.udpAsk(from: ns("sc1"), vip, 53, "q\(i)")
                #expect(r?.1 == "\(vip):53" && backendOf(r?.0).map { b in backends.contains { $0.0 == b } } == true, "UDP answer \(String(describing: r))")
            }
            // Ping to the VIP is answered.
            #expect(Traffic.ping(from: ns("sc1"), vip, count: 3, interval: 0.1).received == 3, "ping to the VIP")
            // A client on the bouncer's own host, and one in the other subnet.
            for client in ["sc2", "sc3"] {
                let fd = try #require(try Sock.dial(from: ns(client), vip, 80), "\(client) cannot connect to the VIP")
                defer { close(fd) }
                #expect(backendOf(Sock.ask(fd, "\(client)-hello")) != nil, "\(client) got no answer through the VIP")
                #expect(try Sock.udpAsk(from: ns(client), vip, 53, "\(client)-q")?.1 == "\(vip):53")
                #expect(Traffic.ping(from: ns(client), vip, count: 2, interval: 0.1).received == 2, "\(client) ping to the VIP")
            }
            // A direct connection that reuses a finished VIP connection's client
            // port, to the very backend and port that connection had, is itself:
            // the backend's replies keep their source.
            let reused: UInt16 = 41_234
            let viaVIP = try #require(try Sock.dial(from: ns("sc1"), vip, 80, localPort: reused), "VIP connection from port \(reused)")
            let chosen = try #require(backendOf(Sock.ask(viaVIP, "reuse-1")), "no answer through the VIP")
            close(viaVIP)
            let chosenIP = try #require(try await store.get(EndpointSpec.self, chosen)?.status?.ip)
            let direct = try Sock.dial(from: ns("sc1"), chosenIP, 8080, localPort: reused)
            #expect(direct != nil, "a direct connection from port \(reused) to \(chosen) \(chosenIP):8080 failed after a VIP flow used that port")
            if let direct {
                #expect(Sock.peer(direct) == "\(chosenIP):8080")
                #expect(Sock.ask(direct, "reuse-2") == "\(chosen)|reuse-2")
                close(direct)
            }
            // The other VPC has the very same addresses: its endpoint never reaches the service.
            #expect(Traffic.ping(from: ns("sx1"), vip, count: 2, interval: 0.1, wait: 0.3).received == 0, "VPC other reached VPC svc's VIP")
            #expect(try Sock.dial(from: ns("sx1"), vip, 80).map { close($0); return true } == nil, "VPC other connected to the VIP")

            // mizarctl shows the backends, the table and the flows each got.
            let described = runCapturing([siblingExecutable("mizarctl"), "describe", "endpoint", "sweb", "--etcd", plane.etcd.endpoint,
                                          "--root", plane.root] + plane.tlsFlags)
            #expect(described.status == 0 && described.output.contains("maglev table: 65521 entries"), "\(described.output)")
            print(described.output.split(separator: "\n").drop { !$0.hasPrefix("service:") }.prefix(12).joined(separator: "\n"))
            for (name, _, _) in backends { #expect(described.output.contains(name), "describe lists \(name)") }

            // Remove the backend the first connection uses, with every
            // connection still open.
            let removed = conns[0].backend
            let removedIP = "\(try #require(web.status?.backends?.first { $0.name == removed }?.ip))"
            // Traffic keeps flowing on a live backend's connection while
            // the backend set changes: every message answered, by its backend.
            let live = try #require(conns.first { $0.backend != removed })
            let during = Mutex<(answered: Int, wrong: [String])>((0, []))
            let running = Mutex(true)
            let talker = Thread {
                var i = 0
                while running.withLock({ $0 }) {
                    let answer = Sock.ask(live.fd, "live-\(i)")
                    during.withLock { d in
                        if answer == "\(live.backend)|live-\(i)" { d.answered += 1 } else { d.wrong.append(answer ?? "none") }
                    }
                    i += 1
                    usleep(5_000)
                }
            }
            talker.start()
            var edited = try #require(try await store.get(EndpointSpec.self, "sweb"))
            edited.spec.backends = backends.map(\.0).filter { $0 != removed }
            try await store.update(edited)
            let c1Host = try #require(plane.bed.hosts.first { $0.name == elsewhere })
            let forgotten = try await eventually(10) {
                let w = try await store.get(EndpointSpec.self, "sweb")
                guard w?.status?.backends?.count == 4 else { return false }
                let flows = try await withTransitClient(.unix(c1Host.socket)) { try await $0.listServiceFlows(.init()).flows }
                return !flows.contains { $0.backend == removedIP } && flows.contains { $0.vip == "\(vip)" }
            }
            #expect(forgotten, "the client host still has flows to the removed backend \(removed)")
            try await Task.sleep(for: .milliseconds(200))
            running.withLock { $0 = false }
            while !talker.isFinished { try await Task.sleep(for: .milliseconds(10)) }
            let talk = during.withLock { $0 }
            #expect(talk.answered > 10 && talk.wrong.isEmpty, "during the change: \(talk.answered) answered, wrong \(talk.wrong.prefix(3))")
            print("service test: \(talk.answered) messages on a live connection while \(removed) was removed, none lost")
            // Connections to live backends keep their backend; those to the
            // removed one reach it no more.
            for (i, c) in conns.enumerated() {
                let answer = Sock.ask(c.fd, "c\(i)-after")
                if c.backend == removed {
                    #expect(backendOf(answer) != removed, "connection \(i) still reaches the removed backend")
                } else {
                    #expect(answer == "\(c.backend)|c\(i)-after", "connection \(i) to live \(c.backend) broke: \(answer ?? "none")")
                }
            }
            // New connections never reach it.
            var fresh: [String: Int] = [:]
            for i in 0..<30 {
                let fd = try #require(try Sock.dial(from: ns("sc1"), vip, 80), "new connection \(i)")
                defer { close(fd) }
                if let b = backendOf(Sock.ask(fd, "n\(i)")) { fresh[b, default: 0] += 1 }
            }
            #expect(fresh[removed] == nil && fresh.values.reduce(0, +) == 30, "new connections: \(fresh)")
            print("service test: \(removed) removed; 30 new connections reached \(fresh.sorted { $0.key < $1.key })")

            // Deleting everything leaves no service and no flow of these
            // VPCs on any host.
            var vnis: [UInt32] = []
            for vpc in ["svc", "other"] { vnis.append(try #require(try await store.get(VpcSpec.self, vpc)?.status?.vni).value) }
            for c in conns { close(c.fd) }
            conns = []
            for vpc in ["svc", "other"] {
                _ = runCapturing([siblingExecutable("mizarctl"), "delete", "vpc", vpc, "--etcd", plane.etcd.endpoint] + plane.tlsFlags + ["--root", plane.root])
            }
            #expect(try await eventually(20) {
                try await store.list(VpcSpec.self).objects.allSatisfy { $0.name != "svc" && $0.name != "other" }
            })
            for host in plane.bed.hosts {
                var left = (0, 0)
                for vni in vnis {
                    var r = Mizar_Transit_V1_ListRequest()
                    r.vni = vni
                    let request = r
                    let held = try await withTransitClient(.unix(host.socket)) { c in
                        (try await c.listServices(request).services.count, try await c.listServiceFlows(request).flows.count)
                    }
                    left = (left.0 + held.0, left.1 + held.1)
                }
                #expect(left == (0, 0), "\(host.name) still holds services/flows \(left)")
            }
            _ = op
        }
    }
}
