/**
 * The parallel batch dump (`forEachBatchParallel`) against the real kernel: on every map
 * type that supports LOOKUP_BATCH and both backends, over many range counts, chunk sizes
 * and key layouts, every key comes back exactly once with its value (every CPU's slot), and
 * the statistics count what was delivered. Also its argument checks, an empty map, and
 * `dumpMap` with method `parallel`.
 *
 * Where a range ends is the hard part, and these cases are built to catch the two naive
 * ways of ending a hash map's range. A hash range `[start, end)` is a range of buckets; one
 * LOOKUP_BATCH copies whole buckets until the chunk is full and answers `out_batch` = the
 * first bucket it did not copy, having skipped every empty bucket on the way. So:
 *
 * - "Keep everything up to `out_batch`" keeps entries of buckets `>= end` that the next
 *   range also reads: duplicates. With chunk 4096 on the sparse maps (300 keys in 65,536
 *   buckets) the first call of every range but the last reads on to the end of the map, so
 *   every range count duplicates almost every key; chunk 7 duplicates at most boundaries.
 * - "Shrink the chunk until `out_batch <= end`" cannot succeed when the buckets between a
 *   range's last entries and `end` are empty: after copying bucket `b < end` the kernel skips
 *   the empty buckets and reports the next non-empty one, past `end`, whatever the chunk;
 *   shrinking below that bucket's size only yields ENOSPC with nothing copied, and bucket
 *   `b`'s entries are lost. The sparse maps put empty buckets before nearly every boundary
 *   (at 64 ranges, 1,024 buckets per range hold about 4.7 keys), so every sparse case of
 *   every chunk size would lose keys. Dropping the crossing call altogether loses them too.
 *
 * The "few keys" maps (5 keys in 65,536 buckets) leave most of 16, 31 or 64 ranges with no
 * entry at all: a range then learns where to stop from a first batch that starts several
 * ranges later, or from a range that returns nothing. The dense maps (every bucket busy)
 * end ranges in mid-chunk at chunk 7, and at chunk 1 make ENOSPC grow the chunk inside
 * ranges. Arrays cut by key instead: their batches are checked to stay inside their range.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type BackendName,
  type BatchView,
  BpfArgumentError,
  BpfMap,
  cursorSpace,
  dumpMap,
  forEachBatchParallel,
  kernelEntryCount,
  type MapTypeName,
  ParallelPool,
  type WalkStats,
} from "../mod.ts";
import { ALL_BACKENDS, bpfTest, eachTypeAndBackend, HASH_TYPES, MAP_TYPES } from "./_helpers.ts";

const RANGE_COUNTS = [2, 3, 4, 5, 7, 8, 16, 31, 64];
/** One entry per call (ENOSPC grows it at multi-entry buckets), odd, and the default. */
const CHUNKS = [1, 7, 4096];
/** Per-CPU slots of 12-byte values lie 16 bytes apart: a slot read at the wrong stride shows. */
const VALUE_SIZE = 12;
/** Workers of the pool every test shares out its ranges to. */
const POOL_SIZE = 2;

/** How a map is filled. */
interface Layout {
  name: string;
  /** `max_entries` of the hash maps (see `arraySize`). */
  maxEntries: number;
  /** Keys written: random ones, or every key (LRU maps: half, so nothing is evicted). */
  keys(type: MapTypeName): number[];
}

/** A small, seeded generator (mulberry32): the same keys every run. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** `count` distinct keys below `limit`. */
function randomKeys(count: number, limit: number, seed: number): number[] {
  const next = random(seed);
  const keys = new Set<number>();
  while (keys.size < count) keys.add(limit >= 2 ** 32 ? next() : next() % limit);
  return [...keys];
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

const LAYOUTS: readonly Layout[] = [
  {
    name: "sparse",
    maxEntries: 65_536,
    keys: (type) => type.endsWith("array") ? randomKeys(300, 4096, 1) : randomKeys(300, 2 ** 32, 1),
  },
  {
    name: "few keys",
    maxEntries: 65_536,
    keys: (type) => type.endsWith("array") ? randomKeys(5, 4096, 2) : randomKeys(5, 2 ** 32, 2),
  },
  {
    name: "dense",
    maxEntries: 4096,
    keys: (type) => type.startsWith("lru") ? randomKeys(2048, 2 ** 32, 3) : range(4096),
  },
];

/**
 * `max_entries` of a layout's map: arrays hold at most 4,096 keys, since every key of an
 * array is read (65,536 at chunk 1 would be slow), and a cursor that is a key has no empty
 * stretches for a larger array to add.
 */
function arraySize(layout: Layout, type: MapTypeName): number {
  return type.endsWith("array") ? Math.min(layout.maxEntries, 4096) : layout.maxEntries;
}

/** Word `word` of `key`'s value on `cpu`: never 0, so an unwritten array slot stands out. */
function slotWord(key: number, cpu: number, word: number): number {
  let h = Math.imul(
    key ^ Math.imul(cpu + 1, 0x9e3779b9) ^ Math.imul(word + 1, 0x85ebca6b),
    0xc2b2ae35,
  );
  h ^= h >>> 16;
  return (h | 1) >>> 0;
}

/** Writes `keys` in one UPDATE_BATCH call, each with every CPU's slot set. */
function fill(map: BpfMap, keys: number[]): void {
  const packedKeys = new Uint8Array(keys.length * 4);
  const values = new Uint8Array(keys.length * map.valueBytes);
  const keyView = new DataView(packedKeys.buffer);
  const valueView = new DataView(values.buffer);
  keys.forEach((key, i) => {
    keyView.setUint32(i * 4, key, true);
    for (let cpu = 0; cpu < map.cpus; cpu++) {
      for (let word = 0; word < map.valueSize / 4; word++) {
        valueView.setUint32(
          i * map.valueBytes + cpu * map.valueStride + word * 4,
          slotWord(key, cpu, word),
          true,
        );
      }
    }
  });
  assert.equal(map.updateBatch(packedKeys, values), keys.length);
}

/** What one parallel dump saw, checked batch by batch. */
class Seen {
  readonly keys = new Set<number>();
  batches = 0;
  readonly #map: BpfMap;
  /** Written keys; for arrays, every other key below `maxEntries` must read as zeros. */
  readonly #written: Set<number>;
  readonly #ranges: number;
  readonly #space: number;
  readonly #array: boolean;

  constructor(map: BpfMap, written: Set<number>, ranges: number) {
    this.#map = map;
    this.#written = written;
    this.#ranges = ranges;
    this.#space = cursorSpace(map);
    this.#array = map.typeName.endsWith("array");
  }

  batch = (batch: BatchView, rangeIndex: number): void => {
    const { keySize, valueBytes, valueStride, cpus, valueSize } = this.#map;
    assert.ok(batch.count > 0, "a batch of no entries was handed out");
    assert.ok(Number.isInteger(rangeIndex) && rangeIndex >= 0 && rangeIndex < this.#ranges);
    assert.equal(batch.keys.byteLength, batch.count * keySize);
    assert.equal(batch.values.byteLength, batch.count * valueBytes);
    this.batches++;
    const keyView = new DataView(batch.keys.buffer, batch.keys.byteOffset, batch.keys.byteLength);
    const valueView = new DataView(
      batch.values.buffer,
      batch.values.byteOffset,
      batch.values.byteLength,
    );
    // An array's range `[start, end)` is a range of keys: no batch may step out of it.
    const start = Math.floor((this.#space * rangeIndex) / this.#ranges);
    const end = Math.floor((this.#space * (rangeIndex + 1)) / this.#ranges);
    for (let i = 0; i < batch.count; i++) {
      const key = keyView.getUint32(i * keySize, true);
      if (this.keys.has(key)) assert.fail(`key ${key} seen twice (range ${rangeIndex})`);
      this.keys.add(key);
      const written = this.#written.has(key);
      if (this.#array) {
        if (key < start || key >= end) {
          assert.fail(`key ${key} delivered by range ${rangeIndex}, [${start}, ${end})`);
        }
      } else if (!written) {
        assert.fail(`key ${key} was never written`);
      }
      for (let cpu = 0; cpu < cpus; cpu++) {
        for (let word = 0; word < valueSize / 4; word++) {
          const got = valueView.getUint32(i * valueBytes + cpu * valueStride + word * 4, true);
          const want = written ? slotWord(key, cpu, word) : 0;
          if (got !== want) {
            assert.fail(`key ${key}, CPU ${cpu}, word ${word}: ${got}, expected ${want}`);
          }
        }
      }
    }
  };

  /** Checks the whole dump: every expected key once, and the statistics. */
  check(stats: WalkStats, expected: number, chunk: number): void {
    assert.equal(this.keys.size, expected);
    assert.equal(stats.entries, expected);
    assert.equal(stats.batches, this.batches);
    assert.equal(stats.chunk, chunk);
    // Every range makes at least one call; each batch is one call.
    assert.ok(stats.syscalls >= Math.max(this.#ranges, this.batches), JSON.stringify(stats));
  }
}

function create(type: MapTypeName, backend: BackendName, maxEntries: number): BpfMap {
  return BpfMap.create({ type, keySize: 4, valueSize: VALUE_SIZE, maxEntries }, { backend });
}

/** A map of each layout, filled (each closed when the next is made, and after the last). */
function* filledMaps(
  type: MapTypeName,
  backend: BackendName,
): Generator<{ layout: Layout; map: BpfMap; keys: number[] }> {
  for (const layout of LAYOUTS) {
    using map = create(type, backend, arraySize(layout, type));
    const keys = layout.keys(type);
    fill(map, keys);
    yield { layout, map, keys };
  }
}

eachTypeAndBackend(
  MAP_TYPES,
  "parallel dump: every key once with its values, any ranges and chunk",
  async (type, backend) => {
    using pool = await ParallelPool.start(POOL_SIZE);
    for (const { layout, map, keys } of filledMaps(type, backend)) {
      const written = new Set(keys);
      const expected = type.endsWith("array") ? map.info.maxEntries : keys.length;
      const count = kernelEntryCount(map);
      if (count !== undefined) assert.equal(count, expected, `${layout.name}: the fill`);
      for (const ranges of RANGE_COUNTS) {
        for (const chunk of CHUNKS) {
          const what = `${layout.name}, ${ranges} ranges, chunk ${chunk}`;
          const seen = new Seen(map, written, ranges);
          try {
            const stats = await forEachBatchParallel(map, seen.batch, { ranges, chunk, pool });
            seen.check(stats, expected, chunk);
          } catch (e) {
            throw new Error(`${what}: ${(e as Error).message}`, { cause: e });
          }
        }
      }
    }
  },
);

/** The keys of `map` in the order one walk hands them over, and the batches' range indexes. */
function keyOrder(map: BpfMap): number[] {
  const keys: number[] = [];
  map.forEachBatch((batch) => {
    for (let i = 0; i < batch.count; i++) {
      keys.push(new DataView(batch.keys.buffer, batch.keys.byteOffset).getUint32(i * 4, true));
    }
  });
  return keys;
}

eachTypeAndBackend(
  MAP_TYPES,
  "parallel dump in order: one walk's order, whatever the ranges (empty ones too)",
  async (type, backend) => {
    using pool = await ParallelPool.start(POOL_SIZE);
    for (const { layout, map } of filledMaps(type, backend)) {
      const want = keyOrder(map);
      // 64 ranges of the "few keys" maps are nearly all empty: a range waits for the next
      // one with a key, which must be let start however far ahead it lies.
      for (const ranges of [undefined, 2, 7, 64]) {
        for (const chunk of [1, 4096]) {
          const what = `${layout.name}, ${ranges ?? "default"} ranges, chunk ${chunk}`;
          const got: number[] = [];
          let lastRange = 0;
          const stats = await forEachBatchParallel(map, (batch, index) => {
            assert.ok(index >= lastRange, `${what}: range ${index} after range ${lastRange}`);
            lastRange = index;
            for (let i = 0; i < batch.count; i++) {
              got.push(
                new DataView(batch.keys.buffer, batch.keys.byteOffset).getUint32(i * 4, true),
              );
            }
          }, { ranges, chunk, pool, inOrder: true });
          assert.deepEqual(got, want, what);
          assert.equal(stats.entries, want.length, what);
        }
      }
    }
  },
);

bpfTest("parallel dump in order holds back at most a few ranges", async () => {
  // 64 ranges of 1,024 keys over 2 workers: a range starts only while fewer than 3 before
  // it are incomplete, so what waits is at most 3 ranges' entries.
  using pool = await ParallelPool.start(POOL_SIZE);
  using map = create("hash", "syscall", 65_536);
  fill(map, range(65_536));
  const perRange = 65_536 / 64;
  const stats = await forEachBatchParallel(map, () => {}, {
    ranges: 64,
    chunk: 64,
    pool,
    inOrder: true,
  });
  assert.equal(stats.entries, 65_536);
  assert.ok(stats.maxHeld !== undefined && stats.maxHeld > 0, JSON.stringify(stats));
  // Buckets hold about one key each: allow a range a little over its share.
  assert.ok(stats.maxHeld <= (POOL_SIZE + 1) * perRange * 1.5, JSON.stringify(stats));
  const unordered = await forEachBatchParallel(map, () => {}, { ranges: 64, chunk: 64, pool });
  assert.equal(unordered.maxHeld, undefined);
});

eachTypeAndBackend(HASH_TYPES, "parallel dump of an empty map", async (type, backend) => {
  using pool = await ParallelPool.start(POOL_SIZE);
  using map = create(type, backend, 1024);
  for (const ranges of [1, 2, 5, 64]) {
    for (const chunk of [1, 4096]) {
      const stats = await forEachBatchParallel(map, () => assert.fail("a batch"), {
        ranges,
        chunk,
        pool,
      });
      assert.deepEqual(stats, {
        entries: 0,
        syscalls: ranges,
        batches: 0,
        chunk,
        repeatsDropped: 0,
      });
    }
  }
});

for (const backend of ALL_BACKENDS) {
  bpfTest(
    `parallel dump refuses more ranges than cursor positions [array, ${backend}]`,
    async () => {
      using map = create("array", backend, 4);
      fill(map, range(4));
      const error = await forEachBatchParallel(map, () => {}, { ranges: 5 }).then(
        () => assert.fail("5 ranges over 4 keys were accepted"),
        (e) => e,
      );
      assert.ok(error instanceof BpfArgumentError, String(error));
      assert.equal(
        error.message,
        `5 ranges for ${map.subject}: it has only 4 keys to split`,
      );
      // Exactly as many ranges as keys: one key each.
      using pool = await ParallelPool.start(POOL_SIZE);
      for (const chunk of [1, 4096]) {
        const seen = new Seen(map, new Set(range(4)), 4);
        const stats = await forEachBatchParallel(map, seen.batch, { ranges: 4, chunk, pool });
        seen.check(stats, 4, chunk);
        assert.equal(stats.batches, 4);
      }
    },
  );

  bpfTest(`parallel dump refuses more ranges than buckets [hash, ${backend}]`, async () => {
    using map = create("hash", backend, 3);
    assert.equal(cursorSpace(map), 4);
    await assert.rejects(
      forEachBatchParallel(map, () => {}, { ranges: 5 }),
      (e: unknown) =>
        e instanceof BpfArgumentError &&
        e.message === `5 ranges for ${map.subject}: it has only 4 buckets to split`,
    );
  });

  bpfTest(`parallel dump refuses bad ranges and chunks [hash, ${backend}]`, async () => {
    using map = create("hash", backend, 64);
    for (const ranges of [0, -1, 1.5, NaN]) {
      await assert.rejects(
        forEachBatchParallel(map, () => {}, { ranges }),
        (e: unknown) =>
          e instanceof BpfArgumentError &&
          e.message === `Invalid ranges "${ranges}": expected a whole number of at least 1`,
        `ranges ${ranges}`,
      );
    }
    for (const chunk of [0, 2.5]) {
      await assert.rejects(
        forEachBatchParallel(map, () => {}, { ranges: 2, chunk }),
        (e: unknown) => e instanceof BpfArgumentError && e.message.includes(`"${chunk}"`),
        `chunk ${chunk}`,
      );
    }
  });

  bpfTest(
    `dumpMap parallel is verified against a count of the map [hash, ${backend}]`,
    async () => {
      using map = create("hash", backend, 65_536);
      const keys = randomKeys(20_000, 2 ** 32, 4);
      fill(map, keys);
      const expected = kernelEntryCount(map);
      assert.equal(expected, keys.length);
      using pool = await ParallelPool.start(POOL_SIZE);
      for (const options of [{ ranges: 7, chunk: 64, pool }, { ranges: 3 }, {}]) {
        const result = await dumpMap(map, { method: "parallel", expected, ...options });
        assert.equal(result.problem, null);
        assert.equal(result.verified, true);
        assert.equal(result.method, "parallel");
        assert.equal(result.backend, `${backend} in workers`);
        assert.equal(result.entries, keys.length);
        assert.equal(result.distinct, keys.length);
        assert.equal(result.expected, keys.length);
      }
      // The check has teeth: a wrong expectation is caught.
      const wrong = await dumpMap(map, { method: "parallel", expected: keys.length + 1, pool });
      assert.equal(wrong.verified, false);
      assert.match(
        wrong.problem ?? "",
        /saw 20000 distinct keys but the count given is 20001 entries/,
      );
    },
  );
}

eachTypeAndBackend(
  ["hash", "array"],
  "a throwing visit ends the parallel dump",
  async (type, backend) => {
    using pool = await ParallelPool.start(POOL_SIZE);
    using map = create(type, backend, 4096);
    fill(map, range(4096));
    let calls = 0;
    const failure = new Error("stop here");
    await assert.rejects(
      forEachBatchParallel(map, () => {
        calls++;
        throw failure;
      }, { ranges: 8, chunk: 16, pool }),
      (e: unknown) => e === failure,
    );
    // The workers still walk the other ranges and send their batches: none may reach the
    // failed dump's visit. (A later dump on the pool takes over the workers' messages, so
    // the late batches get time to come back first.)
    await new Promise((resolve) => setTimeout(resolve, 300));
    const seen = new Seen(map, new Set(range(4096)), 8);
    seen.check(
      await forEachBatchParallel(map, seen.batch, { ranges: 8, chunk: 16, pool }),
      4096,
      16,
    );
    assert.equal(calls, 1);
  },
);
