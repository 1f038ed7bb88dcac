/**
 * `ParallelPool`: the Workers that walk ranges of a map for the parallel dumps, each with
 * synchronous LOOKUP_BATCH calls on its own thread (`_parallel_worker.ts`), and the order in
 * which they take range jobs.
 *
 * @module
 */

import { BpfArgumentError } from "../sys/errors.ts";
import { unreadableWorkerFolder } from "../sys/system.ts";
import type { RangeJob, RangeMessage } from "./_parallel_worker.ts";

const WORKER_MODULE = new URL("./_parallel_worker.ts", import.meta.url);

/** Jobs a worker holds at once: the one it walks, and the next, posted while it walks. */
export const JOBS_PER_WORKER = 2;

/**
 * Workers load their modules at run time, which Deno allows only with read access to them:
 * say so plainly rather than let a worker fail to start.
 */
function requireWorkerAccess(): void {
  const folder = unreadableWorkerFolder(WORKER_MODULE);
  if (folder !== undefined) {
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
   * Runs range jobs, delivering every message to `onMessage`. Jobs go out in order, each to
   * the worker with the fewest jobs (each holds at most `JOBS_PER_WORKER`: one running, one
   * waiting, so that it goes on without waiting for this thread), once `admit(its index)`
   * says so (default: at once); `admit` is asked again after every message.
   */
  run(
    jobs: Omit<RangeJob, "job">[],
    onMessage: (message: RangeMessage) => void,
    admit: (index: number) => boolean = () => true,
  ): Promise<void> {
    if (this.#workers.length === 0) throw new Error("The parallel pool is closed");
    const job = this.#nextJob++;
    const workers = this.#workers;
    const held = workers.map(() => 0);
    let next = 0;
    let open = jobs.length;
    const dispatch = () => {
      while (next < jobs.length) {
        const least = held.indexOf(Math.min(...held));
        if (held[least] >= JOBS_PER_WORKER || !admit(next)) return;
        held[least]++;
        workers[least].postMessage({ ...jobs[next++], job });
      }
    };
    return new Promise((resolve, reject) => {
      const handle = (at: number) => (event: MessageEvent<RangeMessage>) => {
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
        held[at]--;
        if (--open === 0) resolve();
        else dispatch();
      };
      for (const [at, worker] of workers.entries()) {
        worker.onmessage = handle(at);
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
