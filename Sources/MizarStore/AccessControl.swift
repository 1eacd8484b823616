import MizarCore
import MizarEtcd

/// Who may do what in etcd, in one place. etcd takes a client
/// certificate's common name as the user: the administrator (root) may do
/// anything; the operator reads and writes Mizar's keys; each droplet's
/// transitd reads them and writes only its own: its Droplet, its lease
/// key, its Droplet's events and its claims (ROOT hosts/NAME/). It cannot
/// write another droplet's keys, nor any VPC, subnet, endpoint, address
/// or policy.
public enum AccessControl {
    public typealias Grant = (access: Etcd.Access, key: String, prefix: Bool)

    /// The operator's role and user, which reads and writes every key under
    /// `prefix` (Mizar's: "/mizar/").
    public static func operatorGrants(prefix: String) -> [Grant] { [(.readWrite, prefix, true)] }

    /// A droplet's: read everything under `root`, write its own keys.
    public static func dropletGrants(_ store: Store, droplet name: String) -> [Grant] {
        [(.read, store.root, true),
         (.readWrite, store.key(.droplet, name), false),
         (.readWrite, store.dropletLeasePrefix + name, false),
         (.readWrite, store.eventPrefix(.droplet, name), true),
         (.readWrite, store.hostPrefix(name), true)]
    }

    /// Makes the root user and the operator's role and user, then turns
    /// access control on. Run once, as root (or before any user exists),
    /// and again harmlessly.
    public static func enable(_ etcd: Etcd, operatorPrefix: String = "/mizar/") async throws {
        try await define(etcd, user: Identities.adminName, grants: [])
        try await define(etcd, user: Identities.operatorName, grants: operatorGrants(prefix: operatorPrefix))
        try await etcd.enableAuth()
    }

    /// Makes the droplet's role and user (as root): its transitd, whose
    /// certificate says "droplet-NAME", may then register and claim.
    public static func admitDroplet(_ store: Store, droplet name: String) async throws {
        try await define(store.etcd, user: Identities.droplet(name), grants: dropletGrants(store, droplet: name))
    }

    /// A user with a role of the same name holding `grants`. Root's role
    /// is etcd's built-in "root", which needs no grant.
    static func define(_ etcd: Etcd, user: String, grants: [Grant]) async throws {
        try await etcd.addRole(user)
        let held = try await etcd.permissions(of: user)
        for g in grants where !held.contains(where: { $0.access == g.access && $0.key == g.key && $0.prefix == g.prefix }) {
            try await etcd.grant(user, g.access, key: g.key, prefix: g.prefix)
        }
        try await etcd.addUser(user)
        try await etcd.grantRole(user, to: user)
    }
}
