/**
 * Dumps of maps written while they are read: the live-map contract of `dumpMap`.
 *
 * - A key present and unchanged for the whole dump (a *stable* key) is reported exactly once
 *   by batch, parallel batch and per-entry walks.
 * - No key is reported twice: what the kernel returns again is dropped and counted.
 * - Per-entry walks end: restarts at the first bucket are followed from the last key still
 *   present, and a walk that restarts too often gives up naming batch as the way out.
 * - The verdict says what held.
 *
 * The writes are made from the dump's own `visit` callback, between two system calls of the
 * walk (and, for the parallel dump, while the workers go on walking): each test puts the
 * writes exactly where they break a naive walk.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type BackendName,
  type BatchView,
  BpfMap,
  dumpMap,
  type DumpMethod,
  type DumpResult,
  MapType,
  type MapTypeName,
  methodFacilities,
  verdict,
} from "../mod.ts";
import { ALL_BACKENDS, bpfTest, countOf, facilityTest, u32At, u32Bytes } from "./_helpers.ts";

/** The hash-family types a live map is usually of. */
const LIVE_TYPES: readonly MapTypeName[] = ["hash", "lru_hash", "percpu_hash"];

/** Stable keys are numbers `0 .. STABLE - 1`; transient keys are numbers from `STABLE` on. */
const STABLE = 3000;
const TRANSIENT = 400;

function valueFor(map: BpfMap, key: number): Uint8Array {
  const value = new Uint8Array(map.valueBytes);
  new DataView(value.buffer).setUint32(0, key ^ 0x5a5a5a5a, true);
  return value;
}

/** A map with the stable keys and `transient` transient keys (room to spare for LRU maps). */
function liveMap(type: MapTypeName, backend: BackendName, transient = TRANSIENT): BpfMap {
  const map = BpfMap.create({
    type,
    keySize: 4,
    valueSize: 8,
    maxEntries: 4 * (STABLE + transient),
  }, { backend });
  for (let key = 0; key < STABLE + transient; key++) {
    map.update(u32Bytes(key), valueFor(map, key));
  }
  return map;
}

/** How many times each key was visited. */
class Visits {
  readonly counts = new Map<number, number>();

  add(batch: BatchView): void {
    for (let i = 0; i < batch.count; i++) {
      const key = u32At(batch.keys, i);
      this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    }
  }

  /** Fails unless every stable key came exactly once and no key came twice. */
  assertStableOnce(what: string): void {
    const wrong: string[] = [];
    for (let key = 0; key < STABLE; key++) {
      const seen = this.counts.get(key) ?? 0;
      if (seen !== 1) wrong.push(`${key}: ${seen}x`);
    }
    assert.deepEqual(wrong.slice(0, 10), [], `${what}: stable keys not seen exactly once`);
    const twice = [...this.counts].filter(([, n]) => n > 1);
    assert.deepEqual(twice.slice(0, 10), [], `${what}: keys reported twice`);
  }
}

function assertChangedVerdict(result: DumpResult, what: string): void {
  assert.equal(result.changed, true, what);
  assert.equal(result.verified, false, what);
  assert.equal(result.problem, null, `${what}: ${result.problem}`);
  assert.equal(result.distinct, result.entries - result.duplicates, what);
  assert.match(
    verdict(result),
    new RegExp(`^Map written during the dump \\(${countOf("\\d+ -> \\d+")}\\): each key once`),
  );
}

for (const backend of ALL_BACKENDS) {
  for (const type of LIVE_TYPES) {
    bpfTest(
      `per-entry: deleting the current key sends GET_NEXT_KEY back to the first bucket; the dump follows and reports stable keys once [${type}, ${backend}]`,
      async () => {
        using map = liveMap(type, backend);
        // What the kernel does: the raw walk meets stable keys again after each restart.
        const raw = new Map<number, number>();
        using other = liveMap(type, backend);
        other.forEachEntry((key) => {
          const k = u32At(key);
          raw.set(k, (raw.get(k) ?? 0) + 1);
          if (k >= STABLE && raw.size < STABLE) other.delete(key);
        });
        assert.ok(
          [...raw.values()].some((n) => n > 1),
          "the raw walk never restarted: the test does not reach the kernel's restart",
        );

        const visits = new Visits();
        const result = await dumpMap(map, {
          method: "normal",
          visit: (batch) => {
            visits.add(batch);
            const key = u32At(batch.keys);
            // Delete the key the walk stands on: its next GET_NEXT_KEY restarts.
            if (key >= STABLE) map.delete(batch.keys.slice(0, 4));
          },
        });
        visits.assertStableOnce("per-entry dump");
        assert.ok(result.restarts > 0, "no restart was followed");
        assert.ok(result.restarts <= TRANSIENT, `${result.restarts} restarts`);
        // Resuming after the last key still present, the walk re-reads almost nothing.
        assert.ok(
          result.syscalls < 2 * (STABLE + TRANSIENT) + 40 * result.restarts + 10,
          `${result.syscalls} system calls for ${result.restarts} restarts`,
        );
        assertChangedVerdict(result, "per-entry dump");
        assert.ok(result.countBefore! > result.expected!);
      },
    );
  }
}

bpfTest("per-entry: a walk that restarts too often gives up, naming batch", async () => {
  for (const backend of ALL_BACKENDS) {
    using map = liveMap("hash", backend);
    await assert.rejects(
      dumpMap(map, {
        method: "normal",
        maxRestarts: 50,
        visit: (batch) => {
          if (u32At(batch.keys) >= STABLE) map.delete(batch.keys.slice(0, 4));
        },
      }),
      /restarted at the first bucket 50 times: .* dump it in batches \(LOOKUP_BATCH\)/,
    );
  }
});

/**
 * Transient keys that stand first in the first non-empty bucket at or after each of the
 * `ranges` range boundaries: where a range's last call reads into the next range.
 */
function boundaryKeys(map: BpfMap, ranges: number): number[] {
  const buckets = 2 ** Math.ceil(Math.log2(map.info.maxEntries));
  const found: number[] = [];
  for (let i = 1; i < ranges; i++) {
    const start = Math.floor((buckets * i) / ranges);
    const first = firstKeyFrom(map, start);
    if (first !== undefined && first >= STABLE) found.push(first);
  }
  return found;
}

/** The first key a LOOKUP_BATCH walk from bucket `start` returns. */
function firstKeyFrom(map: BpfMap, start: number): number | undefined {
  let first: number | undefined;
  map.forEachBatch((batch) => {
    if (first === undefined && batch.count > 0) first = u32At(batch.keys);
  }, { chunk: 64, range: { start, end: start + 1, array: false } });
  return first;
}

for (const backend of ALL_BACKENDS) {
  for (const type of LIVE_TYPES) {
    bpfTest(
      `parallel: deleting each range's first key while the range before it runs; no key twice, stable keys once, with no key set [${type}, ${backend}]`,
      async () => {
        let deleted = 0;
        for (const ranges of [2, 3, 4, 8, 16, 64]) {
          // Many transient keys, so that one stands first after most range boundaries.
          using map = liveMap(type, backend, 6000);
          const markers = new Set(boundaryKeys(map, ranges));
          const visits = new Visits();
          const result = await dumpMap(map, {
            method: "parallel",
            ranges,
            chunk: 32,
            // The walk itself must not repeat a key: no key set to drop repeats.
            trackKeys: false,
            visit: (batch) => {
              visits.add(batch);
              for (let i = 0; i < batch.count; i++) {
                const key = u32At(batch.keys, i);
                if (!markers.delete(key)) continue;
                // The next range has read it first; the range before has not ended yet.
                map.delete(u32Bytes(key));
                deleted++;
              }
            },
          });
          visits.assertStableOnce(`parallel dump, ${ranges} ranges`);
          assert.equal(result.duplicates, 0);
        }
        assert.ok(deleted > 0, "no range's first key was deleted: the test did not reach the case");
      },
    );
  }
}

for (const backend of ALL_BACKENDS) {
  for (const type of LIVE_TYPES) {
    bpfTest(
      `batch: keys deleted and written between calls; stable keys come once, repeats are dropped [${type}, ${backend}]`,
      async () => {
        using map = liveMap(type, backend);
        const visits = new Visits();
        let next = STABLE + TRANSIENT;
        const result = await dumpMap(map, {
          method: "batch",
          chunk: 16,
          visit: (batch) => {
            visits.add(batch);
            // Transient keys seen are deleted and written again (perhaps ahead of the
            // walk), and new ones come and go (more come than go: the count moves).
            for (let i = 0; i < batch.count; i++) {
              const key = u32At(batch.keys, i);
              if (key < STABLE) continue;
              map.delete(u32Bytes(key));
              map.update(u32Bytes(key), valueFor(map, key));
              map.update(u32Bytes(next), valueFor(map, next));
              if (next % 2) map.delete(u32Bytes(next - 5));
              next++;
            }
          },
        });
        visits.assertStableOnce("batch dump");
        assertChangedVerdict(result, "batch dump");
      },
    );
  }
}

bpfTest("a still map is verified by the per-entry, batch and parallel walks", async () => {
  for (const method of ["normal", "batch", "parallel"] as DumpMethod[]) {
    using map = liveMap("hash", "syscall");
    assertStillVerified(await dumpMap(map, { method, ranges: 2 }), method);
  }
});

facilityTest(
  import.meta.url,
  "a still map is verified by bpf_iter; on a written map it says what it cannot promise",
  methodFacilities("iter", MapType.hash),
  async () => {
    using still = liveMap("hash", "syscall");
    assertStillVerified(await dumpMap(still, { method: "iter" }), "iter");
    using map = liveMap("hash", "syscall");
    const iter = await dumpMap(map, {
      method: "iter",
      visit: (batch) => {
        for (let i = 0; i < batch.count; i++) {
          const key = u32At(batch.keys, i);
          if (key >= STABLE) map.delete(u32Bytes(key));
        }
      },
    });
    assert.equal(iter.stableOnce, false);
    assert.equal(iter.changed, true);
    assert.match(verdict(iter), /iter does not promise keys present throughout once/);
  },
);

/** A dump of a still map: unchanged, verified, no repeats, against a count it names. */
function assertStillVerified(still: DumpResult, method: string): void {
  assert.equal(still.changed, false, method);
  assert.equal(still.verified, true, `${method}: ${verdict(still)}`);
  assert.equal(still.duplicates, 0, method);
  assert.match(
    verdict(still),
    new RegExp(`^Verified: every key once, 3400 distinct \\(${countOf(3400)}\\)$`),
  );
}
