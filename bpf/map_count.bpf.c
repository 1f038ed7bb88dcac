// SPDX-License-Identifier: GPL-2.0
//
// bpf_iter program that reports the kernel's own element count of every BPF
// map on the system, one fixed-size record per map:
//
//     record := id:u32  max_entries:u32  count:s64     (16 bytes, host order =
//                                                       little endian on x86)
//
// count is bpf_map_sum_elem_count(map) (kfunc, kernel >= 6.6): the sum of the
// map's per-CPU elem_count counters. Only map types that maintain those
// counters report a meaningful value (the hash family); the others (arrays,
// ...) report 0. If the kfunc is missing from the running kernel, count = -1.
//
// Attach with no link info (iterates all maps), e.g.
//     bpftool iter pin build/map_count.bpf.o /sys/fs/bpf/<name>
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

extern s64 bpf_map_sum_elem_count(const struct bpf_map *map) __ksym __weak;

struct map_count_rec {
	__u32 id;
	__u32 max_entries;
	__s64 count;
};

SEC("iter/bpf_map")
int count_elems(struct bpf_iter__bpf_map *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct bpf_map *map = ctx->map;
	struct map_count_rec rec;

	/* map == NULL: the final call after the last map. */
	if (!map)
		return 0;

	rec.id = map->id;
	rec.max_entries = map->max_entries;
	rec.count = bpf_map_sum_elem_count ? bpf_map_sum_elem_count(map) : -1;
	bpf_seq_write(seq, &rec, sizeof(rec));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
