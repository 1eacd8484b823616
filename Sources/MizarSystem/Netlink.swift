import CNetlink
import Glibc
import MizarCore

/// An open network namespace file (/run/netns/NAME, /proc/PID/ns/net).
public final class NetworkNamespace: Sendable {
    public let path: String
    public let fd: Int32

    public init(path: String) throws(SystemError) {
        self.path = path
        fd = try SystemError.check(mz_netns_open(path), "open netns", path)
    }

    deinit { close(fd) }

    /// Creates a named namespace, as `ip netns add` does.
    public static func create(path: String) throws(SystemError) {
        try SystemError.check(mz_netns_create(path), "create netns", path)
    }

    /// Removes a named namespace; false if there was none.
    @discardableResult
    public static func delete(path: String) throws(SystemError) -> Bool {
        let r = mz_netns_delete(path)
        if r == -ENOENT { return false }
        try SystemError.check(r, "delete netns", path)
        return true
    }

    /// A socket that lives in this namespace, whichever thread uses it.
    public func socket(domain: Int32, type: Int32, protocol: Int32 = 0) throws(SystemError) -> Int32 {
        try SystemError.check(mz_socket_in(fd, domain, type, `protocol`), "socket", path)
    }

    /// Moves the calling thread into the namespace. Call it first thing in
    /// main, before any other thread exists: threads inherit it from there.
    public static func enter(path: String) throws(SystemError) {
        let ns = try NetworkNamespace(path: path)
        try SystemError.check(mz_setns_net(ns.fd), "setns", path)
    }
}

/// A link as rtnetlink reports it.
public struct LinkInfo: Sendable, Equatable {
    public var ifindex: UInt32
    public var name: String
    public var mac: MACAddress
    public var mtu: UInt32
    public var isUp: Bool
    public var kind: String
    public var master: UInt32
}

/// An rtnetlink socket bound to one network namespace.
public final class Netlink {
    let fd: Int32
    let where_: String

    /// A socket in `namespace`, or in the caller's own.
    public init(in namespace: NetworkNamespace? = nil) throws(SystemError) {
        where_ = namespace?.path ?? "current netns"
        fd = try SystemError.check(mz_nl_open(namespace?.fd ?? -1), "netlink socket", where_)
    }

    deinit { mz_nl_close(fd) }

    /// The ifindex of `name`, or nil if there is no such link.
    public func index(of name: String) throws(SystemError) -> UInt32? {
        let r = mz_nl_link_index(fd, name)
        if r == -ENODEV { return nil }
        return UInt32(try SystemError.check(r, "RTM_GETLINK", name))
    }

    public func link(_ ifindex: UInt32) throws(SystemError) -> LinkInfo? {
        var info = mz_link_info()
        let r = mz_nl_link_get(fd, Int32(ifindex), &info)
        if r == -ENODEV { return nil }
        try SystemError.check(r, "RTM_GETLINK", "ifindex \(ifindex)")
        let mac = withUnsafeBytes(of: info.mac) { MACAddress(bytes: $0) }
        return LinkInfo(ifindex: UInt32(info.ifindex), name: cString(info.name), mac: mac, mtu: info.mtu,
                        isUp: info.flags & UInt32(IFF_UP) != 0, kind: cString(info.kind), master: UInt32(info.master))
    }

    /// A veth pair; the peer is created directly inside `peerNamespace`.
    public func addVeth(_ name: String, peer: String, peerNamespace: NetworkNamespace?, mtu: UInt32 = 0,
                        peerMAC: MACAddress? = nil) throws(SystemError) {
        let r: Int32
        if let peerMAC {
            r = peerMAC.bytes.withUnsafeBufferPointer {
                mz_nl_veth_add(fd, name, peer, peerNamespace?.fd ?? -1, mtu, $0.baseAddress)
            }
        } else {
            r = mz_nl_veth_add(fd, name, peer, peerNamespace?.fd ?? -1, mtu, nil)
        }
        try SystemError.check(r, "RTM_NEWLINK veth", "\(name)/\(peer)")
    }

    public func addBridge(_ name: String) throws(SystemError) {
        try SystemError.check(mz_nl_bridge_add(fd, name), "RTM_NEWLINK bridge", name)
    }

    public func addVXLAN(_ name: String, vni: UInt32, local: IPv4Address, device: UInt32, port: UInt16) throws(SystemError) {
        try SystemError.check(mz_nl_vxlan_add(fd, name, vni, local.networkOrder, Int32(device), port), "RTM_NEWLINK vxlan", name)
    }

    public func appendFlood(vxlan: UInt32, to remote: IPv4Address) throws(SystemError) {
        try SystemError.check(mz_nl_fdb_append(fd, Int32(vxlan), remote.networkOrder), "RTM_NEWNEIGH", "\(remote)")
    }

    public func setLink(_ ifindex: UInt32, up: Bool? = nil, mtu: UInt32 = 0, mac: MACAddress? = nil) throws(SystemError) {
        let state: Int32 = up.map { $0 ? 1 : 0 } ?? -1
        let r: Int32
        if let mac {
            r = mac.bytes.withUnsafeBufferPointer { mz_nl_link_set(fd, Int32(ifindex), state, mtu, $0.baseAddress) }
        } else {
            r = mz_nl_link_set(fd, Int32(ifindex), state, mtu, nil)
        }
        try SystemError.check(r, "RTM_NEWLINK set", "ifindex \(ifindex)")
    }

    public func setMaster(_ ifindex: UInt32, master: UInt32) throws(SystemError) {
        try SystemError.check(mz_nl_link_set_master(fd, Int32(ifindex), Int32(master)), "RTM_NEWLINK master", "ifindex \(ifindex)")
    }

    /// No IPv6 link-local address, so the kernel sends no solicitations on
    /// the link (nothing an endpoint did not ask for).
    public func disableIPv6(_ ifindex: UInt32) throws(SystemError) {
        try SystemError.check(mz_nl_link_set_ipv6_off(fd, Int32(ifindex)), "RTM_NEWLINK addr_gen_mode", "ifindex \(ifindex)")
    }

    @discardableResult
    public func deleteLink(_ ifindex: UInt32) throws(SystemError) -> Bool {
        let r = mz_nl_link_del(fd, Int32(ifindex))
        if r == -ENODEV { return false }
        try SystemError.check(r, "RTM_DELLINK", "ifindex \(ifindex)")
        return true
    }

    /// Adds an address; an identical one already there is fine.
    public func addAddress(_ ifindex: UInt32, _ ip: IPv4Address, prefixLength: UInt8) throws(SystemError) {
        let r = mz_nl_addr_add(fd, Int32(ifindex), ip.networkOrder, Int32(prefixLength))
        if r == -EEXIST { return }
        try SystemError.check(r, "RTM_NEWADDR", "\(ip)/\(prefixLength)")
    }

    /// Moves a link into `namespace` under `name`, in one request.
    public func move(_ ifindex: UInt32, to namespace: NetworkNamespace, name: String) throws(SystemError) {
        try SystemError.check(mz_nl_link_move(fd, Int32(ifindex), namespace.fd, name), "RTM_NEWLINK netns", name)
    }

    /// Whether the link holds ip/prefixLength.
    public func hasAddress(_ ifindex: UInt32, _ ip: IPv4Address, prefixLength: UInt8) throws(SystemError) -> Bool {
        try SystemError.check(mz_nl_addr_has(fd, Int32(ifindex), ip.networkOrder, Int32(prefixLength)), "RTM_GETADDR", "\(ip)") == 1
    }

    /// The main table's IPv4 default route: its gateway and output link.
    public func defaultRoute() throws(SystemError) -> (gateway: IPv4Address, ifindex: UInt32)? {
        var gw: UInt32 = 0
        var oif: Int32 = 0
        let found = try SystemError.check(mz_nl_default_route(fd, &gw, &oif), "RTM_GETROUTE", "default")
        return found == 1 ? (IPv4Address(networkOrder: gw), UInt32(oif)) : nil
    }

    /// Adds a route (`gateway` nil: on-link); an identical one is fine.
    public func addRoute(to destination: CIDR, via gateway: IPv4Address?, ifindex: UInt32) throws(SystemError) {
        let r = mz_nl_route_add(fd, destination.address.networkOrder, Int32(destination.prefixLength),
                                gateway?.networkOrder ?? 0, Int32(ifindex))
        if r == -EEXIST { return }
        try SystemError.check(r, "RTM_NEWROUTE", "\(destination)")
    }

    /// `ip route add IP/32 dev IFINDEX src SOURCE`. False when a route to
    /// IP/32 is there already (another link's, or this one's).
    public func addHostRoute(_ ip: IPv4Address, source: IPv4Address, ifindex: UInt32) throws(SystemError) -> Bool {
        let r = mz_nl_host_route_add(fd, ip.networkOrder, source.networkOrder, Int32(ifindex))
        if r == -EEXIST { return false }
        try SystemError.check(r, "RTM_NEWROUTE", "\(ip)/32")
        return true
    }

    /// Removes the route to IP/32 out of ifindex; false when there was none.
    @discardableResult
    public func deleteHostRoute(_ ip: IPv4Address, ifindex: UInt32) throws(SystemError) -> Bool {
        let r = mz_nl_host_route_del(fd, ip.networkOrder, Int32(ifindex))
        if r == -ESRCH || r == -ENODEV { return false }
        try SystemError.check(r, "RTM_DELROUTE", "\(ip)/32")
        return true
    }

    /// A permanent neighbour entry: `ip` is at `mac` on ifindex.
    public func setNeighbour(_ ip: IPv4Address, mac: MACAddress, ifindex: UInt32) throws(SystemError) {
        let bytes = mac.bytes
        try SystemError.check(mz_nl_neigh_set(fd, Int32(ifindex), ip.networkOrder, bytes), "RTM_NEWNEIGH", "\(ip)")
    }
}

/// ethtool settings on a link in a namespace.
public enum Ethtool {
    public static func setGRO(_ on: Bool, ifname: String, in namespace: NetworkNamespace? = nil) throws(SystemError) {
        try SystemError.check(mz_ethtool_set_gro(namespace?.fd ?? -1, ifname, on ? 1 : 0), "ETHTOOL_SGRO", ifname)
    }

    /// Transmit checksum offload; off also turns TSO off.
    public static func setTxChecksum(_ on: Bool, ifname: String, in namespace: NetworkNamespace? = nil) throws(SystemError) {
        try SystemError.check(mz_ethtool_set_tx_csum(namespace?.fd ?? -1, ifname, on ? 1 : 0), "ETHTOOL_STXCSUM", ifname)
    }

    /// The link's driver, e.g. "veth".
    public static func driver(ifname: String, in namespace: NetworkNamespace? = nil) throws(SystemError) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        try SystemError.check(mz_ethtool_driver(namespace?.fd ?? -1, ifname, &buffer), "ETHTOOL_GDRVINFO", ifname)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

func cString<T>(_ tuple: T) -> String {
    withUnsafeBytes(of: tuple) { raw in
        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
    }
}
