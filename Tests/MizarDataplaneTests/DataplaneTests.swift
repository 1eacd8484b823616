import MizarDataplane
import Testing

/// Every test that touches the loaded data plane lives under this suite:
/// they share one set of maps, so they run one at a time.
@Suite(.serialized) struct DataplaneTests {
    @Suite struct Packets {
        @Test("transit program", arguments: TransitCases.all, Hook.allCases)
        func transit(_ c: PacketCase, _ hook: Hook) throws { try check(c, hook) }

        @Test("agent program", arguments: AgentCases.all, Hook.allCases)
        func agent(_ c: PacketCase, _ hook: Hook) throws { try check(c, hook) }

        @Test func tablesAreLargeEnough() {
            #expect(TransitCases.all.count + AgentCases.all.count >= 40)
        }
    }
}
