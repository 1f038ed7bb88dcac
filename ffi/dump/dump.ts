/**
 * Dumping a whole map by one method, timed, counted and verified: the one place where the
 * scripts and the comparison get their figures, and where a dump of a map that is written
 * meanwhile keeps its promise: each key reported once (keys the kernel returns again are
 * dropped and counted), a walk that always ends, and a verdict that says what held.
 *
 * @module
 */

import { COUNT_SOURCES, type CountSource, type KernelCount, MapCounter } from "./count.ts";
import { cpuTimes } from "../sys/libc.ts";
import { MapIterator } from "./iter.ts";
import type { BatchView, BpfMap, WalkStats } from "../map/map.ts";
import { cursorSpace, forEachBatchParallel } from "./parallel.ts";
import { ParallelPool } from "./pool.ts";
import { choosePlan, hybridSplit, type MapShape, type Plan } from "./plan.ts";
import { MapSnapshot, snapshotElementBound } from "./snapshot.ts";
import {
  forEachBatchHybrid,
  forEachBatchSnapshot,
  type SnapshotDumpStats,
} from "./snapshot_dump.ts";
import { peakRss } from "../sys/system.ts";
import { KeySet, KeySetInBackground } from "./verify.ts";
import { isArray } from "../sys/constants.ts";
import { DEFAULT_CHUNK } from "../map/walk.ts";
import { withoutEntries } from "./batches.ts";
import { requireMethod } from "./methods.ts";
import { lookupBatchFacility, unavailableReason } from "../sys/features.ts";

/** The ways to dump a map. */
export const DUMP_METHODS = [
  "normal",
  "batch",
  "parallel",
  "iter",
  "snapshot",
  "hybrid",
  "seed-compat",
] as const;
/**
 * A dump method: `normal` (GET_NEXT_KEY + LOOKUP_ELEM per entry), `batch` (LOOKUP_BATCH),
 * `parallel` (LOOKUP_BATCH over disjoint ranges at once), `iter` (a bpf_iter program read
 * with `read()`), `snapshot` (one in-kernel walk into shared memory, LOOKUP_BATCH for what
 * its bound on kernel time leaves), `hybrid` (the snapshot over the start of the map while
 * Workers read the rest with LOOKUP_BATCH), `seed-compat` (the study's batch loop, which
 * never advanced its cursor).
 */
export type DumpMethod = typeof DUMP_METHODS[number];
/** A method, or `auto`: the fastest exact method for the map at hand (`choosePlan`). */
export type DumpMethodChoice = DumpMethod | "auto";

/**
 * Every method and `auto`, in the order the demo and the kernel matrix show them: the study's
 * loop last.
 */
export const DEMO_METHODS: readonly DumpMethodChoice[] = [
  ...DUMP_METHODS.filter((method) => method !== "seed-compat"),
  "auto",
  "seed-compat",
];

/** Methods that do not promise to report keys present throughout exactly once under writes. */
const WALKS_UNDER_RCU: readonly DumpMethod[] = ["iter", "snapshot", "hybrid", "seed-compat"];

/**
 * Whether `method` reports every key that stays in the map, unchanged, for the whole dump
 * exactly once even while the map is written (`DumpResult.stableOnce`).
 */
export function promisesStableKeysOnce(method: DumpMethod): boolean {
  return !WALKS_UNDER_RCU.includes(method);
}

/** How each method issues its calls, for reports: the map's backend, or the mechanism it always uses. */
export function methodBackend(method: DumpMethod, map: BpfMap): string {
  switch (method) {
    case "parallel":
      return `${map.backend} in workers`;
    case "iter":
      return "bpf_iter + read";
    case "snapshot":
      return "BPF_PROG_TEST_RUN + mmap";
    case "hybrid":
      return `snapshot + ${map.backend} in workers`;
    default:
      return map.backend;
  }
}

/** Options of `dumpMap`. */
export interface DumpOptions {
  /** The method, or `auto` (default `batch`). */
  method?: DumpMethodChoice;
  /** Entries per batch call for the batch methods (default 4096). */
  chunk?: number;
  /**
   * How many ranges `parallel` splits the map into, at least (default: one per CPU), or the
   * batch side of `hybrid` (default: one less); large maps are split further (`rangeBounds`).
   */
  ranges?: number;
  /**
   * `parallel`: hand batches over in the order one walk gives (the kernel's bucket order),
   * over many small ranges, holding back little (see `ParallelOptions.inOrder`).
   */
  inOrder?: boolean;
  /** An iterator already attached to the map, for `iter` (else one is attached, untimed, and closed). */
  iterator?: MapIterator;
  /**
   * Workers already started, for `parallel` and `hybrid` (else a pool is started, untimed,
   * and stopped: one Worker per CPU for `parallel`, one less for `hybrid`).
   */
  pool?: ParallelPool;
  /** A snapshot already opened for the map, for `snapshot` and `hybrid` (else one is opened, untimed, and closed). */
  snapshot?: MapSnapshot;
  /** The kernel time one snapshot run may take, in milliseconds, when one is opened here (default 1000). */
  kernelTimeBudgetMs?: number;
  /**
   * `auto`: choose only among methods that report keys present throughout exactly once while
   * the map is written (batch, parallel batch, per entry), for a map known to be written.
   */
  steady?: boolean;
  /** `hybrid`: the fraction of the cursor space the snapshot walks (default: the cost model's, `hybridSplit`). */
  split?: number;
  /**
   * Hears the entries, each key once: what the kernel returned again is dropped. The views
   * are reused by the next batch (per-entry walks hand over one entry at a time).
   */
  visit?: (batch: BatchView) => void;
  /**
   * `false`: keep no set of the keys seen, whose memory grows with the map, for `batch` and
   * `parallel`, which read each bucket (or key) once and hand a key two ranges both read
   * over once, and so cannot return a key twice (the result then counts every entry as
   * distinct). Other methods keep it whatever this says.
   * Default true.
   */
  trackKeys?: boolean;
  /** Restarts a per-entry walk tolerates before it gives up (default 10,000). */
  maxRestarts?: number;
  /** Hears each key the kernel returned again, before it is dropped (a view, reused). */
  onRepeat?: (key: Uint8Array) => void;
  /**
   * The number of entries the map holds, when the caller knows it (the map is still): the
   * dump is checked against it (a count by the method's own walk proves nothing: see
   * `MapCounter`). Else the map is counted just before the walk and just after, through
   * `counter` (or a counter opened for this dump and method), which also tells whether the
   * map was written during the dump.
   */
  expected?: number | KernelCount;
  /**
   * A counter already opened for the map (else one is opened, untimed, for this dump). One
   * whose source is the method's own walk is not used.
   */
  counter?: MapCounter;
}

/** `Deno.memoryUsage()` figures, in bytes. */
export interface MemoryFigures {
  /** Resident set size. */
  rss: number;
  /** V8 heap reserved. */
  heapTotal: number;
  /** V8 heap in use. */
  heapUsed: number;
  /** Memory of ArrayBuffers and other objects outside the V8 heap. */
  external: number;
}

/** What one dump did and whether it can be trusted. */
export interface DumpResult {
  /** The method used (the one chosen, for `auto`). */
  method: DumpMethod;
  /** `auto`: the choice and why; `null` when the method was given. */
  plan: Plan | null;
  /** `snapshot` and `hybrid`: what each side did, where the hybrid split, the longest kernel call. */
  kernelWalk: SnapshotDumpStats | null;
  /** The backend used. */
  backend: string;
  /** Entries the kernel returned, duplicates included. */
  entries: number;
  /** Distinct keys among them: the entries reported. */
  distinct: number;
  /** Entries the kernel returned again, dropped (restarts, range overlaps, keys rewritten ahead of the walk). */
  duplicates: number;
  /** Times a per-entry walk was sent back to the first bucket (0 for other methods). */
  restarts: number;
  /** The kernel's count just after the walk (or the count given), if known. */
  expected: number | null;
  /** The kernel's count just before the walk, if known. */
  countBefore: number | null;
  /** Why the dump could not be checked against a count, or `null` when it was. */
  countUnavailable: string | null;
  /**
   * Where the counts came from: `kernel` (the kernel's own count), `for_each`, `iter`,
   * `batch` or `keys` (a pass of a walk that is not the method's own), `array` (an array
   * holds `max_entries`), `given` (`DumpOptions.expected`); `null` without a count.
   */
  countSource: CountSource | null;
  /**
   * Whether the map was written during the dump, as far as can be told: the kernel's count
   * moved, or the kernel's walk returned a key again.
   */
  changed: boolean;
  /**
   * Whether the method reports every key that stayed in the map, unchanged, for the whole
   * dump exactly once even while the map is written: true for batch, parallel batch and
   * per-entry (with restarts followed); false for bpf_iter (it walks under RCU only and
   * resumes each read at a bucket plus a count of elements to skip), the snapshot and the
   * hybrid (the kernel walk takes no bucket lock: an element deleted and reused at once
   * can lead it into another bucket) and the study's loop.
   */
  stableOnce: boolean;
  /** Wall-clock seconds of the walk. */
  seconds: number;
  /** Seconds of untimed setup before the walk (loading and attaching the iterator). */
  setupSeconds: number;
  /** User CPU seconds of the walk. */
  user: number;
  /** System CPU seconds of the walk. */
  sys: number;
  /** `bpf(2)` calls made. */
  syscalls: number;
  /** Entries per batch call (0 for per-entry). */
  chunk: number;
  /** Batch calls that returned entries (0 for per-entry). */
  batches: number;
  /** Memory before and after the walk, and the process's peak RSS after it. */
  memory: { start: MemoryFigures; end: MemoryFigures; peakRss: number | null };
  /**
   * Whether the dump is proven whole: the map did not change, every key came once, and as
   * many keys as the kernel counts. Nothing less.
   */
  verified: boolean;
  /** What is wrong, or `null` when nothing was found: a still map whose keys do not match its count, or the study's loop. */
  problem: string | null;
}

function memory(): MemoryFigures {
  const { rss, heapTotal, heapUsed, external } = Deno.memoryUsage();
  return { rss, heapTotal, heapUsed, external };
}

/** Why a dump cannot be trusted, or `null`. */
function findProblem(
  method: DumpMethod,
  entries: number,
  distinct: number,
  changed: boolean,
  before: KernelCount,
  after: KernelCount,
): string | null {
  if (method === "seed-compat" && distinct !== entries) {
    return `${
      entries - distinct
    } of ${entries} keys were reported more than once (${distinct} distinct)`;
  }
  if (!changed && after.count !== undefined && distinct !== after.count) {
    const counts = before.count === after.count
      ? `${after.count} entries before and after`
      : `${after.count} entries`;
    const who = after.source === "kernel" || after.source === "array"
      ? "the kernel counts"
      : after.source === "given"
      ? "the count given is"
      : `${COUNT_SOURCES[after.source]} counts`;
    return `saw ${distinct} distinct keys but ${who} ${counts} (was the map written during the dump?)`;
  }
  return null;
}

function asKernelCount(expected: number | KernelCount): KernelCount {
  return typeof expected === "number" ? { count: expected, source: "given" } : expected;
}

/** How a verdict names a count: `kernel count 5`, `count 5 by a bpf_for_each_map_elem pass`. */
function countLabel(source: CountSource | null, count: number | string): string {
  switch (source) {
    case "kernel":
    case "array":
    case null:
      return `kernel count ${count}`;
    case "given":
      return `count ${count} given`;
    default:
      return `count ${count} by ${COUNT_SOURCES[source]}`;
  }
}

/**
 * A dump's verdict in one line, claiming no more than was checked: `Verified: ...` only when
 * the map stood still, every key was seen once and the count matches the kernel's.
 */
export function verdict(result: DumpResult): string {
  if (result.problem !== null) return `NOT VERIFIED: ${result.problem}`;
  if (result.changed) {
    const counts = result.countBefore !== null && result.expected !== null
      ? countLabel(result.countSource, `${result.countBefore} -> ${result.expected}`)
      : `kernel count unavailable: ${result.countUnavailable}`;
    const dropped = [
      result.duplicates ? `${result.duplicates} repeated keys dropped` : "",
      result.restarts ? `${result.restarts} restarts followed` : "",
    ].filter(Boolean).join(", ");
    const promise = result.stableOnce
      ? "keys present and unchanged throughout were reported once"
      : `${result.method} does not promise keys present throughout once: they may have been skipped or repeated`;
    return `Map written during the dump (${counts}): each key once, ${result.distinct} keys${
      dropped ? `; ${dropped}` : ""
    }; ${promise}`;
  }
  if (result.countUnavailable !== null) {
    return `Every key once, ${result.distinct} distinct; kernel count unavailable: ${result.countUnavailable}`;
  }
  return `Verified: every key once, ${result.distinct} distinct (${
    countLabel(result.countSource, result.expected!)
  })`;
}

/** Runs one method's walk: every key into `keys`, each key once to `visit`. */
async function walk(
  map: BpfMap,
  method: DumpMethod,
  keys: KeySet | undefined,
  options: DumpOptions,
  background: KeySetInBackground | undefined,
): Promise<WalkStats & { restarts: number; kernelWalk?: SnapshotDumpStats }> {
  const chunk = options.chunk ?? DEFAULT_CHUNK;
  const visit = options.visit;
  const drop: number[] = [];
  const onRepeat = options.onRepeat;
  const onDuplicate = visit || onRepeat ? (i: number) => drop.push(i) : undefined;
  const addBatch = background
    ? (batch: BatchView) => background.addPacked(batch.keys, batch.count)
    : !keys
    ? (batch: BatchView) => visit?.(batch)
    : (batch: BatchView) => {
      const repeated = keys.addPacked(batch.keys, batch.count, onDuplicate);
      if (onRepeat) {
        for (const i of drop) {
          onRepeat(batch.keys.subarray(i * map.keySize, (i + 1) * map.keySize));
        }
      }
      if (visit && (repeated === 0 || method === "seed-compat")) visit(batch);
      else if (visit) visit(withoutEntries(batch, drop, map.keySize, map.valueBytes));
      drop.length = 0;
    };
  const batchStats = (stats: WalkStats) => ({ ...stats, restarts: 0 });
  switch (method) {
    case "normal": {
      const stats = map.forEachEntry(
        visit ? (key, value) => visit({ keys: key, values: value, count: 1 }) : () => {},
        { keys: keys!, maxRestarts: options.maxRestarts, onRepeat },
      );
      return { ...stats, restarts: stats.restarts ?? 0 };
    }
    case "batch":
      return batchStats(map.forEachBatch(addBatch, { chunk }));
    case "seed-compat":
      return batchStats(map.forEachBatch(addBatch, {
        chunk,
        seedCompat: { maxCalls: Math.floor(map.info.maxEntries / chunk) },
      }));
    case "parallel":
      return batchStats(
        await forEachBatchParallel(map, addBatch, {
          chunk,
          ranges: options.ranges,
          pool: options.pool,
          inOrder: options.inOrder,
        }),
      );
    case "iter":
      return batchStats(options.iterator!.forEachBatch(addBatch));
    case "snapshot": {
      const stats = await forEachBatchSnapshot(map, addBatch, {
        snapshot: options.snapshot!,
        chunk,
      });
      return { ...batchStats(stats), kernelWalk: stats };
    }
    case "hybrid": {
      const stats = await forEachBatchHybrid(map, addBatch, {
        snapshot: options.snapshot!,
        pool: options.pool!,
        ranges: options.ranges,
        split: options.split!,
        chunk,
      });
      return { ...batchStats(stats), kernelWalk: stats };
    }
  }
}

/**
 * Dumps `map` by one method, counting every key it reports and timing the walk. Keys the
 * kernel returns again (a per-entry walk sent back to the first bucket, the kernel walks of
 * bpf_iter and the snapshot led astray by writes) are dropped and counted, so `visit` hears
 * each key once; a per-entry walk follows restarts from its last key still present and
 * gives up after `maxRestarts`.
 *
 * @example
 * ```ts
 * import { BpfMap, dumpMap } from "../../mod.ts";
 * using map = BpfMap.fromPin("/sys/fs/bpf/test_map");
 * const result = await dumpMap(map, { method: "batch", chunk: 4096 });
 * console.log(result.entries, result.seconds, result.verified);
 * ```
 */
export async function dumpMap(map: BpfMap, options: DumpOptions = {}): Promise<DumpResult> {
  const setupStart = performance.now();
  const given = options.expected === undefined ? undefined : asKernelCount(options.expected);
  // Counters opened here for this dump (closed at its end), by the method they check.
  const opened: MapCounter[] = [];
  const openCounter = (method?: DumpMethod): MapCounter => {
    const counter = MapCounter.open(map, { method });
    opened.push(counter);
    return counter;
  };
  const shape: MapShape = {
    type: map.info.type,
    entries: map.info.maxEntries,
    buckets: isArray(map.info.type) ? 0 : cursorSpace(map),
    entryBytes: map.keySize + map.valueSize,
  };
  let plan: Plan | null = null;
  // The counter to use, unless it counts by the chosen method's own walk.
  let offered = options.counter;
  if (options.method === "auto") {
    // Any count serves an estimate: the verdict's count is chosen once the method is.
    if (!given) offered ??= openCounter();
    shape.entries = (given ?? offered!.count()).count ?? map.info.maxEntries;
    plan = choosePlan(shape, {
      cpus: navigator.hardwareConcurrency,
      snapshotUnavailable: options.snapshot || options.steady ? null : MapSnapshot.unavailable(map),
      batchUnavailable: unavailableReason(lookupBatchFacility(map.info.type) ?? "maps"),
      snapshotBound: options.snapshot?.elementLimit ??
        snapshotElementBound(
          { kernelTimeBudgetMs: options.kernelTimeBudgetMs },
          map.info.maxEntries,
        ),
      workersStarted: options.pool !== undefined,
      snapshotOpened: options.snapshot !== undefined,
      steady: options.steady,
    });
  }
  const method: DumpMethod = plan?.method ?? (options.method as DumpMethod | undefined) ??
    "batch";
  requireMethod(method, map.info.type);
  const counter = given
    ? undefined
    : offered && !offered.sharesWalkWith(method)
    ? offered
    : openCounter(method);
  const countNow = (): KernelCount => given ?? counter!.count();
  const attached = method === "iter" && !options.iterator ? MapIterator.attach(map) : undefined;
  const started = !options.pool && (method === "parallel" || method === "hybrid")
    ? await (method === "parallel"
      ? ParallelPool.forRanges(options.ranges)
      : ParallelPool.start(Math.max(1, navigator.hardwareConcurrency - 1)))
    : undefined;
  let snapshot: MapSnapshot | undefined;
  try {
    snapshot = options.snapshot ??
      (method === "snapshot" || method === "hybrid"
        ? MapSnapshot.open(map, { kernelTimeBudgetMs: options.kernelTimeBudgetMs })
        : undefined);
  } catch (e) {
    started?.close();
    for (const counter of opened) counter.close();
    throw e;
  }
  const openedSnapshot = options.snapshot ? undefined : snapshot;
  const pool = options.pool ?? started;
  const hybridRanges = options.ranges ?? Math.max(1, navigator.hardwareConcurrency - 1);
  let split = options.split;
  if (method === "hybrid" && split === undefined) {
    if (!plan) shape.entries = countNow().count ?? map.info.maxEntries;
    split = plan?.split ?? hybridSplit(shape, hybridRanges, snapshot!.elementLimit);
  }
  // Keys other than 4 bytes cost a hash table probe each: where no key is needed at once
  // (nothing to hand over without its repeats), another thread counts them while this one
  // walks. 4-byte keys go into a bitmap, which is faster than the hand-over.
  const trackKeys = options.trackKeys !== false || (method !== "batch" && method !== "parallel");
  const background = !trackKeys || options.visit || options.onRepeat || map.keySize === 4 ||
      (method !== "batch" && method !== "iter")
    ? undefined
    : KeySetInBackground.start(map.keySize, map.info.maxEntries);
  const setupSeconds = (performance.now() - setupStart) / 1000;
  try {
    const keys = trackKeys ? new KeySet(map.keySize, map.info.maxEntries) : undefined;
    const before = countNow();
    const start = memory();
    const cpuStart = cpuTimes();
    const t0 = performance.now();
    const stats = await walk(map, method, keys, {
      ...options,
      iterator: options.iterator ?? attached,
      pool,
      snapshot,
      split,
      ranges: method === "hybrid" ? hybridRanges : options.ranges,
    }, background);
    const counted = background
      ? await background.counts()
      : keys ?? { added: stats.entries, duplicates: 0 };
    const seconds = (performance.now() - t0) / 1000;
    const cpuEnd = cpuTimes();
    const after = countNow();
    const duplicates = method === "seed-compat" ? 0 : counted.duplicates;
    const distinct = counted.added - counted.duplicates;
    const changed = before.count !== after.count || duplicates > 0 || stats.restarts > 0;
    const problem = findProblem(method, counted.added, distinct, changed, before, after);
    return {
      method,
      plan,
      kernelWalk: stats.kernelWalk ?? null,
      backend: methodBackend(method, map),
      entries: counted.added,
      distinct,
      duplicates,
      restarts: stats.restarts,
      expected: after.count ?? null,
      countBefore: before.count ?? null,
      countUnavailable: after.unavailable ?? null,
      countSource: after.source ?? null,
      changed,
      stableOnce: promisesStableKeysOnce(method),
      seconds,
      setupSeconds,
      user: cpuEnd.user - cpuStart.user,
      sys: cpuEnd.sys - cpuStart.sys,
      syscalls: stats.syscalls,
      chunk: stats.chunk,
      batches: stats.batches,
      memory: { start, end: memory(), peakRss: peakRss() ?? null },
      verified: problem === null && !changed && after.count !== undefined,
      problem,
    };
  } finally {
    attached?.close();
    started?.close();
    openedSnapshot?.close();
    background?.close();
    for (const counter of opened) counter.close();
  }
}
