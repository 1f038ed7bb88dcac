/**
 * Reading a whole map: the walkers (per entry, batch), the parallel, bpf_iter, snapshot and
 * hybrid dumps, what each needs of the kernel, the cost model that picks one, and the
 * verification of what a dump reported (a key set, a count that is not the dump's own walk).
 *
 * @module
 */

export {
  type BatchOptions,
  DEFAULT_CHUNK,
  DEFAULT_MAX_RESTARTS,
  type EntryWalkOptions,
} from "./walk.ts";
export {
  DUMP_METHODS,
  dumpMap,
  type DumpMethod,
  type DumpMethodChoice,
  type DumpOptions,
  type DumpResult,
  methodBackend,
  verdict,
} from "./dump.ts";
export {
  checkRanges,
  cursorSpace,
  forEachBatchParallel,
  type ParallelOptions,
  ParallelPool,
  walkRange,
  walkRanges,
} from "./parallel.ts";
export { MapIterator } from "./iter.ts";
export {
  COUNT_SOURCES,
  type CountSource,
  type KernelCount,
  KernelCounter,
  kernelEntryCount,
  MapCounter,
  type MapCounterOptions,
  readKernelCount,
} from "./count.ts";
export { FALLBACK_METHOD, methodFacilities, methodUnavailable, requireMethod } from "./methods.ts";
export { KeySet } from "./verify.ts";
export {
  MapSnapshot,
  type SnapshotOptions,
  type SnapshotStats,
  type SnapshotWalkOptions,
} from "./snapshot.ts";
export {
  forEachBatchHybrid,
  forEachBatchSnapshot,
  type HybridOptions,
  type SnapshotDumpOptions,
  type SnapshotDumpStats,
} from "./snapshot_dump.ts";
export { choosePlan, hybridSplit, type Plan } from "./plan.ts";
