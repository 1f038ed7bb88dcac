/*
 * peer: the project's C reference for dumping a pinned BPF map, built against the system
 * libbpf (build: `make -C bench/peers/c` from the repo root -> build/peers/c/peer).
 *
 *   peer mkmap PIN N [--type T] [--key-size K] [--value-size V] [--max-entries M]
 *   peer normal PIN                    GET_NEXT_KEY + LOOKUP_ELEM
 *   peer batch PIN [CHUNK]             LOOKUP_BATCH walk (chunk 4096)
 *   peer pbatch PIN [THREADS] [CHUNK]  LOOKUP_BATCH on THREADS threads (2) over disjoint ranges
 *   peer iter PIN                      bpf_iter program dump_map (build/dump_iter.bpf.o)
 *   peer snapshot PIN [BUDGET_MS]      in-kernel snapshot (build/snapshot.bpf.o), LOOKUP_BATCH after
 *   peer hybrid PIN [FRACTION] [BUDGET_MS]  snapshot of [0, B) + LOOKUP_BATCH of [B, end) on a thread
 *
 * Every command prints ONE JSON line on stdout, e.g.
 *   {"impl":"c","method":"batch","entries":1048576,"distinct":1048576,"seconds":0.298123,
 *    "syscalls":257,"peakRss":5242880,"chunk":4096}
 * A walk only copies each returned key into one growing buffer; the timer (CLOCK_MONOTONIC)
 * and peakRss (VmHWM, reset to the current RSS as the walk starts) are read as it ends,
 * and the distinct keys are counted after that.
 * Errors: one "peer: error: ..." line on stderr; exit 2 for bad arguments, 1 otherwise.
 *
 * Files: main.c (this: CLI, map info, output, distinct count), mkmap.c, walk.c (normal,
 * batch), pbatch.c, iter.c, snapshot.c (snapshot, hybrid).
 */
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "peer.h"

static const char usage[] =
	"peer: the C reference for deno-bpf-batch's map dumps (system libbpf)\n"
	"\n"
	"usage:\n"
	"  peer mkmap PIN N [--type T] [--key-size K] [--value-size V] [--max-entries M]\n"
	"      create a map (T: hash (default), lru_hash, percpu_hash, lru_percpu_hash, array,\n"
	"      percpu_array; K=4, V=4, M=N), fill keys 0..N-1 (little-endian i, value bytes\n"
	"      ef be ad de repeated) with UPDATE_BATCH, 65536 a call, and pin it at PIN (must not exist)\n"
	"  peer normal PIN                    GET_NEXT_KEY + LOOKUP_ELEM, two bpf() calls an entry\n"
	"  peer batch PIN [CHUNK]             LOOKUP_BATCH, CHUNK entries a call (4096; doubled on ENOSPC)\n"
	"  peer pbatch PIN [THREADS] [CHUNK]  LOOKUP_BATCH on THREADS threads (2) over disjoint bucket\n"
	"                                     (hash) or index (array) ranges\n"
	"  peer iter PIN                      bpf_iter program dump_map, read() 32 KiB at a time\n"
	"  peer snapshot PIN [BUDGET_MS]      in-kernel snapshot: one BPF_PROG_TEST_RUN of the program\n"
	"                                     snapshot (build/snapshot.bpf.o) copies at most\n"
	"                                     BUDGET_MS*1e6/300 entries (BUDGET_MS 1000) into mmap'ed arrays;\n"
	"                                     LOOKUP_BATCH (4096) reads the rest from where it stopped\n"
	"  peer hybrid PIN [FRACTION] [BUDGET_MS]\n"
	"                                     LOOKUP_BATCH over buckets (hash) or keys (array) [B, end) on\n"
	"                                     a second thread, B = round(FRACTION * end) (0.55); the snapshot\n"
	"                                     walks from the start and stops at the batch side's first key\n"
	"                                     (dropped if the snapshot never met it and walked everything)\n"
	"  peer --help\n"
	"\n"
	"Each command prints one JSON line on stdout:\n"
	"  {\"impl\":\"c\",\"method\":M,\"entries\":N,\"distinct\":D,\"seconds\":S,\"syscalls\":C,\"peakRss\":B[,\"threads\":T][,\"chunk\":K]\n"
	"   [,\"setup\":U,\"snapshotEntries\":E,\"batchEntries\":F[,\"split\":P,\"batchSideKept\":true|false]]}\n"
	"entries: keys returned (duplicates included); distinct: different keys among them;\n"
	"seconds: wall clock of the walk (mkmap: of the fill); syscalls: bpf() calls in it (iter:\n"
	"read() calls + 1 for bpf_iter_create); peakRss: VmHWM in bytes as the walk ends,\n"
	"reset to the current RSS as it starts;\n"
	"chunk: the chunk in use at the end (batch, pbatch, mkmap; snapshot, hybrid: of LOOKUP_BATCH);\n"
	"snapshot, hybrid: setup: seconds to load the program, create the output and mmap it (not in\n"
	"seconds); snapshotEntries, batchEntries: keys from the kernel walk and from LOOKUP_BATCH;\n"
	"hybrid: split: B; batchSideKept: false when the snapshot walked the whole map (sentinel gone);\n"
	"syscalls: BPF_PROG_TEST_RUN, the stop_key update (hybrid) and every LOOKUP_BATCH.\n"
	"\n"
	"environment: PEER_ITER_OBJ  the dump_iter.bpf.o to load (default: build/dump_iter.bpf.o\n"
	"                            under the working directory, else ../../dump_iter.bpf.o next\n"
	"                            to this binary, i.e. build/dump_iter.bpf.o of its checkout)\n"
	"             PEER_SNAPSHOT_OBJ  the snapshot.bpf.o to load (found as PEER_ITER_OBJ's default)\n"
	"             PEER_DEBUG=1   show libbpf's own messages\n"
	"exit status: 0 ok, 1 runtime error, 2 bad arguments (one \"peer: error: ...\" line on stderr)\n";

const char *find_object(const char *name, const char *env, char *buf, size_t len)
{
	const char *given = getenv(env);
	if (given && *given)
		return given;
	if ((size_t)snprintf(buf, len, "build/%s", name) < len && !access(buf, R_OK))
		return buf;
	ssize_t n = readlink("/proc/self/exe", buf, len - 1);
	if (n > 0) {
		buf[n] = 0;
		char *slash = strrchr(buf, '/');
		if (slash && (size_t)(slash - buf) + strlen(name) + 8 < len) {
			sprintf(slash + 1, "../../%s", name);
			if (!access(buf, R_OK))
				return buf;
		}
	}
	die(1, "%s not found in build/ or next to the binary: run `make build` or set %s", name, env);
}

void set_rodata(struct bpf_object *obj, const struct rodata_var *vars, int n)
{
	struct bpf_map *rodata = bpf_object__find_map_by_name(obj, ".rodata");
	struct btf *btf = bpf_object__btf(obj);
	int id = btf ? btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC) : -1;
	size_t size;
	const void *init = rodata ? bpf_map__initial_value(rodata, &size) : NULL;
	if (!init || id < 0)
		die(1, "the BPF object has no .rodata with BTF");

	unsigned char *data = xmalloc(size);
	const struct btf_type *sec = btf__type_by_id(btf, id);
	memcpy(data, init, size);
	for (int v = 0; v < n; v++) {
		const struct btf_var_secinfo *var = btf_var_secinfos(sec);
		int found = 0;
		for (int i = 0; i < btf_vlen(sec) && !found; i++, var++) {
			const char *name =
				btf__name_by_offset(btf, btf__type_by_id(btf, var->type)->name_off);
			if (!strcmp(name, vars[v].name) && var->size == vars[v].size &&
			    var->offset + vars[v].size <= size) {
				memcpy(data + var->offset, vars[v].value, vars[v].size);
				found = 1;
			}
		}
		if (!found)
			die(1, "the BPF object's .rodata lacks %s of %zu bytes", vars[v].name, vars[v].size);
	}
	if (bpf_map__set_initial_value(rodata, data, size))
		die(1, "cannot set the BPF object's .rodata: %s", strerror(errno));
	free(data);
}

void die(int code, const char *fmt, ...)
{
	va_list ap;
	fflush(stdout);
	fputs("peer: error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

__u32 parse_u32(const char *s, const char *what, __u32 min)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (!*s || *end || errno || s[0] == '-' || v > 0xffffffffull || v < min)
		die(2, "%s must be an integer in [%u, 4294967295], not '%s'", what, min, s);
	return v;
}

/* A number > 0 (and <= max when max > 0), e.g. a budget in milliseconds or a fraction. */
static double parse_positive(const char *s, const char *what, double max)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (!*s || *end || errno || !(v > 0) || !isfinite(v) || (max > 0 && v > max)) {
		if (max > 0)
			die(2, "%s must be a number in (0, %g], not '%s'", what, max, s);
		die(2, "%s must be a positive number, not '%s'", what, s);
	}
	return v;
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		die(1, "out of memory (%zu bytes)", n);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		die(1, "out of memory (%zu bytes)", n);
	return p;
}

/* Preallocate `hint` keys up front, up to 1 GiB (only the pages written count in the RSS). */
void keys_init(struct keys *k, __u32 size, size_t hint)
{
	size_t limit = (1ul << 30) / size;
	k->size = size;
	k->n = 0;
	k->cap = hint < 1024 ? 1024 : hint > limit ? limit : hint;
	k->data = xmalloc(k->cap * size);
}

void keys_grow(struct keys *k, size_t need)
{
	while (k->cap < need)
		k->cap *= 2;
	k->data = xrealloc(k->data, k->cap * k->size);
}

/* The peak RSS of this process's own memory (VmHWM in /proc/self/status), in bytes. Not
 * getrusage's ru_maxrss: execve keeps the largest RSS of the process before it (the parent
 * that forked it, e.g. a Deno or Node runtime), so a small program run from a large one would
 * report its parent's size. */
long peak_rss(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb < 0 ? -1 : kb * 1024L;
}

int is_percpu(__u32 type)
{
	return type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_ARRAY ||
	       type == BPF_MAP_TYPE_LRU_PERCPU_HASH;
}

const char *type_name(__u32 type)
{
	switch (type) {
	case BPF_MAP_TYPE_HASH: return "hash";
	case BPF_MAP_TYPE_LRU_HASH: return "lru_hash";
	case BPF_MAP_TYPE_PERCPU_HASH: return "percpu_hash";
	case BPF_MAP_TYPE_LRU_PERCPU_HASH: return "lru_percpu_hash";
	case BPF_MAP_TYPE_ARRAY: return "array";
	case BPF_MAP_TYPE_PERCPU_ARRAY: return "percpu_array";
	default: return "other";
	}
}

/* Starts a walk's timed part: resets the peak RSS to the current RSS first (as the TS side
 * does: `5 > /proc/self/clear_refs`, which resets VmHWM), so peakRss is the
 * walk's peak, not the setup's (libbpf loading BTF for iter). Best effort. */
double start_timer(void)
{
	int fd = open("/proc/self/clear_refs", O_WRONLY);
	if (fd >= 0) {
		ssize_t ignored = write(fd, "5", 1);
		(void)ignored;
		close(fd);
	}
	return now();
}

/* Ends a walk's timed part: its seconds, then the peak RSS so far. */
void stop_timer(struct walk *w, double t0)
{
	w->seconds = now() - t0;
	w->peak_rss = peak_rss();
}

void print_result(const struct walk *w, size_t distinct)
{
	printf("{\"impl\":\"c\",\"method\":\"%s\",\"entries\":%zu,\"distinct\":%zu,\"seconds\":%.6f,"
	       "\"syscalls\":%lu,\"peakRss\":%ld",
	       w->method, w->keys.n, distinct, w->seconds, w->syscalls, w->peak_rss);
	if (w->threads)
		printf(",\"threads\":%d", w->threads);
	if (w->chunk)
		printf(",\"chunk\":%u", w->chunk);
	if (w->snapshot) {
		printf(",\"setup\":%.6f,\"snapshotEntries\":%zu,\"batchEntries\":%zu",
		       w->setup, w->snapshot_entries, w->batch_entries);
		if (!strcmp(w->method, "hybrid"))
			printf(",\"split\":%u,\"batchSideKept\":%s", w->split,
			       w->batch_side_kept ? "true" : "false");
	}
	printf("}\n");
	fflush(stdout);
}

/* A pinned object's fd is a map's if its fdinfo has a map_type line. */
static int is_map_fd(int fd)
{
	char path[64], line[128];
	int found = 0;
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	FILE *f = fopen(path, "r");
	if (!f)
		return 1; /* cannot tell: let the map calls fail */
	while (!found && fgets(line, sizeof(line), f))
		found = !strncmp(line, "map_type:", 9);
	fclose(f);
	return found;
}

static void open_map(const char *pin, struct map *m)
{
	struct bpf_map_info info;
	__u32 len = sizeof(info);

	m->fd = bpf_obj_get(pin);
	if (m->fd < 0)
		die(1, "cannot open pinned map %s: %s", pin, strerror(errno));
	if (!is_map_fd(m->fd))
		die(1, "%s is not a BPF map", pin);
	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(m->fd, &info, &len))
		die(1, "%s: cannot read the map's info: %s", pin, strerror(errno));
	if (info.key_size == 0)
		die(1, "%s: map type %u has no keys to walk (queue, stack or bloom filter)", pin, info.type);
	m->type = info.type;
	m->key_size = info.key_size;
	m->value_size = info.value_size;
	m->max_entries = info.max_entries;
	m->percpu = is_percpu(info.type);
	m->value_bytes = info.value_size;
	if (m->percpu) {
		int ncpus = libbpf_num_possible_cpus();
		if (ncpus < 1)
			die(1, "cannot count the possible CPUs: %s", strerror(-ncpus));
		m->value_bytes = (size_t)((info.value_size + 7) & ~7u) * ncpus;
	}
}

/* Distinct u32 keys: LSD radix sort (two 16-bit passes), then count runs. */
static size_t distinct_u32(__u32 *a, size_t n)
{
	__u32 *tmp = xmalloc(n * sizeof(*tmp)), *src = a, *dst = tmp, *swap;
	size_t *count = xmalloc(65536 * sizeof(*count)), d = 0;

	for (int shift = 0; shift < 32; shift += 16) {
		size_t at = 0;
		memset(count, 0, 65536 * sizeof(*count));
		for (size_t i = 0; i < n; i++)
			count[(src[i] >> shift) & 0xffff]++;
		for (size_t b = 0; b < 65536; b++) {
			size_t c = count[b];
			count[b] = at;
			at += c;
		}
		for (size_t i = 0; i < n; i++)
			dst[count[(src[i] >> shift) & 0xffff]++] = src[i];
		swap = src, src = dst, dst = swap;
	}
	for (size_t i = 0; i < n; i++)
		d += i == 0 || src[i] != src[i - 1];
	free(tmp);
	free(count);
	return d;
}

static size_t cmp_size;
static int cmp_keys(const void *a, const void *b) { return memcmp(a, b, cmp_size); }

/* Distinct keys of any size: sort the packed keys, count runs. Sorts k in place. */
static size_t distinct_keys(struct keys *k)
{
	size_t d = 0;
	if (k->size == 4)
		return distinct_u32((__u32 *)k->data, k->n);
	cmp_size = k->size;
	qsort(k->data, k->n, k->size, cmp_keys);
	for (size_t i = 0; i < k->n; i++)
		d += i == 0 || memcmp(k->data + i * k->size, k->data + (i - 1) * k->size, k->size);
	return d;
}

static int silent(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	(void)level, (void)fmt, (void)ap;
	return 0;
}

int main(int argc, char **argv)
{
	struct map m;
	struct walk w;
	const char *cmd = argc > 1 ? argv[1] : NULL;

	if (!cmd || !strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		fputs(usage, stdout);
		return 0;
	}
	if (!getenv("PEER_DEBUG"))
		libbpf_set_print(silent);
	if (!strcmp(cmd, "mkmap"))
		return cmd_mkmap(argc - 2, argv + 2);

	int nargs = argc - 3; /* after PIN */
	memset(&w, 0, sizeof(w));
	if (!strcmp(cmd, "normal") || !strcmp(cmd, "iter")) {
		if (argc < 3 || nargs > 0)
			die(2, "usage: peer %s PIN", cmd);
	} else if (!strcmp(cmd, "batch")) {
		if (argc < 3 || nargs > 1)
			die(2, "usage: peer batch PIN [CHUNK]");
	} else if (!strcmp(cmd, "pbatch")) {
		if (argc < 3 || nargs > 2)
			die(2, "usage: peer pbatch PIN [THREADS] [CHUNK]");
	} else if (!strcmp(cmd, "snapshot")) {
		if (argc < 3 || nargs > 1)
			die(2, "usage: peer snapshot PIN [BUDGET_MS]");
	} else if (!strcmp(cmd, "hybrid")) {
		if (argc < 3 || nargs > 2)
			die(2, "usage: peer hybrid PIN [FRACTION] [BUDGET_MS]");
	} else {
		die(2, "unknown command '%s' (peer --help lists them)", cmd);
	}
	/* Parse the numbers before touching the map, so bad arguments always exit 2. */
	__u32 chunk = 4096, threads = 2;
	if (!strcmp(cmd, "batch") && nargs > 0)
		chunk = parse_u32(argv[3], "CHUNK", 1);
	if (!strcmp(cmd, "pbatch") && nargs > 0)
		threads = parse_u32(argv[3], "THREADS", 1);
	if (!strcmp(cmd, "pbatch") && nargs > 1)
		chunk = parse_u32(argv[4], "CHUNK", 1);
	double budget_ms = 1000, fraction = 0.55;
	if (!strcmp(cmd, "snapshot") && nargs > 0)
		budget_ms = parse_positive(argv[3], "BUDGET_MS", 0);
	if (!strcmp(cmd, "hybrid") && nargs > 0)
		fraction = parse_positive(argv[3], "FRACTION", 1);
	if (!strcmp(cmd, "hybrid") && nargs > 1)
		budget_ms = parse_positive(argv[4], "BUDGET_MS", 0);
	if (threads > 1024)
		die(2, "THREADS must be at most 1024, not %u", threads);
	if (chunk > (1u << 30))
		die(2, "CHUNK must be at most %u, not %u", 1u << 30, chunk);

	open_map(argv[2], &m);
	if (!strcmp(cmd, "normal"))
		walk_normal(&m, &w);
	else if (!strcmp(cmd, "batch"))
		walk_batch(&m, &w, chunk);
	else if (!strcmp(cmd, "pbatch"))
		walk_pbatch(&m, &w, threads, chunk);
	else if (!strcmp(cmd, "snapshot"))
		walk_snapshot(&m, &w, budget_ms);
	else if (!strcmp(cmd, "hybrid"))
		walk_hybrid(&m, &w, fraction, budget_ms);
	else
		walk_iter(&m, &w);
	print_result(&w, distinct_keys(&w.keys));
	return 0;
}
