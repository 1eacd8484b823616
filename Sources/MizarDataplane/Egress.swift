internal import CMizarABI
import MizarCore

// Egress through SNAT (bpf/lib/snat.h): the flows of this host's endpoints
// out of their VPC, translated to the droplet's address.

/// One translated flow, as `mizarctl dump snat` shows it.
public struct SNATEntry: Hashable, Sendable {
    public var vni: VNI
    /// The endpoint and its port (ICMP echo: its identifier).
    public var endpoint: IPv4Address
    public var endpointPort: UInt16
    /// The remote and its port (ICMP echo: 0).
    public var remote: IPv4Address
    public var remotePort: UInt16
    public var proto: UInt8
    /// The port on the droplet's address (ICMP echo: the identifier).
    public var port: UInt16
    public var state: UInt8
    public var createdNs: UInt64
    public var seenNs: UInt64
    /// Whether the flow's outbound entry is there too (a flow whose
    /// outbound entry went gets a new port at its next packet out).
    public var complete: Bool

    /// The state's name: syn, established, closing, closed, or other.
    public var stateName: String { ConntrackEntry.stateName(state) }
}

extension Dataplane {
    /// Every translated flow (reverse entries, matched with their outbound ones).
    public func snatEntries() throws(SystemError) -> [SNATEntry] {
        let outs = Set(try snatOut.entries().map { SNATFlow($0.key, port: $0.value.port) })
        return try snatIn.entries().compactMap { k, v in
            guard let vni = try? VNI(v.vni) else { return nil }
            let flow = SNATFlow(vni: v.vni, endpoint: v.ip, endpointPort: v.port, remote: k.remote,
                                remotePort: k.remote_port, proto: k.proto, port: k.port)
            return SNATEntry(vni: vni, endpoint: IPv4Address(networkOrder: v.ip), endpointPort: UInt16(bigEndian: v.port),
                             remote: IPv4Address(networkOrder: k.remote), remotePort: UInt16(bigEndian: k.remote_port),
                             proto: k.proto, port: UInt16(bigEndian: k.port), state: v.state,
                             createdNs: v.created_ns, seenNs: v.seen_ns, complete: outs.contains(flow))
        }
    }

    /// Removes the translations that carry nothing any more: expired (by
    /// the state's timeout, as conntrack's), of an endpoint no longer on
    /// this host in its VPC, and outbound entries whose reverse entry went.
    /// Returns how many flows went.
    @discardableResult
    public func sweepSNAT() throws(SystemError) -> Int {
        let now = Self.monotonicNs()
        var gone = 0
        var kept = Set<SNATFlow>()
        for (k, v) in try snatIn.entries() {
            let expired = now > v.seen_ns && now - v.seen_ns > Self.flowTimeoutNs(state: v.state, proto: k.proto)
            let present = try local.lookup(mz_ep_key(vni: v.vni, ip: v.ip)) != nil
            if expired || !present {
                if try snatIn.delete(k) { gone += 1 }
            } else {
                kept.insert(SNATFlow(vni: v.vni, endpoint: v.ip, endpointPort: v.port, remote: k.remote,
                                     remotePort: k.remote_port, proto: k.proto, port: k.port))
            }
        }
        for (k, v) in try snatOut.entries() where !kept.contains(SNATFlow(k, port: v.port)) {
            _ = try snatOut.delete(k)
        }
        return gone
    }

    /// Removes every translation of one endpoint (it is deleted): a reply
    /// still on its way is then dropped, whoever has the address next.
    /// Returns how many flows went.
    @discardableResult
    public func purgeSNAT(_ vni: VNI, _ ip: IPv4Address) throws(SystemError) -> Int {
        var gone = 0
        for (k, v) in try snatIn.entries() where v.vni == vni.value && v.ip == ip.networkOrder {
            if try snatIn.delete(k) { gone += 1 }
        }
        for (k, _) in try snatOut.entries() where k.vni == vni.value && k.src == ip.networkOrder {
            _ = try snatOut.delete(k)
        }
        return gone
    }
}

/// A translated flow, whichever map it is read from.
private struct SNATFlow: Hashable {
    var vni: UInt32
    var endpoint: UInt32
    var endpointPort: UInt16
    var remote: UInt32
    var remotePort: UInt16
    var proto: UInt8
    var port: UInt16

    init(vni: UInt32, endpoint: UInt32, endpointPort: UInt16, remote: UInt32, remotePort: UInt16, proto: UInt8, port: UInt16) {
        self.vni = vni
        self.endpoint = endpoint
        self.endpointPort = endpointPort
        self.remote = remote
        self.remotePort = remotePort
        self.proto = proto
        self.port = port
    }

    init(_ k: mz_flow_key, port: UInt16) {
        self.init(vni: k.vni, endpoint: k.src, endpointPort: k.sport, remote: k.dst, remotePort: k.dport,
                  proto: k.proto, port: port)
    }
}

extension Dataplane {
    /// The first port of `range` a new flow tries (the programs' choice,
    /// from the ABI header): tests predict translations with it.
    public static func snatFirstPort(vni: VNI, endpoint: IPv4Address, remote: IPv4Address, endpointPort: UInt16,
                                     remotePort: UInt16, proto: UInt8, range: ClosedRange<UInt16>) -> UInt16 {
        let n = UInt32(range.upperBound - range.lowerBound) + 1
        let ports = (UInt32(endpointPort) << 16 | UInt32(remotePort)) ^ UInt32(proto)
        return range.lowerBound + UInt16(mz_snat_hash(vni.value, endpoint.value, remote.value, ports) % n)
    }
}
