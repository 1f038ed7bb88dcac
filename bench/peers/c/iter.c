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

static const char *object_path(char *buf, size_t len)
{
	const char *env = getenv("PEER_ITER_OBJ");
	if (env && *env)
		return env;
	if (!access("build/dump_iter.bpf.o", R_OK))
		return "build/dump_iter.bpf.o";
	ssize_t n = readlink("/proc/self/exe", buf, len - 1);
	if (n > 0) {
		buf[n] = 0;
		char *slash = strrchr(buf, '/');
		if (slash && (size_t)(slash - buf) + 32 < len) {
			strcpy(slash + 1, "../../dump_iter.bpf.o");
			if (!access(buf, R_OK))
				return buf;
		}
	}
	die(1, "dump_iter.bpf.o not found in build/ or next to the binary: run `make build` or set PEER_ITER_OBJ");
}

/* Writes the map's sizes into .rodata's key_size and value_size (offsets from the BTF). */
static void set_sizes(struct bpf_object *obj, __u32 key_size, __u32 value_bytes)
{
	struct bpf_map *rodata = bpf_object__find_map_by_name(obj, ".rodata");
	struct btf *btf = bpf_object__btf(obj);
	int id = btf ? btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC) : -1;
	size_t size;
	const void *init = rodata ? bpf_map__initial_value(rodata, &size) : NULL;
	if (!init || id < 0)
		die(1, "the iterator object has no .rodata with BTF");

	unsigned char *data = xmalloc(size);
	const struct btf_type *sec = btf__type_by_id(btf, id);
	const struct btf_var_secinfo *var = btf_var_secinfos(sec);
	int found = 0;
	memcpy(data, init, size);
	for (int i = 0; i < btf_vlen(sec); i++, var++) {
		const char *name = btf__name_by_offset(btf, btf__type_by_id(btf, var->type)->name_off);
		const __u32 *v = !strcmp(name, "key_size") ? &key_size
			       : !strcmp(name, "value_size") ? &value_bytes : NULL;
		if (v && var->size == 4 && var->offset + 4 <= size) {
			memcpy(data + var->offset, v, 4);
			found++;
		}
	}
	if (found != 2)
		die(1, "the iterator object's .rodata lacks __u32 key_size and value_size");
	if (bpf_map__set_initial_value(rodata, data, size))
		die(1, "cannot set the iterator's .rodata: %s", strerror(errno));
	free(data);
}

void walk_iter(const struct map *m, struct walk *w)
{
	char pathbuf[PATH_MAX];
	const char *path = object_path(pathbuf, sizeof(pathbuf));
	size_t ks = m->key_size, record = ks + m->value_bytes;

	if (record > MAX_RECORD)
		die(1, "records of %zu bytes: bpf_iter records are at most %d bytes", record, MAX_RECORD);

	struct bpf_object *obj = bpf_object__open_file(path, NULL);
	if (!obj)
		die(1, "cannot open %s: %s", path, strerror(errno));
	set_sizes(obj, m->key_size, m->value_bytes);
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
