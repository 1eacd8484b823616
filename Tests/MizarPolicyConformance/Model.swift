import MizarAPI
import MizarCore

/// Kubernetes NetworkPolicy semantics, written straight from the API's
/// documentation and independent of Mizar's compiler: what the truth
/// table of a set of policies must be. Used to judge the product's
/// compiled form and, end to end, real probes.
public struct ReachabilityModel {
    public struct Pod: Hashable {
        public var namespace: String
        public var name: String
        public var labels: [String: String]
        public var ip: IPv4Address
        /// (name, port, protocol) the pod serves.
        public var ports: [(String, Int, String)]

        public init(namespace: String, name: String, labels: [String: String], ip: IPv4Address, ports: [(String, Int, String)]) {
            self.namespace = namespace
            self.name = name
            self.labels = labels
            self.ip = ip
            self.ports = ports
        }

        public static func == (a: Pod, b: Pod) -> Bool { a.namespace == b.namespace && a.name == b.name }
        public func hash(into h: inout Hasher) { h.combine(namespace); h.combine(name) }
        public var id: String { "\(namespace)/\(name)" }
    }

    public var policies: [NetworkPolicy]
    /// Labels of namespace objects; every namespace also has its name label.
    public var namespaceLabels: [String: [String: String]]

    public init(policies: [NetworkPolicy], namespaceLabels: [String: [String: String]]) {
        self.policies = policies
        self.namespaceLabels = namespaceLabels
    }

    func nsLabels(_ ns: String) -> [String: String] {
        var l = namespaceLabels[ns] ?? [:]
        l["kubernetes.io/metadata.name"] = ns
        return l
    }

    func selectorMatches(_ s: LabelSelector?, _ labels: [String: String]) -> Bool {
        guard let s else { return true }
        for (k, v) in s.matchLabels ?? [:] where labels[k] != v { return false }
        for e in s.matchExpressions ?? [] {
            let have = labels[e.key]
            let values = e.values ?? []
            switch e.operator.rawValue {
            case "In": if have == nil || !values.contains(have!) { return false }
            case "NotIn": if let have, values.contains(have) { return false }
            case "Exists": if have == nil { return false }
            case "DoesNotExist": if have != nil { return false }
            default: return false
            }
        }
        return true
    }

    /// Host bits allowed, as Kubernetes reads ipBlock ranges.
    func inRange(_ ip: IPv4Address, _ text: String) -> Bool {
        let parts = text.split(separator: "/")
        let base = try! IPv4Address(parsing: String(parts[0]), field: "m").value
        let len = UInt32(parts[1])!
        let mask: UInt32 = len == 0 ? 0 : ~UInt32(0) << (32 - len)
        return ip.value & mask == base & mask
    }

    func peerMatches(_ peer: NetworkPolicyPeer, policyNamespace: String, _ other: Pod) -> Bool {
        if let b = peer.ipBlock {
            return inRange(other.ip, b.cidr) && !(b.except ?? []).contains { inRange(other.ip, $0) }
        }
        let nsOK = peer.namespaceSelector.map { selectorMatches($0, nsLabels(other.namespace)) } ?? (other.namespace == policyNamespace)
        return nsOK && selectorMatches(peer.podSelector, other.labels)
    }

    /// proto: "TCP", "UDP", "SCTP" or "ICMP"; port 0 for ICMP. Named ports
    /// resolve on `target`, the destination.
    func portMatches(_ ports: [NetworkPolicyPort]?, proto: String, port: Int, target: Pod) -> Bool {
        guard let ports, !ports.isEmpty else { return true }
        return ports.contains { p in
            let pp = p.protocol.map { "\($0)" } ?? "TCP"
            guard pp == proto else { return false }
            switch p.port {
            case nil: return true
            case .number(let n)?: return port >= n && port <= (p.endPort ?? n)
            case .name(let name)?: return target.ports.contains { $0.0 == name && $0.2 == proto && $0.1 == port }
            }
        }
    }

    func types(_ p: NetworkPolicy) -> [String] {
        if let t = p.spec.policyTypes { return t.map(\.rawValue) }
        return (p.spec.egress ?? []).isEmpty ? ["Ingress"] : ["Ingress", "Egress"]
    }

    func selecting(_ pod: Pod, _ type: String) -> [NetworkPolicy] {
        policies.filter { ($0.metadata.namespace ?? "default") == pod.namespace && selectorMatches($0.spec.podSelector, pod.labels) && types($0).contains(type) }
    }

    public func allowed(from src: Pod, to dst: Pod, proto: String, port: Int) -> Bool {
        let egress = selecting(src, "Egress")
        if !egress.isEmpty {
            let ok = egress.contains { p in
                (p.spec.egress ?? []).contains { r in
                    portMatches(r.ports, proto: proto, port: port, target: dst)
                        && ((r.to ?? []).isEmpty || r.to!.contains { peerMatches($0, policyNamespace: p.metadata.namespace ?? "default", dst) })
                }
            }
            if !ok { return false }
        }
        let ingress = selecting(dst, "Ingress")
        if !ingress.isEmpty {
            return ingress.contains { p in
                (p.spec.ingress ?? []).contains { r in
                    portMatches(r.ports, proto: proto, port: port, target: dst)
                        && ((r.from ?? []).isEmpty || r.from!.contains { peerMatches($0, policyNamespace: p.metadata.namespace ?? "default", src) })
                }
            }
        }
        return true
    }
}
