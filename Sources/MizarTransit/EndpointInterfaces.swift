import Glibc
import MizarCore
import MizarDataplane
import MizarRPC
import MizarSystem
import SwiftProtobuf

/// What an endpoint interface is asked to be, validated.
public struct EndpointInterfaceSpec: Equatable, Sendable {
    public var vni: VNI
    public var ip: IPv4Address
    public var mac: MACAddress
    public var subnet: CIDR
    public var gateway: IPv4Address
    public var netns: String
    public var ifname: String
    public var mtu: UInt32
}

extension TransitHost {
    /// Endpoint MTU: the droplet's less what the agent prepends.
    public nonisolated var defaultEndpointMTU: UInt32 { dropletMTU - UInt32(Dataplane.encapOverhead) }

    /// Creates the veth pair, configures the endpoint's end inside its
    /// namespace, attaches the agent and writes the delivery entries. The
    /// same request again changes nothing; on any failure what was made is
    /// removed again.
    public func createEndpointInterface(_ spec: EndpointInterfaceSpec) throws -> (Mizar_Transit_V1_EndpointInterfaceInfo, Bool) {
        let started = monotonicSeconds()
        let key = EndpointKey(vni: spec.vni, ip: spec.ip)
        try requireSubnet(spec.vni, spec.subnet, holding: spec.ip)
        guard spec.mtu >= 576 && spec.mtu <= defaultEndpointMTU else {
            throw TransitError(.invalidArgument, field: "mtu",
                               "\(spec.mtu) is out of range; expected 576...\(defaultEndpointMTU) (the droplet's MTU \(dropletMTU) less \(Dataplane.encapOverhead) bytes of encapsulation)")
        }
        if let existing = interfaces[key] {
            if existing.spec == Self.message(spec) { return (existing, false) }
            throw TransitError(.alreadyExists, field: "ip",
                               "\(spec.ip) in VNI \(spec.vni) is already an endpoint on this host (\(existing.spec.mac) in \(existing.spec.netns))")
        }
        if try dataplane.hasLocal(spec.vni, spec.ip) {
            throw TransitError(.alreadyExists, field: "ip", "\(spec.ip) in VNI \(spec.vni) is already delivered to an interface on this host")
        }
        // Parked (no namespace): the endpoint's end stays here, unconfigured.
        let parked = spec.netns.isEmpty
        let namespace: NetworkNamespace?
        do { namespace = parked ? nil : try NetworkNamespace(path: spec.netns) } catch {
            throw TransitError(.notFound, field: "netns", "cannot open network namespace \(spec.netns): \(String(cString: strerror(error.errno)))",
                               permanent: true)
        }
        let hostName = HostInterface.name(vni: key.vni, ip: key.ip)
        let peerName = parked ? HostInterface.parkedName(vni: key.vni, ip: key.ip) : spec.ifname
        let inside = parked ? netlink : try Netlink(in: namespace)
        if !parked, try inside.index(of: peerName) != nil {
            throw TransitError(.alreadyExists, field: "ifname", "\(spec.netns) already has an interface \(peerName)")
        }
        if let stale = try netlink.index(of: hostName) {
            // Left by a create that never finished (the names are ours).
            try netlink.deleteLink(stale)
        }
        if parked, let stale = try netlink.index(of: peerName) { try netlink.deleteLink(stale) }
        try netlink.addVeth(hostName, peer: peerName, peerNamespace: namespace, mtu: spec.mtu, peerMAC: spec.mac)
        do {
            guard let hostIndex = try netlink.index(of: hostName), let hostLink = try netlink.link(hostIndex),
                  let peerIndex = try inside.index(of: peerName) else {
                throw TransitError(.internalError, field: "ifname", "the veth pair \(hostName)/\(peerName) vanished after creation")
            }
            try netlink.disableIPv6(hostIndex)
            try inside.disableIPv6(peerIndex)
            try netlink.setLink(hostIndex, up: true)
            try inside.setLink(peerIndex, up: true)
            if !parked {
                if let lo = try inside.index(of: "lo") { try inside.setLink(lo, up: true) }
                try inside.addAddress(peerIndex, spec.ip, prefixLength: spec.subnet.prefixLength)
                try inside.addRoute(to: try CIDR(parsing: "0.0.0.0/0"), via: spec.gateway, ifindex: peerIndex)
            }
            // Frames XDP-redirected into a veth are dropped unless its peer has GRO.
            try Ethtool.setGRO(true, ifname: peerName, in: namespace)
            if config.agentHook == .xdp {
                // XDP sees frames, not the skb's "checksum to be filled in"
                // state: the endpoint must send finished checksums.
                try Ethtool.setTxChecksum(false, ifname: peerName, in: namespace)
            }
            try Attachment.attach(dataplane.programs[config.agentHook]!.agent, ifindex: hostIndex)
            try enableForwarding(hostName)
            // The host reaches the endpoint: a route to its address from the
            // droplet's, unless another local endpoint (another VPC's, same
            // address) holds it already; first made, first served.
            let hostAccess = try netlink.addHostRoute(spec.ip, source: droplet.ip, ifindex: hostIndex)
            if hostAccess { try netlink.setNeighbour(spec.ip, mac: spec.mac, ifindex: hostIndex) }
            try dataplane.upsertLocal(LocalEndpoint(vni: spec.vni, ip: spec.ip, mac: spec.mac, ifindex: hostIndex,
                                                    subnet: spec.subnet, gateway: spec.gateway, gatewayMAC: hostLink.mac,
                                                    hostAccess: hostAccess))
            try dataplane.invalidateCachedHost(spec.vni, spec.ip)
            var info = Mizar_Transit_V1_EndpointInterfaceInfo()
            info.spec = Self.message(spec)
            info.hostIfname = hostName
            info.hostIfindex = hostIndex
            info.gatewayMac = "\(hostLink.mac)"
            info.agentHook = config.agentHook.rawValue
            info.hostAccess = hostAccess
            interfaces[key] = info
            try saveRecord(key)
            logger.info("endpoint interface created", metadata: [
                "vpc.vni": "\(spec.vni)", "endpoint.ip": "\(spec.ip)", "endpoint.mac": "\(spec.mac)",
                "endpoint.netns": "\(spec.netns)", "endpoint.host_ifname": "\(hostName)",
                "duration_us": "\(Int((monotonicSeconds() - started) * 1_000_000))",
            ])
            return (info, true)
        } catch {
            interfaces[key] = nil
            _ = try? dataplane.deleteLocal(spec.vni, spec.ip)
            if let index = try? netlink.index(of: hostName) { _ = try? netlink.deleteLink(index) }
            throw error
        }
    }

    /// Moves a parked endpoint interface into a workload's namespace under
    /// `ifname` and configures it there: address, default route via the
    /// gateway (its MAC, MTU and agent stay as they were made). The same
    /// request again changes nothing.
    public func attachEndpointInterface(_ vni: VNI, _ ip: IPv4Address, netns: String, ifname: String) throws -> Mizar_Transit_V1_EndpointInterfaceInfo {
        let started = monotonicSeconds()
        let key = EndpointKey(vni: vni, ip: ip)
        guard var info = interfaces[key] else {
            throw TransitError(.notFound, field: "ip", "\(ip) in VNI \(vni) has no interface on this host")
        }
        if info.spec.netns == netns && info.spec.ifname == ifname { return info }
        guard info.spec.netns.isEmpty else {
            throw TransitError(.failedPrecondition, field: "netns",
                               "\(ip) in VNI \(vni) is already in \(info.spec.netns) as \(info.spec.ifname), not parked")
        }
        do { try validateInterfaceName(ifname, field: "ifname") } catch {
            throw TransitError(.invalidArgument, field: "ifname", error.reason)
        }
        let namespace: NetworkNamespace
        do { namespace = try NetworkNamespace(path: netns) } catch {
            throw TransitError(.notFound, field: "netns", "cannot open network namespace \(netns): \(String(cString: strerror(error.errno)))")
        }
        let inside = try Netlink(in: namespace)
        if try inside.index(of: ifname) != nil {
            throw TransitError(.alreadyExists, field: "ifname", "\(netns) already has an interface \(ifname)")
        }
        let parkedName = HostInterface.parkedName(vni: key.vni, ip: key.ip)
        guard let parkedIndex = try netlink.index(of: parkedName) else {
            throw TransitError(.notFound, field: "ip", "the parked interface \(parkedName) of \(ip) is gone")
        }
        let subnet = try CIDR(parsing: info.spec.subnet)
        let gateway = try IPv4Address(parsing: info.spec.gateway)
        let moveStarted = monotonicSeconds()
        try netlink.move(parkedIndex, to: namespace, name: ifname)
        let moved = monotonicSeconds()
        do {
            guard let index = try inside.index(of: ifname) else {
                throw TransitError(.internalError, field: "ifname", "\(ifname) vanished after its move into \(netns)")
            }
            if let lo = try inside.index(of: "lo") { try inside.setLink(lo, up: true) }
            try inside.disableIPv6(index)
            try inside.setLink(index, up: true)
            try inside.addAddress(index, ip, prefixLength: subnet.prefixLength)
            try inside.addRoute(to: try CIDR(parsing: "0.0.0.0/0"), via: gateway, ifindex: index)
        } catch {
            // Back to parked, so a retry starts from where it was.
            if let index = try? inside.index(of: ifname), let here = try? NetworkNamespace(path: "/proc/thread-self/ns/net") {
                try? inside.move(index, to: here, name: parkedName)
            }
            throw error
        }
        info.spec.netns = netns
        info.spec.ifname = ifname
        interfaces[key] = info
        try saveRecord(key)
        logger.info("endpoint interface attached", metadata: [
            "vpc.vni": "\(vni)", "endpoint.ip": "\(ip)", "endpoint.netns": "\(netns)", "endpoint.ifname": "\(ifname)",
            "duration_us": "\(Int((monotonicSeconds() - started) * 1_000_000))",
            "move_us": "\(Int((moved - moveStarted) * 1_000_000))",
        ])
        return info
    }

    /// What differs between an endpoint's interface inside its namespace
    /// and what it should be (empty: nothing).
    public func checkEndpointInterface(_ vni: VNI, _ ip: IPv4Address, netns: String, ifname: String) throws -> [String] {
        let key = EndpointKey(vni: vni, ip: ip)
        guard let info = interfaces[key] else { return ["\(ip) has no interface on this host"] }
        guard info.spec.netns == netns, info.spec.ifname == ifname else {
            return ["\(ip) is attached to \(info.spec.netns.isEmpty ? "nothing (parked)" : info.spec.netns) as \(info.spec.ifname), not \(netns) as \(ifname)"]
        }
        let namespace: NetworkNamespace
        do { namespace = try NetworkNamespace(path: netns) } catch { return ["cannot open \(netns): \(String(cString: strerror(error.errno)))"] }
        let inside = try Netlink(in: namespace)
        guard let index = try inside.index(of: ifname), let link = try inside.link(index) else { return ["\(ifname) is missing in \(netns)"] }
        var drift: [String] = []
        let subnet = try CIDR(parsing: info.spec.subnet), gateway = try IPv4Address(parsing: info.spec.gateway)
        if "\(link.mac)" != info.spec.mac { drift.append("\(ifname) has MAC \(link.mac), want \(info.spec.mac)") }
        if !link.isUp { drift.append("\(ifname) is down") }
        if link.mtu != info.spec.mtu { drift.append("\(ifname) has MTU \(link.mtu), want \(info.spec.mtu)") }
        if try !inside.hasAddress(index, ip, prefixLength: subnet.prefixLength) {
            drift.append("\(ifname) lacks its address \(ip)/\(subnet.prefixLength)")
        }
        if let route = try inside.defaultRoute() {
            if route.gateway != gateway || route.ifindex != index {
                drift.append("the default route goes via \(route.gateway) (ifindex \(route.ifindex)), want \(gateway) on \(ifname)")
            }
        } else {
            drift.append("there is no default route, want one via \(gateway)")
        }
        return drift
    }

    /// Removes the interface, its delivery entries and any cached path to
    /// the address, so a new endpoint with it elsewhere is reached there.
    public func deleteEndpointInterface(_ vni: VNI, _ ip: IPv4Address) throws -> Bool {
        let key = EndpointKey(vni: vni, ip: ip)
        let existed = try dataplane.deleteLocal(vni, ip)
        try dataplane.invalidateCachedHost(vni, ip)
        // Its translations go now: a reply still on its way is dropped,
        // never delivered to whoever has the address next.
        try dataplane.purgeSNAT(vni, ip)
        guard let info = interfaces[key] else { return existed }
        if let index = try netlink.index(of: info.hostIfname), index == info.hostIfindex {
            try netlink.deleteLink(index)
        }
        interfaces[key] = nil
        unlinkRecord(key)
        logger.info("endpoint interface deleted", metadata: ["vpc.vni": "\(vni)", "endpoint.ip": "\(ip)"])
        // Its route went with its link: another local endpoint with the
        // address (another VPC's) gets it, the lowest VNI first.
        if info.hostAccess { try handOverHostAccess(ip) }
        return true
    }

    public func listEndpointInterfaces(vni: VNI?) -> [Mizar_Transit_V1_EndpointInterfaceInfo] {
        interfaces.filter { vni == nil || $0.key.vni == vni }
            .sorted { ($0.key.vni, $0.key.ip) < ($1.key.vni, $1.key.ip) }
            .map(\.value)
    }

    // MARK: - Records and restart

    /// One file per endpoint interface, so that recording one costs the
    /// same with 10 interfaces on the host or 10,000.
    var recordsDirectory: String { "\(config.stateDirectory)/interfaces" }
    /// Where an earlier transitd kept all records in one file.
    var legacyRecordsPath: String { "\(config.stateDirectory)/endpoint-interfaces.json" }

    func recordPath(_ key: EndpointKey) -> String { "\(recordsDirectory)/\(key.vni.value)-\(key.ip).json" }

    func loadRecords() throws -> [EndpointKey: Mizar_Transit_V1_EndpointInterfaceInfo] {
        try makeDirectories(recordsDirectory)
        var result: [EndpointKey: Mizar_Transit_V1_EndpointInterfaceInfo] = [:]
        func add(_ info: Mizar_Transit_V1_EndpointInterfaceInfo) throws {
            result[EndpointKey(vni: try VNI(info.spec.vni), ip: try IPv4Address(parsing: info.spec.ip))] = info
        }
        for file in listDirectory(recordsDirectory) where file.hasSuffix(".json") {
            guard let text = try readFile("\(recordsDirectory)/\(file)") else { continue }
            try add(try Mizar_Transit_V1_EndpointInterfaceInfo(jsonString: text))
        }
        if let text = try readFile(legacyRecordsPath) {
            for info in try Mizar_Transit_V1_EndpointInterfaceList(jsonString: text).interfaces { try add(info) }
        }
        return result
    }

    /// Written to a temporary file and renamed, so a crash leaves either
    /// the old record or the new one.
    func saveRecord(_ key: EndpointKey) throws {
        guard let info = interfaces[key] else { return unlinkRecord(key) }
        try writeFile(recordPath(key), try info.jsonString())
    }

    func unlinkRecord(_ key: EndpointKey) {
        _ = unlink(recordPath(key))
    }

    /// After a restart: the agent (a fresh load) goes back onto every
    /// endpoint interface still there; records of vanished ones are dropped
    /// with their delivery entries.
    func readopt() throws {
        for (key, info) in interfaces {
            guard let index = try netlink.index(of: info.hostIfname), index == info.hostIfindex else {
                logger.warning("endpoint interface gone", metadata: ["endpoint.ip": "\(key.ip)", "vpc.vni": "\(key.vni)",
                                                                     "endpoint.host_ifname": "\(info.hostIfname)"])
                _ = try dataplane.deleteLocal(key.vni, key.ip)
                interfaces[key] = nil
                unlinkRecord(key)
                continue
            }
            try Attachment.attach(dataplane.programs[config.agentHook]!.agent, ifindex: index)
        }
        // Records of an earlier transitd's single file move to their own.
        if access(legacyRecordsPath, F_OK) == 0 {
            for key in interfaces.keys { try saveRecord(key) }
            _ = unlink(legacyRecordsPath)
        }
        if !interfaces.isEmpty {
            logger.info("endpoint interfaces adopted", metadata: ["count": "\(interfaces.count)"])
        }
    }

    static func message(_ s: EndpointInterfaceSpec) -> Mizar_Transit_V1_EndpointInterface {
        var m = Mizar_Transit_V1_EndpointInterface()
        m.vni = s.vni.value
        m.ip = "\(s.ip)"
        m.mac = "\(s.mac)"
        m.subnet = "\(s.subnet)"
        m.gateway = "\(s.gateway)"
        m.netns = s.netns
        m.ifname = s.ifname
        m.mtu = s.mtu
        return m
    }
}
