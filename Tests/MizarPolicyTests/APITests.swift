import Foundation
import MizarAPI
import MizarCore
import MizarPolicyConformance
import Testing
import Yams

@Suite("NetworkPolicy and Namespace objects")
struct PolicyAPITests {
    /// A Kubernetes NetworkPolicy using every field, as kubectl would show it.
    static let kubernetes = """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata:
          name: everything
          namespace: x
          uid: 9c1d4b2e-0000-0000-0000-000000000000
          resourceVersion: "42"
          labels: {app: web}
          annotations: {note: kept-out}
        spec:
          podSelector:
            matchLabels: {pod: a}
            matchExpressions:
            - {key: tier, operator: In, values: [web, api]}
            - {key: legacy, operator: DoesNotExist}
          policyTypes: [Ingress, Egress]
          ingress:
          - from:
            - podSelector: {matchLabels: {pod: b}}
            - namespaceSelector: {matchLabels: {ns: y}}
            - podSelector: {matchExpressions: [{key: pod, operator: NotIn, values: [c]}]}
              namespaceSelector: {matchExpressions: [{key: env, operator: Exists}]}
            - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16, 10.2.0.0/16]}
            ports:
            - {protocol: TCP, port: 80}
            - {protocol: TCP, port: 8000, endPort: 8080}
            - {protocol: UDP, port: serve-81-udp}
            - {protocol: SCTP, port: 81}
            - {port: "443"}
          - {}
          egress:
          - to:
            - namespaceSelector: {}
            ports:
            - {port: serve-80-tcp}
          - ports: [{protocol: UDP}]
        status: {}
        """

    @Test("a Kubernetes NetworkPolicy becomes a Mizar one and back without losing a field")
    func kubernetesTranslation() throws {
        let object = try YAMLDecoder().decode(AnyMizarObject.self, from: Self.kubernetes)
        guard case .networkPolicy(let p) = object else { Issue.record("decoded as \(object.kind)"); return }
        try p.validate()
        #expect(p.apiVersion == "mizar.com/v1")
        #expect(p.metadata.namespace == "x" && p.name == "everything" && p.metadata.labels == ["app": "web"])
        #expect(p.storeName == "x/everything")
        // The spec, written back in Kubernetes' form, is the original spec.
        let original = try #require((try Yams.load(yaml: Self.kubernetes) as? [String: Any])?["spec"])
        let back = try JSONSerialization.jsonObject(with: Data(ObjectCoding.encode(p.spec)))
        #expect(NSDictionary(dictionary: normalized(original) as! [String: Any]) == NSDictionary(dictionary: normalized(back) as! [String: Any]))
        #expect(p.spec.ingress?[0].ports?[4].port == .number(443))
        #expect(p.spec.ingress?[0].ports?[2].port == .name("serve-81-udp"))
        #expect(p.spec.ingress?[1] == NetworkPolicyIngressRule())
    }

    /// YAML's and JSON's numbers and strings made comparable (Yams reads "443" as a string).
    func normalized(_ v: Any) -> Any {
        if let d = v as? [String: Any] { return d.mapValues(normalized) }
        if let a = v as? [Any] { return a.map(normalized) }
        if let s = v as? String, let n = Int(s), String(n) == s { return n }
        if let n = v as? NSNumber { return n.intValue }
        return v
    }

    @Test("policy defaults: Ingress always, Egress only with egress rules")
    func effectiveTypes() {
        #expect(NetworkPolicySpec().effectiveTypes == [.ingress])
        #expect(NetworkPolicySpec(egress: [NetworkPolicyEgressRule()]).effectiveTypes == [.ingress, .egress])
        #expect(NetworkPolicySpec(policyTypes: [.egress]).effectiveTypes == [.egress])
    }

    @Test("bad policies are refused naming the field", arguments: [
        ("spec:\n  podSelector: {matchLabels: {\"bad key!\": a}}", "spec.podSelector.matchLabels"),
        ("spec:\n  podSelector: {matchExpressions: [{key: a, operator: In}]}", "spec.podSelector.matchExpressions[0].values"),
        ("spec:\n  podSelector: {matchExpressions: [{key: a, operator: Exists, values: [x]}]}", "spec.podSelector.matchExpressions[0].values"),
        ("spec:\n  podSelector: {matchExpressions: [{key: a, operator: Maybe}]}", "spec.podSelector.matchExpressions[0].operator"),
        ("spec:\n  podSelector: {}\n  policyTypes: [Ingress, Ingress]", "spec.policyTypes"),
        ("spec:\n  podSelector: {}\n  policyTypes: [Sideways]", "spec.policyTypes[0]"),
        ("spec:\n  podSelector: {}\n  ingress: [{ports: [{port: 0}]}]", "spec.ingress[0].ports[0].port"),
        ("spec:\n  podSelector: {}\n  ingress: [{ports: [{port: 70000}]}]", "spec.ingress[0].ports[0].port"),
        ("spec:\n  podSelector: {}\n  ingress: [{ports: [{port: 90, endPort: 80}]}]", "spec.ingress[0].ports[0].endPort"),
        ("spec:\n  podSelector: {}\n  ingress: [{ports: [{port: http, endPort: 80}]}]", "spec.ingress[0].ports[0].endPort"),
        ("spec:\n  podSelector: {}\n  ingress: [{ports: [{endPort: 80}]}]", "spec.ingress[0].ports[0].endPort"),
        ("spec:\n  podSelector: {}\n  ingress: [{ports: [{port: Not_A_Name}]}]", "spec.ingress[0].ports[0].port"),
        ("spec:\n  podSelector: {}\n  ingress: [{ports: [{protocol: ICMP, port: 80}]}]", "spec.ingress[0].ports[0].protocol"),
        ("spec:\n  podSelector: {}\n  ingress: [{from: [{}]}]", "spec.ingress[0].from[0]"),
        ("spec:\n  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]", "spec.ingress[0].from[0]"),
        ("spec:\n  podSelector: {}\n  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}]}]", "spec.egress[0].to[0].ipBlock.except[0]"),
        ("spec:\n  podSelector: {}\n  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/8]}}]}]", "spec.egress[0].to[0].ipBlock.except[0]"),
        ("spec:\n  podSelector: {}\n  egress: [{to: [{ipBlock: {cidr: \"fd00::/64\"}}]}]", "spec.egress[0].to[0].ipBlock.cidr"),
        ("spec:\n  podSelector: {}\n  egress: [{to: [{ipBlock: {cidr: 10.0.0.0}}]}]", "spec.egress[0].to[0].ipBlock.cidr"),
        ("metadata: {name: p, namespace: Bad_NS}\nspec:\n  podSelector: {}", "metadata.namespace"),
        ("spec: {}", "spec.podSelector"),
    ])
    func refusals(_ yaml: String, _ field: String) throws {
        let text = "apiVersion: mizar.com/v1\nkind: NetworkPolicy\n" + (yaml.hasPrefix("metadata") ? "" : "metadata: {name: p, namespace: x}\n") + yaml
        do {
            let o = try YAMLDecoder().decode(AnyMizarObject.self, from: text)
            try o.validate()
            Issue.record("accepted:\n\(text)")
        } catch let e as ValidationError {
            #expect(e.field == field, "\(e)")
        } catch let e as DecodingError {
            let v = ObjectCoding.validationError(e)
            #expect(v.field == field, "\(v)")
        }
    }

    @Test("a Namespace gets its name label; endpoints take a namespace, labels and named ports; bad ones are refused")
    func namespacesAndEndpoints() throws {
        var meta = ObjectMeta(name: "x", labels: ["env": "prod"])
        NamespaceSpec.normalize(&meta)
        #expect(meta.labels == ["env": "prod", namespaceNameLabel: "x"])
        var e = Endpoint(name: "e", namespace: "x", spec: EndpointSpec(vpc: "v", subnet: "s"), labels: ["pod": "a"])
        e.spec.ports = Conformance.namedPorts()
        try e.validate()
        #expect(e.storeName == "e")
        var bad = e
        bad.spec.ports = [EndpointPort(name: "dup", port: 80), EndpointPort(name: "dup", port: 81)]
        #expect(throws: ValidationError(field: "spec.ports[1].name", reason: "\"dup\" names two ports")) { try bad.validate() }
        bad.spec.ports = [EndpointPort(port: 80, targetPort: 81)]
        #expect((try? bad.validate()) == nil)
        bad = e
        bad.metadata.labels = ["ok": "not ok!"]
        #expect(throws: ValidationError.self) { try bad.validate() }
        var vpc = Vpc(name: "v", spec: VpcSpec(cidr: "10.0.0.0/16"))
        vpc.metadata.namespace = "x"
        #expect(throws: ValidationError(field: "metadata.namespace", reason: "a Vpc is not namespaced")) { try vpc.validate() }
        var scaled = Endpoint(name: "s", spec: EndpointSpec(vpc: "v", subnet: "s", type: .scaled, ports: [EndpointPort(port: 80, protocol: .sctp)]))
        #expect(throws: ValidationError(field: "spec.ports[0].protocol", reason: "a scaled endpoint serves TCP and UDP")) { try scaled.validate() }
        scaled.spec.ports = [EndpointPort(name: "http", port: 80, protocol: .tcp, targetPort: 8080)]
        try scaled.validate()
    }
}
