/**
 * Writing a large restore in parts at once: one part per CPU (at most `MAX_PARTS`), the
 * restoring thread writing the first and a Worker (`_restore_worker.ts`) each other, all with
 * `UPDATE_BATCH` (`writeBatches`). The Workers get views of the entries' `SharedArrayBuffer`,
 * so nothing is copied, and are started early (`PartWriters.start`), to load while the
 * restore reads its input and creates the map. Where the parts may be split is the caller's
 * rule (`restoreMap`).
 *
 * @module
 */

import type { BpfMap } from "../map/map.ts";
import { backend } from "../sys/backends.ts";
import { unreadableWorkerFolder } from "../sys/system.ts";
import { type BatchPart, type PartOutcome, writeBatches } from "./_batch_write.ts";
import type { PartJob, PartMessage } from "./_restore_worker.ts";
import { nearestBoundary } from "./format.ts";

const WORKER_MODULE = new URL("./_restore_worker.ts", import.meta.url);

/**
 * Parts written at once at most, whatever the CPUs: the threads share one map's free list and
 * bucket locks, so more would gain less each. (Measured here on two CPUs only.)
 */
export const MAX_PARTS = 4;

/**
 * Entries a part has at least. A Worker takes 10 to 25 ms to start (hidden in part behind
 * laying the entries out and creating the map), and `UPDATE_BATCH` writes 3 to 5 u32 entries
 * a microsecond into a hash map. Measured here (2 CPUs, whole `map restore` processes, u32
 * entries, new or existing hash map): two parts lose 4 to 13 ms at 65,536 and 131,072
 * entries and win 8 ms at 262,144; they pay from about 200,000.
 */
export const PART_MIN = 100_000;

/**
 * How many parts to write `count` entries in: one per CPU, at most `MAX_PARTS`, each of at
 * least `PART_MIN` entries (1: write from this thread only).
 *
 * @example
 * ```ts
 * import { partCount } from "./_parallel_write.ts";
 * console.log(partCount(1_000_000, 2), partCount(10_000, 8)); // 2 1
 * ```
 */
export function partCount(count: number, cpus: number = navigator.hardwareConcurrency): number {
  return Math.max(1, Math.min(cpus, MAX_PARTS, Math.floor(count / PART_MIN)));
}

/**
 * Where each of `parts` parts of `count` entries starts (the first at 0): as near to equal as
 * `boundaries` allow, each at the boundary nearest to its equal share, or anywhere without
 * them. Boundaries that would leave a part empty are skipped, so fewer parts may come back.
 *
 * @example
 * ```ts
 * import { partStarts } from "./_parallel_write.ts";
 * console.log(partStarts(100, 2), partStarts(100, 2, [10, 45, 80])); // [0, 50] [0, 45]
 * ```
 */
export function partStarts(count: number, parts: number, boundaries?: readonly number[]): number[] {
  const starts = [0];
  for (let k = 1; k < parts; k++) {
    const goal = Math.round((count * k) / parts);
    const at = boundaries ? nearestBoundary(boundaries, goal) : goal;
    if (at !== undefined && at > starts[starts.length - 1] && at < count) starts.push(at);
  }
  return starts;
}

/**
 * Whether Workers can load here: Deno loads their modules at run time, which needs read
 * access to them (the `map` task grants it). Without it, a restore writes from one thread.
 */
function workersAllowed(): boolean {
  return unreadableWorkerFolder(WORKER_MODULE) === undefined;
}

/** Resolves on the Worker's `ready` message; rejects if it fails to load. */
function loaded(worker: Worker): Promise<void> {
  return new Promise((resolve, reject) => {
    worker.onmessage = () => resolve();
    worker.onerror = (e) => {
      e.preventDefault();
      reject(new Error(e.message));
    };
  });
}

/** Posts `job` to `worker`; resolves with its outcome, rejects with what stopped it otherwise. */
function written(worker: Worker, job: PartJob): Promise<PartOutcome> {
  return new Promise((resolve, reject) => {
    worker.onmessage = (event: MessageEvent<PartMessage>) => {
      const message = event.data;
      if (message.kind === "done") resolve(message.outcome);
      else if (message.kind === "error") reject(new Error(message.message));
    };
    worker.onerror = (e) => {
      e.preventDefault();
      reject(new Error(e.message));
    };
    worker.postMessage(job);
  });
}

/**
 * The Workers that write all parts of a restore but the first. `start` returns at once: they
 * load meanwhile. `close()` (or `using`) stops them.
 *
 * @example
 * ```ts
 * import { BpfMap } from "../../mod.ts";
 * import { PartWriters } from "./_parallel_write.ts";
 * using map = BpfMap.create({ type: "hash", keySize: 4, valueSize: 4, maxEntries: 1 << 17 });
 * const keys = new Uint8Array(new SharedArrayBuffer(4 << 17));
 * new Uint32Array(keys.buffer).forEach((_, i, a) => (a[i] = i));
 * using writers = PartWriters.start(1);
 * const part = { keys, values: keys, count: 1 << 17, keySize: 4, valueBytes: 4 };
 * if (writers && await writers.ready()) console.log(await writers.write(map, part, [0, 1 << 16], 1 << 20));
 * ```
 */
export class PartWriters implements Disposable {
  readonly #workers: Worker[];
  readonly #ready: Promise<boolean>;

  private constructor(count: number) {
    this.#workers = Array.from(
      { length: count },
      () => new Worker(WORKER_MODULE, { type: "module" }),
    );
    this.#ready = Promise.all(this.#workers.map(loaded)).then(() => true, () => false);
  }

  /** Starts `count` Workers, or returns `undefined` when Workers cannot load here. */
  static start(count: number): PartWriters | undefined {
    return count > 0 && workersAllowed() ? new PartWriters(count) : undefined;
  }

  /** Waits until every Worker has loaded: false when one could not (write from one thread). */
  ready(): Promise<boolean> {
    return this.#ready;
  }

  /** How many Workers there are: the parts they can write besides this thread's. */
  get size(): number {
    return this.#workers.length;
  }

  /**
   * Writes `entries` into `map` in parts starting at `starts` (at most one more than the
   * Workers), all at once: this thread writes the first, the Workers the others. Each part
   * stops at its first refusal, and makes the others stop before their next call. Resolves
   * with each part's outcome once all are done.
   */
  async write(
    map: BpfMap,
    entries: BatchPart,
    starts: readonly number[],
    chunk: number,
  ): Promise<PartOutcome[]> {
    const halt = new Int32Array(new SharedArrayBuffer(4));
    const parts = starts.map((start, i) => slice(entries, start, starts[i + 1] ?? entries.count));
    const others = parts.slice(1).map((part, i) =>
      written(this.#workers[i], {
        ...part,
        keys: shared(part.keys),
        values: shared(part.values),
        index: i + 1,
        fd: map.fd,
        backend: map.backend,
        chunk,
        halt,
      })
    );
    const first = writeBatches(backend(map.backend), map.fd, parts[0], chunk, halt);
    const settled = await Promise.allSettled(others);
    const failed = settled.find((s) => s.status === "rejected");
    if (failed) {
      throw new Error(
        `A restore Worker failed (${failed.reason.message}): its part may be written in part`,
      );
    }
    return [first, ...settled.map((s) => (s as PromiseFulfilledResult<PartOutcome>).value)];
  }

  /** Stops the Workers. Safe to call twice. */
  close(): void {
    for (const worker of this.#workers.splice(0)) worker.terminate();
  }

  /** Stops the Workers (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * `bytes` when they lie in a `SharedArrayBuffer` (posted to a Worker, it shares them), else a
 * copy in one (posting a view of an `ArrayBuffer` would copy its whole buffer).
 */
function shared(bytes: Uint8Array): Uint8Array {
  if (bytes.buffer instanceof SharedArrayBuffer) return bytes;
  const copy = new Uint8Array(
    new SharedArrayBuffer(Math.max(bytes.byteLength, 1)),
    0,
    bytes.byteLength,
  );
  copy.set(bytes);
  return copy;
}

/** Entries `[start, end)` of `entries`, as views. */
function slice(entries: BatchPart, start: number, end: number): BatchPart {
  const { keySize, valueBytes } = entries;
  return {
    keys: entries.keys.subarray(start * keySize, end * keySize),
    values: entries.values.subarray(start * valueBytes, end * valueBytes),
    count: end - start,
    keySize,
    valueBytes,
  };
}
