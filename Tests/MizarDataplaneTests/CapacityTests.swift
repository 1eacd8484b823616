import CMizarABI
import Glibc
import MizarCore
@testable import MizarDataplane
import MizarPacket
import Testing

extension DataplaneTests {
    @Suite struct Capacity {
        /// A bouncer holds a million endpoints and still finds the last one.
        @Test func millionEndpointsInABouncer() throws {
            let env = try TestEnvironment.get()
            try env.reset()
            try seed(env, Roles(bouncerS1: true))
            let vni = try VNI(4242)
            try env.dataplane.upsertVPC(VPCEntry(vni: vni, dividers: [T.h3]))
            try env.dataplane.upsertSubnet(SubnetEntry(vni: vni, cidr: T.cidr("10.0.0.0/8"), bouncers: [T.h1], isBouncer: true))
            let hosts = [T.h2, T.h3, T.h4]
            let entries = (0..<1_000_000).map { i in
                EndpointEntry(vni: vni, ip: IPv4Address(value: 0x0a00_0000 + UInt32(i) + 2), mac: MACAddress(value: 0x0a58_0000_0000 + UInt64(i)),
                              host: hosts[i % 3])
            }
            try env.dataplane.upsertEndpoints(entries)
            let last = entries.last!
            #expect(try env.dataplane.endpoint(vni, last.ip) == last)
            let inner = P.udp(T.a5mac, last.mac, T.ip("10.0.0.1"), last.ip)
            for hook in Hook.allCases {
                let r = try env.dataplane.programs[hook]!.transit.testRun(
                    P.tunnel(from: T.h4, to: T.h1, vni: vni, rts: T.h4, inner: inner), ifindex: env.ifs.droplet)
                #expect(r.output == P.tunnel(from: T.h1, to: last.host, vni: vni, rts: T.h4, ttl: 63, inner: inner))
            }
            try env.dataplane.endpoints.clear()
        }

        /// A host with transitd's default conntrack size keeps a million
        /// admitted flows: none of them evicted, the first one included.
        @Test func millionFlowsInConntrack() throws {
            let dp = try Dataplane(objectDirectory: bpfDirectory, hooks: [.tc], settings: DataplaneSettings(policy: true))
            #expect(dp.settings.conntrackSize == 1_048_576)
            let now = Dataplane.nowNs
            var keys: [mz_flow_key] = [], values: [mz_ct] = []
            for i in 0..<1_000_000 {
                // Flows of 10.2.0.0/16 endpoints to one server, TCP 443.
                let client = IPv4Address(value: 0x0a02_0000 + UInt32(i / 50_000)), port = UInt16(10_000 + i % 50_000)
                keys.append(mz_flow_key(vni: T.vniA.value, src: client.networkOrder, dst: T.ip("10.3.0.1").networkOrder,
                                        sport: port.bigEndian, dport: UInt16(443).bigEndian, proto: 6, reserved: (0, 0, 0)))
                values.append(mz_ct(admitted_ns: now, seen_ns: now, state: UInt8(MZ_CT_ESTABLISHED.rawValue), flags: 0, proto: 6, reserved: 0, reserved2: 0))
            }
            for start in stride(from: 0, to: keys.count, by: 10_000) {
                try dp.conntrack.updateBatch(keys: Array(keys[start..<start + 10_000]), values: Array(values[start..<start + 10_000]))
            }
            let held = try dp.conntrack.keys()
            #expect(held.count == 1_000_000)
            // Map pressure counts them all, in batches (its time printed, not asserted).
            let start = ContinuousClock.now
            let pressure = try dp.mapPressure().first { $0.map == "mz_ct" }
            print("map pressure: \(pressure?.entries ?? -1) conntrack entries of \(pressure?.capacity ?? -1) counted (with 16 other tables) in \(ContinuousClock.now - start)")
            #expect(pressure?.entries == 1_000_000 && pressure?.capacity == 1_048_576)
            #expect(try dp.conntrack.lookup(keys[0]) != nil, "the first flow was evicted")
            #expect(try dp.conntrack.lookup(keys[999_999]) != nil)
        }

        /// A host serves thousands of local endpoints: no fixed device table.
        @Test func thousandsOfLocalEndpoints() throws {
            let env = try TestEnvironment.get()
            try env.reset()
            try seed(env, Roles())
            let subnet = T.cidr("10.1.0.0/16")
            let vni = try VNI(4343)
            try env.dataplane.upsertVPC(VPCEntry(vni: vni, dividers: [T.h3]))
            for i in 0..<4096 {
                try env.dataplane.upsertLocal(LocalEndpoint(
                    vni: vni, ip: IPv4Address(value: subnet.address.value + UInt32(i) + 2), mac: MACAddress(value: 0x0a59_0000_0000 + UInt64(i)),
                    ifindex: 100_000 + UInt32(i), subnet: subnet, gateway: IPv4Address(value: subnet.address.value + 1), gatewayMAC: T.gwMAC))
            }
            let ip = IPv4Address(value: subnet.address.value + 4095 + 2)
            let inner = P.udp(T.a5mac, T.gwMAC, T.ip("10.1.0.1"), ip)
            for hook in Hook.allCases {
                _ = try env.events.drain()
                let r = try env.dataplane.programs[hook]!.transit.testRun(
                    P.tunnel(from: T.h4, to: T.h1, vni: vni, rts: T.h4, inner: inner), ifindex: env.ifs.droplet)
                #expect(r.output == P.withDstMAC(inner, MACAddress(value: 0x0a59_0000_0000 + 4095)))
                #expect(try env.events.drain().first?.target_ifindex == 100_000 + 4095)
            }
        }

        /// Map pressure counts exactly what the tables hold, against their
        /// real capacity.
        @Test func mapPressureCounts() throws {
            let env = try TestEnvironment.get()
            try env.reset()
            let vni = try VNI(4444)
            let entries = (0..<3000).map { i in
                EndpointEntry(vni: vni, ip: IPv4Address(value: 0x0a07_0000 + UInt32(i) + 2), mac: MACAddress(value: 0x0a57_0000_0000 + UInt64(i)),
                              host: T.h2)
            }
            try env.dataplane.upsertEndpoints(entries)
            let pressure = Dictionary(uniqueKeysWithValues: try env.dataplane.mapPressure().map { ($0.map, $0) })
            #expect(pressure["mz_endpoints"] == MapPressure(map: "mz_endpoints", entries: 3000, capacity: Int(MZ_MAX_ENDPOINTS)))
            #expect(pressure["mz_ct"]?.capacity == Int(env.dataplane.settings.conntrackSize))
            #expect(pressure["mz_ct"]?.entries == (try env.dataplane.conntrack.keys().count))
            #expect(pressure["mz_services"]?.entries == 0 && pressure.count == 17)
            try env.dataplane.endpoints.clear()
            #expect(try env.dataplane.mapPressure().first { $0.map == "mz_endpoints" }?.entries == 0)
        }

        /// Tracing every packet with nobody reading: the ring fills, and
        /// each event that does not fit is counted as lost, none silently.
        @Test func fullEventsRingCountsLost() throws {
            let env = try TestEnvironment.get()
            try env.reset()
            try seed(env, Roles(bouncerS1: true))
            let runs: UInt32 = 25_000   // more than the 1 MiB ring holds (about 18,700)
            let packet = P.tunnel(from: T.h4, to: T.h1, vni: T.vniA, rts: T.h4, inner: P.udp(T.a5mac, T.gwMAC, T.a5, T.a1))
            for hook in Hook.allCases {
                while try !env.events.drain().isEmpty {}
                let before = try env.dataplane.counterValues()["trace_lost"]?.packets ?? 0
                _ = try env.dataplane.programs[hook]!.transit.testRun(packet, ifindex: env.ifs.droplet, repeat: runs)
                let lost = (try env.dataplane.counterValues()["trace_lost"]?.packets ?? 0) - before
                var emitted = 0
                while case let batch = try env.events.drain(max: 4096), !batch.isEmpty { emitted += batch.count }
                #expect(lost > 0 && emitted > 10_000, "\(hook): \(emitted) events emitted, \(lost) lost")
                #expect(UInt64(emitted) + lost == UInt64(runs), "\(hook): \(emitted) emitted + \(lost) lost != \(runs) runs")
            }
        }
    }

    @Suite struct Errors {
        @Test func missingObjectNamesCallAndErrno() {
            #expect {
                _ = try Dataplane(objectDirectory: "/nonexistent-mizar")
            } throws: { error in
                guard let e = error as? SystemError else { return false }
                return e.call == "bpf_object__open_file" && e.errno == ENOENT && "\(e)".contains("/nonexistent-mizar/transit.xdp.o")
            }
        }

        @Test func tooManyDividersChangesNothing() throws {
            let env = try TestEnvironment.get()
            try env.reset()
            let vni = try VNI(77)
            let many = (0..<33).map { HostAddress(ip: IPv4Address(value: 0xc0a8_0000 + UInt32($0)), mac: T.h2.mac) }
            #expect { try env.dataplane.upsertVPC(VPCEntry(vni: vni, dividers: many)) } throws: { error in
                (error as? ValidationError)?.field == "dividers"
            }
            #expect(try env.dataplane.vpc(vni) == nil)
        }

        @Test func endpointOutsideItsSubnetChangesNothing() throws {
            let env = try TestEnvironment.get()
            try env.reset()
            #expect { try env.dataplane.upsertLocal(LocalEndpoint(vni: T.vniA, ip: T.a4, mac: T.a1mac, ifindex: env.ifs.a, subnet: T.s1,
                                                                  gateway: T.gw1, gatewayMAC: T.gwMAC)) } throws: { error in
                (error as? ValidationError)?.field == "ip"
            }
            #expect(try env.dataplane.local.keys().isEmpty)
            #expect(try env.dataplane.ifaces.keys().isEmpty)
        }

        @Test func tablesRoundTrip() throws {
            let env = try TestEnvironment.get()
            try env.reset()
            try seed(env, Roles(bouncerS1: true, dividerA: true, s1Bouncers: [T.h1, T.h4]))
            let dp = env.dataplane
            #expect(try dp.vpc(T.vniA) == VPCEntry(vni: T.vniA, dividers: [T.h3], isDivider: true))
            #expect(try dp.subnet(T.vniA, T.s1) == SubnetEntry(vni: T.vniA, cidr: T.s1, bouncers: [T.h1, T.h4], isBouncer: true))
            #expect(try dp.endpoint(T.vniA, T.a3) == EndpointEntry(vni: T.vniA, ip: T.a3, mac: T.a3mac, host: T.h2))
            #expect(try dp.deleteEndpoint(T.vniA, T.a3))
            #expect(try dp.endpoint(T.vniA, T.a3) == nil)
            #expect(try !dp.deleteEndpoint(T.vniA, T.a3))
            #expect(try dp.deleteLocal(T.vniA, T.a1))
            #expect(try dp.ifaces.lookup(mz_iface_key(ifindex: env.ifs.a)) == nil)
            try dp.hostCache.update(mz_ep_key(T.vniA, T.a3), mz_cached_host(host: mz_host(ip: T.h2.ip.networkOrder, mac: (2, 0, 0, 0, 0, 2), reserved: 0), flags: 0, learned_ns: 5))
            #expect(try dp.cachedHost(T.vniA, T.a3)?.host == T.h2)
            #expect(try dp.invalidateCachedHost(T.vniA, T.a3))
            #expect(try dp.cachedHost(T.vniA, T.a3) == nil)
        }
    }
}
