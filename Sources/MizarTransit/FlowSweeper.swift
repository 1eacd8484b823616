import Logging
import ServiceLifecycle

/// Every `period`, gives back the room of flows that carry nothing any
/// more: conntrack entries that admit nothing (expired, of endpoints gone,
/// or revoked) when policy is on, SNAT translations that expired or whose
/// endpoint is gone, and published flows that expired. The programs never trust such entries anyway.
public struct FlowSweeper: Service {
    let host: TransitHost
    let logger: Logger
    let period: Duration
    let conntrack: Bool

    public init(host: TransitHost, logger: Logger, period: Duration = .seconds(30), conntrack: Bool = true) {
        self.host = host
        self.logger = logger
        self.period = period
        self.conntrack = conntrack
    }

    /// Runs until cancelled (a service that returns ends its group).
    public func run() async throws {
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: period)
            } catch {
                return
            }
            do {
                let ct = conntrack ? try await host.sweepConntrack() : 0
                let snat = try await host.sweepSNAT()
                let published = try await host.sweepPublished()
                if ct + snat + published > 0 {
                    logger.debug("flows swept", metadata: ["conntrack.removed": "\(ct)", "snat.removed": "\(snat)",
                                                           "published.removed": "\(published)"])
                }
            } catch {
                logger.warning("flow sweep failed", metadata: ["error": "\(error)"])
            }
        }
    }
}
