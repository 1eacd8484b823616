import Logging
import ServiceLifecycle

/// Drops conntrack entries that admit nothing any more (expired, of
/// endpoints gone, or revoked), every `period`. The programs never trust
/// such an entry anyway; the sweep only gives its room back.
public struct ConntrackSweeper: Service {
    let host: TransitHost
    let logger: Logger
    let period: Duration

    public init(host: TransitHost, logger: Logger, period: Duration = .seconds(30)) {
        self.host = host
        self.logger = logger
        self.period = period
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
                let gone = try await host.sweepConntrack()
                if gone > 0 { logger.debug("conntrack swept", metadata: ["conntrack.removed": "\(gone)"]) }
            } catch {
                logger.warning("conntrack sweep failed", metadata: ["error": "\(error)"])
            }
        }
    }
}
