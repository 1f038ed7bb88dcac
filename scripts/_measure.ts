/**
 * The measuring engine of `compare.ts`, `sweep.ts` and the benchmarks: which method and
 * backend pairs to run, fresh maps to run them on, rounds interleaved across the pairs,
 * verification of every dump, heap growth and peak RSS per pair, and the C reference.
 *
 * @module
 */

import {
  type BackendName,
  BpfError,
  BpfMap,
  dumpMap,
  type DumpMethodChoice,
  type DumpResult,
  fillMap,
  MapCounter,
  MapIterator,
  MapSnapshot,
  type MapTypeName,
  ParallelPool,
  peakRss,
} from "../mod.ts";
import { methodUnavailable } from "../ffi/dump/methods.ts";
import { resetPeakRss } from "../ffi/sys/system.ts";
import { summary } from "./_cli.ts";

/** One way to dump: a method, and the backend its map is opened with. */
export interface Variant {
  /** The dump method (`auto`: the one `dumpMap` chooses; `DumpResult.method` says which). */
  method: DumpMethodChoice;
  /** The backend the map is opened with (parallel and iter always use their own mechanism). */
  backend: BackendName;
  /** How tables and charts name it. */
  label: string;
}

/**
 * Every method on every backend it can use: per-entry, batch and parallel on both; iter,
 * snapshot, hybrid (its batch side on the syscall backend) and auto once.
 */
export const VARIANTS: readonly Variant[] = [
  { method: "normal", backend: "syscall", label: "per-entry / syscall" },
  { method: "normal", backend: "libbpf", label: "per-entry / libbpf" },
  { method: "batch", backend: "syscall", label: "batch / syscall" },
  { method: "batch", backend: "libbpf", label: "batch / libbpf" },
  { method: "parallel", backend: "syscall", label: "parallel batch / syscall" },
  { method: "parallel", backend: "libbpf", label: "parallel batch / libbpf" },
  { method: "iter", backend: "libbpf", label: "bpf_iter" },
  { method: "snapshot", backend: "syscall", label: "snapshot" },
  { method: "hybrid", backend: "syscall", label: "hybrid" },
  { method: "auto", backend: "syscall", label: "auto" },
];

/** Whether a method runs the in-kernel snapshot (or may: `auto`). */
function usesSnapshot(method: DumpMethodChoice): boolean {
  return method === "snapshot" || method === "hybrid" || method === "auto";
}

/** What the rounds of one variant measured. */
export interface Measurement {
  /** The variant. */
  variant: Variant;
  /** Seconds of each round's walk. */
  seconds: number[];
  /** The last round's full result (null when skipped). */
  last: DumpResult | null;
  /** V8 heap growth of the last round, after forced GCs (null without `--expose-gc`). */
  heapGrowth: number | null;
  /** Peak RSS during the last round (the peak is reset before it). */
  peakRss: number | null;
  /** Why the variant was skipped, if it was. */
  skipped: string | null;
  /** Why a dump could not be trusted, if one could not. */
  problem: string | null;
}

/** Options of `measure`. */
export interface MeasureOptions {
  /** Rounds per variant, interleaved (default 3). */
  rounds?: number;
  /** Entries per batch call (default 4096). */
  chunk?: number;
  /** Ranges of the parallel dump (default: the number of CPUs). */
  ranges?: number;
  /** The kernel time one snapshot run may take, in milliseconds (default 1000). */
  kernelTimeBudgetMs?: number;
  /** Called before each dump, for progress lines. */
  onStep?: (variant: Variant, round: number) => void;
  /** Called at the end of each round (to run a reference in the same rhythm). */
  afterRound?: (round: number) => Promise<void>;
}

const gc = (globalThis as { gc?: () => void }).gc;

function heapAfterGc(): number | null {
  if (!gc) return null;
  gc();
  return Deno.memoryUsage().heapUsed;
}

/**
 * Dumps the map with id `mapId` by each variant, `rounds` times, interleaving the variants
 * round by round so a drifting machine affects them alike. A variant the map type refuses is
 * skipped with the kernel's reason; a dump that is not verified is kept with its problem.
 */
export async function measure(
  mapId: number,
  variants: readonly Variant[],
  options: MeasureOptions = {},
): Promise<Measurement[]> {
  const rounds = options.rounds ?? 3;
  const maps = new Map<BackendName, BpfMap>();
  const open = (backend: BackendName) => {
    let map = maps.get(backend);
    if (!map) maps.set(backend, map = BpfMap.fromId(mapId, { backend }));
    return map;
  };
  const iterators = new Map<BpfMap, MapIterator>();
  // One counter per method: a dump is never checked against a pass of its own walk.
  const counters = new Map<DumpMethodChoice, MapCounter>();
  const snapshots = new Map<BpfMap, MapSnapshot>();
  let pool: ParallelPool | undefined;
  // The hybrid's batch side: one Worker per CPU but the one the snapshot runs on.
  let hybridPool: ParallelPool | undefined;
  const results: Measurement[] = variants.map((variant) => ({
    variant,
    seconds: [],
    last: null,
    heapGrowth: null,
    peakRss: null,
    skipped: null,
    problem: null,
  }));
  try {
    for (let round = 0; round < rounds; round++) {
      for (const measurement of results) {
        if (measurement.skipped) continue;
        const { variant } = measurement;
        const map = open(variant.backend);
        const unavailable = variant.method === "auto"
          ? null
          : methodUnavailable(variant.method, map.info.type);
        if (unavailable !== null) {
          measurement.skipped = unavailable;
          continue;
        }
        options.onStep?.(variant, round);
        try {
          let iterator: MapIterator | undefined;
          if (variant.method === "iter") {
            iterator = iterators.get(map) ?? MapIterator.attach(map);
            iterators.set(map, iterator);
          }
          if (variant.method === "parallel") {
            pool ??= await ParallelPool.forRanges(options.ranges);
          }
          let snapshot: MapSnapshot | undefined;
          if (usesSnapshot(variant.method)) {
            const unavailable = MapSnapshot.unavailable(map);
            if (unavailable !== null && variant.method !== "auto") {
              measurement.skipped = `${variant.method}: ${unavailable}`;
              continue;
            }
            if (unavailable === null) {
              snapshot = snapshots.get(map) ??
                MapSnapshot.open(map, { kernelTimeBudgetMs: options.kernelTimeBudgetMs });
              snapshots.set(map, snapshot);
            }
            if (variant.method === "hybrid") {
              hybridPool ??= await ParallelPool.start(
                Math.max(1, navigator.hardwareConcurrency - 1),
              );
            }
          }
          let counter = counters.get(variant.method);
          if (!counter) {
            counter = MapCounter.open(map, {
              method: variant.method === "auto" ? undefined : variant.method,
            });
            counters.set(variant.method, counter);
          }
          const heapBefore = heapAfterGc();
          resetPeakRss();
          const result = await dumpMap(map, {
            method: variant.method,
            chunk: options.chunk,
            ranges: variant.method === "parallel" ? options.ranges : undefined,
            counter,
            iterator,
            // `auto` starts the Workers of what it chooses (untimed, as every setup).
            pool: variant.method === "parallel"
              ? pool
              : variant.method === "hybrid"
              ? hybridPool
              : undefined,
            snapshot,
            kernelTimeBudgetMs: options.kernelTimeBudgetMs,
          });
          const heapAfter = heapAfterGc();
          measurement.seconds.push(result.seconds);
          measurement.last = result;
          measurement.peakRss = peakRss() ?? null;
          measurement.heapGrowth = heapBefore === null || heapAfter === null
            ? null
            : heapAfter - heapBefore;
          measurement.problem ??= result.problem;
        } catch (e) {
          if (
            !(e instanceof BpfError) &&
            !(e instanceof Error && /bpf_iter|iterator/i.test(e.message))
          ) throw e;
          measurement.skipped =
            `${variant.method} not available for ${map.typeName} maps: ${e.message}`;
        }
      }
      await options.afterRound?.(round);
    }
  } finally {
    for (const iterator of iterators.values()) iterator.close();
    for (const counter of counters.values()) counter.close();
    for (const snapshot of snapshots.values()) snapshot.close();
    pool?.close();
    hybridPool?.close();
    for (const map of maps.values()) map.close();
  }
  return results;
}

/** Median, min and max of a measurement's rounds. */
export function spread(seconds: number[]): { median: number; min: number; max: number } {
  const s = summary(seconds);
  return { median: s.median, min: s.min, max: s.max };
}

/**
 * Creates a `type` map of u32 keys and values holding `entries` entries (keys `0 ..
 * entries - 1`, value 0xdeadbeef), with room for `maxEntries` (default `entries`; LRU maps
 * get twice the room, since they evict before they are full).
 */
export async function createFilledMap(
  type: MapTypeName,
  entries: number,
  maxEntries?: number,
): Promise<BpfMap> {
  const lru = type === "lru_hash" || type === "lru_percpu_hash";
  const map = BpfMap.create({
    type,
    keySize: 4,
    valueSize: 4,
    maxEntries: Math.max(1, maxEntries ?? (lru ? entries * 2 : entries)),
    name: "compare",
  });
  try {
    await fillMap(map, { entries });
    return map;
  } catch (e) {
    map.close();
    throw e;
  }
}
