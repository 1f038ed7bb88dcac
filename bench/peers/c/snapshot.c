/* snapshot.c: the in-kernel snapshot walks (snapshot, hybrid), with the project's own object
 * bpf/snapshot.bpf.c, built as build/snapshot.bpf.o. The C mirror of ffi/dump/snapshot.ts
 * (MapSnapshot) and ffi/dump/snapshot_dump.ts (forEachBatchSnapshot, forEachBatchHybrid).
 *
 * Setup (not in seconds, printed as "setup"): open the object, bind its `target` to the map
 * (bpf_map__reuse_fd), size keys_out / values_out / stop_key for `capacity` entries
 * (min(max_entries, BUDGET_MS * 1e6 / 300)) as snapshotLayout does, write .rodata's struct
 * snap_config, load, and mmap keys_out and values_out (PROT_READ, MAP_SHARED).
 *
 * snapshot: one BPF_PROG_TEST_RUN (ctx_in = struct snap_args; the kernel copies the context
 *   back into the same buffer for syscall programs), then the copied keys are read from the
 *   mapping; if the walk stopped at its bound, LOOKUP_BATCH reads the rest from
 *   resume_cursor to the end.
 * hybrid: a second thread runs LOOKUP_BATCH over cursor positions [B, space) (space: buckets
 *   of a hash map, keys of an array; B = round(FRACTION * space)); its first key, once known,
 *   is written to stop_key and this thread runs the snapshot with SNAP_F_SENTINEL, so it
 *   stops where the batch side began. Sentinel not met and the walk complete (the key was
 *   deleted meanwhile): the batch side is dropped. Stopped at the bound instead: LOOKUP_BATCH
 *   reads the gap [resume_cursor, B) here, keeping what precedes the sentinel.
 *
 * Hash, lru_hash and array maps, keys up to 512 bytes (as MapSnapshot.open refuses the rest).
 * The object: $PEER_SNAPSHOT_OBJ if set, else build/snapshot.bpf.o under the working
 * directory, else ../../snapshot.bpf.o from this binary's directory.
 */
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "peer.h"

#define NS_PER_ELEMENT	300	/* SNAPSHOT_NS_PER_ELEMENT of ffi/dump/snapshot.ts */
#define MAX_KEY_SIZE	512	/* MAX_SNAPSHOT_KEY_SIZE */
#define MAX_ARRAY_VALUE	(4u * 1024 * 1024)
#define CHUNK		4096	/* LOOKUP_BATCH entries a call for the rest, the gap, the batch side */
#define SNAP_F_SENTINEL	1

enum { SNAP_END, SNAP_LIMIT, SNAP_SENTINEL, SNAP_FULL, SNAP_BAD };

/* bpf/snapshot.bpf.c's .rodata and context, field for field. */
struct snap_config {
	__u32 key_size, value_size, key_shift, value_shift, is_hash, whole_map;
	__u64 capacity;
};

struct snap_args {
	__u64 limit, flags, copied, visited, keep;
	__u32 stopped, resume_known, resume_cursor, n_buckets;
};

_Static_assert(sizeof(struct snap_config) == 32, "struct snap_config");
_Static_assert(sizeof(struct snap_args) == 56, "struct snap_args");

struct snap {
	struct bpf_object *obj;
	int prog_fd, stop_fd;
	const unsigned char *keys;
	void *keys_map, *values_map;
	size_t keys_len, values_len;
	__u64 bound, capacity;
	__u32 space;            /* cursor positions: buckets (hash) or keys (array) */
	int is_hash;
};


static __u32 gcd(__u32 a, __u32 b) { return b ? gcd(b, a % b) : a; }
static __u32 log2u(__u32 v) { __u32 l = 0; while (v > 1) v >>= 1, l++; return l; }

/* The most elements one run copies for a budget (snapshotElementBound). */
__u64 snapshot_bound(double budget_ms)
{
	double b = floor(budget_ms * 1e6 / NS_PER_ELEMENT);
	return b < 1 ? 1 : b > 0xffffffffu ? 0xffffffffu : (__u64)b;
}

/* Refuses what snapshotTarget refuses; returns whether the map is a hash map. */
static int snapshot_target(const struct map *m)
{
	if (m->percpu)
		die(1, "cannot snapshot a %s map: bpf_for_each_map_elem hands the program only the running CPU's value",
		    type_name(m->type));
	if (m->type != BPF_MAP_TYPE_HASH && m->type != BPF_MAP_TYPE_LRU_HASH && m->type != BPF_MAP_TYPE_ARRAY)
		die(1, "cannot snapshot map type %u: the snapshot walks hash, lru_hash and array maps only", m->type);
	if (m->key_size > MAX_KEY_SIZE)
		die(1, "cannot snapshot keys of %u bytes: the snapshot copies keys of at most %d", m->key_size, MAX_KEY_SIZE);
	__u32 sizes[2] = { m->key_size, m->value_size };
	for (int i = 0; i < 2; i++)
		if ((__u64)(8 / gcd(sizes[i], 8)) * sizes[i] > MAX_ARRAY_VALUE)
			die(1, "cannot snapshot: %u-byte %ss make an output element over %u bytes",
			    sizes[i], i ? "value" : "key", MAX_ARRAY_VALUE);
	return m->type != BPF_MAP_TYPE_ARRAY;
}

static struct bpf_map *find_map(struct bpf_object *obj, const char *name, const char *path)
{
	struct bpf_map *map = bpf_object__find_map_by_name(obj, name);
	if (!map)
		die(1, "%s has no map %s", path, name);
	return map;
}

static void *map_output(struct bpf_map *map, size_t len, const char *name, const char *needed)
{
	void *p = mmap(NULL, len, PROT_READ, MAP_SHARED, bpf_map__fd(map), 0);
	if (p == MAP_FAILED)
		die(1, "mmap of %s: %s (%s)", name, strerror(errno), needed);
	return p;
}

/* MapSnapshot.open: load the program for the map and map its output. */
static void snapshot_open(const struct map *m, __u64 bound, struct snap *s)
{
	char pathbuf[PATH_MAX], needed[160];
	const char *path = find_object("snapshot.bpf.o", "PEER_SNAPSHOT_OBJ", pathbuf, sizeof(pathbuf));
	__u32 ks = m->key_size, vs = m->value_size;

	memset(s, 0, sizeof(*s));
	s->is_hash = snapshot_target(m);
	s->bound = bound;
	s->capacity = m->max_entries < bound ? m->max_entries : bound;
	if (s->is_hash)
		for (s->space = 1; s->space < m->max_entries; s->space <<= 1)
			;
	else
		s->space = m->max_entries;

	/* snapshotLayout: whole groups of entries per element, so the elements leave no gap. */
	__u32 kgroup = 8 / gcd(ks, 8), vgroup = 8 / gcd(vs, 8);
	__u64 kelems = (s->capacity + kgroup - 1) / kgroup, velems = (s->capacity + vgroup - 1) / vgroup;
	s->keys_len = kelems * kgroup * ks;
	s->values_len = velems * vgroup * vs;
	snprintf(needed, sizeof(needed), "the snapshot output needs %zu bytes (%llu entries x (%u + %u))",
		 s->keys_len + s->values_len, (unsigned long long)s->capacity, ks, vs);
	if (kelems > 0xffffffffu || velems > 0xffffffffu)
		die(1, "%s: too many", needed);

	struct bpf_object *obj = bpf_object__open_file(path, NULL);
	if (!obj)
		die(1, "cannot open %s: %s", path, strerror(errno));
	struct bpf_map *target = find_map(obj, "target", path);
	struct bpf_map *keys_out = find_map(obj, "keys_out", path);
	struct bpf_map *values_out = find_map(obj, "values_out", path);
	struct bpf_map *stop_key = find_map(obj, "stop_key", path);
	struct bpf_program *prog = bpf_object__find_program_by_name(obj, "snapshot");
	if (!prog)
		die(1, "%s has no program snapshot", path);
	if (bpf_map__reuse_fd(target, m->fd))
		die(1, "bpf_map__reuse_fd: %s", strerror(errno));
	if (bpf_map__set_value_size(keys_out, kgroup * ks) || bpf_map__set_max_entries(keys_out, kelems) ||
	    bpf_map__set_value_size(values_out, vgroup * vs) || bpf_map__set_max_entries(values_out, velems) ||
	    bpf_map__set_value_size(stop_key, ks) || bpf_map__set_max_entries(stop_key, 1))
		die(1, "cannot size the snapshot's output maps: %s", strerror(errno));
	struct snap_config cfg = {
		.key_size = ks,
		.value_size = vs,
		.key_shift = log2u(kgroup),
		.value_shift = log2u(vgroup),
		.is_hash = s->is_hash,
		.whole_map = s->capacity >= m->max_entries,
		.capacity = s->capacity,
	};
	const struct rodata_var config = { "cfg", &cfg, sizeof(cfg) };
	set_rodata(obj, &config, 1);
	int err = bpf_object__load(obj);
	if (err)
		die(1, "cannot load %s: %s%s%s", path, strerror(-err),
		    -err == ENOMEM || -err == E2BIG ? ": " : "", -err == ENOMEM || -err == E2BIG ? needed : "");
	s->obj = obj;
	s->prog_fd = bpf_program__fd(prog);
	s->stop_fd = bpf_map__fd(stop_key);
	s->keys_map = map_output(keys_out, s->keys_len, "keys_out", needed);
	s->values_map = map_output(values_out, s->values_len, "values_out", needed);
	s->keys = s->keys_map;
}

static void snapshot_close(struct snap *s)
{
	munmap(s->keys_map, s->keys_len);
	munmap(s->values_map, s->values_len);
	bpf_object__close(s->obj);
}

/* One run (MapSnapshot.forEachBatch): returns the entries to hand out, fills *a. */
static __u64 snapshot_run(struct snap *s, __u64 flags, struct snap_args *a, unsigned long *syscalls)
{
	memset(a, 0, sizeof(*a));
	a->limit = s->bound;
	a->flags = flags;
	LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = a, .ctx_size_in = sizeof(*a));
	int err = bpf_prog_test_run_opts(s->prog_fd, &opts);
	(*syscalls)++;
	if (err)
		die(1, "BPF_PROG_TEST_RUN of the snapshot: %s", strerror(errno));
	if (opts.retval || a->stopped >= SNAP_BAD)
		die(1, "the snapshot program failed (return value %u, stop code %u): rebuild build/snapshot.bpf.o",
		    opts.retval, a->stopped);
	int stopped = a->stopped == SNAP_LIMIT || a->stopped == SNAP_FULL;
	/* Without an exact cursor, hand out all that was copied (the rest is read from 0). */
	return stopped && !a->resume_known ? a->copied : a->keep;
}

/* Where LOOKUP_BATCH takes over after a stop at the bound (resumeFrom). */
static __u32 resume_from(const struct snap_args *a)
{
	return a->resume_known ? a->resume_cursor : 0;
}

/* ---- LOOKUP_BATCH over a cursor range (walkRange) ---- */

struct side {
	const struct map *m;
	__u32 space, chunk;
	unsigned char *keys, *values;
	unsigned long syscalls;
	struct keys out;
	/* hybrid's batch side: the first key, told to the snapshot's thread */
	__u32 from, to;
	int notify, first_known, has_first;
	unsigned char *first;
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

/* out: the keys buffer to append to, or NULL for a new one of `hint` keys. */
static void side_init(struct side *b, const struct map *m, __u32 space, const struct keys *out, size_t hint)
{
	memset(b, 0, sizeof(*b));
	b->m = m;
	b->space = space;
	b->chunk = CHUNK;
	b->keys = xmalloc((size_t)b->chunk * m->key_size);
	b->values = xmalloc((size_t)b->chunk * m->value_bytes);
	if (out)
		b->out = *out;
	else
		keys_init(&b->out, m->key_size, hint);
}

static void side_free(struct side *b)
{
	free(b->keys);
	free(b->values);
}

/* One LOOKUP_BATCH of at most `want` entries (0: the chunk, doubled and repeated on ENOSPC
 * with nothing copied). Returns 0 or ENOENT (or ENOSPC with entries copied). */
static int batch_call(struct side *b, __u32 *in, __u32 *out, __u32 want, __u32 *got)
{
	for (;;) {
		*got = want ? want : b->chunk;
		int err = bpf_map_lookup_batch(b->m->fd, in, out, b->keys, b->values, got, NULL) ? errno : 0;
		b->syscalls++;
		if (err == ENOSPC && *got == 0 && !want && b->chunk <= (1u << 30)) {
			b->chunk *= 2;
			b->keys = xrealloc(b->keys, (size_t)b->chunk * b->m->key_size);
			b->values = xrealloc(b->values, (size_t)b->chunk * b->m->value_bytes);
			continue;
		}
		if (err && err != ENOENT && !(err == ENOSPC && *got))
			die(1, "BPF_MAP_LOOKUP_BATCH: %s", strerror(err));
		return err;
	}
}

/* After the range's first call: tell the waiting thread its first key (or none). */
static void tell_first(struct side *b, size_t base)
{
	if (!b->notify || b->first_known)
		return;
	pthread_mutex_lock(&b->mu);
	b->has_first = b->out.n > base;
	if (b->has_first)
		memcpy(b->first, b->out.data + base * b->out.size, b->out.size);
	b->first_known = 1;
	pthread_cond_signal(&b->cv);
	pthread_mutex_unlock(&b->mu);
}

/* Reads cursor positions [from, to) into b->out. Hash maps: a call may copy buckets past
 * `to`; then what precedes `marker` (the first key of bucket `to` onwards) is kept. */
static void batch_range(struct side *b, __u32 from, __u32 to, const unsigned char *marker)
{
	__u32 ks = b->m->key_size, in, out, got;

	if (b->m->type == BPF_MAP_TYPE_ARRAY) {
		__u32 next = from;
		in = from - 1;
		while (next < to) {
			__u32 want = to - next < b->chunk ? to - next : b->chunk;
			size_t base = b->out.n;
			int err = batch_call(b, next ? &in : NULL, &out, want, &got);
			keys_append(&b->out, b->keys, got);
			tell_first(b, base);
			if (err == ENOENT || got == 0)
				break;
			in = out;
			next = out + 1;
		}
		tell_first(b, b->out.n);
		return;
	}
	in = from;
	while (in < to) {
		int err = batch_call(b, &in, &out, 0, &got);
		size_t base = b->out.n;
		keys_append(&b->out, b->keys, got);
		tell_first(b, base);
		int crossed = err == ENOENT ? to < b->space : out > to;
		if (crossed && marker) {
			for (size_t i = base; i < b->out.n; i++) {
				if (!memcmp(b->out.data + i * ks, marker, ks)) {
					b->out.n = i;
					break;
				}
			}
		}
		if (err == ENOENT || crossed)
			break;
		in = out;
	}
	tell_first(b, b->out.n);
}

static void *batch_side(void *arg)
{
	struct side *b = arg;
	batch_range(b, b->from, b->to, NULL);
	return NULL;
}

/* Copies the first `count` keys of the snapshot's output, read in place from the mapping. */
static void hand_out(const struct snap *s, struct keys *out, __u64 count)
{
	keys_append(out, s->keys, count);
}

/* ---- the walks ---- */

void walk_snapshot(const struct map *m, struct walk *w, double budget_ms)
{
	struct snap s;
	struct snap_args a;
	struct side rest;

	double s0 = now();
	snapshot_open(m, snapshot_bound(budget_ms), &s);
	w->setup = now() - s0;
	w->snapshot = 1;
	w->method = "snapshot";
	keys_init(&w->keys, m->key_size, m->max_entries);
	side_init(&rest, m, s.space, &w->keys, 0); /* the rest goes after the snapshot's keys */

	double t0 = start_timer();
	__u64 count = snapshot_run(&s, 0, &a, &w->syscalls);
	hand_out(&s, &rest.out, count);
	w->snapshot_entries = count;
	if (a.stopped != SNAP_END) {
		batch_range(&rest, resume_from(&a), s.space, NULL);
		w->batch_entries = rest.out.n - count;
	}
	stop_timer(w, t0);

	w->keys = rest.out;
	w->syscalls += rest.syscalls;
	w->chunk = rest.chunk;
	side_free(&rest);
	snapshot_close(&s);
}

void walk_hybrid(const struct map *m, struct walk *w, double fraction, double budget_ms)
{
	struct snap s;
	struct snap_args a;
	struct side main_side, batch;
	pthread_t thread;

	double s0 = now();
	snapshot_open(m, snapshot_bound(budget_ms), &s);
	__u32 space = s.space;
	double split = round(fraction * space);
	__u32 at = split < 1 ? 1 : split > space ? space : (__u32)split;
	w->setup = now() - s0;
	w->snapshot = 1;
	w->split = at;
	w->method = "hybrid";
	keys_init(&w->keys, m->key_size, m->max_entries);
	side_init(&main_side, m, space, &w->keys, 0);
	side_init(&batch, m, space, NULL, (size_t)((double)m->max_entries * (space - at) / space) + CHUNK);
	batch.from = at;
	batch.to = space;
	batch.notify = 1;
	batch.first = xmalloc(m->key_size);
	pthread_mutex_init(&batch.mu, NULL);
	pthread_cond_init(&batch.cv, NULL);

	double t0 = start_timer();
	int threaded = at < space;
	w->threads = threaded ? 2 : 1;
	if (threaded) {
		int err = pthread_create(&thread, NULL, batch_side, &batch);
		if (err)
			die(1, "pthread_create: %s", strerror(err));
		pthread_mutex_lock(&batch.mu);
		while (!batch.first_known)
			pthread_cond_wait(&batch.cv, &batch.mu);
		pthread_mutex_unlock(&batch.mu);
	}
	const unsigned char *sentinel = batch.has_first ? batch.first : NULL;
	if (sentinel) {
		__u32 zero = 0;
		w->syscalls++;
		if (bpf_map_update_elem(s.stop_fd, &zero, sentinel, BPF_ANY))
			die(1, "BPF_MAP_UPDATE_ELEM of stop_key: %s", strerror(errno));
	}
	__u64 count = snapshot_run(&s, sentinel ? SNAP_F_SENTINEL : 0, &a, &w->syscalls);
	hand_out(&s, &main_side.out, count);
	int met = a.stopped == SNAP_SENTINEL, complete = a.stopped == SNAP_END;
	/* Without a sentinel the batch side is empty; with one not met, the snapshot either
	 * walked the whole map (it was deleted) or stopped at its bound. */
	int keep_batch = !sentinel || met || !complete;
	if (!complete && !met) {
		__u32 from = resume_from(&a), to = sentinel ? at : space;
		if (from < to)
			batch_range(&main_side, from, to, sentinel);
	}
	if (threaded)
		pthread_join(thread, NULL);
	stop_timer(w, t0);

	w->keys = main_side.out;
	w->snapshot_entries = count;
	w->batch_entries = w->keys.n - count;
	w->syscalls += main_side.syscalls + batch.syscalls;
	w->chunk = main_side.chunk > batch.chunk ? main_side.chunk : batch.chunk;
	w->batch_side_kept = keep_batch && threaded;
	if (keep_batch) {
		keys_append(&w->keys, batch.out.data, batch.out.n);
		w->batch_entries += batch.out.n;
	}
	free(batch.out.data);
	free(batch.first);
	side_free(&main_side);
	side_free(&batch);
	snapshot_close(&s);
}
