/**
 * The in-kernel snapshot (`MapSnapshot`) against the real kernel: every key once with its
 * value on hash, lru_hash and array maps of four key/value shapes, both backends the map may
 * be opened with; the element bound (a stop at `maxElemsPerCall`, and LOOKUP_BATCH from
 * `resumeCursor` returning exactly the rest); `stopAtKey` (the entries before the sentinel in
 * LOOKUP_BATCH order; a sentinel not in the map gives a complete snapshot); refusals as one
 * line; reuse, closing, and a GC stress with many snapshots opened and closed.
 *
 * The GC tests need `--v8-flags=--expose-gc` (`deno task test` passes it); under a plain
 * `deno test --allow-all` they run in a child `deno test` that has it.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type BackendName,
  type BatchView,
  BpfArgumentError,
  BpfError,
  BpfMap,
  type MapTypeName,
} from "../mod.ts";
import { cursorSpace } from "../ffi/dump/parallel.ts";
import { libbpfSymbols } from "../ffi/sys/libbpf.ts";
import {
  bucketCount,
  MapSnapshot,
  snapshotElementBound,
  snapshotLayout,
  snapshotNsPerElement,
  type SnapshotStats,
} from "../ffi/dump/snapshot.ts";
import {
  ALL_BACKENDS,
  bpfTest,
  type Collect,
  facilityTest,
  gcTest,
  roomFor,
  ROOT,
} from "./_helpers.ts";
import { SNAPSHOT_FACILITIES } from "../ffi/dump/snapshot.ts";

/** A test of the snapshot: skipped, with the probe's reason, where the kernel cannot run it. */
function snapshotTest(name: string, fn: () => void | Promise<void>): void {
  facilityTest(import.meta.url, name, SNAPSHOT_FACILITIES, fn);
}

/** `snapshotTest` with `gc()` (see `gcTest`). */
function snapshotGcTest(name: string, fn: (gc: Collect) => void | Promise<void>): void {
  gcTest(import.meta.url, name, fn, SNAPSHOT_FACILITIES);
}

/** Key and value sizes: the study's u32 pair, wide records, a long value, odd sizes. */
const SHAPES = [
  { keySize: 4, valueSize: 4 },
  { keySize: 16, valueSize: 32 },
  { keySize: 8, valueSize: 64 },
  { keySize: 3, valueSize: 5 },
];
/** Entries per map. */
const ENTRIES = 5000;
/** The element bound of the bounded tests: a fifth of the map. */
const SMALL_BOUND = 1000;

/** Byte `j` of the key of entry `id`: the id's bytes first, then bytes derived from it. */
function keyByte(id: number, j: number): number {
  return j < 4 ? (id >>> (8 * j)) & 0xff : (Math.imul(id, 31) + j * 7) & 0xff;
}

/** Byte `j` of the value of entry `id` (the first four say which id it belongs to). */
function valueByte(id: number, j: number): number {
  return j < 4 ? ((id ^ 0xa5c3e1f7) >>> (8 * j)) & 0xff : (Math.imul(id, 13) + j * 29 + 1) & 0xff;
}

function keyOf(id: number, keySize: number): Uint8Array {
  return Uint8Array.from({ length: keySize }, (_, j) => keyByte(id, j));
}

/** The id in the key at `at` (little-endian, its first `min(keySize, 4)` bytes). */
function idAt(keys: Uint8Array, at: number, keySize: number): number {
  let id = 0;
  for (let j = Math.min(keySize, 4) - 1; j >= 0; j--) id = id * 256 + keys[at + j];
  return id;
}

/** A map of `type` filled with entries `0 .. ENTRIES - 1` (LRU maps get room: nothing evicted). */
function filled(
  type: MapTypeName,
  backend: BackendName,
  shape: { keySize: number; valueSize: number },
  entries = ENTRIES,
): BpfMap {
  const maxEntries = roomFor(type, entries);
  const map = BpfMap.create({ type, ...shape, maxEntries, name: "snap_test" }, { backend });
  const keys = new Uint8Array(entries * shape.keySize);
  const values = new Uint8Array(entries * shape.valueSize);
  for (let id = 0; id < entries; id++) {
    for (let j = 0; j < shape.keySize; j++) keys[id * shape.keySize + j] = keyByte(id, j);
    for (let j = 0; j < shape.valueSize; j++) values[id * shape.valueSize + j] = valueByte(id, j);
  }
  assert.equal(map.updateBatch(keys, values), entries);
  return map;
}

/** Collects a walk's entries, in order, checking each key's bytes and value. */
class Seen {
  readonly order: number[] = [];
  readonly ids = new Set<number>();
  readonly #keySize: number;
  readonly #valueSize: number;

  constructor(map: BpfMap) {
    this.#keySize = map.keySize;
    this.#valueSize = map.valueSize;
  }

  batch = (batch: BatchView): void => {
    const ks = this.#keySize;
    const vs = this.#valueSize;
    assert.equal(batch.keys.byteLength, batch.count * ks);
    assert.equal(batch.values.byteLength, batch.count * vs);
    for (let i = 0; i < batch.count; i++) {
      const id = idAt(batch.keys, i * ks, ks);
      for (let j = 0; j < ks; j++) {
        if (batch.keys[i * ks + j] !== keyByte(id, j)) assert.fail(`key ${id}: byte ${j}`);
      }
      for (let j = 0; j < vs; j++) {
        const got = batch.values[i * vs + j];
        if (got !== valueByte(id, j)) {
          assert.fail(`key ${id}: value byte ${j} is ${got}, wrote ${valueByte(id, j)}`);
        }
      }
      if (this.ids.has(id)) assert.fail(`key ${id} handed out twice`);
      this.ids.add(id);
      this.order.push(id);
    }
  };
}

/** The map's entries in LOOKUP_BATCH order, from cursor position `start` (bucket or key). */
function batchOrder(map: BpfMap, start = 0): number[] {
  const seen = new Seen(map);
  const array = map.typeName === "array";
  map.forEachBatch(seen.batch, {
    chunk: 256,
    ...(start > 0 ? { range: { start, end: cursorSpace(map), array } } : {}),
  });
  return seen.order;
}

const TYPES = ["hash", "lru_hash", "array"] as const;

for (const backend of ALL_BACKENDS) {
  for (const type of TYPES) {
    for (const shape of SHAPES) {
      if (type === "array" && shape.keySize !== 4) continue;
      snapshotTest(
        `snapshot: every key once with its value, ${shape.keySize}-byte keys, ${shape.valueSize}-byte values [${type}, ${backend}]`,
        () => {
          using map = filled(type, backend, shape);
          using snapshot = MapSnapshot.open(map);
          assert.equal(snapshot.layout.capacity, map.info.maxEntries);
          // Two walks on one snapshot: each a fresh one, in LOOKUP_BATCH's order.
          for (let walk = 0; walk < 2; walk++) {
            const seen = new Seen(map);
            const stats = snapshot.forEachBatch(seen.batch, { batchEntries: 1500 });
            assert.equal(seen.ids.size, ENTRIES);
            assert.deepEqual(seen.order, batchOrder(map));
            assert.equal(stats.entries, ENTRIES);
            assert.equal(stats.copied, ENTRIES);
            assert.equal(stats.visited, ENTRIES);
            assert.equal(stats.stoppedBy, "end");
            assert.equal(stats.complete, true);
            assert.equal(stats.calls, 1);
            assert.equal(stats.syscalls, 1);
            assert.equal(stats.batches, Math.ceil(ENTRIES / 1500));
            assert.equal(stats.resumeCursor, undefined);
            assert.deepEqual(stats.lastKey, keyOf(seen.order.at(-1)!, map.keySize));
            if (type !== "array") {
              assert.equal(stats.buckets, bucketCount(map.info.type, map.info.maxEntries));
            }
          }
        },
      );
    }
  }
}

for (const type of ["hash", "lru_hash"] as const) {
  snapshotTest(`snapshot of an empty map [${type}]`, () => {
    using map = BpfMap.create({ type, keySize: 8, valueSize: 8, maxEntries: 100 });
    using snapshot = MapSnapshot.open(map);
    const stats = snapshot.forEachBatch(() => assert.fail("a batch"));
    assert.equal(stats.entries, 0);
    assert.equal(stats.batches, 0);
    assert.equal(stats.complete, true);
    assert.equal(stats.lastKey, undefined);
  });
}

/**
 * Checks a stop at the bound: the entries handed out are the first ones of LOOKUP_BATCH's
 * order, and a LOOKUP_BATCH walk from `resumeCursor` returns exactly the others.
 */
function checkResume(map: BpfMap, stats: SnapshotStats, seen: Seen, bound: number): void {
  assert.equal(stats.stoppedBy, "limit");
  assert.equal(stats.complete, false);
  assert.equal(stats.copied, bound);
  assert.equal(stats.visited, bound + 1);
  assert.ok(stats.entries <= bound && stats.entries > bound - 16, `${stats.entries} handed out`);
  assert.equal(stats.entries, seen.ids.size);
  assert.ok(stats.resumeCursor !== undefined, "no resume cursor");
  const all = batchOrder(map);
  assert.deepEqual(seen.order, all.slice(0, stats.entries));
  const rest = batchOrder(map, stats.resumeCursor);
  assert.deepEqual(rest, all.slice(stats.entries), "LOOKUP_BATCH from resumeCursor");
  assert.deepEqual(stats.lastKey, keyOf(seen.order.at(-1)!, map.keySize));
}

for (const type of TYPES) {
  for (const shape of [SHAPES[0], SHAPES[3]]) {
    if (type === "array" && shape.keySize !== 4) continue;
    snapshotTest(
      `snapshot stops at maxElemsPerCall and says where LOOKUP_BATCH resumes, ${shape.keySize}/${shape.valueSize} [${type}]`,
      () => {
        using map = filled(type, "syscall", shape);
        using snapshot = MapSnapshot.open(map, { maxElemsPerCall: SMALL_BOUND });
        // The output holds what one run copies, not the whole map.
        assert.equal(snapshot.layout.capacity, SMALL_BOUND);
        assert.equal(snapshot.maxElemsPerCall, SMALL_BOUND);
        const seen = new Seen(map);
        checkResume(map, snapshot.forEachBatch(seen.batch), seen, SMALL_BOUND);
      },
    );
  }
}

snapshotTest("snapshot of a BPF_F_NO_PREALLOC hash map stops and resumes exactly", () => {
  using map = BpfMap.create({
    type: "hash",
    keySize: 8,
    valueSize: 12,
    maxEntries: ENTRIES,
    flags: 1,
  });
  const seenAll = new Seen(map);
  const keys = new Uint8Array(ENTRIES * 8);
  const values = new Uint8Array(ENTRIES * 12);
  for (let id = 0; id < ENTRIES; id++) {
    keys.set(keyOf(id, 8), id * 8);
    for (let j = 0; j < 12; j++) values[id * 12 + j] = valueByte(id, j);
  }
  assert.equal(map.updateBatch(keys, values), ENTRIES);
  using whole = MapSnapshot.open(map);
  assert.equal(whole.forEachBatch(seenAll.batch).entries, ENTRIES);
  using bounded = MapSnapshot.open(map, { maxElemsPerCall: 2500 });
  const seen = new Seen(map);
  checkResume(map, bounded.forEachBatch(seen.batch), seen, 2500);
});

snapshotTest(
  "snapshot of 512-byte keys and 4100-byte values (copied by bpf_probe_read_kernel)",
  () => {
    using map = filled("hash", "syscall", { keySize: 512, valueSize: 4100 }, 1000);
    using snapshot = MapSnapshot.open(map);
    const seen = new Seen(map);
    assert.equal(snapshot.forEachBatch(seen.batch).entries, 1000);
    assert.equal(seen.ids.size, 1000);
    using bounded = MapSnapshot.open(map, { maxElemsPerCall: 400 });
    const part = new Seen(map);
    checkResume(map, bounded.forEachBatch(part.batch), part, 400);
  },
);

snapshotTest("snapshot: a map of exactly maxElemsPerCall entries completes in one run", () => {
  using map = filled("hash", "libbpf", SHAPES[0]);
  using snapshot = MapSnapshot.open(map, { maxElemsPerCall: ENTRIES });
  const stats = snapshot.forEachBatch(() => {});
  assert.equal(stats.stoppedBy, "end");
  assert.equal(stats.entries, ENTRIES);
});

snapshotTest("snapshot: kernelTimeBudgetMs sets the element bound", () => {
  using map = filled("hash", "syscall", SHAPES[0]);
  using snapshot = MapSnapshot.open(map, { kernelTimeBudgetMs: 0.2 });
  assert.ok(snapshot.maxElemsPerCall < ENTRIES, `${snapshot.maxElemsPerCall}`);
  const seen = new Seen(map);
  checkResume(map, snapshot.forEachBatch(seen.batch), seen, snapshot.maxElemsPerCall);
});

for (const type of TYPES) {
  for (const shape of [SHAPES[0], SHAPES[1], SHAPES[3]]) {
    if (type === "array" && shape.keySize !== 4) continue;
    snapshotTest(
      `snapshot stopAtKey hands out exactly the entries before the sentinel, ${shape.keySize}/${shape.valueSize} [${type}]`,
      () => {
        using map = filled(type, "syscall", shape);
        using snapshot = MapSnapshot.open(map);
        const all = batchOrder(map);
        // The hybrid split: the sentinel is the first key LOOKUP_BATCH returns from a cursor
        // position; the snapshot and that batch walk together give every entry once.
        const split = Math.floor(cursorSpace(map) * 0.6);
        const tail = batchOrder(map, split);
        const sentinel = keyOf(tail[0], map.keySize);
        const seen = new Seen(map);
        const stats = snapshot.forEachBatch(seen.batch, { stopAtKey: sentinel });
        assert.equal(stats.stoppedBy, "sentinel");
        assert.equal(stats.sentinelMet, true);
        assert.equal(stats.complete, false);
        assert.equal(stats.syscalls, 2);
        assert.deepEqual([...seen.order, ...tail], all);
        assert.equal(stats.entries + tail.length, ENTRIES);
        // A sentinel at the very first element: nothing handed out.
        const none = snapshot.forEachBatch(() => assert.fail("a batch"), {
          stopAtKey: keyOf(all[0], map.keySize),
        });
        assert.equal(none.entries, 0);
        assert.equal(none.sentinelMet, true);
      },
    );
  }
}

snapshotTest("snapshot stopAtKey: a key not in the map yields a complete snapshot", () => {
  using map = filled("hash", "syscall", SHAPES[3]);
  using snapshot = MapSnapshot.open(map);
  const seen = new Seen(map);
  const stats = snapshot.forEachBatch(seen.batch, { stopAtKey: keyOf(ENTRIES + 7, 3) });
  assert.equal(stats.stoppedBy, "end");
  assert.equal(stats.sentinelMet, false);
  assert.equal(stats.complete, true);
  assert.equal(seen.ids.size, ENTRIES);
  // The sentinel of one walk does not carry over to the next.
  const again = snapshot.forEachBatch(() => {});
  assert.equal(again.sentinelMet, undefined);
  assert.equal(again.entries, ENTRIES);
});

snapshotTest("snapshot stopAtKey past the bound: the bound stops the walk first", () => {
  using map = filled("hash", "syscall", SHAPES[0]);
  using snapshot = MapSnapshot.open(map, { maxElemsPerCall: SMALL_BOUND });
  const all = batchOrder(map);
  const seen = new Seen(map);
  const stats = snapshot.forEachBatch(seen.batch, { stopAtKey: keyOf(all[3000], 4) });
  assert.equal(stats.sentinelMet, false);
  checkResume(map, stats, seen, SMALL_BOUND);
});

snapshotTest(
  "snapshot keeps working after its BpfMap is closed (it holds a reference of its own)",
  () => {
    const map = filled("hash", "syscall", SHAPES[2]);
    using snapshot = MapSnapshot.open(map);
    map.close();
    const seen = { count: 0 };
    assert.equal(snapshot.forEachBatch((b) => seen.count += b.count).entries, ENTRIES);
    assert.equal(seen.count, ENTRIES);
  },
);

snapshotTest(
  "snapshot: close() twice is fine; walks after close and close during a walk refuse",
  () => {
    using map = filled("hash", "syscall", SHAPES[0]);
    const snapshot = MapSnapshot.open(map);
    // Closing from the callback: the walk stops with an error instead of reading the unmapped output.
    assert.throws(
      () => snapshot.forEachBatch(() => snapshot.close(), { batchEntries: 100 }),
      (e: unknown) =>
        e instanceof BpfArgumentError && /closed during its forEachBatch/.test(e.message),
    );
    snapshot.close();
    snapshot[Symbol.dispose]();
    assert.throws(
      () => snapshot.forEachBatch(() => {}),
      /snapshot of the map \d+ "snap_test" is closed/,
    );
    // What was handed out before is a copy: still readable.
    using again = MapSnapshot.open(map);
    let kept: Uint8Array | undefined;
    again.forEachBatch((b) => kept ??= b.keys);
    again.close();
    assert.equal(kept?.byteLength, ENTRIES * 4);
    assert.ok(kept!.reduce((sum, byte) => sum + byte, 0) > 0);
  },
);

snapshotTest("snapshot: a walk from inside a walk of the same snapshot is refused", () => {
  using map = filled("hash", "syscall", SHAPES[0]);
  using snapshot = MapSnapshot.open(map);
  assert.throws(
    () => snapshot.forEachBatch(() => snapshot.forEachBatch(() => {})),
    /already running/,
  );
  assert.equal(snapshot.forEachBatch(() => {}).entries, ENTRIES);
});

/** Asserts that `fn` throws an error of `kind` whose message is one line matching `pattern`. */
function refuses(
  fn: () => unknown,
  kind: typeof BpfArgumentError | typeof BpfError,
  pattern: RegExp,
) {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof kind, `${e}`);
    assert.ok(!e.message.includes("\n"), `not one line: ${e.message}`);
    assert.match(e.message, pattern);
    return true;
  });
}

for (const type of ["percpu_hash", "lru_percpu_hash", "percpu_array"] as const) {
  bpfTest(`snapshot refuses a ${type} map in one line`, () => {
    using map = BpfMap.create({ type, keySize: 4, valueSize: 8, maxEntries: 16 });
    refuses(() => MapSnapshot.open(map), BpfArgumentError, /running CPU's value/);
  });
}

/** A map of a type the toolkit does not create (`BPF_MAP_TYPE_*` number), through libbpf. */
function rawMap(type: number, keySize: number, valueSize: number, flags: number): BpfMap {
  const opts = new BigUint64Array(6); // struct bpf_map_create_opts: sz, ..., map_flags at 28
  opts[0] = 48n;
  new DataView(opts.buffer).setUint32(28, flags, true);
  const create = libbpfSymbols().bpf_map_create!;
  const fd = create(type, null, keySize, valueSize, 16, new Uint8Array(opts.buffer));
  assert.ok(fd >= 0, `bpf_map_create: ${fd}`);
  return BpfMap.fromFd(fd);
}

bpfTest("snapshot refuses an lpm_trie and a queue map in one line", () => {
  using trie = rawMap(11, 8, 4, 1); // BPF_MAP_TYPE_LPM_TRIE needs BPF_F_NO_PREALLOC
  refuses(() => MapSnapshot.open(trie), BpfArgumentError, /hash, lru_hash and array maps only/);
  using queue = rawMap(22, 0, 4, 0); // BPF_MAP_TYPE_QUEUE
  refuses(() => MapSnapshot.open(queue), BpfArgumentError, /type 22/);
});

snapshotTest("snapshot refuses sizes it cannot hold, saying how many bytes it needed", () => {
  // 1M entries of 64 KiB values: 64 GiB of output.
  using big = BpfMap.create({
    type: "hash",
    keySize: 4,
    valueSize: 65536,
    maxEntries: 1 << 20,
    flags: 1, // BPF_F_NO_PREALLOC: the map itself stays small
  });
  refuses(
    () => MapSnapshot.open(big, { maxElemsPerCall: 1 << 20 }),
    BpfArgumentError,
    /needs 68723671040 bytes \(1048576 entries x \(4 \+ 65536\)\).*lower maxElemsPerCall/,
  );
  // An odd value of 600,001 bytes: 8 of them per output element, over the kernel's 4 MiB.
  using odd = BpfMap.create({
    type: "hash",
    keySize: 4,
    valueSize: 600_001,
    maxEntries: 4,
    flags: 1,
  });
  refuses(() => MapSnapshot.open(odd), BpfArgumentError, /output element of 4800008 bytes/);
  using small = filled("hash", "syscall", SHAPES[0], 10);
  refuses(
    () => MapSnapshot.open(small, { maxElemsPerCall: 0 }),
    BpfArgumentError,
    /Invalid maxElemsPerCall "0"/,
  );
  refuses(
    () => MapSnapshot.open(small, { kernelTimeBudgetMs: -1 }),
    BpfArgumentError,
    /Invalid kernelTimeBudgetMs "-1"/,
  );
  using snapshot = MapSnapshot.open(small);
  refuses(
    () => snapshot.forEachBatch(() => {}, { stopAtKey: new Uint8Array(8) }),
    BpfArgumentError,
    /Key of 8 bytes for stopAtKey/,
  );
  refuses(
    () => MapSnapshot.open(small, { objectPath: "/nonexistent.bpf.o" }),
    BpfError,
    /ENOENT.*make build/,
  );
});

Deno.test("snapshot: the element bound follows the table's size, under the time budget", () => {
  // The measured points, and rising between and past them.
  assert.equal(snapshotNsPerElement(1000), 200);
  assert.equal(snapshotNsPerElement(1e6), 200);
  assert.equal(Math.round(snapshotNsPerElement(1e7)), 280);
  assert.equal(Math.round(snapshotNsPerElement(1e8)), 580);
  const study = snapshotNsPerElement(104_857_600);
  assert.ok(study > 580 && study < 600, `${study}`);
  assert.ok(snapshotNsPerElement(1e9) > snapshotNsPerElement(1e8));
  // One second at the study's size: 591 ns measured per element there, so the bound keeps a
  // run under the budget.
  const bound = snapshotElementBound({}, 104_857_600);
  assert.ok(bound * 591e-9 < 1, `${bound} elements take ${bound * 591e-9} s`);
  assert.equal(snapshotElementBound({ maxElemsPerCall: 5 }, 104_857_600), 5);
  assert.throws(() => snapshotElementBound({ kernelTimeBudgetMs: 0 }), BpfArgumentError);
});

Deno.test("snapshot: output layout packs keys and values in groups of 8-byte multiples", () => {
  assert.deepEqual(snapshotLayout(4, 4, 5), {
    capacity: 5,
    keyGroup: 2,
    valueGroup: 2,
    keyElements: 3,
    valueElements: 3,
    keyBytes: 24,
    valueBytes: 24,
  });
  const odd = snapshotLayout(3, 5, 1000);
  assert.equal(odd.keyGroup, 8);
  assert.equal(odd.valueGroup, 8);
  assert.equal(odd.keyBytes, 125 * 24);
  assert.equal(snapshotLayout(16, 32, 7).keyGroup, 1);
  assert.equal(snapshotLayout(12, 6, 7).keyGroup, 2);
  assert.equal(snapshotLayout(12, 6, 7).valueGroup, 4);
});

/**
 * The refusal without CAP_BPF: a child creates a map, then drops CAP_BPF, CAP_PERFMON and
 * CAP_SYS_ADMIN from its main thread's effective set (`capset`, which is per thread: the
 * thread that makes every call here) and opens a snapshot.
 */
bpfTest("snapshot refuses a thread without CAP_BPF in one line", async () => {
  const code = `
    import { BpfMap } from "${ROOT}mod.ts";
    import { MapSnapshot } from "${ROOT}ffi/dump/snapshot.ts";
    const map = BpfMap.create({ type: "hash", keySize: 4, valueSize: 4, maxEntries: 8 });
    const libc = Deno.dlopen("libc.so.6", {
      syscall: { parameters: ["i64", "buffer", "buffer"], result: "i64" },
    }).symbols;
    const header = new Uint32Array([0x20080522, 0]); // _LINUX_CAPABILITY_VERSION_3, this thread
    const data = new Uint32Array(6); // { effective, permitted, inheritable } x 2
    if (libc.syscall(125n, new Uint8Array(header.buffer), new Uint8Array(data.buffer)) !== 0n) throw new Error("capget");
    data[0] &= ~(1 << 21); // CAP_SYS_ADMIN
    data[3] &= ~((1 << (38 - 32)) | (1 << (39 - 32))); // CAP_PERFMON, CAP_BPF
    if (libc.syscall(126n, new Uint8Array(header.buffer), new Uint8Array(data.buffer)) !== 0n) throw new Error("capset");
    try {
      MapSnapshot.open(map);
      console.log("opened");
    } catch (e) {
      console.log(e.name + ": " + e.message);
    }
  `;
  const { code: exit, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(stdout).trim();
  assert.equal(exit, 0, new TextDecoder().decode(stderr));
  assert.equal(out.split("\n").length, 1, out);
  assert.match(
    out,
    /^BpfUnavailableError: the snapshot cannot run here: .*: CAP_BPF and CAP_PERFMON needed, which this process lacks: run as root or grant CAP_BPF and CAP_PERFMON: use LOOKUP_BATCH \(--method batch\)$/,
  );
});

const GC_SNAPSHOTS = 120;

snapshotGcTest(
  "snapshot gc: many snapshots opened, walked and closed with forced GCs",
  (gc) => {
    const shapes = [SHAPES[0], SHAPES[3], SHAPES[1]];
    const maps = shapes.map((shape) => filled("hash", "syscall", shape, 2000));
    const late: MapSnapshot[] = [];
    try {
      for (let i = 0; i < GC_SNAPSHOTS; i++) {
        const map = maps[i % maps.length];
        // Each snapshot is garbage after its walks; its handed-out buffers are dropped at once.
        const snapshot = MapSnapshot.open(map, i % 4 === 3 ? { maxElemsPerCall: 700 } : {});
        gc({ type: i % 10 === 0 ? "major" : "minor" });
        for (let walk = 0; walk < 2; walk++) {
          const seen = new Seen(map);
          const stats = snapshot.forEachBatch((batch) => {
            seen.batch(batch);
            // Garbage between batches, and a collection now and then inside the walk.
            const junk = Array.from({ length: 64 }, (_, j) => new Uint8Array(16 + j));
            if (junk.length && walk === 1) gc({ type: "minor" });
          }, { batchEntries: 300 });
          assert.equal(stats.entries, seen.ids.size);
          if (stats.complete) assert.equal(seen.ids.size, 2000);
          else assert.equal(stats.copied, 700);
        }
        // A third closed at once; the others stay open (mapped) until the end.
        if (i % 3 === 0) snapshot.close();
        else late.push(snapshot);
      }
    } finally {
      for (const snapshot of late) snapshot.close();
      for (const map of maps) map.close();
    }
    gc();
  },
);

snapshotGcTest("snapshot gc: the map handle and the snapshot die in any order", (gc) => {
  for (let i = 0; i < 40; i++) {
    const map = filled(i % 2 ? "lru_hash" : "hash", "libbpf", SHAPES[2], 500);
    const snapshot = MapSnapshot.open(map);
    if (i % 2) map.close();
    gc({ type: "minor" });
    const seen = new Seen(map);
    assert.equal(snapshot.forEachBatch(seen.batch).entries, 500);
    snapshot.close();
    map.close();
    gc({ type: i % 8 === 0 ? "major" : "minor" });
  }
});
