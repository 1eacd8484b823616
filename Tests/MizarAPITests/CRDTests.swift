import Foundation
import MizarAPI
import MizarCore
import Testing
import Yams

/// Every field path of a JSON value: "spec.cidr", "status.common.phase".
/// Array elements count under the array's path; maps of free-form keys
/// (matchLabels) are one field.
func paths(_ value: Any, _ prefix: String = "") -> Set<String> {
    if let array = value as? [Any] { return array.reduce(into: Set<String>()) { $0.formUnion(paths($1, prefix)) } }
    guard let object = value as? [String: Any], !prefix.hasSuffix("matchLabels") else { return [prefix] }
    var result: Set<String> = []
    for (k, v) in object {
        let p = prefix.isEmpty ? k : "\(prefix).\(k)"
        result.formUnion(v is [String: Any] || v is [Any] ? paths(v, p) : [p])
    }
    return result
}

/// Every property path a schema declares.
func schemaPaths(_ schema: [String: Any], _ prefix: String = "") -> Set<String> {
    if let items = schema["items"] as? [String: Any] { return schemaPaths(items, prefix) }
    guard let properties = schema["properties"] as? [String: Any], !properties.isEmpty else { return [prefix] }
    var result: Set<String> = []
    for (k, v) in properties {
        result.formUnion(schemaPaths(v as? [String: Any] ?? [:], prefix.isEmpty ? k : "\(prefix).\(k)"))
    }
    return result
}

@Suite("CRD manifests")
struct CRDTests {
    /// One object of each kind with every field set.
    static let full: [AnyMizarObject] = {
        var common = CommonStatus()
        common.phase = .provisioned
        common.reason = "r"
        common.reasonCode = .refusedByHost
        common.observedGeneration = 1
        common.provisioningDelayMs = 1
        common.controller = "op"
        var vpc = Vpc(name: "v", spec: VpcSpec(cidr: "10.0.0.0/16", dividers: 1, vni: try! VNI(5), egress: VpcEgress(mode: .snat)))
        var vs = VpcStatus(); vs.common = common; vs.vni = try! VNI(5); vs.dividers = ["d"]; vpc.status = vs
        var subnet = Subnet(name: "s", spec: SubnetSpec(vpc: "v", cidr: "10.0.1.0/24", bouncers: 1))
        var ss = SubnetStatus(); ss.common = common; ss.vni = try! VNI(5); ss.gateway = "10.0.1.1"; ss.bouncers = ["d"]; subnet.status = ss
        var ep = Endpoint(name: "e", spec: EndpointSpec(vpc: "v", subnet: "s", ip: "10.0.1.5", mac: "02:00:00:00:00:01", droplet: "d", netns: "/run/netns/x", ifname: "eth1"))
        ep.spec.type = "scaled"; ep.spec.ports = [EndpointPort(name: "http", port: 80, protocol: "TCP", targetPort: 8080, hostPort: 30080)]; ep.spec.backends = ["e2"]
        ep.spec.publishOn = ["d"]
        var es = EndpointStatus(); es.common = common; es.ip = "10.0.1.5"; es.mac = "02:00:00:00:00:01"; es.droplet = "d"
        es.backends = [EndpointBackend(name: "e2", ip: "10.0.1.6", droplet: "d")]; es.published = ["d"]; ep.status = es
        var droplet = Droplet(name: "d", spec: DropletSpec(ip: "172.30.0.1", mac: "02:00:00:00:00:02", transitd: "172.30.0.1:7070"))
        var ds = DropletStatus(); ds.common = common; ds.lease = 7; droplet.status = ds
        var bouncer = Bouncer(name: "b", spec: BouncerSpec(vpc: "v", subnet: "s", droplet: "d"))
        var plain = PlainStatus(); plain.common = common; bouncer.status = plain
        var divider = Divider(name: "dv", spec: DividerSpec(vpc: "v", droplet: "d"))
        divider.status = plain
        var namespace = Namespace(name: "x", spec: NamespaceSpec(), labels: ["env": "prod"])
        namespace.status = plain
        let selector = LabelSelector(matchLabels: ["pod": "a"], matchExpressions: [LabelSelectorRequirement(key: "tier", operator: .in, values: ["web"])])
        let peers = [NetworkPolicyPeer(podSelector: selector, namespaceSelector: selector), NetworkPolicyPeer(ipBlock: IPBlock(cidr: "10.0.0.0/8", except: ["10.1.0.0/16"]))]
        let ports = [NetworkPolicyPort(protocol: .tcp, port: .number(80), endPort: 81)]
        var policy = NetworkPolicy(name: "p", namespace: "x", spec: NetworkPolicySpec(
            podSelector: selector, policyTypes: [.ingress, .egress],
            ingress: [NetworkPolicyIngressRule(ports: ports, from: peers)], egress: [NetworkPolicyEgressRule(ports: ports, to: peers)]))
        policy.status = plain
        return [.vpc(vpc), .subnet(subnet), .endpoint(ep), .droplet(droplet), .bouncer(bouncer), .divider(divider), .namespace(namespace), .networkPolicy(policy)]
    }()

    @Test("deploy/crds.yaml has one CRD per kind whose schema names exactly the fields of the Swift types")
    func crdsMatchTypes() throws {
        let text = try String(contentsOfFile: "deploy/crds.yaml", encoding: .utf8)
        var schemas: [String: [String: Any]] = [:]
        for document in try load_all(yaml: text) {
            let crd = try #require(document as? [String: Any])
            #expect(crd["apiVersion"] as? String == "apiextensions.k8s.io/v1")
            let spec = try #require(crd["spec"] as? [String: Any])
            #expect(spec["group"] as? String == "mizar.com")
            let names = try #require(spec["names"] as? [String: Any])
            let version = try #require((spec["versions"] as? [[String: Any]])?.first)
            #expect(version["name"] as? String == "v1")
            let schema = try #require((version["schema"] as? [String: Any])?["openAPIV3Schema"] as? [String: Any])
            schemas[try #require(names["kind"] as? String)] = schema
        }
        #expect(Set(schemas.keys) == Set(Kind.allCases.map(\.rawValue)))
        for o in Self.full {
            let json = try #require(try JSONSerialization.jsonObject(with: Data(ObjectCoding.encode(o))) as? [String: Any])
            let fields = paths(json).filter { $0.hasPrefix("spec.") || $0.hasPrefix("status.") }
            let declared = schemaPaths(try #require(schemas[o.kind.rawValue])).filter { $0.hasPrefix("spec.") || $0.hasPrefix("status.") }
            #expect(fields == declared, "\(o.kind.rawValue): only in Swift \(fields.subtracting(declared).sorted()), only in the CRD \(declared.subtracting(fields).sorted())")
        }
    }
}
