/**
 * Dumping a whole map by one method, timed, counted and verified: the one place where
 * the scripts and the comparison get their figures.
 *
 * @module
 */

import { cpuTimes } from "./libc.ts";
import type { BpfMap } from "./map.ts";
import { peakRss } from "./system.ts";
import { KeySet } from "./verify.ts";
import { DEFAULT_CHUNK } from "./walk.ts";

/** The ways to dump a map. */
export const DUMP_METHODS = ["normal", "batch", "seed-compat"] as const;
/** A dump method: `normal` (GET_NEXT_KEY + LOOKUP_ELEM), `batch` (LOOKUP_BATCH), `seed-compat` (the study's flawed batch loop). */
export type DumpMethod = typeof DUMP_METHODS[number];

/** Options of `dumpMap`. */
export interface DumpOptions {
  /** The method (default `batch`). */
  method?: DumpMethod;
  /** Entries per batch call for the batch methods (default 4096). */
  chunk?: number;
  /**
   * The number of entries the map holds, if known from elsewhere (the kernel's element
   * count, or `maxEntries` for arrays); a dump that saw another number of distinct keys is
   * not verified.
   */
  expected?: number;
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
  /** Wall-clock seconds of the walk. */
  seconds: number;
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
  /** Whether every key was seen once and (if known) the count matches. */
  verified: boolean;
  /** What is wrong when not verified. */
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
    return `saw ${distinct} distinct keys but the map holds ${expected}`;
  }
  return null;
}

/**
 * Dumps `map` by one method, counting every key it reports and timing the walk.
 *
 * @example
 * ```ts
 * import { BpfMap, dumpMap } from "../mod.ts";
 * using map = BpfMap.fromPin("/sys/fs/bpf/test_map");
 * const result = dumpMap(map, { method: "batch", chunk: 4096 });
 * console.log(result.entries, result.seconds, result.verified);
 * ```
 */
export function dumpMap(map: BpfMap, options: DumpOptions = {}): DumpResult {
  const method = options.method ?? "batch";
  const chunk = options.chunk ?? DEFAULT_CHUNK;
  const keys = new KeySet(map.keySize);
  const start = memory();
  const cpuStart = cpuTimes();
  const t0 = performance.now();
  const stats = method === "normal"
    ? map.forEachEntry((key) => keys.add(key))
    : map.forEachBatch((batch) => keys.addPacked(batch.keys, batch.count), {
      chunk,
      seedCompat: method === "seed-compat"
        ? { maxCalls: Math.floor(map.info.maxEntries / chunk) }
        : undefined,
    });
  const seconds = (performance.now() - t0) / 1000;
  const cpuEnd = cpuTimes();
  const problem = findProblem(keys.added, keys.distinct, options.expected);
  return {
    method,
    backend: map.backend,
    entries: keys.added,
    distinct: keys.distinct,
    expected: options.expected ?? null,
    seconds,
    user: cpuEnd.user - cpuStart.user,
    sys: cpuEnd.sys - cpuStart.sys,
    syscalls: stats.syscalls,
    chunk: stats.chunk,
    batches: stats.batches,
    memory: { start, end: memory(), peakRss: peakRss() ?? null },
    verified: problem === null,
    problem,
  };
}
