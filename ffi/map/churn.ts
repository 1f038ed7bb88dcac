/**
 * Churn writers: write a map while it is read, for studies and tests of live maps. Each
 * writer runs on a Worker of its own (so that the thread that dumps is free), inserts and
 * deletes transient keys and rewrites their values, at a target rate or flat out, and never
 * touches the stable keys below the transient range (unless asked to rewrite their values:
 * then their values only, never the keys):
 *
 * - `startUserChurn`: a user-space writer, UPDATE_ELEM and DELETE_ELEM system calls through
 *   the toolkit, one per operation;
 * - `startKernelChurn`: a kernel writer, `bpf/churn_writer.bpf.c` (a syscall program loaded on
 *   the map) run with `BPF_PROG_TEST_RUN`, many operations per run, as a datapath program
 *   writes a conntrack map.
 *
 * Operations, per random number: a quarter insert a transient key (BPF_ANY), a quarter
 * delete one, a quarter rewrite one's value (BPF_EXIST), and the last quarter rewrite a
 * stable key's value (BPF_EXIST) with `rewriteStable`, else insert or delete. About half the
 * transient keys are present at any time. Or, with the `window` pattern (user writer), each
 * transient key in turn is inserted and deleted `count / 2` inserts later, as a flow table
 * ages its entries out. Keys are their number as a little-endian u32 in
 * the first 4 bytes, the rest zero; values hold the writer's operation counter in their
 * first 4 bytes, the rest zero (kernel writer on per-CPU maps: the running CPU's slot).
 *
 * @module
 */

import { MapType, mapTypeName } from "../sys/constants.ts";
import { BpfArgumentError, BpfError } from "../sys/errors.ts";
import { type Facility, requireFacilities } from "../sys/features.ts";
import type { ChurnJob, ChurnMessage } from "./_churn_worker.ts";
import { BpfMap } from "./map.ts";
import { builtObjectPath } from "./object.ts";

/** What a churn writer writes, and how fast. */
export interface ChurnOptions {
  /** Transient keys are numbers in `[first, first + count)`: never the stable keys. */
  first: number;
  /** How many transient key numbers there are (at least 1). */
  count: number;
  /** Target operations per second, or `"max"` (flat out). */
  rate: number | "max";
  /**
   * Also rewrite the values of the stable key numbers `[0, rewriteStable)` (keys stay: the
   * writes use BPF_EXIST). At most `first`. Default 0: no stable key is touched.
   */
  rewriteStable?: number;
  /**
   * Transient keys to aim at, if given (e.g. keys in the buckets around parallel range
   * boundaries): the writer inserts, deletes and rewrites only these, each a number in
   * `[first, first + count)`.
   */
  aim?: number[];
  /**
   * What the writer does: `random` (default; the operations above, on random transient keys)
   * or `window`, user writer only: inserts the transient keys in turn and deletes each one
   * `count / 2` inserts later (every other operation an insert, then a delete), as a flow
   * table ages its entries out: about half the transient keys are present, each for the same
   * time, and the map's count stays all but still. Not with `aim` or `rewriteStable`.
   */
  pattern?: ChurnPattern;
}

/** What a churn writer does (see `ChurnOptions.pattern`). */
export type ChurnPattern = "random" | "window";

/** What a writer did, from its first operation to its stop. */
export interface ChurnResult {
  /** Operations done (inserts, deletes and rewrites, whether or not the key was there). */
  operations: number;
  /** Seconds from the first operation to the stop. */
  seconds: number;
  /** Operations per second achieved. */
  rate: number;
  /**
   * Writes the kernel refused: the map full (or out of memory), or, from user space, a bucket
   * busy with another writer (EAGAIN, EBUSY). 0 normally.
   */
  failed: number;
}

/** A running writer. `stop()` (or `await using`) ends it and its Worker. */
export interface Churner extends AsyncDisposable {
  /** Which writer this is. */
  readonly writer: "user" | "kernel";
  /**
   * Stops the writer (within a millisecond or so of work in flight) and its Worker, and
   * says what it did. Rejects with the error that ended the writer early, if one did. Safe
   * to call twice (the same promise).
   */
  stop(): Promise<ChurnResult>;
}

/** The map types a writer can churn: the hash family (arrays cannot delete keys). */
const CHURN_TYPES: readonly number[] = [
  MapType.hash,
  MapType.lru_hash,
  MapType.percpu_hash,
  MapType.lru_percpu_hash,
];
/** What the kernel writer needs of the kernel: a syscall program that loops with `bpf_loop`. */
export const KERNEL_WRITER_FACILITIES: readonly Facility[] = ["syscall_programs", "loop"];

/** How long a writer may take to start (the kernel writer loads a program). */
const START_TIMEOUT_MS = 10_000;
/** How long a writer may take to stop before its Worker is terminated regardless. */
const STOP_TIMEOUT_MS = 2_000;
const MAX_U32 = 0xffff_ffff;
/**
 * The worker's `STOP_FLAG`: the index of the stop flag in `ChurnJob.control` (not imported:
 * importing the worker module would run it on this thread).
 */
const STOP_FLAG = 0;

const WORKER_MODULE = new URL("./_churn_worker.ts", import.meta.url);

/** Workers load their module at run time, which Deno allows only with read access to it. */
function requireWorkerAccess(): void {
  if (WORKER_MODULE.protocol !== "file:") return;
  const folder = new URL(".", WORKER_MODULE).pathname.replace(/\/$/, "");
  if (Deno.permissions.querySync({ name: "read", path: folder }).state !== "granted") {
    throw new Error(
      `The churn writers run Workers, which need read access to "${folder}": add --allow-read=${folder}`,
    );
  }
}

function requireWhole(value: number, what: string, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new BpfArgumentError(
      `Invalid ${what} "${value}": expected a whole number from ${min} to ${max}`,
    );
  }
  return value;
}

/** Checks the map and options; returns the job's writing fields. */
function checkChurn(
  map: BpfMap,
  options: ChurnOptions,
  writer: "user" | "kernel",
): Pick<ChurnJob, "first" | "count" | "stable" | "aim" | "rate" | "pattern"> {
  const { info, subject } = map;
  if (!CHURN_TYPES.includes(info.type)) {
    throw new BpfArgumentError(
      `Cannot churn the ${subject} of type ${
        mapTypeName(info.type)
      }: the writers delete keys, which only hash, lru_hash, percpu_hash and lru_percpu_hash maps do`,
    );
  }
  for (const [what, size] of [["keys", info.keySize], ["values", info.valueSize]] as const) {
    if (size < 4) {
      throw new BpfArgumentError(
        `Cannot churn the ${subject}: its ${what} are ${size} bytes, the writers need at least 4 (a u32 key number, an operation counter)`,
      );
    }
  }
  const first = requireWhole(options.first, "first", 0, MAX_U32);
  const count = requireWhole(options.count, "count", 1, MAX_U32 + 1 - first);
  const stable = requireWhole(options.rewriteStable ?? 0, "rewriteStable", 0, first);
  const rate = options.rate;
  if (rate !== "max" && !(typeof rate === "number" && rate > 0 && Number.isFinite(rate))) {
    throw new BpfArgumentError(
      `Invalid rate "${rate}": expected operations per second above 0, or "max"`,
    );
  }
  let aim: number[] | null = null;
  if (options.aim !== undefined) {
    if (options.aim.length === 0) {
      throw new BpfArgumentError("Empty aim: give at least one key number, or leave aim out");
    }
    const outside = options.aim.find((key) =>
      !Number.isInteger(key) || key < first || key >= first + count
    );
    if (outside !== undefined) {
      throw new BpfArgumentError(
        `Invalid aim key "${outside}": aimed keys are transient, numbers from ${first} to ${
          first + count - 1
        }`,
      );
    }
    aim = [...options.aim];
  }
  const pattern = options.pattern ?? "random";
  if (pattern !== "random" && pattern !== "window") {
    throw new BpfArgumentError(`Invalid pattern "${pattern}": expected "random" or "window"`);
  }
  if (pattern === "window" && (writer === "kernel" || aim !== null || stable > 0)) {
    throw new BpfArgumentError(
      `The window pattern is the user writer's, on all its transient keys: ${
        writer === "kernel" ? "not the kernel writer's" : "leave aim and rewriteStable out"
      }`,
    );
  }
  return { first, count, stable, aim, rate, pattern };
}

/** Rebuilds in this thread the error a worker posted. */
function workerError(message: Extract<ChurnMessage, { kind: "error" }>): Error {
  if (message.errno !== undefined && message.command !== undefined) {
    const error = new BpfError({
      errno: message.errno,
      command: message.command,
      hint: message.hint,
    });
    // The worker's message names the subject, which the error does not keep.
    error.message = message.message;
    return error;
  }
  if (message.name === "BpfArgumentError") return new BpfArgumentError(message.message);
  return new Error(message.message);
}

/** Settles with `promise`, or rejects with `message` after `ms` (running `onTimeout`). */
async function within<T>(
  promise: Promise<T>,
  ms: number,
  message: string,
  onTimeout: () => void,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          onTimeout();
          reject(new Error(message));
        }, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A writer on its Worker. */
class WorkerChurner implements Churner {
  readonly writer: "user" | "kernel";
  readonly #worker: Worker;
  readonly #control: Int32Array;
  readonly #finished: Promise<ChurnResult>;
  readonly #subject: string;
  #stopped: Promise<ChurnResult> | undefined;

  private constructor(
    writer: "user" | "kernel",
    worker: Worker,
    control: Int32Array,
    finished: Promise<ChurnResult>,
    subject: string,
  ) {
    this.writer = writer;
    this.#worker = worker;
    this.#control = control;
    this.#finished = finished;
    this.#subject = subject;
  }

  /** Starts the Worker and waits until the writer has done its first operations. */
  static async start(
    map: BpfMap,
    writer: "user" | "kernel",
    options: ChurnOptions,
  ): Promise<WorkerChurner> {
    const fields = checkChurn(map, options, writer);
    if (writer === "kernel") {
      requireFacilities(
        KERNEL_WRITER_FACILITIES,
        "the kernel churn writer",
        "write from user space instead (startUserChurn, --writer user)",
      );
    }
    requireWorkerAccess();
    const control = new Int32Array(new SharedArrayBuffer(4));
    const job: ChurnJob = {
      ...fields,
      writer,
      mapId: map.info.id,
      backend: map.backend,
      control: control.buffer as SharedArrayBuffer,
      objectPath: builtObjectPath("churn_writer.bpf.o"),
      seed: (Math.random() * MAX_U32) >>> 0 || 1,
    };
    const worker = new Worker(WORKER_MODULE, { type: "module" });
    let onReady!: () => void;
    let onFailure!: (error: Error) => void;
    const ready = new Promise<void>((resolve, reject) => {
      onReady = resolve;
      onFailure = reject;
    });
    const finished = new Promise<ChurnResult>((resolve, reject) => {
      worker.onmessage = (event: MessageEvent<ChurnMessage>) => {
        const message = event.data;
        if (message.kind === "ready") {
          onReady();
        } else if (message.kind === "done") {
          const { operations, seconds, failed } = message;
          resolve({ operations, seconds, rate: seconds > 0 ? operations / seconds : 0, failed });
        } else {
          const error = workerError(message);
          onFailure(error);
          reject(error);
        }
      };
      worker.onerror = (event) => {
        event.preventDefault();
        const error = new Error(`The ${writer} churn writer's Worker failed: ${event.message}`);
        onFailure(error);
        reject(error);
      };
    });
    // A failure after the start is reported by stop(), not as an unhandled rejection.
    finished.catch(() => {});
    worker.postMessage(job);
    try {
      await within(
        ready,
        START_TIMEOUT_MS,
        `The ${writer} churn writer of ${map.subject} did not start within ${START_TIMEOUT_MS} ms`,
        () => Atomics.store(control, STOP_FLAG, 1),
      );
    } catch (e) {
      worker.terminate();
      throw e;
    }
    return new WorkerChurner(writer, worker, control, finished, map.subject);
  }

  stop(): Promise<ChurnResult> {
    return this.#stopped ??= this.#stop();
  }

  async #stop(): Promise<ChurnResult> {
    Atomics.store(this.#control, STOP_FLAG, 1);
    Atomics.notify(this.#control, STOP_FLAG);
    try {
      return await within(
        this.#finished,
        STOP_TIMEOUT_MS,
        `The ${this.writer} churn writer of ${this.#subject} did not stop within ${STOP_TIMEOUT_MS} ms: its Worker was terminated`,
        () => {},
      );
    } finally {
      this.#worker.terminate();
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** The map to churn, and whether it was opened here (then closed once the writer starts). */
function resolveMap(map: BpfMap | number): { target: BpfMap; opened: boolean } {
  return typeof map === "number"
    ? { target: BpfMap.fromId(map), opened: true }
    : { target: map, opened: false };
}

async function startChurn(
  map: BpfMap | number,
  writer: "user" | "kernel",
  options: ChurnOptions,
): Promise<Churner> {
  const { target, opened } = resolveMap(map);
  try {
    return await WorkerChurner.start(target, writer, options);
  } finally {
    if (opened) target.close();
  }
}

/**
 * Starts a user-space writer: a Worker that opens the map by id and makes UPDATE_ELEM and
 * DELETE_ELEM system calls (one per operation, through the map's backend), paced to
 * `options.rate`, until `stop()`. Resolves once the first operations are done (with the
 * `window` pattern, once its window is full: a study measures the steady state); rejects with
 * the error the first write met (e.g. EPERM for a frozen map), or `BpfArgumentError` for a
 * map or options it cannot churn (arrays; keys or values under 4 bytes).
 *
 * @example
 * ```ts
 * import { BpfMap } from "../../mod.ts";
 * import { startUserChurn } from "./churn.ts";
 * using map = BpfMap.create({ type: "hash", keySize: 4, valueSize: 8, maxEntries: 4096 });
 * const churner = await startUserChurn(map, { first: 1000, count: 500, rate: 20_000 });
 * // ... dump the map meanwhile ...
 * const { operations, rate } = await churner.stop();
 * ```
 */
export function startUserChurn(map: BpfMap | number, options: ChurnOptions): Promise<Churner> {
  return startChurn(map, "user", options);
}

/**
 * Starts a kernel writer: `build/churn_writer.bpf.o` (built by `make build`) loaded on a
 * Worker with its map reusing `map`'s, and run there with `BPF_PROG_TEST_RUN`, each run doing
 * a slice's operations in the kernel (at most 8192), paced to `options.rate`, until
 * `stop()`. Per-CPU maps: each write sets the running CPU's slot. Resolves once the first run
 * is done; rejects with the load's error (e.g. EACCES for a map read-only to programs), or
 * `BpfArgumentError` for a map or options it cannot churn.
 *
 * @example
 * ```ts
 * import { BpfMap } from "../../mod.ts";
 * import { startKernelChurn } from "./churn.ts";
 * using map = BpfMap.create({ type: "lru_hash", keySize: 16, valueSize: 8, maxEntries: 4096 });
 * await using churner = await startKernelChurn(map, { first: 1000, count: 500, rate: "max" });
 * ```
 */
export function startKernelChurn(map: BpfMap | number, options: ChurnOptions): Promise<Churner> {
  return startChurn(map, "kernel", options);
}
