/* pbatch.c: LOOKUP_BATCH on several threads at once, each over its own cursor range.
 *
 * Hash maps (hash, lru_hash, percpu_hash, lru_percpu_hash): the cursor is a __u32 bucket
 * index in [0, n_buckets), n_buckets = roundup_pow_of_two(max_entries). A call copies whole
 * buckets in order and hands back the first non-empty bucket it did not copy, so a call may
 * run past its range's end; then the first key a walk from the end returns is where the
 * next range starts, and only the keys before it are kept (as /work/shared/peers/c/pbatch.c).
 * Array maps (array, percpu_array): the cursor is the last key returned (a __u32 index) and
 * a call asks for no more entries than remain in [start, end) of [0, max_entries).
 */
#include <bpf/bpf.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "peer.h"

struct range {
	const struct map *m;
	__u32 start, end, limit; /* limit: n_buckets (hash) or max_entries (array) */
	__u32 chunk;
	unsigned char *keys, *values;
	unsigned long syscalls;
	struct keys out;
};

/* One LOOKUP_BATCH of at most `want` entries (0: the range's chunk, doubled and repeated on
 * ENOSPC). Returns 0 or ENOENT (or ENOSPC with entries copied); *got: entries copied. */
static int call(struct range *r, __u32 *in, __u32 *out, __u32 want, __u32 *got)
{
	for (;;) {
		*got = want ? want : r->chunk;
		int err = bpf_map_lookup_batch(r->m->fd, in, out, r->keys, r->values, got, NULL) ? errno : 0;
		r->syscalls++;
		if (err == ENOSPC && *got == 0 && !want && r->chunk <= (1u << 30)) {
			r->chunk *= 2;
			r->keys = xrealloc(r->keys, (size_t)r->chunk * r->m->key_size);
			r->values = xrealloc(r->values, (size_t)r->chunk * r->m->value_bytes);
			continue;
		}
		if (err && err != ENOENT && !(err == ENOSPC && *got))
			die(1, "BPF_MAP_LOOKUP_BATCH: %s", strerror(err));
		return err;
	}
}

static void *hash_range(void *arg)
{
	struct range *r = arg;
	__u32 ks = r->m->key_size, in = r->start, out, got;

	while (in < r->end) {
		int err = call(r, &in, &out, 0, &got);
		size_t base = r->out.n;
		keys_append(&r->out, r->keys, got);
		int last = err == ENOENT;
		/* ENOENT: the call copied every bucket up to n_buckets. */
		if (last ? r->end < r->limit : out > r->end) {
			__u32 from = r->end, next;
			last = 1;
			call(r, &from, &next, 0, &got);
			if (got) {
				for (size_t i = base; i < r->out.n; i++) {
					if (!memcmp(r->out.data + i * ks, r->keys, ks)) {
						r->out.n = i;
						break;
					}
				}
			}
		}
		if (last)
			break;
		in = out;
	}
	return NULL;
}

static void *array_range(void *arg)
{
	struct range *r = arg;
	__u32 next = r->start, in = r->start - 1, out, got;

	while (next < r->end) {
		__u32 want = r->end - next < r->chunk ? r->end - next : r->chunk;
		int err = call(r, next ? &in : NULL, &out, want, &got);
		keys_append(&r->out, r->keys, got);
		if (err == ENOENT || got == 0)
			break;
		in = out;
		next = out + 1;
	}
	return NULL;
}

void walk_pbatch(const struct map *m, struct walk *w, int threads, __u32 chunk)
{
	void *(*run)(void *);
	__u32 limit = m->max_entries;

	switch (m->type) {
	case BPF_MAP_TYPE_HASH:
	case BPF_MAP_TYPE_LRU_HASH:
	case BPF_MAP_TYPE_PERCPU_HASH:
	case BPF_MAP_TYPE_LRU_PERCPU_HASH:
		run = hash_range;
		for (limit = 1; limit < m->max_entries; limit <<= 1)
			;
		break;
	case BPF_MAP_TYPE_ARRAY:
	case BPF_MAP_TYPE_PERCPU_ARRAY:
		run = array_range;
		break;
	default:
		die(1, "pbatch splits hash and array maps only, not map type %u", m->type);
	}

	struct range *rs = calloc(threads, sizeof(*rs));
	pthread_t *ts = calloc(threads, sizeof(*ts));
	if (!rs || !ts)
		die(1, "out of memory");
	for (int i = 0; i < threads; i++) {
		struct range *r = &rs[i];
		r->m = m;
		r->limit = limit;
		r->start = (__u64)limit * i / threads;
		r->end = (__u64)limit * (i + 1) / threads;
		r->chunk = chunk;
		r->keys = xmalloc((size_t)chunk * m->key_size);
		r->values = xmalloc((size_t)chunk * m->value_bytes);
		/* Room for a fair share and some: each range holds about max_entries/threads keys. */
		keys_init(&r->out, m->key_size, m->max_entries / threads + m->max_entries / 8 + chunk);
	}

	w->method = "pbatch";
	w->threads = threads;
	double t0 = start_timer();
	for (int i = 0; i < threads; i++) {
		int err = pthread_create(&ts[i], NULL, run, &rs[i]);
		if (err)
			die(1, "pthread_create: %s", strerror(err));
	}
	for (int i = 0; i < threads; i++)
		pthread_join(ts[i], NULL);
	stop_timer(w, t0);

	/* Gather the ranges' keys into one buffer for the distinct count (after the timer). */
	w->chunk = chunk;
	w->keys = rs[0].out;
	for (int i = 0; i < threads; i++) {
		struct range *r = &rs[i];
		w->syscalls += r->syscalls;
		if (r->chunk > w->chunk)
			w->chunk = r->chunk;
		if (i > 0) {
			keys_append(&w->keys, r->out.data, r->out.n);
			free(r->out.data);
		}
		free(r->keys);
		free(r->values);
	}
	free(rs);
	free(ts);
}
