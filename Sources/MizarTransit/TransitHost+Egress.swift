import Glibc
import MizarCore
import MizarDataplane
import MizarSystem

// Egress through SNAT on this droplet (docs/egress.md).

extension TransitHost {
    /// The translated flows of this host's endpoints.
    public func snat(vni: VNI?) throws -> SNATTable {
        SNATTable(address: droplet.ip, ports: config.dataplane.snatPorts,
                  entries: try dataplane.snatEntries().filter { vni == nil || $0.vni == vni })
    }

    public func sweepSNAT() throws -> Int {
        try dataplane.sweepSNAT()
    }

    /// Makes an endpoint's host-side veth forward: the kernel's FIB lookup
    /// for a program (bpf_fib_lookup, which the agent routes egress with)
    /// answers only for an arrival interface that does. Everything an
    /// endpoint sends goes through its agent first, which hands the host's
    /// stack only replies addressed to the host itself: nothing is routed by
    /// the host from there. The droplet's interface never forwards.
    nonisolated func enableForwarding(_ ifname: String) throws {
        guard config.dataplane.snatPorts != nil else { return }
        try writeInPlace("/proc/sys/net/ipv4/conf/\(ifname)/forwarding", "1\n")
    }

    /// Gives the host's route to `ip` to a local endpoint that has that
    /// address (in another VPC), after the one that held it went.
    func handOverHostAccess(_ ip: IPv4Address) throws {
        guard let (key, info) = interfaces.filter({ $0.key.ip == ip && !$0.value.hostAccess && $0.value.hostIfindex != 0 })
                .min(by: { $0.key.vni.value < $1.key.vni.value }) else { return }
        guard try netlink.addHostRoute(ip, source: droplet.ip, ifindex: info.hostIfindex) else { return }
        try netlink.setNeighbour(ip, mac: try MACAddress(parsing: info.spec.mac), ifindex: info.hostIfindex)
        try dataplane.setHostAccess(key.vni, ip, true)
        interfaces[key]?.hostAccess = true
        try saveRecord(key)
        logger.info("host access handed over", metadata: ["vpc.vni": "\(key.vni)", "endpoint.ip": "\(ip)"])
    }

    /// Keeps the host's own sockets off the SNAT range: the range joins
    /// net.ipv4.ip_local_reserved_ports of this network namespace (what is
    /// there already stays). A port bound explicitly is still possible; the
    /// range is Mizar's, as docs/operations.md says.
    nonisolated func reserveSNATPorts() throws {
        guard let range = config.dataplane.snatPorts else { return }
        let path = "/proc/sys/net/ipv4/ip_local_reserved_ports"
        let current = String((try readFile(path) ?? "").filter { !$0.isWhitespace })
        let entry = "\(range.lowerBound)-\(range.upperBound)"
        if Self.reservedPorts(current, cover: range) { return }
        let next = current.isEmpty ? entry : "\(current),\(entry)"
        try writeInPlace(path, next + "\n")
        logger.info("snat ports reserved", metadata: ["snat.ports": "\(entry)"])
    }

    /// Whether the kernel's list ("1000,2000-2010") covers every port of range.
    static func reservedPorts(_ list: String, cover range: ClosedRange<UInt16>) -> Bool {
        var covered = [Bool](repeating: false, count: 65536)
        for item in list.split(separator: ",") {
            let bounds = item.split(separator: "-").compactMap { Int($0.filter { !$0.isWhitespace }) }
            guard bounds.count == 1 || bounds.count == 2, let lo = bounds.first, let hi = bounds.last,
                  lo <= hi, lo >= 0, hi < 65536 else { continue }
            for p in lo...hi { covered[p] = true }
        }
        return (Int(range.lowerBound)...Int(range.upperBound)).allSatisfy { covered[$0] }
    }
}
