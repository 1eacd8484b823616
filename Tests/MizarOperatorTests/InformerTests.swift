@testable import MizarOperator
import MizarAPI
import Synchronization
import Testing

extension InformerTests {
    /// What the operator writes is recorded at once and its handlers see the
    /// change then: when the write's own watch event arrives, the cache
    /// already holds it and shows no difference, so a handler that looks at
    /// what changed (a backend's status, for its services) would otherwise
    /// never see it.
    @Test("record tells the handlers of the change, once; an older version is neither recorded nor told; namespaced objects by NAMESPACE/NAME")
    func recordNotifies() {
        let informer = Informer<EndpointSpec>()
        let seen = Mutex<[(String?, String?)]>([])
        informer.onChange { old, new in
            seen.withLock { $0.append((old?.metadata.resourceVersion, new?.metadata.resourceVersion)) }
        }
        var e = Endpoint(name: "web", spec: EndpointSpec(vpc: "a", subnet: "s"))
        e.metadata.resourceVersion = "5"
        informer.record(e)
        var provisioned = e
        provisioned.status = EndpointStatus()
        provisioned.status?.common.phase = .provisioned
        provisioned.metadata.resourceVersion = "7"
        informer.record(provisioned)
        var stale = e
        stale.metadata.resourceVersion = "6"
        informer.record(stale)
        let calls = seen.withLock { $0 }
        #expect(calls.count == 2)
        #expect(calls.first.map { $0.0 == nil && $0.1 == "5" } == true)
        #expect(calls.last.map { $0.0 == "5" && $0.1 == "7" } == true)
        #expect(informer.get("web")?.status?.common.phase == .provisioned)

        let policies = Informer<NetworkPolicySpec>()
        var p = NetworkPolicy(name: "deny", namespace: "y", spec: NetworkPolicySpec())
        p.metadata.resourceVersion = "3"
        policies.record(p)
        #expect(policies.get("y/deny") != nil && policies.get("deny") == nil)
    }
}
