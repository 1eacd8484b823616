#define _GNU_SOURCE
/* SPDX-License-Identifier: Apache-2.0
 *
 * Raw rtnetlink, no libmnl/libnl: the handful of messages transitd needs is
 * smaller than a dependency. Every request asks for an ack and waits for the
 * one carrying its sequence number, so kernel errors are never lost and a
 * late answer to an earlier, timed-out request cannot be mistaken for ours.
 */
#include "cnetlink.h"

#include <spawn.h>

#include <net/if.h> /* before the linux/ headers, which then skip their copies */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sockios.h>
#include <linux/veth.h>

/* ---- network namespaces ------------------------------------------------- */

int mz_netns_open(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int mz_setns_net(int fd)
{
	return setns(fd, CLONE_NEWNET) < 0 ? -errno : 0;
}

int mz_pipe_cloexec(int fds[2])
{
	return pipe2(fds, O_CLOEXEC) < 0 ? -errno : 0;
}

int mz_spawn_close_from(void *actions, int from)
{
	int r = posix_spawn_file_actions_addclosefrom_np(actions, from);
	return r ? -r : 0;
}

static int mkdir_parents(const char *path)
{
	char dir[PATH_MAX];
	size_t n = strlen(path);
	if (n >= sizeof dir)
		return -ENAMETOOLONG;
	memcpy(dir, path, n + 1);
	char *last = strrchr(dir, '/');
	if (!last || last == dir)
		return 0;
	*last = '\0';
	for (char *p = dir + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		/* An existing non-directory shows up as ENOTDIR at the open. */
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return -errno;
		if (c == '\0')
			return 0;
		*p = c;
	}
}

struct netns_job {
	const char *path;
	int err;
};

/* Runs on its own thread because unshare() moves the calling thread for
 * good; this thread exits afterwards and the bind mount keeps the namespace
 * alive. */
static void *netns_job_run(void *arg)
{
	struct netns_job *job = arg;
	char self[64];
	if (unshare(CLONE_NEWNET) < 0) {
		job->err = -errno;
		return NULL;
	}
	/* /proc/self is the thread group leader; only the task entry names
	 * this thread's new namespace. */
	snprintf(self, sizeof self, "/proc/self/task/%ld/ns/net", (long)syscall(SYS_gettid));
	job->err = mount(self, job->path, "none", MS_BIND, NULL) < 0 ? -errno : 0;
	return NULL;
}

/* The directory of named namespaces as iproute2 keeps it: a mount point of
 * its own, shared. It is made so before the first namespace is mounted in
 * it. Otherwise a later `ip netns add` (podman, a script) bind-mounts the
 * directory onto itself, and every namespace mounted before that is hidden
 * underneath: no delete reaches it, and it outlives its testbed. */
static int netns_dir_shared(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	if (!slash || slash == path || (size_t)(slash - path) >= sizeof dir)
		return 0;
	memcpy(dir, path, slash - path);
	dir[slash - path] = 0;
	if (mount("", dir, "none", MS_SHARED | MS_REC, NULL) == 0)
		return 0;
	if (errno != EINVAL) /* EINVAL: not a mount point yet */
		return -errno;
	if (mount(dir, dir, "none", MS_BIND | MS_REC, NULL) < 0)
		return -errno;
	return mount("", dir, "none", MS_SHARED | MS_REC, NULL) < 0 ? -errno : 0;
}

int mz_netns_create(const char *path)
{
	int err = mkdir_parents(path);
	if (err)
		return err;
	err = netns_dir_shared(path);
	if (err)
		return err;
	/* O_EXCL makes an existing namespace -EEXIST instead of shadowing it. */
	int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	close(fd);

	struct netns_job job = { .path = path, .err = 0 };
	pthread_t t;
	err = pthread_create(&t, NULL, netns_job_run, &job);
	if (!err)
		err = pthread_join(t, NULL);
	if (err)
		job.err = -err;
	if (job.err)
		unlink(path);
	return job.err;
}

int mz_netns_delete(const char *path)
{
	/* EINVAL: not a mount point, e.g. left by a create that died before
	 * mounting; the file still has to go. */
	if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL)
		return -errno;
	return unlink(path) < 0 ? -errno : 0;
}

/* A socket belongs to the namespace it was created in, so entering the
 * target only for socket() is enough; the thread is back home before any
 * other code runs on it. */
static int socket_in_netns(int netns_fd, int domain, int type, int protocol)
{
	type |= SOCK_CLOEXEC;
	if (netns_fd < 0) {
		int s = socket(domain, type, protocol);
		return s < 0 ? -errno : s;
	}
	int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (home < 0)
		return -errno;
	if (setns(netns_fd, CLONE_NEWNET) < 0) {
		int err = -errno;
		close(home);
		return err;
	}
	int s = socket(domain, type, protocol);
	int ret = s < 0 ? -errno : s;
	if (setns(home, CLONE_NEWNET) < 0)
		abort(); /* see cnetlink.h: never run on in the wrong namespace */
	close(home);
	return ret;
}

int mz_socket_in(int netns_fd, int domain, int type, int protocol)
{
	return socket_in_netns(netns_fd, domain, type, protocol);
}

/* ---- request building --------------------------------------------------- */

#define REQ_MAX 1024 /* the largest request here, a veth, is ~150 bytes */

struct req {
	int err; /* sticky, so builders need not check every attribute */
	union {
		struct nlmsghdr h;
		char buf[REQ_MAX];
	} u;
};

/* Appends len bytes (zeroed up to the 4-byte alignment netlink requires). */
static void *req_put(struct req *r, const void *data, size_t len)
{
	size_t at = r->u.h.nlmsg_len;
	if (r->err || at + NLMSG_ALIGN(len) > sizeof r->u.buf) {
		r->err = -EMSGSIZE;
		return NULL;
	}
	void *p = r->u.buf + at;
	memset(p, 0, NLMSG_ALIGN(len));
	if (data)
		memcpy(p, data, len);
	r->u.h.nlmsg_len = at + NLMSG_ALIGN(len);
	return p;
}

/* The one builder behind every request: header plus the family struct. */
static void req_init(struct req *r, int type, int flags, const void *fam, size_t fam_len)
{
	r->err = 0;
	r->u.h = (struct nlmsghdr){
		.nlmsg_len = NLMSG_HDRLEN,
		.nlmsg_type = type,
		.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags,
	};
	req_put(r, fam, fam_len);
}

static struct rtattr *attr_put(struct req *r, int type, const void *data, size_t len)
{
	struct rtattr *a = req_put(r, NULL, RTA_LENGTH(len));
	if (!a)
		return NULL;
	a->rta_type = type;
	a->rta_len = RTA_LENGTH(len);
	if (data)
		memcpy(RTA_DATA(a), data, len);
	return a;
}

static void attr_u8(struct req *r, int type, uint8_t v) { attr_put(r, type, &v, sizeof v); }
static void attr_u16(struct req *r, int type, uint16_t v) { attr_put(r, type, &v, sizeof v); }
static void attr_u32(struct req *r, int type, uint32_t v) { attr_put(r, type, &v, sizeof v); }
static void attr_str(struct req *r, int type, const char *s)
{
	attr_put(r, type, s, strlen(s) + 1); /* the kernel wants the NUL */
}

/* A nest's length is only known once its contents are in: open it empty,
 * then stretch it over everything appended since. */
static struct rtattr *nest_begin(struct req *r, int type)
{
	return attr_put(r, type | NLA_F_NESTED, NULL, 0);
}

static void nest_end(struct req *r, struct rtattr *nest)
{
	if (nest)
		nest->rta_len = r->u.buf + r->u.h.nlmsg_len - (char *)nest;
}

/* ---- the exchange ------------------------------------------------------- */

typedef int (*reply_fn)(const struct nlmsghdr *h, void *arg);

/* Sends r, hands each reply message to fn (may be NULL) and returns the
 * ack's errno, or fn's first error if the kernel accepted the request. */
static int nl_talk(int nl, struct req *r, reply_fn fn, void *arg)
{
	static unsigned seq_counter;
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	if (r->err)
		return r->err;
	uint32_t seq = __atomic_add_fetch(&seq_counter, 1, __ATOMIC_RELAXED);
	r->u.h.nlmsg_seq = seq;

	ssize_t n;
	do
		n = sendto(nl, r->u.buf, r->u.h.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;

	/* Room for an RTM_NEWLINK of any kind even with stats; an error ack echoes the
	 * request, which is at most REQ_MAX. */
	union {
		struct nlmsghdr h;
		char buf[32768];
	} in;
	int result = 0;
	for (;;) {
		struct sockaddr_nl from;
		socklen_t from_len = sizeof from;
		n = recvfrom(nl, in.buf, sizeof in.buf, MSG_TRUNC, (struct sockaddr *)&from, &from_len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
		}
		if (from.nl_pid != 0) /* only the kernel speaks for the kernel */
			continue;
		if ((size_t)n > sizeof in.buf) {
			/* A reply too big to read whole; the ack still follows in
			 * its own datagram, so keep going to consume it. */
			if (!result)
				result = -EMSGSIZE;
			n = sizeof in.buf;
		}
		/* NLMSG_OK/NEXT mix signed and unsigned; walk the batch by hand. */
		for (size_t off = 0; off + NLMSG_HDRLEN <= (size_t)n;) {
			struct nlmsghdr *h = (struct nlmsghdr *)(in.buf + off);
			if (h->nlmsg_len < NLMSG_HDRLEN || h->nlmsg_len > (size_t)n - off)
				break;
			off += NLMSG_ALIGN(h->nlmsg_len);
			if (h->nlmsg_seq != seq)
				continue;
			if (h->nlmsg_type == NLMSG_DONE) /* the end of a dump */
				return result;
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);
				if (h->nlmsg_len < NLMSG_LENGTH(sizeof *e))
					return -EBADMSG;
				return e->error ? e->error : result;
			}
			if (fn && !result)
				result = fn(h, arg);
		}
	}
}

static void parse_attrs(struct rtattr *tb[], int max, struct rtattr *a, int len)
{
	memset(tb, 0, sizeof(*tb) * (max + 1));
	for (; RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		int type = a->rta_type & ~NLA_F_NESTED;
		if (type <= max)
			tb[type] = a;
	}
}

static int bad_name(const char *name)
{
	return !name || !*name || strnlen(name, IFNAMSIZ) >= IFNAMSIZ;
}

/* ---- links -------------------------------------------------------------- */

int mz_nl_open(int netns_fd)
{
	int nl = socket_in_netns(netns_fd, AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
	if (nl < 0)
		return nl;
	/* A kernel that never answers must not hang transitd. */
	struct timeval tv = { .tv_sec = 5 };
	if (setsockopt(nl, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) {
		int err = -errno;
		close(nl);
		return err;
	}
	return nl;
}

void mz_nl_close(int nl)
{
	if (nl >= 0)
		close(nl);
}

static void link_req(struct req *r, int flags, int ifindex)
{
	struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC, .ifi_index = ifindex };
	req_init(r, RTM_NEWLINK, flags, &ifi, sizeof ifi);
}

static int link_info_reply(const struct nlmsghdr *h, void *arg)
{
	struct mz_link_info *out = arg;
	if (h->nlmsg_type != RTM_NEWLINK || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifinfomsg)))
		return -EBADMSG;
	const struct ifinfomsg *ifi = NLMSG_DATA(h);
	struct rtattr *tb[IFLA_MAX + 1], *info[IFLA_INFO_MAX + 1];
	parse_attrs(tb, IFLA_MAX, IFLA_RTA(ifi), IFLA_PAYLOAD(h));

	memset(out, 0, sizeof *out);
	out->ifindex = ifi->ifi_index;
	out->flags = ifi->ifi_flags;
	if (tb[IFLA_MTU] && RTA_PAYLOAD(tb[IFLA_MTU]) >= 4)
		memcpy(&out->mtu, RTA_DATA(tb[IFLA_MTU]), 4);
	if (tb[IFLA_MASTER] && RTA_PAYLOAD(tb[IFLA_MASTER]) >= 4)
		memcpy(&out->master, RTA_DATA(tb[IFLA_MASTER]), 4);
	if (tb[IFLA_ADDRESS] && RTA_PAYLOAD(tb[IFLA_ADDRESS]) == sizeof out->mac)
		memcpy(out->mac, RTA_DATA(tb[IFLA_ADDRESS]), sizeof out->mac);
	if (tb[IFLA_IFNAME])
		snprintf(out->name, sizeof out->name, "%.*s", (int)RTA_PAYLOAD(tb[IFLA_IFNAME]),
			 (const char *)RTA_DATA(tb[IFLA_IFNAME]));
	if (tb[IFLA_LINKINFO]) {
		parse_attrs(info, IFLA_INFO_MAX, RTA_DATA(tb[IFLA_LINKINFO]),
			    RTA_PAYLOAD(tb[IFLA_LINKINFO]));
		if (info[IFLA_INFO_KIND])
			snprintf(out->kind, sizeof out->kind, "%.*s",
				 (int)RTA_PAYLOAD(info[IFLA_INFO_KIND]),
				 (const char *)RTA_DATA(info[IFLA_INFO_KIND]));
	}
	return 0;
}

/* By name or by index; GETLINK is a plain request, answered by one message. */
static int link_get(int nl, int ifindex, const char *name, struct mz_link_info *out)
{
	struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC, .ifi_index = ifindex };
	struct req r;
	req_init(&r, RTM_GETLINK, 0, &ifi, sizeof ifi);
	if (name)
		attr_str(&r, IFLA_IFNAME, name);
	/* Counters are most of a reply and none of our business. */
	attr_u32(&r, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
	out->ifindex = 0;
	int err = nl_talk(nl, &r, link_info_reply, out);
	if (err)
		return err;
	return out->ifindex > 0 ? 0 : -ENOMSG;
}

int mz_nl_link_index(int nl, const char *name)
{
	struct mz_link_info info;
	if (bad_name(name))
		return -EINVAL;
	int err = link_get(nl, 0, name, &info);
	return err ? err : info.ifindex;
}

int mz_nl_link_get(int nl, int ifindex, struct mz_link_info *out)
{
	if (ifindex <= 0 || !out)
		return -EINVAL;
	return link_get(nl, ifindex, NULL, out);
}

/* RTM_NEWLINK creating `name` of `kind`; returns the open IFLA_INFO_DATA
 * nest for kind-specific attributes, closed by create_link_end(). */
static struct rtattr *create_link_begin(struct req *r, const char *name, unsigned mtu,
					const char *kind, struct rtattr **linkinfo)
{
	link_req(r, NLM_F_CREATE | NLM_F_EXCL, 0);
	attr_str(r, IFLA_IFNAME, name);
	if (mtu)
		attr_u32(r, IFLA_MTU, mtu);
	*linkinfo = nest_begin(r, IFLA_LINKINFO);
	attr_str(r, IFLA_INFO_KIND, kind);
	return nest_begin(r, IFLA_INFO_DATA);
}

static void create_link_end(struct req *r, struct rtattr *data, struct rtattr *linkinfo)
{
	nest_end(r, data);
	nest_end(r, linkinfo);
}

int mz_nl_veth_add(int nl, const char *name, const char *peer_name, int peer_netns_fd,
		   unsigned mtu, const unsigned char *peer_mac)
{
	if (bad_name(name) || bad_name(peer_name))
		return -EINVAL;
	struct req r;
	struct rtattr *linkinfo, *data = create_link_begin(&r, name, mtu, "veth", &linkinfo);
	/* The peer is described like a link of its own: an ifinfomsg, then
	 * its attributes, all inside VETH_INFO_PEER. */
	struct rtattr *peer = nest_begin(&r, VETH_INFO_PEER);
	struct ifinfomsg peer_ifi = { .ifi_family = AF_UNSPEC };
	req_put(&r, &peer_ifi, sizeof peer_ifi);
	attr_str(&r, IFLA_IFNAME, peer_name);
	if (peer_netns_fd >= 0)
		attr_u32(&r, IFLA_NET_NS_FD, peer_netns_fd);
	if (peer_mac)
		attr_put(&r, IFLA_ADDRESS, peer_mac, 6);
	if (mtu)
		attr_u32(&r, IFLA_MTU, mtu);
	nest_end(&r, peer);
	create_link_end(&r, data, linkinfo);
	return nl_talk(nl, &r, NULL, NULL);
}

int mz_nl_bridge_add(int nl, const char *name)
{
	if (bad_name(name))
		return -EINVAL;
	struct req r;
	struct rtattr *linkinfo, *data = create_link_begin(&r, name, 0, "bridge", &linkinfo);
	create_link_end(&r, data, linkinfo);
	return nl_talk(nl, &r, NULL, NULL);
}

int mz_nl_vxlan_add(int nl, const char *name, unsigned vni, unsigned local_be, int dev_ifindex,
		    unsigned short dstport)
{
	if (bad_name(name))
		return -EINVAL;
	struct req r;
	struct rtattr *linkinfo, *data = create_link_begin(&r, name, 0, "vxlan", &linkinfo);
	attr_u32(&r, IFLA_VXLAN_ID, vni);
	if (local_be)
		attr_u32(&r, IFLA_VXLAN_LOCAL, local_be);
	if (dev_ifindex > 0)
		attr_u32(&r, IFLA_VXLAN_LINK, dev_ifindex);
	if (dstport)
		attr_u16(&r, IFLA_VXLAN_PORT, htons(dstport));
	attr_u8(&r, IFLA_VXLAN_LEARNING, 1);
	create_link_end(&r, data, linkinfo);
	return nl_talk(nl, &r, NULL, NULL);
}

int mz_nl_link_set(int nl, int ifindex, int up, unsigned mtu, const unsigned char *mac)
{
	struct req r;
	link_req(&r, 0, ifindex);
	if (up >= 0) {
		struct ifinfomsg *ifi = NLMSG_DATA(&r.u.h);
		ifi->ifi_change = IFF_UP; /* touch this one flag only */
		ifi->ifi_flags = up ? IFF_UP : 0;
	}
	if (mtu)
		attr_u32(&r, IFLA_MTU, mtu);
	if (mac)
		attr_put(&r, IFLA_ADDRESS, mac, 6);
	return nl_talk(nl, &r, NULL, NULL);
}

int mz_nl_link_set_master(int nl, int ifindex, int master_ifindex)
{
	struct req r;
	link_req(&r, 0, ifindex);
	attr_u32(&r, IFLA_MASTER, master_ifindex);
	return nl_talk(nl, &r, NULL, NULL);
}

int mz_nl_link_set_netns(int nl, int ifindex, int netns_fd)
{
	struct req r;
	link_req(&r, 0, ifindex);
	attr_u32(&r, IFLA_NET_NS_FD, netns_fd);
	return nl_talk(nl, &r, NULL, NULL);
}

int mz_nl_link_move(int nl, int ifindex, int netns_fd, const char *name)
{
	if (bad_name(name))
		return -EINVAL;
	struct req r;
	link_req(&r, 0, ifindex);
	attr_u32(&r, IFLA_NET_NS_FD, netns_fd);
	attr_str(&r, IFLA_IFNAME, name);
	return nl_talk(nl, &r, NULL, NULL);
}

int mz_nl_link_set_ipv6_off(int nl, int ifindex)
{
	struct req r;
	link_req(&r, 0, ifindex);
	struct rtattr *spec = nest_begin(&r, IFLA_AF_SPEC);
	struct rtattr *inet6 = nest_begin(&r, AF_INET6);
	attr_u8(&r, IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE);
	nest_end(&r, inet6);
	nest_end(&r, spec);
	return nl_talk(nl, &r, NULL, NULL);
}

int mz_nl_link_del(int nl, int ifindex)
{
	struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC, .ifi_index = ifindex };
	struct req r;
	req_init(&r, RTM_DELLINK, 0, &ifi, sizeof ifi);
	return nl_talk(nl, &r, NULL, NULL);
}

/* ---- addresses, routes, fdb --------------------------------------------- */

int mz_nl_addr_add(int nl, int ifindex, unsigned ip_be, int prefixlen)
{
	if (prefixlen < 0 || prefixlen > 32)
		return -EINVAL;
	struct ifaddrmsg ifa = {
		.ifa_family = AF_INET,
		.ifa_prefixlen = prefixlen,
		.ifa_scope = RT_SCOPE_UNIVERSE,
		.ifa_index = ifindex,
	};
	struct req r;
	req_init(&r, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &ifa, sizeof ifa);
	/* IFA_ADDRESS is the peer on point-to-point links; equal to IFA_LOCAL
	 * it means "no peer", which is what `ip addr add` sends. */
	attr_u32(&r, IFA_LOCAL, ip_be);
	attr_u32(&r, IFA_ADDRESS, ip_be);
	return nl_talk(nl, &r, NULL, NULL);
}

struct addr_find {
	int ifindex;
	unsigned ip_be;
	int prefixlen;
	int found;
};

static int addr_find_reply(const struct nlmsghdr *h, void *arg)
{
	struct addr_find *f = arg;
	if (h->nlmsg_type != RTM_NEWADDR || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifaddrmsg)))
		return 0;
	const struct ifaddrmsg *ifa = NLMSG_DATA(h);
	if ((int)ifa->ifa_index != f->ifindex || ifa->ifa_family != AF_INET)
		return 0;
	struct rtattr *tb[IFA_MAX + 1];
	parse_attrs(tb, IFA_MAX, IFA_RTA(ifa), IFA_PAYLOAD(h));
	struct rtattr *a = tb[IFA_LOCAL] ? tb[IFA_LOCAL] : tb[IFA_ADDRESS];
	unsigned ip = 0;
	if (a && RTA_PAYLOAD(a) >= 4)
		memcpy(&ip, RTA_DATA(a), 4);
	if (ip == f->ip_be && ifa->ifa_prefixlen == f->prefixlen)
		f->found = 1;
	return 0;
}

int mz_nl_addr_has(int nl, int ifindex, unsigned ip_be, int prefixlen)
{
	struct ifaddrmsg ifa = { .ifa_family = AF_INET };
	struct req r;
	req_init(&r, RTM_GETADDR, NLM_F_DUMP, &ifa, sizeof ifa);
	struct addr_find f = { .ifindex = ifindex, .ip_be = ip_be, .prefixlen = prefixlen };
	int err = nl_talk(nl, &r, addr_find_reply, &f);
	return err < 0 ? err : f.found;
}

struct route_find {
	unsigned gw_be;
	int oif;
	int found;
};

static int default_route_reply(const struct nlmsghdr *h, void *arg)
{
	struct route_find *f = arg;
	if (h->nlmsg_type != RTM_NEWROUTE || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct rtmsg)))
		return 0;
	const struct rtmsg *rtm = NLMSG_DATA(h);
	if (rtm->rtm_family != AF_INET || rtm->rtm_dst_len != 0 || rtm->rtm_table != RT_TABLE_MAIN || f->found)
		return 0;
	struct rtattr *tb[RTA_MAX + 1];
	parse_attrs(tb, RTA_MAX, RTM_RTA(rtm), RTM_PAYLOAD(h));
	if (tb[RTA_GATEWAY] && RTA_PAYLOAD(tb[RTA_GATEWAY]) >= 4)
		memcpy(&f->gw_be, RTA_DATA(tb[RTA_GATEWAY]), 4);
	if (tb[RTA_OIF] && RTA_PAYLOAD(tb[RTA_OIF]) >= 4)
		memcpy(&f->oif, RTA_DATA(tb[RTA_OIF]), 4);
	f->found = 1;
	return 0;
}

int mz_nl_default_route(int nl, unsigned *gw_be, int *oif)
{
	struct rtmsg rtm = { .rtm_family = AF_INET };
	struct req r;
	req_init(&r, RTM_GETROUTE, NLM_F_DUMP, &rtm, sizeof rtm);
	struct route_find f = { 0 };
	int err = nl_talk(nl, &r, default_route_reply, &f);
	if (err < 0)
		return err;
	*gw_be = f.gw_be;
	*oif = f.oif;
	return f.found;
}

int mz_nl_route_add(int nl, unsigned dst_be, int dst_len, unsigned gw_be, int ifindex)
{
	if (dst_len < 0 || dst_len > 32)
		return -EINVAL;
	struct rtmsg rtm = {
		.rtm_family = AF_INET,
		.rtm_dst_len = dst_len,
		.rtm_table = RT_TABLE_MAIN,
		.rtm_protocol = RTPROT_STATIC,
		/* Without a gateway the destination is on the link itself. */
		.rtm_scope = gw_be ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK,
		.rtm_type = RTN_UNICAST,
	};
	struct req r;
	req_init(&r, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &rtm, sizeof rtm);
	if (dst_len)
		attr_u32(&r, RTA_DST, dst_be);
	if (gw_be)
		attr_u32(&r, RTA_GATEWAY, gw_be);
	if (ifindex > 0)
		attr_u32(&r, RTA_OIF, ifindex);
	return nl_talk(nl, &r, NULL, NULL);
}

int mz_nl_host_route_add(int nl, unsigned dst_be, unsigned src_be, int ifindex)
{
	struct rtmsg rtm = {
		.rtm_family = AF_INET,
		.rtm_dst_len = 32,
		.rtm_table = RT_TABLE_MAIN,
		.rtm_protocol = RTPROT_STATIC,
		.rtm_scope = RT_SCOPE_LINK,
		.rtm_type = RTN_UNICAST,
	};
	struct req r;
	req_init(&r, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &rtm, sizeof rtm);
	attr_u32(&r, RTA_DST, dst_be);
	attr_u32(&r, RTA_PREFSRC, src_be);
	attr_u32(&r, RTA_OIF, ifindex);
	return nl_talk(nl, &r, NULL, NULL);
}

int mz_nl_host_route_del(int nl, unsigned dst_be, int ifindex)
{
	struct rtmsg rtm = {
		.rtm_family = AF_INET,
		.rtm_dst_len = 32,
		.rtm_table = RT_TABLE_MAIN,
		.rtm_scope = RT_SCOPE_NOWHERE,
	};
	struct req r;
	req_init(&r, RTM_DELROUTE, 0, &rtm, sizeof rtm);
	attr_u32(&r, RTA_DST, dst_be);
	attr_u32(&r, RTA_OIF, ifindex);
	return nl_talk(nl, &r, NULL, NULL);
}

int mz_nl_neigh_set(int nl, int ifindex, unsigned ip_be, const unsigned char *mac)
{
	struct ndmsg ndm = {
		.ndm_family = AF_INET,
		.ndm_ifindex = ifindex,
		.ndm_state = NUD_PERMANENT,
	};
	struct req r;
	req_init(&r, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, &ndm, sizeof ndm);
	attr_u32(&r, NDA_DST, ip_be);
	attr_put(&r, NDA_LLADDR, mac, 6);
	return nl_talk(nl, &r, NULL, NULL);
}

int mz_nl_fdb_append(int nl, int vxlan_ifindex, unsigned dst_be)
{
	static const unsigned char any_mac[6];
	struct ndmsg ndm = {
		.ndm_family = AF_BRIDGE,
		.ndm_ifindex = vxlan_ifindex,
		.ndm_state = NUD_PERMANENT,
		.ndm_flags = NTF_SELF, /* the vxlan device's own table, not a bridge's */
	};
	struct req r;
	/* APPEND: the all-zero MAC holds a list of remotes; CREATE alone would
	 * fail on the second one with -EEXIST. */
	req_init(&r, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_APPEND, &ndm, sizeof ndm);
	attr_put(&r, NDA_LLADDR, any_mac, sizeof any_mac);
	attr_u32(&r, NDA_DST, dst_be);
	return nl_talk(nl, &r, NULL, NULL);
}

/* ---- ethtool ------------------------------------------------------------ */

static int ethtool(int netns_fd, const char *ifname, void *cmd)
{
	if (bad_name(ifname))
		return -EINVAL;
	int s = socket_in_netns(netns_fd, AF_INET, SOCK_DGRAM, 0);
	if (s < 0)
		return s;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	strncpy(ifr.ifr_name, ifname, sizeof ifr.ifr_name - 1);
	ifr.ifr_data = cmd;
	int err = ioctl(s, SIOCETHTOOL, &ifr) < 0 ? -errno : 0;
	close(s);
	return err;
}

int mz_ethtool_set_gro(int netns_fd, const char *ifname, int on)
{
	struct ethtool_value v = { .cmd = ETHTOOL_SGRO, .data = on ? 1 : 0 };
	return ethtool(netns_fd, ifname, &v);
}

int mz_ethtool_set_tx_csum(int netns_fd, const char *ifname, int on)
{
	struct ethtool_value v = { .cmd = ETHTOOL_STXCSUM, .data = on ? 1 : 0 };
	return ethtool(netns_fd, ifname, &v);
}

int mz_ethtool_driver(int netns_fd, const char *ifname, char *driver)
{
	struct ethtool_drvinfo info = { .cmd = ETHTOOL_GDRVINFO };
	int err = ethtool(netns_fd, ifname, &info);
	if (err)
		return err;
	/* The kernel NUL-terminates the field, so 31 characters is all of it. */
	snprintf(driver, 32, "%.*s", (int)sizeof info.driver - 1, info.driver);
	return 0;
}
