/**
 * The dumps built on the in-kernel snapshot (`dumpMap` methods `snapshot`, `hybrid` and
 * `auto`, and `forEachBatchHybrid` itself) against the real kernel:
 *
 * - every key once with its value on hash, lru_hash and array maps of three key/value
 *   shapes, both backends, verified, in LOOKUP_BATCH's order on a still map;
 * - the bound on kernel time: a snapshot that stops at `maxElemsPerCall` (or at a tiny
 *   `kernelTimeBudgetMs`) and LOOKUP_BATCH that reads the rest (`gap`), alone and in the
 *   hybrid, where the gap runs from where the snapshot stopped to the split; a `visit` that
 *   throws in the gap rejects the dump (and leaves no unhandled rejection behind);
 * - the hybrid's sentinel: deleted just before the snapshot starts (the snapshot walks the
 *   whole map, the batch side is dropped), kept with keys inserted around it, or `null`
 *   when the batch side is empty;
 * - per-CPU maps refused by the snapshot methods, and `auto` choosing a batch method there;
 * - `auto` and its cost model (`choosePlan`, `hybridSplit`), the model's tests pure;
 * - a map written by a kernel or user churn writer while it is dumped: no key twice, the
 *   dump ends, and the verdict never claims what the kernel walk does not promise;
 * - a GC stress of snapshots opened, dumped through and closed.
 *
 * The GC test needs `--v8-flags=--expose-gc` (`deno task test` passes it); under a plain
 * `deno test --allow-all` it runs in a child `deno test` that has it.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type BackendName,
  type BatchView,
  BpfArgumentError,
  BpfMap,
  choosePlan,
  cursorSpace,
  dumpMap,
  type DumpMethod,
  type DumpResult,
  forEachBatchHybrid,
  hybridSplit,
  MapCounter,
  MapSnapshot,
  MapType,
  type MapTypeName,
  ParallelPool,
  startKernelChurn,
  startUserChurn,
  verdict,
} from "../mod.ts";
import { hybridSides, type MapShape, RCU_WALK_MARGIN } from "../ffi/dump/plan.ts";
import { snapshotElementBound } from "../ffi/dump/snapshot.ts";
import {
  ALL_BACKENDS,
  bpfTest,
  type Collect,
  countOf,
  facilityTest,
  gcTest,
  roomFor,
  u32At,
  u32Bytes,
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

/** Entries per map. */
const ENTRIES = 5000;
/** The element bound of the bounded tests: a seventh of the map. */
const SMALL_BOUND = 700;
/** Key and value sizes: the study's u32 pair, wide records, odd sizes. */
const SHAPES = [
  { keySize: 4, valueSize: 4 },
  { keySize: 16, valueSize: 32 },
  { keySize: 3, valueSize: 5 },
];
/** The types the snapshot walks. */
const TYPES = ["hash", "lru_hash", "array"] as const;
const SNAPSHOT_METHODS = ["snapshot", "hybrid"] as const;

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

function valueOf(id: number, valueSize: number): Uint8Array {
  return Uint8Array.from({ length: valueSize }, (_, j) => valueByte(id, j));
}

/** The id in the key at `at` (little-endian, its first `min(keySize, 4)` bytes). */
function idAt(keys: Uint8Array, at: number, keySize: number): number {
  let id = 0;
  for (let j = Math.min(keySize, 4) - 1; j >= 0; j--) id = id * 256 + keys[at + j];
  return id;
}

/** Arrays have 4-byte keys: the shape's value size with a 4-byte key. */
function shapeFor(type: MapTypeName, shape: { keySize: number; valueSize: number }) {
  return type === "array" ? { keySize: 4, valueSize: shape.valueSize } : shape;
}

/**
 * A map of `type` filled with entries `0 .. entries - 1`: hash maps full, LRU maps with room
 * (nothing evicted), or `maxEntries` when given (room to insert).
 */
function filled(
  type: MapTypeName,
  backend: BackendName,
  shape: { keySize: number; valueSize: number },
  entries = ENTRIES,
  maxEntries = roomFor(type, entries),
): BpfMap {
  const map = BpfMap.create({ type, ...shape, maxEntries, name: "snapdump_test" }, { backend });
  const keys = new Uint8Array(entries * shape.keySize);
  const values = new Uint8Array(entries * shape.valueSize);
  for (let id = 0; id < entries; id++) {
    for (let j = 0; j < shape.keySize; j++) keys[id * shape.keySize + j] = keyByte(id, j);
    for (let j = 0; j < shape.valueSize; j++) values[id * shape.valueSize + j] = valueByte(id, j);
  }
  assert.equal(map.updateBatch(keys, values), entries);
  return map;
}

/** Collects a walk's entries in the order heard, failing at a wrong byte or a key heard twice. */
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
      if (this.ids.has(id)) assert.fail(`key ${id} handed to visit twice`);
      this.ids.add(id);
      this.order.push(id);
    }
  };
}

/** The map's ids in LOOKUP_BATCH order, from cursor position `start` (bucket or key). */
function batchOrder(map: BpfMap, start = 0): number[] {
  const seen = new Seen(map);
  const array = map.typeName === "array";
  map.forEachBatch(seen.batch, {
    chunk: 256,
    ...(start > 0 ? { range: { start, end: cursorSpace(map), array } } : {}),
  });
  return seen.order;
}

function ids(count: number, from = 0): number[] {
  return Array.from({ length: count }, (_, i) => from + i);
}

/** Fails unless the dump of a still map was verified and its verdict says so. */
function assertVerified(result: DumpResult, entries: number, what: string): void {
  const line = verdict(result);
  assert.equal(result.verified, true, `${what}: ${line}`);
  assert.equal(result.changed, false, what);
  assert.equal(result.problem, null, what);
  assert.equal(result.distinct, entries, what);
  assert.equal(result.entries, entries, what);
  assert.equal(result.duplicates, 0, what);
  assert.equal(result.expected, entries, what);
  assert.match(line, new RegExp(`^Verified: every key once, ${entries} distinct`), what);
}

/**
 * Fails unless `order` is `all` with the batch side's entries (`tail`, a suffix of `all`)
 * interleaved anywhere: this thread's entries (the snapshot's, then the gap's) and the batch
 * side's each come in LOOKUP_BATCH order, which is all the hybrid promises once a gap is read.
 */
function assertTwoOrderedSides(order: number[], all: number[], tail: number[], what: string) {
  const tailIds = new Set(tail);
  assert.deepEqual(
    order.filter((id) => !tailIds.has(id)),
    all.slice(0, all.length - tail.length),
    what,
  );
  assert.deepEqual(order.filter((id) => tailIds.has(id)), tail, what);
}

// --- 1. Every key once with its value, in LOOKUP_BATCH order ---------------------------------

for (const backend of ALL_BACKENDS) {
  for (const type of TYPES) {
    for (const base of SHAPES) {
      const shape = shapeFor(type, base);
      snapshotTest(
        `snapshot dump: snapshot and hybrid hand every key once with its value, in LOOKUP_BATCH order, ${shape.keySize}/${shape.valueSize} [${type}, ${backend}]`,
        async () => {
          using map = filled(type, backend, shape);
          const all = batchOrder(map);
          assert.equal(all.length, ENTRIES);
          assert.deepEqual(new Set(all), new Set(ids(ENTRIES)));
          for (const method of SNAPSHOT_METHODS) {
            const seen = new Seen(map);
            // One batch-side range: the batches of several ranges would interleave.
            const result = await dumpMap(map, { method, visit: seen.batch, ranges: 1 });
            assertVerified(result, ENTRIES, method);
            assert.equal(result.method, method);
            assert.equal(result.plan, null);
            assert.equal(seen.ids.size, ENTRIES, method);
            // The snapshot walks the buckets in LOOKUP_BATCH's order; the hybrid's batch side
            // begins where its snapshot stopped.
            assert.deepEqual(seen.order, all, `${method}: not in LOOKUP_BATCH order`);
            const walk = result.kernelWalk!;
            assert.ok(walk, method);
            assert.equal(walk.snapshotEntries + walk.batchEntries, ENTRIES, method);
            assert.equal(walk.gap, undefined, method);
            assert.ok(walk.longestCallMs >= 0, method);
            if (method === "snapshot") {
              assert.equal(walk.snapshot.stoppedBy, "end");
              assert.equal(walk.snapshotEntries, ENTRIES);
              assert.equal(walk.split, undefined);
            } else {
              const split = walk.split!;
              assert.equal(split.of, cursorSpace(map));
              assert.ok(split.at >= 1 && split.at <= split.of, `split at ${split.at}`);
              assert.equal(split.batchSideKept, split.at < split.of);
              if (split.batchSideKept) {
                assert.equal(walk.snapshot.stoppedBy, "sentinel");
                assert.equal(walk.snapshot.sentinelMet, true);
                assert.deepEqual(seen.order.slice(walk.snapshotEntries), batchOrder(map, split.at));
              }
            }
          }
        },
      );
    }
  }
}

// --- 2. The bound on kernel time ---------------------------------------------------------------

for (const type of TYPES) {
  for (const backend of ALL_BACKENDS) {
    snapshotTest(
      `snapshot dump: a snapshot bound to ${SMALL_BOUND} elements stops there and LOOKUP_BATCH reads the rest [${type}, ${backend}]`,
      async () => {
        using map = filled(type, backend, shapeFor(type, SHAPES[2]));
        using snapshot = MapSnapshot.open(map, { maxElemsPerCall: SMALL_BOUND });
        const all = batchOrder(map);
        const seen = new Seen(map);
        const result = await dumpMap(map, { method: "snapshot", snapshot, visit: seen.batch });
        assertVerified(result, ENTRIES, "bounded snapshot");
        assert.equal(seen.ids.size, ENTRIES);
        // Both parts in walk order: the snapshot's, then LOOKUP_BATCH from where it stopped.
        assert.deepEqual(seen.order, all);
        const walk = result.kernelWalk!;
        assert.equal(walk.snapshot.stoppedBy, "limit");
        assert.equal(walk.snapshot.complete, false);
        assert.equal(walk.snapshot.limit, SMALL_BOUND);
        assert.ok(walk.snapshot.copied <= SMALL_BOUND, `${walk.snapshot.copied} copied`);
        assert.ok(walk.snapshot.visited <= SMALL_BOUND + 1, `${walk.snapshot.visited} visited`);
        assert.ok(walk.batchEntries > 0);
        assert.ok(walk.snapshotEntries <= SMALL_BOUND);
        assert.equal(walk.snapshotEntries + walk.batchEntries, ENTRIES);
        assert.ok(walk.gap, "no gap");
        assert.deepEqual(walk.gap, [walk.snapshot.resumeCursor ?? 0, cursorSpace(map)]);
        // LOOKUP_BATCH's calls counted besides the snapshot's one run.
        assert.ok(walk.syscalls > walk.snapshot.syscalls);
        assert.equal(result.syscalls, walk.syscalls);
      },
    );
  }
}

for (const type of TYPES) {
  snapshotTest(
    `snapshot dump: a bounded hybrid split at 0.9 reads the gap from where the snapshot stopped to the split [${type}]`,
    async () => {
      using map = filled(type, "syscall", shapeFor(type, SHAPES[1]));
      using snapshot = MapSnapshot.open(map, { maxElemsPerCall: SMALL_BOUND });
      using pool = await ParallelPool.start(1);
      const all = batchOrder(map);
      const seen = new Seen(map);
      const result = await dumpMap(map, {
        method: "hybrid",
        snapshot,
        pool,
        ranges: 1,
        split: 0.9,
        visit: seen.batch,
      });
      assertVerified(result, ENTRIES, "bounded hybrid");
      assert.equal(seen.ids.size, ENTRIES);
      const walk = result.kernelWalk!;
      const split = walk.split!;
      assert.equal(split.of, cursorSpace(map));
      assert.equal(split.at, Math.round(0.9 * split.of));
      assert.equal(split.batchSideKept, true);
      assert.equal(walk.snapshot.stoppedBy, "limit");
      assert.equal(walk.snapshot.sentinelMet, false);
      assert.ok(walk.snapshot.copied <= SMALL_BOUND);
      assert.ok(walk.snapshotEntries <= SMALL_BOUND);
      assert.deepEqual(walk.gap, [walk.snapshot.resumeCursor ?? 0, split.at]);
      const tail = batchOrder(map, split.at);
      assert.ok(
        tail.length > 0 && tail.length < ENTRIES - SMALL_BOUND,
        `${tail.length} past the split`,
      );
      // The snapshot, the gap and the batch side together: each entry once.
      assert.equal(walk.snapshotEntries + walk.batchEntries, ENTRIES);
      assert.equal(walk.batchEntries, ENTRIES - walk.snapshotEntries);
      assert.deepEqual(
        seen.order.slice(0, walk.snapshotEntries),
        all.slice(0, walk.snapshotEntries),
      );
      assertTwoOrderedSides(seen.order, all, tail, "bounded hybrid");
    },
  );
}

snapshotTest(
  "snapshot dump: a tiny kernelTimeBudgetMs bounds the snapshot dumpMap opens",
  async () => {
    using map = filled("hash", "libbpf", SHAPES[0]);
    const budgetMs = 0.05;
    const bound = snapshotElementBound({ kernelTimeBudgetMs: budgetMs }, map.info.maxEntries);
    assert.ok(bound < ENTRIES / 2, `${bound} elements in ${budgetMs} ms`);
    for (const method of SNAPSHOT_METHODS) {
      const seen = new Seen(map);
      const result = await dumpMap(map, {
        method,
        kernelTimeBudgetMs: budgetMs,
        visit: seen.batch,
      });
      assertVerified(result, ENTRIES, method);
      assert.equal(seen.ids.size, ENTRIES);
      const walk = result.kernelWalk!;
      assert.equal(walk.snapshot.limit, bound, method);
      assert.ok(walk.snapshot.copied <= bound, `${method}: ${walk.snapshot.copied} copied`);
      assert.ok(walk.snapshot.visited <= bound + 1, method);
      assert.ok(walk.batchEntries > 0, method);
      if (method === "snapshot") assert.equal(walk.snapshot.stoppedBy, "limit");
    }
  },
);

snapshotTest(
  "snapshot dump: a visit that throws in the hybrid's gap rejects the dump, and nothing else",
  async () => {
    using map = filled("hash", "syscall", SHAPES[0]);
    using snapshot = MapSnapshot.open(map, { maxElemsPerCall: SMALL_BOUND });
    using pool = await ParallelPool.start(1);
    const dumps = [
      (visit: (batch: BatchView) => void) =>
        forEachBatchHybrid(map, visit, { snapshot, pool, split: 0.9 }),
      (visit: (batch: BatchView) => void) =>
        dumpMap(map, { method: "hybrid", snapshot, pool, split: 0.9, visit }),
    ];
    for (const dump of dumps) {
      let heard = 0;
      await assert.rejects(
        dump((batch) => {
          heard += batch.count;
          // The snapshot hands out at most SMALL_BOUND entries: this is the gap's first batch.
          if (heard > SMALL_BOUND) throw new Error("visit failed in the gap");
        }),
        /visit failed in the gap/,
      );
    }
    // The pool and the snapshot still dump the map whole.
    const seen = new Seen(map);
    const result = await dumpMap(map, {
      method: "hybrid",
      snapshot,
      pool,
      split: 0.9,
      visit: seen.batch,
    });
    assertVerified(result, ENTRIES, "after the failures");
    assert.equal(seen.ids.size, ENTRIES);
  },
);

// --- 3. The sentinel, written just before the snapshot starts -------------------------------

for (const type of ["hash", "lru_hash"] as const) {
  snapshotTest(
    `snapshot dump: hybrid whose sentinel is deleted before the snapshot walks the whole map and drops the batch side [${type}]`,
    async () => {
      using map = filled(type, "syscall", SHAPES[1], ENTRIES, 2 * ENTRIES);
      using snapshot = MapSnapshot.open(map);
      using pool = await ParallelPool.start(1);
      let sentinel: number | undefined;
      const seen = new Seen(map);
      const stats = await forEachBatchHybrid(map, seen.batch, {
        snapshot,
        pool,
        split: 0.5,
        onSentinel: (key) => {
          assert.ok(key !== null, "no sentinel: the batch side was empty");
          sentinel = idAt(key, 0, map.keySize);
          assert.deepEqual(key, keyOf(sentinel, map.keySize));
          assert.equal(map.delete(key), true);
        },
      });
      assert.ok(sentinel !== undefined, "onSentinel was not called");
      const after = ids(ENTRIES).filter((id) => id !== sentinel);
      assert.equal(stats.snapshot.stoppedBy, "end");
      assert.equal(stats.snapshot.complete, true);
      assert.equal(stats.snapshot.sentinelMet, false);
      assert.equal(stats.split?.batchSideKept, false);
      assert.equal(stats.batchEntries, 0);
      assert.equal(stats.snapshotEntries, ENTRIES - 1);
      assert.equal(stats.entries, ENTRIES - 1);
      // Exactly the keys the map holds after the delete, each once (Seen fails on a repeat).
      assert.deepEqual(new Set(seen.order), new Set(after));
      assert.equal(seen.order.length, ENTRIES - 1);
      assert.deepEqual(seen.order, batchOrder(map));
    },
  );

  snapshotTest(
    `snapshot dump: hybrid with keys inserted at the sentinel keeps it: the snapshot stops there [${type}]`,
    async () => {
      using map = filled(type, "libbpf", SHAPES[2], ENTRIES, 4 * ENTRIES);
      using snapshot = MapSnapshot.open(map);
      using pool = await ParallelPool.start(1);
      const inserted = ids(200, ENTRIES);
      let sentinel: number | undefined;
      const seen = new Seen(map);
      const stats = await forEachBatchHybrid(map, seen.batch, {
        snapshot,
        pool,
        split: 0.5,
        onSentinel: (key) => {
          assert.ok(key !== null);
          sentinel = idAt(key, 0, map.keySize);
          for (const id of inserted) {
            map.update(keyOf(id, map.keySize), valueOf(id, map.valueSize));
          }
        },
      });
      assert.ok(sentinel !== undefined);
      assert.equal(stats.snapshot.stoppedBy, "sentinel");
      assert.equal(stats.snapshot.sentinelMet, true);
      assert.equal(stats.split?.batchSideKept, true);
      assert.ok(stats.batchEntries > 0);
      // Every key present throughout came once (Seen fails on a repeat).
      for (let id = 0; id < ENTRIES; id++) assert.ok(seen.ids.has(id), `key ${id} missing`);
      // The keys inserted before the sentinel in walk order were there when the snapshot
      // ran: it heard them. Those after it, the batch side may or may not have read.
      const now = batchOrder(map);
      const at = now.indexOf(sentinel);
      const before = now.slice(0, at).filter((id) => id >= ENTRIES);
      assert.ok(before.length > 0, "no key landed before the sentinel: the case is not reached");
      for (const id of before) assert.ok(seen.ids.has(id), `inserted key ${id} missed`);
      assert.deepEqual(seen.order.slice(0, stats.snapshotEntries), now.slice(0, at));
      assert.equal(seen.order[stats.snapshotEntries], sentinel);
      assert.equal(seen.order.length, stats.entries);
    },
  );
}

snapshotTest(
  "snapshot dump: hybrid whose batch side is empty hears a null sentinel and snapshots the whole map",
  async () => {
    using map = filled("hash", "syscall", SHAPES[0], 600, 1024);
    // Empty the buckets past the split: nothing there for the batch side to return.
    const high = batchOrder(map, 900);
    assert.ok(high.length > 0);
    for (const id of high) assert.equal(map.delete(keyOf(id, map.keySize)), true);
    using snapshot = MapSnapshot.open(map);
    using pool = await ParallelPool.start(1);
    const heard: (Uint8Array | null)[] = [];
    const seen = new Seen(map);
    const stats = await forEachBatchHybrid(map, seen.batch, {
      snapshot,
      pool,
      split: 0.9,
      onSentinel: (key) => heard.push(key),
    });
    assert.deepEqual(heard, [null]);
    assert.equal(stats.snapshot.stoppedBy, "end");
    assert.equal(stats.snapshot.sentinelMet, undefined);
    assert.equal(stats.batchEntries, 0);
    assert.equal(stats.split?.at, Math.round(0.9 * 1024));
    assert.deepEqual(seen.order, batchOrder(map));
    assert.equal(seen.ids.size, 600 - high.length);
  },
);

// --- 4. Per-CPU maps ------------------------------------------------------------------------------

for (const type of ["percpu_hash", "lru_percpu_hash", "percpu_array"] as const) {
  bpfTest(`snapshot dump: snapshot and hybrid refuse a ${type} map, naming why`, async () => {
    using map = BpfMap.create({ type, keySize: 4, valueSize: 8, maxEntries: 64 });
    map.update(u32Bytes(1), new Uint8Array(map.valueBytes).fill(7));
    for (const method of SNAPSHOT_METHODS) {
      await assert.rejects(
        dumpMap(map, { method }),
        (e: unknown) => {
          assert.ok(e instanceof BpfArgumentError, `${method}: ${e}`);
          assert.match(e.message, /running CPU's value/, method);
          assert.ok(!e.message.includes("\n"), e.message);
          return true;
        },
      );
    }
  });
}

snapshotTest(
  "snapshot dump: auto on a percpu_hash map picks a batch method and says why not the snapshot",
  async () => {
    using map = BpfMap.create({ type: "percpu_hash", keySize: 4, valueSize: 8, maxEntries: 4096 });
    for (let key = 0; key < 1000; key++) {
      map.update(u32Bytes(key), new Uint8Array(map.valueBytes).fill(key & 0xff));
    }
    const heard = new Set<number>();
    const result = await dumpMap(map, {
      method: "auto",
      visit: (batch) => {
        for (let i = 0; i < batch.count; i++) heard.add(u32At(batch.keys, i));
      },
    });
    const plan = result.plan!;
    assert.ok(plan, "no plan");
    assert.ok(["batch", "parallel"].includes(plan.method), plan.method);
    assert.equal(result.method, plan.method);
    assert.match(plan.reason, /no snapshot: .*CPU's value/);
    assert.equal(plan.estimatesMs.snapshot, undefined);
    assert.equal(plan.estimatesMs.hybrid, undefined);
    assert.equal(result.kernelWalk, null);
    assertVerified(result, 1000, "auto");
    assert.equal(heard.size, 1000);
  },
);

// --- 5. auto and the cost model ------------------------------------------------------------------

snapshotTest(
  "snapshot dump: auto on a 5000-entry hash map names its method and reason, and is verified",
  async () => {
    using map = filled("hash", "syscall", SHAPES[0]);
    const seen = new Seen(map);
    const result = await dumpMap(map, { method: "auto", visit: seen.batch });
    const plan = result.plan!;
    assert.ok(plan, "no plan");
    assert.ok(["normal", "batch", "parallel", "snapshot", "hybrid"].includes(plan.method));
    assert.equal(result.method, plan.method);
    assert.match(
      plan.reason,
      new RegExp(`^5,000 entries in 8,192 buckets, \\d+ CPUs?: ${plan.method} estimated`),
    );
    assert.ok(plan.estimatesMs[plan.method]! > 0);
    assert.equal(plan.split === undefined, plan.method !== "hybrid");
    assertVerified(result, ENTRIES, "auto");
    assert.equal(seen.ids.size, ENTRIES);
  },
);

const MILLION: MapShape = {
  type: MapType.hash,
  entries: 1_000_000,
  buckets: 1 << 20,
  entryBytes: 8,
};
const MILLION_BOUND = snapshotElementBound({}, 1_000_000);

Deno.test("snapshot dump plan: a 1M-entry hash map on 2 CPUs with the snapshot splits a hybrid", () => {
  const plan = choosePlan(MILLION, {
    cpus: 2,
    snapshotUnavailable: null,
    snapshotBound: MILLION_BOUND,
  });
  assert.equal(plan.method, "hybrid", plan.reason);
  assert.ok(plan.split! > 0 && plan.split! < 1, `split ${plan.split}`);
  assert.match(plan.reason, /^1,000,000 entries in 1,048,576 buckets, 2 CPUs: hybrid estimated/);
  // Every method was estimated, and the one chosen is clearly the fastest.
  const estimates = plan.estimatesMs;
  for (const method of ["batch", "parallel", "snapshot", "hybrid"] as const) {
    assert.ok(estimates[method]! > 0, method);
  }
  const steady = Math.min(estimates.batch!, estimates.parallel!);
  assert.ok(estimates.hybrid! * RCU_WALK_MARGIN <= steady);
  // The split is the model's balance point for one Worker.
  assert.equal(plan.split, hybridSplit(MILLION, 1, MILLION_BOUND));
});

Deno.test("snapshot dump plan: steady keeps to the methods that promise stable keys once", () => {
  const plan = choosePlan(MILLION, {
    cpus: 2,
    snapshotUnavailable: null,
    snapshotBound: MILLION_BOUND,
    steady: true,
  });
  assert.ok(plan.method === "batch" || plan.method === "parallel", plan.reason);
  assert.equal(plan.estimatesMs.hybrid, undefined);
  assert.equal(plan.estimatesMs.snapshot, undefined);
  assert.match(plan.reason, /steady methods only/);
});

Deno.test("snapshot dump plan: without the snapshot, never snapshot nor hybrid, and the reason says why", () => {
  for (const cpus of [1, 2, 8]) {
    for (const entries of [100, 1_000_000, 50_000_000]) {
      const plan = choosePlan({ ...MILLION, entries }, {
        cpus,
        snapshotUnavailable: "build/snapshot.bpf.o is missing (make build makes it)",
        snapshotBound: MILLION_BOUND,
      });
      assert.ok(!["snapshot", "hybrid"].includes(plan.method), plan.reason);
      assert.match(
        plan.reason,
        /; no snapshot: build\/snapshot\.bpf\.o is missing \(make build makes it\)$/,
      );
      assert.equal(plan.estimatesMs.snapshot, undefined);
      assert.equal(plan.estimatesMs.hybrid, undefined);
      assert.equal(plan.split, undefined);
    }
  }
  // A per-CPU type: no snapshot whatever the abilities say.
  const perCpu = choosePlan({ ...MILLION, type: MapType.percpu_hash }, {
    cpus: 2,
    snapshotUnavailable: null,
    snapshotBound: MILLION_BOUND,
  });
  assert.ok(!["snapshot", "hybrid"].includes(perCpu.method));
  assert.match(
    perCpu.reason,
    /no snapshot: the snapshot sees only one CPU's values of a per-CPU map/,
  );
});

Deno.test("snapshot dump plan: on 1 CPU, never parallel nor hybrid", () => {
  for (const entries of [100, 1_000_000, 50_000_000]) {
    for (const snapshotUnavailable of [null, "no CAP_BPF"]) {
      const plan = choosePlan({ ...MILLION, entries }, {
        cpus: 1,
        snapshotUnavailable,
        snapshotBound: MILLION_BOUND,
      });
      assert.ok(!["parallel", "hybrid"].includes(plan.method), plan.reason);
      assert.equal(plan.estimatesMs.parallel, undefined);
      assert.equal(plan.estimatesMs.hybrid, undefined);
      assert.match(plan.reason, /, 1 CPU: /);
    }
  }
});

Deno.test("snapshot dump plan: the same entries in more buckets cost more, for every method", () => {
  const abilities = { cpus: 2, snapshotUnavailable: null, snapshotBound: MILLION_BOUND };
  const entries = 100_000;
  // Dense, then sparse: entries at 1% of the buckets and fewer.
  const plans = [1 << 17, 1 << 23, 1 << 25].map((buckets) =>
    choosePlan({ ...MILLION, entries, buckets }, abilities)
  );
  assert.match(plans[1].reason, /^100,000 entries in 8,388,608 buckets/);
  for (const method of ["batch", "parallel", "snapshot", "hybrid"] as const) {
    const [dense, sparse, sparser] = plans.map((plan) => plan.estimatesMs[method]!);
    assert.ok(dense < sparse && sparse < sparser, `${method}: ${dense}, ${sparse}, ${sparser}`);
  }
});

Deno.test("snapshot dump plan: a type without LOOKUP_BATCH is read one entry at a time", () => {
  const plan = choosePlan({ type: 11, entries: 10_000, buckets: 0, entryBytes: 12 }, {
    cpus: 2,
    snapshotUnavailable: null,
    snapshotBound: MILLION_BOUND,
  });
  assert.equal(plan.method, "normal");
  assert.match(plan.reason, /no LOOKUP_BATCH/);
  assert.deepEqual(Object.keys(plan.estimatesMs), ["normal"]);
});

Deno.test("snapshot dump plan: hybridSplit balances the two sides, past the snapshot's bound if it must", () => {
  let previous = 0;
  for (const bound of [1, 1000, 100_000, 400_000, 1_000_000, MILLION_BOUND]) {
    const split = hybridSplit(MILLION, 1, bound);
    assert.ok(split > 0 && split < 1, `bound ${bound}: split ${split}`);
    // Balanced: this thread (snapshot up to its bound, LOOKUP_BATCH after) ends with the Workers.
    const sides = hybridSides(MILLION, 1, bound, split);
    assert.ok(
      Math.abs(sides.thisThread - sides.workers) < 1e-6 * sides.workers,
      `bound ${bound}: ${sides.thisThread} vs ${sides.workers}`,
    );
    // A larger bound makes this thread faster: its share never shrinks.
    assert.ok(split >= previous, `bound ${bound}: split ${split} < ${previous}`);
    previous = split;
  }
  // A bound the first part fits in: the split lies within it.
  const free = hybridSplit(MILLION, 1, MILLION_BOUND);
  assert.ok(free * MILLION.entries <= MILLION_BOUND);
  // A small bound: the split lies past it (this thread reads the rest of its part in batches).
  assert.ok(hybridSplit(MILLION, 1, 1000) * MILLION.entries > 1000);
  // More Workers take a larger share.
  assert.ok(hybridSplit(MILLION, 3, MILLION_BOUND) < free);
});

// --- 6. A map written while it is dumped ---------------------------------------------------------

/** Stable keys are numbers `0 .. STABLE - 1`; the writers' transient keys come after. */
const STABLE = 20_000;
const TRANSIENT = { first: STABLE, count: 8000 };

function stableValue(key: number): Uint8Array {
  const value = new Uint8Array(8);
  new DataView(value.buffer).setUint32(0, key ^ 0x5a5a5a5a, true);
  return value;
}

function liveMap(backend: BackendName): BpfMap {
  const map = BpfMap.create(
    { type: "hash", keySize: 4, valueSize: 8, maxEntries: 65_536, name: "snapdump_live" },
    { backend },
  );
  const keys = new Uint8Array(STABLE * 4);
  const values = new Uint8Array(STABLE * 8);
  for (let key = 0; key < STABLE; key++) {
    keys.set(u32Bytes(key), key * 4);
    values.set(stableValue(key), key * 8);
  }
  assert.equal(map.updateBatch(keys, values), STABLE);
  return map;
}

/** What the live dumps saw, over all of them. */
interface LiveTally {
  dumps: number;
  changed: number;
  stableMissed: number;
}

/**
 * One dump of a written map: no key twice to `visit`, only keys that were ever written,
 * stable keys with their values, and a verdict that claims no more than what held.
 */
async function liveDump(
  map: BpfMap,
  method: DumpMethod,
  options: { snapshot?: MapSnapshot; pool?: ParallelPool; counter: MapCounter },
  tally: LiveTally,
): Promise<void> {
  const heard = new Set<number>();
  let stableHeard = 0;
  const result = await dumpMap(map, {
    method,
    ...options,
    visit: (batch) => {
      for (let i = 0; i < batch.count; i++) {
        const key = u32At(batch.keys, i);
        if (heard.has(key)) assert.fail(`${method}: key ${key} handed to visit twice`);
        heard.add(key);
        const value = batch.values.subarray(i * 8, (i + 1) * 8);
        if (key < STABLE) {
          stableHeard++;
          assert.deepEqual(value, stableValue(key), `${method}: stable key ${key}'s value`);
        } else {
          assert.ok(
            key >= TRANSIENT.first && key < TRANSIENT.first + TRANSIENT.count,
            `${method}: key ${key} was never written`,
          );
        }
      }
    },
  });
  const what = `${method}: ${verdict(result)}`;
  tally.dumps++;
  tally.stableMissed += STABLE - stableHeard;
  assert.equal(result.method, method);
  assert.equal(result.distinct, heard.size, what);
  assert.equal(result.entries - result.duplicates, result.distinct, what);
  // The kernel's walk under RCU promises no stable key once under writes, and says so.
  assert.equal(result.stableOnce, false, what);
  assert.ok(result.seconds < 10, `${what}: ${result.seconds} s`);
  const countMoved = result.countBefore !== null && result.expected !== null &&
    result.countBefore !== result.expected;
  if (countMoved) assert.equal(result.changed, true, what);
  if (result.changed) {
    tally.changed++;
    assert.equal(result.verified, false, what);
    assert.match(
      verdict(result),
      new RegExp(`^Map written during the dump \\(${countOf("\\d+ -> \\d+")}\\): each key once`),
    );
    assert.match(
      verdict(result),
      new RegExp(`${method} does not promise keys present throughout once`),
      what,
    );
  }
  // A stable key missed: the dump must not pass for whole.
  if (stableHeard < STABLE) {
    assert.equal(result.verified, false, what);
    assert.doesNotMatch(verdict(result), /^Verified/, what);
  }
  if (result.verified) {
    assert.equal(stableHeard, STABLE, what);
    assert.equal(heard.size, result.expected, what);
  }
}

for (const backend of ALL_BACKENDS) {
  snapshotTest(
    `snapshot dump: a map written by the kernel churn writer: no key twice, the dump ends, the verdict is honest [${backend}]`,
    async () => {
      using map = liveMap(backend);
      // The count checks the kernel's walk: never a bpf_for_each_map_elem or LOOKUP_BATCH pass.
      using counter = MapCounter.open(map, { method: "hybrid" });
      using pool = await ParallelPool.start(1);
      using snapshot = MapSnapshot.open(map);
      using bounded = MapSnapshot.open(map, { maxElemsPerCall: 5000 });
      const tally: LiveTally = { dumps: 0, changed: 0, stableMissed: 0 };
      const churner = await startKernelChurn(map, { ...TRANSIENT, rate: "max" });
      let stopped = false;
      try {
        for (let round = 0; round < 4; round++) {
          await liveDump(map, "snapshot", { snapshot, counter }, tally);
          await liveDump(map, "hybrid", { snapshot, pool, counter }, tally);
          // Bounded: LOOKUP_BATCH reads the rest while the writer goes on.
          await liveDump(map, "snapshot", { snapshot: bounded, counter }, tally);
          await liveDump(map, "hybrid", { snapshot: bounded, pool, counter }, tally);
        }
        const done = await churner.stop();
        stopped = true;
        assert.ok(done.operations > 0, "the writer did nothing");
        assert.equal(done.failed, 0);
      } finally {
        if (!stopped) await churner.stop().catch(() => {});
      }
      assert.ok(tally.changed > 0, `no dump saw the map change: ${JSON.stringify(tally)}`);
      // The map is still again: a dump of it is verified.
      const still = await dumpMap(map, { method: "hybrid", snapshot, pool, counter });
      assert.equal(still.verified, true, verdict(still));
    },
  );
}

snapshotTest(
  "snapshot dump: a map written by the user churn writer: no key twice, the dump ends, the verdict is honest",
  async () => {
    using map = liveMap("syscall");
    using counter = MapCounter.open(map, { method: "hybrid" });
    using pool = await ParallelPool.start(1);
    using snapshot = MapSnapshot.open(map);
    const tally: LiveTally = { dumps: 0, changed: 0, stableMissed: 0 };
    const churner = await startUserChurn(map, { ...TRANSIENT, rate: "max" });
    let stopped = false;
    try {
      for (let round = 0; round < 4; round++) {
        await liveDump(map, "hybrid", { snapshot, pool, counter }, tally);
        await liveDump(map, "snapshot", { snapshot, counter }, tally);
      }
      const done = await churner.stop();
      stopped = true;
      assert.ok(done.operations > 0, "the writer did nothing");
    } finally {
      if (!stopped) await churner.stop().catch(() => {});
    }
    assert.ok(tally.changed > 0, `no dump saw the map change: ${JSON.stringify(tally)}`);
  },
);

// --- 7. GC -------------------------------------------------------------------------------------

const GC_ROUNDS = 36;

snapshotGcTest(
  "snapshot dump gc: snapshots opened, dumped through and closed with forced GCs; every dump verified",
  async (gc) => {
    const maps = [
      filled("hash", "syscall", SHAPES[0], 2000),
      filled("lru_hash", "libbpf", SHAPES[2], 2000),
      filled("array", "syscall", { keySize: 4, valueSize: 32 }, 2000),
    ];
    const counters = maps.map((map) => MapCounter.open(map, { method: "hybrid" }));
    const pool = await ParallelPool.start(1);
    const late: MapSnapshot[] = [];
    try {
      for (let round = 0; round < GC_ROUNDS; round++) {
        const map = maps[round % maps.length];
        const counter = counters[round % maps.length];
        // Every fourth snapshot bounded: LOOKUP_BATCH reads a gap after it.
        const snapshot = MapSnapshot.open(map, round % 4 === 3 ? { maxElemsPerCall: 700 } : {});
        gc({ type: round % 6 === 0 ? "major" : "minor" });
        let kept: Uint8Array | undefined;
        let copy: Uint8Array | undefined;
        for (const method of ["hybrid", "snapshot", "hybrid"] as const) {
          const seen = new Seen(map);
          const result = await dumpMap(map, {
            method,
            snapshot,
            pool,
            counter,
            ranges: 1,
            split: 0.3 + 0.05 * (round % 10),
            visit: (batch) => {
              seen.batch(batch);
              // The last batch handed out, kept past the snapshot's close.
              kept = batch.keys;
              copy = batch.keys.slice();
              // Garbage between batches, and a collection inside the dump now and then.
              const junk = Array.from({ length: 32 }, (_, j) => new Uint8Array(8 + j));
              if (junk.length && round % 2 === 0) gc({ type: "minor" });
            },
          });
          assertVerified(result, 2000, `round ${round}, ${method}`);
          assert.equal(seen.ids.size, 2000);
          gc({ type: "minor" });
        }
        // A dump that opens and closes its own snapshot.
        const own = await dumpMap(map, { method: "hybrid", pool, counter, ranges: 1 });
        assertVerified(own, 2000, `round ${round}, own snapshot`);
        if (round % 3 === 0) {
          snapshot.close();
          gc({ type: round % 6 === 0 ? "major" : "minor" });
          // What was handed out is a copy: readable, unchanged, after the output is unmapped.
          assert.deepEqual(kept, copy);
          // And a closed snapshot is refused rather than read.
          await assert.rejects(
            dumpMap(map, { method: "snapshot", snapshot, counter }),
            /is closed/,
          );
        } else {
          late.push(snapshot);
        }
      }
      gc();
    } finally {
      for (const snapshot of late) snapshot.close();
      pool.close();
      for (const counter of counters) counter.close();
      for (const map of maps) map.close();
    }
    gc();
  },
);
