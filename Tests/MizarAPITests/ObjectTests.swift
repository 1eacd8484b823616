import MizarAPI
import MizarCore
import Testing

func json(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Decodes and validates a document; the error's text, or nil if accepted.
func verdict(_ document: String) -> String? {
    do {
        let o = try ObjectCoding.decode(AnyMizarObject.self, from: json(document))
        try o.validate()
        return nil
    } catch {
        return "\(error)"
    }
}

@Suite("objects")
struct ObjectTests {
    @Test("objects of every kind survive encoding and decoding unchanged")
    func roundTrip() throws {
        var vpc = Vpc(name: "tenant-a", spec: VpcSpec(cidr: "10.0.0.0/16", dividers: 2))
        vpc.status = VpcStatus()
        vpc.status?.vni = try VNI(4097)
        vpc.status?.common.phase = .provisioned
        let all: [AnyMizarObject] = [
            .vpc(vpc),
            .subnet(Subnet(name: "a-1", spec: SubnetSpec(vpc: "tenant-a", cidr: "10.0.1.0/24", bouncers: 2))),
            .endpoint(Endpoint(name: "web", spec: EndpointSpec(vpc: "tenant-a", subnet: "a-1", ip: "10.0.1.5"))),
            .vpc(Vpc(name: "tenant-b", spec: VpcSpec(cidr: "10.0.0.0/16", egress: VpcEgress(mode: .snat)))),
            .endpoint(Endpoint(name: "site", spec: EndpointSpec(vpc: "tenant-a", subnet: "a-1", type: .scaled,
                                                             ports: [EndpointPort(port: 80, targetPort: 8080, hostPort: 30080)], backends: ["web"],
                                                             publishOn: ["h1", "h2"]))),
            .droplet(Droplet(name: "h1", spec: DropletSpec(ip: "172.30.0.1", mac: "02:4d:00:00:00:01", transitd: "172.30.0.1:7070"))),
            .bouncer(Bouncer(name: "a-1-b0", spec: BouncerSpec(vpc: "tenant-a", subnet: "a-1", droplet: "h1"))),
            .divider(Divider(name: "tenant-a-d0", spec: DividerSpec(vpc: "tenant-a", droplet: "h2"))),
        ]
        for o in all {
            let bytes = ObjectCoding.encode(o)
            let back = try ObjectCoding.decode(AnyMizarObject.self, from: bytes)
            #expect(back == o)
            #expect(ObjectCoding.encode(back) == bytes, "encoding is not canonical")
            try o.validate()
        }
        let text = String(decoding: ObjectCoding.encode(all[0]), as: UTF8.self)
        #expect(text.hasPrefix("{\"apiVersion\":\"mizar.com/v1\",\"kind\":\"Vpc\",\"metadata\":{\"name\":\"tenant-a\"}"))
    }

    @Test("bad documents are refused with the field and the reason", arguments: [
        (#"{"apiVersion":"mizar.com/v1","kind":"Vpc","metadata":{"name":"a"},"spec":{}}"#, "spec.cidr: required"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Vpc","metadata":{"name":"a"},"spec":{"cidr":7}}"#, "spec.cidr: expected a string"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Vpc","metadata":{"name":"a"},"spec":{"cidr":"10.0.0.0/33"}}"#, "spec.cidr:"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Vpc","metadata":{"name":"a"},"spec":{"cidr":"10.0.0.0/30"}}"#, "spec.cidr: /30 is out of range"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Vpc","metadata":{"name":"a"},"spec":{"cidr":"10.0.0.0/16","dividers":0}}"#, "spec.dividers: 0 is out of range"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Vpc","metadata":{"name":"a"},"spec":{"cidr":"10.0.0.0/16","vni":16777216}}"#, "spec.vni:"),
        (#"{"apiVersion":"mizar.com/v2","kind":"Vpc","metadata":{"name":"a"},"spec":{"cidr":"10.0.0.0/16"}}"#, "apiVersion:"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Router","metadata":{"name":"a"},"spec":{}}"#, "kind: unknown kind \"Router\""),
        (#"{"apiVersion":"mizar.com/v1","kind":"Vpc","metadata":{"name":"Tenant_A"},"spec":{"cidr":"10.0.0.0/16"}}"#, "metadata.name: \"Tenant_A\" is not a DNS label"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Vpc","metadata":{"name":""},"spec":{"cidr":"10.0.0.0/16"}}"#, "metadata.name: must not be empty"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Vpc","spec":{"cidr":"10.0.0.0/16"}}"#, "metadata: required"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Subnet","metadata":{"name":"s"},"spec":{"vpc":"a","cidr":"10.0.1.0/24","bouncers":17}}"#, "spec.bouncers: 17 is out of range"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Subnet","metadata":{"name":"s"},"spec":{"cidr":"10.0.1.0/24"}}"#, "spec.vpc: required"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Endpoint","metadata":{"name":"e"},"spec":{"vpc":"a","subnet":"s","ip":"10.0.1.300"}}"#, "spec.ip:"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Endpoint","metadata":{"name":"e"},"spec":{"vpc":"a","subnet":"s","mac":"01:00:5e:00:00:01"}}"#, "spec.mac: 01:00:5e:00:00:01 is a multicast address"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Endpoint","metadata":{"name":"e"},"spec":{"vpc":"a","subnet":"s","mac":"zz"}}"#, "spec.mac:"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Endpoint","metadata":{"name":"e"},"spec":{"vpc":"a","subnet":"s","netns":"ns1"}}"#, "spec.netns:"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Endpoint","metadata":{"name":"e"},"spec":{"vpc":"a","subnet":"s","ifname":"eth1"}}"#, "spec.ifname: names the interface inside spec.netns"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Endpoint","metadata":{"name":"e"},"spec":{"vpc":"a","subnet":"s","netns":"/run/netns/x","ifname":"eth0/1"}}"#, "spec.ifname: \"eth0/1\" is not an interface name"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Endpoint","metadata":{"name":"e"},"spec":{"vpc":"a","subnet":"s","netns":"/run/netns/x","ifname":"abcdefghijklmnop"}}"#, "spec.ifname:"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Endpoint","metadata":{"name":"e"},"spec":{"vpc":"a","subnet":"s","type":"scaled"}}"#, "spec.ports: a scaled endpoint needs at least one port"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Endpoint","metadata":{"name":"e"},"spec":{"vpc":"a","subnet":"s","type":"scaled","ports":[]}}"#, "spec.ports: a scaled endpoint needs at least one port"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Endpoint","metadata":{"name":"e"},"spec":{"vpc":"a","subnet":"s","type":"scaled","ports":[{"port":0}]}}"#, "spec.ports[0].port: 0 is out of range 1...65535"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Endpoint","metadata":{"name":"e"},"spec":{"vpc":"a","subnet":"s","type":"scaled","ports":[{"port":80,"targetPort":70000}]}}"#, "spec.ports[0].targetPort: 70000 is out of range"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Endpoint","metadata":{"name":"e"},"spec":{"vpc":"a","subnet":"s","type":"scaled","ports":[{"port":80,"protocol":"SCTP"}]}}"#, "spec.ports[0].protocol: a scaled endpoint serves TCP and UDP"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Endpoint","metadata":{"name":"e"},"spec":{"vpc":"a","subnet":"s","type":"scaled","ports":[{"port":80},{"port":80,"protocol":"tcp"}]}}"#, "spec.ports[1]: 80/TCP appears twice"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Endpoint","metadata":{"name":"e"},"spec":{"vpc":"a","subnet":"s","type":"scaled","ports":[{"port":80}],"droplet":"h1"}}"#, "spec.droplet: a scaled endpoint lives on its subnet"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Endpoint","metadata":{"name":"e"},"spec":{"vpc":"a","subnet":"s","type":"scaled","ports":[{"port":80}],"backends":["a","a"]}}"#, "spec.backends: a backend is named twice"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Endpoint","metadata":{"name":"e"},"spec":{"vpc":"a","subnet":"s","type":"scaled","ports":[{"port":80}],"backends":["Bad_Name"]}}"#, "spec.backends[0]:"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Endpoint","metadata":{"name":"e"},"spec":{"vpc":"a","subnet":"s","ports":[{"port":80,"targetPort":81}]}}"#, "spec.ports[0].targetPort: only a scaled endpoint's ports have a target"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Vpc","metadata":{"name":"a"},"spec":{"cidr":"10.0.0.0/16","egress":{"mode":"NAT"}}}"#, "spec.egress.mode: \"NAT\" is not \"SNAT\""),
        (#"{"apiVersion":"mizar.com/v1","kind":"Vpc","metadata":{"name":"a"},"spec":{"cidr":"10.0.0.0/16","egress":{}}}"#, "spec.egress.mode: required"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Endpoint","metadata":{"name":"e"},"spec":{"vpc":"a","subnet":"s","ports":[{"port":80,"hostPort":30080}]}}"#, "spec.ports[0].hostPort: only a scaled endpoint is published on host ports"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Endpoint","metadata":{"name":"e"},"spec":{"vpc":"a","subnet":"s","publishOn":["h1"]}}"#, "spec.publishOn: only a scaled endpoint is published"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Endpoint","metadata":{"name":"e"},"spec":{"vpc":"a","subnet":"s","type":"scaled","ports":[{"port":80,"hostPort":8080}]}}"#, "spec.ports[0].hostPort: 8080 is out of range 30000...32767"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Endpoint","metadata":{"name":"e"},"spec":{"vpc":"a","subnet":"s","type":"scaled","ports":[{"port":80,"hostPort":30080},{"port":81,"hostPort":30080}]}}"#, "spec.ports[1].hostPort: TCP 30080 is published twice"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Endpoint","metadata":{"name":"e"},"spec":{"vpc":"a","subnet":"s","type":"scaled","ports":[{"port":80}],"publishOn":["h1"]}}"#, "spec.publishOn: no port has a hostPort"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Endpoint","metadata":{"name":"e"},"spec":{"vpc":"a","subnet":"s","type":"scaled","ports":[{"port":80,"hostPort":30080}],"publishOn":["h1","h1"]}}"#, "spec.publishOn: a droplet is named twice"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Endpoint","metadata":{"name":"e"},"spec":{"vpc":"a","subnet":"s","type":"service"}}"#, "spec.type: \"service\" is not \"simple\" or \"scaled\""),
        (#"{"apiVersion":"mizar.com/v1","kind":"Droplet","metadata":{"name":"h"},"spec":{"ip":"172.30.0.1","mac":"02:00:00:00:00:01","transitd":"nohost"}}"#, "spec.transitd:"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Bouncer","metadata":{"name":"b"},"spec":{"vpc":"a","subnet":"s"}}"#, "spec.droplet: required"),
        (#"{"apiVersion":"mizar.com/v1","kind":"Vpc","metadata":{"name":"a"},"spec":{"cidr":"10.0.0.0/16"}"#, "(document): not valid JSON"),
    ])
    func refused(_ document: String, _ expected: String) {
        let v = verdict(document)
        #expect(v?.hasPrefix(expected) == true, "got \(v ?? "accepted"), want \(expected)…")
    }

    @Test("typed spec fields are stored as the text and numbers they were written as")
    func storedFormat() throws {
        let vpc = #"{"apiVersion":"mizar.com/v1","kind":"Vpc","metadata":{"name":"a"},"spec":{"cidr":"10.0.0.0/16","vni":4242}}"#
        let service = #"{"apiVersion":"mizar.com/v1","kind":"Endpoint","metadata":{"name":"e"},"spec":{"backends":["b"],"ip":"10.0.1.9","mac":"02:00:0a:00:01:09","ports":[{"port":53,"protocol":"UDP","targetPort":5353}],"subnet":"s","type":"scaled","vpc":"a"}}"#
        let droplet = #"{"apiVersion":"mizar.com/v1","kind":"Droplet","metadata":{"name":"h"},"spec":{"ip":"172.30.0.1","mac":"02:4d:00:00:00:01","transitd":"172.30.0.1:7070"}}"#
        for document in [vpc, service, droplet] {
            let o = try ObjectCoding.decode(AnyMizarObject.self, from: json(document))
            try o.validate()
            #expect(String(decoding: ObjectCoding.encode(o), as: UTF8.self) == document)
        }
        guard case .endpoint(let e) = try ObjectCoding.decode(AnyMizarObject.self, from: json(service)) else {
            Issue.record("not an endpoint"); return
        }
        #expect(e.spec.type == .scaled && e.spec.ip == IPv4Address(value: 0x0a00_0109))
        #expect(try e.spec.servicePorts() == [ServicePort(proto: .udp, port: 53, targetPort: 5353)])
        // A protocol in lower case is read, and written back as the API spells it.
        let lower = #"{"apiVersion":"mizar.com/v1","kind":"Endpoint","metadata":{"name":"e"},"spec":{"ports":[{"port":80,"protocol":"tcp"}],"subnet":"s","type":"scaled","vpc":"a"}}"#
        let again = String(decoding: ObjectCoding.encode(try ObjectCoding.decode(AnyMizarObject.self, from: json(lower))), as: UTF8.self)
        #expect(again == lower.replacing("\"tcp\"", with: "\"TCP\""))
    }

    @Test("kinds are named as kubectl names them")
    func kinds() throws {
        #expect(try Kind(parsing: "vpc") == .vpc)
        #expect(try Kind(parsing: "Subnets") == .subnet)
        #expect(try Kind(parsing: "endpoints") == .endpoint)
        #expect(throws: ValidationError(field: "kind", reason: "unknown kind \"pods\"; expected one of Vpc, Subnet, Endpoint, Droplet, Bouncer, Divider, Namespace, NetworkPolicy")) {
            try Kind(parsing: "pods")
        }
    }
}
