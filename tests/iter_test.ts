/**
 * The bpf_iter dump (`MapIterator`) against the real kernel: every map type, three key and
 * value shapes (per-CPU values padded to 8 bytes per slot), both backends the map may be
 * opened with; every key exactly once with its value, reads split into whole records, an
 * empty map, `dumpMap` with method `iter`, two iterators on one map, closing, and the
 * largest record the seq_file holds.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type BackendName,
  type BatchView,
  BpfArgumentError,
  BpfMap,
  dumpMap,
  kernelEntryCount,
  MapIterator,
  MapType,
  type MapTypeName,
  methodFacilities,
  type WalkStats,
} from "../mod.ts";
import { ALL_BACKENDS, facilityTest, HASH_TYPES, MAP_TYPES, roomFor } from "./_helpers.ts";

/** A test of the bpf_iter dump: skipped, with the probe's reason, where the kernel refuses it. */
function iterTest(name: string, fn: () => void | Promise<void>): void {
  facilityTest(import.meta.url, name, methodFacilities("iter", MapType.hash), fn);
}

/**
 * Key and value sizes: the study's u32 pair; 12-byte values (per-CPU slots 16 bytes apart);
 * 8-byte keys (hash maps only: array keys are 4 bytes) with 16-byte values.
 */
const SHAPES = [
  { keySize: 4, valueSize: 4 },
  { keySize: 4, valueSize: 12 },
  { keySize: 8, valueSize: 16 },
];
/** Entries per map: more than one 32 KiB seq_file buffer holds for every shape. */
const ENTRIES = 5000;
/** The seq_file buffer of a bpf_iter: one `read()` returns at most this much. */
const SEQ_BUFFER = 32 * 1024;

/** Word `word` of `id`'s value on `cpu`: never 0, so an unwritten array slot stands out. */
function slotWord(id: number, cpu: number, word: number): number {
  let h = Math.imul(
    id ^ Math.imul(cpu + 1, 0x9e3779b9) ^ Math.imul(word + 1, 0x85ebca6b),
    0xc2b2ae35,
  );
  h ^= h >>> 16;
  return (h | 1) >>> 0;
}

/** The second word of an 8-byte key: a function of the first, so a torn key shows. */
function highWord(id: number): number {
  return Math.imul(id, 0x9e3779b9) >>> 0;
}

/** Writes entries `ids` (key words `id` and, for 8-byte keys, `highWord(id)`) in one call. */
function fill(map: BpfMap, ids: number[]): void {
  const keys = new Uint8Array(ids.length * map.keySize);
  const values = new Uint8Array(ids.length * map.valueBytes);
  const keyView = new DataView(keys.buffer);
  const valueView = new DataView(values.buffer);
  ids.forEach((id, i) => {
    keyView.setUint32(i * map.keySize, id, true);
    if (map.keySize === 8) keyView.setUint32(i * map.keySize + 4, highWord(id), true);
    for (let cpu = 0; cpu < map.cpus; cpu++) {
      for (let word = 0; word < map.valueSize / 4; word++) {
        const at = i * map.valueBytes + cpu * map.valueStride + word * 4;
        valueView.setUint32(at, slotWord(id, cpu, word), true);
      }
    }
  });
  assert.equal(map.updateBatch(keys, values), ids.length);
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** What one walk saw, checked batch by batch. */
class Seen {
  readonly ids = new Set<number>();
  readonly batchCounts: number[] = [];
  readonly #map: BpfMap;
  /** Written entries; for arrays, every other key must read as zeros. */
  readonly #written: Set<number>;

  constructor(map: BpfMap, written: Set<number>) {
    this.#map = map;
    this.#written = written;
  }

  batch = (batch: BatchView): void => {
    const { keySize, valueBytes, valueStride, valueSize, cpus } = this.#map;
    assert.ok(batch.count > 0, "a batch of no entries was handed out");
    assert.equal(batch.keys.byteLength, batch.count * keySize);
    assert.equal(batch.values.byteLength, batch.count * valueBytes);
    // Each read returns whole records, at most one seq_file buffer of them.
    assert.ok(batch.count * (keySize + valueBytes) <= SEQ_BUFFER, `${batch.count} records`);
    this.batchCounts.push(batch.count);
    const keyView = new DataView(batch.keys.buffer, batch.keys.byteOffset, batch.keys.byteLength);
    const valueView = new DataView(
      batch.values.buffer,
      batch.values.byteOffset,
      batch.values.byteLength,
    );
    for (let i = 0; i < batch.count; i++) {
      const id = keyView.getUint32(i * keySize, true);
      if (keySize === 8) assert.equal(keyView.getUint32(i * keySize + 4, true), highWord(id));
      if (this.ids.has(id)) assert.fail(`key ${id} seen twice`);
      this.ids.add(id);
      const written = this.#written.has(id);
      if (!written && !this.#map.typeName.endsWith("array")) {
        assert.fail(`key ${id} was never written`);
      }
      for (let cpu = 0; cpu < cpus; cpu++) {
        for (let word = 0; word < valueSize / 4; word++) {
          const got = valueView.getUint32(i * valueBytes + cpu * valueStride + word * 4, true);
          const want = written ? slotWord(id, cpu, word) : 0;
          if (got !== want) {
            assert.fail(`key ${id}, CPU ${cpu}, word ${word}: ${got}, expected ${want}`);
          }
        }
      }
    }
  };

  /** Checks a whole walk: `expected` keys, once each, and the statistics. */
  check(stats: WalkStats, expected: number): void {
    const { keySize, valueBytes } = this.#map;
    assert.equal(this.ids.size, expected);
    assert.equal(stats.entries, expected);
    assert.equal(stats.batches, this.batchCounts.length);
    // One read per batch, and the read of 0 bytes that ends the walk.
    assert.equal(stats.syscalls, stats.batches + 1);
    assert.equal(stats.chunk, 0);
    const bytes = expected * (keySize + valueBytes);
    assert.ok(stats.batches >= Math.ceil(bytes / SEQ_BUFFER), JSON.stringify(stats));
  }
}

/** A map of `type` for `ENTRIES` entries (LRU maps get room, so nothing is evicted). */
function create(
  type: MapTypeName,
  backend: BackendName,
  shape: { keySize: number; valueSize: number },
): BpfMap {
  return BpfMap.create({ type, ...shape, maxEntries: roomFor(type, ENTRIES) }, { backend });
}

/** Fills a fresh map: every key of a hash map, three keys in four of an array. */
function filled(
  type: MapTypeName,
  backend: BackendName,
  shape = SHAPES[0],
): { map: BpfMap; written: Set<number>; expected: number } {
  const map = create(type, backend, shape);
  const ids = type.endsWith("array") ? range(ENTRIES).filter((id) => id % 4 !== 3) : range(ENTRIES);
  fill(map, ids);
  return { map, written: new Set(ids), expected: ENTRIES };
}

for (const backend of ALL_BACKENDS) {
  for (const type of MAP_TYPES) {
    for (const shape of SHAPES) {
      if (type.endsWith("array") && shape.keySize !== 4) continue;
      iterTest(
        `iter dump, ${shape.keySize}-byte keys, ${shape.valueSize}-byte values [${type}, ${backend}]`,
        () => {
          const { map, written, expected } = filled(type, backend, shape);
          using _map = map;
          using iterator = MapIterator.attach(map);
          // Each walk is a fresh one over the whole map.
          for (let walk = 0; walk < 2; walk++) {
            const seen = new Seen(map, written);
            seen.check(iterator.forEachBatch(seen.batch), expected);
          }
        },
      );
    }
  }

  for (const type of HASH_TYPES) {
    iterTest(`iter dump of an empty map [${type}, ${backend}]`, () => {
      using map = create(type, backend, SHAPES[1]);
      using iterator = MapIterator.attach(map);
      const stats = iterator.forEachBatch(() => assert.fail("a batch"));
      assert.deepEqual(stats, { entries: 0, syscalls: 1, batches: 0, chunk: 0 });
    });
  }

  for (const type of ["hash", "percpu_array"] as const) {
    iterTest(
      `dumpMap iter is verified against a count of the map [${type}, ${backend}]`,
      async () => {
        const { map } = filled(type, backend);
        using _map = map;
        const expected = kernelEntryCount(map);
        assert.equal(expected, ENTRIES);
        using iterator = MapIterator.attach(map);
        // With an iterator given, and with one attached (untimed) for the dump.
        for (const options of [{ iterator }, {}]) {
          const result = await dumpMap(map, { method: "iter", expected, ...options });
          assert.equal(result.problem, null);
          assert.equal(result.verified, true);
          assert.equal(result.method, "iter");
          assert.equal(result.backend, "bpf_iter + read");
          assert.equal(result.entries, ENTRIES);
          assert.equal(result.distinct, ENTRIES);
          assert.equal(result.chunk, 0);
          assert.ok(result.batches >= 1);
        }
        const wrong = await dumpMap(map, { method: "iter", expected: ENTRIES - 1, iterator });
        assert.equal(wrong.verified, false);
        assert.match(wrong.problem ?? "", /but the count given is 4999 entries/);
      },
    );
  }

  iterTest(`two iterators on one map walk it independently [hash, ${backend}]`, () => {
    const { map, written, expected } = filled("hash", backend);
    using _map = map;
    using first = MapIterator.attach(map);
    using second = MapIterator.attach(map);
    // The second walks the whole map while the first is between two reads.
    const outer = new Seen(map, written);
    let inner: WalkStats | undefined;
    const stats = first.forEachBatch((batch) => {
      outer.batch(batch);
      if (inner) return;
      const seen = new Seen(map, written);
      inner = second.forEachBatch(seen.batch);
      seen.check(inner, expected);
    });
    outer.check(stats, expected);
    first.close();
    const after = new Seen(map, written);
    after.check(second.forEachBatch(after.batch), expected);
  });

  iterTest(`closing an iterator is idempotent [hash, ${backend}]`, () => {
    const { map } = filled("hash", backend);
    using _map = map;
    const iterator = MapIterator.attach(map);
    assert.equal(iterator.forEachBatch(() => {}).entries, ENTRIES);
    iterator.close();
    iterator.close();
    iterator[Symbol.dispose]();
    assert.throws(() => iterator.forEachBatch(() => {}), /The iterator link is closed/);
    // The map outlives its iterator, and takes a new one.
    using again = MapIterator.attach(map);
    assert.equal(again.forEachBatch(() => {}).entries, ENTRIES);
  });

  iterTest(
    `the largest record fits one seq_file buffer; a larger one is refused [hash, ${backend}]`,
    () => {
      // 4 + 32,763 bytes: the largest record seq_write() accepts in a 32 KiB buffer, in two
      // writes (the value size is not a multiple of 4), one record per read.
      using map = BpfMap.create({ type: "hash", keySize: 4, valueSize: 32_763, maxEntries: 4 }, {
        backend,
      });
      const value = (id: number) =>
        Uint8Array.from({ length: map.valueSize }, (_, i) => (id * 7 + i) & 0xff);
      for (const id of [1, 2, 3]) map.update(new Uint8Array([id, 0, 0, 0]), value(id));
      using iterator = MapIterator.attach(map);
      const ids: number[] = [];
      const stats = iterator.forEachBatch((batch) => {
        assert.equal(batch.count, 1);
        ids.push(batch.keys[0]);
        assert.deepEqual(batch.values, value(batch.keys[0]));
      });
      assert.deepEqual(ids.toSorted(), [1, 2, 3]);
      assert.equal(stats.entries, 3);

      using big = BpfMap.create({ type: "hash", keySize: 4, valueSize: 32_764, maxEntries: 4 }, {
        backend,
      });
      assert.throws(
        () => MapIterator.attach(big),
        (e: unknown) =>
          e instanceof BpfArgumentError &&
          e.message ===
            `Records of 32768 bytes for ${big.subject}: bpf_iter records are at most 32767 bytes`,
      );
    },
  );
}
