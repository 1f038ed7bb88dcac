// SPDX-License-Identifier: GPL-2.0
//
// The in-kernel snapshot: a BPF_PROG_TYPE_SYSCALL program, run by BPF_PROG_TEST_RUN, walks
// one map with bpf_for_each_map_elem() and writes every key and value into two
// BPF_F_MMAPABLE arrays that user space has mmap'ed. One system call per walk, and no
// copy_to_user: user space reads the pages in place.
//
// Bound before load (ffi/dump/snapshot.ts):
//   target      bpf_map__reuse_fd(): the map to walk (its type and sizes replace the
//               placeholder below; the map is a verifier constant, so one load per map)
//   keys_out    ARRAY | MMAPABLE, value_size = key_group * key_size
//   values_out  ARRAY | MMAPABLE, value_size = value_group * value_size
//   stop_key    ARRAY, 1 entry, value_size = key_size: the sentinel (SNAP_F_SENTINEL)
//   .rodata     struct snap_config
//
// Output layout: the keys of the entries copied, packed (key i at byte i * key_size of the
// keys_out mapping), and the values, packed (value i at byte i * value_size of values_out).
// A group is the fewest entries whose bytes are a multiple of 8 (8 / gcd(size, 8): 1, 2, 4 or
// 8 entries), because the kernel rounds an array element up to 8 bytes: with whole groups
// per element, the elements of the array follow each other without a gap, so the mapping is
// the packed sequence that BatchView hands out.
//
// One run (ctx = struct snap_args, copied in and back out by BPF_PROG_TEST_RUN):
//   - copies at most `limit` entries; meeting element limit + 1 stops the walk (SNAP_LIMIT),
//     so a map of exactly `limit` entries completes in one run;
//   - with SNAP_F_SENTINEL, stops at the element whose key equals stop_key, not copied
//     (SNAP_SENTINEL): checked before the limit;
//   - the walk cannot be resumed (bpf_for_each_map_elem always starts at bucket 0), so for
//     a stop at the limit it says where LOOKUP_BATCH should take over: `resume_cursor`
//     (bucket index for hash maps, element index for arrays) and `keep`, the entries to hand
//     out (the copied ones, less the trailing ones of the resume bucket, which LOOKUP_BATCH
//     from that bucket returns again). Hash maps: bucket = htab_elem.hash & (n_buckets - 1),
//     read from the element (bpf_probe_read_kernel, CO-RE offsets) for the last
//     TAIL_WINDOW elements copied and for the stopping one only.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

/* Keys and values up to this size are copied and compared inline (a word loop the verifier
 * walks once per word); larger values go through bpf_probe_read_kernel(). */
#define MAX_INLINE	512
/* Elements before the limit whose bucket is read, to trim the copy to whole buckets. */
#define TAIL_WINDOW	64

enum snap_stop {
	SNAP_END = 0,      /* walked to the end of the map */
	SNAP_LIMIT = 1,    /* met element limit + 1 */
	SNAP_SENTINEL = 2, /* met the sentinel key (not copied) */
	SNAP_FULL = 3,     /* met element capacity + 1 (the map changed during the walk) */
	SNAP_BAD = 4,      /* sizes in .rodata do not fit the arrays: nothing copied */
};

#define SNAP_F_SENTINEL	1

struct snap_config {
	__u32 key_size;
	__u32 value_size;
	__u32 key_shift;   /* log2(entries per keys_out element) */
	__u32 value_shift; /* log2(entries per values_out element) */
	__u32 is_hash;     /* 1: hash or lru_hash (bucket cursor); 0: array (index cursor) */
	__u32 whole_map;   /* 1: capacity >= the map's max_entries (meeting it means SNAP_FULL) */
	__u64 capacity;    /* entries keys_out and values_out hold */
};

const volatile struct snap_config cfg = { .key_size = 4, .value_size = 4, .key_shift = 1, .value_shift = 1, .is_hash = 1, .whole_map = 1, .capacity = 1 };

struct snap_args {
	__u64 limit;         /* in: copy at most this many (<= capacity) */
	__u64 flags;         /* in: SNAP_F_SENTINEL */
	__u64 copied;        /* out: entries written to keys_out and values_out */
	__u64 visited;       /* out: elements the walk called back for (bpf_for_each_map_elem) */
	__u64 keep;          /* out: entries to hand out (copied, less the resume bucket's) */
	__u32 stopped;       /* out: enum snap_stop */
	__u32 resume_known;  /* out: 1 when resume_cursor and keep are exact */
	__u32 resume_cursor; /* out: LOOKUP_BATCH in_batch that follows `keep` */
	__u32 n_buckets;     /* out: hash maps: the table's buckets */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} target SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__uint(key_size, 4);
	__uint(value_size, 8);
} keys_out SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__uint(key_size, 4);
	__uint(value_size, 8);
} values_out SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, 4);
	__uint(value_size, 8);
} stop_key SEC(".maps");

/* The walk's state lives in a map value rather than on the stack: the verifier does not track
 * what a map value holds, so it checks the callback once for any count; with the count on the
 * stack it would check it once per value of the count (and exceed its 1M-instruction budget).
 * One run at a time per loaded object (MapSnapshot runs one walk at a time). */
struct walk {
	__u64 limit;
	__u64 copied;
	__u64 window_from; /* first copied index whose bucket is read */
	__u64 run_start;   /* copied index where the current bucket's run began */
	__u32 stopped;
	__u32 sentinel;
	__u32 mask;        /* n_buckets - 1 */
	__u32 run_bucket;
	__u32 run_known;   /* run_start is exact (a bucket change was seen, or the run began at 0) */
	__u32 resume_known;
	__u32 resume_cursor;
	__u64 keep;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct walk);
} walk_state SEC(".maps");

/* Copies `size` bytes (a .rodata constant, so the verifier knows every offset). */
static __always_inline void copy_bytes(void *dst, const void *src, __u32 size)
{
	__u32 words = size / 8, at, i;

	for (i = 0; i < MAX_INLINE / 8; i++) {
		if (i >= words)
			break;
		((__u64 *)dst)[i] = ((const __u64 *)src)[i];
	}
	at = words * 8;
	if (size & 4) {
		*(__u32 *)(dst + at) = *(const __u32 *)(src + at);
		at += 4;
	}
	if (size & 2) {
		*(__u16 *)(dst + at) = *(const __u16 *)(src + at);
		at += 2;
	}
	if (size & 1)
		*(__u8 *)(dst + at) = *(const __u8 *)(src + at);
}

static __always_inline int same_bytes(const void *a, const void *b, __u32 size)
{
	__u32 words = size / 8, at, i;

	for (i = 0; i < MAX_INLINE / 8; i++) {
		if (i >= words)
			break;
		if (((const __u64 *)a)[i] != ((const __u64 *)b)[i])
			return 0;
	}
	at = words * 8;
	if (size & 4) {
		if (*(const __u32 *)(a + at) != *(const __u32 *)(b + at))
			return 0;
		at += 4;
	}
	if (size & 2) {
		if (*(const __u16 *)(a + at) != *(const __u16 *)(b + at))
			return 0;
		at += 2;
	}
	if ((size & 1) && *(const __u8 *)(a + at) != *(const __u8 *)(b + at))
		return 0;
	return 1;
}

/* The hash the kernel stored in the element whose key is at `key` (struct htab_elem). */
static __always_inline __u32 elem_hash(const void *key)
{
	__u32 hash = 0;
	unsigned long at = (unsigned long)key -
			   (bpf_core_field_offset(struct htab_elem, key) -
			    bpf_core_field_offset(struct htab_elem, hash));

	bpf_probe_read_kernel(&hash, sizeof(hash), (const void *)at);
	return hash;
}

/* Where LOOKUP_BATCH takes over after a stop at `key`, the first element not handed out. */
static __always_inline void note_resume(struct walk *w, const void *key)
{
	if (!cfg.is_hash) {
		w->resume_cursor = *(const __u32 *)key;
		w->keep = w->copied;
		w->resume_known = 1;
		return;
	}
	__u32 bucket = elem_hash(key) & w->mask;

	w->resume_cursor = bucket;
	if (w->copied == 0 || bucket != w->run_bucket) {
		w->keep = w->copied;
		w->resume_known = 1;
	} else if (w->run_known) {
		w->keep = w->run_start;
		w->resume_known = 1;
	}
}

/* Copies one element (sizes from .rodata: constants to the verifier). Specialising the common
 * shapes with literal sizes was measured: no gain (the walk is memory-bound). */
static __always_inline long copy_sized(struct walk *w, const void *key, const void *value,
				       __u32 ks, __u32 vs, __u32 kshift, __u32 vshift)
{
	__u32 zero = 0;

	if (w->sentinel) {
		const void *stop = bpf_map_lookup_elem(&stop_key, &zero);

		if (stop && same_bytes(key, stop, ks)) {
			w->stopped = SNAP_SENTINEL;
			return 1;
		}
	}
	if (w->copied >= w->limit) {
		w->stopped = cfg.whole_map && w->limit >= cfg.capacity ? SNAP_FULL : SNAP_LIMIT;
		note_resume(w, key);
		return 1;
	}

	__u64 slot = w->copied;
	__u32 kmask = (1u << kshift) - 1, vmask = (1u << vshift) - 1;
	__u32 kidx = slot >> kshift, vidx = slot >> vshift;
	void *kdst = bpf_map_lookup_elem(&keys_out, &kidx);
	void *vdst = bpf_map_lookup_elem(&values_out, &vidx);

	if (!kdst || !vdst) {
		w->stopped = SNAP_FULL;
		note_resume(w, key);
		return 1;
	}
	kdst += ((__u32)slot & kmask) * ks;
	vdst += ((__u32)slot & vmask) * vs;
	copy_bytes(kdst, key, ks);
	if (vs <= MAX_INLINE)
		copy_bytes(vdst, value, vs);
	else
		bpf_probe_read_kernel(vdst, vs, value);

	if (cfg.is_hash && slot >= w->window_from) {
		__u32 bucket = elem_hash(key) & w->mask;

		if (slot == w->window_from) {
			w->run_bucket = bucket;
			w->run_start = slot;
			w->run_known = slot == 0;
		} else if (bucket != w->run_bucket) {
			w->run_bucket = bucket;
			w->run_start = slot;
			w->run_known = 1;
		}
	}
	w->copied = slot + 1;
	return 0;
}

static long copy_elem(struct bpf_map *map, const void *key, const void *value, void *unused)
{
	__u32 ks = cfg.key_size, vs = cfg.value_size, zero = 0;
	struct walk *w = bpf_map_lookup_elem(&walk_state, &zero);

	if (!w || ks > MAX_INLINE)
		return 1;
	return copy_sized(w, key, value, ks, vs, cfg.key_shift, cfg.value_shift);
}

SEC("syscall")
int snapshot(struct snap_args *args)
{
	__u32 zero = 0;
	struct walk *w = bpf_map_lookup_elem(&walk_state, &zero);

	if (!w)
		return 1;
	__builtin_memset(w, 0, sizeof(*w));
	w->limit = args->limit;
	if (w->limit > cfg.capacity)
		w->limit = cfg.capacity;
	w->window_from = w->limit > TAIL_WINDOW ? w->limit - TAIL_WINDOW : 0;
	w->sentinel = args->flags & SNAP_F_SENTINEL;
	args->n_buckets = 0;
	if (cfg.is_hash) {
		__u32 n_buckets = ((struct bpf_htab *)&target)->n_buckets;

		w->mask = n_buckets - 1;
		args->n_buckets = n_buckets;
	}
	args->visited = bpf_for_each_map_elem(&target, copy_elem, NULL, 0);
	args->copied = w->copied;
	args->stopped = cfg.key_size > MAX_INLINE ? SNAP_BAD : w->stopped;
	args->keep = w->stopped == SNAP_LIMIT || w->stopped == SNAP_FULL ? w->keep : w->copied;
	args->resume_known = w->resume_known;
	args->resume_cursor = w->resume_cursor;
	return 0;
}
