/* SPDX-License-Identifier: Apache-2.0
 *
 * cnetlink.h — network namespaces, rtnetlink and ethtool for Swift.
 *
 * transitd creates endpoint interfaces through rtnetlink rather than by
 * spawning `ip`, and the simulated cluster (namespaces joined by a bridge) is
 * built with the same calls, so both exercise one code path.
 *
 * Conventions:
 *  - Every int-returning function returns >= 0 on success and a negative
 *    errno on failure. Kernel refusals are the errno of the request's
 *    NLMSG_ERROR acknowledgement (-EEXIST, -ENODEV, ...); a kernel that does
 *    not answer within 5 s yields -ETIMEDOUT.
 *  - Addresses (`*_be`) are IPv4 in network byte order, as in struct in_addr.
 *    Everything else, ports included, is host order.
 *  - Interface names must be shorter than 16 bytes (IFNAMSIZ), else -EINVAL.
 *  - A netlink socket serves one request at a time: callers sharing one
 *    between threads must serialise.
 *  - Functions taking a netns fd switch the calling thread into it and back
 *    within the call. If switching back ever failed the thread would keep
 *    running in the wrong namespace, so the process aborts instead.
 */
#ifndef CNETLINK_H
#define CNETLINK_H

/* ---- network namespaces ------------------------------------------------- */

/* open(O_RDONLY|O_CLOEXEC) of a namespace file such as /run/netns/NAME. */
int mz_netns_open(const char *path);

/* Like `ip netns add`: creates the parent directories (0755) and the file,
 * then bind-mounts a fresh network namespace onto it. The namespace is made
 * on a short-lived thread, so the caller's namespace never changes.
 * -EEXIST if path exists. The mount lives in the caller's mount namespace. */
int mz_netns_create(const char *path);

/* Detaches the mount and removes the file; -ENOENT if path is missing. */
int mz_netns_delete(const char *path);

/* setns(fd, CLONE_NEWNET) for the calling thread only. */
int mz_setns_net(int fd);

/* pipe2(fds, O_CLOEXEC): neither end leaks into a child another thread
 * spawns meanwhile, nor past exec into what the command leaves behind. */
int mz_pipe_cloexec(int fds[2]);
/* A spawned child closes every descriptor from `from` up (the parent's
 * pipes and sockets, whatever their close-on-exec flag): a daemon must not
 * keep another command's pipe open. 0, or -errno. */
int mz_spawn_close_from(void *posix_spawn_actions, int from);

/* ---- rtnetlink ---------------------------------------------------------- */

/* A NETLINK_ROUTE socket bound to the namespace netns_fd (-1: the current
 * one); it keeps acting there whatever thread later uses it. */
int mz_nl_open(int netns_fd);
/* Any socket, created inside netns_fd (-1: the current one); it stays in
 * that namespace whatever thread uses it later. Tests use it to send real
 * traffic from inside an endpoint. */
int mz_socket_in(int netns_fd, int domain, int type, int protocol);
void mz_nl_close(int nl);

/* ifindex (> 0) of the interface called name; -ENODEV if there is none. */
int mz_nl_link_index(int nl, const char *name);

/* A veth pair: `name` in nl's namespace, `peer_name` created directly in
 * peer_netns_fd (-1: the same namespace). mtu (0: default) applies to both
 * ends; peer_mac is 6 bytes, or NULL for a random one. */
int mz_nl_veth_add(int nl, const char *name, const char *peer_name, int peer_netns_fd,
		   unsigned mtu, const unsigned char *peer_mac);

int mz_nl_bridge_add(int nl, const char *name);

/* up: 1 up, 0 down, -1 unchanged; mtu 0 and mac NULL leave those alone. */
int mz_nl_link_set(int nl, int ifindex, int up, unsigned mtu, const unsigned char *mac);
int mz_nl_link_set_master(int nl, int ifindex, int master_ifindex);
int mz_nl_link_set_netns(int nl, int ifindex, int netns_fd);
/* Moves a link into another namespace under a new name, in one request. */
int mz_nl_link_move(int nl, int ifindex, int netns_fd, const char *name);

/* IPv6 address generation mode "none": the link gets no link-local address,
 * so the kernel sends no RS, MLD or DAD from it. Call it before the link is
 * first brought up; an address the link already has is not removed. */
int mz_nl_link_set_ipv6_off(int nl, int ifindex);

int mz_nl_link_del(int nl, int ifindex);

struct mz_link_info {
	int ifindex;
	unsigned mtu;
	unsigned flags;        /* IFF_* */
	unsigned char mac[6];  /* zero if the link has no 6-byte address */
	char name[16];
	char kind[16];         /* "veth", "bridge", "vxlan"...; "" if none */
	int master;            /* ifindex of the master, 0 if none */
};
int mz_nl_link_get(int nl, int ifindex, struct mz_link_info *out);

/* ip_be/prefixlen on ifindex; -EEXIST if already present. */
int mz_nl_addr_add(int nl, int ifindex, unsigned ip_be, int prefixlen);

/* Main table, protocol static. gw_be 0: a link-scope route out of ifindex;
 * otherwise via gw_be (ifindex may be 0 to let the kernel pick). dst_len 0 is
 * the default route. -EEXIST if the route exists. */
int mz_nl_route_add(int nl, unsigned dst_be, int dst_len, unsigned gw_be, int ifindex);
/* ip/32 out of ifindex, link scope, with src_be as the source the host
 * uses towards it (`ip route add IP/32 dev IF src SRC`). -EEXIST if a route
 * to IP/32 exists (on any link). */
int mz_nl_host_route_add(int nl, unsigned dst_be, unsigned src_be, int ifindex);
/* Removes the route to ip/32 out of ifindex; -ESRCH if there is none. */
int mz_nl_host_route_del(int nl, unsigned dst_be, int ifindex);
/* A permanent neighbour entry: ip_be is at mac on ifindex (replaced if there). */
int mz_nl_neigh_set(int nl, int ifindex, unsigned ip_be, const unsigned char *mac);
/* 1 when the link holds ip/prefixlen, 0 when not, or -errno. */
int mz_nl_addr_has(int nl, int ifindex, unsigned ip_be, int prefixlen);
/* The main table's IPv4 default route: 1 (gateway and output link set), 0
 * when there is none, or -errno. */
int mz_nl_default_route(int nl, unsigned *gw_be, int *oif);

/* A learning VXLAN device (the benchmarks' baseline overlay). local_be 0 and
 * dev_ifindex 0 are omitted; dstport is host order, 0 keeps the kernel's
 * default (8472, not IANA's 4789). */
int mz_nl_vxlan_add(int nl, const char *name, unsigned vni, unsigned local_be, int dev_ifindex,
		    unsigned short dstport);

/* `bridge fdb append 00:00:00:00:00:00 dev VX dst IP`: adds dst_be to the
 * set of remotes that VXLAN floods unknown and broadcast frames to. */
int mz_nl_fdb_append(int nl, int vxlan_ifindex, unsigned dst_be);

/* ---- ethtool (legacy ioctls; netns_fd -1: the current namespace) -------- */

int mz_ethtool_set_gro(int netns_fd, const char *ifname, int on);

/* Transmit checksum offload (and with it TSO, which depends on it). */
int mz_ethtool_set_tx_csum(int netns_fd, const char *ifname, int on);

/* Copies the driver name ("veth", ...) NUL-terminated into driver, which must
 * hold at least 32 bytes. */
int mz_ethtool_driver(int netns_fd, const char *ifname, char *driver);

#endif /* CNETLINK_H */
