/**
 * The worker of the churn writers (`churn.ts`): writes one map in a synchronous loop on a
 * thread of its own, paced to a rate, until the main thread raises the stop flag in a shared
 * buffer (a sleeping worker is woken by `Atomics.notify`). Two writers:
 *
 * - `user`: UPDATE_ELEM and DELETE_ELEM system calls through the map's backend, on an fd of
 *   its own (the map opened by id);
 * - `kernel`: `bpf/churn_writer.bpf.o` loaded here with its `target` map reusing the map's fd,
 *   run with `BPF_PROG_TEST_RUN`, each run doing a number of operations in the kernel.
 *
 * Both choose operations the same way (see `bpf/churn_writer.bpf.c`): per random `r`,
 * `r & 3` is 0 insert (BPF_ANY), 1 delete, 2 rewrite (BPF_EXIST) a transient key, 3 rewrite
 * a stable key's value (BPF_EXIST) when stable keys are to be rewritten, else insert or
 * delete. The worker posts `ready` after its first operations, and `done` (or `error`) once
 * the loop has ended and everything it opened is closed.
 *
 * @module
 */

import type { BackendName, ElemCall } from "../sys/backend.ts";
import { backend } from "../sys/backends.ts";
import { ownedBytes } from "../sys/buffers.ts";
import { BpfCommand, UpdateFlag } from "../sys/constants.ts";
import { BpfError, check, Errno } from "../sys/errors.ts";
import { type Layout, layoutSize, readU64, writeField } from "../sys/layout.ts";
import { BpfMap } from "./map.ts";
import { BpfObject, type TestRun } from "./object.ts";
import type { ChurnPattern } from "./churn.ts";

/** Index of the stop flag in the shared control array: 0 runs, 1 stops. */
export const STOP_FLAG = 0;

/** What the main thread asks of a worker. */
export interface ChurnJob {
  /** Which writer runs. */
  writer: "user" | "kernel";
  /** The map to write, by id (the worker opens an fd of its own). */
  mapId: number;
  /** The backend the user writer calls through. */
  backend: BackendName;
  /** First transient key number. */
  first: number;
  /** Transient key numbers: `[first, first + count)`. */
  count: number;
  /** Rewrite values of the stable keys `[0, stable)`; 0: none. */
  stable: number;
  /** Transient keys to use instead of the whole range, or `null`. */
  aim: number[] | null;
  /** What the writer does (`ChurnOptions.pattern`). */
  pattern: ChurnPattern;
  /** Operations per second, or `"max"`. */
  rate: number | "max";
  /** `Int32Array` over it: `[STOP_FLAG]`. */
  control: SharedArrayBuffer;
  /** The kernel writer's object file. */
  objectPath: string;
  /** Seed of the user writer's random numbers (not 0). */
  seed: number;
}

/** What a worker posts back. */
export type ChurnMessage =
  | { kind: "ready" }
  | { kind: "done"; operations: number; seconds: number; failed: number }
  | {
    kind: "error";
    name: string;
    message: string;
    errno?: number;
    command?: string;
    hint?: string;
  };

/** Pacing slice: a paced writer does a slice's worth of operations, then sleeps until due. */
const SLICE_SECONDS = 0.001;
/** Operations between stop checks when flat out (user writer: one system call each). */
const USER_MAX_CHUNK = 64;
/**
 * Operations per `BPF_PROG_TEST_RUN` when flat out: a run cannot be interrupted, so it stays
 * under a millisecond (40-70 ns per operation measured, 300 ns allowed for) and stop() is
 * prompt.
 */
const KERNEL_MAX_CHUNK = 8192;
/** What a write may be refused with, counted rather than thrown: the map full, a bucket busy. */
const REFUSALS: readonly number[] = [Errno.E2BIG, Errno.ENOMEM, Errno.EAGAIN, Errno.EBUSY];

/** `struct churn_config` of `bpf/churn_writer.bpf.c`: the program's `.rodata`. */
export const CHURN_CONFIG = {
  type: "struct churn_config",
  fields: {
    first: { offset: 0, size: 4, c: "first" },
    count: { offset: 4, size: 4, c: "count" },
    stable: { offset: 8, size: 4, c: "stable" },
    aimCount: { offset: 12, size: 4, c: "aim_count" },
  },
} as const satisfies Layout;

/** `struct churn_args` of `bpf/churn_writer.bpf.c`: one run's context, copied in and out. */
export const CHURN_ARGS = {
  type: "struct churn_args",
  fields: {
    ops: { offset: 0, size: 8, c: "ops" },
    done: { offset: 8, size: 8, c: "done" },
    failed: { offset: 16, size: 8, c: "failed" },
  },
} as const satisfies Layout;

/** One writer: does up to `n` operations per call and says how many it did. */
interface Writer {
  /** Writes refused by the kernel for a full map (or lack of memory), so far. */
  readonly failed: number;
  /** Whether the map is in the writer's steady state (the window pattern: its window full). */
  readonly settled: boolean;
  run(n: number): number;
  close(): void;
}

/** Why a write on the map fd gets EPERM: no capability is checked there. */
const WRITE_EPERM_HINT = "the map is frozen or its fd is read-only: user space cannot write it";

/** The user-space writer: element system calls on prepared buffers. */
class UserWriter implements Writer {
  failed = 0;
  readonly #map: BpfMap;
  readonly #job: ChurnJob;
  // Owned buffers, held here because the prepared calls hold their addresses.
  readonly #key: Uint8Array;
  readonly #value: Uint8Array;
  readonly #keyView: DataView;
  readonly #valueView: DataView;
  readonly #insert: ElemCall;
  readonly #rewrite: ElemCall;
  readonly #delete: ElemCall;
  #seed: number;
  #serial = 0;

  constructor(job: ChurnJob) {
    this.#job = job;
    this.#map = BpfMap.fromId(job.mapId, { backend: job.backend });
    const { fd, keySize, valueBytes } = this.#map;
    this.#key = ownedBytes(keySize);
    this.#value = ownedBytes(valueBytes);
    this.#keyView = new DataView(this.#key.buffer);
    this.#valueView = new DataView(this.#value.buffer);
    const b = backend(job.backend);
    this.#insert = b.elem("update", fd, this.#key, this.#value, BigInt(UpdateFlag.ANY));
    this.#rewrite = b.elem("update", fd, this.#key, this.#value, BigInt(UpdateFlag.EXIST));
    this.#delete = b.elem("delete", fd, this.#key, null);
    this.#seed = job.seed >>> 0 || 1;
  }

  /** xorshift32: the user writer's random numbers. */
  #next(): number {
    let x = this.#seed;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return this.#seed = x >>> 0;
  }

  #transient(pick: number): number {
    const { aim, first, count } = this.#job;
    return aim ? aim[pick % aim.length] : first + pick % count;
  }

  /**
   * Counts a refusal for a full map or a bucket busy with another writer (EAGAIN, EBUSY: the
   * kernel gives up a bucket lock it cannot take at once rather than wait); throws for
   * anything else than an absent key.
   */
  #result(result: number, command: number): void {
    if (result >= 0 || result === -Errno.ENOENT) return;
    if (REFUSALS.includes(-result)) {
      this.failed++;
      return;
    }
    check(result, command, {
      subject: this.#map.subject,
      hint: result === -Errno.EPERM ? WRITE_EPERM_HINT : undefined,
    });
  }

  get settled(): boolean {
    if (this.#job.pattern !== "window") return true;
    return this.#serial >= 2 * Math.max(1, Math.floor(this.#job.count / 2));
  }

  run(n: number): number {
    return this.#job.pattern === "window" ? this.#window(n) : this.#random(n);
  }

  /**
   * `n` operations of the window: even ones insert the next transient key in turn, odd ones
   * delete the key inserted `count / 2` inserts before (once there is one).
   */
  #window(n: number): number {
    const { first, count } = this.#job;
    const behind = Math.max(1, Math.floor(count / 2));
    for (let i = 0; i < n; i++) {
      const serial = this.#serial++;
      const step = Math.floor(serial / 2);
      this.#valueView.setUint32(0, serial >>> 0, true);
      if (serial % 2 === 0) {
        this.#keyView.setUint32(0, first + (step % count), true);
        this.#result(this.#insert(), BpfCommand.MAP_UPDATE_ELEM);
      } else if (step >= behind) {
        this.#keyView.setUint32(0, first + ((step - behind) % count), true);
        this.#result(this.#delete(), BpfCommand.MAP_DELETE_ELEM);
      }
    }
    return n;
  }

  #random(n: number): number {
    const stable = this.#job.stable;
    for (let i = 0; i < n; i++) {
      const r = this.#next();
      let op = r & 3;
      const pick = r >>> 3;
      this.#valueView.setUint32(0, this.#serial++ >>> 0, true);
      if (op === 3) {
        if (stable > 0) {
          this.#keyView.setUint32(0, pick % stable, true);
          this.#result(this.#rewrite(), BpfCommand.MAP_UPDATE_ELEM);
          continue;
        }
        op = (r >>> 2) & 1;
      }
      this.#keyView.setUint32(0, this.#transient(pick), true);
      if (op === 1) this.#result(this.#delete(), BpfCommand.MAP_DELETE_ELEM);
      else this.#result((op === 0 ? this.#insert : this.#rewrite)(), BpfCommand.MAP_UPDATE_ELEM);
    }
    return n;
  }

  close(): void {
    this.#map.close();
  }
}

/** The kernel writer: `churn_writer.bpf.o` loaded on the map and run with BPF_PROG_TEST_RUN. */
class KernelWriter implements Writer {
  failed = 0;
  readonly settled = true;
  readonly #object: BpfObject;
  readonly #run: TestRun;
  // The run's context (its `TestRun` keeps it referenced).
  readonly #args = ownedBytes(layoutSize(CHURN_ARGS));
  readonly #argsView = new DataView(this.#args.buffer);
  readonly #subject: string;

  constructor(job: ChurnJob) {
    const object = this.#object = BpfObject.open(job.objectPath);
    try {
      using map = BpfMap.fromId(job.mapId, { backend: job.backend });
      this.#subject = `the kernel churn writer of ${map.subject}`;
      object.reuseMap("target", map);
      object.setValueSize("key_buf", map.keySize);
      object.setValueSize("value_buf", map.valueSize);
      const aimCount = job.aim?.length ?? 0;
      object.setMaxEntries("aim_keys", Math.max(aimCount, 1));
      const config = ownedBytes(layoutSize(CHURN_CONFIG));
      const view = new DataView(config.buffer);
      const f = CHURN_CONFIG.fields;
      writeField(view, f.first, job.first);
      writeField(view, f.count, job.count);
      writeField(view, f.stable, job.stable);
      writeField(view, f.aimCount, aimCount);
      object.setReadOnlyData(config);
      object.load({
        subject: this.#subject,
        hint: (errno) =>
          errno === Errno.EACCES
            ? "the verifier refused the program: is the map read-only to programs (BPF_F_RDONLY_PROG)?"
            : undefined,
      });
      if (job.aim) {
        using aimMap = object.map("aim_keys");
        const keys = new Uint8Array(new Uint32Array(job.aim.map((_, i) => i)).buffer);
        const values = new Uint8Array(new Uint32Array(job.aim).buffer);
        aimMap.updateBatch(keys, values);
      }
      this.#run = object.testRun("churn", this.#args);
    } catch (e) {
      object.close();
      throw e;
    }
  }

  run(n: number): number {
    const a = CHURN_ARGS.fields;
    writeField(this.#argsView, a.ops, BigInt(n));
    const retval = this.#run.run();
    if (retval !== 0) {
      throw new Error(
        `The program of ${this.#subject} failed (return value ${retval}): rebuild build/churn_writer.bpf.o`,
      );
    }
    this.failed += Number(readU64(this.#argsView, a.failed));
    return Number(readU64(this.#argsView, a.done));
  }

  close(): void {
    this.#object.close();
  }
}

/** Operations per chunk: a slice's worth at the target rate, or the most between stop checks. */
function chunkSize(rate: number | "max", most: number): number {
  return rate === "max" ? most : Math.max(1, Math.min(most, Math.round(rate * SLICE_SECONDS)));
}

const scope = self as unknown as Worker;

function post(message: ChurnMessage): void {
  scope.postMessage(message);
}

/**
 * Runs the writer until the stop flag is raised; posts `ready` after the first chunk that
 * leaves the map in the writer's steady state (at once, but for a window still filling).
 */
function churn(job: ChurnJob, writer: Writer): ChurnMessage {
  const control = new Int32Array(job.control);
  const rate = job.rate;
  const chunk = chunkSize(rate, job.writer === "kernel" ? KERNEL_MAX_CHUNK : USER_MAX_CHUNK);
  const started = performance.now();
  let operations = 0;
  let ready = false;
  while (Atomics.load(control, STOP_FLAG) === 0) {
    operations += writer.run(chunk);
    if (!ready && writer.settled) {
      post({ kind: "ready" });
      ready = true;
    }
    if (rate === "max") continue;
    const wait = started + operations * 1000 / rate - performance.now();
    // Wakes early when stop() raises the flag and notifies.
    if (wait > 0) Atomics.wait(control, STOP_FLAG, 0, wait);
  }
  const seconds = (performance.now() - started) / 1000;
  return { kind: "done", operations, seconds, failed: writer.failed };
}

function errorMessage(e: unknown): ChurnMessage {
  return {
    kind: "error",
    name: e instanceof Error ? e.name : "Error",
    message: e instanceof Error ? e.message : String(e),
    errno: e instanceof BpfError ? e.errno : undefined,
    command: e instanceof BpfError ? e.command : undefined,
    hint: e instanceof BpfError ? e.hint : undefined,
  };
}

// One job per worker; `done` or `error` is posted once everything the writer opened is closed.
scope.onmessage = (event: MessageEvent<ChurnJob>) => {
  const job = event.data;
  let writer: Writer | undefined;
  let message: ChurnMessage;
  try {
    writer = job.writer === "kernel" ? new KernelWriter(job) : new UserWriter(job);
    message = churn(job, writer);
  } catch (e) {
    message = errorMessage(e);
  }
  try {
    writer?.close();
  } catch (e) {
    if (message.kind === "done") message = errorMessage(e);
  }
  post(message);
};
