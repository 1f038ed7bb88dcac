/* walk.c: the one-thread walks, per entry (normal) and LOOKUP_BATCH (batch). */
#include <bpf/bpf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "peer.h"

/* GET_NEXT_KEY from the previous key, then LOOKUP_ELEM of it: 2 calls an entry, plus the
 * GET_NEXT_KEY that ends the walk with ENOENT. */
void walk_normal(const struct map *m, struct walk *w)
{
	unsigned char *prev = xmalloc(m->key_size), *next = xmalloc(m->key_size), *swap;
	unsigned char *value = xmalloc(m->value_bytes);
	void *from = NULL;

	w->method = "normal";
	keys_init(&w->keys, m->key_size, m->max_entries);
	double t0 = start_timer();
	for (;;) {
		w->syscalls++;
		if (bpf_map_get_next_key(m->fd, from, next)) {
			if (errno == ENOENT)
				break;
			die(1, "BPF_MAP_GET_NEXT_KEY: %s", strerror(errno));
		}
		w->syscalls++;
		if (bpf_map_lookup_elem(m->fd, next, value))
			die(1, "BPF_MAP_LOOKUP_ELEM: %s", strerror(errno));
		keys_append(&w->keys, next, 1);
		swap = prev, prev = next, next = swap;
		from = prev;
	}
	stop_timer(w, t0);
	free(prev);
	free(next);
	free(value);
}

/* LOOKUP_BATCH from the cursor the previous call handed back (in <- out). ENOENT ends the
 * walk, its entries kept; ENOSPC with nothing copied (a hash bucket larger than the chunk)
 * doubles the chunk and repeats the same call. */
void walk_batch(const struct map *m, struct walk *w, __u32 chunk)
{
	/* The cursor: a __u32 bucket index for hash maps, a key for the others. */
	size_t cursor = m->key_size < 8 ? 8 : m->key_size;
	unsigned char *in = xmalloc(cursor), *out = xmalloc(cursor);
	unsigned char *keys = xmalloc((size_t)chunk * m->key_size);
	unsigned char *values = xmalloc((size_t)chunk * m->value_bytes);
	void *from = NULL;

	w->method = "batch";
	keys_init(&w->keys, m->key_size, m->max_entries);
	double t0 = start_timer();
	for (;;) {
		__u32 got = chunk;
		int err = bpf_map_lookup_batch(m->fd, from, out, keys, values, &got, NULL) ? errno : 0;
		w->syscalls++;
		if (err == ENOSPC && got == 0) {
			if (chunk > (1u << 30))
				die(1, "BPF_MAP_LOOKUP_BATCH: ENOSPC with a chunk of %u", chunk);
			chunk *= 2;
			keys = xrealloc(keys, (size_t)chunk * m->key_size);
			values = xrealloc(values, (size_t)chunk * m->value_bytes);
			continue;
		}
		if (err && err != ENOENT && err != ENOSPC)
			die(1, "BPF_MAP_LOOKUP_BATCH: %s", strerror(err));
		keys_append(&w->keys, keys, got);
		if (err == ENOENT)
			break;
		memcpy(in, out, cursor);
		from = in;
	}
	stop_timer(w, t0);
	w->chunk = chunk;
	free(in);
	free(out);
	free(keys);
	free(values);
}
