/**
 * The in-kernel snapshot dump: a `BPF_PROG_TYPE_SYSCALL` program (`bpf/snapshot.bpf.c`), run
 * by `BPF_PROG_TEST_RUN`, walks the map with `bpf_for_each_map_elem()` and writes every key
 * and value into two `BPF_F_MMAPABLE` arrays that this process has mapped: one system call
 * per walk and no `copy_to_user`; the records are read from the mapping in place.
 *
 * The walk cannot be interrupted (on this kernel preemption is off for its whole length,
 * ~100-150 ns per element) and cannot be resumed (it always starts at bucket 0), so each run
 * copies at most `maxElemsPerCall` elements (from a budget of kernel time, 1 s by default).
 * A larger map yields its first part and where LOOKUP_BATCH takes over (`resumeCursor`);
 * `stopAtKey` stops the walk at a key that a LOOKUP_BATCH walk from some bucket returned
 * first, so that the snapshot covers the buckets before it (the hybrid dump).
 *
 * @module
 */

import { ownedBytes } from "../sys/buffers.ts";
import { MapType, mapTypeName } from "../sys/constants.ts";
import { BpfArgumentError, BpfError, Errno } from "../sys/errors.ts";
import { type Facility, requireFacilities, unavailableReason } from "../sys/features.ts";
import { type Layout, layoutSize, readU32, readU64, writeField } from "../sys/layout.ts";
import { mapShared, Prot, readSmallFile, unmapRegion } from "../sys/libc.ts";
import type { BatchView, BpfMap, WalkStats } from "../map/map.ts";
import { BpfObject, builtObjectPath, type TestRun } from "../map/object.ts";

/** The kernel time one run may take by default, in milliseconds. */
export const DEFAULT_KERNEL_BUDGET_MS = 1000;
/**
 * Kernel time per element copied, in nanoseconds, by the size of the table (`max_entries`):
 * the walk is memory-bound, each element a cache miss and, past a few GiB, a TLB miss too.
 * Measured on a 2-vCPU VM (kernel 6.18), u32 -> u32 hash maps: 197 ns at 1M entries, 275 at
 * 10M, 591 at 104,857,600 (a walk with an empty callback costs nearly as much). Between the
 * points the estimate follows log10(max_entries); past the last one it goes on rising.
 */
export const SNAPSHOT_NS_PER_ELEMENT: readonly (readonly [entries: number, ns: number])[] = [
  [1e6, 200],
  [1e7, 280],
  [1e8, 580],
];
/** What the estimate is raised by, so that a run stays under its budget. */
const BUDGET_MARGIN = 1.25;
/** Runs that visit fewer elements than this teach the snapshot nothing of its map's rate. */
const MIN_ELEMENTS_TO_LEARN = 100_000;

/** The estimated kernel time per element of a snapshot of a table of `maxEntries`, in ns. */
export function snapshotNsPerElement(maxEntries: number): number {
  const points = SNAPSHOT_NS_PER_ELEMENT;
  const x = Math.log10(Math.max(maxEntries, 1));
  if (x <= Math.log10(points[0][0])) return points[0][1];
  let i = 1;
  while (i < points.length - 1 && x > Math.log10(points[i][0])) i++;
  const [[e0, n0], [e1, n1]] = [points[i - 1], points[i]];
  const slope = (n1 - n0) / (Math.log10(e1) - Math.log10(e0));
  return n0 + slope * (x - Math.log10(e0));
}

/**
 * Kernel time per bucket walked past, in nanoseconds (measured: 2.9-3.5 ns per empty
 * bucket). The element bound does not limit it: a sparse table costs this per bucket up to
 * the element where the walk stops; at most 2^28 buckets (~0.8 s) for the largest table.
 */
export const SNAPSHOT_NS_PER_BUCKET = 3.5;
/** The largest key the program copies and compares (inline, one word at a time). */
export const MAX_SNAPSHOT_KEY_SIZE = 512;
/** Entries per `BatchView` handed to `forEachBatch`'s callback, by default. */
export const DEFAULT_SNAPSHOT_BATCH = 65_536;

/** The largest value of an array element (`KMALLOC_MAX_SIZE` on x86_64 and arm64). */
const MAX_ARRAY_VALUE = 4 * 1024 * 1024;

/** Why one run of the walk stopped. */
export const SnapshotStop = {
  /** The walk reached the end of the map: every element was copied. */
  end: 0,
  /** The walk met element `maxElemsPerCall + 1`: the rest is left to LOOKUP_BATCH. */
  limit: 1,
  /** The walk met the `stopAtKey` key (not copied). */
  sentinel: 2,
  /** The walk met more elements than the buffer holds (the map grew during the walk). */
  full: 3,
} as const;
/** Why a snapshot run stopped: `"end"`, `"limit"`, `"sentinel"` or `"full"`. */
export type SnapshotStop = keyof typeof SnapshotStop;
/** The program's code for sizes it cannot handle (never expected: open() checks them). */
const STOP_BAD_CONFIG = 4;

/** `struct snap_config` of `bpf/snapshot.bpf.c`: the program's `.rodata`. */
const SNAP_CONFIG = {
  type: "struct snap_config",
  fields: {
    keySize: { offset: 0, size: 4, c: "key_size" },
    valueSize: { offset: 4, size: 4, c: "value_size" },
    keyShift: { offset: 8, size: 4, c: "key_shift" },
    valueShift: { offset: 12, size: 4, c: "value_shift" },
    isHash: { offset: 16, size: 4, c: "is_hash" },
    wholeMap: { offset: 20, size: 4, c: "whole_map" },
    capacity: { offset: 24, size: 8, c: "capacity" },
  },
} as const satisfies Layout;

/** `struct snap_args` of `bpf/snapshot.bpf.c`: the run's context, copied in and back out. */
const SNAP_ARGS = {
  type: "struct snap_args",
  fields: {
    limit: { offset: 0, size: 8, c: "limit" },
    flags: { offset: 8, size: 8, c: "flags" },
    copied: { offset: 16, size: 8, c: "copied" },
    visited: { offset: 24, size: 8, c: "visited" },
    keep: { offset: 32, size: 8, c: "keep" },
    stopped: { offset: 40, size: 4, c: "stopped" },
    resumeKnown: { offset: 44, size: 4, c: "resume_known" },
    resumeCursor: { offset: 48, size: 4, c: "resume_cursor" },
    buckets: { offset: 52, size: 4, c: "n_buckets" },
  },
} as const satisfies Layout;
/** `SNAP_F_SENTINEL`: stop at the key in `stop_key`. */
const SNAP_F_SENTINEL = 1n;

/** How the records of `capacity` entries lie in the two output arrays. */
export interface SnapshotLayout {
  /** Entries the output holds. */
  capacity: number;
  /** Keys per element of the keys array (1, 2, 4 or 8: a multiple of 8 bytes). */
  keyGroup: number;
  /** Values per element of the values array. */
  valueGroup: number;
  /** Elements of the keys array. */
  keyElements: number;
  /** Elements of the values array. */
  valueElements: number;
  /** Bytes of the keys array (mapped). */
  keyBytes: number;
  /** Bytes of the values array (mapped). */
  valueBytes: number;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/**
 * The output arrays for `capacity` entries of `keySize`-byte keys and `valueSize`-byte
 * values: keys packed in one array, values packed in the other, grouped so that an array
 * element is a multiple of 8 bytes (the kernel pads elements to 8, the groups leave no gap).
 */
export function snapshotLayout(
  keySize: number,
  valueSize: number,
  capacity: number,
): SnapshotLayout {
  const keyGroup = 8 / gcd(keySize, 8);
  const valueGroup = 8 / gcd(valueSize, 8);
  const keyElements = Math.ceil(capacity / keyGroup);
  const valueElements = Math.ceil(capacity / valueGroup);
  return {
    capacity,
    keyGroup,
    valueGroup,
    keyElements,
    valueElements,
    keyBytes: keyElements * keyGroup * keySize,
    valueBytes: valueElements * valueGroup * valueSize,
  };
}

/** What `snapshotTarget` checks of a map. */
export interface SnapshotTargetInfo {
  /** `enum bpf_map_type` number. */
  type: number;
  /** Key size in bytes. */
  keySize: number;
  /** Value size in bytes. */
  valueSize: number;
  /** The map's `max_entries`. */
  maxEntries: number;
  /** How the map is named in messages, e.g. `map 5 "x"`. */
  subject: string;
}

/** The hash-table buckets of a hash map of `maxEntries` (`roundup_pow_of_two`), or 0 for arrays. */
export function bucketCount(type: number, maxEntries: number): number {
  if (type !== MapType.hash && type !== MapType.lru_hash) return 0;
  return 2 ** Math.ceil(Math.log2(Math.max(maxEntries, 1)));
}

/**
 * Refuses, with a one-line reason, a map the snapshot cannot walk or whose records it cannot
 * hold; returns whether the map is a hash map (bucket cursor) rather than an array.
 */
export function snapshotTarget(info: SnapshotTargetInfo): { isHash: boolean } {
  const { type, keySize, valueSize, subject } = info;
  if (
    type === MapType.percpu_hash || type === MapType.lru_percpu_hash ||
    type === MapType.percpu_array
  ) {
    throw new BpfArgumentError(
      `Cannot snapshot the ${
        mapTypeName(type)
      } ${subject}: bpf_for_each_map_elem hands the program only the running CPU's value: use LOOKUP_BATCH or the bpf_iter dump`,
    );
  }
  if (type !== MapType.hash && type !== MapType.lru_hash && type !== MapType.array) {
    throw new BpfArgumentError(
      `Cannot snapshot the ${subject} of ${
        mapTypeName(type)
      }: the snapshot walks hash, lru_hash and array maps only`,
    );
  }
  if (keySize > MAX_SNAPSHOT_KEY_SIZE) {
    throw new BpfArgumentError(
      `Cannot snapshot the ${subject}: its keys are ${keySize} bytes, the snapshot copies keys of at most ${MAX_SNAPSHOT_KEY_SIZE}`,
    );
  }
  for (const [what, size] of [["key", keySize], ["value", valueSize]] as const) {
    const group = 8 / gcd(size, 8);
    if (group * size > MAX_ARRAY_VALUE) {
      throw new BpfArgumentError(
        `Cannot snapshot the ${subject}: ${group} ${what}s of ${size} bytes make an output element of ${
          group * size
        } bytes, over the kernel's ${MAX_ARRAY_VALUE}`,
      );
    }
  }
  return { isHash: type !== MapType.array };
}

/** What the snapshot needs of the kernel: its program, its helpers, its mapped output. */
export const SNAPSHOT_FACILITIES: readonly Facility[] = [
  "kernel_btf",
  // First: it needs the most of the process (CAP_BPF and CAP_PERFMON), and says so.
  "probe_read_kernel",
  "syscall_programs",
  "for_each_map_elem",
  "mmapable_arrays",
];

/** Options of `MapSnapshot.open`. */
export interface SnapshotOptions {
  /**
   * The most elements one run copies; the buffer holds `min(maxEntries, maxElemsPerCall)`
   * entries. Default: `kernelTimeBudgetMs` turned into elements.
   */
  maxElemsPerCall?: number;
  /**
   * Kernel time one run may take, in milliseconds (default `DEFAULT_KERNEL_BUDGET_MS`):
   * `maxElemsPerCall` is this over the estimated time per element (`snapshotNsPerElement`),
   * and later runs keep to it at the rate measured (`elementLimit`). Ignored when
   * `maxElemsPerCall` is given.
   */
  kernelTimeBudgetMs?: number;
  /** The BPF object (default `build/snapshot.bpf.o`, built by `make build`). */
  objectPath?: string;
}

/** Options of `MapSnapshot.forEachBatch`. */
export interface SnapshotWalkOptions {
  /**
   * Stop at the element with this key, without copying it (the first key a LOOKUP_BATCH
   * walk from the split bucket returned): the snapshot then holds the buckets before it.
   */
  stopAtKey?: Uint8Array;
  /** Entries per `BatchView` handed to the callback (default `DEFAULT_SNAPSHOT_BATCH`). */
  batchEntries?: number;
}

/** What one `forEachBatch` did. `entries`, `syscalls` and `batches` as for the other walks. */
export interface SnapshotStats extends WalkStats {
  /** `BPF_PROG_TEST_RUN` calls made (1: a walk cannot be resumed, so it is never split). */
  calls: number;
  /** Why the walk stopped. */
  stoppedBy: SnapshotStop;
  /** Whether the walk reached the end of the map: the entries handed out are all of it. */
  complete: boolean;
  /** With `stopAtKey`: whether the walk met it (false: it was not in the map; `complete`). */
  sentinelMet?: boolean;
  /** Elements the kernel walk called back for (the copied ones and the one it stopped at). */
  visited: number;
  /** Elements copied by the kernel (`entries` may be fewer: see `resumeCursor`). */
  copied: number;
  /** The element bound of this run (`MapSnapshot.elementLimit` when it started). */
  limit: number;
  /** A copy of the last key handed out, if any. */
  lastKey?: Uint8Array;
  /**
   * After a stop at the limit: the first cursor position whose entries were not handed out,
   * as `BatchRange.start` takes it, so that a LOOKUP_BATCH walk from there returns exactly
   * the rest. Hash maps: a bucket index (`in_batch` itself); the entries handed out end at a
   * bucket boundary (the copied ones of the bucket the walk stopped in are left to the batch
   * walk). Arrays: the first key not handed out (`in_batch` is the key before it).
   * Undefined when the walk was not stopped by the limit, or when the last 64 copied elements
   * all shared the stopping bucket (then every copied entry is handed out).
   */
  resumeCursor?: number;
  /** Hash maps: the table's buckets (LOOKUP_BATCH cursors run from 0 to this). */
  buckets?: number;
  /** Wall-clock time of the run (the kernel walk), in milliseconds. */
  kernelMs: number;
}

/** The loaded program and the mapped output of one snapshot. */
interface Opened {
  readonly object: BpfObject;
  readonly run: TestRun;
  readonly stopKey: BpfMap;
  readonly keysAddress: Deno.PointerObject;
  readonly valuesAddress: Deno.PointerObject;
  /** The mappings as ArrayBuffers: private, never handed out (they die with the mapping). */
  readonly keys: Uint8Array;
  readonly values: Uint8Array;
}

function requireWhole(value: number, what: string, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new BpfArgumentError(
      `Invalid ${what} "${value}": expected a whole number from ${min} to ${max}`,
    );
  }
  return value;
}

/**
 * The most elements one snapshot run of a table of `maxEntries` copies under `options`:
 * `maxElemsPerCall`, or the kernel time budget (default 1 s) over the estimated time per
 * element (`snapshotNsPerElement`, with a margin).
 */
export function snapshotElementBound(
  options: Pick<SnapshotOptions, "maxElemsPerCall" | "kernelTimeBudgetMs"> = {},
  maxEntries = 1,
): number {
  if (options.maxElemsPerCall !== undefined) {
    return requireWhole(options.maxElemsPerCall, "maxElemsPerCall", 1, 0xffff_ffff);
  }
  return elementsInBudget(kernelBudget(options), snapshotNsPerElement(maxEntries));
}

/** `kernelTimeBudgetMs`, checked, or the default. */
function kernelBudget(options: Pick<SnapshotOptions, "kernelTimeBudgetMs">): number {
  const budget = options.kernelTimeBudgetMs ?? DEFAULT_KERNEL_BUDGET_MS;
  if (!(budget > 0) || !Number.isFinite(budget)) {
    throw new BpfArgumentError(
      `Invalid kernelTimeBudgetMs "${budget}": expected a positive number of milliseconds`,
    );
  }
  return budget;
}

function elementsInBudget(budgetMs: number, nsPerElement: number): number {
  return Math.max(1, Math.floor(budgetMs * 1e6 / (nsPerElement * BUDGET_MARGIN)));
}

/**
 * An in-kernel snapshot of one map: the program loaded for it and its output mapped, both
 * kept between walks (setup costs milliseconds to tens of milliseconds: most of it creating
 * and zeroing the output). Each `forEachBatch` is one fresh walk.
 *
 * The callback's batches are copies in buffers reused from batch to batch: nothing handed
 * out refers to the mapping, so nothing can be read from it after `close()`.
 *
 * @example
 * ```ts
 * import { BpfMap } from "../../mod.ts";
 * import { MapSnapshot } from "./snapshot.ts";
 * using map = BpfMap.fromPin("/sys/fs/bpf/test_map");
 * using snapshot = MapSnapshot.open(map);
 * const stats = snapshot.forEachBatch((batch) => console.log(batch.count));
 * if (!stats.complete) console.log("LOOKUP_BATCH from bucket", stats.resumeCursor);
 * ```
 */
export class MapSnapshot implements Disposable {
  /** The most elements one run copies: the output's capacity, from the options. */
  readonly maxElemsPerCall: number;
  /** The output's layout (entries it holds, bytes mapped). */
  readonly layout: SnapshotLayout;
  /** Hash maps: the table's buckets; 0 for arrays. */
  readonly buckets: number;
  /** Time to load the program, create the output and map it, in milliseconds. */
  readonly setupMs: number;
  readonly #keySize: number;
  readonly #valueSize: number;
  readonly #subject: string;
  readonly #maxEntries: number;
  /** The kernel time budget of a run, when the bound came from one (not `maxElemsPerCall`). */
  readonly #budgetMs: number | undefined;
  /** The element bound of the next run: `maxElemsPerCall`, or less once runs proved slower. */
  #limit: number;
  #opened: Opened | null;
  #walking = false;
  // The run's context, copied in and back out (its `TestRun` keeps it referenced).
  readonly #args: Uint8Array<ArrayBuffer>;
  readonly #argsView: DataView;
  readonly #zeroKey = new Uint8Array(4);
  #handoutKeys = ownedBytes(0);
  #handoutValues = ownedBytes(0);

  private constructor(
    map: BpfMap,
    args: Uint8Array<ArrayBuffer>,
    opened: Opened,
    maxElemsPerCall: number,
    budgetMs: number | undefined,
    layout: SnapshotLayout,
    setupMs: number,
  ) {
    this.#args = args;
    this.#argsView = new DataView(args.buffer);
    this.#keySize = map.keySize;
    this.#valueSize = map.valueSize;
    this.#subject = map.subject;
    this.#maxEntries = map.info.maxEntries;
    this.#opened = opened;
    this.maxElemsPerCall = maxElemsPerCall;
    this.#budgetMs = budgetMs;
    this.#limit = maxElemsPerCall;
    this.layout = layout;
    this.buckets = bucketCount(map.info.type, map.info.maxEntries);
    this.setupMs = setupMs;
  }

  /**
   * The element bound of the next run: `maxElemsPerCall`, or fewer when runs of at least
   * 100,000 elements took longer per element than estimated (the bound then follows the
   * time measured, so that a run keeps to its kernel time budget).
   */
  get elementLimit(): number {
    return this.#limit;
  }

  /**
   * The longest one run may hold a CPU, estimated (milliseconds): as many elements as the
   * output holds, and every bucket of the table.
   */
  get worstCaseKernelMs(): number {
    const elements = this.layout.capacity * snapshotNsPerElement(this.#maxEntries);
    return (elements + this.buckets * SNAPSHOT_NS_PER_BUCKET) / 1e6;
  }

  /** After a run: a budget-bound snapshot keeps its runs within budget at the rate measured. */
  #learn(kernelMs: number, visited: number): void {
    if (this.#budgetMs === undefined || visited < MIN_ELEMENTS_TO_LEARN) return;
    const measured = kernelMs * 1e6 / visited;
    this.#limit = Math.min(this.maxElemsPerCall, elementsInBudget(this.#budgetMs, measured));
  }

  /**
   * Why `open` would refuse `map` here (its type or sizes, the kernel, this thread's
   * capabilities, a missing object file), or `null` when the snapshot can run: checked
   * without loading anything.
   */
  static unavailable(
    map: BpfMap,
    options: Pick<SnapshotOptions, "objectPath"> = {},
  ): string | null {
    try {
      snapshotTarget({ ...map.info, subject: map.subject });
    } catch (e) {
      if (e instanceof BpfArgumentError) return e.message;
      throw e;
    }
    const refused = unavailableReason(...SNAPSHOT_FACILITIES);
    if (refused) return `the snapshot cannot run here: ${refused}`;
    return BpfObject.missing(options.objectPath ?? builtObjectPath("snapshot.bpf.o"));
  }

  /**
   * Loads the snapshot program for `map` (hash, lru_hash or array), creates its output for
   * `min(maxEntries, maxElemsPerCall)` entries and maps it. Refuses per-CPU maps, other map
   * types, keys over 512 bytes, kernels before 5.14, threads without CAP_BPF and
   * CAP_PERFMON, and an output the kernel cannot allocate (saying how many bytes it needed).
   */
  static open(map: BpfMap, options: SnapshotOptions = {}): MapSnapshot {
    const started = performance.now();
    const { info, subject } = map;
    const { isHash } = snapshotTarget({ ...info, subject });
    const maxElemsPerCall = snapshotElementBound(options, info.maxEntries);
    const capacity = Math.min(info.maxEntries, maxElemsPerCall);
    const layout = snapshotLayout(info.keySize, info.valueSize, capacity);
    const needed = `the snapshot output needs ${
      layout.keyBytes + layout.valueBytes
    } bytes (${capacity} entries x (${info.keySize} + ${info.valueSize}))`;
    const memory = readSmallFile("/proc/meminfo")?.match(/^MemTotal:\s+(\d+) kB/m)?.[1];
    if (memory !== undefined && layout.keyBytes + layout.valueBytes > Number(memory) * 1024) {
      throw new BpfArgumentError(
        `Cannot snapshot the ${subject}: ${needed}, more than the machine's ${
          Number(memory) * 1024
        } bytes of memory: lower maxElemsPerCall`,
      );
    }
    requireFacilities(SNAPSHOT_FACILITIES, "the snapshot", "use LOOKUP_BATCH (--method batch)");
    const args = ownedBytes(layoutSize(SNAP_ARGS));
    const opened = MapSnapshot.#load(map, args, options, layout, isHash, needed);
    return new MapSnapshot(
      map,
      args,
      opened,
      maxElemsPerCall,
      options.maxElemsPerCall === undefined ? kernelBudget(options) : undefined,
      layout,
      performance.now() - started,
    );
  }

  static #load(
    map: BpfMap,
    args: Uint8Array<ArrayBuffer>,
    options: SnapshotOptions,
    layout: SnapshotLayout,
    isHash: boolean,
    needed: string,
  ): Opened {
    const object = BpfObject.open(options.objectPath ?? builtObjectPath("snapshot.bpf.o"));
    let stopKey: BpfMap | undefined;
    let keysAddress: Deno.PointerObject | undefined;
    try {
      const { keySize, valueSize } = map;
      object.reuseMap("target", map);
      const sizes: [string, number, number][] = [
        ["keys_out", layout.keyGroup * keySize, layout.keyElements],
        ["values_out", layout.valueGroup * valueSize, layout.valueElements],
        ["stop_key", keySize, 1],
      ];
      for (const [output, elementSize, elements] of sizes) {
        object.setValueSize(output, elementSize);
        object.setMaxEntries(output, elements);
      }
      const config = ownedBytes(layoutSize(SNAP_CONFIG));
      const view = new DataView(config.buffer);
      const f = SNAP_CONFIG.fields;
      writeField(view, f.keySize, keySize);
      writeField(view, f.valueSize, valueSize);
      writeField(view, f.keyShift, Math.log2(layout.keyGroup));
      writeField(view, f.valueShift, Math.log2(layout.valueGroup));
      writeField(view, f.isHash, isHash ? 1 : 0);
      writeField(view, f.wholeMap, layout.capacity >= map.info.maxEntries ? 1 : 0);
      writeField(view, f.capacity, BigInt(layout.capacity));
      object.setReadOnlyData(config);
      object.load({
        subject: `the snapshot of ${map.subject}`,
        hint: (errno) =>
          errno === Errno.ENOMEM
            ? `${needed}: lower maxElemsPerCall`
            : errno === Errno.E2BIG
            ? `${needed}, or the verifier found the program too large (libbpf printed its log): lower maxElemsPerCall`
            : undefined,
      });
      stopKey = object.map("stop_key");
      const subject = `the snapshot of ${map.subject}`;
      const mapOutput = (output: string, bytes: number): Deno.PointerObject => {
        const address = mapShared(object.mapFd(output), bytes, Prot.READ);
        if (typeof address === "number") {
          throw new BpfError({ errno: -address, command: "mmap", subject, hint: needed });
        }
        return address;
      };
      keysAddress = mapOutput("keys_out", layout.keyBytes);
      const valuesAddress = mapOutput("values_out", layout.valueBytes);
      return {
        object,
        run: object.testRun("snapshot", args),
        stopKey,
        keysAddress,
        valuesAddress,
        keys: new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(keysAddress, layout.keyBytes)),
        values: new Uint8Array(
          Deno.UnsafePointerView.getArrayBuffer(valuesAddress, layout.valueBytes),
        ),
      };
    } catch (e) {
      if (keysAddress) unmapRegion(keysAddress, layout.keyBytes);
      stopKey?.close();
      object.close();
      throw e;
    }
  }

  #open(): Opened {
    if (this.#opened === null) {
      throw new BpfArgumentError(`The snapshot of the ${this.#subject} is closed`);
    }
    return this.#opened;
  }

  /**
   * Walks the map once in the kernel (one `BPF_PROG_TEST_RUN`), then hands `visit` the
   * entries copied, in walk order (LOOKUP_BATCH's order), as batches of packed keys and
   * values: copies in buffers reused by the next batch. Stops at `maxElemsPerCall` elements
   * (then `complete` is false and `resumeCursor` says where LOOKUP_BATCH takes over) or at
   * `options.stopAtKey`.
   */
  forEachBatch(
    visit: (batch: BatchView) => void,
    options: SnapshotWalkOptions = {},
  ): SnapshotStats {
    const opened = this.#open();
    if (this.#walking) {
      throw new BpfArgumentError(
        `A forEachBatch of the snapshot of the ${this.#subject} is already running`,
      );
    }
    const batchEntries = requireWhole(
      options.batchEntries ?? DEFAULT_SNAPSHOT_BATCH,
      "batchEntries",
      1,
      0xffff_ffff,
    );
    const { stopAtKey } = options;
    let syscalls = 0;
    if (stopAtKey !== undefined) {
      if (stopAtKey.byteLength !== this.#keySize) {
        throw new BpfArgumentError(
          `Key of ${stopAtKey.byteLength} bytes for stopAtKey: the keys of the ${this.#subject} are ${this.#keySize} bytes`,
        );
      }
      opened.stopKey.update(this.#zeroKey, stopAtKey);
      syscalls++;
    }
    const view = this.#argsView;
    const a = SNAP_ARGS.fields;
    this.#args.fill(0);
    const limit = this.#limit;
    writeField(view, a.limit, BigInt(limit));
    writeField(view, a.flags, stopAtKey ? SNAP_F_SENTINEL : 0n);
    const started = performance.now();
    const retval = opened.run.run();
    const kernelMs = performance.now() - started;
    syscalls++;
    const code = readU32(view, a.stopped);
    if (retval !== 0 || code === STOP_BAD_CONFIG || code > STOP_BAD_CONFIG) {
      throw new Error(
        `The snapshot program of the ${this.#subject} failed (return value ${retval}, stop code ${code}): rebuild build/snapshot.bpf.o`,
      );
    }
    const stoppedBy = (Object.keys(SnapshotStop) as SnapshotStop[])[code];
    const copied = Number(readU64(view, a.copied));
    const keep = Number(readU64(view, a.keep));
    const resumeKnown = readU32(view, a.resumeKnown) === 1;
    const stopped = stoppedBy === "limit" || stoppedBy === "full";
    const stats: SnapshotStats = {
      entries: 0,
      syscalls,
      batches: 0,
      chunk: batchEntries,
      calls: 1,
      stoppedBy,
      complete: stoppedBy === "end",
      visited: Number(readU64(view, a.visited)),
      copied,
      limit,
      kernelMs,
    };
    this.#learn(kernelMs, stats.visited);
    if (stopAtKey) stats.sentinelMet = stoppedBy === "sentinel";
    if (this.buckets > 0) stats.buckets = readU32(view, a.buckets);
    if (stopped && resumeKnown) stats.resumeCursor = readU32(view, a.resumeCursor);
    // Without an exact cursor, hand out all that was copied (the caller dedups the rest).
    const count = stopped && !resumeKnown ? copied : keep;
    this.#walking = true;
    try {
      this.#handOut(count, batchEntries, visit, stats);
    } finally {
      this.#walking = false;
    }
    return stats;
  }

  #handOut(
    count: number,
    batchEntries: number,
    visit: (batch: BatchView) => void,
    stats: SnapshotStats,
  ): void {
    const ks = this.#keySize;
    const vs = this.#valueSize;
    const per = Math.min(count, batchEntries);
    if (this.#handoutKeys.byteLength < per * ks || this.#handoutValues.byteLength < per * vs) {
      this.#handoutKeys = ownedBytes(per * ks);
      this.#handoutValues = ownedBytes(per * vs);
    }
    const keys = this.#handoutKeys;
    const values = this.#handoutValues;
    for (let at = 0; at < count; at += per) {
      // Re-read each time: `visit` may have closed the snapshot (and unmapped the output).
      const opened = this.#opened;
      if (opened === null) {
        throw new BpfArgumentError(
          `The snapshot of the ${this.#subject} was closed during its forEachBatch`,
        );
      }
      const n = Math.min(per, count - at);
      keys.set(opened.keys.subarray(at * ks, (at + n) * ks));
      values.set(opened.values.subarray(at * vs, (at + n) * vs));
      if (at + n === count) stats.lastKey = keys.slice((n - 1) * ks, n * ks);
      stats.entries += n;
      stats.batches++;
      visit({ keys: keys.subarray(0, n * ks), values: values.subarray(0, n * vs), count: n });
    }
  }

  /** Unmaps the output and unloads the program. Safe to call twice. */
  close(): void {
    const opened = this.#opened;
    if (opened === null) return;
    this.#opened = null;
    unmapRegion(opened.keysAddress, this.layout.keyBytes);
    unmapRegion(opened.valuesAddress, this.layout.valueBytes);
    opened.stopKey.close();
    opened.object.close();
  }

  /** Unmaps the output and unloads the program (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** The field tables of the program's structs, for tests. */
export const SNAPSHOT_LAYOUTS: Readonly<Record<string, Layout>> = {
  SNAP_CONFIG,
  SNAP_ARGS,
};
