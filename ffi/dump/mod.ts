/**
 * Reading a whole map: the parallel, bpf_iter, snapshot and
 * hybrid dumps, what each needs of the kernel, the cost model that picks one, and the
 * verification of what a dump reported (a key set, a count that is not the dump's own walk).
 *
 * @module
 */

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
  rangeBounds,
  type RangeWalkOptions,
  walkRanges,
} from "./parallel.ts";
export { ParallelPool } from "./pool.ts";
export { RangeSeams } from "./seams.ts";
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
  type RangeOptions,
  type SnapshotDumpOptions,
  type SnapshotDumpStats,
  walkRange,
} from "./snapshot_dump.ts";
export { choosePlan, hybridSplit, type Plan } from "./plan.ts";
