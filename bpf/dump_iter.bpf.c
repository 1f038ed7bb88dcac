// SPDX-License-Identifier: GPL-2.0
//
// bpf_iter program that dumps every element of one BPF map as raw bytes:
//
//     record := key[key_size] value[value_size]      (no padding, no header)
//
// The map is chosen at attach time (union bpf_iter_link_info .map.map_fd).
// Userspace sets the two read-only globals below in .rodata BEFORE loading
// the object; .rodata must be frozen at load time (libbpf does this), so the
// verifier sees them as constants: that is what lets the program's buffer
// accesses be exactly key_size/value_size bytes, which the kernel checks
// against the map at attach time (-EACCES if the program may read more).
//
//   key_size   = map key_size
//   value_size = map value_size                              (non-per-CPU)
//              = round_up(value_size, 8) * num_possible_cpus  (PERCPU_HASH,
//                PERCPU_ARRAY, LRU_PERCPU_HASH: the kernel hands the
//                program one buffer holding every possible CPU's copy, each
//                copy padded to 8 bytes, in CPU order)
//
// A record must be smaller than the seq_file buffer (8 pages = 32 KiB):
// key_size + value_size <= 32767 (seq_write() needs count + len < size).
// Sizes outside the bounds below make the program return 1, so read()
// fails with EAGAIN instead of silently producing a wrong stream.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

const volatile __u32 key_size = 4;
const volatile __u32 value_size = 4;

/* Largest key the kernel allows for a hash map is MAX_BPF_STACK (512). */
#define MAX_KEY_SIZE	512
/* A record must fit in the bpf_iter seq buffer (PAGE_SIZE << 3, 4 KiB pages),
 * and seq_write() only accepts count + len < size. */
#define MAX_RECORD_SIZE	(32768 - 1)
/* Records up to this many 4-byte words are assembled on the stack and
 * emitted with a single bpf_seq_write(); larger ones or sizes that are not
 * multiples of 4 use two bpf_seq_write() calls straight from the kernel
 * buffers. (The stack is used rather than a per-CPU scratch map because
 * the kernel is preemptible: two iterators on one CPU could interleave.) */
#define REC_WORDS	64

SEC("iter/bpf_map_elem")
int dump_map(struct bpf_iter__bpf_map_elem *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	__u32 *key = ctx->key;
	__u32 *val = ctx->value;
	__u32 ks = key_size;
	__u32 vs = value_size;

	/* key == NULL: the final call after the last element. */
	if (!key || !val)
		return 0;

	if (ks == 0 || ks > MAX_KEY_SIZE || vs == 0 || vs > MAX_RECORD_SIZE - ks)
		return 1;

	if (((ks | vs) & 3) == 0 && ks + vs <= REC_WORDS * 4) {
		__u32 buf[REC_WORDS];
		__u32 kw = ks / 4, vw = vs / 4;
		__u32 i;

		for (i = 0; i < REC_WORDS; i++) {
			if (i >= kw)
				break;
			buf[i] = key[i];
		}
		for (i = 0; i < REC_WORDS; i++) {
			if (i >= vw)
				break;
			buf[kw + i] = val[i];
		}
		bpf_seq_write(seq, buf, ks + vs);
		return 0;
	}

	bpf_seq_write(seq, key, ks);
	bpf_seq_write(seq, val, vs);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
