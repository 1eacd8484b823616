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

        /// The judgment's options (policy, egress bits, verdict) are valid
        /// Geneve options to a standard decoder, lengths and all.
        @Test(arguments: Hook.allCases) func policyOptionsDecode(_ hook: Hook) throws {
            let env = try TestEnvironment.get(policy: true)
            try env.reset()
            try seed(env, Roles(bouncerS1: true))
            try PolicyCases.isolate(env.dataplane, T.a3, members: [2], egress: [PolicyCases.rule(17, 7, [9])])
            let inner = PolicyCases.a3ToA4
            let judged = P.tunnel(from: T.h2, to: T.h1, vni: T.vniA, rts: T.h2, rtsFlags: PolicyCases.judge, inner: inner)
            let forwarded = try env.dataplane.programs[hook]!.transit.testRun(judged, ifindex: env.ifs.droplet).output
            let verdict = P.tunnel(from: T.h1, to: T.h2, vni: T.vniA, rts: T.h2, options: [PolicyCases.verdict(T.h4), P.rts(T.h2)], inner: inner)
            let path = "/tmp/mizar-geneve-policy-\(getpid())-\(hook).pcap"
            defer { unlink(path) }
            try PcapWriter.write(frames: [forwarded, verdict], to: path)
            let lines = try tshark(path, fields: ["geneve.option.class", "geneve.option.type", "geneve.option.length", "ip.dst", "_ws.expert"])
            try #require(lines.count == 2)
            let fwd = lines[0].split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            #expect(fwd[0] == "0xff4d,0xff4d,0xff4d")
            #expect(fwd[1] == "0x83,0x84,0x01", "critical policy, critical egress bits, RTS")
            #expect(Set(fwd[2].split(separator: ",")) == ["76", "68", "16", "160"], "each option, and all of them")
            #expect(fwd[3] == "192.168.50.3,10.0.2.30", "to a4's subnet's bouncer, the inner packet intact")
            #expect(fwd.count < 5 || fwd[4].isEmpty, "tshark reports problems: \(fwd[4])")
            let v = lines[1].split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            #expect(v[1] == "0x85,0x01")
            #expect(Set(v[2].split(separator: ",")) == ["12", "16", "28"])
            #expect(v.count < 5 || v[4].isEmpty, "tshark reports problems: \(v[4])")
        }
    }
}
