/* TCP connection set-up latency, for bench/service.sh.
 *
 *   connect_latency [-n N] [-w W] ADDR PORT [ADDR PORT ...]
 *       client: W untimed warm-up connections, then N new TCP connections
 *       one after another, each timed from connect() to established
 *       (CLOCK_MONOTONIC) and closed with SO_LINGER 0 (an RST: no
 *       TIME_WAIT, so ports never run out; the kernel picks a fresh source
 *       port each time). With several targets, N to each, taking turns one
 *       connection at a time. Prints one line per target:
 *       addr= n= failed= min_us= p50_us= p90_us= p99_us= max_us= mean_us=
 *       (n counts the connections that succeeded; a target that fails 5
 *       times in a row is given up and reported with what it has)
 *   connect_latency -s PORT                   server: accept and close,
 *       forever, on 0.0.0.0:PORT.
 *
 * Build: gcc -O2 -o connect_latency bench/connect_latency.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int serve(int port)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0) {
		perror("socket");
		return 1;
	}
	int one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY)};
	if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 4096) < 0) {
		perror("bind/listen");
		return 1;
	}
	for (;;) {
		int c = accept(s, NULL, NULL);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			perror("accept");
			return 1;
		}
		close(c);
	}
}

/* One connection: its set-up time in microseconds, or a negative value. */
static double one_connect(const struct sockaddr_in *to)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0)
		return -1;
	struct linger l = {.l_onoff = 1, .l_linger = 0};
	setsockopt(s, SOL_SOCKET, SO_LINGER, &l, sizeof l);
	struct timeval tv = {.tv_sec = 5}; /* connect() gives up after 5 s */
	setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	double t0 = now_us();
	int r = connect(s, (const struct sockaddr *)to, sizeof *to);
	double t1 = now_us();
	close(s);
	return r == 0 ? t1 - t0 : -1;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(const double *v, int n, double p)
{
	int i = (int)(p / 100.0 * n + 0.5) - 1; /* nearest rank */
	if (i < 0)
		i = 0;
	if (i >= n)
		i = n - 1;
	return v[i];
}

#define MAX_TARGETS 8

struct target {
	struct sockaddr_in to;
	const char *name;
	double *v, sum;
	int ok, failed, in_a_row;
};

int main(int argc, char **argv)
{
	int n = 2000, warm = 20, opt;
	while ((opt = getopt(argc, argv, "n:w:s:")) != -1) {
		switch (opt) {
		case 'n': n = atoi(optarg); break;
		case 'w': warm = atoi(optarg); break;
		case 's': return serve(atoi(optarg));
		default: goto usage;
		}
	}
	int nt = (argc - optind) / 2;
	if ((argc - optind) % 2 || nt < 1 || nt > MAX_TARGETS || n < 1)
		goto usage;
	struct target t[MAX_TARGETS] = {0};
	for (int k = 0; k < nt; k++) {
		t[k].name = argv[optind + 2 * k];
		t[k].to = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(atoi(argv[optind + 2 * k + 1]))};
		if (inet_pton(AF_INET, t[k].name, &t[k].to.sin_addr) != 1)
			goto usage;
		t[k].v = calloc(n, sizeof(double));
	}

	for (int i = 0; i < warm; i++)
		for (int k = 0; k < nt; k++)
			one_connect(&t[k].to);
	/* Several targets take turns, one connection each, so that they all
	 * see the same machine at the same time. */
	for (int i = 0; i < n; i++) {
		for (int k = 0; k < nt; k++) {
			struct target *x = &t[k];
			if (x->in_a_row >= 5)
				continue;
			double us = one_connect(&x->to);
			if (us < 0) {
				x->failed++;
				if (++x->in_a_row == 5) /* not answering: stop, report so far */
					fprintf(stderr, "connect_latency: %s: 5 failures in a row, giving up after %d attempts\n", x->name, i + 1);
				continue;
			}
			x->in_a_row = 0;
			x->v[x->ok++] = us;
			x->sum += us;
		}
	}
	for (int k = 0; k < nt; k++) {
		struct target *x = &t[k];
		if (x->ok == 0) {
			printf("addr=%s n=0 failed=%d min_us=0 p50_us=0 p90_us=0 p99_us=0 max_us=0 mean_us=0\n", x->name, x->failed);
			continue;
		}
		qsort(x->v, x->ok, sizeof(double), cmp);
		printf("addr=%s n=%d failed=%d min_us=%.1f p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f mean_us=%.1f\n", x->name, x->ok,
		       x->failed, x->v[0], pct(x->v, x->ok, 50), pct(x->v, x->ok, 90), pct(x->v, x->ok, 99), x->v[x->ok - 1],
		       x->sum / x->ok);
	}
	return 0;
usage:
	fprintf(stderr, "usage: %s [-n N] [-w WARMUP] ADDR PORT [ADDR PORT ...] | %s -s PORT\n", argv[0], argv[0]);
	return 2;
}
