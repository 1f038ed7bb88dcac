/**
 * Whole-map walks against the real kernel, on both backends and every map type: per entry
 * (`forEachEntry`, `entries`) and in batches (`forEachBatch`, `batches`,
 * `forEachBatchAndDelete`), including the cursor's edge cases and deletion while walking.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type BackendName,
  type BatchView,
  BpfMap,
  isPerCpu,
  MapType,
  type MapTypeName,
  type WalkStats,
} from "../mod.ts";
import {
  ALL_BACKENDS,
  bpfTest,
  eachTypeAndBackend,
  HASH_TYPES,
  MAP_TYPES,
  roomFor,
  ROOT,
  u32At,
  u32Bytes,
} from "./_helpers.ts";

const ARRAY_TYPES: readonly MapTypeName[] = ["array", "percpu_array"];
const PER_CPU_TYPES = MAP_TYPES.filter((type) => isPerCpu(MapType[type]));

/** Entries written into the hash maps of the full dumps. */
const FILL = 1500;
/** Chunks of the batch walks: one, odd, the default, and more than any map here holds. */
const CHUNKS = [1, 7, 4096, 10_000];

function isArrayType(type: MapTypeName): boolean {
  return ARRAY_TYPES.includes(type);
}

/** Runs a full collection when the test runs with `--expose-gc`. */
function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/**
 * The bytes of `key`'s value on `cpu`: a u32 unique to the pair and never 0 (so unset array
 * slots stand out), then a pattern that also depends on both.
 */
function slotBytes(key: number, cpu: number, cpus: number, size: number) {
  const bytes = new Uint8Array(size);
  new DataView(bytes.buffer).setUint32(0, key * cpus + cpu + 1, true);
  for (let i = 4; i < size; i++) bytes[i] = (key + cpu * 7 + i * 31) & 0xff;
  return bytes;
}

/** A whole value for `key`, every CPU's slot written through `map.cpuValues`. */
function valueFor(map: BpfMap, key: number): Uint8Array {
  const value = new Uint8Array(map.valueBytes);
  map.cpuValues(value).forEach((slot, cpu) =>
    slot.set(slotBytes(key, cpu, map.cpus, map.valueSize))
  );
  return value;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A value as a walk compares it: each CPU's slot in hex (padding between slots left out). */
function slotsOf(map: BpfMap, value: Uint8Array): string {
  return map.cpuValues(value).map(hex).join("|");
}

/** Writes `keys` with their values; returns what a walk must see (every key of an array). */
function fill(map: BpfMap, keys: Iterable<number>): Map<number, string> {
  const expected = new Map<number, string>();
  for (const key of keys) {
    const value = valueFor(map, key);
    map.update(u32Bytes(key), value);
    expected.set(key, slotsOf(map, value));
  }
  if (map.typeName.endsWith("array")) {
    const zeros = slotsOf(map, new Uint8Array(map.valueBytes));
    for (let key = 0; key < map.info.maxEntries; key++) {
      if (!expected.has(key)) expected.set(key, zeros);
    }
  }
  return new Map([...expected].sort(([a], [b]) => a - b));
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** What one walk saw: each key once (checked as it comes), in order, and the batch sizes. */
class Seen {
  readonly values = new Map<number, string>();
  readonly order: number[] = [];
  readonly batchCounts: number[] = [];
  readonly #map: BpfMap;
  readonly #gc: boolean;

  /** With `gc`, a full collection runs mid-walk: the walk's buffers must survive it. */
  constructor(map: BpfMap, { gc = false } = {}) {
    this.#map = map;
    this.#gc = gc;
  }

  entry = (key: Uint8Array, value: Uint8Array): void => {
    assert.equal(key.byteLength, this.#map.keySize);
    assert.equal(value.byteLength, this.#map.valueBytes);
    const k = u32At(key);
    if (this.values.has(k)) assert.fail(`key ${k} seen twice`);
    if (this.#gc && this.order.length === 1) collectGarbage();
    this.order.push(k);
    this.values.set(k, slotsOf(this.#map, value));
  };

  batch = (batch: BatchView): void => {
    const { keySize, valueBytes } = this.#map;
    assert.ok(batch.count > 0, "a batch of no entries was handed out");
    assert.equal(batch.keys.byteLength, batch.count * keySize);
    assert.equal(batch.values.byteLength, batch.count * valueBytes);
    this.batchCounts.push(batch.count);
    for (let i = 0; i < batch.count; i++) {
      this.entry(
        batch.keys.subarray(i * keySize, (i + 1) * keySize),
        batch.values.subarray(i * valueBytes, (i + 1) * valueBytes),
      );
    }
  };

  /** The entries, by key, for comparing with `fill`'s result. */
  sorted(): Map<number, string> {
    return new Map([...this.values].sort(([a], [b]) => a - b));
  }
}

/** Checks a batch walk's statistics against what the kernel's cursor allows. */
function checkBatchStats(
  map: BpfMap,
  stats: WalkStats,
  seen: Seen,
  chunk: number,
): void {
  const n = seen.values.size;
  const initial = Math.min(chunk, map.info.maxEntries);
  assert.equal(stats.entries, n);
  assert.equal(stats.batches, seen.batchCounts.length);
  assert.ok(seen.batchCounts.every((count) => count <= stats.chunk));
  if (map.typeName.endsWith("array")) {
    // An array's cursor is its last key: full batches, then a partial (or empty) last call.
    assert.equal(stats.chunk, initial);
    assert.equal(stats.batches, Math.ceil(n / initial));
    assert.equal(stats.syscalls, Math.floor(n / initial) + 1);
    return;
  }
  // A hash map's cursor is a bucket: batches end at bucket edges, and ENOSPC doubles the
  // chunk (one extra call each time) until the largest bucket fits.
  const growths = Math.log2(stats.chunk / initial);
  assert.ok(Number.isInteger(growths) && growths >= 0, `chunk ${stats.chunk}`);
  assert.ok(stats.batches >= Math.ceil(n / stats.chunk), JSON.stringify(stats));
  assert.ok(stats.syscalls >= stats.batches + growths, JSON.stringify(stats));
  assert.ok(
    stats.syscalls <= stats.batches + growths + 1,
    JSON.stringify(stats),
  );
}

/** Creates a map of `type` for `entries` u32 keys (arrays hold exactly that many). */
function createFor(
  type: MapTypeName,
  backend: BackendName,
  entries: number,
  valueSize = 8,
): BpfMap {
  const maxEntries = isArrayType(type) ? entries : roomFor(type, Math.max(entries, 1));
  return BpfMap.create({ type, keySize: 4, valueSize, maxEntries }, {
    backend,
  });
}

// --- Full dumps -----------------------------------------------------------------------

const DUMP_CASES = [
  ...MAP_TYPES.map((type) => ({ type, valueSize: 8 })),
  // A value size that is not a multiple of 8: per-CPU slots are 16 bytes apart.
  ...PER_CPU_TYPES.map((type) => ({ type, valueSize: 12 })),
];

for (const backend of ALL_BACKENDS) {
  for (const { type, valueSize } of DUMP_CASES) {
    bpfTest(
      `full dump, ${valueSize}-byte values [${type}, ${backend}]`,
      () => {
        using map = createFor(type, backend, FILL, valueSize);
        // Arrays: every key but one in four is set; the rest must come back as zeros.
        const keys = isArrayType(type) ? range(FILL).filter((key) => key % 4 !== 3) : range(FILL);
        const expected = fill(map, keys);
        assert.equal(expected.size, FILL);
        if (map.perCpu) {
          assert.equal(map.valueStride, Math.ceil(valueSize / 8) * 8);
          assert.equal(map.valueBytes, map.valueStride * map.cpus);
        }

        const byCallback = new Seen(map, { gc: true });
        const stats = map.forEachEntry(byCallback.entry);
        assert.deepEqual(byCallback.sorted(), expected);
        assert.deepEqual(stats, {
          entries: FILL,
          syscalls: 2 * FILL + 1,
          batches: 0,
          chunk: 0,
        });

        const byGenerator = new Seen(map, { gc: true });
        for (const [key, value] of map.entries()) byGenerator.entry(key, value);
        assert.deepEqual(byGenerator.sorted(), expected);

        for (const chunk of CHUNKS) {
          const batched = new Seen(map, { gc: true });
          const stats = map.forEachBatch(batched.batch, { chunk });
          assert.deepEqual(batched.sorted(), expected, `chunk ${chunk}`);
          checkBatchStats(map, stats, batched, chunk);

          const generated = new Seen(map, { gc: true });
          for (const batch of map.batches({ chunk })) generated.batch(batch);
          assert.deepEqual(generated.sorted(), expected, `chunk ${chunk}`);
          if (isArrayType(type)) {
            // The cursor went back in unchanged: the keys come in order, each once.
            assert.deepEqual(batched.order, range(FILL));
            assert.deepEqual(generated.order, range(FILL));
          }
        }
      },
    );
  }
}

// --- Cursor edge cases ----------------------------------------------------------------

eachTypeAndBackend(HASH_TYPES, "empty map walks", (type, backend) => {
  using map = createFor(type, backend, 64);
  assert.deepEqual(map.forEachEntry(() => assert.fail("an entry")), {
    entries: 0,
    syscalls: 1,
    batches: 0,
    chunk: 0,
  });
  assert.deepEqual([...map.entries()], []);
  for (const chunk of [1, 4096]) {
    const stats = map.forEachBatch(() => assert.fail("a batch"), { chunk });
    assert.deepEqual(stats, {
      entries: 0,
      syscalls: 1,
      batches: 0,
      chunk: Math.min(chunk, map.info.maxEntries),
    });
    assert.deepEqual([...map.batches({ chunk })], []);
  }
});

eachTypeAndBackend(MAP_TYPES, "one entry", (type, backend) => {
  using map = createFor(type, backend, 1);
  const key = isArrayType(type) ? 0 : 7;
  const expected = fill(map, [key]);

  const byCallback = new Seen(map);
  assert.deepEqual(map.forEachEntry(byCallback.entry), {
    entries: 1,
    syscalls: 3,
    batches: 0,
    chunk: 0,
  });
  assert.deepEqual(byCallback.sorted(), expected);
  const byGenerator = new Seen(map);
  for (const [k, v] of map.entries()) byGenerator.entry(k, v);
  assert.deepEqual(byGenerator.sorted(), expected);

  for (const chunk of [1, 4096]) {
    const batched = new Seen(map);
    const stats = map.forEachBatch(batched.batch, { chunk });
    assert.deepEqual(batched.sorted(), expected);
    assert.deepEqual(batched.batchCounts, [1]);
    checkBatchStats(map, stats, batched, chunk);
    const generated = new Seen(map);
    for (const batch of map.batches({ chunk })) generated.batch(batch);
    assert.deepEqual(generated.sorted(), expected);
  }
});

eachTypeAndBackend(ARRAY_TYPES, "partial last batch", (type, backend) => {
  using map = createFor(type, backend, 10);
  const expected = fill(map, range(10));
  for (const chunk of [1, 3, 4, 5, 10, 11]) {
    const size = Math.min(chunk, 10);
    const counts = range(Math.ceil(10 / size)).map((i) => Math.min(size, 10 - i * size));
    const generated = new Seen(map);
    for (const batch of map.batches({ chunk })) generated.batch(batch);
    assert.deepEqual(generated.batchCounts, counts, `chunk ${chunk}`);
    assert.deepEqual(generated.order, range(10));
    assert.deepEqual(generated.sorted(), expected);

    const batched = new Seen(map);
    const stats = map.forEachBatch(batched.batch, { chunk });
    assert.deepEqual(batched.batchCounts, counts, `chunk ${chunk}`);
    // e.g. chunk 4: batches of 4, 4 and 2, the last call ending the walk with ENOENT.
    assert.deepEqual(stats, {
      entries: 10,
      syscalls: Math.floor(10 / size) + 1,
      batches: counts.length,
      chunk: size,
    });
  }
});

eachTypeAndBackend(
  HASH_TYPES,
  "chunk 1 grows past multi-entry buckets",
  (type, backend) => {
    // 256 keys in 1024 buckets: some bucket holds two or more (all but certainly: the odds
    // of none are about 1e-14), and LOOKUP_BATCH answers ENOSPC to a chunk of 1 there.
    using map = BpfMap.create(
      { type, keySize: 4, valueSize: 8, maxEntries: 1024 },
      { backend },
    );
    const expected = fill(map, range(256));
    const batched = new Seen(map);
    const stats = map.forEachBatch(batched.batch, { chunk: 1 });
    assert.deepEqual(batched.sorted(), expected);
    assert.ok(stats.chunk >= 2, `the chunk did not grow: ${stats.chunk}`);
    assert.ok(stats.syscalls > stats.batches, JSON.stringify(stats));
    checkBatchStats(map, stats, batched, 1);

    const generated = new Seen(map);
    for (const batch of map.batches({ chunk: 1 })) generated.batch(batch);
    assert.deepEqual(generated.sorted(), expected);
    assert.ok(generated.batchCounts.some((count) => count >= 2));
  },
);

// --- Deleting while walking -----------------------------------------------------------

eachTypeAndBackend(
  HASH_TYPES,
  "delete the current key inside entries()",
  (type, backend) => {
    const n = 300;
    using map = createFor(type, backend, n);
    fill(map, range(n));
    const visited: number[] = [];
    // GET_NEXT_KEY from a deleted key restarts at the first key left, so this loop must
    // still visit each key once and end on an empty map.
    for (const [key] of map.entries()) {
      visited.push(u32At(key));
      if (visited.length > 2 * n) assert.fail("the walk does not end");
      assert.equal(map.delete(key), true);
    }
    assert.deepEqual(visited.toSorted((a, b) => a - b), range(n));
    assert.equal(map.nextKey(null), undefined);
    assert.equal(map.forEachEntry(() => {}).entries, 0);
  },
);

eachTypeAndBackend(
  HASH_TYPES,
  "delete other keys inside forEachEntry",
  (type, backend) => {
    const n = 300;
    using map = createFor(type, backend, n);
    const expected = fill(map, range(n));
    const deleted = new Set<number>();
    const seen = new Seen(map);
    // Each visit deletes its partner (key ^ 1): of each pair, exactly one is visited.
    const stats = map.forEachEntry((key, value) => {
      const k = u32At(key);
      assert.ok(!deleted.has(k), `deleted key ${k} was visited`);
      seen.entry(key, value);
      if (map.delete(u32Bytes(k ^ 1))) deleted.add(k ^ 1);
    });
    assert.equal(stats.entries, n / 2);
    assert.equal(deleted.size, n / 2);
    for (let k = 0; k < n; k += 2) {
      assert.notEqual(seen.values.has(k), seen.values.has(k + 1), `pair ${k}`);
    }
    for (const [k, value] of seen.values) assert.equal(value, expected.get(k));
    const left = new Seen(map);
    map.forEachEntry(left.entry);
    assert.deepEqual(left.sorted(), seen.sorted());
  },
);

for (const backend of ALL_BACKENDS) {
  bpfTest(
    `an entry deleted by another process mid-step is skipped [hash, ${backend}]`,
    async () => {
      using map = BpfMap.create({ type: "hash", keySize: 4, valueSize: 8, maxEntries: 4 }, {
        backend,
      });
      const value = valueFor(map, 1);
      // The child inserts and deletes keys 1 and 2 as fast as it can, so the parent's
      // LOOKUP_ELEM often finds gone the key its GET_NEXT_KEY just returned.
      const script = `
      import { BpfMap } from "file://${ROOT}mod.ts";
      using map = BpfMap.fromId(${map.info.id}, { backend: "${backend}" });
      const value = new Uint8Array(${JSON.stringify([...value])});
      const keys = [1, 2].map((key) => new Uint8Array([key, 0, 0, 0]));
      const end = performance.now() + 20_000;
      while (performance.now() < end) {
        for (const key of keys) {
          map.update(key, value);
          map.delete(key);
        }
      }
    `;
      const child = new Deno.Command(Deno.execPath(), {
        args: ["eval", "--ext=ts", script],
        cwd: ROOT,
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      let skipped = 0;
      let walks = 0;
      try {
        const check = (key: Uint8Array, got: Uint8Array) => {
          assert.ok([1, 2].includes(u32At(key)), `key ${u32At(key)}`);
          assert.deepEqual(got, value);
        };
        const deadline = performance.now() + 10_000;
        while (skipped < 100 && performance.now() < deadline) {
          // Each skipped entry cost a GET_NEXT_KEY and a LOOKUP_ELEM and yielded nothing.
          const stats = map.forEachEntry(check);
          skipped += (stats.syscalls - 1) / 2 - stats.entries;
          for (const [key, got] of map.entries()) check(key, got);
          walks++;
        }
      } finally {
        child.kill("SIGKILL");
      }
      const { stderr } = await child.output();
      assert.ok(
        skipped > 0,
        `no lookup lost its key in ${walks} walks: ${new TextDecoder().decode(stderr)}`,
      );
    },
  );
}

eachTypeAndBackend(
  HASH_TYPES,
  "forEachBatchAndDelete empties the map",
  (type, backend) => {
    const n = 500;
    using map = createFor(type, backend, 2 * n);
    for (const chunk of [1, 64, 4096]) {
      const expected = fill(map, range(n));
      const drained = new Seen(map);
      const stats = map.forEachBatchAndDelete(drained.batch, { chunk });
      assert.deepEqual(drained.sorted(), expected, `chunk ${chunk}`);
      checkBatchStats(map, stats, drained, chunk);
      assert.equal(map.nextKey(null), undefined);
      assert.equal(map.forEachBatch(() => {}).entries, 0);
    }
  },
);
