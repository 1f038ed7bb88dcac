/**
 * The parallel batch dump: the map's cursor space is split into disjoint ranges, and each
 * range is walked with LOOKUP_BATCH at the same time as the others, as nonblocking libbpf
 * calls (each runs on a thread of its own and returns `-errno`, so no errno is needed).
 * The kernel writes straight into buffers this thread owns: nothing is copied per entry.
 *
 * Where a range ends, exactly:
 * - Arrays: the cursor is a key (`in_batch` is the last key read), so a range `[start, end)`
 *   asks for at most `end - next` entries per call and never reads past its end.
 * - Hash maps: the cursor is a bucket index (`roundup_pow_of_two(max_entries)` buckets) and
 *   a call copies whole buckets in order until the chunk is full; `out_batch` is the first
 *   bucket it did not copy. A call whose `out_batch` is past the range's end may have copied
 *   buckets of the next range, or only skipped empty ones: the entries cannot tell. So each
 *   range learns the first key of the walk that starts at its end (the next range's first
 *   entry, its *marker*); in its last call, what comes from the marker on belongs to the
 *   next ranges and is dropped. Shrinking the chunk until `out_batch <= end` would lose
 *   entries instead.
 *
 * @module
 */

import { ownedBytes } from "./buffers.ts";
import { BpfCommand, isArray } from "./constants.ts";
import { BpfArgumentError, check, Errno } from "./errors.ts";
import { LIBBPF_BATCH_OPTS, LIBBPF_OPTS_SIZE, writeField } from "./layout.ts";
import { type LibbpfSymbols, libbpfSymbols } from "./libbpf.ts";
import type { BatchView, BpfMap, WalkStats } from "./map.ts";
import { DEFAULT_CHUNK } from "./walk.ts";

/** Options of a parallel dump. */
export interface ParallelOptions {
  /** How many ranges run at once (default: the number of CPUs). */
  ranges?: number;
  /** Entries per call in each range (default 4096). */
  chunk?: number;
}

/** The number of cursor positions of a map: buckets for hash maps, keys for arrays. */
export function cursorSpace(map: BpfMap): number {
  const max = map.info.maxEntries;
  return isArray(map.info.type) ? max : 2 ** Math.ceil(Math.log2(Math.max(max, 1)));
}

/** A batch as a range read it, and whether the call went past the range's end. */
interface RangeBatch extends BatchView {
  /** The call's `out_batch` was past the range's end, or it reached the end of the map. */
  readonly crossed: boolean;
}

/** One range's walk: its buffers, its cursor and its nonblocking calls. */
class RangeWalk {
  readonly #lib: LibbpfSymbols;
  readonly #map: BpfMap;
  readonly #array: boolean;
  readonly #start: number;
  readonly #end: number;
  readonly #inBatch: Uint8Array;
  readonly #outBatch: Uint8Array;
  readonly #count = new Uint32Array(new ArrayBuffer(4));
  readonly #opts = ownedBytes(LIBBPF_OPTS_SIZE.batch);
  #keys!: Uint8Array;
  #values!: Uint8Array;
  #chunk: number;
  #fromStart: boolean;
  #finished = false;
  syscalls = 0;

  constructor(lib: LibbpfSymbols, map: BpfMap, start: number, end: number, chunk: number) {
    this.#lib = lib;
    this.#map = map;
    this.#array = isArray(map.info.type);
    this.#start = start;
    this.#end = end;
    const cursorSize = Math.max(map.keySize, 4);
    this.#inBatch = ownedBytes(cursorSize);
    this.#outBatch = ownedBytes(cursorSize);
    writeField(
      new DataView(this.#opts.buffer),
      LIBBPF_BATCH_OPTS.fields.sz,
      BigInt(LIBBPF_OPTS_SIZE.batch),
    );
    this.#chunk = Math.max(1, Math.min(chunk, this.#array ? end - start : map.info.maxEntries));
    this.#allocate();
    // Hash maps start at bucket `start`; arrays resume after key `start - 1`.
    const first = this.#array ? start - 1 : start;
    this.#fromStart = first < 0;
    if (!this.#fromStart) new DataView(this.#inBatch.buffer).setUint32(0, first, true);
  }

  /** Stops the walk (its remaining buckets belong to the ranges after it). */
  finish(): void {
    this.#finished = true;
  }

  #allocate(): void {
    this.#keys = ownedBytes(this.#chunk * this.#map.keySize);
    this.#values = ownedBytes(this.#chunk * this.#map.valueBytes);
  }

  /** Makes calls until one returns entries; returns them (views, reused), or null when done. */
  async next(): Promise<RangeBatch | null> {
    while (!this.#finished) {
      const ask = this.#array ? Math.min(this.#chunk, this.#end - this.#nextKey()) : this.#chunk;
      if (ask <= 0) break;
      this.#count[0] = ask;
      const result = await this.#lib.bpf_map_lookup_batch_nonblocking(
        this.#map.fd,
        this.#fromStart ? null : this.#inBatch,
        this.#outBatch,
        this.#keys,
        this.#values,
        this.#count,
        this.#opts,
      );
      this.syscalls++;
      const count = this.#count[0];
      if (result === -Errno.ENOSPC && count === 0) {
        this.#chunk *= 2;
        this.#allocate();
        continue;
      }
      if (result === -Errno.ENOENT) this.#finished = true;
      else check(result, BpfCommand.MAP_LOOKUP_BATCH, { subject: this.#map.subject });
      this.#inBatch.set(this.#outBatch);
      this.#fromStart = false;
      const out = new DataView(this.#outBatch.buffer).getUint32(0, true);
      const crossed = this.#finished || (!this.#array && out > this.#end);
      if (crossed) this.#finished = true;
      if (this.#array && count > 0 && this.#nextKey() >= this.#end) this.#finished = true;
      if (count === 0) continue;
      return {
        keys: this.#keys.subarray(0, count * this.#map.keySize),
        values: this.#values.subarray(0, count * this.#map.valueBytes),
        count,
        crossed,
      };
    }
    this.#finished = true;
    return null;
  }

  /** The array key the next call starts at. */
  #nextKey(): number {
    return this.#fromStart
      ? this.#start
      : new DataView(this.#inBatch.buffer).getUint32(0, true) + 1;
  }
}

/** How many of a batch's entries precede `marker` (all of them when it is absent). */
function countBeforeMarker(batch: BatchView, keySize: number, marker: Uint8Array | null): number {
  if (marker === null) return batch.count;
  const keys = batch.keys;
  for (let i = 0; i < batch.count; i++) {
    let same = true;
    for (let b = 0; b < keySize && same; b++) same = keys[i * keySize + b] === marker[b];
    if (same) return i;
  }
  return batch.count;
}

/** Splits `[0, space)` into `ranges` nearly equal ranges. */
function splitRanges(space: number, ranges: number): [number, number][] {
  return Array.from({ length: ranges }, (_, i) => [
    Math.floor((space * i) / ranges),
    Math.floor((space * (i + 1)) / ranges),
  ]);
}

/**
 * Reads every entry of `map` in `ranges` disjoint ranges at once, calling `visit` with each
 * batch as it arrives (views reused by that range's next call; batches of different ranges
 * interleave). Maps of every type that supports LOOKUP_BATCH; any backend (the calls go
 * through libbpf's nonblocking wrappers).
 *
 * @example
 * ```ts
 * import { BpfMap, forEachBatchParallel } from "../mod.ts";
 * using map = BpfMap.fromPin("/sys/fs/bpf/test_map");
 * const stats = await forEachBatchParallel(map, (batch) => console.log(batch.count), { ranges: 2 });
 * ```
 */
export async function forEachBatchParallel(
  map: BpfMap,
  visit: (batch: BatchView, range: number) => void,
  options: ParallelOptions = {},
): Promise<WalkStats> {
  const space = cursorSpace(map);
  const ranges = options.ranges ?? navigator.hardwareConcurrency;
  if (!Number.isInteger(ranges) || ranges < 1) {
    throw new BpfArgumentError(`Invalid ranges "${ranges}": expected a whole number of at least 1`);
  }
  if (ranges > space) {
    throw new BpfArgumentError(
      `${ranges} ranges for ${map.subject}: it has only ${space} ${
        isArray(map.info.type) ? "keys" : "buckets"
      } to split`,
    );
  }
  const chunk = options.chunk ?? DEFAULT_CHUNK;
  if (!Number.isInteger(chunk) || chunk < 1) throw new BpfArgumentError(`Invalid chunk "${chunk}"`);
  const lib = libbpfSymbols();
  const walks = splitRanges(space, ranges).map(([start, end]) =>
    new RangeWalk(lib, map, start, end, chunk)
  );
  let entries = 0;
  let batches = 0;
  const deliver = (batch: RangeBatch, range: number, marker: Uint8Array | null): void => {
    const kept = batch.crossed ? countBeforeMarker(batch, map.keySize, marker) : batch.count;
    if (kept < batch.count) walks[range].finish();
    if (kept === 0) return;
    entries += kept;
    batches++;
    visit(
      kept === batch.count ? batch : {
        keys: batch.keys.subarray(0, kept * map.keySize),
        values: batch.values.subarray(0, kept * map.valueBytes),
        count: kept,
      },
      range,
    );
  };

  // Each range's first batch starts with the first entry at or after the range's start:
  // that key is the marker of the range before. Arrays need no markers.
  const firsts = await Promise.all(walks.map((walk) => walk.next()));
  const markers = firsts.map((_, i) => {
    const next = firsts[i + 1];
    return isArray(map.info.type) || !next ? null : next.keys.slice(0, map.keySize);
  });
  await Promise.all(walks.map(async (walk, i) => {
    const first = firsts[i];
    if (first) deliver(first, i, markers[i]);
    for (let batch = await walk.next(); batch; batch = await walk.next()) {
      deliver(batch, i, markers[i]);
    }
  }));
  return { entries, syscalls: walks.reduce((n, w) => n + w.syscalls, 0), batches, chunk };
}
