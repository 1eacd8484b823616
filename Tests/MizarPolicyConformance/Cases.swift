import MizarAPI
import MizarCore

/// The conformance topology and its policy cases, taken from the
/// Kubernetes e2e netpol suite and cyclonus: namespaces x, y, z with
/// pods a, b, c (labels pod=a/b/c), serving TCP and UDP on 80 and 81 on
/// ports named serve-80-tcp, serve-81-udp, ...
public enum Conformance {
    public static let namespaces = ["x", "y", "z"]
    public static let pods = ["a", "b", "c"]
    /// What is probed: protocol and port.
    public static let probes: [(String, Int)] = [("TCP", 80), ("TCP", 81), ("UDP", 80), ("UDP", 81)]

    public static func namedPorts() -> [EndpointPort] {
        [80, 81].flatMap { n in
            [EndpointPort(name: "serve-\(n)-tcp", port: n, protocol: .tcp), EndpointPort(name: "serve-\(n)-udp", port: n, protocol: .udp)]
        }
    }

    /// One step of a case: what is declared once it is applied.
    public struct Step {
        public var note: String
        public var policies: [NetworkPolicy]
        public var namespaceLabels: [String: [String: String]] = [:]
        /// Extra labels per pod "ns/pod" (pod=NAME is always there).
        public var podLabels: [String: [String: String]] = [:]
        /// Whether a service VIP in front of each pod is probed instead.
        public var viaService = false

        public init(note: String, policies: [NetworkPolicy], namespaceLabels: [String: [String: String]] = [:],
                    podLabels: [String: [String: String]] = [:], viaService: Bool = false) {
            self.note = note
            self.policies = policies
            self.namespaceLabels = namespaceLabels
            self.podLabels = podLabels
            self.viaService = viaService
        }
    }

    public struct Case {
        public var name: String
        public var steps: [Step]
    }

    public static func policy(_ name: String, _ ns: String, _ spec: NetworkPolicySpec) -> NetworkPolicy {
        NetworkPolicy(name: name, namespace: ns, spec: spec)
    }

    public static func sel(_ labels: [String: String]) -> LabelSelector { LabelSelector(matchLabels: labels) }
    public static func expr(_ key: String, _ op: LabelSelectorRequirement.Operator, _ values: [String]? = nil) -> LabelSelector {
        LabelSelector(matchExpressions: [LabelSelectorRequirement(key: key, operator: op, values: values)])
    }
    public static func nsName(_ n: String) -> LabelSelector { sel([namespaceNameLabel: n]) }
    public static func tcp(_ p: Int, end: Int? = nil) -> NetworkPolicyPort { NetworkPolicyPort(protocol: .tcp, port: .number(p), endPort: end) }
    public static func udp(_ p: Int) -> NetworkPolicyPort { NetworkPolicyPort(protocol: .udp, port: .number(p)) }
    public static func named(_ n: String, _ proto: PortProtocol? = nil) -> NetworkPolicyPort { NetworkPolicyPort(protocol: proto, port: .name(n)) }
    public static func ingress(_ from: [NetworkPolicyPeer]?, _ ports: [NetworkPolicyPort]? = nil) -> NetworkPolicyIngressRule {
        NetworkPolicyIngressRule(ports: ports, from: from)
    }
    public static func egress(_ to: [NetworkPolicyPeer]?, _ ports: [NetworkPolicyPort]? = nil) -> NetworkPolicyEgressRule {
        NetworkPolicyEgressRule(ports: ports, to: to)
    }
    public static func one(_ note: String, _ policies: NetworkPolicy..., ns: [String: [String: String]] = [:],
                    pods: [String: [String: String]] = [:], service: Bool = false) -> [Step] {
        [Step(note: note, policies: policies, namespaceLabels: ns, podLabels: pods, viaService: service)]
    }

    /// `ip(ns, pod)` gives a pod's address (for ipBlock cases).
    public static func cases(ip: (String, String) -> IPv4Address) -> [Case] {
        let a = sel(["pod": "a"]), b = sel(["pod": "b"]), c = sel(["pod": "c"])
        let denyIn = NetworkPolicySpec(podSelector: .all, policyTypes: [.ingress])
        let denyOut = NetworkPolicySpec(podSelector: .all, policyTypes: [.egress])
        let bIP = ip("x", "b")
        // Base policy of cyclonus' generator, on x/a.
        let base = policy("base", "x", NetworkPolicySpec(
            podSelector: a, policyTypes: [.ingress, .egress],
            ingress: [ingress([NetworkPolicyPeer(podSelector: expr("pod", .in, ["b", "c"]), namespaceSelector: expr("ns", .in, ["x", "y"]))], [tcp(80)])],
            egress: [egress([NetworkPolicyPeer(podSelector: expr("pod", .in, ["a", "b"]), namespaceSelector: expr("ns", .in, ["y", "z"]))], [tcp(80)])]))
        let nsLabels = ["x": ["ns": "x"], "y": ["ns": "y"], "z": ["ns": "z"]]
        return [
            Case(name: "no policy: all reach all", steps: one("none")),
            Case(name: "default deny ingress in x", steps: one("deny-in", policy("deny", "x", denyIn))),
            Case(name: "default deny egress in x", steps: one("deny-out", policy("deny", "x", denyOut))),
            Case(name: "default deny both ways in x", steps: one("deny-all", policy("deny", "x", NetworkPolicySpec(podSelector: .all, policyTypes: [.ingress, .egress])))),
            Case(name: "allow all ingress despite deny", steps: one("allow-all",
                policy("deny", "x", denyIn), policy("allow", "x", NetworkPolicySpec(podSelector: .all, ingress: [ingress(nil)])))),
            Case(name: "ingress to x/a from pod=b in x (matchLabels)", steps: one("pod-sel",
                policy("p", "x", NetworkPolicySpec(podSelector: a, ingress: [ingress([NetworkPolicyPeer(podSelector: b)])])))),
            Case(name: "ingress to x/a from pod in (b,c) (matchExpressions)", steps: one("expr",
                policy("p", "x", NetworkPolicySpec(podSelector: a, ingress: [ingress([NetworkPolicyPeer(podSelector: expr("pod", .in, ["b", "c"]))])])))),
            Case(name: "ingress to x/a from pod notin (b), exists, doesnotexist", steps: one("ops",
                policy("p", "x", NetworkPolicySpec(podSelector: a, ingress: [ingress([NetworkPolicyPeer(podSelector: expr("pod", .notIn, ["b"]))])])),
                policy("q", "y", NetworkPolicySpec(podSelector: expr("pod", .exists), ingress: [ingress([NetworkPolicyPeer(podSelector: expr("tier", .doesNotExist))])])))),
            Case(name: "ingress to x/a from namespace y (namespaceSelector)", steps: one("ns-sel",
                policy("p", "x", NetworkPolicySpec(podSelector: a, ingress: [ingress([NetworkPolicyPeer(namespaceSelector: sel(["ns": "y"]))])])), ns: nsLabels)),
            Case(name: "ingress from all namespaces (namespaceSelector {})", steps: one("ns-all",
                policy("p", "x", NetworkPolicySpec(podSelector: a, ingress: [ingress([NetworkPolicyPeer(namespaceSelector: .all)])])))),
            Case(name: "ingress by kubernetes.io/metadata.name", steps: one("ns-name",
                policy("p", "x", NetworkPolicySpec(podSelector: .all, ingress: [ingress([NetworkPolicyPeer(namespaceSelector: nsName("z"))])])))),
            Case(name: "both selectors in one peer: pod=b in y", steps: one("and",
                policy("p", "x", NetworkPolicySpec(podSelector: a, ingress: [ingress([NetworkPolicyPeer(podSelector: b, namespaceSelector: sel(["ns": "y"]))])])), ns: nsLabels)),
            Case(name: "two peers: pod=b in x, or anything in y", steps: one("or",
                policy("p", "x", NetworkPolicySpec(podSelector: a, ingress: [ingress([NetworkPolicyPeer(podSelector: b), NetworkPolicyPeer(namespaceSelector: sel(["ns": "y"]))])])), ns: nsLabels)),
            Case(name: "numeric port: TCP 80 only", steps: one("port",
                policy("p", "x", NetworkPolicySpec(podSelector: a, ingress: [ingress(nil, [tcp(80)])])))),
            Case(name: "named port: serve-81-tcp", steps: one("named",
                policy("p", "x", NetworkPolicySpec(podSelector: a, ingress: [ingress([NetworkPolicyPeer(namespaceSelector: .all)], [named("serve-81-tcp")])])))),
            Case(name: "named port with a protocol that does not match its name", steps: one("named-mismatch",
                policy("p", "x", NetworkPolicySpec(podSelector: a, ingress: [ingress(nil, [named("serve-80-tcp", .udp)])])))),
            Case(name: "endPort: TCP 80 to 81", steps: one("range",
                policy("p", "x", NetworkPolicySpec(podSelector: .all, ingress: [ingress([NetworkPolicyPeer(namespaceSelector: nsName("y"))], [tcp(80, end: 81)])])))),
            Case(name: "protocol mismatch: SCTP 80 admits no TCP or UDP", steps: one("sctp",
                policy("p", "x", NetworkPolicySpec(podSelector: .all, ingress: [ingress(nil, [NetworkPolicyPort(protocol: .sctp, port: .number(80))])])))),
            Case(name: "UDP 81 only, to every pod of y", steps: one("udp",
                policy("p", "y", NetworkPolicySpec(podSelector: .all, ingress: [ingress(nil, [udp(81)])])))),
            Case(name: "ipBlock with except: x/b's address excepted", steps: one("ipblock",
                policy("p", "x", NetworkPolicySpec(podSelector: a, ingress: [ingress([NetworkPolicyPeer(ipBlock: IPBlock(cidr: "\(bIP.masked(16))", except: ["\(bIP)/32"]))])])))),
            Case(name: "egress to x/b's /32 only", steps: one("egress-ipblock",
                policy("p", "x", NetworkPolicySpec(podSelector: a, policyTypes: [.egress], egress: [egress([NetworkPolicyPeer(ipBlock: IPBlock(cidr: "\(bIP)/32"))])])))),
            Case(name: "egress to pod=c in every namespace on UDP", steps: one("egress-pod",
                policy("p", "y", NetworkPolicySpec(podSelector: .all, policyTypes: [.egress], egress: [egress([NetworkPolicyPeer(podSelector: c, namespaceSelector: .all)], [NetworkPolicyPort(protocol: .udp)])])))),
            Case(name: "egress on a named port of the destination", steps: one("egress-named",
                policy("p", "z", NetworkPolicySpec(podSelector: b, policyTypes: [.egress], egress: [egress([NetworkPolicyPeer(namespaceSelector: .all)], [named("serve-80-udp", .udp)])])))),
            Case(name: "ingress and egress both needed (cyclonus base policy)", steps: one("base", base, ns: nsLabels)),
            Case(name: "egress to a service VIP is judged on its backend", steps: one("service",
                policy("p", "x", NetworkPolicySpec(podSelector: .all, policyTypes: [.egress], egress: [egress([NetworkPolicyPeer(podSelector: b)])])), service: true)),
            Case(name: "policy updated, then deleted", steps: [
                Step(note: "deny", policies: [policy("p", "y", denyIn)]),
                Step(note: "allow from x", policies: [policy("p", "y", NetworkPolicySpec(podSelector: .all, ingress: [ingress([NetworkPolicyPeer(namespaceSelector: nsName("x"))])]))]),
                Step(note: "deleted", policies: []),
            ]),
            Case(name: "pod labels change under a policy", steps: [
                Step(note: "before", policies: [policy("p", "x", NetworkPolicySpec(podSelector: a, ingress: [ingress([NetworkPolicyPeer(podSelector: sel(["team": "blue"]), namespaceSelector: .all)])]))]),
                Step(note: "z/c joins blue", policies: [policy("p", "x", NetworkPolicySpec(podSelector: a, ingress: [ingress([NetworkPolicyPeer(podSelector: sel(["team": "blue"]), namespaceSelector: .all)])]))],
                     podLabels: ["z/c": ["team": "blue"]]),
                Step(note: "x/a relabelled out of the policy", policies: [policy("p", "x", NetworkPolicySpec(podSelector: a, ingress: [ingress([NetworkPolicyPeer(podSelector: sel(["team": "blue"]), namespaceSelector: .all)])]))],
                     podLabels: ["z/c": ["team": "blue"], "x/a": ["pod": "a2"]]),
            ]),
            Case(name: "namespace labels change under a policy", steps: [
                Step(note: "before", policies: [policy("p", "x", NetworkPolicySpec(podSelector: .all, ingress: [ingress([NetworkPolicyPeer(namespaceSelector: sel(["env": "prod"]))])]))]),
                Step(note: "y becomes prod", policies: [policy("p", "x", NetworkPolicySpec(podSelector: .all, ingress: [ingress([NetworkPolicyPeer(namespaceSelector: sel(["env": "prod"]))])]))],
                     namespaceLabels: ["y": ["env": "prod"]]),
            ]),
        ]
    }
}

extension IPv4Address {
    /// "A.B.0.0/16"-style: the address's prefix of this length.
    public func masked(_ length: UInt32) -> String {
        let mask: UInt32 = length == 0 ? 0 : ~UInt32(0) << (32 - length)
        return "\(IPv4Address(value: value & mask))/\(length)"
    }
}
