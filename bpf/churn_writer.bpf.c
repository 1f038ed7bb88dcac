// SPDX-License-Identifier: GPL-2.0
//
// The kernel churn writer: a BPF_PROG_TYPE_SYSCALL program, run by BPF_PROG_TEST_RUN from
// ffi/map/churn.ts, that writes one map the way datapath programs write conntrack maps. Each run
// does `ops` operations (struct churn_args, the run's context), each on a random key:
//
//   r & 3 == 0   insert a transient key        bpf_map_update_elem(BPF_ANY)
//   r & 3 == 1   delete a transient key        bpf_map_delete_elem
//   r & 3 == 2   rewrite a transient key       bpf_map_update_elem(BPF_EXIST)
//   r & 3 == 3   with cfg.stable: rewrite the value of a stable key [0, stable), BPF_EXIST
//                (the key is never created or deleted); else insert or delete, evenly
//
// so about half the transient keys are present at any time. Transient keys are the numbers
// [cfg.first, cfg.first + cfg.count), or, with cfg.aim_count, the numbers in aim_keys.
// A key is its number as a u32 in the first 4 bytes (host order), the rest zero; a value is
// the operation's serial number in its first 4 bytes, the rest zero (per-CPU maps: the
// running CPU's slot).
//
// Bound before load (ffi/map/churn.ts):
//   target      bpf_map__reuse_fd(): the map to write (hash, lru_hash, percpu_hash,
//               lru_percpu_hash; its type and sizes replace the placeholder below)
//   key_buf     value_size = the target's key_size (>= 4): the key passed to the helpers
//   value_buf   value_size = the target's value_size (>= 4): the value written
//   aim_keys    max_entries = aim_count (1 when none): u32 key numbers
//   .rodata     struct churn_config
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define ENOENT		2
/* bpf_loop() takes at most 1 << 23 iterations. */
#define MAX_OPS_PER_RUN	(1 << 23)

struct churn_config {
	__u32 first;     /* first transient key number */
	__u32 count;     /* transient key numbers: [first, first + count) */
	__u32 stable;    /* rewrite values of [0, stable); 0: never touch a key below first */
	__u32 aim_count; /* > 0: transient keys are aim_keys[0 .. aim_count) instead */
};

const volatile struct churn_config cfg = { .first = 1, .count = 1 };

struct churn_args {
	__u64 ops;    /* in: operations to do in this run */
	__u64 done;   /* out: operations done */
	__u64 failed; /* out: writes the kernel refused other than for an absent key (map full) */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(key_size, 4);
	__uint(value_size, 4);
} target SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, 4);
	__uint(value_size, 4);
} key_buf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, 4);
	__uint(value_size, 4);
} value_buf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, 4);
	__uint(value_size, 4);
} aim_keys SEC(".maps");

/* Kept in .bss (a map value) rather than on the stack, so that the verifier checks the loop
 * body once rather than once per value. One run at a time per loaded object. */
__u64 serial;
__u64 failed;

static __u32 transient_key(__u32 pick)
{
	if (cfg.aim_count) {
		__u32 index = pick % cfg.aim_count;
		__u32 *aimed = bpf_map_lookup_elem(&aim_keys, &index);

		return aimed ? *aimed : cfg.first;
	}
	return cfg.first + pick % cfg.count;
}

static long churn_one(__u32 index, void *unused)
{
	__u32 zero = 0, r = bpf_get_prandom_u32(), op = r & 3, pick = r >> 3;
	__u32 *key = bpf_map_lookup_elem(&key_buf, &zero);
	__u32 *value = bpf_map_lookup_elem(&value_buf, &zero);
	long err;

	if (!key || !value)
		return 1;
	value[0] = (__u32)serial++;
	if (op == 3) {
		if (cfg.stable) {
			key[0] = pick % cfg.stable;
			err = bpf_map_update_elem(&target, key, value, BPF_EXIST);
			if (err < 0 && err != -ENOENT)
				failed++;
			return 0;
		}
		op = (r >> 2) & 1; /* insert or delete */
	}
	key[0] = transient_key(pick);
	if (op == 1) {
		bpf_map_delete_elem(&target, key);
		return 0;
	}
	err = bpf_map_update_elem(&target, key, value, op == 0 ? BPF_ANY : BPF_EXIST);
	if (err < 0 && err != -ENOENT)
		failed++;
	return 0;
}

SEC("syscall")
int churn(struct churn_args *args)
{
	__u64 ops = args->ops;
	long done;

	args->done = 0;
	args->failed = 0;
	if (cfg.count == 0 && cfg.aim_count == 0)
		return 2; /* no transient keys: refused by ffi/map/churn.ts before load */
	if (ops > MAX_OPS_PER_RUN)
		ops = MAX_OPS_PER_RUN;
	failed = 0;
	done = bpf_loop(ops, churn_one, NULL, 0);
	args->done = done < 0 ? 0 : done;
	args->failed = failed;
	return done < 0 ? 1 : 0;
}
