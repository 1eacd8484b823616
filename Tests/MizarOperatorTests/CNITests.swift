import Foundation
import Glibc
import MizarAPI
import MizarCNI
import MizarCore
import MizarStore
import MizarSystem
import MizarTestbed
import Testing

/// One run of the plugin exactly as a runtime makes it: CNI_* variables,
/// the network configuration on stdin, the result or error on stdout.
struct PluginRun {
    let status: Int32
    let stdout: String
    let seconds: Double

    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(stdout.utf8))) as? [String: Any] ?? [:] }
    var code: Int? { json["code"] as? Int }
    var msg: String { json["msg"] as? String ?? "" }

    /// On a thread of its own: the operator under test shares this process's
    /// two cooperative threads, and a blocked one would stall it.
    static func run(_ command: String, config: String, containerID: String = "", netns: String = "", ifname: String = "eth0",
                    args: String = "") async throws -> PluginRun {
        try await onOwnThread { try runBlocking(command, config: config, containerID: containerID, netns: netns, ifname: ifname, args: args) }
    }

    static func runBlocking(_ command: String, config: String, containerID: String, netns: String, ifname: String,
                            args: String) throws -> PluginRun {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: siblingExecutable("mizar-cni"))
        var env = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": command, "CNI_PATH": "/opt/cni/bin"]
        if !containerID.isEmpty { env["CNI_CONTAINERID"] = containerID }
        if !netns.isEmpty { env["CNI_NETNS"] = netns }
        if !ifname.isEmpty { env["CNI_IFNAME"] = ifname }
        if !args.isEmpty { env["CNI_ARGS"] = args }
        p.environment = env
        let input = Pipe(), output = Pipe()
        p.standardInput = input
        p.standardOutput = output
        let started = monotonicSeconds()
        try p.run()
        input.fileHandleForWriting.write(Data(config.utf8))
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return PluginRun(status: p.terminationStatus, stdout: String(decoding: data, as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines), seconds: monotonicSeconds() - started)
    }
}

/// A network configuration naming a VPC, a subnet and the host's transitd.
func cniConfig(vpc: String, subnet: String, socket: String, version: String = "1.0.0", extra: String = "") -> String {
    #"{"cniVersion":"\#(version)","name":"mizar-\#(vpc)","type":"mizar-cni","vpc":"\#(vpc)","subnet":"\#(subnet)","transitd":"\#(socket)"\#(extra)}"#
}

func percentile(_ values: [Double], _ p: Double) -> Double {
    let s = values.sorted()
    return s.isEmpty ? 0 : s[min(s.count - 1, Int(Double(s.count) * p))]
}

extension OperatorTests {
    @Test("mizar-cni driven as a runtime drives it: ADD, CHECK, DEL and VERSION, every error path, repeated DEL")
    func cniPlugin() async throws {
        let plane = try await Plane.get()
        try await plane.withOperator { store, _ in
            #expect(try await plane.dropletsReady(store))
            func apply(_ yaml: String) async throws { try await plane.apply(yaml) }
            let object = objectYAML
            try await apply([
                object("Vpc", "cnia", "cidr: 10.0.0.0/16"), object("Subnet", "cnia1", "vpc: cnia, cidr: 10.0.1.0/24"),
                object("Subnet", "cniat", "vpc: cnia, cidr: 10.0.9.0/29"),
                object("Vpc", "cnib", "cidr: 10.0.0.0/16"), object("Subnet", "cnib1", "vpc: cnib, cidr: 10.0.1.0/24"),
            ].joined(separator: "---\n"))
            #expect(try await eventually(15) {
                let mine = try await store.list(SubnetSpec.self).objects.filter { $0.name.hasPrefix("cni") }
                return mine.count == 3 && mine.allSatisfy { $0.status?.common.phase == .provisioned }
            })
            let h1 = plane.bed.hosts[0], h2 = plane.bed.hosts[1]
            let a1 = cniConfig(vpc: "cnia", subnet: "cnia1", socket: h1.cniSocket)
            let a2 = cniConfig(vpc: "cnia", subnet: "cnia1", socket: h2.cniSocket)
            let b1 = cniConfig(vpc: "cnib", subnet: "cnib1", socket: h1.cniSocket)

            // VERSION needs no transitd.
            let version = try await PluginRun.run("VERSION", config: #"{"cniVersion":"1.0.0"}"#)
            #expect(version.status == 0 && version.stdout == #"{"cniVersion":"1.0.0","supportedVersions":["1.0.0","1.1.0"]}"#, "\(version.stdout)")

            // ADD: three containers, two VPCs with the same CIDR, two hosts.
            let ids = (1...4).map { i in String(repeating: "\(i)", count: 8) + String(format: "%056x", UInt64(getpid()) * 7919 + UInt64(i)) }
            var netns: [String] = []
            for i in 1...4 { netns.append(try plane.bed.addEndpointNetns("cnin\(i)")) }
            var adds: [Double] = []
            func add(_ config: String, _ i: Int, args: String = "") async throws -> [String: Any] {
                let r = try await PluginRun.run("ADD", config: config, containerID: ids[i], netns: netns[i], args: args)
                #expect(r.status == 0, "ADD \(i): \(r.stdout)")
                adds.append(r.seconds)
                return r.json
            }
            let r0 = try await add(a1, 0), r1 = try await add(a2, 1), r2 = try await add(b1, 2)
            func address(_ r: [String: Any]) -> String { ((r["ips"] as? [[String: Any]])?.first?["address"] as? String) ?? "" }
            func ip(_ r: [String: Any]) throws -> IPv4Address { try IPv4Address(parsing: String(address(r).split(separator: "/").first ?? "")) }
            let name0 = CNIHandler.endpointName(containerID: ids[0], ifname: "eth0", override: nil)
            let e0 = try #require(try await store.get(EndpointSpec.self, name0))
            #expect(e0.status?.common.phase == .provisioned && e0.spec.droplet == plane.droplet(h1.name) && e0.spec.vpc == "cnia")
            #expect(e0.metadata.labels?[CNIHandler.containerLabel] == String(ids[0].prefix(63)))
            // The result is CNI 1.0: interfaces, ips, routes.
            let iface = (r0["interfaces"] as? [[String: Any]])?.first
            #expect(r0["cniVersion"] as? String == "1.0.0")
            #expect(iface?["name"] as? String == "eth0" && iface?["sandbox"] as? String == netns[0] && iface?["mac"] as? String == e0.status?.mac.map { "\($0)" })
            #expect(address(r0) == "\(e0.status?.ip ?? "")/24")
            #expect((r0["ips"] as? [[String: Any]])?.first?["gateway"] as? String == "10.0.1.1")
            #expect((r0["ips"] as? [[String: Any]])?.first?["interface"] as? Int == 0)
            #expect(((r0["routes"] as? [[String: Any]]) ?? []).map { "\($0["dst"] ?? "")>\($0["gw"] ?? "")" } == ["0.0.0.0/0>10.0.1.1"])
            // Inside the container: the interface with its address and route.
            let inside = try Netlink(in: try NetworkNamespace(path: netns[0]))
            let index = try #require(try inside.index(of: "eth0"))
            #expect(try inside.hasAddress(index, try ip(r0), prefixLength: 24))
            #expect(try inside.defaultRoute()?.gateway == (try IPv4Address(parsing: "10.0.1.1")))
            // Containers of one VPC reach each other across hosts; not the other VPC.
            #expect(Traffic.ping(from: netns[0], try ip(r1), count: 2, interval: 0.1).received == 2, "cnia on h1 -> cnia on h2")
            #expect(Traffic.ping(from: netns[1], try ip(r0), count: 2, interval: 0.1).received == 2, "cnia on h2 -> cnia on h1")
            if try ip(r2) != ip(r0), try ip(r2) != ip(r1) {
                #expect(Traffic.ping(from: netns[1], try ip(r2), count: 2, interval: 0.1, wait: 0.3).received == 0, "cnia reached cnib")
                #expect(Traffic.ping(from: netns[2], try ip(r1), count: 2, interval: 0.1, wait: 0.3).received == 0, "cnib reached cnia")
            }

            // ADD again is the same answer; CHECK passes.
            let again = try await PluginRun.run("ADD", config: a1, containerID: ids[0], netns: netns[0])
            #expect(again.status == 0 && address(again.json) == address(r0))
            let check = try await PluginRun.run("CHECK", config: a1, containerID: ids[0], netns: netns[0])
            #expect(check.status == 0 && check.stdout.isEmpty, "CHECK: \(check.stdout)")
            // CHECK sees drift: the address taken away, then the interface.
            let nsName = String(netns[0].split(separator: "/").last!)
            _ = runCapturing(["ip", "-n", nsName, "addr", "flush", "dev", "eth0"])
            let drifted = try await PluginRun.run("CHECK", config: a1, containerID: ids[0], netns: netns[0])
            #expect(drifted.status != 0 && drifted.code == CNIError.drifted && drifted.msg.contains("lacks its address"), "\(drifted.stdout)")
            #expect(drifted.msg.contains("no default route"), "a flushed address takes its route along: \(drifted.stdout)")
            let unknown = try await PluginRun.run("CHECK", config: a1, containerID: String(repeating: "f", count: 64), netns: netns[0])
            #expect(unknown.code == CNIError.unknownContainer, "\(unknown.stdout)")

            // DEL: the endpoint and its address go; again, and for a stranger, it succeeds.
            let ip0 = try ip(r0)
            let del = try await PluginRun.run("DEL", config: a1, containerID: ids[0], netns: netns[0])
            #expect(del.status == 0 && del.stdout.isEmpty, "DEL: \(del.stdout)")
            #expect(try await store.get(EndpointSpec.self, name0) == nil, "DEL returned before the endpoint went")
            #expect(try await store.etcd.get(store.ipKey(vpc: "cnia", ip: ip0)) == nil, "the address is still claimed")
            #expect(try inside.index(of: "eth0") == nil, "the interface is still in the container")
            for _ in 0..<2 {
                #expect(try await PluginRun.run("DEL", config: a1, containerID: ids[0], netns: netns[0]).status == 0, "repeated DEL")
            }
            #expect(try await PluginRun.run("DEL", config: a1, containerID: String(repeating: "e", count: 64), netns: netns[0]).status == 0)
            // Half torn down: the namespace is gone before DEL.
            let r3 = try await add(a2, 3)
            #expect(!address(r3).isEmpty)
            _ = runCapturing(["ip", "netns", "del", String(netns[3].split(separator: "/").last!)])
            let halfway = try await PluginRun.run("DEL", config: a2, containerID: ids[3], netns: netns[3])
            #expect(halfway.status == 0, "DEL after the namespace went: \(halfway.stdout)")
            #expect(try await store.get(EndpointSpec.self, CNIHandler.endpointName(containerID: ids[3], ifname: "eth0", override: nil)) == nil)

            // Per-container overrides (CNI_ARGS) and adopting an endpoint made beforehand.
            let overridden = try await add(a1, 0, args: "IgnoreUnknown=1;MIZAR_VPC=cnib;MIZAR_SUBNET=cnib1")
            #expect(try await store.get(EndpointSpec.self, name0)?.spec.vpc == "cnib", "\(overridden)")
            #expect(try await PluginRun.run("DEL", config: a1, containerID: ids[0], netns: netns[0], args: "MIZAR_VPC=cnib;MIZAR_SUBNET=cnib1").status == 0)
            _ = try await store.create(Endpoint(name: "cniadopt", spec: EndpointSpec(vpc: "cnia", subnet: "cnia1", droplet: plane.droplet(h2.name))))
            #expect(try await eventually { try await store.get(EndpointSpec.self, "cniadopt")?.status?.common.phase == .provisioned })
            let adoptedIP = try #require(try await store.get(EndpointSpec.self, "cniadopt")?.status?.ip)
            let adopted = try await add(a2, 0, args: "MIZAR_ENDPOINT=cniadopt")
            #expect(address(adopted) == "\(adoptedIP)/24", "adopted \(adopted)")
            #expect(try await PluginRun.run("DEL", config: a2, containerID: ids[0], netns: netns[0], args: "MIZAR_ENDPOINT=cniadopt").status == 0)
            #expect(try await store.get(EndpointSpec.self, "cniadopt") == nil)

            // A container may ask for its address and MAC: CNI_ARGS IP= and MAC=
            // (podman run --ip --mac-address), or the `ips` capability.
            let wanted = address(r1) == "10.0.1.250/24" ? "10.0.1.249" : "10.0.1.250"
            let pinned = try await add(a1, 0, args: "IgnoreUnknown=1;K8S_POD_NAME=x;MAC=0a:58:0a:00:01:fa;IP=\(wanted)")
            #expect(address(pinned) == "\(wanted)/24", "\(pinned)")
            #expect((pinned["interfaces"] as? [[String: Any]])?.first?["mac"] as? String == "0a:58:0a:00:01:fa", "\(pinned)")
            #expect(try inside.hasAddress(try #require(try inside.index(of: "eth0")), try IPv4Address(parsing: wanted), prefixLength: 24))
            #expect(try await PluginRun.run("DEL", config: a1, containerID: ids[0], netns: netns[0]).status == 0)
            let capability = try await add(cniConfig(vpc: "cnia", subnet: "cnia1", socket: h1.cniSocket,
                                               extra: #","runtimeConfig":{"ips":["\#(wanted)/24"]}"#), 0)
            #expect(address(capability) == "\(wanted)/24", "\(capability)")
            #expect(try await PluginRun.run("DEL", config: a1, containerID: ids[0], netns: netns[0]).status == 0)

            // Errors: spec error JSON, the right code, a message to act on.
            let stranger = String(repeating: "a", count: 64)
            func refused(_ r: PluginRun, _ code: Int, _ text: String) {
                #expect(r.status != 0 && r.code == code && r.msg.contains(text), "want \(code) \(text): \(r.stdout)")
                #expect(r.json["cniVersion"] as? String != nil, "error without cniVersion: \(r.stdout)")
            }
            refused(try await PluginRun.run("ADD", config: cniConfig(vpc: "cnia", subnet: "cnia1", socket: "/run/mizar-no-such/cni.sock"),
                                      containerID: stranger, netns: netns[0]), CNIError.tryAgainLater, "transitd is not running")
            refused(try await PluginRun.run("ADD", config: cniConfig(vpc: "nosuch", subnet: "cnia1", socket: h1.cniSocket),
                                      containerID: stranger, netns: netns[0]), CNIError.invalidConfig, "VPC nosuch does not exist")
            refused(try await PluginRun.run("ADD", config: cniConfig(vpc: "cnia", subnet: "nosuch", socket: h1.cniSocket),
                                      containerID: stranger, netns: netns[0]), CNIError.invalidConfig, "subnet nosuch does not exist")
            refused(try await PluginRun.run("ADD", config: a1, containerID: stranger), CNIError.invalidEnvironment, "CNI_NETNS is missing")
            refused(try await PluginRun.run("ADD", config: a1, containerID: stranger, netns: "/run/netns/mizar-no-such-\(getpid())"),
                    CNIError.invalidEnvironment, "cannot be opened")
            refused(try await PluginRun.run("ADD", config: a1, containerID: stranger, netns: netns[0], ifname: "eth0:1"),
                    CNIError.invalidEnvironment, "CNI_IFNAME: \"eth0:1\" is not an interface name")
            refused(try await PluginRun.run("ADD", config: a2, containerID: stranger, netns: netns[1]), CNIError.invalidEnvironment,
                    "already has an interface eth0")
            // Requested addresses that cannot be had: refused by name and reason, nothing made.
            let taken = String(address(r1).split(separator: "/").first ?? "")
            for (args, text) in [("IP=10.0.1", "CNI_ARGS IP=10.0.1 is not one IPv4 address"),
                                 ("MIZAR_IP=10.0.1.7,10.0.1.8", "CNI_ARGS MIZAR_IP=10.0.1.7,10.0.1.8 is not one IPv4 address"),
                                 ("MAC=0a:58:zz:00:00:01", "CNI_ARGS MAC=0a:58:zz:00:00:01 is not a MAC address"),
                                 ("IP=10.0.2.9", "spec.ip: 10.0.2.9 is outside Subnet cnia1's 10.0.1.0/24"),
                                 ("IP=10.0.1.1", "spec.ip: 10.0.1.1 is Subnet cnia1's gateway address"),
                                 ("IP=\(taken)", "spec.ip: \(taken) is already taken in Vpc cnia")] {
                refused(try await PluginRun.run("ADD", config: a2, containerID: stranger, netns: netns[0], args: args), CNIError.invalidConfig, text)
            }
            refused(try await PluginRun.run("ADD", config: cniConfig(vpc: "cnia", subnet: "cnia1", socket: h1.cniSocket,
                                                               extra: #","runtimeConfig":{"ips":["10.0.1.7/24","10.0.1.8/24"]}"#),
                                      containerID: stranger, netns: netns[0]), CNIError.invalidConfig, "runtimeConfig.ips asks for 2 addresses")
            #expect(try await store.get(EndpointSpec.self, CNIHandler.endpointName(containerID: stranger, ifname: "eth0", override: nil)) == nil)
            refused(try await PluginRun.run("ADD", config: cniConfig(vpc: "cnia", subnet: "cnia1", socket: h1.cniSocket, version: "0.3.1"),
                                      containerID: stranger, netns: netns[0]), CNIError.incompatibleVersion, "0.3.1 is not supported")
            refused(try await PluginRun.run("ADD", config: "{not json", containerID: stranger, netns: netns[0]), CNIError.decodeFailure, "not a JSON object")
            refused(try await PluginRun.run("ADD", config: #"{"cniVersion":"1.0.0","name":"x","type":"mizar-cni","transitd":"\#(h1.cniSocket)"}"#,
                                      containerID: stranger, netns: netns[0]), CNIError.invalidConfig, "vpc is missing")
            let timedOut = try await PluginRun.run("ADD", config: cniConfig(vpc: "cnia", subnet: "cnia1", socket: h1.cniSocket, extra: #","timeoutSeconds":0.0"#),
                                             containerID: stranger, netns: netns[0])
            refused(timedOut, CNIError.tryAgainLater, "timed out")
            #expect(try await eventually {
                try await store.get(EndpointSpec.self, CNIHandler.endpointName(containerID: stranger, ifname: "eth0", override: nil)) == nil
            }, "a timed-out ADD left its endpoint")
            // The /29 holds five: the sixth is refused as exhausted, and nothing is left of it.
            let tiny = cniConfig(vpc: "cnia", subnet: "cniat", socket: h1.cniSocket)
            var tinyNetns: [String] = []
            for i in 0..<5 {
                tinyNetns.append(try plane.bed.addEndpointNetns("cnit\(i)"))
                let r = try await PluginRun.run("ADD", config: tiny, containerID: "7\(i)" + stranger.dropFirst(2), netns: tinyNetns[i])
                #expect(r.status == 0, "tiny \(i): \(r.stdout)")
            }
            let sixth = try await PluginRun.run("ADD", config: tiny, containerID: "76" + stranger.dropFirst(2), netns: netns[0])
            refused(sixth, CNIError.subnetExhausted, "has no free address")
            for i in 0..<5 {
                #expect(try await PluginRun.run("DEL", config: tiny, containerID: "7\(i)" + stranger.dropFirst(2), netns: tinyNetns[i]).status == 0)
            }
            #expect(try await PluginRun.run("STATUS", config: a1).status == 0)

            // What it costs: the plugin's ADD from exec to result, and its own start.
            var starts: [Double] = []
            for _ in 0..<20 { starts.append(try await PluginRun.run("VERSION", config: #"{"cniVersion":"1.0.0"}"#).seconds) }
            print("cni: ADD exec-to-result p50 \(Int(percentile(adds, 0.5) * 1000)) ms over \(adds.count); plugin VERSION exec-to-exit p50 \(Int(percentile(starts, 0.5) * 1_000_000)) us")

            // Clean up what is left.
            for (i, config) in [(1, a2), (2, b1)] {
                #expect(try await PluginRun.run("DEL", config: config, containerID: ids[i], netns: netns[i]).status == 0)
            }
            for vpc in ["cnia", "cnib"] {
                _ = runCapturing([siblingExecutable("mizarctl"), "delete", "vpc", vpc, "--etcd", plane.etcd.endpoint] + plane.tlsFlags + ["--root", plane.root])
            }
            let gone = try await eventually(20) {
                try await store.list(VpcSpec.self).objects.allSatisfy { !$0.name.hasPrefix("cni") }
            }
            // What is left, and why, when it is not.
            var left: [String] = []
            if !gone {
                func describe<S: ObjectSpec>(_ type: S.Type, _ vpc: (Object<S>) -> String) async throws {
                    for o in try await store.list(S.self).objects where vpc(o).hasPrefix("cni") {
                        left.append("\(S.kind.rawValue) \(o.name) \(o.status?.common.phase.rawValue ?? "-") \(o.status?.common.reason ?? "") "
                                    + "deleting=\(o.metadata.deletionTimestamp != nil) finalizers=\(o.metadata.finalizers ?? [])")
                    }
                }
                try await describe(VpcSpec.self) { $0.name }
                try await describe(SubnetSpec.self) { $0.spec.vpc }
                try await describe(EndpointSpec.self) { $0.spec.vpc }
            }
            #expect(gone, "left after deleting the VPCs: \(left)")
        }
    }
}
