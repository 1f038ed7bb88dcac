/**
 * Garbage-collector stress: proves that no buffer whose address went into a `bpf_attr` (or
 * to libbpf) dies while the kernel can still write into it.
 *
 * If one did, the kernel would write into freed memory and the process would die later
 * (`malloc(): unaligned tcache chunk`), or values read back would be wrong. So on each
 * backend this runs half a million operations (a million in all) with a forced GC every
 * `GC_EVERY` operations and garbage allocated between operations, on maps created and
 * closed all along, through handles, walkers and batch buffers that become garbage between
 * calls, with keys freshly allocated as small `Uint8Array`s (which V8 keeps on its own,
 * moving heap), and checks every value read against what was written.
 *
 * Needs `--v8-flags=--expose-gc` (`deno task test` passes it); under a plain
 * `deno test --allow-all` each test runs its body in a child `deno test` that has it.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type BackendName, BpfMap, type MapTypeName, u32 } from "../mod.ts";
import { backend as backendNamed } from "../ffi/sys/backends.ts";
import { ownedBytes } from "../ffi/sys/buffers.ts";
import { ALL_BACKENDS, gcTest as gcTestIn, u32At, u32Bytes } from "./_helpers.ts";

type Collect = (options?: { type: "major" | "minor" }) => void;
const GC = (globalThis as { gc?: Collect }).gc;

/** Operations per backend: a million over both. */
const OPS_PER_BACKEND = 500_000;
/** Operations between forced GCs: 2,500 forced GCs per backend, more in the walks. */
const GC_EVERY = 200;
/**
 * Every this many forced GCs, a full mark-compact instead of a scavenge. Scavenges are what
 * move young objects (small typed arrays included) and free young buffers; full GCs free
 * what was promoted. A full GC costs ~18 ms under `deno test` (its heap is ~80 MB), a
 * scavenge ~0.03 ms, hence the mix.
 */
const MAJOR_EVERY = 20;
/** Element operations on a map between two of its whole-map walks. */
const OPS_BETWEEN_WALKS = 600;

/** Returns `gc()`, or fails saying how to get it. */
function requireGc(): Collect {
  assert.ok(
    GC,
    "globalThis.gc is missing: run the tests with --v8-flags=--expose-gc (deno task test does)",
  );
  return GC;
}

/** A BPF test that needs `gc()` (see `gcTest` in the helpers). */
function gcTest(name: string, fn: () => void): void {
  gcTestIn(import.meta.url, name, fn);
}

/** mulberry32: a small seeded generator, so a failure can be replayed. */
function random(seed: number): (below: number) => number {
  let state = seed >>> 0;
  return (below) => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) % below);
  };
}

/**
 * Counts operations, forces a GC every `GC_EVERY` of them, and churns the young
 * generation between operations (a ring of live objects that scavenges must move).
 */
class Stress {
  ops = 0;
  minorGcs = 0;
  majorGcs = 0;
  readonly #gc: Collect;
  readonly #ring: unknown[] = new Array(64).fill(null);
  #untilGc = GC_EVERY;

  constructor(gc: Collect) {
    this.#gc = gc;
  }

  /** Records `n` operations; allocates garbage, and collects when it is time. */
  op(n = 1): void {
    this.ops += n;
    const slot = this.ops & 63;
    this.#ring[slot] = slot & 1
      ? new Uint8Array(8 + (this.ops & 31))
      : { ops: this.ops, bytes: [slot, slot + 1] };
    this.#untilGc -= n;
    if (this.#untilGc <= 0) this.collect();
  }

  /** Forces a GC now (a scavenge, or every `MAJOR_EVERY`th time a full GC). */
  collect(): void {
    this.#untilGc = GC_EVERY;
    if ((this.minorGcs + this.majorGcs + 1) % MAJOR_EVERY === 0) {
      this.majorGcs++;
      this.#gc();
    } else {
      this.minorGcs++;
      this.#gc({ type: "minor" });
    }
  }
}

/** The shapes of map a round works on. Keys are u32 numbers spread over `keySize` bytes. */
interface Shape {
  type: MapTypeName;
  keySize: number;
  valueSize: number;
  maxEntries: number;
}

const SHAPES: readonly Shape[] = [
  { type: "hash", keySize: 4, valueSize: 4, maxEntries: 512 },
  { type: "hash", keySize: 16, valueSize: 24, maxEntries: 384 },
  { type: "percpu_hash", keySize: 4, valueSize: 8, maxEntries: 256 },
  { type: "array", keySize: 4, valueSize: 4, maxEntries: 256 },
  { type: "hash", keySize: 8, valueSize: 64, maxEntries: 128 },
];

/** A freshly allocated key for number `k` (small, so V8 may keep it on its heap). */
function keyBytes(k: number, keySize: number): Uint8Array {
  const bytes = new Uint8Array(keySize);
  writeKey(bytes, 0, k);
  return bytes;
}

function writeKey(into: Uint8Array, at: number, k: number): void {
  into[at] = k & 0xff;
  into[at + 1] = (k >>> 8) & 0xff;
  into[at + 2] = (k >>> 16) & 0xff;
  into[at + 3] = k >>> 24;
}

/** The key number in the first 4 bytes of `bytes` at `at`. */
function keyAt(bytes: Uint8Array, at: number): number {
  return (bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) |
    (bytes[at + 3] << 24)) >>> 0;
}

/** The byte `i` of the value written for key `k` at generation `gen`; generation -1 is an untouched array slot. */
function valueByte(k: number, gen: number, i: number): number {
  return gen < 0 ? 0 : (k * 7 + gen * 13 + i * 3 + 1) & 0xff;
}

function writeValue(
  into: Uint8Array,
  at: number,
  length: number,
  k: number,
  gen: number,
): void {
  for (let i = 0; i < length; i++) into[at + i] = valueByte(k, gen, i);
}

function valueBytes(k: number, gen: number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  writeValue(bytes, 0, length, k, gen);
  return bytes;
}

/** Checks `length` bytes of `bytes` from `at` against the value of `k` at `gen`, allocating nothing when they match. */
function checkValue(
  bytes: Uint8Array,
  at: number,
  length: number,
  k: number,
  gen: number,
  what: string,
): void {
  for (let i = 0; i < length; i++) {
    if (bytes[at + i] !== valueByte(k, gen, i)) {
      assert.fail(
        `${what}: key ${k} byte ${i} is ${bytes[at + i]}, wrote ${
          valueByte(k, gen, i)
        } (generation ${gen})`,
      );
    }
  }
}

/** Checks the non-number bytes of a key (keys wider than 4 bytes are zero past the number). */
function checkKey(bytes: Uint8Array, at: number, keySize: number): void {
  for (let i = 4; i < keySize; i++) {
    if (bytes[at + i] !== 0) {
      assert.fail(`Key byte ${i} is ${bytes[at + i]}, expected 0`);
    }
  }
}

/** One map under stress: the map, the generation of each key's value (its mirror), and the counter. */
class Round {
  readonly map: BpfMap;
  readonly shape: Shape;
  readonly mirror = new Map<number, number>();
  readonly #stress: Stress;
  readonly #backend: BackendName;
  readonly #random: (below: number) => number;
  #gen = 0;

  constructor(
    backend: BackendName,
    shape: Shape,
    stress: Stress,
    rand: (below: number) => number,
  ) {
    this.map = BpfMap.create({ ...shape, name: `gc_${shape.type}` }, {
      backend,
    });
    this.shape = shape;
    this.#stress = stress;
    this.#backend = backend;
    this.#random = rand;
    if (shape.type === "array") {
      for (let k = 0; k < shape.maxEntries; k++) this.mirror.set(k, -1);
    }
  }

  get #isArray(): boolean {
    return this.shape.type === "array";
  }

  /** One random element operation, checked against the mirror. */
  step(): void {
    const { map, mirror, shape } = this;
    const k = this.#random(shape.maxEntries);
    const choice = this.#random(16);
    const typed = shape.keySize === 4 && shape.valueSize === 4 &&
      !map.perCpu;
    if (choice < 4) {
      const gen = ++this.#gen;
      map.update(
        keyBytes(k, shape.keySize),
        valueBytes(k, gen, map.valueBytes),
      );
      mirror.set(k, gen);
    } else if (choice < 8) {
      // A fresh output buffer half the time: the copy must land in it, not in freed memory.
      const out = choice & 1 ? new Uint8Array(map.valueBytes) : undefined;
      const got = map.lookup(keyBytes(k, shape.keySize), out);
      const gen = mirror.get(k);
      if (gen === undefined) {
        assert.equal(got, undefined, `lookup of absent key ${k}`);
      } else {
        assert.ok(got, `lookup of key ${k} found nothing`);
        if (out) assert.equal(got, out);
        checkValue(got, 0, map.valueBytes, k, gen, "lookup");
      }
    } else if (choice < 10 && !this.#isArray) {
      const deleted = map.delete(keyBytes(k, shape.keySize));
      assert.equal(deleted, mirror.has(k), `delete of key ${k}`);
      mirror.delete(k);
    } else if (choice < 12) {
      const from = choice & 1 ? null : keyBytes(k, shape.keySize);
      const next = map.nextKey(from);
      if (next !== undefined) {
        assert.ok(mirror.has(keyAt(next, 0)), `nextKey gave absent key`);
        checkKey(next, 0, shape.keySize);
      } else if (from === null) {
        assert.equal(mirror.size, 0, "nextKey(null) found no key");
      }
    } else if (typed) {
      // A fresh TypedMap each time: its encode buffers are garbage right after.
      const view = map.typed(u32, u32);
      if (choice < 14) {
        const gen = ++this.#gen;
        const value = keyAt(valueBytes(k, gen, 4), 0);
        view.set(k, value);
        mirror.set(k, gen);
      } else {
        const gen = mirror.get(k);
        const got = view.get(k);
        if (gen === undefined) assert.equal(got, undefined);
        else assert.equal(got, keyAt(valueBytes(k, gen, 4), 0), `get(${k})`);
      }
    } else {
      this.#batchStep(k);
      return;
    }
    this.#stress.op();
  }

  /** Writes (and, for hashes, deletes) a few keys in one batch call, from fresh arrays. */
  #batchStep(first: number): void {
    const { map, mirror, shape } = this;
    const count = 1 + this.#random(8);
    const keys = new Uint8Array(count * shape.keySize);
    const values = new Uint8Array(count * map.valueBytes);
    const gen = ++this.#gen;
    const numbers: number[] = [];
    for (let i = 0; i < count; i++) {
      const k = (first + i * 17) % shape.maxEntries;
      if (numbers.includes(k)) continue;
      writeKey(keys.subarray(numbers.length * shape.keySize), 0, k);
      writeValue(
        values,
        numbers.length * map.valueBytes,
        map.valueBytes,
        k,
        gen,
      );
      numbers.push(k);
    }
    const n = numbers.length;
    const done = map.updateBatch(
      keys.subarray(0, n * shape.keySize),
      values.subarray(0, n * map.valueBytes),
    );
    assert.equal(done, n);
    for (const k of numbers) mirror.set(k, gen);
    this.#stress.op();
    if (!this.#isArray && this.#random(2) === 0) {
      const deleted = map.deleteBatch(keys.subarray(0, shape.keySize));
      assert.equal(deleted, 1);
      mirror.delete(numbers[0]);
      this.#stress.op();
    }
  }

  /** A second handle on the same map, opened by id: garbage once the walk is over. */
  #handle(): BpfMap {
    return BpfMap.fromId(this.map.info.id, { backend: this.#backend });
  }

  /** Checks the entry at `keys[i]`/`values[i]` against the mirror and marks it seen. */
  #seen(
    seen: Set<number>,
    keys: Uint8Array,
    keyAtByte: number,
    values: Uint8Array,
    valueAtByte: number,
    what: string,
  ): void {
    const k = keyAt(keys, keyAtByte);
    const gen = this.mirror.get(k);
    assert.ok(gen !== undefined, `${what} visited absent key ${k}`);
    assert.ok(!seen.has(k), `${what} visited key ${k} twice`);
    seen.add(k);
    checkKey(keys, keyAtByte, this.shape.keySize);
    checkValue(values, valueAtByte, this.map.valueBytes, k, gen, what);
  }

  #assertAllSeen(seen: Set<number>, what: string): void {
    assert.equal(
      seen.size,
      this.mirror.size,
      `${what} saw ${seen.size} entries, the map holds ${this.mirror.size}`,
    );
  }

  /** forEachEntry on a fresh handle, collecting now and then in the callback. */
  walkEntries(): void {
    const seen = new Set<number>();
    let stats;
    {
      using handle = this.#handle();
      stats = handle.forEachEntry((key, value) => {
        this.#seen(seen, key, 0, value, 0, "forEachEntry");
        this.#stress.op(2);
      });
    }
    this.#assertAllSeen(seen, "forEachEntry");
    assert.equal(stats.entries, seen.size);
  }

  /** forEachBatch on a fresh handle, with a small chunk (1 provokes ENOSPC and regrowth). */
  walkBatches(): void {
    const seen = new Set<number>();
    const chunk = [1, 3, 16, 64][this.#random(4)];
    let stats;
    {
      using handle = this.#handle();
      const k = this.shape.keySize;
      const v = handle.valueBytes;
      stats = handle.forEachBatch((batch) => {
        for (let i = 0; i < batch.count; i++) {
          this.#seen(
            seen,
            batch.keys,
            i * k,
            batch.values,
            i * v,
            "forEachBatch",
          );
        }
        this.#stress.op();
      }, { chunk });
    }
    this.#assertAllSeen(seen, `forEachBatch (chunk ${chunk})`);
    assert.equal(stats.entries, seen.size);
  }

  /** The generators, stepped with GCs between steps, on handles that are dropped afterwards. */
  walkGenerators(): void {
    const gc = requireGc();
    {
      const seen = new Set<number>();
      using handle = this.#handle();
      let step = 0;
      for (const [key, value] of handle.entries()) {
        this.#seen(seen, key, 0, value, 0, "entries()");
        if (++step % 50 === 0) gc({ type: "minor" });
        this.#stress.op(2);
      }
      this.#assertAllSeen(seen, "entries()");
    }
    {
      const seen = new Set<number>();
      using handle = this.#handle();
      const k = this.shape.keySize;
      const v = handle.valueBytes;
      for (const batch of handle.batches({ chunk: 32 })) {
        gc({ type: "minor" });
        for (let i = 0; i < batch.count; i++) {
          this.#seen(seen, batch.keys, i * k, batch.values, i * v, "batches()");
        }
        this.#stress.op();
      }
      this.#assertAllSeen(seen, "batches()");
    }
  }

  /** Whole-map check through the typed view (batch walk, decoded pairs). */
  walkTyped(): void {
    if (this.shape.keySize !== 4 || this.shape.valueSize !== 4) return;
    if (this.map.perCpu) return;
    const got = new Map<number, number>();
    const stats = this.map.typed(u32, u32).forEach((k, v) => got.set(k, v), 7);
    this.#stress.op(stats.syscalls);
    assert.equal(got.size, this.mirror.size);
    for (const [k, gen] of this.mirror) {
      assert.equal(got.get(k), keyAt(valueBytes(k, gen, 4), 0), `typed ${k}`);
    }
  }

  close(): void {
    this.map.close();
  }
}

/** A short-lived map: created, written, read and closed, all garbage right after. */
function shortLived(backend: BackendName, stress: Stress, n: number): void {
  using map = BpfMap.create(
    { type: "hash", keySize: 4, valueSize: 8, maxEntries: 8 },
    { backend },
  );
  stress.op();
  const key = keyBytes(n, 4);
  map.update(key, valueBytes(n, 1, 8));
  stress.op();
  const got = map.lookup(keyBytes(n, 4));
  assert.ok(got, "short-lived map lost its key");
  checkValue(got, 0, 8, n, 1, "short-lived lookup");
  stress.op();
}

function stress(backend: BackendName): Stress {
  const stress = new Stress(requireGc());
  const rand = random(0x5eed + backend.length);
  for (let r = 0; stress.ops < OPS_PER_BACKEND; r++) {
    const round = new Round(backend, SHAPES[r % SHAPES.length], stress, rand);
    try {
      for (let walk = 0; walk < 4; walk++) {
        for (let i = 0; i < OPS_BETWEEN_WALKS; i++) round.step();
        switch ((walk + r) % 4) {
          case 0:
            round.walkEntries();
            break;
          case 1:
            round.walkBatches();
            break;
          case 2:
            round.walkGenerators();
            break;
          default:
            round.walkTyped();
            round.walkBatches();
        }
        shortLived(backend, stress, r * 4 + walk);
      }
    } finally {
      round.close();
    }
  }
  return stress;
}

for (const backend of ALL_BACKENDS) {
  gcTest(
    `gc: ${OPS_PER_BACKEND} operations with forced GCs, ${backend} backend`,
    () => {
      const started = performance.now();
      // Every value read is checked against what was written as the stress goes: a buffer
      // freed early shows as a wrong value or a crash, not as a count here.
      const result = stress(backend);
      const seconds = (performance.now() - started) / 1000;
      console.log(
        `${backend}: ${result.ops} operations, ${result.minorGcs} scavenges + ${result.majorGcs} full GCs in ${
          seconds.toFixed(1)
        } s`,
      );
    },
  );
}

/** Map size of the heap test. */
const HEAP_ENTRIES = 200_000;
/** The most the V8 heap may grow over a whole dump. */
const HEAP_GROWTH_LIMIT = 1024 * 1024;

/** Fills a 200k-entry hash map (u32 key `i`, u32 value `i ^ 0x5a5a5a5a`) with one updateBatch. */
function bigMap(backend: BackendName): BpfMap {
  const map = BpfMap.create(
    { type: "hash", keySize: 4, valueSize: 4, maxEntries: HEAP_ENTRIES },
    { backend },
  );
  const keys = new Uint32Array(HEAP_ENTRIES);
  const values = new Uint32Array(HEAP_ENTRIES);
  for (let i = 0; i < HEAP_ENTRIES; i++) {
    keys[i] = i;
    values[i] = (i ^ 0x5a5a5a5a) >>> 0;
  }
  const written = map.updateBatch(
    new Uint8Array(keys.buffer),
    new Uint8Array(values.buffer),
  );
  assert.equal(written, HEAP_ENTRIES);
  return map;
}

/** `heapUsed` after a full GC. */
function settledHeap(gc: Collect): number {
  gc();
  gc();
  return Deno.memoryUsage().heapUsed;
}

for (const backend of ALL_BACKENDS) {
  gcTest(
    `gc: dumping ${HEAP_ENTRIES} entries grows the V8 heap by under 1 MB, ${backend} backend`,
    () => {
      const gc = requireGc();
      using map = bigMap(backend);
      // The callbacks only read bytes and add into a typed array (a captured `let` of
      // doubles could box): any heap growth is the walk's own.
      const tally = new Float64Array(2); // [sum of keys, mismatched values]
      const before = settledHeap(gc);
      const entryStats = map.forEachEntry((key, value) => {
        const k = keyAt(key, 0);
        tally[0] += k;
        if (keyAt(value, 0) !== ((k ^ 0x5a5a5a5a) >>> 0)) tally[1]++;
      });
      const afterEntries = settledHeap(gc);
      const batchStats = map.forEachBatch((batch) => {
        for (let i = 0; i < batch.count; i++) {
          const k = keyAt(batch.keys, i * 4);
          tally[0] += k;
          if (keyAt(batch.values, i * 4) !== ((k ^ 0x5a5a5a5a) >>> 0)) {
            tally[1]++;
          }
        }
      });
      const afterBatches = settledHeap(gc);
      const expectedSum = HEAP_ENTRIES * (HEAP_ENTRIES - 1) / 2;
      assert.equal(tally[1], 0, "values read differ from values written");
      assert.equal(tally[0], 2 * expectedSum);
      assert.equal(entryStats.entries, HEAP_ENTRIES);
      assert.equal(batchStats.entries, HEAP_ENTRIES);
      const entryGrowth = afterEntries - before;
      const batchGrowth = afterBatches - afterEntries;
      console.log(
        `${backend}: heap growth ${entryGrowth} bytes over forEachEntry (${entryStats.syscalls} syscalls), ${batchGrowth} bytes over forEachBatch (${batchStats.syscalls} syscalls)`,
      );
      assert.ok(
        entryGrowth < HEAP_GROWTH_LIMIT,
        `forEachEntry grew the heap by ${entryGrowth} bytes`,
      );
      assert.ok(
        batchGrowth < HEAP_GROWTH_LIMIT,
        `forEachBatch grew the heap by ${batchGrowth} bytes`,
      );
    },
  );
}

/** Prepared calls in the test below. */
const PREPARED_CALLS = 64;

/** An UPDATE_ELEM call of `key` -> `value` whose buffers only the call references. */
function updateCall(name: BackendName, fd: number, key: number, value: number) {
  const k = ownedBytes(4);
  k.set(u32Bytes(key));
  const v = ownedBytes(4);
  v.set(u32Bytes(value));
  return backendNamed(name).elem("update", fd, k, v);
}

for (const name of ALL_BACKENDS) {
  gcTest(`gc: a prepared call keeps its own key and value buffers alive, ${name} backend`, () => {
    const gc = requireGc();
    using map = BpfMap.create(
      { type: "hash", keySize: 4, valueSize: 4, maxEntries: PREPARED_CALLS },
      { backend: name },
    );
    const calls = Array.from(
      { length: PREPARED_CALLS },
      (_, i) => updateCall(name, map.fd, i, 0xc0de0000 + i),
    );
    // Free what nothing references, then fill that memory with same-sized garbage.
    const garbage: Uint8Array[] = [];
    for (let round = 0; round < 4; round++) {
      gc({ type: "major" });
      gc({ type: "minor" });
      for (let i = 0; i < 20_000; i++) garbage.push(ownedBytes(4).fill(0xff));
    }
    calls.forEach((call, i) => assert.equal(call(), 0, `update ${i}`));
    for (let i = 0; i < PREPARED_CALLS; i++) {
      const value = map.lookup(u32Bytes(i));
      assert.ok(value, `key ${i} was not written`);
      assert.equal(u32At(value), 0xc0de0000 + i, `key ${i}`);
    }
  });
}
