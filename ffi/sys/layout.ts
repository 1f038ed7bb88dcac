/**
 * The binary layouts of the `bpf(2)` ABI as tables of named fields, and pure encoders and
 * decoders over `DataView`s built on them.
 *
 * Each field names its C path (`batch.in_batch` for `union bpf_attr`), so that a test can
 * compile a probe against the system `linux/bpf.h` and compare every offset and size with
 * these tables. Nothing here touches the kernel: it is testable without root.
 *
 * @module
 */

/** One field of a C struct or union: where it starts, how wide it is, and its C name. */
export interface Field {
  /** Byte offset from the start of the struct or union. */
  readonly offset: number;
  /** Width in bytes (1, 4 or 8 for integers; the array length for `char[]`). */
  readonly size: number;
  /** The member path in C, e.g. `batch.count`, as `offsetof()` takes it. */
  readonly c: string;
}

/** A struct or union arm: its fields by name, and the C type they belong to. */
export interface Layout {
  /** The C type, e.g. `union bpf_attr`. */
  readonly type: string;
  /** The fields this toolkit reads or writes, by name. */
  readonly fields: Readonly<Record<string, Field>>;
}

/**
 * One row of a layout table: the field at `offset`, `size` bytes wide, named `c` in C.
 *
 * @example
 * ```ts
 * import { field, type Layout } from "./layout.ts";
 * const FREEZE = { type: "union bpf_attr", fields: { mapFd: field(0, 4, "map_fd") } } satisfies Layout;
 * console.log(FREEZE.fields.mapFd.offset); // 0
 * ```
 */
export function field(offset: number, size: number, c: string): Field {
  return { offset, size, c };
}

/** `union bpf_attr`, arm of `BPF_MAP_CREATE`. */
export const MAP_CREATE_ATTR = {
  type: "union bpf_attr",
  fields: {
    mapType: field(0, 4, "map_type"),
    keySize: field(4, 4, "key_size"),
    valueSize: field(8, 4, "value_size"),
    maxEntries: field(12, 4, "max_entries"),
    mapFlags: field(16, 4, "map_flags"),
    innerMapFd: field(20, 4, "inner_map_fd"),
    numaNode: field(24, 4, "numa_node"),
    mapName: field(28, 16, "map_name"),
    mapIfindex: field(44, 4, "map_ifindex"),
    btfFd: field(48, 4, "btf_fd"),
    btfKeyTypeId: field(52, 4, "btf_key_type_id"),
    btfValueTypeId: field(56, 4, "btf_value_type_id"),
    btfVmlinuxValueTypeId: field(60, 4, "btf_vmlinux_value_type_id"),
    mapExtra: field(64, 8, "map_extra"),
  },
} as const satisfies Layout;

/** `union bpf_attr`, arm of the element commands (`LOOKUP_ELEM`, `UPDATE_ELEM`, `DELETE_ELEM`, `GET_NEXT_KEY`). */
export const ELEM_ATTR = {
  type: "union bpf_attr",
  fields: {
    mapFd: field(0, 4, "map_fd"),
    key: field(8, 8, "key"),
    /** `value` for lookup and update, `next_key` for `GET_NEXT_KEY` (the same union slot). */
    value: field(16, 8, "value"),
    nextKey: field(16, 8, "next_key"),
    flags: field(24, 8, "flags"),
  },
} as const satisfies Layout;

/** `union bpf_attr`, arm of the four batch commands (`attr.batch`). */
export const BATCH_ATTR = {
  type: "union bpf_attr",
  fields: {
    inBatch: field(0, 8, "batch.in_batch"),
    outBatch: field(8, 8, "batch.out_batch"),
    keys: field(16, 8, "batch.keys"),
    values: field(24, 8, "batch.values"),
    count: field(32, 4, "batch.count"),
    mapFd: field(36, 4, "batch.map_fd"),
    elemFlags: field(40, 8, "batch.elem_flags"),
    flags: field(48, 8, "batch.flags"),
  },
} as const satisfies Layout;

/** `union bpf_attr`, arm of `BPF_OBJ_PIN` and `BPF_OBJ_GET`. */
export const OBJ_ATTR = {
  type: "union bpf_attr",
  fields: {
    pathname: field(0, 8, "pathname"),
    bpfFd: field(8, 4, "bpf_fd"),
    fileFlags: field(12, 4, "file_flags"),
  },
} as const satisfies Layout;

/** `union bpf_attr`, arm of `BPF_MAP_GET_NEXT_ID` and `BPF_MAP_GET_FD_BY_ID`. */
export const GET_ID_ATTR = {
  type: "union bpf_attr",
  fields: {
    startId: field(0, 4, "start_id"),
    mapId: field(0, 4, "map_id"),
    nextId: field(4, 4, "next_id"),
    openFlags: field(8, 4, "open_flags"),
  },
} as const satisfies Layout;

/** `union bpf_attr`, arm of `BPF_OBJ_GET_INFO_BY_FD` (`attr.info`). */
export const INFO_ATTR = {
  type: "union bpf_attr",
  fields: {
    bpfFd: field(0, 4, "info.bpf_fd"),
    infoLen: field(4, 4, "info.info_len"),
    info: field(8, 8, "info.info"),
  },
} as const satisfies Layout;

/** `union bpf_attr`, arm of `BPF_MAP_FREEZE`. */
export const FREEZE_ATTR = {
  type: "union bpf_attr",
  fields: { mapFd: field(0, 4, "map_fd") },
} as const satisfies Layout;

/** `struct bpf_map_info`, as `BPF_OBJ_GET_INFO_BY_FD` fills it. */
export const MAP_INFO = {
  type: "struct bpf_map_info",
  fields: {
    type: field(0, 4, "type"),
    id: field(4, 4, "id"),
    keySize: field(8, 4, "key_size"),
    valueSize: field(12, 4, "value_size"),
    maxEntries: field(16, 4, "max_entries"),
    mapFlags: field(20, 4, "map_flags"),
    name: field(24, 16, "name"),
    ifindex: field(40, 4, "ifindex"),
    btfVmlinuxValueTypeId: field(44, 4, "btf_vmlinux_value_type_id"),
    netnsDev: field(48, 8, "netns_dev"),
    netnsIno: field(56, 8, "netns_ino"),
    btfId: field(64, 4, "btf_id"),
    btfKeyTypeId: field(68, 4, "btf_key_type_id"),
    btfValueTypeId: field(72, 4, "btf_value_type_id"),
    mapExtra: field(80, 8, "map_extra"),
  },
} as const satisfies Layout;

/** `union bpf_attr`, arm of `BPF_PROG_LOAD` (the fields the toolkit's small programs need). */
export const PROG_LOAD_ATTR = {
  type: "union bpf_attr",
  fields: {
    progType: field(0, 4, "prog_type"),
    insnCnt: field(4, 4, "insn_cnt"),
    insns: field(8, 8, "insns"),
    license: field(16, 8, "license"),
    logLevel: field(24, 4, "log_level"),
    logSize: field(28, 4, "log_size"),
    logBuf: field(32, 8, "log_buf"),
    progFlags: field(44, 4, "prog_flags"),
    progName: field(48, 16, "prog_name"),
    expectedAttachType: field(68, 4, "expected_attach_type"),
    progBtfFd: field(72, 4, "prog_btf_fd"),
    funcInfoRecSize: field(76, 4, "func_info_rec_size"),
    funcInfo: field(80, 8, "func_info"),
    funcInfoCnt: field(88, 4, "func_info_cnt"),
    attachBtfId: field(108, 4, "attach_btf_id"),
    attachBtfObjFd: field(112, 4, "attach_btf_obj_fd"),
  },
} as const satisfies Layout;

/** `union bpf_attr`, arm of `BPF_BTF_LOAD`. */
export const BTF_LOAD_ATTR = {
  type: "union bpf_attr",
  fields: {
    btf: field(0, 8, "btf"),
    btfLogBuf: field(8, 8, "btf_log_buf"),
    btfSize: field(16, 4, "btf_size"),
    btfLogSize: field(20, 4, "btf_log_size"),
    btfLogLevel: field(24, 4, "btf_log_level"),
  },
} as const satisfies Layout;

/** `union bpf_attr`, arm of `BPF_LINK_CREATE` (`attr.link_create`), for iterators. */
export const LINK_CREATE_ATTR = {
  type: "union bpf_attr",
  fields: {
    progFd: field(0, 4, "link_create.prog_fd"),
    targetFd: field(4, 4, "link_create.target_fd"),
    attachType: field(8, 4, "link_create.attach_type"),
    flags: field(12, 4, "link_create.flags"),
    iterInfo: field(16, 8, "link_create.iter_info"),
    iterInfoLen: field(24, 4, "link_create.iter_info_len"),
  },
} as const satisfies Layout;

/** `union bpf_attr`, arm of `BPF_ITER_CREATE` (`attr.iter_create`). */
export const ITER_CREATE_ATTR = {
  type: "union bpf_attr",
  fields: {
    linkFd: field(0, 4, "iter_create.link_fd"),
    flags: field(4, 4, "iter_create.flags"),
  },
} as const satisfies Layout;

/** `union bpf_attr`, arm of `BPF_PROG_TEST_RUN` (`attr.test`), with no data and no context. */
export const TEST_RUN_ATTR = {
  type: "union bpf_attr",
  fields: {
    progFd: field(0, 4, "test.prog_fd"),
    retval: field(4, 4, "test.retval"),
    ctxSizeIn: field(40, 4, "test.ctx_size_in"),
    ctxIn: field(48, 8, "test.ctx_in"),
    flags: field(64, 4, "test.flags"),
  },
} as const satisfies Layout;

/** Every layout the toolkit uses, by the name a probe prints. */
export const LAYOUTS = {
  MAP_CREATE_ATTR,
  ELEM_ATTR,
  BATCH_ATTR,
  OBJ_ATTR,
  GET_ID_ATTR,
  INFO_ATTR,
  FREEZE_ATTR,
  MAP_INFO,
  PROG_LOAD_ATTR,
  LINK_CREATE_ATTR,
  ITER_CREATE_ATTR,
  TEST_RUN_ATTR,
} as const;

/** The bytes a layout spans: the end of its last field, rounded up to 8 (the size passed to the kernel). */
export function layoutSize(layout: Layout): number {
  let end = 0;
  for (const f of Object.values(layout.fields)) {
    end = Math.max(end, f.offset + f.size);
  }
  return (end + 7) & ~7;
}

/** Writes an integer field; 8-byte fields take a `bigint`, narrower ones a `number`. */
export function writeField(
  view: DataView,
  f: Field,
  value: number | bigint,
): void {
  switch (f.size) {
    case 4:
      view.setUint32(f.offset, Number(value), true);
      return;
    case 8:
      view.setBigUint64(f.offset, BigInt(value), true);
      return;
    default:
      throw new RangeError(`Field "${f.c}" is not an integer field`);
  }
}

/** Reads a 4-byte field as a `number`. */
export function readU32(view: DataView, f: Field): number {
  return view.getUint32(f.offset, true);
}

/** Reads an 8-byte field as a `bigint`. */
export function readU64(view: DataView, f: Field): bigint {
  return view.getBigUint64(f.offset, true);
}

/** Writes a NUL-padded name into a `char[]` field, cut to leave room for the terminating NUL. */
export function writeName(view: DataView, f: Field, name: string): void {
  const bytes = new TextEncoder().encode(name).subarray(0, f.size - 1);
  const target = new Uint8Array(
    view.buffer,
    view.byteOffset + f.offset,
    f.size,
  );
  target.fill(0);
  target.set(bytes);
}

/** Reads a NUL-terminated name from a `char[]` field. */
export function readName(view: DataView, f: Field): string {
  const bytes = new Uint8Array(view.buffer, view.byteOffset + f.offset, f.size);
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(bytes.subarray(0, end < 0 ? f.size : end));
}

/** What `BPF_MAP_CREATE` takes. */
export interface MapCreateAttr {
  /** `enum bpf_map_type` number. */
  mapType: number;
  /** Key size in bytes. */
  keySize: number;
  /** Value size in bytes (per CPU for per-CPU maps). */
  valueSize: number;
  /** The most entries the map can hold. */
  maxEntries: number;
  /** `map_flags`. */
  mapFlags: number;
  /** Name, at most 15 bytes kept. */
  name: string;
  /** The inner map's fd, for a map of maps (the template of its values). */
  innerMapFd?: number;
  /** The network device's index, for a map offloaded to it. */
  ifindex?: number;
}

/** Encodes the `BPF_MAP_CREATE` arm. The view must be zeroed and at least `layoutSize(MAP_CREATE_ATTR)` long. */
export function encodeMapCreate(view: DataView, attr: MapCreateAttr): void {
  const f = MAP_CREATE_ATTR.fields;
  writeField(view, f.mapType, attr.mapType);
  writeField(view, f.keySize, attr.keySize);
  writeField(view, f.valueSize, attr.valueSize);
  writeField(view, f.maxEntries, attr.maxEntries);
  writeField(view, f.mapFlags, attr.mapFlags);
  writeName(view, f.mapName, attr.name);
  if (attr.innerMapFd) writeField(view, f.innerMapFd, attr.innerMapFd);
  if (attr.ifindex) writeField(view, f.mapIfindex, attr.ifindex);
}

/** What the element commands take; pointers are addresses of buffers the caller keeps alive. */
export interface ElemAttr {
  /** The map's file descriptor. */
  mapFd: number;
  /** Address of the key (0 for `GET_NEXT_KEY` from the start). */
  key: bigint;
  /** Address of the value, or of the next key for `GET_NEXT_KEY`. */
  value: bigint;
  /** `BPF_ANY`, `BPF_NOEXIST`, `BPF_EXIST` or `BPF_F_LOCK`. */
  flags: bigint;
}

/** Encodes the element-command arm. */
export function encodeElem(view: DataView, attr: ElemAttr): void {
  const f = ELEM_ATTR.fields;
  writeField(view, f.mapFd, attr.mapFd);
  writeField(view, f.key, attr.key);
  writeField(view, f.value, attr.value);
  writeField(view, f.flags, attr.flags);
}

/** What the batch commands take; pointers are addresses of buffers the caller keeps alive. */
export interface BatchAttr {
  /** Address of the cursor to resume from; 0 starts the walk. */
  inBatch: bigint;
  /** Address where the kernel writes the cursor to resume from. */
  outBatch: bigint;
  /** Address of the keys array. */
  keys: bigint;
  /** Address of the values array. */
  values: bigint;
  /** Entries in the arrays (input), entries done (output). */
  count: number;
  /** The map's file descriptor. */
  mapFd: number;
  /** Flags applied to each element (`BPF_F_LOCK`, update flags). */
  elemFlags: bigint;
}

/** Encodes the batch arm (`attr.batch`). */
export function encodeBatch(view: DataView, attr: BatchAttr): void {
  const f = BATCH_ATTR.fields;
  writeField(view, f.inBatch, attr.inBatch);
  writeField(view, f.outBatch, attr.outBatch);
  writeField(view, f.keys, attr.keys);
  writeField(view, f.values, attr.values);
  writeField(view, f.count, attr.count);
  writeField(view, f.mapFd, attr.mapFd);
  writeField(view, f.elemFlags, attr.elemFlags);
  writeField(view, f.flags, 0n);
}

/** Decoded `struct bpf_map_info`. */
export interface MapInfo {
  /** Map id, unique while the map lives. */
  id: number;
  /** `enum bpf_map_type` number. */
  type: number;
  /** Key size in bytes. */
  keySize: number;
  /** Value size in bytes (per CPU for per-CPU maps). */
  valueSize: number;
  /** The most entries the map can hold. */
  maxEntries: number;
  /** `map_flags` given at creation. */
  flags: number;
  /** The map's name (at most 15 bytes). */
  name: string;
  /** BTF object id, 0 without BTF. */
  btfId: number;
  /** Type id of the keys in BTF object `btfId`, 0 without one. */
  btfKeyTypeId: number;
  /** Type id of the values in BTF object `btfId`, 0 without one. */
  btfValueTypeId: number;
  /** Type id of the values in the kernel's own BTF (struct_ops maps), else 0. */
  btfVmlinuxValueTypeId: number;
}

/** Decodes `struct bpf_map_info`. */
export function decodeMapInfo(view: DataView): MapInfo {
  const f = MAP_INFO.fields;
  return {
    id: readU32(view, f.id),
    type: readU32(view, f.type),
    keySize: readU32(view, f.keySize),
    valueSize: readU32(view, f.valueSize),
    maxEntries: readU32(view, f.maxEntries),
    flags: readU32(view, f.mapFlags),
    name: readName(view, f.name),
    btfId: readU32(view, f.btfId),
    btfKeyTypeId: readU32(view, f.btfKeyTypeId),
    btfValueTypeId: readU32(view, f.btfValueTypeId),
    btfVmlinuxValueTypeId: readU32(view, f.btfVmlinuxValueTypeId),
  };
}

/** libbpf's `struct bpf_map_create_opts` (`bpf/bpf.h`), the options of `bpf_map_create()`. */
export const LIBBPF_MAP_CREATE_OPTS = {
  type: "struct bpf_map_create_opts",
  fields: {
    sz: field(0, 8, "sz"),
    btfFd: field(8, 4, "btf_fd"),
    innerMapFd: field(24, 4, "inner_map_fd"),
    mapFlags: field(28, 4, "map_flags"),
    mapExtra: field(32, 8, "map_extra"),
    numaNode: field(40, 4, "numa_node"),
    mapIfindex: field(44, 4, "map_ifindex"),
  },
} as const satisfies Layout;

/** libbpf's `struct bpf_map_batch_opts` (`bpf/bpf.h`), the options of the batch functions. */
export const LIBBPF_BATCH_OPTS = {
  type: "struct bpf_map_batch_opts",
  fields: {
    sz: field(0, 8, "sz"),
    elemFlags: field(8, 8, "elem_flags"),
    flags: field(16, 8, "flags"),
  },
} as const satisfies Layout;

/** libbpf's `struct bpf_iter_attach_opts` (`bpf/libbpf.h`). */
export const LIBBPF_ITER_ATTACH_OPTS = {
  type: "struct bpf_iter_attach_opts",
  fields: {
    sz: field(0, 8, "sz"),
    linkInfo: field(8, 8, "link_info"),
    linkInfoLen: field(16, 4, "link_info_len"),
  },
} as const satisfies Layout;

/**
 * libbpf's `struct bpf_test_run_opts` (`bpf/bpf.h`), the options of `bpf_prog_test_run_opts()`.
 * Its `sz` is `layoutSize(LIBBPF_TEST_RUN_OPTS)` (80: the struct ends with `batch_size`).
 */
export const LIBBPF_TEST_RUN_OPTS = {
  type: "struct bpf_test_run_opts",
  fields: {
    sz: field(0, 8, "sz"),
    dataIn: field(8, 8, "data_in"),
    dataOut: field(16, 8, "data_out"),
    dataSizeIn: field(24, 4, "data_size_in"),
    dataSizeOut: field(28, 4, "data_size_out"),
    ctxIn: field(32, 8, "ctx_in"),
    ctxOut: field(40, 8, "ctx_out"),
    ctxSizeIn: field(48, 4, "ctx_size_in"),
    ctxSizeOut: field(52, 4, "ctx_size_out"),
    retval: field(56, 4, "retval"),
    repeat: field(60, 4, "repeat"),
    duration: field(64, 4, "duration"),
    flags: field(68, 4, "flags"),
    cpu: field(72, 4, "cpu"),
    batchSize: field(76, 4, "batch_size"),
  },
} as const satisfies Layout;

/** `union bpf_iter_link_info`, the map arm: which map an iterator walks. */
export const ITER_LINK_INFO = {
  type: "union bpf_iter_link_info",
  fields: { mapFd: field(0, 4, "map.map_fd") },
} as const satisfies Layout;

/** The libbpf option structs, by the name a probe prints (they need `bpf/bpf.h` and `bpf/libbpf.h`). */
export const LIBBPF_LAYOUTS = {
  LIBBPF_MAP_CREATE_OPTS,
  LIBBPF_BATCH_OPTS,
  LIBBPF_ITER_ATTACH_OPTS,
  ITER_LINK_INFO,
  LIBBPF_TEST_RUN_OPTS,
} as const;

/** Size in bytes of libbpf's option structs as this toolkit writes them (their `sz` field). */
export const LIBBPF_OPTS_SIZE = {
  mapCreate: 48,
  batch: 24,
  iterAttach: 24,
} as const;
