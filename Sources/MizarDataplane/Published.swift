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
    /// Its state (as conntrack's) and last packet, kept in the reverse
    /// entry; nil when that went (the flow's next packet picks afresh).
    public var state: UInt8?
    public var seenNs: UInt64
    public var createdNs: UInt64

    /// The state's name: syn, established, closing, closed, or other.
    public var stateName: String { state.map(ConntrackEntry.stateName) ?? "gone" }
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
        var flows: [PublishedFlow] = []
        for (k, v) in try publishedFlows.entries() {
            if let f = try publishedFlow(k, v) { flows.append(f) }
        }
        return flows
    }

    static func publishedBackKey(_ k: mz_pub_flow_key, _ v: mz_pub_flow) -> mz_pub_back_key {
        mz_pub_back_key(vni: v.vni, backend: v.backend, backend_port: v.backend_port, nat_port: v.nat_port,
                        proto: k.proto, reserved: (0, 0, 0))
    }

    /// The flow with its state, from its reverse entry when that is still
    /// this flow's.
    func publishedFlow(_ k: mz_pub_flow_key, _ v: mz_pub_flow) throws(SystemError) -> PublishedFlow? {
        guard let vni = try? VNI(v.vni) else { return nil }
        let back = try publishedBack.lookup(Self.publishedBackKey(k, v))
            .flatMap { $0.client == k.client && $0.client_port == k.client_port && $0.port == k.port ? $0 : nil }
        return PublishedFlow(client: IPv4Address(networkOrder: k.client), clientPort: UInt16(bigEndian: k.client_port),
                             port: UInt16(bigEndian: k.port), proto: k.proto, vni: vni,
                             backend: IPv4Address(networkOrder: v.backend), backendPort: UInt16(bigEndian: v.backend_port),
                             backendHost: IPv4Address(networkOrder: v.host.ip), natPort: UInt16(bigEndian: v.nat_port),
                             state: back?.state, seenNs: back?.seen_ns ?? v.created_ns, createdNs: v.created_ns)
    }

    /// Forgets the published flows `which` selects (a backend removed, a
    /// port unpublished, expired), both directions: their next packet
    /// picks anew. Returns how many went.
    @discardableResult
    public func forgetPublishedFlows(_ which: (PublishedFlow) -> Bool) throws(SystemError) -> Int {
        var gone = 0
        for (k, v) in try publishedFlows.entries() {
            guard let flow = try publishedFlow(k, v), which(flow) else { continue }
            _ = try publishedFlows.delete(k)
            if flow.state != nil { _ = try publishedBack.delete(Self.publishedBackKey(k, v)) }
            gone += 1
        }
        return gone
    }

    /// Removes the published flows that carry nothing any more: expired
    /// (by the state's timeout, as SNAT's) or whose reverse entry went
    /// (evicted), and reverse entries no flow names (their flow entry was
    /// evicted): their ports are free again. Returns how many flows went.
    @discardableResult
    public func sweepPublished() throws(SystemError) -> Int {
        let now = Self.monotonicNs()
        var named = Set<[UInt8]>()
        let gone = try forgetPublishedFlows { f in
            guard let state = f.state else { return true }
            return now > f.seenNs && now - f.seenNs > Self.flowTimeoutNs(state: state, proto: f.proto)
        }
        for (k, v) in try publishedFlows.entries() { named.insert(bytes(of: Self.publishedBackKey(k, v))) }
        // (Not one just made: its flow entry is written right after it.)
        for (k, v) in try publishedBack.entries() where !named.contains(bytes(of: k)) && now > v.seen_ns && now - v.seen_ns > 2_000_000_000 {
            _ = try publishedBack.delete(k)
        }
        return gone
    }
}

private func bytes<T>(of value: T) -> [UInt8] {
    withUnsafeBytes(of: value) { Array($0) }
}
