import CMizarABI
import MizarCore
@testable import MizarDataplane
import MizarPacket
import Testing

extension DataplaneTests {
    @Suite struct LoadTimeConfig {
        /// The .rodata settings reach the programs: with the direct path off
        /// and a fresh outer TTL of 9, a cached host is ignored and the
        /// packet goes to the bouncer with TTL 9.
        @Test(arguments: Hook.allCases) func directPathOffAndTTL(_ hook: Hook) throws {
            let env = try TestEnvironment.get()
            let dp = try Dataplane(objectDirectory: bpfDirectory, hooks: [hook], settings: DataplaneSettings(outerTTL: 9, directPath: false))
            try dp.setDroplet(T.h1, ifindex: env.ifs.droplet)
            try dp.upsertVPC(VPCEntry(vni: T.vniA, dividers: [T.h3]))
            try dp.upsertSubnet(SubnetEntry(vni: T.vniA, cidr: T.s1, bouncers: [T.h4]))
            try dp.upsertLocal(LocalEndpoint(vni: T.vniA, ip: T.a1, mac: T.a1mac, ifindex: env.ifs.a, subnet: T.s1,
                                             gateway: T.gw1, gatewayMAC: T.gwMAC))
            try dp.hostCache.update(mz_ep_key(T.vniA, T.a3), mz_cached_host(
                host: mz_host(ip: T.h2.ip.networkOrder, mac: (2, 0, 0, 0, 0, 2), reserved: 0), flags: 0, learned_ns: 1))
            let inner = P.udp(T.a1mac, T.a3mac, T.a1, T.a3)
            let r = try dp.programs[hook]!.agent.testRun(inner, ifindex: env.ifs.a)
            #expect(r.output == P.tunnel(from: T.h1, to: T.h4, vni: T.vniA, rts: T.h1, ttl: 9, inner: inner))
        }

        /// With xdp_tx_redirect (a droplet that is a veth) the transit
        /// program's "back out" becomes a redirect to the arrival interface.
        @Test func xdpTxByRedirect() throws {
            let env = try TestEnvironment.get()
            var results: [UInt8: UInt32] = [:]
            for flag: UInt8 in [0, 1] {
                let dp = try Dataplane(objectDirectory: bpfDirectory, hooks: [.xdp], settings: DataplaneSettings(xdpTxRedirect: flag == 1))
                try dp.setDroplet(T.h1, ifindex: env.ifs.droplet)
                try dp.replaceDroplets([T.h1, T.h2, T.h3, T.h4])
                try dp.upsertVPC(VPCEntry(vni: T.vniA, dividers: [T.h3]))
                // h1 bounces a packet for a3 on to a3's host, h2.
                try dp.upsertSubnet(SubnetEntry(vni: T.vniA, cidr: T.s1, bouncers: [T.h1], isBouncer: true))
                try dp.upsertEndpoint(EndpointEntry(vni: T.vniA, ip: T.a3, mac: T.a3mac, host: T.h2))
                let row = TransitCases.bouncerForward
                let r = try dp.programs[.xdp]!.transit.testRun(row.input, ifindex: env.ifs.droplet)
                #expect(r.output == row.output)
                results[flag] = r.retval
            }
            #expect(results == [0: 3, 1: 4], "XDP_TX without the flag, XDP_REDIRECT with it")
        }
    }
}
