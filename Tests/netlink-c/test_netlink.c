#define _GNU_SOURCE
/* Standalone test of Sources/CNetlink. It creates links, so it refuses to run
 * outside a private network namespace:
 *
 *   gcc -Wall -Werror -O2 -I Sources/CNetlink/include Sources/CNetlink/netlink.c \
 *       Tests/netlink-c/test_netlink.c -lpthread -o /tmp/test_netlink
 *   unshare --net /tmp/test_netlink
 *
 * Two named namespaces (/run/netns/mznl<pid>-a, -b) live in the shared mount
 * table, so they are removed on every exit path, signals included. `ip` and
 * `bridge` are used only to cross-check what the library did.
 */
#include "cnetlink.h"

#include <net/if.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <linux/ethtool.h>
#include <linux/sockios.h>

static int passed, failed;
static char ns_a[64], ns_b[64], name_a[32], name_b[32];

static int check(int ok, const char *what, int line)
{
	if (ok)
		passed++;
	else
		failed++;
	printf("%s %s (line %d)\n", ok ? "ok  " : "FAIL", what, line);
	return ok;
}

static int check_eq(long got, long want, const char *what, int line)
{
	if (got != want)
		printf("     got %ld, want %ld\n", got, want);
	return check(got == want, what, line);
}

#define CHECK(c) check(!!(c), #c, __LINE__)
#define EQ(a, b) check_eq((long)(a), (long)(b), #a " == " #b, __LINE__)
/* For steps the rest depends on: record, then go straight to teardown. */
#define REQUIRE(c) do { if (!CHECK(c)) goto out; } while (0)
#define REQUIRE_EQ(a, b) do { if (!EQ(a, b)) goto out; } while (0)

/* Only syscalls, so it is also safe from the signal handler. */
static void remove_namespaces(void)
{
	const char *paths[] = { ns_a, ns_b };
	for (int i = 0; i < 2; i++) {
		if (!paths[i][0])
			continue;
		umount2(paths[i], MNT_DETACH);
		unlink(paths[i]);
	}
}

static void on_signal(int sig)
{
	remove_namespaces();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void thread_ns(char out[64])
{
	ssize_t n = readlink("/proc/thread-self/ns/net", out, 63);
	out[n < 0 ? 0 : n] = '\0';
}

/* Runs a shell command and returns its stdout (empty on failure). */
static const char *sh(const char *fmt, ...)
{
	static char out[8192];
	char cmd[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	out[0] = '\0';
	FILE *p = popen(cmd, "r");
	if (!p)
		return out;
	size_t n = fread(out, 1, sizeof out - 1, p);
	out[n] = '\0';
	pclose(p);
	return out;
}

/* A socket in another namespace, through the public setns call. */
static int socket_in(int ns_fd, int type)
{
	int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (home < 0 || mz_setns_net(ns_fd) < 0)
		return -1;
	int s = socket(AF_INET, type | SOCK_CLOEXEC, 0);
	if (mz_setns_net(home) < 0)
		abort();
	close(home);
	return s;
}

static unsigned ip(const char *s)
{
	struct in_addr a;
	inet_pton(AF_INET, s, &a);
	return a.s_addr;
}

/* One UDP datagram there and back, with a 3 s limit for each direction;
 * the reply must come from server_ip. Returns 0 on success. */
static int udp_roundtrip(int client_ns, int server_ns, const char *server_ip, int port)
{
	struct timeval tv = { .tv_sec = 3 };
	struct sockaddr_in srv = { .sin_family = AF_INET, .sin_port = htons(port),
				   .sin_addr.s_addr = ip(server_ip) };
	struct sockaddr_in from;
	socklen_t from_len = sizeof from;
	char buf[16];
	int rc = -1;
	int s = socket_in(server_ns, SOCK_DGRAM), c = socket_in(client_ns, SOCK_DGRAM);
	if (s < 0 || c < 0)
		goto done;
	if (setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
	    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
	    bind(s, (struct sockaddr *)&srv, sizeof srv) < 0 ||
	    sendto(c, "ping", 4, 0, (struct sockaddr *)&srv, sizeof srv) != 4 ||
	    recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &from_len) != 4 ||
	    sendto(s, "pong", 4, 0, (struct sockaddr *)&from, from_len) != 4)
		goto done;
	from_len = sizeof from;
	if (recvfrom(c, buf, sizeof buf, 0, (struct sockaddr *)&from, &from_len) != 4 ||
	    memcmp(buf, "pong", 4) || from.sin_addr.s_addr != srv.sin_addr.s_addr)
		goto done;
	rc = 0;
done:
	if (s >= 0)
		close(s);
	if (c >= 0)
		close(c);
	return rc;
}

static int ethtool_get(int ns_fd, const char *ifname, unsigned cmd)
{
	struct ethtool_value v = { .cmd = cmd };
	struct ifreq ifr = { .ifr_data = (void *)&v };
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
	int s = socket_in(ns_fd, SOCK_DGRAM);
	int rc = s < 0 || ioctl(s, SIOCETHTOOL, &ifr) < 0 ? -1 : (int)v.data;
	if (s >= 0)
		close(s);
	return rc;
}

/* Link-local addresses follow carrier through linkwatch, which is deferred:
 * poll a while before believing there is none. */
static int has_ipv6(const char *netns, const char *dev, int wait_ms)
{
	for (int waited = 0;; waited += 100) {
		const char *out = netns ? sh("ip -n %s -6 -o addr show dev %s 2>&1", netns, dev)
					: sh("ip -6 -o addr show dev %s 2>&1", dev);
		if (strstr(out, "inet6"))
			return 1;
		if (waited >= wait_ms)
			return 0;
		usleep(100 * 1000);
	}
}

int main(void)
{
	char home_ns[64], now_ns[64], drv[32];
	int fd_a = -1, fd_b = -1, nl = -1, nl_a = -1, nl_b = -1, i;
	struct mz_link_info li;
	const unsigned char peer_mac[6] = { 0x02, 0x00, 0x5e, 0x10, 0x00, 0x01 };
	const unsigned char bv_mac[6] = { 0x02, 0x00, 0x5e, 0x10, 0x00, 0x02 };

	setvbuf(stdout, NULL, _IOLBF, 0);
	thread_ns(home_ns);
	char init_ns[64];
	ssize_t n = readlink("/proc/1/ns/net", init_ns, sizeof init_ns - 1);
	init_ns[n < 0 ? 0 : n] = '\0';
	if (!strcmp(home_ns, init_ns)) {
		fprintf(stderr, "refusing to run in pid 1's network namespace; "
				"use: unshare --net %s\n", "test_netlink");
		return 2;
	}

	snprintf(name_a, sizeof name_a, "mznl%d-a", (int)getpid());
	snprintf(name_b, sizeof name_b, "mznl%d-b", (int)getpid());
	snprintf(ns_a, sizeof ns_a, "/run/netns/%s", name_a);
	snprintf(ns_b, sizeof ns_b, "/run/netns/%s", name_b);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGSEGV, on_signal);
	signal(SIGABRT, on_signal);

	/* ---- namespaces ---- */
	REQUIRE_EQ(mz_netns_create(ns_a), 0);
	REQUIRE_EQ(mz_netns_create(ns_b), 0);
	thread_ns(now_ns);
	CHECK(!strcmp(now_ns, home_ns)); /* mz_netns_create left us home */
	EQ(mz_netns_create(ns_a), -EEXIST);
	/* /run/netns is a shared mount point of its own, as iproute2 keeps it:
	 * an `ip netns add` now does not bind the directory over ours, which
	 * would hide them where no delete reaches (checked at the end). */
	CHECK(atoi(sh("awk '$5 == \"/run/netns\"' /proc/self/mountinfo | wc -l")) >= 1);
	CHECK(strstr(sh("ip netns add %s-c 2>&1 && ip netns del %s-c 2>&1 && echo iproute2-ok", name_a, name_a),
		     "iproute2-ok") != NULL);
	REQUIRE((fd_a = mz_netns_open(ns_a)) >= 0);
	REQUIRE((fd_b = mz_netns_open(ns_b)) >= 0);
	{
		struct stat sa, sb, sh_;
		CHECK(fstat(fd_a, &sa) == 0 && fstat(fd_b, &sb) == 0 &&
		      stat("/proc/thread-self/ns/net", &sh_) == 0 && sa.st_ino != sb.st_ino &&
		      sa.st_ino != sh_.st_ino && sb.st_ino != sh_.st_ino);
	}
	EQ(mz_netns_open("/run/netns/mznl-no-such-ns"), -ENOENT);
	EQ(mz_netns_delete("/run/netns/mznl-no-such-ns"), -ENOENT);

	REQUIRE((nl = mz_nl_open(-1)) >= 0);
	REQUIRE((nl_a = mz_nl_open(fd_a)) >= 0);
	REQUIRE((nl_b = mz_nl_open(fd_b)) >= 0);
	thread_ns(now_ns);
	CHECK(!strcmp(now_ns, home_ns)); /* mz_nl_open(fd) left us home */
	{
		int not_ns = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
		EQ(mz_nl_open(not_ns), -EINVAL);
		close(not_ns);
	}
	EQ(mz_nl_link_index(nl, "mznl-missing"), -ENODEV);
	EQ(mz_nl_link_get(nl, 999999, &li), -ENODEV);
	EQ(mz_nl_link_index(nl, "name-far-too-long-for-linux"), -EINVAL);

	/* ---- veth with the peer created inside ns a ---- */
	REQUIRE_EQ(mz_nl_veth_add(nl, "mzv0", "mzv0p", fd_a, 1400, peer_mac), 0);
	EQ(mz_nl_veth_add(nl, "mzv0", "mzv0q", fd_a, 0, NULL), -EEXIST);
	EQ(mz_nl_link_index(nl, "mzv0p"), -ENODEV); /* not here... */
	int v0p = mz_nl_link_index(nl_a, "mzv0p");   /* ...but in a */
	REQUIRE(v0p > 0);
	REQUIRE_EQ(mz_nl_link_get(nl_a, v0p, &li), 0);
	EQ(li.ifindex, v0p);
	EQ(li.mtu, 1400);
	CHECK(!memcmp(li.mac, peer_mac, 6));
	CHECK(!strcmp(li.name, "mzv0p"));
	CHECK(!strcmp(li.kind, "veth"));
	EQ(li.master, 0);
	int v0 = mz_nl_link_index(nl, "mzv0");
	REQUIRE(v0 > 0);
	REQUIRE_EQ(mz_nl_link_get(nl, v0, &li), 0);
	EQ(li.mtu, 1400);
	CHECK(!(li.flags & IFF_UP));

	/* ---- a <-> b over a veth moved with set_netns, IPv6 off ---- */
	REQUIRE_EQ(mz_nl_veth_add(nl, "mzx0", "mzx1", -1, 0, NULL), 0);
	int x0 = mz_nl_link_index(nl, "mzx0"), x1 = mz_nl_link_index(nl, "mzx1");
	REQUIRE(x0 > 0 && x1 > 0);
	REQUIRE_EQ(mz_nl_link_set_netns(nl, x0, fd_a), 0);
	REQUIRE_EQ(mz_nl_link_set_netns(nl, x1, fd_b), 0);
	EQ(mz_nl_link_index(nl, "mzx0"), -ENODEV);
	REQUIRE((x0 = mz_nl_link_index(nl_a, "mzx0")) > 0);
	REQUIRE((x1 = mz_nl_link_index(nl_b, "mzx1")) > 0);
	EQ(mz_nl_link_set_ipv6_off(nl_a, x0), 0);
	EQ(mz_nl_link_set_ipv6_off(nl_b, x1), 0);
	EQ(mz_nl_addr_add(nl_a, x0, ip("10.99.1.1"), 24), 0);
	EQ(mz_nl_addr_add(nl_a, x0, ip("10.99.1.1"), 24), -EEXIST);
	EQ(mz_nl_addr_add(nl_a, x0, ip("10.99.2.1"), 32), 0);
	EQ(mz_nl_addr_add(nl_b, x1, ip("10.99.1.2"), 24), 0);
	EQ(mz_nl_addr_add(nl_b, x1, ip("10.99.1.3"), 33), -EINVAL);
	EQ(mz_nl_link_set(nl_a, x0, 1, 0, NULL), 0);
	EQ(mz_nl_link_set(nl_b, x1, 1, 0, NULL), 0);
	/* Routes need the link up (the kernel rejects a dead nexthop). */
	EQ(mz_nl_route_add(nl_b, 0, 0, ip("10.99.1.1"), x1), 0);
	EQ(mz_nl_route_add(nl_b, 0, 0, ip("10.99.1.1"), x1), -EEXIST);
	EQ(mz_nl_route_add(nl_a, ip("10.99.3.0"), 24, 0, x0), 0);
	CHECK(strstr(sh("ip -n %s -4 route show default", name_b),
		     "default via 10.99.1.1 dev mzx1 proto static"));
	CHECK(strstr(sh("ip -n %s -4 route show 10.99.3.0/24", name_a),
		     "10.99.3.0/24 dev mzx0 proto static scope link"));
	/* A host route with its source, and a permanent neighbour. */
	static const unsigned char nb_mac[6] = { 0x02, 0x99, 0, 0, 0, 0x07 };
	EQ(mz_nl_host_route_add(nl_a, ip("10.99.7.7"), ip("10.99.2.1"), x0), 0);
	EQ(mz_nl_host_route_add(nl_a, ip("10.99.7.7"), ip("10.99.2.1"), x0), -EEXIST);
	CHECK(strstr(sh("ip -n %s -4 route show 10.99.7.7", name_a),
		     "10.99.7.7 dev mzx0 proto static scope link src 10.99.2.1"));
	EQ(mz_nl_neigh_set(nl_a, x0, ip("10.99.7.7"), nb_mac), 0);
	EQ(mz_nl_neigh_set(nl_a, x0, ip("10.99.7.7"), nb_mac), 0);
	CHECK(strstr(sh("ip -n %s neigh show 10.99.7.7", name_a), "lladdr 02:99:00:00:00:07 PERMANENT"));
	EQ(mz_nl_host_route_del(nl_a, ip("10.99.7.7"), x0), 0);
	EQ(mz_nl_host_route_del(nl_a, ip("10.99.7.7"), x0), -ESRCH);
	CHECK(!strstr(sh("ip -n %s -4 route show 10.99.7.7", name_a), "10.99.7.7"));
	EQ(mz_nl_link_get(nl_a, x0, &li), 0);
	CHECK(li.flags & IFF_UP);
	/* Direct, then through b's default route to an address only a has. */
	EQ(udp_roundtrip(fd_a, fd_b, "10.99.1.2", 5555), 0);
	EQ(udp_roundtrip(fd_b, fd_a, "10.99.2.1", 5556), 0);

	/* Control: the same kind of link without ipv6_off does get an IPv6
	 * address, so the absence checked below means something. */
	EQ(mz_nl_link_set(nl_a, v0p, 1, 0, NULL), 0);
	EQ(mz_nl_link_set(nl, v0, 1, 0, NULL), 0);
	CHECK(has_ipv6(NULL, "mzv0", 3000));
	CHECK(!has_ipv6(name_a, "mzx0", 0));
	CHECK(!has_ipv6(name_b, "mzx1", 0));

	/* ---- bridge, master, link_set ---- */
	REQUIRE_EQ(mz_nl_bridge_add(nl, "mzbr0"), 0);
	EQ(mz_nl_bridge_add(nl, "mzbr0"), -EEXIST);
	int br = mz_nl_link_index(nl, "mzbr0");
	REQUIRE(br > 0);
	EQ(mz_nl_link_get(nl, br, &li), 0);
	CHECK(!strcmp(li.kind, "bridge"));
	REQUIRE_EQ(mz_nl_veth_add(nl, "mzbv0", "mzbv1", -1, 0, NULL), 0);
	int bv0 = mz_nl_link_index(nl, "mzbv0"), bv1 = mz_nl_link_index(nl, "mzbv1");
	REQUIRE(bv0 > 0 && bv1 > 0);
	EQ(mz_nl_link_set_master(nl, bv0, br), 0);
	EQ(mz_nl_link_get(nl, bv0, &li), 0);
	EQ(li.master, br);
	EQ(mz_nl_link_set(nl, bv1, 1, 1300, bv_mac), 0);
	EQ(mz_nl_link_get(nl, bv1, &li), 0);
	CHECK(li.flags & IFF_UP);
	EQ(li.mtu, 1300);
	CHECK(!memcmp(li.mac, bv_mac, 6));
	EQ(mz_nl_link_set(nl, bv1, 0, 0, NULL), 0);
	EQ(mz_nl_link_get(nl, bv1, &li), 0);
	CHECK(!(li.flags & IFF_UP));
	EQ(li.mtu, 1300); /* mtu 0 left it alone */
	EQ(mz_nl_link_set(nl, bv1, -1, 0, NULL), 0);
	EQ(mz_nl_link_get(nl, bv1, &li), 0);
	CHECK(!(li.flags & IFF_UP)); /* -1 left it alone */

	/* ---- vxlan + flood list ---- */
	EQ(mz_nl_addr_add(nl, bv1, ip("10.99.5.1"), 24), 0);
	REQUIRE_EQ(mz_nl_vxlan_add(nl, "mzvx0", 4242, ip("10.99.5.1"), bv1, 4789), 0);
	EQ(mz_nl_vxlan_add(nl, "mzvx0", 4242, ip("10.99.5.1"), bv1, 4789), -EEXIST);
	int vx = mz_nl_link_index(nl, "mzvx0");
	REQUIRE(vx > 0);
	EQ(mz_nl_link_get(nl, vx, &li), 0);
	CHECK(!strcmp(li.kind, "vxlan"));
	{
		const char *d = sh("ip -d link show mzvx0");
		CHECK(strstr(d, "vxlan id 4242 local 10.99.5.1 dev mzbv1"));
		CHECK(strstr(d, "dstport 4789"));
		CHECK(!strstr(d, "nolearning"));
	}
	EQ(mz_nl_fdb_append(nl, vx, ip("10.99.5.2")), 0);
	EQ(mz_nl_fdb_append(nl, vx, ip("10.99.5.3")), 0);
	{
		const char *f = sh("bridge fdb show dev mzvx0");
		CHECK(strstr(f, "00:00:00:00:00:00 dst 10.99.5.2 self permanent"));
		CHECK(strstr(f, "00:00:00:00:00:00 dst 10.99.5.3 self permanent"));
	}

	/* ---- ethtool ---- */
	EQ(mz_ethtool_driver(-1, "mzv0", drv), 0);
	CHECK(!strcmp(drv, "veth"));
	EQ(mz_ethtool_driver(fd_a, "mzv0p", drv), 0);
	CHECK(!strcmp(drv, "veth"));
	EQ(mz_ethtool_driver(fd_a, "mzbr0", drv), -ENODEV); /* the bridge is not in a */
	EQ(mz_ethtool_driver(-1, "mzbr0", drv), 0);
	CHECK(!strcmp(drv, "bridge"));
	for (i = 1; i >= 0; i--) {
		EQ(mz_ethtool_set_gro(fd_a, "mzv0p", i), 0);
		EQ(ethtool_get(fd_a, "mzv0p", ETHTOOL_GGRO), i);
	}
	for (i = 0; i <= 1; i++) {
		EQ(mz_ethtool_set_tx_csum(fd_a, "mzv0p", i), 0);
		EQ(ethtool_get(fd_a, "mzv0p", ETHTOOL_GTXCSUM), i);
		if (!i) /* TSO needs transmit checksums */
			EQ(ethtool_get(fd_a, "mzv0p", ETHTOOL_GTSO), 0);
	}
	thread_ns(now_ns);
	CHECK(!strcmp(now_ns, home_ns)); /* the ethtool calls left us home */

	/* ---- deletion ---- */
	EQ(mz_nl_link_del(nl, vx), 0);
	EQ(mz_nl_link_index(nl, "mzvx0"), -ENODEV);
	EQ(mz_nl_link_del(nl, v0), 0);
	EQ(mz_nl_link_index(nl_a, "mzv0p"), -ENODEV); /* the peer went with it */
	EQ(mz_nl_link_del(nl, v0), -ENODEV);
	EQ(mz_nl_link_del(nl, br), 0);

out:
	mz_nl_close(nl);
	mz_nl_close(nl_a);
	mz_nl_close(nl_b);
	if (fd_a >= 0)
		close(fd_a);
	if (fd_b >= 0)
		close(fd_b);
	EQ(mz_netns_delete(ns_a), 0);
	EQ(mz_netns_delete(ns_b), 0);
	CHECK(access(ns_a, F_OK) < 0 && errno == ENOENT);
	EQ(mz_netns_delete(ns_a), -ENOENT);
	remove_namespaces(); /* in case a delete above failed */
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
