import MizarCore
import MizarDataplane
import MizarRPC

/// What the Transit service asks of a host. TransitHost is the real one,
/// over the data plane and netlink; unit tests put a fake behind the same
/// service and reach it over grpc-swift's in-process transport, so the
/// service's parsing, validation and error mapping are tested without root.
public protocol TransitHosting: Sendable {
    /// The MTU an endpoint gets when none is asked for.
    var defaultEndpointMTU: UInt32 { get }
    func dropletInfo() async -> Mizar_Transit_V1_Droplet

    func putDroplets(_ hosts: [HostAddress], replace: Bool) async throws -> Bool
    func deleteDroplet(_ ip: IPv4Address) async throws -> Bool
    func listDroplets() async throws -> [HostAddress]

    func putVPC(_ e: VPCEntry) async throws -> Bool
    func deleteVPC(_ vni: VNI) async throws -> Bool
    func listVPCs(vni: VNI?) async throws -> [VPCEntry]

    func putSubnet(_ e: SubnetEntry) async throws -> Bool
    func deleteSubnet(_ vni: VNI, _ cidr: CIDR) async throws -> Bool
    func listSubnets(vni: VNI?) async throws -> [SubnetEntry]

    func putEndpoint(_ e: EndpointEntry, subnet: CIDR, policy: PolicyEndpointEntry?, sets: [PolicyUpdateSpec.Set]) async throws -> Bool
    func deleteEndpoint(_ vni: VNI, _ ip: IPv4Address) async throws -> Bool
    func listEndpoints(vni: VNI?) async throws -> [(EndpointEntry, CIDR?)]

    func createEndpointInterface(_ spec: EndpointInterfaceSpec) async throws -> (Mizar_Transit_V1_EndpointInterfaceInfo, Bool)
    func deleteEndpointInterface(_ vni: VNI, _ ip: IPv4Address) async throws -> Bool
    func listEndpointInterfaces(vni: VNI?) async -> [Mizar_Transit_V1_EndpointInterfaceInfo]

    func listHostCache(vni: VNI?) async throws -> [CachedHost]
    func invalidateHostCache(_ vni: VNI, _ ip: IPv4Address) async throws -> Bool
    func counters() async throws -> (counters: [(String, CounterValue)], drops: [(String, CounterValue)])

    func putService(_ e: ServiceEntry, mac: MACAddress, subnet: CIDR) async throws -> ServiceChange
    func deleteService(_ vni: VNI, _ vip: IPv4Address) async throws -> ServiceChange
    func serviceState(_ vni: VNI, _ vip: IPv4Address) async throws -> ServiceState?
    func listServices(vni: VNI?) async throws -> [ServiceState]
    func serviceFlows(vni: VNI?) async throws -> [NATFlow]
    func invalidateServiceFlows(_ vni: VNI, vip: IPv4Address, backends: Set<IPv4Address>?) async throws -> Int

    func putPolicy(_ u: PolicyUpdateSpec) async throws -> (changed: Int, revoked: Int)
    func policyState(vni: VNI?) async throws -> PolicyState
    func conntrack(vni: VNI?) async throws -> [ConntrackEntry]
    func snat(vni: VNI?) async throws -> SNATTable
    func putPublished(_ p: PublishedService) async throws -> Bool
    func deletePublished(_ vni: VNI, _ vip: IPv4Address) async throws -> Bool
    func listPublished(vni: VNI?) async throws -> (services: [PublishedService], flows: [PublishedFlow])
}

/// A host's egress translations, with its address and SNAT range.
public struct SNATTable: Sendable {
    public var address: IPv4Address
    /// Nil: this host translates nothing.
    public var ports: ClosedRange<UInt16>?
    public var entries: [SNATEntry]

    public init(address: IPv4Address, ports: ClosedRange<UInt16>?, entries: [SNATEntry]) {
        self.address = address
        self.ports = ports
        self.entries = entries
    }
}

extension TransitHost: TransitHosting {}
