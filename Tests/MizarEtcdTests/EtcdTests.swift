import Glibc
import MizarCore
import MizarEtcd
import MizarSystem
import MizarTestbed
import Testing

/// The process's real etcd on loopback.
enum Server {
    static func with<R: Sendable>(_ body: (Etcd) async throws -> R) async throws -> R {
        try await withEtcd(host: "127.0.0.1", port: try await EtcdServer.shared().clientPort, tls: try await EtcdServer.shared().adminTLS, body)
    }
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// One at a time: the lease test times etcd, and the large writes of the
/// paging test would slow it.
@Suite("etcd client against a real etcd", .serialized)
struct EtcdTests {
    @Test("etcd runs as Mizar runs it: an 8 GiB backend quota, not the 2 GiB default")
    func quotaAndCompaction() async throws {
        let server = try await EtcdServer.shared()
        let text = try #require(try await onOwnThread { server.metricsText() })
        let quota = text.split(separator: "\n").first { $0.hasPrefix("etcd_server_quota_backend_bytes ") }
        #expect(quota.flatMap { Double($0.split(separator: " ").last ?? "") } == Double(8 << 30), "\(quota ?? "no quota gauge")")
    }

    @Test("put, get, list by prefix, count and delete")
    func keys() async throws {
        try await Server.with { etcd in
            let p = "/t/keys/"
            let r1 = try await etcd.put(p + "b", bytes("2"))
            let r2 = try await etcd.put(p + "a", bytes("1"))
            try await etcd.put("/t/keysX", bytes("outside the prefix"))
            #expect(r2 > r1)
            #expect(try await etcd.get(p + "a")?.value == bytes("1"))
            #expect(try await etcd.get(p + "missing") == nil)
            let (kvs, revision) = try await etcd.list(prefix: p)
            #expect(kvs.map(\.key) == [p + "a", p + "b"])
            #expect(revision >= r2 + 1)
            #expect(try await etcd.count(prefix: p) == 2)
            #expect(try await etcd.delete(p + "a") == 1)
            #expect(try await etcd.delete(p + "a") == 0)
            #expect(try await etcd.delete(prefix: p) == 1)
            #expect(try await etcd.count(prefix: p) == 0)
            #expect(try await etcd.get("/t/keysX") != nil, "a delete by prefix must stop at the prefix")
        }
    }

    @Test("create only once; compare-and-swap refuses a stale revision")
    func conditionalWrites() async throws {
        try await Server.with { etcd in
            let k = "/t/cas/x"
            #expect(try await etcd.create(k, bytes("first")))
            #expect(try await !etcd.create(k, bytes("second")))
            let kv = try #require(try await etcd.get(k))
            #expect(kv.value == bytes("first"))
            #expect(try await etcd.update(k, bytes("v2"), ifModRevision: kv.modRevision))
            #expect(try await !etcd.update(k, bytes("v3"), ifModRevision: kv.modRevision), "stale revision accepted")
            #expect(try await etcd.get(k)?.value == bytes("v2"))
            // The failure branch runs instead, and reads what is there.
            let t = try await etcd.transaction(if: [.absent(k)], then: [.put(k, bytes("no"))], else: [.get(k)])
            #expect(!t.succeeded)
            #expect(t.reads.count == 1 && t.reads.first??.value == bytes("v2"))
        }
    }

    @Test("a watch replays history from a revision and then follows puts and deletes in order")
    func watch() async throws {
        try await Server.with { etcd in
            let p = "/t/watch/"
            let start = try await etcd.put(p + "1", bytes("a"))
            var seen: [String] = []
            let stream = etcd.watch(prefix: p, fromRevision: start, previousValues: true)
            try await etcd.put(p + "2", bytes("b"))
            try await etcd.delete(p + "1")
            try await etcd.put("/t/other", bytes("not watched"))
            try await etcd.put(p + "2", bytes("c"))
            for try await batch in stream {
                for e in batch {
                    seen.append("\(e.kind == .put ? "put" : "delete") \(e.kv.key) \(String(decoding: e.kv.value, as: UTF8.self)) prev=\(e.previous.map { String(decoding: $0.value, as: UTF8.self) } ?? "-")")
                }
                if seen.count >= 4 { break }
            }
            #expect(seen == ["put /t/watch/1 a prev=-", "put /t/watch/2 b prev=-", "delete /t/watch/1  prev=a", "put /t/watch/2 c prev=b"])
        }
    }

    @Test("a lease's keys vanish when it lapses, stay while kept alive, and go at once on revoke")
    func leases() async throws {
        try await Server.with { etcd in
            // The kept lease's key must outlive its own TTL by seconds. (The
            // TTL leaves room for this process's other suites, whose blocking
            // calls can hold its two threads for a while.)
            let granted = monotonicSeconds()
            let lapsing = try await etcd.grantLease(ttl: 3)
            let kept = try await etcd.grantLease(ttl: 6)
            let revoked = try await etcd.grantLease(ttl: 60)
            try await etcd.put("/t/lease/lapsing", bytes("x"), lease: lapsing)
            try await etcd.put("/t/lease/kept", bytes("x"), lease: kept)
            try await etcd.put("/t/lease/revoked", bytes("x"), lease: revoked)
            try await etcd.revokeLease(revoked)
            #expect(try await etcd.get("/t/lease/revoked") == nil)
            let keeper = Task { try await etcd.keepAlive(kept, every: .milliseconds(300)) }
            defer { keeper.cancel() }
            var gone = false
            for _ in 0..<150 where !gone {   // up to 15 s on a loaded machine
                try await Task.sleep(for: .milliseconds(100))
                gone = try await etcd.get("/t/lease/lapsing") == nil
            }
            #expect(gone, "the lapsed lease's key is still there")
            #expect(try await etcd.timeToLive(lapsing) == nil)
            while monotonicSeconds() < granted + 8 { try await Task.sleep(for: .milliseconds(200)) }
            let keeperState = keeper.isCancelled ? "cancelled" : "running"
            #expect(try await etcd.get("/t/lease/kept") != nil, "the kept-alive lease's key vanished with the other (keeper \(keeperState))")
            #expect(try await etcd.timeToLive(kept) != nil)
        }
    }

    /// etcd 3.4 answers nearly every request with an HTTP/2 PING as well;
    /// swift-nio-http2 would close a connection that receives more than 200
    /// control frames in 30 s. One connection must outlast that.
    @Test("1,000 calls on one connection within seconds")
    func manyCalls() async throws {
        try await Server.with { etcd in
            for i in 0..<1000 {
                try await etcd.put("/t/many/\(i % 10)", bytes("\(i)"))
            }
            #expect(try await etcd.get("/t/many/9")?.value == bytes("999"))
            #expect(try await etcd.count(prefix: "/t/many/") == 10)
        }
    }

    @Test("a list larger than one page comes back whole, in order, at one revision, whatever the page size; a page too large to take is asked again smaller")
    func pagedList() async throws {
        try await Server.with { etcd in
            let keys = (0..<1200).map { String(format: "/t/paged/%05d", $0) }
            for batch in stride(from: 0, to: keys.count, by: 100) {
                try await etcd.transaction(if: [], then: keys[batch..<batch + 100].map { .put($0, Array($0.utf8)) })
            }
            // Pages of at least 7, 100, 5,000 keys; and pages sized to about
            // 1 KiB (some 30 keys each: forty pages).
            for (page, pageBytes): (Int64, Int) in [(7, 4 << 20), (100, 4 << 20), (5000, 4 << 20), (1, 1024)] {
                let (kvs, revision) = try await etcd.list(prefix: "/t/paged/", page: page, pageBytes: pageBytes)
                #expect(kvs.map(\.key) == keys, "page \(page), \(pageBytes) bytes: \(kvs.count) keys")
                #expect(kvs.allSatisfy { $0.modRevision <= revision })
            }
            // 1,200 keys of 4 KB: more than gRPC's 4 MB in one answer.
            let big = [UInt8](repeating: 0x61, count: 4096)
            for batch in stride(from: 0, to: keys.count, by: 100) {
                try await etcd.transaction(if: [], then: keys[batch..<batch + 100].map { .put($0, big) })
            }
            #expect(try await etcd.list(prefix: "/t/paged/").kvs.count == 1200)
            try await etcd.delete(prefix: "/t/paged/")
            // A page asked for too large to take (80 values of 1 MiB: over
            // the 64 MiB a page may be) is asked again smaller; all come back.
            let mib = [UInt8](repeating: 0x62, count: 1 << 20)
            for i in 0..<80 { try await etcd.put(String(format: "/t/huge/%03d", i), mib) }
            let huge = try await etcd.list(prefix: "/t/huge/", page: 80, pageBytes: 1 << 30)
            #expect(huge.kvs.map(\.key) == (0..<80).map { String(format: "/t/huge/%03d", $0) })
            #expect(huge.kvs.allSatisfy { $0.value == mib })
            try await etcd.delete(prefix: "/t/huge/")
        }
    }

    @Test("an unreachable etcd is a clear error, not a hang")
    func unreachable() async throws {
        let port = try #require(Int(exactly: 1))   // nothing listens on port 1
        await #expect(throws: EtcdError.self) {
            try await withEtcd(host: "127.0.0.1", port: port) { etcd in
                try await etcd.get("/t/x")
            }
        }
    }
}
