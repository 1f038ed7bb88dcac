/**
 * `RangeSeams` on its own: where the ranges of a parallel walk meet, every key read by more
 * than one range is handed over once, in whatever order the ranges' batches are taken. The
 * batches are made up here, as LOOKUP_BATCH gives them (a range's calls read disjoint bucket
 * spans from its start on, its last one past its end; a key lives in one bucket; a write
 * between two reads of a bucket makes them differ), and taken in thousands of random
 * interleavings, as Workers deliver them out of order, or in order.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type BatchView, RangeSeams } from "../mod.ts";
import { END_OF_MAP } from "../ffi/map/walk.ts";
import { u32At, u32Bytes } from "./_helpers.ts";

const BUCKETS = 40;
const BOUNDS: [number, number][] = [[0, 10], [10, 20], [20, 30], [30, 40]];

/** One call of a range: its bucket span and the keys it read. */
interface Call {
  range: number;
  from: number;
  to: number;
  keys: number[];
}

/** xorshift32, seeded: the same cases every run. */
function random(seed: number): () => number {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

/**
 * Each range's calls (the keys of bucket `b` are `b * 10` to `b * 10 + 2`): spans that chain
 * from its start, the last reaching past its end (to a
 * bucket of a later range, or the end of the map), each reading every key of its buckets
 * with probability 0.6 (the map written between the ranges' reads).
 */
function calls(next: () => number): Call[][] {
  return BOUNDS.map(([start, end], range) => {
    const out: Call[] = [];
    let from = start;
    while (from < end) {
      const last = next() < 0.4;
      const to = last
        ? (next() < 0.2 ? END_OF_MAP : end + 1 + Math.floor(next() * (BUCKETS - end)))
        : Math.min(end, from + 1 + Math.floor(next() * 4));
      const keys: number[] = [];
      for (let b = from; b < Math.min(to, BUCKETS); b++) {
        for (let k = 0; k < 3; k++) if (next() < 0.6) keys.push(b * 10 + k);
      }
      out.push({ range, from, to, keys });
      from = to;
    }
    return out;
  });
}

function batchOf(keys: number[]): BatchView {
  const bytes = u32Bytes(...keys);
  return { keys: bytes, values: new Uint8Array(keys.length * 2), count: keys.length };
}

/** Takes the calls in a random interleaving (each range's in its order); returns the keys handed over. */
function interleave(ranges: Call[][], next: () => number, inOrder: boolean): number[] {
  const seams = new RangeSeams(BOUNDS, 4);
  const handed: number[] = [];
  const at = ranges.map(() => 0);
  const open = () => ranges.map((_, r) => r).filter((r) => at[r] < ranges[r].length);
  for (let left = open(); left.length; left = open()) {
    const range = inOrder ? left[0] : left[Math.floor(next() * left.length)];
    const call = ranges[range][at[range]++];
    const taken = seams.take(range, batchOf(call.keys), call.from, call.to, 2);
    for (let i = 0; i < taken.count; i++) handed.push(u32At(taken.keys, i));
    if (at[range] === ranges[range].length) seams.ended(range);
  }
  return handed;
}

Deno.test("seams: every key read by any range is handed over exactly once, in any order", () => {
  const next = random(0x5eed);
  let dropped = 0;
  for (let round = 0; round < 3000; round++) {
    const ranges = calls(next);
    const read = new Set(ranges.flat().flatMap((call) => call.keys));
    for (const inOrder of [false, true]) {
      const handed = interleave(ranges, next, inOrder);
      const counts = new Map<number, number>();
      for (const key of handed) counts.set(key, (counts.get(key) ?? 0) + 1);
      const twice = [...counts].filter(([, n]) => n > 1).map(([key]) => key);
      const missing = [...read].filter((key) => !counts.has(key));
      assert.deepEqual({ twice, missing }, { twice: [], missing: [] }, `round ${round}`);
      dropped += handed.length < ranges.flat().reduce((n, c) => n + c.keys.length, 0) ? 1 : 0;
    }
  }
  assert.ok(dropped > 1000, `only ${dropped} interleavings had a key read twice`);
});

Deno.test("seams: a last call taken after the next range's batch loses the keys that batch reported, keeps the rest", () => {
  const seams = new RangeSeams(BOUNDS, 4);
  // Range 1 first (out of order), then range 0's last call reads into it: the keys range 1
  // reported are dropped from it, the rest of its keys stay.
  const first = seams.take(1, batchOf([101, 120, 135]), 10, 14, 2);
  assert.equal(first.count, 3);
  const last = seams.take(0, batchOf([52, 101, 111, 135]), 5, 14, 2);
  assert.deepEqual([...Array(last.count)].map((_, i) => u32At(last.keys, i)), [52, 111]);
  assert.equal(seams.dropped, 2);
});
