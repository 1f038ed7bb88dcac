/**
 * Maps and BPF objects: `BpfMap` (open, create, read, write, walk) and its walkers (per entry,
 * batch), typed views, the study's fill, clang-built objects loaded through libbpf, and the
 * churn writers that write a map while it is read.
 *
 * @module
 */

export { BpfMap } from "./map.ts";
export { type BatchView, type MapSpec, type OpenOptions, type WalkStats } from "./map.ts";
export { type Codec, TypedMap, u32, u64 } from "./typed.ts";
export {
  type BatchOptions,
  type BatchRange,
  DEFAULT_CHUNK,
  DEFAULT_MAX_RESTARTS,
  type EntryWalkOptions,
  type SeenKeys,
} from "./walk.ts";
export { BpfObject, builtObjectPath, IterLink } from "./object.ts";
export { fillMap, type FillOptions, type FillResult, SEED_VALUE } from "./fill.ts";
export {
  type Churner,
  type ChurnOptions,
  type ChurnPattern,
  type ChurnResult,
  startKernelChurn,
  startUserChurn,
} from "./churn.ts";
