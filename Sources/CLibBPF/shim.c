#include "clibbpf.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int mz_prog_test_run(int prog_fd, int xdp, __u32 ifindex, const void *data_in, __u32 size_in,
		     void *data_out, __u32 *size_out, __u32 repeat, __u32 *retval,
		     __u32 *duration_ns)
{
	struct xdp_md xctx = { .data_end = size_in, .ingress_ifindex = ifindex };
	struct __sk_buff sctx = { .ifindex = ifindex };
	void *ctx = xdp ? (void *)&xctx : (void *)&sctx;
	__u32 ctx_size = xdp ? sizeof(xctx) : sizeof(sctx);
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = data_in, .data_size_in = size_in,
		    .data_out = data_out, .data_size_out = *size_out, .ctx_in = ctx,
		    .ctx_size_in = ctx_size, .repeat = repeat);
	int err = bpf_prog_test_run_opts(prog_fd, &opts);
	if (err)
		return err < 0 ? err : -errno;
	*size_out = opts.data_size_out;
	*retval = opts.retval;
	*duration_ns = opts.duration;
	return 0;
}

int mz_map_update_batch(int map_fd, const void *keys, const void *values, __u32 *count,
			__u64 elem_flags)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = elem_flags);
	int err = bpf_map_update_batch(map_fd, keys, values, count, &opts);
	return err < 0 ? err : 0;
}

static int map_info(int map_fd, struct bpf_map_info *info)
{
	__u32 len = sizeof(*info);
	memset(info, 0, len);
	return bpf_obj_get_info_by_fd(map_fd, info, &len);
}

long long mz_map_capacity(int map_fd)
{
	struct bpf_map_info info;
	int err = map_info(map_fd, &info);
	return err < 0 ? err : (long long)info.max_entries;
}

long long mz_map_count(int map_fd)
{
	struct bpf_map_info info;
	int err = map_info(map_fd, &info);
	if (err < 0)
		return err;
	if (info.type != BPF_MAP_TYPE_HASH && info.type != BPF_MAP_TYPE_LRU_HASH)
		return -EOPNOTSUPP; /* per-CPU values, arrays, tries: not counted this way */
	/* Small batches for big values (a service's Maglev table). */
	const __u32 batch = info.value_size > 4096 ? 16 : 1024;
	char *keys = malloc((size_t)info.key_size * batch), *values = malloc((size_t)info.value_size * batch);
	/* The batch position: a bucket number for hash maps. */
	__u64 in = 0, out = 0;
	long long total = 0;
	int first = 1;
	if (!keys || !values) {
		free(keys);
		free(values);
		return -ENOMEM;
	}
	for (;;) {
		__u32 n = batch;
		err = bpf_map_lookup_batch(map_fd, first ? NULL : &in, &out, keys, values, &n, NULL);
		if (err < 0 && err != -ENOENT)
			break;
		total += n;
		if (err == -ENOENT) {
			err = 0;
			break;
		}
		in = out;
		first = 0;
	}
	free(keys);
	free(values);
	return err < 0 ? err : total;
}

int mz_btf_kind(const struct btf_type *t) { return btf_kind(t); }
int mz_btf_vlen(const struct btf_type *t) { return btf_vlen(t); }

const char *mz_btf_member(const struct btf *btf, const struct btf_type *t, int i,
			  __u32 *bit_offset, __u32 *type_id)
{
	const struct btf_member *m = btf_members(t) + i;
	*bit_offset = btf_member_bit_offset(t, i);
	*type_id = m->type;
	return btf__name_by_offset(btf, m->name_off);
}

/* libbpf 1.1 consumes every record a consume call reaches (a callback's
 * non-negative return does not stop it, a negative one loses the record):
 * records beyond what the caller's buffer holds are kept here, in order,
 * and handed out first by the next read. */
struct mz_ringbuf {
	struct ring_buffer *rb;
	size_t record_size;
	char *out;
	int max;
	int n;
	char *spill;     /* records consumed but not yet handed out */
	size_t spill_n;  /* how many */
	size_t spill_at; /* the first not handed out */
	size_t spill_cap;
};

static int on_record(void *ctx, void *data, size_t size)
{
	struct mz_ringbuf *r = ctx;
	size_t len = size < r->record_size ? size : r->record_size;
	char *to;
	if (r->n < r->max) {
		to = r->out + (size_t)r->n * r->record_size;
		r->n++;
	} else {
		if (r->spill_n == r->spill_cap) {
			size_t cap = r->spill_cap ? r->spill_cap * 2 : 1024;
			char *grown = realloc(r->spill, cap * r->record_size);
			if (!grown)
				return -ENOMEM;
			r->spill = grown;
			r->spill_cap = cap;
		}
		to = r->spill + r->spill_n * r->record_size;
		r->spill_n++;
	}
	memset(to, 0, r->record_size);
	memcpy(to, data, len);
	return 0;
}

struct mz_ringbuf *mz_ringbuf_open(int map_fd, size_t record_size)
{
	struct mz_ringbuf *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->record_size = record_size;
	r->rb = ring_buffer__new(map_fd, on_record, r, NULL);
	if (!r->rb) {
		int e = errno;
		free(r);
		errno = e;
		return NULL;
	}
	return r;
}

int mz_ringbuf_read(struct mz_ringbuf *r, void *out, int max_records)
{
	r->out = out;
	r->max = max_records;
	r->n = 0;
	/* What an earlier read consumed but could not hand out goes first. */
	size_t queued = r->spill_n - r->spill_at;
	if (queued > 0) {
		size_t take = queued < (size_t)max_records ? queued : (size_t)max_records;
		memcpy(out, r->spill + r->spill_at * r->record_size, take * r->record_size);
		r->spill_at += take;
		r->n = (int)take;
		if (r->spill_at == r->spill_n)
			r->spill_n = r->spill_at = 0;
		if (r->n == max_records)
			return r->n;
	}
	int err = ring_buffer__consume(r->rb);
	if (err < 0 && r->n == 0)
		return err;
	return r->n;
}

int mz_ringbuf_wait(struct mz_ringbuf *r, int timeout_ms)
{
	if (r->spill_n > r->spill_at)
		return 1;
	struct pollfd pfd = { .fd = ring_buffer__epoll_fd(r->rb), .events = POLLIN };
	int n = poll(&pfd, 1, timeout_ms);
	if (n < 0)
		return -errno;
	return n > 0;
}

void mz_ringbuf_close(struct mz_ringbuf *r)
{
	if (!r)
		return;
	ring_buffer__free(r->rb);
	free(r->spill);
	free(r);
}

static int quiet_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	return 0;
}

static int warn_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, args);
}

void mz_libbpf_quiet(int quiet)
{
	libbpf_set_print(quiet ? quiet_print : warn_print);
}

static void tc_ingress(struct bpf_tc_hook *hook, struct bpf_tc_opts *opts, int ifindex)
{
	memset(hook, 0, sizeof(*hook));
	hook->sz = sizeof(*hook);
	hook->ifindex = ifindex;
	hook->attach_point = BPF_TC_INGRESS;
	memset(opts, 0, sizeof(*opts));
	opts->sz = sizeof(*opts);
	opts->handle = 1;
	opts->priority = 1;
}

int mz_tc_attach_ingress(int ifindex, int prog_fd)
{
	struct bpf_tc_hook hook;
	struct bpf_tc_opts opts;
	tc_ingress(&hook, &opts, ifindex);
	int err = bpf_tc_hook_create(&hook);
	if (err && err != -EEXIST)
		return err;
	opts.prog_fd = prog_fd;
	opts.flags = BPF_TC_F_REPLACE;
	return bpf_tc_attach(&hook, &opts);
}


/* "Nothing there" is an answer here, not an error worth libbpf's warning. */
int mz_tc_detach_ingress(int ifindex)
{
	struct bpf_tc_hook hook;
	struct bpf_tc_opts opts;
	tc_ingress(&hook, &opts, ifindex);
	libbpf_print_fn_t old = libbpf_set_print(quiet_print);
	int err = bpf_tc_detach(&hook, &opts);
	libbpf_set_print(old);
	return err;
}

int mz_tc_query_ingress(int ifindex, __u32 *prog_id)
{
	struct bpf_tc_hook hook;
	struct bpf_tc_opts opts;
	tc_ingress(&hook, &opts, ifindex);
	libbpf_print_fn_t old = libbpf_set_print(quiet_print);
	int err = bpf_tc_query(&hook, &opts);
	libbpf_set_print(old);
	if (err)
		return err;
	*prog_id = opts.prog_id;
	return 0;
}

int mz_xdp_attach(int ifindex, int prog_fd, __u32 flags)
{
	return bpf_xdp_attach(ifindex, prog_fd, flags, NULL);
}

int mz_xdp_detach(int ifindex, __u32 flags)
{
	return bpf_xdp_detach(ifindex, flags, NULL);
}

int mz_xdp_query(int ifindex, __u32 flags, __u32 *prog_id)
{
	*prog_id = 0;
	return bpf_xdp_query_id(ifindex, (int)flags, prog_id);
}

int mz_prog_id(int prog_fd, __u32 *prog_id)
{
	struct bpf_prog_info info;
	__u32 len = sizeof(info);
	memset(&info, 0, sizeof(info));
	int err = bpf_obj_get_info_by_fd(prog_fd, &info, &len);
	if (err)
		return err;
	*prog_id = info.id;
	return 0;
}
