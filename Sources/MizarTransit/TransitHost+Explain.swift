import MizarCore
import MizarDataplane
import MizarPacket
import MizarRPC

extension TransitHost {
    /// What this host's data plane would do with `frame`, arriving from the
    /// local endpoint `endpoint` or (nil) on the droplet interface: the
    /// explain build's run over this host's tables, and the table reads
    /// that explain its choice. Writes nothing.
    public func explain(_ frame: [UInt8], from endpoint: (vni: VNI, ip: IPv4Address)?, with explainer: Explainer) throws -> Mizar_Transit_V1_ExplainReply {
        var reply = Mizar_Transit_V1_ExplainReply()
        reply.droplet = "\(droplet.ip)"
        let run: Explained
        if let endpoint {
            guard let info = interfaces[EndpointKey(vni: endpoint.vni, ip: endpoint.ip)] else {
                throw TransitError(.notFound, field: "endpoint_ip", "no endpoint interface for \(endpoint.ip) in VNI \(endpoint.vni) on this host")
            }
            run = try explainer.explain(frame, program: .agent, ifindex: info.hostIfindex)
            reply.arrived = "endpoint"
        } else {
            run = try explainer.explain(frame, program: .transit, ifindex: dropletIfindex)
            reply.arrived = "droplet"
        }
        reply.verdict = run.verdict
        reply.reason = run.reason
        reply.path = run.path
        reply.frame = .init(run.frame)
        if run.intoEndpoint || (run.verdict == "redirect" && run.targetIfindex != dropletIfindex) {
            if let into = interfaces.first(where: { $0.value.hostIfindex == run.targetIfindex }) {
                reply.deliveredVni = into.key.vni.value
                reply.deliveredIp = "\(into.key.ip)"
            }
        } else if run.verdict == "tx" || run.verdict == "redirect" {
            reply.nextHop = run.nextHop.map { "\($0)" } ?? outerDestination(run.frame) ?? ""
        }
        reply.lookups = lookups(frame, endpoint: endpoint, vni: run.vni)
        return reply
    }

    /// The outer IPv4 destination of a frame, if it has one.
    private func outerDestination(_ frame: [UInt8]) -> String? {
        (try? ParsedFrame(frame))?.ipv4.map { "\($0.dst)" }
    }

    /// The tables the programs read for this packet, as they are now.
    private func lookups(_ frame: [UInt8], endpoint: (vni: VNI, ip: IPv4Address)?, vni: UInt32) -> [Mizar_Transit_V1_Lookup] {
        guard let parsed = try? ParsedFrame(frame) else { return [] }
        let inner = endpoint == nil ? (parsed.inner ?? parsed) : parsed
        guard let ip = inner.ipv4, let v = try? VNI(endpoint?.vni.value ?? parsed.geneve?.vni ?? vni) else { return [] }
        var out: [Mizar_Transit_V1_Lookup] = []
        func add(_ table: String, _ key: String, _ entry: String?) {
            var l = Mizar_Transit_V1_Lookup()
            l.table = table
            l.key = key
            l.entry = entry ?? "none"
            out.append(l)
        }
        let key = "VNI \(v.value), \(ip.dst)"
        let dp = dataplane
        add("mz_local", key, (try? dp.hasLocal(v, ip.dst)) == true
            ? interfaces[EndpointKey(vni: v, ip: ip.dst)].map { "endpoint on this host (\($0.hostIfname))" } ?? "endpoint on this host" : nil)
        add("mz_hostcache", key, (try? dp.cachedHost(v, ip.dst)).flatMap { $0 }.map { "direct path to host \($0.host.ip)" })
        let subnets = (try? dp.listSubnets(vni: v)) ?? []
        let subnet = subnets.filter { $0.cidr.contains(ip.dst) }.max { $0.cidr.prefixLength < $1.cidr.prefixLength }
        add("mz_subnets", key, subnet.map { s in
            "\(s.cidr): bouncers [\(s.bouncers.map { "\($0.ip)" }.joined(separator: ", "))]\(s.isBouncer ? ", this host is one" : "")"
        })
        if let subnet, subnet.isBouncer {
            add("mz_endpoints", key, (try? dp.endpoint(v, ip.dst)).flatMap { $0 }.map { "lives on host \($0.host.ip)\($0.kind == .scaled ? " (a scaled endpoint)" : "")" })
        }
        if let vpc = try? dp.vpc(v) {
            add("mz_vpcs", "VNI \(v.value)", "dividers [\(vpc.dividers.map { "\($0.ip)" }.joined(separator: ", "))]\(vpc.isDivider ? ", this host is one" : "")"
                + (vpc.cidr.map { ", address space \($0)" } ?? "") + (vpc.egress ? ", egress on" : ""))
        } else {
            add("mz_vpcs", "VNI \(v.value)", nil)
        }
        return out
    }
}
