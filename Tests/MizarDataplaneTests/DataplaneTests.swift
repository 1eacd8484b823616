import CMizarABI
@testable import MizarDataplane
import Testing

/// Every test that touches the loaded data plane lives under this suite:
/// they share one set of maps, so they run one at a time, off the
/// concurrency pool (see OffPool).
@Suite(.serialized, .offPool) struct DataplaneTests {
    @Suite struct Packets {
        @Test("transit program", arguments: TransitCases.all, Hook.allCases)
        func transit(_ c: PacketCase, _ hook: Hook) throws { try check(c, hook) }

        @Test("agent program", arguments: AgentCases.all, Hook.allCases)
        func agent(_ c: PacketCase, _ hook: Hook) throws { try check(c, hook) }

        @Test("scaled endpoints", arguments: ServiceCases.all, Hook.allCases)
        func service(_ c: PacketCase, _ hook: Hook) throws { try check(c, hook) }

        @Test("network policy", arguments: PolicyCases.all, Hook.allCases)
        func policy(_ c: PacketCase, _ hook: Hook) throws { try check(c, hook) }

        @Test("egress through SNAT", arguments: EgressCases.all, Hook.allCases)
        func egress(_ c: PacketCase, _ hook: Hook) throws { try check(c, hook) }

        @Test("published services", arguments: PublishedCases.all, Hook.allCases)
        func published(_ c: PacketCase, _ hook: Hook) throws { try check(c, hook) }

        @Test func tablesAreLargeEnough() {
            #expect(TransitCases.all.count + AgentCases.all.count >= 40)
        }

        /// Reasons no packet handed to PROG_TEST_RUN can reach: the kernel
        /// refuses frames under 14 bytes, XDP data is always linear, tc
        /// headers are pulled into the linear area first, and the
        /// head-adjusting helpers do not fail for the sizes used.
        static let unreachableInTests: Set<UInt32> = [
            MZ_DROP_TRUNC_ETH.rawValue, MZ_DROP_TRUNC_UDP.rawValue, MZ_DROP_ADJUST_FAILED.rawValue,
        ]

        /// Every other drop reason has at least one row.
        @Test func everyDropReasonHasARow() {
            var covered = Set<UInt32>()
            for c in TransitCases.all + AgentCases.all + ServiceCases.all + PolicyCases.all + EgressCases.all + PublishedCases.all {
                if case .drop(let reason) = c.expect { covered.insert(reason.rawValue) }
            }
            for (reason, name) in DropReason.all where !Packets.unreachableInTests.contains(reason) {
                #expect(covered.contains(reason), "no row drops for \(name)")
            }
        }
    }
}
