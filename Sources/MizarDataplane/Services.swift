internal import CMizarABI
import MizarCore

extension ServiceEntry {
    /// The Maglev key of a backend: unique within the data plane.
    public static func maglevKey(_ vni: VNI, _ ip: IPv4Address) -> UInt64 { UInt64(vni.value) << 32 | UInt64(ip.value) }
}

/// How a service's Maglev table divides among its backends.
public struct MaglevSummary: Equatable, Sendable {
    public var size: Int
    /// Table entries per backend address.
    public var entries: [IPv4Address: Int]
}

/// A flow the client's host was taught, one direction.
public struct NATFlow: Equatable, Sendable {
    public var vni: VNI
    public var src: IPv4Address, dst: IPv4Address
    public var sport: UInt16, dport: UInt16
    public var proto: UInt8
    public var toIP: IPv4Address
    public var toPort: UInt16
    public var reverse: Bool
    public var vip: IPv4Address
    public var backend: IPv4Address
}

extension Dataplane {
    /// Writes a service with its freshly computed Maglev table: one update,
    /// so the bouncer sees the old service or the new, never a mix.
    @discardableResult
    public func putService(_ e: ServiceEntry) throws -> [UInt16] {
        try e.validate()
        let order = e.backends
        let table = Maglev.table(keys: order.map { ServiceEntry.maglevKey(e.vni, $0.ip) }, size: Int(MZ_MAGLEV_SIZE))
        var head = mz_service_hdr()
        head.n_ports = UInt32(e.ports.count)
        head.n_backends = UInt32(order.count)
        withElements(of: &head.ports, as: mz_svc_port.self) { slots in
            for (i, p) in e.ports.enumerated() {
                slots[i] = mz_svc_port(proto: p.proto.rawValue, reserved: 0, port: p.port.bigEndian,
                                       target_port: p.targetPort.bigEndian, reserved2: 0)
            }
        }
        var value = [UInt8](repeating: 0, count: Int(MZ_SVC_VALUE_SIZE))
        value.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: head, as: mz_service_hdr.self)
            for (i, b) in order.enumerated() {
                raw.storeBytes(of: mz_backend(ip: b.ip.networkOrder, host: mz_host(b.host)),
                               toByteOffset: Int(MZ_SVC_BACKENDS_OFFSET) + i * MemoryLayout<mz_backend>.stride, as: mz_backend.self)
            }
            for (i, entry) in table.enumerated() {
                raw.storeBytes(of: entry, toByteOffset: Int(MZ_SVC_TABLE_OFFSET) + 2 * i, as: UInt16.self)
            }
        }
        try services.update(mz_ep_key(e.vni, e.vip), value)
        return table
    }

    public func service(_ vni: VNI, _ vip: IPv4Address) throws -> (entry: ServiceEntry, summary: MaglevSummary)? {
        guard let value = try services.lookup(mz_ep_key(vni, vip)) else { return nil }
        return value.withUnsafeBytes { raw in
            var head = raw.loadUnaligned(as: mz_service_hdr.self)
            let nPorts = Int(min(head.n_ports, UInt32(MZ_MAX_SVC_PORTS)))
            let ports = withElements(of: &head.ports, as: mz_svc_port.self) { Array($0.prefix(nPorts)) }.compactMap { p in
                ServicePort.Proto(rawValue: p.proto).map {
                    ServicePort(proto: $0, port: UInt16(bigEndian: p.port), targetPort: UInt16(bigEndian: p.target_port))
                }
            }
            let n = Int(min(head.n_backends, UInt32(MZ_MAX_BACKENDS)))
            let backends = (0..<n).map { i in
                let b = raw.loadUnaligned(fromByteOffset: Int(MZ_SVC_BACKENDS_OFFSET) + i * MemoryLayout<mz_backend>.stride,
                                          as: mz_backend.self)
                return ServiceBackend(ip: IPv4Address(networkOrder: b.ip), host: b.host.address)
            }
            var entries: [IPv4Address: Int] = [:]
            for i in 0..<Int(MZ_MAGLEV_SIZE) {
                let idx = Int(raw.loadUnaligned(fromByteOffset: Int(MZ_SVC_TABLE_OFFSET) + 2 * i, as: UInt16.self))
                if idx < n { entries[backends[idx].ip, default: 0] += 1 }
            }
            return (ServiceEntry(vni: vni, vip: vip, ports: ports, backends: backends),
                    MaglevSummary(size: Int(MZ_MAGLEV_SIZE), entries: entries))
        }
    }

    public func serviceKeys() throws(SystemError) -> [(vni: VNI, vip: IPv4Address)] {
        try services.keys().compactMap { k in (try? VNI(k.vni)).map { ($0, IPv4Address(networkOrder: k.ip)) } }
    }

    /// Removes a service; its client list and flow counters stay until
    /// `forgetService` (the caller still needs the clients to invalidate).
    @discardableResult
    public func deleteService(_ vni: VNI, _ vip: IPv4Address) throws(SystemError) -> Bool {
        try services.delete(mz_ep_key(vni, vip))
    }

    /// The client hosts this bouncer taught flows of the service to.
    public func serviceClients(_ vni: VNI, _ vip: IPv4Address) throws(SystemError) -> [IPv4Address] {
        try serviceClients.keys().filter { $0.vni == vni.value && $0.vip == vip.networkOrder }
            .map { IPv4Address(networkOrder: $0.host_ip) }
    }

    /// Flows this bouncer gave each backend of the service (summed over CPUs).
    public func serviceFlowCounts(_ vni: VNI, _ vip: IPv4Address) throws(SystemError) -> [IPv4Address: UInt64] {
        var result: [IPv4Address: UInt64] = [:]
        for k in try serviceStats.keys() where k.vni == vni.value && k.vip == vip.networkOrder {
            if let values = try serviceStats.values(k) {
                result[IPv4Address(networkOrder: k.backend)] = values.reduce(0) { $0 + $1.packets }
            }
        }
        return result
    }

    /// Drops the client list and counters of a service, or of some of its backends.
    public func forgetService(_ vni: VNI, _ vip: IPv4Address, backends: Set<IPv4Address>? = nil) throws(SystemError) {
        for k in try serviceStats.keys() where k.vni == vni.value && k.vip == vip.networkOrder {
            if backends == nil || backends!.contains(IPv4Address(networkOrder: k.backend)) { try serviceStats.delete(k) }
        }
        if backends == nil {
            for k in try serviceClients.keys() where k.vni == vni.value && k.vip == vip.networkOrder {
                try serviceClients.delete(k)
            }
        }
    }

    public func natFlows() throws(SystemError) -> [NATFlow] {
        try nat.entries().compactMap { k, v in
            guard let vni = try? VNI(k.vni) else { return nil }
            return NATFlow(vni: vni, src: IPv4Address(networkOrder: k.src), dst: IPv4Address(networkOrder: k.dst),
                           sport: UInt16(bigEndian: k.sport), dport: UInt16(bigEndian: k.dport), proto: k.proto,
                           toIP: IPv4Address(networkOrder: v.to_ip), toPort: UInt16(bigEndian: v.to_port),
                           reverse: v.flags & UInt16(MZ_NAT_F_REVERSE) != 0,
                           vip: IPv4Address(networkOrder: v.vip), backend: IPv4Address(networkOrder: v.backend))
        }
    }

    /// Forgets every service flow of `vni` one of whose addresses (VIP,
    /// backend, client or server) `gone` matches: what a subnet or VPC going
    /// away leaves behind. Returns how many entries went.
    @discardableResult
    public func forgetServiceFlows(_ vni: VNI, touching gone: (IPv4Address) -> Bool) throws(SystemError) -> Int {
        var removed = 0
        for (k, n) in try nat.entries() where k.vni == vni.value {
            let addresses = [n.vip, n.backend, k.src, k.dst].map { IPv4Address(networkOrder: $0) }
            if addresses.contains(where: gone), try nat.delete(k) { removed += 1 }
        }
        return removed
    }

    /// Forgets this host's flows to a service (all, or only those pinned to
    /// the given backends), both directions: their next packet goes to a
    /// bouncer again. Returns how many entries went.
    @discardableResult
    public func invalidateServiceFlows(_ vni: VNI, vip: IPv4Address, backends: Set<IPv4Address>? = nil) throws(SystemError) -> Int {
        var removed = 0
        for (k, v) in try nat.entries() where k.vni == vni.value && v.vip == vip.networkOrder {
            if let backends, !backends.contains(IPv4Address(networkOrder: v.backend)) { continue }
            if try nat.delete(k) { removed += 1 }
        }
        return removed
    }
}
