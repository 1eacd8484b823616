import Logging
import MizarEtcd

/// The two loops every follower of etcd needs, written once: a reflector
/// (list, then watch from the list's revision, and list again when the
/// watch ends) and a lease holder (grant, register under the lease, keep it
/// alive, and start over after a lapse or a lost connection).
public enum Reflector {
    /// Follows one set of keys until cancelled. `replace` gets the whole
    /// list, after every (re)list; `apply` every batch of changes the watch
    /// delivers after it.
    public static func run<Item, Change: Sendable>(
        _ what: String, logger: Logger,
        list: () async throws -> (items: [Item], revision: Int64),
        watch: (_ afterRevision: Int64) -> AsyncThrowingStream<[Change], Error>,
        replace: ([Item]) -> Void,
        apply: ([Change]) -> Void
    ) async {
        while !Task.isCancelled {
            do {
                let (items, revision) = try await list()
                replace(items)
                for try await batch in watch(revision) { apply(batch) }
            } catch is CancellationError {
                return
            } catch {
                logger.warning("watch ended; listing again", metadata: ["watch": "\(what)", "error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    /// The keys under `prefix` with their revision, for `run`.
    public static func keys(_ etcd: Etcd, under prefix: String) -> (
        list: () async throws -> (items: [EtcdKeyValue], revision: Int64),
        watch: (Int64) -> AsyncThrowingStream<[EtcdEvent], Error>
    ) {
        ({ let listed = try await etcd.list(prefix: prefix); return (listed.kvs, listed.revision) },
         { etcd.watch(prefix: prefix, fromRevision: $0 + 1) })
    }
}

public enum LeaseHolder {
    /// Holds a lease of `ttl` seconds until cancelled, refreshing it three
    /// times per TTL: `register` writes what lives under it (each time a
    /// lease is granted, with its id). After a lapse or a lost connection it
    /// waits `retryDelay` and starts over; `lost` hears of each such failure.
    public static func hold(
        _ etcd: Etcd, ttl: Int64, retryDelay: Duration,
        register: (_ lease: Int64) async throws -> Void,
        lost: (any Error) -> Void
    ) async {
        await hold(etcd, ttl: { ttl }, changed: nil, retryDelay: retryDelay, register: register, lost: lost)
    }

    /// The same, with a TTL that may change while it is held (none when
    /// `changed` is nil): once `changed(ttl)` returns (it waits for the TTL to differ from the one
    /// held), a lease of the new TTL is granted, `register` writes under
    /// it, and only then is the old one revoked, so what lives under it
    /// never lapses.
    public static func hold(
        _ etcd: Etcd, ttl: @escaping @Sendable () -> Int64, changed: (@Sendable (_ from: Int64) async -> Void)?,
        retryDelay: Duration,
        register: (_ lease: Int64) async throws -> Void,
        lost: (any Error) -> Void
    ) async {
        var previous: Int64?
        while !Task.isCancelled {
            do {
                let held = ttl()
                let lease = try await etcd.grantLease(ttl: held)
                try await register(lease)
                if let previous { try? await etcd.revokeLease(previous) }
                previous = nil
                var until: (@Sendable () async -> Void)?
                if let changed { until = { await changed(held) } }
                try await etcd.keepAlive(lease, every: .milliseconds(held * 1000 / 3), until: until)
                if Task.isCancelled { return }
                previous = lease   // the TTL changed: re-granted at once, revoked once replaced
            } catch is CancellationError {
                return
            } catch {
                previous = nil
                lost(error)
                try? await Task.sleep(for: retryDelay)
            }
        }
    }
}
