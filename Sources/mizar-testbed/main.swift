// mizar-testbed: a simulated cluster on this machine, for the demo, the
// tests and the benchmarks. Apart from mizarctl, which talks only to etcd
// and transitds and links no netlink or libbpf.
import ArgumentParser
import Glibc
import MizarCore
import MizarSystem
import MizarTestbed
import MizarTransitClient

@main
struct TestbedCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mizar-testbed",
        abstract: "A simulated cluster on this machine: hosts in network namespaces on one underlay bridge, each with its own transitd.",
        subcommands: [Up.self, Down.self, Status.self, Endpoint.self, Exec.self])

    struct NameOption: ParsableArguments {
        @Option(help: "The testbed's name: the prefix of everything it creates (1-8 letters or digits).")
        var name = "mzt"
    }

    struct Up: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create the underlay and N hosts and start their transitds.")
        @OptionGroup var name: NameOption
        @Option(help: "Number of hosts (1-250).")
        var hosts = 3
        @Option(help: "transitd executable (default: next to mizar-testbed).")
        var transitd: String?
        @Option(help: "Directory with the built BPF objects.")
        var objects = "build/bpf"
        @Option(help: "Transit hook on each droplet: auto, tc or xdp.")
        var transitHook = "auto"
        @Option(help: "Agent hook on endpoint interfaces: tc or xdp.")
        var agentHook = "tc"
        @Flag(help: "Add a management port: a veth from the underlay into this namespace with 172.30.NET.254/24, where etcd and the operator reach the hosts.")
        var management = false
        @Option(help: "The underlay is 172.30.NET.0/24.")
        var underlayNet: UInt8 = 0
        @Option(help: "etcd (HOST:PORT) for the transitds to register their droplets in, as NAME-hN.")
        var etcd: String?
        @Option(help: "Root of Mizar's keys in etcd.")
        var etcdRoot = "/mizar/v1/"

        func run() throws {
            try requireRoot()
            var options = Testbed.Options(transitd: transitd ?? siblingExecutable("transitd"), objects: absolute(objects))
            options.hosts = hosts
            options.transitHook = transitHook
            options.agentHook = agentHook
            options.management = management
            options.underlayNet = underlayNet
            options.etcd = etcd
            options.etcdRoot = etcdRoot
            let bed = try Testbed.up(name: name.name, options: options)
            printHosts(bed)
        }
    }

    struct Down: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop the transitds and remove everything with the testbed's prefix (also after a crash).")
        @OptionGroup var name: NameOption

        func run() throws {
            try requireRoot()
            let removed = Testbed.down(name: name.name)
            print(removed.isEmpty ? "nothing of testbed \(name.name) was left" : removed.map { "removed \($0)" }.joined(separator: "\n"))
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the testbed's hosts and their transitds.")
        @OptionGroup var name: NameOption

        func run() throws {
            printHosts(try Testbed.existing(name: name.name))
        }
    }

    struct Endpoint: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add an endpoint to the testbed, making sure its VPC and subnet exist on every host (what the operator will do).")
        @OptionGroup var name: NameOption
        @Argument(help: "The endpoint's name (its namespace is NAME-e-ENDPOINT).")
        var endpoint: String
        @Option(help: "The VPC's VNI.") var vni: UInt32
        @Option(help: "The endpoint's IP.") var ip: String
        @Option(help: "Its subnet, e.g. 10.0.1.0/24.") var subnet: String
        @Option(help: "The host it lives on, e.g. h1.") var host: String
        @Option(help: "Its MAC (default derived from VNI and IP).") var mac: String?
        @Option(help: "The subnet's bouncers, comma-separated hosts.") var bouncers = "h1"
        @Option(help: "The VPC's dividers, comma-separated hosts.") var dividers = "h1"

        func run() async throws {
            try requireRoot()
            let bed = try Testbed.existing(name: name.name)
            func hosts(_ list: String) throws -> [Testbed.Host] {
                try list.split(separator: ",").map { h in
                    guard let host = bed.host(String(h)) else { throw ValidationError("no host \(h) in testbed \(bed.name)") }
                    return host
                }
            }
            let bouncerHosts = try hosts(bouncers), dividerHosts = try hosts(dividers)
            guard let home = bed.host(host) else { throw ValidationError("no host \(host) in testbed \(bed.name)") }
            let address = try IPv4Address(parsing: ip), vni = try VNI(self.vni), subnet = try CIDR(parsing: self.subnet)
            let mac = try self.mac.map { try MACAddress(parsing: $0) } ?? MACAddress.derived(vni: vni, ip: address)
            let everyHost = bed.hosts.map(\.peer)
            try await Provisioning.putVPC(vni: vni, dividers: dividerHosts.map(\.peer), on: everyHost)
            try await Provisioning.putSubnet(vni: vni, cidr: subnet, bouncers: bouncerHosts.map(\.peer), on: everyHost)
            let netns = bed.endpointNetns(endpoint)
            if access(netns, F_OK) != 0 { _ = try bed.addEndpointNetns(endpoint) }
            let info = try await Provisioning.addEndpoint(vni: vni, ip: address, mac: mac, subnet: subnet, netns: netns,
                                                          on: home.peer, bouncers: bouncerHosts.map(\.peer))
            print("endpoint \(endpoint): \(ip) \(mac) on \(bed.name)/\(home.name) (\(info.hostIfname)), netns \(netns)")
        }
    }

    struct Exec: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a command inside an endpoint (or a host) of the testbed.",
            usage: "mizar-testbed exec [--name NAME] ENDPOINT -- CMD [ARG...]")
        @OptionGroup var name: NameOption
        @Argument(help: "An endpoint's name, or a host such as h1.")
        var endpoint: String
        @Argument(parsing: .postTerminator, help: "The command and its arguments.")
        var command: [String] = []

        func validate() throws {
            if command.isEmpty { throw ValidationError("no command given: mizar-testbed exec ENDPOINT -- CMD") }
        }

        func run() throws {
            try requireRoot()
            let bed = Testbed(name: name.name, hosts: 1)
            try NetworkNamespace.enter(path: try bed.netns(of: endpoint))
            let cArgs = command.map { strdup($0) } + [nil]
            execvp(command[0], cArgs)
            throw ValidationError("cannot run \(command[0]): \(String(cString: strerror(errno)))")
        }
    }
}

func printHosts(_ bed: Testbed) {
    printTable(["host", "droplet", "transitd", "socket", "log"], bed.hosts.map { h in
        ["\(bed.name)/\(h.name)", "\(h.ip)/\(h.mac)", bed.pid(of: h).map { "pid \($0)" } ?? "not running", h.socket, h.log]
    })
}

func absolute(_ path: String) -> String {
    guard !path.hasPrefix("/"), let cwd = getcwd(nil, 0) else { return path }
    defer { free(cwd) }
    return String(cString: cwd) + "/" + path
}

/// Prints rows as aligned columns.
func printTable(_ header: [String], _ rows: [[String]]) {
    let widths = header.indices.map { i in ([header[i]] + rows.map { $0[i] }).map(\.count).max() ?? 0 }
    for row in [header] + rows {
        print(row.enumerated().map { i, cell in
            i == row.count - 1 ? cell : cell + String(repeating: " ", count: max(0, widths[i] - cell.count))
        }.joined(separator: "  "))
    }
}
