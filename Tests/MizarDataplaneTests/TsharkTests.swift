import CMizarABI
import Glibc
import MizarCore
@testable import MizarDataplane
import MizarPacket
import MizarTestbed
import Testing

/// Runs tshark on a pcap file and returns the requested fields, one line per
/// frame, tab-separated.
func tshark(_ path: String, fields: [String]) throws -> [String] {
    var argv = ["tshark", "-r", path, "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in fields { argv += ["-e", f] }
    let out = "/tmp/mizar-tshark-\(getpid()).txt"
    defer { unlink(out) }
    let cmd = argv.map { "'\($0)'" }.joined(separator: " ") + " > \(out) 2>/dev/null"
    guard runCommand(["sh", "-c", cmd]) == 0, let f = fopen(out, "r") else { throw SetupError(what: "tshark failed on \(path)") }
    defer { fclose(f) }
    var lines: [String] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while buf.withUnsafeMutableBufferPointer({ p in
        p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { fgets($0, Int32(p.count), f) }
    }) != nil {
        let line = buf.prefix(while: { $0 != 0 })
        lines.append(String(decoding: line, as: UTF8.self).trimmingCharacters(in: "\n"))
    }
    return lines
}

extension String {
    func trimmingCharacters(in c: Character) -> String {
        var s = self
        while s.last == c { s.removeLast() }
        return s
    }
}

extension DataplaneTests {
    @Suite struct Wireshark {
        /// The agent's encapsulation is valid Geneve to a standard decoder.
        @Test(arguments: Hook.allCases) func agentOutputDecodes(_ hook: Hook) throws {
            let env = try TestEnvironment.get()
            try env.reset()
            try seed(env, Roles())
            let inner = P.udp(T.a1mac, T.a3mac, T.a1, T.a3, sport: 41000, dport: 9000)
            let r = try env.dataplane.programs[hook]!.agent.testRun(inner, ifindex: env.ifs.a)
            let path = "/tmp/mizar-geneve-\(getpid())-\(hook).pcap"
            defer { unlink(path) }
            try PcapWriter.write(frames: [r.output], to: path)
            let lines = try tshark(path, fields: [
                "geneve.version", "geneve.vni", "geneve.proto_type", "geneve.option.class", "geneve.option.type",
                "geneve.option.length", "ip.src", "ip.dst", "ip.ttl", "udp.srcport", "udp.dstport", "eth.src", "eth.dst",
                "ip.checksum.status", "_ws.expert",
            ])
            try #require(lines.count == 1)
            let f = lines[0].split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            try #require(f.count >= 14, "fields: \(f)")
            #expect(f[0] == "0")
            #expect(f[1] == "0x000064")            // VNI 100, VPC A
            #expect(f[2] == "0x6558")              // transparent Ethernet bridging
            #expect(f[3] == "0xff4d")              // Mizar's option class
            #expect(f[4] == "0x01")                // RTS
            // The option's length in bytes, header included (tshark shows it
            // both for the option and for its length field).
            #expect(Set(f[5].split(separator: ",")) == ["16"])
            #expect(f[6] == "192.168.50.1,10.0.1.10")  // outer and inner sources
            #expect(f[7] == "192.168.50.4,10.0.1.20")  // the bouncer, then the real destination
            #expect(f[9] == "\(mz_flow_sport(P.flowHash(inner))),41000")
            #expect(f[10] == "6081,9000")
            #expect(f[11] == "02:00:00:00:00:01,0a:58:0a:00:01:0a")
            #expect(f[12] == "02:00:00:00:00:04,0a:58:0a:00:01:14")
            #expect(f.count < 15 || f[14].isEmpty, "tshark reports problems: \(f[14])")
        }
    }
}
