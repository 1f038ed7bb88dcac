/**
 * Dumping a whole map by one method, timed, counted and verified: the one place where
 * the scripts and the comparison get their figures.
 *
 * @module
 */

import { type KernelCount, readKernelCountInBackground } from "./count.ts";
import { cpuTimes } from "./libc.ts";
import { MapIterator } from "./iter.ts";
import type { BatchView, BpfMap, WalkStats } from "./map.ts";
import { forEachBatchParallel, ParallelPool } from "./parallel.ts";
import { peakRss } from "./system.ts";
import { KeySet } from "./verify.ts";
import { DEFAULT_CHUNK } from "./walk.ts";

/** The ways to dump a map. */
export const DUMP_METHODS = ["normal", "batch", "parallel", "iter", "seed-compat"] as const;
/**
 * A dump method: `normal` (GET_NEXT_KEY + LOOKUP_ELEM per entry), `batch` (LOOKUP_BATCH),
 * `parallel` (LOOKUP_BATCH over disjoint ranges at once), `iter` (a bpf_iter program read
 * with `read()`), `seed-compat` (the study's batch loop, which never advanced its cursor).
 */
export type DumpMethod = typeof DUMP_METHODS[number];

/** How each method issues its calls, for reports: the map's backend, or the mechanism it always uses. */
export function methodBackend(method: DumpMethod, map: BpfMap): string {
  switch (method) {
    case "parallel":
      return `${map.backend} in workers`;
    case "iter":
      return "bpf_iter + read";
    default:
      return map.backend;
  }
}

/** Options of `dumpMap`. */
export interface DumpOptions {
  /** The method (default `batch`). */
  method?: DumpMethod;
  /** Entries per batch call for the batch methods (default 4096). */
  chunk?: number;
  /** Ranges walked at once by `parallel` (default: the number of CPUs). */
  ranges?: number;
  /** An iterator already attached to the map, for `iter` (else one is attached, untimed, and closed). */
  iterator?: MapIterator;
  /** Workers already started, for `parallel` (else a pool is started, untimed, and stopped). */
  pool?: ParallelPool;
  /**
   * The number of entries the map holds (the kernel's element count, or `maxEntries` for
   * arrays), or a promise of it; a dump that saw another number of distinct keys is not
   * verified. By default the kernel's count is read while the walk runs
   * (`readKernelCountInBackground`). A count that cannot be had leaves the dump unverified,
   * with the reason in `countUnavailable`.
   */
  expected?: number | KernelCount | Promise<number | KernelCount>;
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
  /** The method used. */
  method: DumpMethod;
  /** The backend used. */
  backend: string;
  /** Entries reported by the kernel, duplicates included. */
  entries: number;
  /** Distinct keys among them. */
  distinct: number;
  /** The entry count the dump was checked against, if known. */
  expected: number | null;
  /** Why the dump could not be checked against the kernel's count, or `null` when it was. */
  countUnavailable: string | null;
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
  /** Whether every key was seen once and as many keys as the kernel counts: nothing less. */
  verified: boolean;
  /** What is wrong (keys seen twice, a count that differs), or `null` when nothing was found. */
  problem: string | null;
}

function memory(): MemoryFigures {
  const { rss, heapTotal, heapUsed, external } = Deno.memoryUsage();
  return { rss, heapTotal, heapUsed, external };
}

/** Why a dump cannot be trusted, or `null`. */
function findProblem(
  entries: number,
  distinct: number,
  expected: number | undefined,
): string | null {
  if (distinct !== entries) {
    return `${
      entries - distinct
    } of ${entries} keys were reported more than once (${distinct} distinct)`;
  }
  if (expected !== undefined && distinct !== expected) {
    return `saw ${distinct} distinct keys but the kernel counts ${expected} entries (was the map written during the dump?)`;
  }
  return null;
}

function asKernelCount(expected: number | KernelCount): KernelCount {
  return typeof expected === "number" ? { count: expected } : expected;
}

/**
 * A dump's verdict in one line, claiming no more than was checked: `Verified: ...` only when
 * every key was seen once and the count matches the kernel's.
 */
export function verdict(result: DumpResult): string {
  if (result.problem !== null) return `NOT VERIFIED: ${result.problem}`;
  if (result.countUnavailable !== null) {
    return `Every key once, ${result.distinct} distinct; kernel count unavailable: ${result.countUnavailable}`;
  }
  return `Verified: every key once, ${result.distinct} distinct (kernel count ${result.expected})`;
}

/** Runs one method's walk, handing every key it reports to `keys`. */
async function walk(
  map: BpfMap,
  method: DumpMethod,
  keys: KeySet,
  options: DumpOptions,
): Promise<WalkStats> {
  const chunk = options.chunk ?? DEFAULT_CHUNK;
  const addBatch = (batch: BatchView) => keys.addPacked(batch.keys, batch.count);
  switch (method) {
    case "normal":
      return map.forEachEntry((key) => keys.add(key));
    case "batch":
      return map.forEachBatch(addBatch, { chunk });
    case "seed-compat":
      return map.forEachBatch(addBatch, {
        chunk,
        seedCompat: { maxCalls: Math.floor(map.info.maxEntries / chunk) },
      });
    case "parallel":
      return await forEachBatchParallel(map, addBatch, {
        chunk,
        ranges: options.ranges,
        pool: options.pool,
      });
    case "iter":
      return options.iterator!.forEachBatch(addBatch);
  }
}

/**
 * Dumps `map` by one method, counting every key it reports and timing the walk.
 *
 * @example
 * ```ts
 * import { BpfMap, dumpMap } from "../mod.ts";
 * using map = BpfMap.fromPin("/sys/fs/bpf/test_map");
 * const result = await dumpMap(map, { method: "batch", chunk: 4096 });
 * console.log(result.entries, result.seconds, result.verified);
 * ```
 */
export async function dumpMap(map: BpfMap, options: DumpOptions = {}): Promise<DumpResult> {
  const method = options.method ?? "batch";
  const expected = options.expected ?? readKernelCountInBackground(map);
  const setupStart = performance.now();
  const attached = method === "iter" && !options.iterator ? MapIterator.attach(map) : undefined;
  const started = method === "parallel" && !options.pool
    ? await ParallelPool.forRanges(options.ranges)
    : undefined;
  const setupSeconds = (performance.now() - setupStart) / 1000;
  try {
    const keys = new KeySet(map.keySize);
    const start = memory();
    const cpuStart = cpuTimes();
    const t0 = performance.now();
    const stats = await walk(map, method, keys, {
      ...options,
      iterator: options.iterator ?? attached,
      pool: options.pool ?? started,
    });
    const seconds = (performance.now() - t0) / 1000;
    const cpuEnd = cpuTimes();
    const counted = asKernelCount(await expected);
    const problem = findProblem(keys.added, keys.distinct, counted.count);
    return {
      method,
      backend: methodBackend(method, map),
      entries: keys.added,
      distinct: keys.distinct,
      expected: counted.count ?? null,
      countUnavailable: counted.unavailable ?? null,
      seconds,
      setupSeconds,
      user: cpuEnd.user - cpuStart.user,
      sys: cpuEnd.sys - cpuStart.sys,
      syscalls: stats.syscalls,
      chunk: stats.chunk,
      batches: stats.batches,
      memory: { start, end: memory(), peakRss: peakRss() ?? null },
      verified: problem === null && counted.count !== undefined,
      problem,
    };
  } finally {
    attached?.close();
    started?.close();
  }
}
