/* mkmap.c: create a map, fill keys 0..N-1 with UPDATE_BATCH, pin it.
 *
 * Key i: i little-endian in the first min(K, 8) bytes, zeros after. Value: the bytes
 * ef be ad de repeated over V bytes (0xdeadbeef in each 4-byte word), in every CPU's slot
 * of a per-CPU map. UPDATE_BATCH takes up to 65536 entries a call (fewer when that would
 * need more than 64 MiB of buffers); if the kernel refuses UPDATE_BATCH for the map, every
 * entry is written with UPDATE_ELEM instead (chunk 1 in the output). seconds: the fill.
 */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "peer.h"

#ifndef ENOTSUPP
#define ENOTSUPP 524	/* the kernel's internal "not supported", seen by user space */
#endif

#define FILL_CHUNK	65536
#define FILL_BUFFERS	(64ul << 20)

static const struct { const char *name; __u32 type; } types[] = {
	{ "hash", BPF_MAP_TYPE_HASH },
	{ "lru_hash", BPF_MAP_TYPE_LRU_HASH },
	{ "percpu_hash", BPF_MAP_TYPE_PERCPU_HASH },
	{ "lru_percpu_hash", BPF_MAP_TYPE_LRU_PERCPU_HASH },
	{ "array", BPF_MAP_TYPE_ARRAY },
	{ "percpu_array", BPF_MAP_TYPE_PERCPU_ARRAY },
};

static __u32 parse_type(const char *s)
{
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (!strcmp(s, types[i].name))
			return types[i].type;
	die(2, "unknown map type '%s' (hash, lru_hash, percpu_hash, lru_percpu_hash, array, percpu_array)", s);
}

int cmd_mkmap(int argc, char **argv)
{
	const char *pos[2];
	int npos = 0, have_max = 0;
	__u32 type = BPF_MAP_TYPE_HASH, ks = 4, vs = 4, max = 0;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (strncmp(a, "--", 2)) {
			if (npos == 2)
				die(2, "mkmap takes PIN and N, then options: unexpected '%s'", a);
			pos[npos++] = a;
			continue;
		}
		const char *eq = strchr(a, '='), *v;
		size_t len = eq ? (size_t)(eq - a) : strlen(a);
		if (eq)
			v = eq + 1;
		else if (i + 1 < argc)
			v = argv[++i];
		else
			die(2, "%s needs a value", a);
		if (len == 6 && !strncmp(a, "--type", len))
			type = parse_type(v);
		else if (len == 10 && !strncmp(a, "--key-size", len))
			ks = parse_u32(v, "--key-size", 1);
		else if (len == 12 && !strncmp(a, "--value-size", len))
			vs = parse_u32(v, "--value-size", 1);
		else if (len == 13 && !strncmp(a, "--max-entries", len))
			max = parse_u32(v, "--max-entries", 1), have_max = 1;
		else
			die(2, "unknown option '%.*s' (--type, --key-size, --value-size, --max-entries)", (int)len, a);
	}
	if (npos < 2)
		die(2, "usage: peer mkmap PIN N [--type T] [--key-size K] [--value-size V] [--max-entries M]");
	const char *pin = pos[0];
	__u32 n = parse_u32(pos[1], "N", 0);
	if (!have_max)
		max = n;
	if (max == 0)
		die(2, "max-entries must be at least 1 (give --max-entries for N = 0)");
	if (ks < 8 && n > 1ull << (8 * ks))
		die(2, "%u keys do not fit in %u-byte keys", n, ks);
	int array = type == BPF_MAP_TYPE_ARRAY || type == BPF_MAP_TYPE_PERCPU_ARRAY;
	if (array && ks != 4)
		die(2, "array maps have 4-byte keys, not %u", ks);
	if (array && n > max)
		die(2, "an array of %u entries has no key %u", max, n - 1);
	if (!access(pin, F_OK))
		die(1, "%s exists: remove it first", pin);

	size_t vb = vs, slot = vs;
	if (is_percpu(type)) {
		int ncpus = libbpf_num_possible_cpus();
		if (ncpus < 1)
			die(1, "cannot count the possible CPUs: %s", strerror(-ncpus));
		slot = (vs + 7) & ~7ul;
		vb = slot * ncpus;
	}
	__u32 chunk = FILL_CHUNK;
	if ((size_t)chunk * (ks + vb) > FILL_BUFFERS)
		chunk = FILL_BUFFERS / (ks + vb) ? FILL_BUFFERS / (ks + vb) : 1;

	int fd = bpf_map_create(type, "peer_map", ks, vs, max, NULL);
	if (fd < 0)
		die(1, "BPF_MAP_CREATE (%s, key %u, value %u, max_entries %u): %s",
		    type_name(type), ks, vs, max, strerror(errno));

	/* Every value is the same: fill the values once; the keys' tails stay zero. */
	unsigned char *keys = calloc(chunk, ks), *values = calloc(chunk, vb);
	static const unsigned char pattern[4] = { 0xef, 0xbe, 0xad, 0xde };
	if (!keys || !values)
		die(1, "out of memory");
	for (size_t e = 0; e < chunk; e++)
		for (size_t s = 0; s < vb; s += slot)
			for (size_t b = 0; b < vs; b++)
				values[e * vb + s + b] = pattern[b % 4];

	struct walk w;
	int per_elem = 0;
	__u32 kb = ks < 8 ? ks : 8;
	memset(&w, 0, sizeof(w));
	w.method = "mkmap";
	double t0 = start_timer();
	for (__u32 i = 0; i < n;) {
		__u32 c = n - i < chunk ? n - i : chunk;
		for (__u32 j = 0; j < c; j++) {
			__u64 key = (__u64)i + j;
			for (__u32 b = 0; b < kb; b++)
				keys[(size_t)j * ks + b] = key >> (8 * b);
		}
		if (!per_elem) {
			__u32 done = c;
			w.syscalls++;
			if (!bpf_map_update_batch(fd, keys, values, &done, NULL)) {
				i += c;
				continue;
			}
			if (i > 0 || done > 0 || (errno != EINVAL && errno != ENOTSUPP && errno != EOPNOTSUPP))
				die(1, "BPF_MAP_UPDATE_BATCH at key %u: %s", i + done, strerror(errno));
			per_elem = 1;
		}
		for (__u32 j = 0; j < c; j++) {
			w.syscalls++;
			if (bpf_map_update_elem(fd, keys + (size_t)j * ks, values + (size_t)j * vb, BPF_ANY))
				die(1, "BPF_MAP_UPDATE_ELEM at key %u: %s", i + j, strerror(errno));
		}
		i += c;
	}
	stop_timer(&w, t0);
	if (bpf_obj_pin(fd, pin))
		die(1, "cannot pin the map at %s: %s", pin, strerror(errno));
	w.chunk = per_elem ? 1 : chunk;
	w.keys.n = n;
	print_result(&w, n);
	free(keys);
	free(values);
	close(fd);
	return 0;
}
