import Foundation
import MizarAPI
import MizarCore
import MizarPolicy
import MizarPolicyConformance
import Testing
import Yams

/// Made-up addresses: x in 10.0.1.0/24, y and z in 10.0.2.0/24.
func conformanceIP(_ ns: String, _ pod: String) -> IPv4Address {
    let i = Conformance.namespaces.firstIndex(of: ns)!, j = Conformance.pods.firstIndex(of: pod)!
    return IPv4Address(value: (10 << 24) | (UInt32(i == 0 ? 1 : 2) << 8) | UInt32(10 + i * 3 + j))
}

/// The product's verdict for every pair and probe, from the compiled form.
func compiledTable(_ step: Conformance.Step, probes: [(String, Int)]) throws -> [String: Bool] {
    let namespaces = step.namespaceLabels.map { Namespace(name: $0.key, spec: NamespaceSpec(), labels: $0.value) }
    let compiled = try CompiledPolicies(policies: step.policies, namespaces: namespaces)
    let pods = conformancePods(step, ip: conformanceIP)
    var entries: [String: EndpointPolicy] = [:]
    for p in pods {
        entries[p.id] = try compiled.entry(for: PolicyEndpoint(name: p.id, ip: p.ip, namespace: p.namespace, labels: p.labels, ports: Conformance.namedPorts()))
    }
    var table: [String: Bool] = [:]
    for s in pods {
        for d in pods {
            for (proto, port) in probes {
                let number: UInt8 = ["TCP": 6, "UDP": 17, "SCTP": 132, "ICMP": 1][proto]!
                table["\(s.id) \(d.id) \(proto)/\(port)"] = CompiledPolicies.judge(
                    src: entries[s.id], srcIP: s.ip, dst: entries[d.id], dstIP: d.ip, proto: number, port: UInt16(port),
                    blocks: compiled.blockBits) == nil
            }
        }
    }
    return table
}

@Suite("Policy compilation")
struct CompileTests {
    static let allProbes = Conformance.probes + [("SCTP", 80), ("ICMP", 0), ("TCP", 8080)]

    @Test("every conformance case: the compiled entries judge as the independent model, for every pair, port and protocol")
    func conformanceCasesMatchModel() throws {
        let cases = Conformance.cases(ip: conformanceIP)
        #expect(cases.count >= 25)
        var denied = 0
        for c in cases {
            for step in c.steps {
                let expected = modelTable(step, pods: conformancePods(step, ip: conformanceIP), probes: Self.allProbes)
                let observed = try compiledTable(step, probes: Self.allProbes)
                denied += expected.values.filter { !$0 }.count
                let wrong = expected.keys.filter { expected[$0] != observed[$0] }.sorted()
                #expect(wrong.isEmpty, "\(c.name) / \(step.note): \(wrong.count) probes differ, e.g. \(wrong.prefix(3))\n\(truthTables(expected, observed, probes: Self.allProbes))")
            }
        }
        // The cases are not vacuous: they deny a good share of the probes.
        #expect(denied > 1000)
    }

    @Test("random policies over random labels: compiled verdicts equal the model's")
    func randomPoliciesMatchModel() throws {
        var rng = SystemRandomNumberGenerator()
        let keys = ["pod", "team", "tier"], values = ["a", "b", "c"]
        func randomSelector() -> LabelSelector {
            var s = LabelSelector()
            if Bool.random(using: &rng) { s.matchLabels = [keys.randomElement(using: &rng)!: values.randomElement(using: &rng)!] }
            if Int.random(in: 0..<3, using: &rng) == 0 {
                let op = LabelSelectorRequirement.Operator.allCases.randomElement(using: &rng)!
                let vals: [String]? = (op == .in || op == .notIn) ? Array(values.shuffled(using: &rng).prefix(Int.random(in: 1...2, using: &rng))) : nil
                s.matchExpressions = [LabelSelectorRequirement(key: keys.randomElement(using: &rng)!, operator: op, values: vals)]
            }
            return s
        }
        func randomPeer() -> NetworkPolicyPeer {
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: NetworkPolicyPeer(podSelector: randomSelector())
            case 1: NetworkPolicyPeer(namespaceSelector: randomSelector())
            case 2: NetworkPolicyPeer(podSelector: randomSelector(), namespaceSelector: randomSelector())
            default:
                Bool.random(using: &rng) ? NetworkPolicyPeer(ipBlock: IPBlock(cidr: "10.0.1.0/24"))
                    : NetworkPolicyPeer(ipBlock: IPBlock(cidr: "10.0.2.0/24", except: ["10.0.2.\(Int.random(in: 8...15, using: &rng))/31"]))
            }
        }
        func randomPorts() -> [NetworkPolicyPort]? {
            switch Int.random(in: 0..<5, using: &rng) {
            case 0: nil
            case 1: [Conformance.tcp(80)]
            case 2: [Conformance.tcp(80, end: 81), Conformance.udp(81)]
            case 3: [Conformance.named(["serve-80-tcp", "serve-81-udp"].randomElement(using: &rng)!, [PortProtocol.tcp, .udp].randomElement(using: &rng)!)]
            default: [NetworkPolicyPort(protocol: .udp)]
            }
        }
        for _ in 0..<60 {
            var policies: [NetworkPolicy] = []
            for i in 0..<Int.random(in: 1...4, using: &rng) {
                var spec = NetworkPolicySpec(podSelector: randomSelector())
                if Bool.random(using: &rng) { spec.ingress = (0..<Int.random(in: 0...2, using: &rng)).map { _ in Conformance.ingress(Bool.random(using: &rng) ? nil : [randomPeer(), randomPeer()], randomPorts()) } }
                if Bool.random(using: &rng) { spec.egress = (0..<Int.random(in: 0...2, using: &rng)).map { _ in Conformance.egress(Bool.random(using: &rng) ? nil : [randomPeer()], randomPorts()) } }
                if Bool.random(using: &rng) { spec.policyTypes = [[.ingress], [.egress], [.ingress, .egress]].randomElement(using: &rng)! }
                policies.append(Conformance.policy("r\(i)", Conformance.namespaces.randomElement(using: &rng)!, spec))
            }
            var podLabels: [String: [String: String]] = [:]
            for ns in Conformance.namespaces {
                for pod in Conformance.pods where Bool.random(using: &rng) { podLabels["\(ns)/\(pod)"] = [keys.randomElement(using: &rng)!: values.randomElement(using: &rng)!] }
            }
            let step = Conformance.Step(note: "random", policies: policies, namespaceLabels: ["y": ["team": "b"], "z": ["tier": "c"]], podLabels: podLabels)
            let expected = modelTable(step, pods: conformancePods(step, ip: conformanceIP), probes: Self.allProbes)
            let observed = try compiledTable(step, probes: Self.allProbes)
            let yaml = try YAMLEncoder().encode(policies)
            let wrong = expected.keys.filter { expected[$0] != observed[$0] }.sorted()
            #expect(wrong.isEmpty, "\(wrong.count) probes differ, e.g. \(wrong.prefix(3))\n\(yaml)\n\(truthTables(expected, observed, probes: Self.allProbes))")
        }
    }

    @Test("a peer keeps its bit when other policies come and go; a freed bit is not reused at once")
    func bitsAreStable() throws {
        let p1 = Conformance.policy("p1", "x", NetworkPolicySpec(podSelector: .all, ingress: [Conformance.ingress([NetworkPolicyPeer(podSelector: Conformance.sel(["pod": "a"]))])]))
        let p2 = Conformance.policy("p2", "x", NetworkPolicySpec(podSelector: .all, ingress: [Conformance.ingress([NetworkPolicyPeer(podSelector: Conformance.sel(["pod": "b"]))])]))
        let first = try CompiledPolicies(policies: [p1, p2], namespaces: [])
        let keyA = PeerKey.pods(.named("x"), Conformance.sel(["pod": "a"]))
        let keyB = PeerKey.pods(.named("x"), Conformance.sel(["pod": "b"]))
        let bitA = try #require(first.table[keyA]), bitB = try #require(first.table[keyB])
        let second = try CompiledPolicies(policies: [p2], namespaces: [], previous: first.table)
        #expect(second.table[keyB] == bitB)
        #expect(second.table[keyA] == nil)
        let p3 = Conformance.policy("p3", "x", NetworkPolicySpec(podSelector: .all, ingress: [Conformance.ingress([NetworkPolicyPeer(podSelector: Conformance.sel(["pod": "c"]))])]))
        let third = try CompiledPolicies(policies: [p2, p3], namespaces: [], previous: first.table)
        #expect(third.table[keyB] == bitB)
        #expect(third.table[PeerKey.pods(.named("x"), Conformance.sel(["pod": "c"]))] != bitA)
        // Equal selectors written differently share one bit.
        let p4 = Conformance.policy("p4", "x", NetworkPolicySpec(podSelector: .all, ingress: [Conformance.ingress([
            NetworkPolicyPeer(podSelector: LabelSelector(matchExpressions: [LabelSelectorRequirement(key: "pod", operator: .in, values: ["b", "a"])])),
            NetworkPolicyPeer(podSelector: LabelSelector(matchExpressions: [LabelSelectorRequirement(key: "pod", operator: .in, values: ["a", "b"])]))])]))
        #expect(try CompiledPolicies(policies: [p4], namespaces: []).table.bits.count == 1)
    }

    @Test("more distinct peers than bits is refused, naming the limit")
    func tooManyPeers() {
        let peers = (0..<(PolicyBits.count + 1)).map { NetworkPolicyPeer(podSelector: Conformance.sel(["n": "v\($0)"])) }
        let p = Conformance.policy("big", "x", NetworkPolicySpec(podSelector: .all, ingress: [Conformance.ingress(peers)]))
        #expect(throws: PolicyCompileError.self) { try CompiledPolicies(policies: [p], namespaces: []) }
    }

    @Test("ipBlock prefixes: the longest prefix holding an address gives exactly the blocks that hold it")
    func blockPrefixes() throws {
        let p = Conformance.policy("p", "x", NetworkPolicySpec(podSelector: .all, ingress: [Conformance.ingress([
            NetworkPolicyPeer(ipBlock: IPBlock(cidr: "10.0.0.0/8", except: ["10.1.0.0/16", "10.2.3.0/24"])),
            NetworkPolicyPeer(ipBlock: IPBlock(cidr: "10.1.2.0/24")),
            NetworkPolicyPeer(ipBlock: IPBlock(cidr: "10.1.2.77/16")), // host bits, as Kubernetes allows
        ])]))
        let c = try CompiledPolicies(policies: p.spec.ingress![0].from!.isEmpty ? [] : [p], namespaces: [])
        let b8 = try #require(c.table[.block("10.0.0.0/8", except: ["10.1.0.0/16", "10.2.3.0/24"])])
        let b24 = try #require(c.table[.block("10.1.2.0/24", except: [])])
        let b16 = try #require(c.table[.block("10.1.0.0/16", except: [])])
        #expect(c.blockBits("10.9.9.9") == PolicyBits([b8]))
        #expect(c.blockBits("10.1.9.9") == PolicyBits([b16]))
        #expect(c.blockBits("10.1.2.9") == PolicyBits([b24, b16]))
        #expect(c.blockBits("10.2.3.4") == PolicyBits())
        #expect(c.blockBits("11.0.0.1") == PolicyBits())
    }

    @Test("an endpoint whose rules need more than 32 port ranges is refused, naming the policy whose rules pass the limit")
    func tooManyRanges() throws {
        func ranges(_ name: String, _ base: Int) -> NetworkPolicy {
            Conformance.policy(name, "x", NetworkPolicySpec(podSelector: .all, ingress: [Conformance.ingress(nil, (0..<20).map { Conformance.tcp(base + 2 * $0) })]))
        }
        let e = PolicyEndpoint(name: "e", ip: "10.0.1.5", namespace: "x", labels: [:], ports: [])
        let one = try CompiledPolicies(policies: [ranges("a", 1000)], namespaces: [])
        #expect(try one.entry(for: e).ingress?.entries.count == 20)
        let two = try CompiledPolicies(policies: [ranges("b", 3000), ranges("a", 1000)], namespaces: [])
        #expect(throws: PolicyCompileError(policy: "x/b", reason: "endpoint e's ingress rules need 40 port ranges; at most 32")) {
            try two.entry(for: e)
        }
    }

    @Test("an egress rule to an ipBlock on a named port admits the endpoints in the block that serve that port, on it alone")
    func ipBlockWithNamedPort() throws {
        // Found by the random test: the block and the port name must both hold.
        let p = Conformance.policy("r0", "x", NetworkPolicySpec(podSelector: .all, policyTypes: [.egress], egress: [
            Conformance.egress([NetworkPolicyPeer(ipBlock: IPBlock(cidr: "10.0.1.0/24"))], [Conformance.named("serve-80-tcp", .tcp)]),
            Conformance.egress([NetworkPolicyPeer(ipBlock: IPBlock(cidr: "10.0.2.0/24", except: ["10.0.2.14/31"]))], [Conformance.named("serve-81-udp", .udp)]),
        ]))
        let step = Conformance.Step(note: "ipblock-named", policies: [p])
        let expected = modelTable(step, pods: conformancePods(step, ip: conformanceIP), probes: Self.allProbes)
        let observed = try compiledTable(step, probes: Self.allProbes)
        let wrong = expected.keys.filter { expected[$0] != observed[$0] }.sorted()
        #expect(wrong.isEmpty, "\(wrong.count) probes differ\n\(truthTables(expected, observed, probes: Self.allProbes))")
        // Not vacuous: x reaches x on TCP 80 only; y/a (10.0.2.13) on UDP
        // 81, y/b (10.0.2.14, excepted) not.
        #expect(expected["x/a x/b TCP/80"] == true && expected["x/a x/b TCP/81"] == false)
        #expect(expected["x/a y/a UDP/81"] == true && expected["x/a y/b UDP/81"] == false && expected["x/a y/a UDP/80"] == false)
    }
}
