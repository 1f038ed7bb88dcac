/**
 * Numeric constants of the kernel's BPF ABI (`linux/bpf.h`) that the toolkit uses.
 *
 * Each table is an `as const` object with a type of the same name, so a value can be
 * written by name (`BpfCommand.MAP_LOOKUP_BATCH`) and checked by the type system.
 *
 * @module
 */

/** `enum bpf_cmd`: the first argument of the `bpf(2)` system call. */
export const BpfCommand = {
  MAP_CREATE: 0,
  MAP_LOOKUP_ELEM: 1,
  MAP_UPDATE_ELEM: 2,
  MAP_DELETE_ELEM: 3,
  MAP_GET_NEXT_KEY: 4,
  PROG_LOAD: 5,
  OBJ_PIN: 6,
  OBJ_GET: 7,
  PROG_TEST_RUN: 10,
  PROG_GET_NEXT_ID: 11,
  PROG_GET_FD_BY_ID: 13,
  MAP_GET_NEXT_ID: 12,
  MAP_GET_FD_BY_ID: 14,
  OBJ_GET_INFO_BY_FD: 15,
  BTF_LOAD: 18,
  BTF_GET_FD_BY_ID: 19,
  MAP_LOOKUP_AND_DELETE_ELEM: 21,
  MAP_FREEZE: 22,
  MAP_LOOKUP_BATCH: 24,
  MAP_LOOKUP_AND_DELETE_BATCH: 25,
  MAP_UPDATE_BATCH: 26,
  MAP_DELETE_BATCH: 27,
  LINK_CREATE: 28,
  ITER_CREATE: 33,
} as const;
/** A `bpf(2)` command number. */
export type BpfCommand = typeof BpfCommand[keyof typeof BpfCommand];

/** Returns the `BPF_*` name of a command number, for messages. */
export function commandName(command: number): string {
  for (const [name, value] of Object.entries(BpfCommand)) {
    if (value === command) return `BPF_${name}`;
  }
  return `bpf command ${command}`;
}

/** `enum bpf_map_type`, restricted to the map types this toolkit reads and writes. */
export const MapType = {
  hash: 1,
  array: 2,
  percpu_hash: 5,
  percpu_array: 6,
  lru_hash: 9,
  lru_percpu_hash: 10,
} as const;
/** The name of a supported map type, e.g. `"hash"`. */
export type MapTypeName = keyof typeof MapType;
/** The number of a supported map type, e.g. `1` for `hash`. */
export type MapType = typeof MapType[MapTypeName];

/** Returns the name of a map type number (`"hash"`), or `"type N"` for one this toolkit does not know. */
export function mapTypeName(type: number): string {
  for (const [name, value] of Object.entries(MapType)) {
    if (value === type) return name;
  }
  return `type ${type}`;
}

/** Parses a map type name such as `hash` or `BPF_MAP_TYPE_PERCPU_HASH`; `undefined` when unknown. */
export function parseMapType(text: string): MapType | undefined {
  const name = text.toLowerCase().replace(/^bpf_map_type_/, "");
  return Object.hasOwn(MapType, name) ? MapType[name as MapTypeName] : undefined;
}

/** Whether values of this map type hold one slot per possible CPU. */
export function isPerCpu(type: number): boolean {
  return type === MapType.percpu_hash || type === MapType.percpu_array ||
    type === MapType.lru_percpu_hash;
}

/** Whether this map type is an array (keys are the indices `0 .. maxEntries - 1`, always present). */
export function isArray(type: number): boolean {
  return type === MapType.array || type === MapType.percpu_array;
}

/** Flags of element updates (`BPF_ANY`, `BPF_NOEXIST`, `BPF_EXIST`). */
export const UpdateFlag = {
  ANY: 0,
  NOEXIST: 1,
  EXIST: 2,
} as const;
/** A flag of element updates. */
export type UpdateFlag = typeof UpdateFlag[keyof typeof UpdateFlag];

/** Map creation flags (`map_flags`) that the toolkit names. */
export const MapFlag = {
  NO_PREALLOC: 1 << 0,
  NO_COMMON_LRU: 1 << 1,
  RDONLY: 1 << 3,
  WRONLY: 1 << 4,
  RDONLY_PROG: 1 << 7,
  WRONLY_PROG: 1 << 8,
} as const;
/** A map creation flag. */
export type MapFlag = typeof MapFlag[keyof typeof MapFlag];

/** `BPF_OBJ_NAME_LEN`: the size of a map name including its terminating NUL. */
export const OBJ_NAME_LEN = 16;

/** `SYS_bpf` on the architectures this toolkit runs on. */
export const SYS_BPF: Record<string, number> = {
  x86_64: 321,
  aarch64: 280,
};
