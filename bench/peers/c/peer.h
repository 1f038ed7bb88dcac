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
};

/* main.c */
void die(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
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

#endif
