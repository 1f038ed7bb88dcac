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
 *   bucket it did not copy. A call whose `out_batch` passes the range's end may have copied
 *   buckets of the next ranges, or only skipped empty ones: its entries cannot tell. But the
 *   first key that a walk from the range's end returns (the next range's first entry: its
 *   *marker*) is where the next range's entries begin, so the range keeps what comes before
 *   the marker in that last call. Shrinking the chunk until `out_batch <= end` would lose
 *   entries instead.
 *
 * @module
 */

import { isArray } from "./constants.ts";
import { BpfArgumentError, BpfError } from "./errors.ts";
import type { BatchView, BpfMap, WalkStats } from "./map.ts";
import type { RangeJob, RangeMessage } from "./_parallel_worker.ts";
import { DEFAULT_CHUNK } from "./walk.ts";

/** Options of a parallel dump. */
export interface ParallelOptions {
  /** How many ranges run at once (default: the pool's size, or the number of CPUs). */
  ranges?: number;
  /** Entries per call in each range (default 4096). */
  chunk?: number;
  /** Workers to run the ranges on (default: a pool started for this dump and stopped after it). */
  pool?: ParallelPool;
}

/** The number of cursor positions of a map: buckets for hash maps, keys for arrays. */
export function cursorSpace(map: BpfMap): number {
  const max = Math.max(map.info.maxEntries, 1);
  return isArray(map.info.type) ? max : 2 ** Math.ceil(Math.log2(max));
}

/** Splits `[0, space)` into `ranges` nearly equal ranges. */
function splitRanges(space: number, ranges: number): [number, number][] {
  return Array.from({ length: ranges }, (_, i) => [
    Math.floor((space * i) / ranges),
    Math.floor((space * (i + 1)) / ranges),
  ]);
}

const WORKER_MODULE = new URL("./_parallel_worker.ts", import.meta.url);

/**
 * Workers load their modules at run time, which Deno allows only with read access to them:
 * say so plainly rather than let a worker fail to start.
 */
function requireWorkerAccess(): void {
  if (WORKER_MODULE.protocol !== "file:") return;
  const folder = new URL(".", WORKER_MODULE).pathname.replace(/\/$/, "");
  if (Deno.permissions.querySync({ name: "read", path: folder }).state !== "granted") {
    throw new Error(
      `The parallel dump runs Workers, which need read access to "${folder}": add --allow-read=${folder} (the deno tasks grant it)`,
    );
  }
}

/**
 * Workers that walk map ranges. Starting one takes tens of milliseconds; keep a pool for
 * repeated dumps. `close()` (or `using`) stops the workers.
 *
 * @example
 * ```ts
 * import { BpfMap, forEachBatchParallel, ParallelPool } from "../mod.ts";
 * using map = BpfMap.fromPin("/sys/fs/bpf/test_map");
 * using pool = await ParallelPool.start(2);
 * await forEachBatchParallel(map, (batch) => console.log(batch.count), { pool });
 * ```
 */
export class ParallelPool implements Disposable {
  readonly #workers: Worker[];
  #nextJob = 1;

  private constructor(workers: Worker[]) {
    this.#workers = workers;
  }

  /** Starts `size` workers (default: the number of CPUs) and waits until they are ready. */
  static async start(size: number = navigator.hardwareConcurrency): Promise<ParallelPool> {
    if (!Number.isInteger(size) || size < 1) {
      throw new BpfArgumentError(
        `Invalid pool size "${size}": expected a whole number of at least 1`,
      );
    }
    requireWorkerAccess();
    const workers = Array.from(
      { length: size },
      () => new Worker(WORKER_MODULE, { type: "module" }),
    );
    await Promise.all(workers.map((worker) =>
      new Promise<void>((resolve, reject) => {
        worker.onmessage = () => resolve();
        worker.onerror = (e) => {
          e.preventDefault();
          reject(new Error(`A parallel dump worker failed to start: ${e.message}`));
        };
      })
    ));
    return new ParallelPool(workers);
  }

  /**
   * Starts the workers `ranges` ranges can use at once: one per range, at most one per CPU
   * (default: one per CPU).
   */
  static forRanges(ranges: number = navigator.hardwareConcurrency): Promise<ParallelPool> {
    return ParallelPool.start(Math.min(ranges, navigator.hardwareConcurrency));
  }

  /** How many workers the pool has. */
  get size(): number {
    return this.#workers.length;
  }

  /** Runs range jobs, each on worker `index % size`, delivering every message to `onMessage`. */
  run(jobs: Omit<RangeJob, "job">[], onMessage: (message: RangeMessage) => void): Promise<void> {
    if (this.#workers.length === 0) throw new Error("The parallel pool is closed");
    const job = this.#nextJob++;
    let open = jobs.length;
    return new Promise((resolve, reject) => {
      const handle = (event: MessageEvent<RangeMessage>) => {
        const message = event.data;
        // After a failure the workers still finish their ranges: drop what they send.
        if (message.job !== job || open < 0) return;
        try {
          onMessage(message);
        } catch (e) {
          open = -1;
          reject(e);
          return;
        }
        if (message.kind !== "batch" && --open === 0) resolve();
      };
      for (const worker of this.#workers) {
        worker.onmessage = handle;
        worker.onerror = (e) => {
          e.preventDefault();
          reject(new Error(`A parallel dump worker failed: ${e.message}`));
        };
      }
      jobs.forEach((range, i) =>
        this.#workers[i % this.#workers.length].postMessage({ ...range, job })
      );
    });
  }

  /** Stops the workers. Safe to call twice. */
  close(): void {
    for (const worker of this.#workers.splice(0)) worker.terminate();
  }

  /** Stops the workers (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** A range's state while its batches come in. */
interface RangeState {
  /** The key its last batch must stop before; `undefined` until the next range has spoken. */
  marker: Uint8Array | null | undefined;
  /** Its last batch, held until the marker is known. */
  pending: BatchView | null;
  /** Whether its first message has arrived. */
  started: boolean;
}

/** How many of a batch's entries precede `marker` (all of them when it is null). */
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

/**
 * Checks that `ranges` can split `map`'s cursor space (at least one position per range);
 * returns the number of positions. Throws `BpfArgumentError` otherwise.
 */
export function checkRanges(map: BpfMap, ranges: number): number {
  const space = cursorSpace(map);
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
  return space;
}

/**
 * Reads every entry of `map` over disjoint ranges at once, calling `visit` with each batch
 * as it arrives (its views stay valid; batches of different ranges interleave). Every map
 * type that supports LOOKUP_BATCH, on either backend.
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
  const ranges = options.ranges ?? options.pool?.size ?? navigator.hardwareConcurrency;
  const space = checkRanges(map, ranges);
  const chunk = options.chunk ?? DEFAULT_CHUNK;
  if (!Number.isInteger(chunk) || chunk < 1) throw new BpfArgumentError(`Invalid chunk "${chunk}"`);
  const array = isArray(map.info.type);
  const { keySize, valueBytes } = map;
  const pool = options.pool ??
    await ParallelPool.forRanges(ranges);
  const states: RangeState[] = Array.from({ length: ranges }, (_, i) => ({
    // Arrays need no markers; the last range runs to the end of the map.
    marker: array || i === ranges - 1 ? null : undefined,
    pending: null,
    started: false,
  }));
  const stats = { entries: 0, syscalls: 0, batches: 0, chunk };

  const deliver = (batch: BatchView, index: number) => {
    stats.entries += batch.count;
    stats.batches++;
    visit(batch, index);
  };
  const deliverCut = (batch: BatchView, index: number, marker: Uint8Array | null) => {
    const kept = countBeforeMarker(batch, keySize, marker);
    if (kept > 0) {
      deliver({
        keys: batch.keys.subarray(0, kept * keySize),
        values: batch.values.subarray(0, kept * valueBytes),
        count: kept,
      }, index);
    }
  };
  // The first message of range `index` tells the range before it where to stop.
  const learnMarker = (index: number, firstKey: Uint8Array | null) => {
    if (index === 0 || array) return;
    const before = states[index - 1];
    before.marker = firstKey;
    if (before.pending) deliverCut(before.pending, index - 1, firstKey);
    before.pending = null;
  };

  try {
    const jobs = splitRanges(space, ranges).map(([start, end], index) => ({
      index,
      fd: map.fd,
      backend: map.backend,
      keySize,
      valueBytes,
      maxEntries: map.info.maxEntries,
      subject: map.subject,
      chunk,
      range: { start, end, array },
    }));
    await pool.run(jobs, (message) => {
      const state = states[message.index];
      if (message.kind === "error") {
        throw message.errno === undefined ? new Error(message.message) : new BpfError({
          errno: message.errno,
          command: message.command ?? "LOOKUP_BATCH",
          subject: map.subject,
        });
      }
      if (message.kind === "done") {
        stats.syscalls += message.syscalls;
        if (!state.started) learnMarker(message.index, null);
        state.started = true;
        return;
      }
      const batch: BatchView = {
        keys: new Uint8Array(message.keys, 0, message.count * keySize),
        values: new Uint8Array(message.values, 0, message.count * valueBytes),
        count: message.count,
      };
      if (!state.started) learnMarker(message.index, batch.keys.slice(0, keySize));
      state.started = true;
      if (!message.crossed) deliver(batch, message.index);
      else if (state.marker !== undefined) deliverCut(batch, message.index, state.marker);
      else state.pending = batch;
    });
  } finally {
    if (!options.pool) pool.close();
  }
  return stats;
}
