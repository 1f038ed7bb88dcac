/* peer.h: what the C reference's files share (see main.c for the program's usage). */
#ifndef PEER_H
#define PEER_H

#include <linux/bpf.h>
#include <stddef.h>
#include <string.h>

/* A pinned map, as bpf_obj_get_info_by_fd describes it. */
struct map {
	int fd;
	__u32 type, key_size, value_size, max_entries;
	int percpu;          /* PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH */
	size_t value_bytes;  /* bytes per value in user space: value_size, or round_up(value_size, 8) * possible CPUs */
};

/* Every key a walk returned, packed, duplicates included. */
struct keys {
	unsigned char *data;
	size_t n, cap;       /* in keys */
	__u32 size;          /* bytes per key */
};

/* What a walk reports; main() adds distinct and peakRss and prints it. */
struct walk {
	const char *method;
	double seconds;
	unsigned long syscalls;
	__u32 chunk;         /* 0: not printed */
	int threads;         /* 0: not printed */
	long peak_rss;       /* bytes, read as the timer stops */
	struct keys keys;
	/* snapshot, hybrid (printed when `snapshot` is set) */
	int snapshot;
	double setup;            /* seconds: load, create and map the output (not in `seconds`) */
	size_t snapshot_entries; /* keys handed out from the kernel walk's output */
	size_t batch_entries;    /* keys from LOOKUP_BATCH: the rest, the gap, the batch side */
	__u32 split;             /* hybrid: the cursor position B where the batch side began */
	int batch_side_kept;     /* hybrid: 0 when the sentinel was gone and the snapshot walked all */
};

/* main.c */
void die(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
/* The path of the project's BPF object `name` (build/NAME), from $ENV, build/ in the working
 * directory, or next to the binary (build/peers/c/../../NAME); dies saying how to build it. */
const char *find_object(const char *name, const char *env, char *buf, size_t len);

/* A variable of an object's .rodata and the bytes to give it before load. */
struct rodata_var {
	const char *name;
	const void *value;
	size_t size;
};
struct bpf_object;
/* Sets each variable (found by name and size in the .rodata DATASEC's BTF); dies if one is missing. */
void set_rodata(struct bpf_object *obj, const struct rodata_var *vars, int n);
double now(void);
__u32 parse_u32(const char *s, const char *what, __u32 min);
int is_percpu(__u32 type);
const char *type_name(__u32 type);
void keys_init(struct keys *k, __u32 size, size_t hint);
void keys_grow(struct keys *k, size_t need);
void *xmalloc(size_t n);
void *xrealloc(void *p, size_t n);
long peak_rss(void);
void print_result(const struct walk *w, size_t distinct);
double start_timer(void);
void stop_timer(struct walk *w, double t0);

static inline void keys_append(struct keys *k, const void *src, size_t count)
{
	if (k->n + count > k->cap)
		keys_grow(k, k->n + count);
	memcpy(k->data + k->n * k->size, src, count * k->size);
	k->n += count;
}

/* The jobs. Walks fill *w and time themselves; mkmap prints its own line. */
int cmd_mkmap(int argc, char **argv);
void walk_normal(const struct map *m, struct walk *w);
void walk_batch(const struct map *m, struct walk *w, __u32 chunk);
void walk_pbatch(const struct map *m, struct walk *w, int threads, __u32 chunk);
void walk_iter(const struct map *m, struct walk *w);
void walk_snapshot(const struct map *m, struct walk *w, double budget_ms);
void walk_hybrid(const struct map *m, struct walk *w, double fraction, double budget_ms);

#endif
