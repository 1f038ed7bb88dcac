/* iter.c: the bpf_iter walk. Loads the project's iterator object (bpf/dump_iter.bpf.c,
 * built as build/dump_iter.bpf.o) with its .rodata globals key_size and value_size set to the
 * map's, attaches its program dump_map to the map, and reads the records it writes
 * (key[key_size] value[value_bytes], packed) 32 KiB at a time until read() returns 0.
 * Loading and attaching are setup: the timer covers bpf_iter_create and the reads.
 *
 * The object: $PEER_ITER_OBJ if set, else build/dump_iter.bpf.o under the working
 * directory, else ../../dump_iter.bpf.o from this binary's directory (build/peers/c/peer
 * -> build/dump_iter.bpf.o).
 */
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "peer.h"

#define READ_SIZE	(32 * 1024)
#define MAX_RECORD	32767	/* a record must fit in the 32 KiB seq_file buffer */


void walk_iter(const struct map *m, struct walk *w)
{
	char pathbuf[PATH_MAX];
	const char *path = find_object("dump_iter.bpf.o", "PEER_ITER_OBJ", pathbuf, sizeof(pathbuf));
	size_t ks = m->key_size, record = ks + m->value_bytes;

	if (record > MAX_RECORD)
		die(1, "records of %zu bytes: bpf_iter records are at most %d bytes", record, MAX_RECORD);

	struct bpf_object *obj = bpf_object__open_file(path, NULL);
	if (!obj)
		die(1, "cannot open %s: %s", path, strerror(errno));
	const struct rodata_var vars[] = {
		{ "key_size", &m->key_size, 4 },
		{ "value_size", &m->value_bytes, 4 },
	};
	set_rodata(obj, vars, 2);
	if (bpf_object__load(obj))
		die(1, "cannot load %s: %s", path, strerror(errno));
	struct bpf_program *prog = bpf_object__find_program_by_name(obj, "dump_map");
	if (!prog)
		die(1, "%s has no program dump_map", path);
	union bpf_iter_link_info info;
	memset(&info, 0, sizeof(info));
	info.map.map_fd = m->fd;
	LIBBPF_OPTS(bpf_iter_attach_opts, opts, .link_info = &info, .link_info_len = sizeof(info));
	struct bpf_link *link = bpf_program__attach_iter(prog, &opts);
	if (!link)
		die(1, "cannot attach dump_map to the map: %s", strerror(errno));

	unsigned char *buf = xmalloc(READ_SIZE + record);
	size_t have = 0; /* bytes in buf not yet parsed (a record split across reads) */

	w->method = "iter";
	keys_init(&w->keys, m->key_size, m->max_entries);
	double t0 = start_timer();
	int fd = bpf_iter_create(bpf_link__fd(link));
	w->syscalls++;
	if (fd < 0)
		die(1, "bpf_iter_create: %s", strerror(errno));
	for (;;) {
		ssize_t n = read(fd, buf + have, READ_SIZE);
		w->syscalls++;
		if (n < 0)
			die(1, "read of the map iterator: %s", strerror(errno));
		if (n == 0)
			break;
		have += n;
		size_t count = have / record;
		if (w->keys.n + count > w->keys.cap)
			keys_grow(&w->keys, w->keys.n + count);
		unsigned char *to = w->keys.data + w->keys.n * ks;
		for (size_t i = 0; i < count; i++, to += ks)
			memcpy(to, buf + i * record, ks);
		w->keys.n += count;
		have -= count * record;
		memmove(buf, buf + count * record, have);
	}
	stop_timer(w, t0);
	if (have)
		die(1, "the map iterator ended inside a record (%zu bytes left)", have);
	close(fd);
	free(buf);
	bpf_link__destroy(link);
	bpf_object__close(obj);
}
