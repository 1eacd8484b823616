internal import CMizarABI
import MizarCore

// Published services (bpf/lib/publish.h): scaled endpoints reached from
// outside on a host port of this droplet.

/// A host port of this droplet and the service it stands for.
public struct PublishedPort: Hashable, Sendable {
    public var proto: ServicePort.Proto
    public var port: UInt16
    public var vni: VNI
    public var vip: IPv4Address
    /// The service's port the host port stands for.
    public var vipPort: UInt16

    public init(proto: ServicePort.Proto, port: UInt16, vni: VNI, vip: IPv4Address, vipPort: UInt16) {
        self.proto = proto
        self.port = port
        self.vni = vni
        self.vip = vip
        self.vipPort = vipPort
    }
}

/// A client's flow to a published port, as `mizarctl dump published` shows it.
public struct PublishedFlow: Hashable, Sendable {
    public var client: IPv4Address
    public var clientPort: UInt16
    public var port: UInt16
    public var proto: UInt8
    public var vni: VNI
    public var backend: IPv4Address
    public var backendPort: UInt16
    public var backendHost: IPv4Address
    /// The flow's port on this droplet's address.
    public var natPort: UInt16
    public var seenNs: UInt64
}

extension Dataplane {
    static func publishedKey(_ proto: ServicePort.Proto, _ port: UInt16) -> mz_pub_key {
        mz_pub_key(proto: proto.rawValue, reserved: 0, port: port.bigEndian)
    }

    public func putPublished(_ p: PublishedPort) throws(SystemError) {
        try published.update(Self.publishedKey(p.proto, p.port),
                             mz_pub(vni: p.vni.value, vip: p.vip.networkOrder, vip_port: p.vipPort.bigEndian, reserved: 0))
    }

    /// Unpublishes a host port and forgets its flows.
    @discardableResult
    public func deletePublished(_ proto: ServicePort.Proto, _ port: UInt16) throws(SystemError) -> Bool {
        let existed = try published.delete(Self.publishedKey(proto, port))
        try forgetPublishedFlows { $0.port == port && $0.proto == proto.rawValue }
        return existed
    }

    public func publishedPorts() throws(SystemError) -> [PublishedPort] {
        try published.entries().compactMap { k, v in
            guard let proto = ServicePort.Proto(rawValue: k.proto), let vni = try? VNI(v.vni) else { return nil }
            return PublishedPort(proto: proto, port: UInt16(bigEndian: k.port), vni: vni, vip: IPv4Address(networkOrder: v.vip),
                                 vipPort: UInt16(bigEndian: v.vip_port))
        }
    }

    public func publishedFlowEntries() throws(SystemError) -> [PublishedFlow] {
        try publishedFlows.entries().compactMap { Self.publishedFlow($0.key, $0.value) }
    }

    static func publishedFlow(_ k: mz_pub_flow_key, _ v: mz_pub_flow) -> PublishedFlow? {
        guard let vni = try? VNI(v.vni) else { return nil }
        return PublishedFlow(client: IPv4Address(networkOrder: k.client), clientPort: UInt16(bigEndian: k.client_port),
                             port: UInt16(bigEndian: k.port), proto: k.proto, vni: vni,
                             backend: IPv4Address(networkOrder: v.backend), backendPort: UInt16(bigEndian: v.backend_port),
                             backendHost: IPv4Address(networkOrder: v.host.ip), natPort: UInt16(bigEndian: v.nat_port),
                             seenNs: v.seen_ns)
    }

    /// Forgets the published flows `which` selects (a backend removed, a
    /// port unpublished), both directions: their next packet picks anew.
    @discardableResult
    public func forgetPublishedFlows(_ which: (PublishedFlow) -> Bool) throws(SystemError) -> Int {
        var gone = 0
        for (k, v) in try publishedFlows.entries() {
            guard let flow = Self.publishedFlow(k, v), which(flow) else { continue }
            _ = try publishedFlows.delete(k)
            _ = try publishedBack.delete(mz_pub_back_key(vni: v.vni, backend: v.backend, backend_port: v.backend_port,
                                                         nat_port: v.nat_port, proto: k.proto, reserved: (0, 0, 0)))
            gone += 1
        }
        return gone
    }
}
