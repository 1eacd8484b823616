/* libbpf for Swift, wrapped once. Swift sees libbpf's own API plus a few
 * shims for what does not import: LIBBPF_OPTS structs (their .sz must be
 * set), BTF's static inline accessors, and ring buffer callbacks. Every shim
 * returns 0 or a negative errno, like libbpf 1.x. */
#ifndef CLIBBPF_H
#define CLIBBPF_H

#include <stddef.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <linux/if_link.h>

/* BPF_PROG_TEST_RUN as if the packet arrived on `ifindex`: the context is
 * an xdp_md (xdp != 0) or an __sk_buff. */
int mz_prog_test_run(int prog_fd, int xdp, __u32 ifindex, const void *data_in, __u32 size_in,
		     void *data_out, __u32 *size_out, __u32 repeat, __u32 *retval,
		     __u32 *duration_ns);

int mz_map_update_batch(int map_fd, const void *keys, const void *values, __u32 *count,
			__u64 elem_flags);
/* How many entries a hash map (plain or LRU, not per-CPU) holds now, read
 * in batches (a few syscalls per thousand entries); a negative errno on
 * failure, -EOPNOTSUPP for other kinds of map. */
long long mz_map_count(int map_fd);
/* A map's capacity (max_entries); a negative errno on failure. */
long long mz_map_capacity(int map_fd);

/* BTF: a type's kind, member count, and one member's name and bit offset. */
int mz_btf_kind(const struct btf_type *t);
int mz_btf_vlen(const struct btf_type *t);
const char *mz_btf_member(const struct btf *btf, const struct btf_type *t, int i,
			  __u32 *bit_offset, __u32 *type_id);

/* Ring buffer reader that copies records of up to record_size bytes into a
 * caller's buffer. */
struct mz_ringbuf;
struct mz_ringbuf *mz_ringbuf_open(int map_fd, size_t record_size);
/* Copies up to max_records of what is there now, oldest first; returns how
 * many. None is lost: what does not fit comes with the next read. */
int mz_ringbuf_read(struct mz_ringbuf *rb, void *out, int max_records);
void mz_ringbuf_close(struct mz_ringbuf *rb);
/* Waits up to timeout_ms for records (or returns at once when an earlier
 * read left some): 1 when there are, 0 on timeout, -errno on error. Consumes
 * nothing. */
int mz_ringbuf_wait(struct mz_ringbuf *rb, int timeout_ms);

/* tc on an interface's ingress: creates the clsact qdisc if missing and
 * attaches prog_fd as the one filter at handle 1, priority 1, replacing in
 * one step whatever program is there (a restart swaps programs without a
 * gap). The filter stays after the process exits. */
int mz_tc_attach_ingress(int ifindex, int prog_fd);
/* Removes that filter; -ENOENT if there is none. */
int mz_tc_detach_ingress(int ifindex);
/* The id of the program in that filter; -ENOENT if there is none. */
int mz_tc_query_ingress(int ifindex, __u32 *prog_id);

/* XDP through netlink (bpf_xdp_attach): replaces what is attached and
 * stays after the process exits. flags: XDP_FLAGS_DRV_MODE or SKB_MODE. */
enum { MZ_XDP_NATIVE = XDP_FLAGS_DRV_MODE, MZ_XDP_GENERIC = XDP_FLAGS_SKB_MODE };
int mz_xdp_attach(int ifindex, int prog_fd, __u32 flags);
int mz_xdp_detach(int ifindex, __u32 flags);
/* The attached program's id, 0 if none. */
int mz_xdp_query(int ifindex, __u32 flags, __u32 *prog_id);

/* The id of a loaded program. */
int mz_prog_id(int prog_fd, __u32 *prog_id);

/* Silences libbpf's warnings (1) or lets them through to stderr (0). */
void mz_libbpf_quiet(int quiet);

#endif
