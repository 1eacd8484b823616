import Foundation
import Glibc
import MizarAPI
import MizarCNI
import MizarCore
import MizarStore
import MizarSystem
import MizarTestbed
import Testing

/// podman (Debian's 4.3, CNI backend) kept apart from the machine's own:
/// its storage, its containers.conf and its network directory all live in a
/// per-run directory, and everything it made is removed afterwards.
struct Podman {
    let dir: String
    let prefix: String

    init(prefix: String) throws {
        self.prefix = prefix
        dir = "/tmp/mizar-podman-\(prefix)"
        _ = runCapturing(["rm", "-rf", dir])
        for sub in ["rootfs/bin", "rootfs/proc", "rootfs/sys", "rootfs/dev", "rootfs/etc", "rootfs/tmp", "net.d", "root", "runroot"] {
            _ = runCapturing(["mkdir", "-p", "\(dir)/\(sub)"])
        }
        // The root file system: Debian's static busybox, no image registry.
        _ = runCapturing(["cp", "/bin/busybox", "\(dir)/rootfs/bin/busybox"])
        for applet in ["sh", "ping", "ip", "sleep", "cat", "mkdir", "httpd", "nc", "printf"] {
            _ = runCapturing(["ln", "-sf", "busybox", "\(dir)/rootfs/bin/\(applet)"])
        }
        let pluginDir = (siblingExecutable("mizar-cni") as NSString).deletingLastPathComponent
        try writeText("\(dir)/containers.conf", """
            [network]
            network_backend = "cni"
            cni_plugin_dirs = ["\(pluginDir)"]
            network_config_dir = "\(dir)/net.d"

            """)
    }

    /// A network: a conflist whose one plugin is mizar-cni, for one VPC and
    /// subnet, served by one host's transitd.
    func addNetwork(_ name: String, vpc: String, subnet: String, socket: String) throws {
        try writeText("\(dir)/net.d/\(name).conflist", """
            {"cniVersion": "1.0.0", "name": "\(name)",
             "plugins": [{"type": "mizar-cni", "vpc": "\(vpc)", "subnet": "\(subnet)", "transitd": "\(socket)"}]}
            """)
    }

    /// Runs podman with this run's configuration and storage.
    /// On a thread of its own, so the operator in this process keeps running.
    @discardableResult
    func run(_ args: [String]) async -> (status: Int32, output: String) {
        let argv = argv(args)
        return (try? await onOwnThread { runCapturing(argv) }) ?? (-1, "no thread to run podman on")
    }

    func argv(_ args: [String]) -> [String] {
        // Each call is bounded: a podman that hangs fails the test, it does not stall it.
        ["/usr/bin/env", "CONTAINERS_CONF=\(dir)/containers.conf", "/usr/bin/timeout", "60", "/usr/bin/podman",
         "--root", "\(dir)/root", "--runroot", "\(dir)/runroot", "--cgroup-manager", "cgroupfs",
         "--network-config-dir", "\(dir)/net.d"] + args
    }

    /// A container of busybox on `network` that serves its own name over
    /// HTTP on port 8080, so a client can tell which container answered.
    func start(_ name: String, network: String, extra: [String] = []) async -> (status: Int32, output: String) {
        await run(["run", "-d", "--name", name, "--cgroups=disabled", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096",
             "--network", network] + extra + ["--rootfs", "\(dir)/rootfs", "/bin/sh", "-c",
             "mkdir -p /tmp/\(name) && echo \(name) > /tmp/\(name)/index.html && exec httpd -f -p 8080 -h /tmp/\(name)"])
    }

    /// The container's eth0 address and MAC.
    func interface(_ name: String) async -> (ip: IPv4Address?, mac: String?) {
        let out = await run(["exec", name, "/bin/ip", "-4", "-o", "addr", "show", "dev", "eth0"]).output
        let inet = out.split(separator: " ").drop(while: { $0 != "inet" }).dropFirst().first
        let link = await run(["exec", name, "/bin/ip", "-o", "link", "show", "dev", "eth0"]).output
        let ether = link.split(separator: " ").drop(while: { $0 != "link/ether" }).dropFirst().first
        return (try? IPv4Address(parsing: String(inet?.split(separator: "/").first ?? "")), ether.map(String.init))
    }

    func ping(_ from: String, _ to: IPv4Address) async -> Bool {
        await run(["exec", from, "/bin/ping", "-c", "1", "-W", "1", "\(to)"]).status == 0
    }

    /// Who answers at `to`:8080, as seen from `from` ("" when nobody does).
    func whoAnswers(_ from: String, _ to: IPv4Address) async -> String {
        // busybox's static wget crashes with -T here; nc with a bound wait does not.
        let r = await run(["exec", from, "/bin/sh", "-c", #"printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 \#(to) 8080"#])
        let lines = r.output.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        guard r.status == 0, lines.first?.hasSuffix("200 OK") == true else { return "" }
        return lines.last ?? ""
    }

    func removeAll(_ names: [String]) async {
        for n in names { await run(["rm", "-f", "-t", "0", n]) }
    }

    /// Everything this run made, blocking (it runs from a defer, at the end).
    func destroy(_ names: [String]) {
        for n in names { _ = runCapturing(argv(["rm", "-f", "-t", "0", n])) }
        _ = runCapturing(["rm", "-rf", dir])
    }
}

extension OperatorTests {
    @Test("podman run --network <a Mizar network>: containers in two VPCs with identical CIDRs reach their own VPC across hosts and not the other")
    func podman() async throws {
        let plane = try await Plane.get()
        guard access("/usr/bin/podman", X_OK) == 0, access("/bin/busybox", X_OK) == 0 else {
            Issue.record("podman or busybox-static is not installed (scripts/install-deps.sh installs them)")
            return
        }
        // podman 4.3 wants the hugetlb cgroup controller: mount it (v1) if absent, and unmount it after.
        var mountedHugetlb = false
        if runCapturing(["mountpoint", "-q", "/sys/fs/cgroup/hugetlb"]).status != 0 {
            _ = runCapturing(["mkdir", "-p", "/sys/fs/cgroup/hugetlb"])
            mountedHugetlb = runCapturing(["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", "/sys/fs/cgroup/hugetlb"]).status == 0
        }
        defer { if mountedHugetlb { _ = runCapturing(["umount", "/sys/fs/cgroup/hugetlb"]) } }
        let prefix = "mzp\(getpid() % 100000)"
        let podman = try Podman(prefix: prefix)
        let names = ["a1", "a2", "b1", "b2"].map { "\(prefix)-\($0)" }
        defer { podman.destroy(names + ["\(prefix)-b3"]) }

        try await plane.withOperator { store, _ in
            #expect(try await plane.dropletsReady(store))
            try await plane.apply([
                objectYAML("Vpc", "poda", "cidr: 10.0.0.0/16"), objectYAML("Subnet", "poda1", "vpc: poda, cidr: 10.0.1.0/24"),
                objectYAML("Vpc", "podb", "cidr: 10.0.0.0/16"), objectYAML("Subnet", "podb1", "vpc: podb, cidr: 10.0.1.0/24"),
            ].joined(separator: "---\n"))
            #expect(try await eventually(15) {
                let mine = try await store.list(SubnetSpec.self).objects.filter { $0.name.hasPrefix("pod") }
                return mine.count == 2 && mine.allSatisfy { $0.status?.common.phase == .provisioned }
            })
            // One network per VPC and host: the configuration attaches a container to a host.
            let h1 = plane.bed.hosts[0], h2 = plane.bed.hosts[1]
            for (vpc, host) in [("a", h1), ("a", h2), ("b", h1), ("b", h2)] {
                try podman.addNetwork("\(prefix)-\(vpc)-\(host.name)", vpc: "pod\(vpc)", subnet: "pod\(vpc)1", socket: host.cniSocket)
            }
            // a1 and b1 share one address (and a1 asks for its MAC too), a2 and b2
            // another: identical CIDRs, identical addresses, two VPCs.
            let shared1 = try IPv4Address(parsing: "10.0.1.50"), shared2 = try IPv4Address(parsing: "10.0.1.60")
            let lone = try IPv4Address(parsing: "10.0.1.70")
            let asked = [(shared1, ["--mac-address", "0a:58:0a:00:01:32"]), (shared2, []), (shared1, []), (shared2, [])]
            for (i, (vpc, host)) in [("a", h1), ("a", h2), ("b", h1), ("b", h2)].enumerated() {
                let r = await podman.start(names[i], network: "\(prefix)-\(vpc)-\(host.name)", extra: ["--ip", "\(asked[i].0)"] + asked[i].1)
                #expect(r.status == 0, "podman run \(names[i]): \(r.output)")
            }
            // A fifth container, only in VPC b, on h2: an address VPC a does not have.
            let loner = "\(prefix)-b3"
            #expect(await podman.start(loner, network: "\(prefix)-b-\(h2.name)", extra: ["--ip", "\(lone)"]).status == 0)
            var interfaces: [(ip: IPv4Address?, mac: String?)] = []
            for n in names + [loner] { interfaces.append(await podman.interface(n)) }
            #expect(interfaces.map(\.ip) == [shared1, shared2, shared1, shared2, lone], "container addresses \(interfaces)")
            #expect(interfaces[0].mac == "0a:58:0a:00:01:32", "a1's MAC \(interfaces[0])")
            // Each container is an Endpoint of its network's VPC, on the droplet its network names.
            let endpoints = try await store.list(EndpointSpec.self).objects.filter { $0.metadata.labels?[CNIHandler.containerLabel] != nil }
            let placed = Set(endpoints.map { "\($0.spec.vpc) \($0.spec.droplet ?? "-") \($0.status?.ip ?? "-")" })
            let d1 = plane.droplet(h1.name), d2 = plane.droplet(h2.name)
            let expected: Set<String> = ["poda \(d1) \(shared1)", "poda \(d2) \(shared2)", "podb \(d1) \(shared1)",
                                         "podb \(d2) \(shared2)", "podb \(d2) \(lone)"]
            #expect(endpoints.count == 5 && placed == expected, "endpoints \(placed.sorted()), expected \(expected.sorted())")
            // Within a VPC, across hosts, both ways, and the answer comes from the
            // container of the asker's VPC although the other VPC has the same address.
            #expect(await podman.whoAnswers(names[1], shared1) == names[0], "a2 -> 10.0.1.50 should reach a1")
            #expect(await podman.whoAnswers(names[0], shared2) == names[1], "a1 -> 10.0.1.60 should reach a2")
            #expect(await podman.whoAnswers(names[3], shared1) == names[2], "b2 -> 10.0.1.50 should reach b1")
            #expect(await podman.whoAnswers(names[2], shared2) == names[3], "b1 -> 10.0.1.60 should reach b2")
            #expect(await podman.whoAnswers(names[2], lone) == loner, "b1 -> 10.0.1.70 should reach b3")
            let pingsWithin = [await podman.ping(names[0], shared2), await podman.ping(names[2], shared2)]
            #expect(pingsWithin == [true, true], "ping within each VPC")
            // VPC a has no 10.0.1.70: nothing answers there from a1 (other host) or a2 (b3's own host).
            #expect(await podman.whoAnswers(names[0], lone) == "", "a1 reached VPC b's b3")
            #expect(await podman.whoAnswers(names[1], lone) == "", "a2 reached VPC b's b3")
            let pingsAcross = [await podman.ping(names[0], lone), await podman.ping(names[1], lone)]
            #expect(pingsAcross == [false, false], "a ping crossed from VPC a to VPC b")

            // Removing the containers releases their endpoints and addresses.
            await podman.removeAll(names + [loner])
            #expect(try await eventually(10) {
                try await store.list(EndpointSpec.self).objects.allSatisfy { $0.metadata.labels?[CNIHandler.containerLabel] == nil }
            }, "endpoints of removed containers are left")
            for vpc in ["poda", "podb"] {
                _ = runCapturing([siblingExecutable("mizarctl"), "delete", "vpc", vpc, "--etcd", plane.etcd.endpoint] + plane.tlsFlags + ["--root", plane.root])
            }
            #expect(try await eventually(20) { try await store.list(VpcSpec.self).objects.allSatisfy { !$0.name.hasPrefix("pod") } })
        }
    }
}
