/**
 * Which method dumps a given map fastest, and where the hybrid dump splits it: a cost model
 * of each method from rates measured on a 2-vCPU VM (Linux 6.18, u32 -> u32 hash maps of
 * 1,000,000 and 10,000,000 entries, `deno task compare`), in nanoseconds per element and per
 * bucket. Both costs matter: the kernel's walks cost per bucket too, so a sparse table walks
 * slower per element. The model ranks methods and balances the hybrid; it promises no time.
 *
 * @module
 */

import { isPerCpu, MapType } from "../sys/constants.ts";

/** What a method costs: per element, per bucket (hash maps) and once per dump, in nanoseconds. */
export interface MethodRate {
  /** Per element returned. */
  element: number;
  /** Per bucket of the table walked (0 for arrays: they have no buckets). */
  bucket: number;
  /** Once per dump, before the walk: starting Workers, loading a program. */
  setup: number;
}

/**
 * The rates of the methods on one thread. Measured: LOOKUP_BATCH 271 ns/entry at 1M and 355
 * at 10M (the C reference: 240 and 340); the snapshot's kernel walk 197 and 275 (empty
 * buckets: 3.5 ns each, batch 4); GET_NEXT_KEY + LOOKUP_ELEM 1,100; a Worker starts in about
 * 30 ms; the snapshot's setup is mostly zeroing its output (about 2 ns per byte); the hybrid
 * waits about 5 ms for its batch side's first key (a round trip to a Worker).
 */
export const RATES = {
  normal: { element: 1100, bucket: 3, setup: 0 },
  batch: { element: 300, bucket: 4, setup: 0 },
  snapshot: { element: 240, bucket: 3.5, setup: 3e6 },
  worker: { element: 0, bucket: 0, setup: 30e6 },
  sentinel: { element: 0, bucket: 0, setup: 5e6 },
} as const satisfies Record<string, MethodRate>;

/**
 * The share of each extra CPU the parallel dump turns into speed: its Workers' messages and
 * the keys' verification on this thread take the rest (measured on 2 CPUs: 1.67x one thread
 * at 1M entries, 1.85x at 10M, 1.63x at 104,857,600).
 */
export const PARALLEL_EFFICIENCY = 0.85;

/**
 * The same for the hybrid's two sides: the snapshot's side hands its keys over after its
 * kernel walk, not during it (measured: 2.15x one thread's batch at 1M, 2.0x at 10M, 1.85x at
 * 104,857,600).
 */
export const HYBRID_EFFICIENCY = 0.95;

/** What the model knows of a map. */
export interface MapShape {
  /** `enum bpf_map_type` number. */
  type: number;
  /** Entries it holds (the kernel's count, or `maxEntries` when unknown). */
  entries: number;
  /** Hash maps: buckets of the table; 0 for arrays. */
  buckets: number;
  /** Bytes per entry copied (key + value). */
  entryBytes: number;
}

/** What the machine and this process can do. */
export interface Abilities {
  /** CPUs this process may run on. */
  cpus: number;
  /** Why the snapshot cannot run here (type, kernel, privileges, object), or `null` when it can. */
  snapshotUnavailable: string | null;
  /** Why LOOKUP_BATCH cannot walk this map here (the kernel refuses it), or `null` when it can. */
  batchUnavailable?: string | null;
  /** The most elements one snapshot run may copy (its bound on kernel time). */
  snapshotBound: number;
  /** Workers already started (a pool given): no start-up to pay. */
  workersStarted?: boolean;
  /** A snapshot already opened for the map: no load to pay. */
  snapshotOpened?: boolean;
  /**
   * Only methods that report keys present throughout exactly once while the map is written
   * (batch, parallel batch, per entry): for maps known to be written during the dump.
   */
  steady?: boolean;
}

/** The methods `auto` chooses among. */
export type PlannedMethod = "normal" | "batch" | "parallel" | "snapshot" | "hybrid";

/** `auto`'s choice: the method, why, and each candidate's estimate. */
export interface Plan {
  /** The method chosen. */
  method: PlannedMethod;
  /** Why, in one line, for reports. */
  reason: string;
  /** Estimated milliseconds of each method considered (setup included). */
  estimatesMs: Partial<Record<PlannedMethod, number>>;
  /** `hybrid`: the fraction of the cursor space the snapshot walks. */
  split?: number;
}

/** Whether LOOKUP_BATCH walks this map type (every type this toolkit opens today). */
export function supportsBatch(type: number): boolean {
  return Object.values(MapType).includes(type as MapType);
}

function walkNs(rate: MethodRate, entries: number, buckets: number): number {
  return rate.element * entries + rate.bucket * buckets;
}

/** Rates that override the model's (measured ones). */
export interface MeasuredRates {
  /** The snapshot's kernel walk. */
  snapshot?: MethodRate;
  /** LOOKUP_BATCH on one thread. */
  batch?: MethodRate;
}

/**
 * The time of each side of a hybrid that splits at fraction `split` of the cursor space, in
 * nanoseconds: this thread runs the snapshot over the first part, up to its bound, and
 * LOOKUP_BATCH over what the bound leaves of it; the `workers` read the rest.
 */
export function hybridSides(
  shape: MapShape,
  workers: number,
  bound: number,
  split: number,
  rates: MeasuredRates = {},
): { thisThread: number; workers: number } {
  const { entries, buckets } = shape;
  const first = entries * split;
  const copied = Math.min(first, bound);
  const share = entries > 0 ? copied / entries : 0;
  const batch = rates.batch ?? RATES.batch;
  return {
    thisThread: walkNs(rates.snapshot ?? RATES.snapshot, copied, buckets * share) +
      walkNs(batch, first - copied, buckets * (split - share)),
    workers: walkNs(batch, entries - first, buckets * (1 - split)) /
      (workers * (workers > 1 ? PARALLEL_EFFICIENCY : 1)),
  };
}

/**
 * The hybrid's split: the fraction of the cursor space (buckets, or keys of an array) this
 * thread takes so that it ends when the `workers` LOOKUP_BATCH ranges over the rest do. When
 * the snapshot's bound stops it first, this thread reads the rest of its part with
 * LOOKUP_BATCH (`hybridSides`).
 */
export function hybridSplit(
  shape: MapShape,
  workers: number,
  bound: number,
  rates: MeasuredRates = {},
): number {
  // This thread's side grows with the split and the workers' shrinks: bisect.
  let [low, high] = [0, 1];
  for (let i = 0; i < 40; i++) {
    const mid = (low + high) / 2;
    const sides = hybridSides(shape, workers, bound, mid, rates);
    if (sides.thisThread < sides.workers) low = mid;
    else high = mid;
  }
  return (low + high) / 2;
}

/** The methods that report keys present throughout exactly once, even while the map is written. */
const STEADY_METHODS: readonly PlannedMethod[] = ["normal", "batch", "parallel"];
/**
 * How much faster than the best steady method the snapshot or the hybrid must be estimated to
 * be for `auto` to choose it.
 */
export const RCU_WALK_MARGIN = 1.1;

function formatMs(ms: number): string {
  return ms >= 100 ? ms.toFixed(0) : ms.toPrecision(2);
}

/**
 * Chooses the fastest exact method for a map: estimates each method the map type and the
 * machine allow (per entry only where LOOKUP_BATCH is not supported), and returns the
 * cheapest with the reason in one line. The snapshot and the hybrid, which do not promise
 * keys present throughout once while the map is written, must be `RCU_WALK_MARGIN` faster.
 *
 * @example
 * ```ts
 * import { choosePlan } from "./plan.ts";
 * const plan = choosePlan(
 *   { type: 1, entries: 1_000_000, buckets: 1_048_576, entryBytes: 8 },
 *   { cpus: 2, snapshotUnavailable: null, snapshotBound: 3_333_333 },
 * );
 * console.log(plan.method, plan.reason);
 * ```
 */
export function choosePlan(shape: MapShape, abilities: Abilities): Plan {
  const { entries, buckets } = shape;
  const cpus = Math.max(1, abilities.cpus);
  const fill = buckets > 0
    ? `${entries.toLocaleString("en-US")} entries in ${buckets.toLocaleString("en-US")} buckets`
    : `${entries.toLocaleString("en-US")} entries`;
  if (!supportsBatch(shape.type) || abilities.batchUnavailable) {
    const why = abilities.batchUnavailable ?? "the map type has no LOOKUP_BATCH";
    return {
      method: "normal",
      reason: `${fill}: ${why}, so entries are read one at a time`,
      estimatesMs: { normal: walkNs(RATES.normal, entries, buckets) / 1e6 },
    };
  }
  const batch = walkNs(RATES.batch, entries, buckets);
  const estimates: Partial<Record<PlannedMethod, number>> = { batch };
  const workerSetup = abilities.workersStarted ? 0 : RATES.worker.setup;
  if (cpus > 1) {
    estimates.parallel = workerSetup * cpus + batch / (cpus * PARALLEL_EFFICIENCY);
  }
  let split: number | undefined;
  const snapshotUnavailable = abilities.steady
    ? "steady methods only: the kernel's walk under RCU does not promise keys present throughout once"
    : isPerCpu(shape.type)
    ? "the snapshot sees only one CPU's values of a per-CPU map"
    : abilities.snapshotUnavailable;
  if (snapshotUnavailable === null) {
    const bound = abilities.snapshotBound;
    const setup = abilities.snapshotOpened
      ? 0
      : RATES.snapshot.setup + 2 * shape.entryBytes * Math.min(entries, bound);
    const copied = Math.min(entries, bound);
    const rest = entries - copied;
    estimates.snapshot = setup + walkNs(RATES.snapshot, copied, buckets * copied / entries || 0) +
      walkNs(RATES.batch, rest, buckets * rest / entries || 0);
    if (cpus > 1) {
      const workers = cpus - 1;
      split = hybridSplit(shape, workers, bound);
      const sides = hybridSides(shape, workers, bound, split);
      estimates.hybrid = setup + workerSetup * workers + RATES.sentinel.setup +
        Math.max(sides.thisThread, sides.workers) / HYBRID_EFFICIENCY;
    }
  }
  const ranked = (Object.entries(estimates) as [PlannedMethod, number][])
    .sort((a, b) => a[1] - b[1]);
  // The kernel's walks under RCU do not promise keys present throughout once, under writes:
  // they must be clearly faster than the best method that does.
  const steady = ranked.find(([name]) => STEADY_METHODS.includes(name))!;
  const fastest = ranked[0];
  const [method, best] = fastest[1] * RCU_WALK_MARGIN <= steady[1] ? fastest : steady;
  const passedOver = method === fastest[0]
    ? ""
    : `; ${fastest[0]} is less than ${
      Math.round((RCU_WALK_MARGIN - 1) * 100)
    }% faster and does not promise keys present throughout once under writes`;
  if (method !== fastest[0]) ranked.unshift(...ranked.splice(ranked.indexOf(steady), 1));
  const others = ranked.slice(1).map(([name, ns]) => `${name} ${formatMs(ns / 1e6)} ms`).join(
    ", ",
  );
  const why = snapshotUnavailable === null ? "" : `; no snapshot: ${snapshotUnavailable}`;
  const estimatesMs = Object.fromEntries(ranked.map(([name, ns]) => [name, ns / 1e6]));
  return {
    method,
    reason: `${fill}, ${cpus} CPU${cpus === 1 ? "" : "s"}: ${method} estimated ${
      formatMs(best / 1e6)
    } ms${others ? ` (${others})` : ""}${passedOver}${why}`,
    estimatesMs,
    ...(method === "hybrid" ? { split } : {}),
  };
}
