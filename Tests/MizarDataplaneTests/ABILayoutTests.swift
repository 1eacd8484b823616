import CMizarABI
@testable import MizarDataplane
import MizarCore
import Testing

/// The Swift view of a type: size and member offsets, from MemoryLayout.
func swiftLayout<T>(_ type: T.Type, _ members: [(String, PartialKeyPath<T>)]) -> (size: Int, members: [String: Int]) {
    (MemoryLayout<T>.size, Dictionary(uniqueKeysWithValues: members.map { ($0.0, MemoryLayout<T>.offset(of: $0.1)!) }))
}

/// What Swift expects of every shared map: key and value layouts.
let swiftMaps: [String: (key: (size: Int, members: [String: Int])?, value: (size: Int, members: [String: Int])?)] = {
    let u32 = swiftLayout(UInt32.self, [])
    let host = swiftLayout(mz_host.self, [("ip", \.ip), ("mac", \.mac), ("reserved", \.reserved)])
    let epKey = swiftLayout(mz_ep_key.self, [("vni", \.vni), ("ip", \.ip)])
    let counter = swiftLayout(mz_counter.self, [("packets", \.packets), ("bytes", \.bytes)])
    return [
        "mz_droplet": (u32, swiftLayout(mz_droplet.self, [("self", \.self), ("ifindex", \.ifindex), ("reserved", \.reserved)])),
        "mz_knobs": (u32, swiftLayout(mz_knobs.self, [("trace", \.trace), ("reserved", \.reserved)])),
        "mz_vpcs": (swiftLayout(mz_vpc_key.self, [("vni", \.vni)]),
                    swiftLayout(mz_vpc.self, [("flags", \.flags), ("n_dividers", \.n_dividers), ("dividers", \.dividers),
                                              ("cidr_ip", \.cidr_ip), ("cidr_prefixlen", \.cidr_prefixlen), ("reserved", \.reserved)])),
        "mz_subnets": (swiftLayout(mz_subnet_key.self, [("prefixlen", \.prefixlen), ("vni", \.vni), ("ip", \.ip)]),
                       swiftLayout(mz_subnet.self, [("vni", \.vni), ("ip", \.ip), ("prefixlen", \.prefixlen), ("flags", \.flags),
                                                    ("n_bouncers", \.n_bouncers), ("bouncers", \.bouncers)])),
        "mz_endpoints": (epKey, swiftLayout(mz_endpoint.self, [("host", \.host), ("mac", \.mac), ("kind", \.kind), ("flags", \.flags)])),
        "mz_local": (epKey, swiftLayout(mz_local_ep.self, [("ifindex", \.ifindex), ("mac", \.mac), ("reserved", \.reserved),
                                                          ("reserved2", \.reserved2), ("revoked_ns", \.revoked_ns)])),
        "mz_ifaces": (swiftLayout(mz_iface_key.self, [("ifindex", \.ifindex)]),
                      swiftLayout(mz_iface.self, [("vni", \.vni), ("ip", \.ip), ("mac", \.mac), ("subnet_prefixlen", \.subnet_prefixlen),
                                                  ("flags", \.flags), ("subnet_ip", \.subnet_ip), ("gateway_ip", \.gateway_ip),
                                                  ("gateway_mac", \.gateway_mac), ("reserved", \.reserved), ("revoked_ns", \.revoked_ns)])),
        "mz_hostcache": (epKey, swiftLayout(mz_cached_host.self, [("host", \.host), ("flags", \.flags), ("learned_ns", \.learned_ns)])),
        "mz_droplets": (swiftLayout(mz_droplet_key.self, [("ip", \.ip)]),
                        swiftLayout(mz_droplet_entry.self, [("mac", \.mac), ("reserved", \.reserved)])),
        "mz_counters": (u32, counter),
        "mz_drops": (u32, counter),
        "mz_events": (nil, nil),
        "_host": (nil, host),
        "mz_services": (epKey, (Int(MZ_SVC_VALUE_SIZE), ["hdr": 0, "backends": Int(MZ_SVC_BACKENDS_OFFSET),
                                                          "table": Int(MZ_SVC_TABLE_OFFSET)])),
        "mz_nat_active": (u32, u32),
        "mz_nat": (swiftLayout(mz_flow_key.self, [("vni", \.vni), ("src", \.src), ("dst", \.dst), ("sport", \.sport),
                                                  ("dport", \.dport), ("proto", \.proto), ("reserved", \.reserved)]),
                   swiftLayout(mz_nat.self, [("to_ip", \.to_ip), ("to_port", \.to_port), ("flags", \.flags), ("vip", \.vip),
                                             ("backend", \.backend), ("created_ns", \.created_ns)])),
        "mz_svc_clients": (swiftLayout(mz_svc_client_key.self, [("vni", \.vni), ("vip", \.vip), ("host_ip", \.host_ip)]),
                           swiftLayout(mz_svc_client.self, [("last_ns", \.last_ns)])),
        "mz_vpc_stats": (u32, swiftLayout(mz_vpc_stat.self, [("forwarded", \.forwarded), ("dropped", \.dropped)])),
        "mz_trace_vpcs": (swiftLayout(mz_trace_vpc_key.self, [("vni", \.vni)]), u32),
        "mz_svc_stats": (swiftLayout(mz_svc_stat_key.self, [("vni", \.vni), ("vip", \.vip), ("backend", \.backend)]), counter),
        "mz_pol_eps": (epKey, swiftLayout(mz_pol_ep.self, [("members", \.members), ("ingress", \.ingress), ("egress", \.egress),
                                                          ("n_named", \.n_named), ("reserved", \.reserved), ("named", \.named)])),
        "mz_pol_sets": (swiftLayout(mz_pol_set_key.self, [("vni", \.vni), ("reserved", \.reserved), ("id", \.id)]),
                        swiftLayout(mz_pol_set.self, [("n_rules", \.n_rules), ("reserved", \.reserved), ("rules", \.rules)])),
        "mz_pol_blocks": (swiftLayout(mz_pol_block_key.self, [("prefixlen", \.prefixlen), ("vni", \.vni), ("ip", \.ip)]),
                          swiftLayout(mz_pol_bits.self, [("w", \.w)])),
        "mz_ct": (swiftLayout(mz_flow_key.self, [("vni", \.vni), ("src", \.src), ("dst", \.dst), ("sport", \.sport),
                                                 ("dport", \.dport), ("proto", \.proto), ("reserved", \.reserved)]),
                  swiftLayout(mz_ct.self, [("admitted_ns", \.admitted_ns), ("seen_ns", \.seen_ns), ("state", \.state), ("flags", \.flags),
                                           ("proto", \.proto), ("reserved", \.reserved), ("reserved2", \.reserved2)])),
        "mz_snat_out": (swiftLayout(mz_flow_key.self, [("vni", \.vni), ("src", \.src), ("dst", \.dst), ("sport", \.sport),
                                                       ("dport", \.dport), ("proto", \.proto), ("reserved", \.reserved)]),
                        swiftLayout(mz_snat.self, [("port", \.port), ("reserved", \.reserved), ("reserved2", \.reserved2),
                                                   ("created_ns", \.created_ns)])),
        "mz_published": (swiftLayout(mz_pub_key.self, [("proto", \.proto), ("reserved", \.reserved), ("port", \.port)]),
                         swiftLayout(mz_pub.self, [("vni", \.vni), ("vip", \.vip), ("vip_port", \.vip_port), ("reserved", \.reserved)])),
        "mz_pub_flows": (swiftLayout(mz_pub_flow_key.self, [("client", \.client), ("client_port", \.client_port), ("port", \.port),
                                                            ("proto", \.proto), ("reserved", \.reserved)]),
                         swiftLayout(mz_pub_flow.self, [("vni", \.vni), ("backend", \.backend), ("backend_port", \.backend_port),
                                                        ("nat_port", \.nat_port), ("host", \.host), ("client_mac", \.client_mac),
                                                        ("reserved", \.reserved), ("created_ns", \.created_ns)])),
        "mz_pub_back": (swiftLayout(mz_pub_back_key.self, [("vni", \.vni), ("backend", \.backend), ("backend_port", \.backend_port),
                                                           ("nat_port", \.nat_port), ("proto", \.proto), ("reserved", \.reserved)]),
                        swiftLayout(mz_pub_back.self, [("client", \.client), ("client_port", \.client_port), ("port", \.port),
                                                       ("client_mac", \.client_mac), ("state", \.state), ("flags", \.flags),
                                                       ("seen_ns", \.seen_ns)])),
        "mz_snat_in": (swiftLayout(mz_snat_in_key.self, [("remote", \.remote), ("remote_port", \.remote_port), ("port", \.port),
                                                         ("proto", \.proto), ("reserved", \.reserved)]),
                       swiftLayout(mz_snat_back.self, [("vni", \.vni), ("ip", \.ip), ("port", \.port), ("state", \.state),
                                                       ("flags", \.flags), ("reserved2", \.reserved2), ("created_ns", \.created_ns),
                                                       ("seen_ns", \.seen_ns)])),
    ]
}()

extension DataplaneTests {
    @Suite struct ABILayout {
        /// Every map in every built object has the key and value layout Swift
        /// uses: the header cannot drift from the objects or from Swift.
        @Test func btfMatchesSwift() throws {
            let env = try TestEnvironment.get()
            let layouts = env.dataplane.btfLayouts()
            #expect(layouts.count == 4 * Dataplane.sharedMaps.count, "every shared map in all four objects")
            for l in layouts {
                let name = "\(l.map) in \(l.object.split(separator: "/").last!)"
                guard let want = swiftMaps[l.map] else {
                    Issue.record("\(name): no Swift layout for this map")
                    continue
                }
                #expect(l.key?.size == want.key?.size, "\(name): key size")
                #expect(l.value?.size == want.value?.size, "\(name): value size")
                if let k = want.key { #expect(Int(l.keySize) == k.size, "\(name): map key_size") }
                if let v = want.value { #expect(Int(l.valueSize) == v.size, "\(name): map value_size") }
                if let k = l.key, let w = want.key, !w.members.isEmpty { #expect(k.members == w.members, "\(name): key members") }
                if let v = l.value, let w = want.value, !w.members.isEmpty { #expect(v.members == w.members, "\(name): value members") }
            }
        }

        /// The check can fail: a layout that differs by one member is caught.
        @Test func driftIsDetected() throws {
            let env = try TestEnvironment.get()
            let endpoints = try #require(env.dataplane.btfLayouts().first { $0.map == "mz_endpoints" }?.value)
            var members = swiftMaps["mz_endpoints"]!.value!.members
            #expect(endpoints.members == members)
            members["kind"] = 15
            #expect(endpoints.members != members)
        }

        /// The host ports the API admits (PublishedHostPort.range) are those the data
        /// plane publishes.
        @Test func hostPortRangeMatches() {
            #expect(PublishedHostPort.range == UInt16(MZ_PUB_FIRST_PORT)...UInt16(MZ_PUB_LAST_PORT))
        }
    }
}
