/**
 * deno-bpf-batch: read and write Linux eBPF maps from Deno through FFI, and dump whole maps
 * per entry (GET_NEXT_KEY + LOOKUP_ELEM) or in batches (LOOKUP_BATCH), on either of two
 * backends: libc `syscall()` with TypeScript-encoded attrs, or libbpf.
 *
 * @example
 * ```ts
 * import { BpfMap, u32 } from "./mod.ts";
 * using map = BpfMap.create({ type: "hash", keySize: 4, valueSize: 4, maxEntries: 1024 });
 * map.typed(u32, u32).set(1, 2);
 * const stats = map.forEachBatch((batch) => console.log(batch.count), { chunk: 256 });
 * ```
 *
 * @module
 */

export { BpfMap } from "./ffi/map.ts";
export type { BatchView, MapSpec, OpenOptions, WalkStats } from "./ffi/map.ts";
export {
  type BatchOptions,
  DEFAULT_CHUNK,
  DEFAULT_MAX_RESTARTS,
  type EntryWalkOptions,
} from "./ffi/walk.ts";
export { type Codec, TypedMap, u32, u64 } from "./ffi/typed.ts";
export { BpfArgumentError, BpfError, errnoName } from "./ffi/errors.ts";
export {
  BpfCommand,
  isPerCpu,
  MapFlag,
  MapType,
  type MapTypeName,
  mapTypeName,
  parseMapType,
  UpdateFlag,
} from "./ffi/constants.ts";
export { type BackendName, BACKENDS } from "./ffi/backend.ts";
export { parseBackendName } from "./ffi/backends.ts";
export type { MapInfo } from "./ffi/layout.ts";
export { BPFFS_ROOT, ensureBpffs, fdMemlock, peakRss, possibleCpus } from "./ffi/system.ts";
export {
  DUMP_METHODS,
  dumpMap,
  type DumpMethod,
  type DumpMethodChoice,
  type DumpOptions,
  type DumpResult,
  methodBackend,
  verdict,
} from "./ffi/dump.ts";
export {
  checkRanges,
  cursorSpace,
  forEachBatchParallel,
  type ParallelOptions,
  ParallelPool,
  walkRange,
  walkRanges,
} from "./ffi/parallel.ts";
export { MapIterator } from "./ffi/iter.ts";
export {
  BPFTOOL_MAP_TYPE_NAMES,
  formatMapPlain,
  type MapDevice,
  MapInfoScratch,
  type MapShowRecord,
  mapShowRecord,
  pinnedMapPaths,
  writeMapJson,
} from "./ffi/map_show.ts";
export { BpfObject, builtObjectPath, IterLink } from "./ffi/object.ts";
export { type KernelCount, KernelCounter, kernelEntryCount, readKernelCount } from "./ffi/count.ts";
export { fillMap, type FillOptions, type FillResult, SEED_VALUE } from "./ffi/fill.ts";
export { KeySet } from "./ffi/verify.ts";
export {
  type Churner,
  type ChurnOptions,
  type ChurnResult,
  startKernelChurn,
  startUserChurn,
} from "./ffi/churn.ts";
export {
  MapSnapshot,
  type SnapshotOptions,
  type SnapshotStats,
  type SnapshotWalkOptions,
} from "./ffi/snapshot.ts";
export {
  forEachBatchHybrid,
  forEachBatchSnapshot,
  type HybridOptions,
  type SnapshotDumpOptions,
  type SnapshotDumpStats,
} from "./ffi/snapshot_dump.ts";
export { choosePlan, hybridSplit, type Plan } from "./ffi/plan.ts";
export {
  type ArrayType,
  type Btf,
  BtfBuilder,
  type BtfCodec,
  btfCodec,
  BtfError,
  type BtfMapSpec,
  type BtfType,
  type BtfValue,
  charsToString,
  type CodecOptions,
  compileDecoder,
  compileEncoder,
  type Const,
  createMapWithBtf,
  type Datasec,
  type DeclTag,
  type DecodeFn,
  type EncodeFn,
  type Enum,
  type Enum64,
  type Enum64Value,
  type EnumValue,
  type Float,
  type Func,
  type FuncProto,
  type Fwd,
  type Int,
  kernelBtf,
  loadBtf,
  type LoadedBtf,
  loadMapBtf,
  type MapBtf,
  type Member,
  type Param,
  parseBtf,
  type ParseOptions,
  type Pointer,
  type Restrict,
  sizeof,
  stringToChars,
  type Struct,
  type Typedef,
  typeName,
  type TypeSpec,
  type TypeTag,
  type Union,
  type Var,
  type VarSecinfo,
  type Void,
  type Volatile,
} from "./ffi/btf/mod.ts";
export {
  BpftoolDump,
  type BpftoolDumpOptions,
  type BpftoolFormat,
  type DumpShape,
} from "./ffi/format/bpftool_dump.ts";
export { type ByteSink, ByteWriter } from "./ffi/format/byte_writer.ts";
