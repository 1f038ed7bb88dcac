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

import { isArray } from "../sys/constants.ts";
import { BpfArgumentError, BpfError } from "../sys/errors.ts";
import type { BatchView, BpfMap, WalkStats } from "../map/map.ts";
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
  /**
   * Hands batches over in the order one walk of the map gives (see `RangeWalkOptions`),
   * over many small ranges (default `inOrderRanges`), so that little is held back.
   */
  inOrder?: boolean;
}

/** In order, a range covers about this many bytes of entries (what may be held back of it). */
const IN_ORDER_RANGE_BYTES = 4 << 20;

/**
 * How many ranges an in-order walk of `map` takes: ranges of about 4 MiB of entries on a
 * full map, and of at least 16 calls of `chunk` (each range's last call reads past its end).
 */
export function inOrderRanges(map: BpfMap, chunk: number = DEFAULT_CHUNK): number {
  const space = cursorSpace(map);
  const positions = Math.max(
    16 * chunk,
    Math.floor(IN_ORDER_RANGE_BYTES / (map.keySize + map.valueBytes)),
  );
  return Math.max(1, Math.ceil(space / positions));
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
 * import { BpfMap, forEachBatchParallel, ParallelPool } from "../../mod.ts";
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

  /**
   * Runs range jobs, delivering every message to `onMessage`. A job goes to the next idle
   * worker, in order, once `admit(its index)` says so (default: at once); `admit` is asked
   * again after every message.
   */
  run(
    jobs: Omit<RangeJob, "job">[],
    onMessage: (message: RangeMessage) => void,
    admit: (index: number) => boolean = () => true,
  ): Promise<void> {
    if (this.#workers.length === 0) throw new Error("The parallel pool is closed");
    const job = this.#nextJob++;
    const workers = this.#workers;
    const idle = [...workers];
    let next = 0;
    let open = jobs.length;
    const dispatch = () => {
      while (idle.length && next < jobs.length && admit(next)) {
        idle.shift()!.postMessage({ ...jobs[next++], job });
      }
    };
    return new Promise((resolve, reject) => {
      const handle = (worker: Worker) => (event: MessageEvent<RangeMessage>) => {
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
        if (message.kind === "batch") return dispatch();
        idle.push(worker);
        if (--open === 0) resolve();
        else dispatch();
      };
      for (const worker of workers) {
        worker.onmessage = handle(worker);
        worker.onerror = (e) => {
          e.preventDefault();
          reject(new Error(`A parallel dump worker failed: ${e.message}`));
        };
      }
      dispatch();
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
  /** Whether its walk has ended (its worker said "done"). */
  done: boolean;
  /** In order: its batches held until the ranges before it are complete. */
  held: BatchView[];
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

/** Options of `walkRanges`. */
export interface RangeWalkOptions {
  /** Entries per call in each range (default 4096). */
  chunk?: number;
  /** Workers to run the ranges on (default: a pool started for this walk and stopped after it). */
  pool?: ParallelPool;
  /**
   * Hash maps: the key the last range stops before (the first key a walk from its end
   * returns), or `null` (default) when the last range runs to the end of the map.
   */
  endMarker?: Uint8Array | null;
  /**
   * Hears the first key of the ranges taken together (the first key of the first range that
   * has one, or `null` when all are empty) as soon as it is known, before any entry is
   * handed to `visit`. It may walk other parts of the map and hand their entries over first:
   * the workers go on meanwhile.
   */
  onFirstKey?: (key: Uint8Array | null) => void;
  /**
   * Hands batches over in the order of the ranges (a range's batches once every range
   * before it is complete), which is the order one walk of the map gives. Ranges start in
   * order, at most one more than the pool has workers ahead of the first incomplete one, so
   * what is held back stays within a few ranges: walk many small ranges this way.
   */
  inOrder?: boolean;
}

/**
 * Reads the ranges `bounds` (cursor positions `[start, end)`, in order, disjoint, within the
 * map's cursor space) at once, one Worker per range, calling `visit` with each batch as it
 * arrives (its views stay valid; batches of different ranges interleave). Each range of a
 * hash map keeps what precedes the next range's first key (its marker) in its last call.
 */
export async function walkRanges(
  map: BpfMap,
  bounds: readonly (readonly [number, number])[],
  visit: (batch: BatchView, range: number) => void,
  options: RangeWalkOptions = {},
): Promise<WalkStats> {
  const ranges = bounds.length;
  const chunk = options.chunk ?? DEFAULT_CHUNK;
  if (!Number.isInteger(chunk) || chunk < 1) throw new BpfArgumentError(`Invalid chunk "${chunk}"`);
  const array = isArray(map.info.type);
  const { keySize, valueBytes } = map;
  const pool = options.pool ?? await ParallelPool.forRanges(ranges);
  const states: RangeState[] = Array.from({ length: ranges }, () => ({
    done: false,
    held: [],
    // Arrays need no markers.
    marker: array ? null : undefined,
    pending: null,
    started: false,
  }));
  // In order: the first range not yet complete; ranges up to `current + ahead` may run.
  let current = 0;
  const ahead = pool.size + 1;
  const complete = (state: RangeState) =>
    state.done && state.pending === null && state.marker !== undefined;
  const handOver = (batch: BatchView, index: number) => {
    stats.entries += batch.count;
    stats.batches++;
    visit(batch, index);
  };
  // A range may start while fewer than `ahead` ranges before it are incomplete, empty
  // ranges aside (they hold nothing, and a range waits for the next one with a key).
  const admit = (index: number) => {
    let incomplete = 0;
    for (let j = current; j < index; j++) {
      if (!(states[j].done && firstKeys[j] === null)) incomplete++;
    }
    return incomplete < ahead;
  };
  let heldEntries = 0;
  const advance = () => {
    while (current < ranges && complete(states[current])) {
      current++;
      if (current >= ranges) break;
      for (const batch of states[current].held.splice(0)) {
        heldEntries -= batch.count;
        handOver(batch, current);
      }
    }
  };
  const stats: WalkStats & { maxHeld: number } = {
    entries: 0,
    syscalls: 0,
    batches: 0,
    chunk,
    maxHeld: 0,
  };

  // Until the first key is heard, batches wait (`onFirstKey` may hand over entries first).
  let firstKeyHeard = !options.onFirstKey;
  const held: [BatchView, number][] = [];
  const deliver = (batch: BatchView, index: number) => {
    if (!firstKeyHeard) held.push([batch, index]);
    else if (options.inOrder && index !== current) {
      states[index].held.push(batch);
      heldEntries += batch.count;
      stats.maxHeld = Math.max(stats.maxHeld, heldEntries);
    } else handOver(batch, index);
  };
  const deliverCut = (batch: BatchView, index: number, marker: Uint8Array | null) => {
    const kept = countBeforeMarker(batch, keySize, marker);
    if (kept > 0) deliver(keepFirst(batch, kept, keySize, valueBytes), index);
  };
  // The first key of each range, once heard (`null`: the range is empty).
  const firstKeys: (Uint8Array | null | undefined)[] = new Array(ranges).fill(undefined);
  // A range stops before the first key of the next range that has one (an empty range
  // passes on its own marker), the last range before the end marker.
  const resolveMarkers = () => {
    let next: Uint8Array | null | undefined = options.endMarker ?? null;
    for (let j = ranges - 1; j >= 0; j--) {
      const state = states[j];
      if (state.marker === undefined && next !== undefined) {
        state.marker = next;
        if (state.pending) deliverCut(state.pending, j, next);
        state.pending = null;
      }
      const own = firstKeys[j];
      next = own === undefined ? undefined : own ?? next;
    }
  };
  const hearFirstKey = () => {
    let first: Uint8Array | null = null;
    for (const key of firstKeys) {
      if (key === undefined) return; // a range before it has not spoken yet
      if (key !== null) {
        first = key;
        break;
      }
    }
    options.onFirstKey!(first);
    firstKeyHeard = true;
    for (const [batch, at] of held.splice(0)) deliver(batch, at);
  };
  const learnFirstKey = (index: number, firstKey: Uint8Array | null) => {
    firstKeys[index] = firstKey;
    if (!firstKeyHeard) hearFirstKey();
    if (!array) resolveMarkers();
  };

  try {
    const jobs = bounds.map(([start, end], index) => ({
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
        if (!state.started) learnFirstKey(message.index, null);
        state.started = true;
        state.done = true;
        if (options.inOrder) advance();
        return;
      }
      const batch: BatchView = {
        keys: new Uint8Array(message.keys, 0, message.count * keySize),
        values: new Uint8Array(message.values, 0, message.count * valueBytes),
        count: message.count,
      };
      if (!state.started) learnFirstKey(message.index, batch.keys.slice(0, keySize));
      state.started = true;
      if (!message.crossed) deliver(batch, message.index);
      else if (state.marker !== undefined) deliverCut(batch, message.index, state.marker);
      else state.pending = batch;
      if (options.inOrder) advance();
    }, options.inOrder ? admit : undefined);
  } finally {
    if (!options.pool) pool.close();
  }
  if (!options.inOrder) delete (stats as WalkStats).maxHeld;
  return stats;
}

/** The first `count` entries of `batch` (views of its buffers). */
function keepFirst(batch: BatchView, count: number, keySize: number, valueBytes: number) {
  return count === batch.count ? batch : {
    keys: batch.keys.subarray(0, count * keySize),
    values: batch.values.subarray(0, count * valueBytes),
    count,
  };
}

/** Options of `walkRange`. */
export interface RangeOptions {
  /** Entries per call (default 4096). */
  chunk?: number;
  /** The first key a walk from the range's end returned, or `null`: the range runs to the end. */
  endMarker?: Uint8Array | null;
  /**
   * Lets the event loop run after this many milliseconds of walking (default: never), so
   * that messages from Workers walking meanwhile are taken in rather than queued.
   */
  yieldEveryMs?: number;
}

/**
 * Resolves after the event loop has run the tasks already queued (Workers' messages): a
 * message to itself, which costs microseconds where a timer waits a millisecond or more.
 */
function nextTask(): Promise<void> {
  const { port1, port2 } = new MessageChannel();
  return new Promise((resolve) => {
    port1.onmessage = () => {
      port1.close();
      resolve();
    };
    port2.postMessage(null);
  });
}

/**
 * Reads the range `[start, end)` of `map` on this thread with LOOKUP_BATCH, keeping of its
 * last call of a hash map what precedes `endMarker` (the first key a walk from `end`
 * returned; `null`: the range runs to the end of the map). Views are reused by the next batch.
 */
export async function walkRange(
  map: BpfMap,
  range: readonly [number, number],
  visit: (batch: BatchView) => void,
  options: RangeOptions = {},
): Promise<WalkStats> {
  const array = isArray(map.info.type);
  const marker = array ? null : options.endMarker ?? null;
  const batches = map.batches({
    chunk: options.chunk,
    range: { start: range[0], end: range[1], array },
  });
  let entries = 0;
  let handedOut = 0;
  let walked = performance.now();
  for (let step = batches.next();; step = batches.next()) {
    if (step.done) return { ...step.value, entries, batches: handedOut };
    const batch = step.value;
    const kept = batch.crossed ? countBeforeMarker(batch, map.keySize, marker) : batch.count;
    if (kept > 0) {
      entries += kept;
      handedOut++;
      visit(keepFirst(batch, kept, map.keySize, map.valueBytes));
    }
    if (options.yieldEveryMs !== undefined && performance.now() - walked > options.yieldEveryMs) {
      await nextTask();
      walked = performance.now();
    }
  }
}

/**
 * Reads every entry of `map` over disjoint ranges at once, calling `visit` with each batch
 * as it arrives (its views stay valid; batches of different ranges interleave). Every map
 * type that supports LOOKUP_BATCH, on either backend.
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
  const ranges = options.ranges ??
    (options.inOrder
      ? inOrderRanges(map, options.chunk)
      : options.pool?.size ?? navigator.hardwareConcurrency);
  const space = checkRanges(map, ranges);
  return await walkRanges(map, splitRanges(0, space, ranges), visit, options);
}
