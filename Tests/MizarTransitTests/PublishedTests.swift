import Foundation
import GRPCCore
import Glibc
import MizarCore
import MizarDataplane
import MizarRPC
import MizarSystem
import MizarTestbed
import MizarTransit
import MizarTransitClient
import Synchronization
import Testing

/// A backend's TCP server: answers each message with "name|message".
final class NamedServer: Sendable {
    let fd: Int32
    let stopped = Mutex(false)

    init(_ name: String, netns: String, port: UInt16) throws {
        fd = try NetworkNamespace(path: netns).socket(domain: AF_INET, type: Int32(SOCK_STREAM.rawValue))
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var a = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: port.bigEndian, sin_addr: in_addr(s_addr: 0),
                            sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        let r = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard r == 0, listen(fd, 64) == 0 else { throw TestbedError("\(name): cannot listen on \(port)") }
        var tv = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        Thread.detachNewThread { [self] in
            while !stopped.withLock({ $0 }) {
                let c = accept(fd, nil, nil)
                guard c >= 0 else { continue }
                var buffer = [UInt8](repeating: 0, count: 512)
                var t = timeval(tv_sec: 1, tv_usec: 0)
                setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &t, socklen_t(MemoryLayout<timeval>.size))
                let n = buffer.withUnsafeMutableBytes { recv(c, $0.baseAddress, $0.count, 0) }
                if n > 0 {
                    let answer = Array("\(name)|".utf8) + buffer.prefix(n)
                    _ = answer.withUnsafeBytes { send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                }
                close(c)
            }
        }
    }

    func stop() {
        stopped.withLock { $0 = true }
        usleep(150_000)
        close(fd)
    }
}

/// One TCP exchange from `netns` to ip:port; the answer, or nil.
func askOnce(from netns: String, _ ip: IPv4Address, _ port: UInt16, _ message: String) throws -> String? {
    let fd = try NetworkNamespace(path: netns).socket(domain: AF_INET, type: Int32(SOCK_STREAM.rawValue))
    defer { close(fd) }
    var tv = timeval(tv_sec: 1, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var a = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: port.bigEndian, sin_addr: in_addr(s_addr: ip.networkOrder),
                        sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
    let r = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard r == 0 else { return nil }
    let bytes = Array(message.utf8)
    guard bytes.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == bytes.count else { return nil }
    var buffer = [UInt8](repeating: 0, count: 512)
    let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
    return n > 0 ? String(decoding: buffer.prefix(n), as: UTF8.self) : nil
}

extension ClusterTests {
    @Test("a service published on a droplet's host port (through transitd's API) is reached from the underlay, spread over 3 backends on 2 hosts; a removed backend's flows are forgotten; unpublished, the port is the host's")
    func publishedService() async throws {
        let w = try await World.get()
        let c = w.c
        let vip = try IPv4Address(parsing: "10.0.1.100")
        let backends = [w.a1, w.a3, w.a5]   // on h1, h3, h3
        func entry(_ list: [Cluster.Endpoint]) throws -> ServiceEntry {
            ServiceEntry(vni: try VNI(Cluster.vniA), vip: vip, ports: [ServicePort(proto: .tcp, port: 80, targetPort: 8080)],
                         backends: list.map { ServiceBackend(ip: $0.ip, host: c.host($0.host).peer.address) })
        }
        func published(_ list: [Cluster.Endpoint]) throws -> Mizar_Transit_V1_Published {
            Messages.published(try entry(list), mac: try MACAddress(parsing: "0a:58:0a:00:01:64"), subnet: try CIDR(parsing: Cluster.s1),
                               ports: [PublishedHostPort(proto: .tcp, hostPort: 30080, port: 80)])
        }
        // Published on h2, where no backend lives.
        let first = try published(backends)
        #expect(try await c.client(2) { try await $0.putPublished(first) }.changed)
        defer { Task { _ = try? await c.client(2) { try await $0.deletePublished(.with { $0.vni = Cluster.vniA; $0.ip = "\(vip)" }) } } }
        let servers = try backends.map { try NamedServer($0.name, netns: $0.netns, port: 8080) }
        defer { for s in servers { s.stop() } }
        let clientMAC = try MACAddress(parsing: "02:4d:00:00:00:d2")
        // (It waits for its link: on a thread of its own, not the test pool's.)
        let outside = try await onOwnThread { try c.bed.addStranger("pubc", ip: IPv4Address(172, 30, c.bed.underlayNet, 210), mac: clientMAC) }
        defer { _ = try? NetworkNamespace.delete(path: outside) }
        let h2 = c.host(2).ip
        // The new namespace's link is up on the underlay (the host answers).
        #expect(Traffic.ping(from: outside, h2, count: 1, wait: 2).received == 1, "the client cannot reach h2 at all")

        var reached: [String: Int] = [:]
        for i in 0..<40 {
            let answer = try askOnce(from: outside, h2, 30080, "hello-\(i)")
            let parts = answer?.split(separator: "|").map(String.init) ?? []
            guard parts.count == 2, parts[1] == "hello-\(i)" else {
                var drops: [String] = []
                for h in 1...3 { drops.append("h\(h): \(try await c.client(h) { try await $0.getCounters(.init()) }.drops.filter { $0.packets > 0 }.map { "\($0.name)=\($0.packets)" })") }
                Issue.record("connection \(i) to \(h2):30080: \(answer ?? "no answer"); drops \(drops)")
                continue
            }
            reached[parts[0], default: 0] += 1
        }
        #expect(reached.values.reduce(0, +) == 40 && reached.count == 3, "40 connections from outside reached \(reached)")
        print("published test: 40 connections from outside reached \(reached.sorted { $0.key < $1.key })")
        let list = try await c.client(2) { try await $0.listPublished(.init()) }
        #expect(list.published.first?.ports.first?.hostPort == 30080 && list.published.first?.service.backends.count == 3)
        #expect(list.flows.count >= 1, "no published flows listed")

        // One backend removed: its flows there are forgotten; new connections
        // reach the other two only.
        let removed = try #require(backends.first { reached[$0.name] != nil })
        let flowsBefore = list.flows.filter { $0.backend == "\(removed.ip)" }.count
        let rest = backends.filter { $0.name != removed.name }
        #expect(try await c.client(2) { try await $0.putPublished(try published(rest)) }.changed)
        let after = try await c.client(2) { try await $0.listPublished(.init()) }
        #expect(flowsBefore > 0 && !after.flows.contains { $0.backend == "\(removed.ip)" }, "the removed backend's flows stay")
        var later: [String: Int] = [:]
        for i in 0..<20 {
            if let b = try askOnce(from: outside, h2, 30080, "again-\(i)")?.split(separator: "|").first { later[String(b), default: 0] += 1 }
        }
        #expect(later.values.reduce(0, +) == 20 && later[removed.name] == nil, "after removing \(removed.name): \(later)")

        // A host port published for another VIP is refused; unpublished, the
        // port is the host's own again (nothing listens: refused).
        var other = try published(rest)
        other.service.ip = "10.0.1.101"
        await #expect(throws: RPCError.self) { _ = try await c.client(2) { try await $0.putPublished(other) } }
        #expect(try await c.client(2) { try await $0.deletePublished(.with { $0.vni = Cluster.vniA; $0.ip = "\(vip)" }) }.existed)
        #expect(try askOnce(from: outside, h2, 30080, "gone") == nil, "an unpublished port still answered")
    }
}
