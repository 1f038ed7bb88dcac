/**
 * The parallel batch dump: the map's cursor space is split into disjoint ranges, each range
 * is walked by a Worker with synchronous LOOKUP_BATCH calls (on the map's backend, errno
 * read on the worker's own thread), and every batch comes back to this thread in buffers
 * the worker transfers: nothing is copied.
 *
 * Where a range ends, exactly:
 * - Arrays: the cursor is a key (`in_batch` is the last key read), so a range `[start, end)`
 *   asks for at most `end - next` entries per call and never reads past its end.
 * - Hash maps: the cursor is a bucket index (`roundup_pow_of_two(max_entries)` buckets) and
 *   a call copies whole buckets in order until the chunk is full; `out_batch` is the first
 *   bucket it did not copy. A range's last call may read on into the next ranges (its entries
 *   cannot tell where the range ended; shrinking the chunk until `out_batch <= end` would lose
 *   entries instead), and `RangeSeams` hands each key read twice there over once.
 *
 * @module
 */

import { isArray } from "../sys/constants.ts";
import { BpfArgumentError, BpfError } from "../sys/errors.ts";
import type { BatchView, BpfMap, WalkStats } from "../map/map.ts";
import { DEFAULT_CHUNK } from "../map/walk.ts";
import type { RangeMessage } from "./_parallel_worker.ts";
import { JOBS_PER_WORKER, ParallelPool } from "./pool.ts";
import { RangeSeams } from "./seams.ts";

/** Options of a parallel dump. */
export interface ParallelOptions {
  /**
   * How many ranges the cursor space is split into, at least (default: the pool's size, or
   * the number of CPUs). Large maps are split further, into ranges of about 4 MiB of entries
   * (`rangeBounds`): what a walk keeps while its ranges meet stays that small.
   */
  ranges?: number;
  /** Entries per call in each range (default 4096). */
  chunk?: number;
  /** Workers to run the ranges on (default: a pool started for this dump and stopped after it). */
  pool?: ParallelPool;
  /** Hands batches over in the order one walk of the map gives (see `RangeWalkOptions`). */
  inOrder?: boolean;
}

/**
 * A range covers about this many bytes of what a walk may keep of it: its entries, held back
 * in order; only its keys, kept out of order where ranges meet.
 */
const RANGE_BYTES = 4 << 20;

/**
 * The ranges a parallel walk of `map` reads, over the cursor positions `[start, end)` (default:
 * all of them): `atLeast` of them, or on large maps a multiple of it, so that a range covers
 * about 4 MiB of entries of a full map (`inOrder`: they may be held back) or of keys (else:
 * they may be kept where ranges meet), and at least 16 calls of `chunk` (each range's last
 * call reads past its end). Throws `BpfArgumentError` when `atLeast` is not a whole number
 * from 1 to the number of positions.
 */
export function rangeBounds(
  map: BpfMap,
  { atLeast = 1, chunk = DEFAULT_CHUNK, start = 0, end = cursorSpace(map), inOrder = false }: {
    atLeast?: number;
    chunk?: number;
    start?: number;
    end?: number;
    inOrder?: boolean;
  } = {},
): [number, number][] {
  checkRanges(map, atLeast, end - start);
  const kept = inOrder ? map.keySize + map.valueBytes : map.keySize;
  const positions = Math.max(16 * chunk, Math.floor(RANGE_BYTES / kept));
  // A multiple of `atLeast` (one range per Worker, by default), so that the Workers end
  // together rather than one walking the last range alone.
  const ranges = atLeast * Math.ceil(Math.ceil((end - start) / positions) / atLeast);
  return splitRanges(start, end, Math.min(Math.max(atLeast, ranges), end - start));
}

/** The number of cursor positions of a map: buckets for hash maps, keys for arrays. */
export function cursorSpace(map: BpfMap): number {
  const max = Math.max(map.info.maxEntries, 1);
  return isArray(map.info.type) ? max : 2 ** Math.ceil(Math.log2(max));
}

/** Splits `[start, end)` into `ranges` nearly equal ranges. */
export function splitRanges(start: number, end: number, ranges: number): [number, number][] {
  const space = end - start;
  return Array.from({ length: ranges }, (_, i) => [
    start + Math.floor((space * i) / ranges),
    start + Math.floor((space * (i + 1)) / ranges),
  ]);
}

/**
 * Checks that `ranges` can split `map`'s cursor space, or `positions` of it (at least one
 * position per range); returns the number of positions of the whole space. Throws
 * `BpfArgumentError` otherwise.
 */
export function checkRanges(map: BpfMap, ranges: number, positions?: number): number {
  const space = cursorSpace(map);
  if (!Number.isInteger(ranges) || ranges < 1) {
    throw new BpfArgumentError(`Invalid ranges "${ranges}": expected a whole number of at least 1`);
  }
  if (ranges > (positions ?? space)) {
    throw new BpfArgumentError(
      `${ranges} ranges for ${map.subject}: it has only ${positions ?? space} ${
        isArray(map.info.type) ? "keys" : "buckets"
      } to split`,
    );
  }
  return space;
}

/** Options of `walkRanges`. */
export interface RangeWalkOptions {
  /** Entries per call in each range (default 4096). */
  chunk?: number;
  /** Workers to run the ranges on (default: a pool started for this walk and stopped after it). */
  pool?: ParallelPool;
  /**
   * Hears the first key of the ranges taken together (the first key of the first range that
   * has one, or `null` when all are empty) as soon as it is known, before any entry is
   * handed to `visit`. It may walk other parts of the map and hand their entries over first:
   * the workers go on meanwhile.
   */
  onFirstKey?: (key: Uint8Array | null) => void;
  /**
   * Hands batches over in the order of the ranges (a range's batches once every range
   * before it is complete), which is the order one walk of the map gives. Either way, ranges
   * start in order, at most two per worker from the first that has not ended, so what is
   * held back (in order) or kept (keys where ranges meet) stays within a few ranges: walk many
   * small ranges (`rangeBounds`).
   */
  inOrder?: boolean;
}

/** A batch as a range read it: the entries of buckets `[from, to)` (see `BatchWalker`). */
interface ReadBatch {
  batch: BatchView;
  from: number;
  to: number;
}

/** One range's progress in a walk. */
interface RangeProgress {
  /** Batches read and not handed over yet. */
  waiting: ReadBatch[];
  /** Whether its worker has finished reading it. */
  done: boolean;
  /** Whether it is done and all it read was handed over. */
  ended: boolean;
  /** Its first key, once heard (`null`: it read nothing). */
  firstKey: Uint8Array | null | undefined;
}

/** Walk figures, with the most entries held back at once (in order). */
type RangeWalkStats = WalkStats & { maxHeld: number; repeatsDropped: number };

/**
 * One walk of ranges over a pool: what each range has read, handed over to `visit` as soon
 * as it may go (once the first key is heard; in order, once the ranges before are complete),
 * each key read where two ranges meet once (`RangeSeams`).
 */
class RangeWalk {
  readonly stats: RangeWalkStats;
  readonly #map: BpfMap;
  readonly #bounds: readonly (readonly [number, number])[];
  readonly #visit: (batch: BatchView, range: number) => void;
  readonly #options: RangeWalkOptions;
  readonly #ranges: RangeProgress[];
  readonly #seams: RangeSeams | null;
  /** The first range that has not ended. */
  #firstRunning = 0;
  #firstKeyHeard: boolean;
  /** Entries read and not handed over yet. */
  #held = 0;
  /** Out of order: the ranges that read or finished since the last hand-over. */
  readonly #touched = new Set<number>();

  constructor(
    map: BpfMap,
    bounds: readonly (readonly [number, number])[],
    visit: (batch: BatchView, range: number) => void,
    options: RangeWalkOptions,
    chunk: number,
  ) {
    this.#map = map;
    this.#bounds = bounds;
    this.#visit = visit;
    this.#options = options;
    this.#ranges = bounds.map(() => ({
      waiting: [],
      done: false,
      ended: false,
      firstKey: undefined,
    }));
    // Array ranges never read past their ends: nothing to meet.
    this.#seams = isArray(map.info.type) ? null : new RangeSeams(bounds, map.keySize);
    this.#firstKeyHeard = !options.onFirstKey;
    this.stats = { entries: 0, syscalls: 0, batches: 0, chunk, maxHeld: 0, repeatsDropped: 0 };
  }

  /** Runs every range on `pool`; resolves when all were handed over. */
  async run(pool: ParallelPool): Promise<void> {
    const map = this.#map;
    const array = isArray(map.info.type);
    const jobs = this.#bounds.map(([start, end], index) => ({
      index,
      fd: map.fd,
      backend: map.backend,
      keySize: map.keySize,
      valueBytes: map.valueBytes,
      maxEntries: map.info.maxEntries,
      subject: map.subject,
      chunk: this.stats.chunk,
      range: { start, end, array },
    }));
    const ahead = JOBS_PER_WORKER * pool.size;
    await pool.run(jobs, (message) => this.#receive(message), (index) => this.#admit(index, ahead));
    this.stats.repeatsDropped = this.#seams?.dropped ?? 0;
  }

  /**
   * Whether range `index` may start: fewer than `ahead` ranges from the first that has not
   * ended up to it read something (in order, what they read waits for that first one; out of
   * order, their keys are kept until it ends, where ranges meet), ranges that read nothing
   * aside.
   */
  #admit(index: number, ahead: number): boolean {
    let before = 0;
    for (let j = this.#firstRunning; j < index; j++) {
      const range = this.#ranges[j];
      if (!(range.done && range.firstKey === null)) before++;
    }
    return before < ahead;
  }

  #receive(message: RangeMessage): void {
    const map = this.#map;
    if (message.kind === "error") {
      throw message.errno === undefined ? new Error(message.message) : new BpfError({
        errno: message.errno,
        command: message.command ?? "LOOKUP_BATCH",
        subject: map.subject,
      });
    }
    const range = this.#ranges[message.index];
    if (message.kind === "done") {
      this.stats.syscalls += message.syscalls;
      if (range.firstKey === undefined) this.#learnFirstKey(message.index, null);
      range.done = true;
      this.#touched.add(message.index);
      this.#flush();
      return;
    }
    const batch: BatchView = {
      keys: new Uint8Array(message.keys, 0, message.count * map.keySize),
      values: new Uint8Array(message.values, 0, message.count * map.valueBytes),
      count: message.count,
    };
    range.waiting.push({ batch, from: message.from, to: message.to });
    this.#touched.add(message.index);
    this.#held += batch.count;
    if (range.firstKey === undefined) {
      this.#learnFirstKey(message.index, batch.keys.slice(0, map.keySize));
    }
    this.#flush();
  }

  /**
   * Hands over what may go: nothing until the first key is heard; then, in order, the
   * batches of the first range that has not ended, and of the next once it ends; else the
   * batches of every range that read since. A range that is done with nothing waiting has
   * ended.
   */
  #flush(): void {
    if (!this.#firstKeyHeard) return;
    const ranges = this.#ranges;
    if (this.#options.inOrder) {
      for (; this.#firstRunning < ranges.length; this.#firstRunning++) {
        this.#handOverWaiting(this.#firstRunning);
        if (!ranges[this.#firstRunning].done) break;
        this.#end(this.#firstRunning);
      }
    } else {
      for (const index of this.#touched) {
        this.#handOverWaiting(index);
        if (ranges[index].done) this.#end(index);
      }
      while (this.#firstRunning < ranges.length && ranges[this.#firstRunning].ended) {
        this.#firstRunning++;
      }
    }
    this.#touched.clear();
    this.stats.maxHeld = Math.max(this.stats.maxHeld, this.#held);
  }

  #handOverWaiting(index: number): void {
    const range = this.#ranges[index];
    if (range.waiting.length) {
      for (const read of range.waiting.splice(0)) this.#handOver(index, read);
    }
  }

  #handOver(index: number, read: ReadBatch): void {
    const map = this.#map;
    this.#held -= read.batch.count;
    const batch = this.#seams
      ? this.#seams.take(index, read.batch, read.from, read.to, map.valueBytes)
      : read.batch;
    if (batch.count === 0) return;
    this.stats.entries += batch.count;
    this.stats.batches++;
    this.#visit(batch, index);
  }

  #end(index: number): void {
    this.#ranges[index].ended = true;
    this.#seams?.ended(index);
  }

  /**
   * Range `index`'s first key is known (`null`: it read nothing): the first key of the ranges
   * taken together is heard once every range before the first that has one has spoken.
   */
  #learnFirstKey(index: number, key: Uint8Array | null): void {
    this.#ranges[index].firstKey = key;
    if (this.#firstKeyHeard) return;
    let first: Uint8Array | null = null;
    for (const range of this.#ranges) {
      if (range.firstKey === undefined) return; // a range before has not spoken yet
      if (range.firstKey !== null) {
        first = range.firstKey;
        break;
      }
    }
    this.#options.onFirstKey!(first);
    this.#firstKeyHeard = true;
  }
}

/**
 * Reads the ranges `bounds` (cursor positions `[start, end)`, in order, disjoint, within the
 * map's cursor space) at once on Workers, calling `visit` with each batch as it may go (its
 * views stay valid; out of order, batches of different ranges interleave). Where ranges of a
 * hash map meet, a key both read is handed over once (`RangeSeams`).
 */
export async function walkRanges(
  map: BpfMap,
  bounds: readonly (readonly [number, number])[],
  visit: (batch: BatchView, range: number) => void,
  options: RangeWalkOptions = {},
): Promise<WalkStats> {
  const chunk = options.chunk ?? DEFAULT_CHUNK;
  if (!Number.isInteger(chunk) || chunk < 1) throw new BpfArgumentError(`Invalid chunk "${chunk}"`);
  const walk = new RangeWalk(map, bounds, visit, options, chunk);
  const pool = options.pool ?? await ParallelPool.forRanges(bounds.length);
  try {
    await walk.run(pool);
  } finally {
    if (!options.pool) pool.close();
  }
  const { maxHeld: _maxHeld, ...stats } = walk.stats;
  return options.inOrder ? walk.stats : stats;
}

/**
 * Reads every entry of `map` over disjoint ranges at once, calling `visit` with each batch
 * as it arrives (its views stay valid; out of order, batches of different ranges
 * interleave). Every map type that supports LOOKUP_BATCH, on either backend. No key comes
 * twice, and every key present throughout comes once, whatever is written meanwhile (see
 * `RangeSeams`).
 *
 * @example
 * ```ts
 * import { BpfMap, forEachBatchParallel } from "../../mod.ts";
 * using map = BpfMap.fromPin("/sys/fs/bpf/test_map");
 * const stats = await forEachBatchParallel(map, (batch) => console.log(batch.count), { ranges: 2 });
 * ```
 */
export async function forEachBatchParallel(
  map: BpfMap,
  visit: (batch: BatchView, range: number) => void,
  options: ParallelOptions = {},
): Promise<WalkStats> {
  // One range per Worker at least, unless the map has fewer buckets (or keys) than that.
  const atLeast = options.ranges ??
    Math.min(options.pool?.size ?? navigator.hardwareConcurrency, cursorSpace(map));
  const bounds = rangeBounds(map, { atLeast, chunk: options.chunk, inOrder: options.inOrder });
  return await walkRanges(map, bounds, visit, options);
}
