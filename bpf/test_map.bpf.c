// SPDX-License-Identifier: GPL-2.0
// Reproduces the study's object: a large u32 -> u32 hash map plus a minimal
// XDP program that references it (so the map is part of a loadable object).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(key_size, sizeof(u32));
	__uint(value_size, sizeof(u32));
	__uint(max_entries, 1024 * 1024 * 100);
} test_map SEC(".maps");

SEC("xdp")
int xdp_prog(struct xdp_md *ctx)
{
	u32 key = 0;
	u32 *val;

	val = bpf_map_lookup_elem(&test_map, &key);
	if (val)
		return XDP_PASS;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
