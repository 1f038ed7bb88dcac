/**
 * The binary layouts of BTF (`linux/btf.h`) and of `struct bpf_btf_info` (`linux/bpf.h`), as
 * field tables of the same shape as `../sys/layout.ts`, and the numbers BTF records carry (kinds,
 * integer encodings, linkages, limits).
 *
 * `tests/btf_layout_test.ts` compiles a probe against the system headers and compares every
 * offset and size here with `offsetof()`/`sizeof()`. Nothing here touches the kernel.
 *
 * @module
 */

import { BTF_LOAD_ATTR, field, type Layout } from "../sys/layout.ts";

/** `BTF_MAGIC`: the first two bytes of BTF, in the byte order of the data. */
export const BTF_MAGIC = 0xeb9f;
/** `BTF_VERSION`: the only version of BTF there is. */
export const BTF_VERSION = 1;
/** `BTF_MAX_TYPE`: the largest type id. */
export const BTF_MAX_TYPE = 0x000f_ffff;
/** `BTF_MAX_NAME_OFFSET`: the largest offset into the string section. */
export const BTF_MAX_NAME_OFFSET = 0x00ff_ffff;
/** `BTF_MAX_VLEN`: the most members, enumerators, parameters or variables of one type. */
export const BTF_MAX_VLEN = 0xffff;

/** `struct btf_header`: the start of every BTF blob; section offsets count from its end. */
export const BTF_HEADER = {
  type: "struct btf_header",
  fields: {
    magic: field(0, 2, "magic"),
    version: field(2, 1, "version"),
    flags: field(3, 1, "flags"),
    hdrLen: field(4, 4, "hdr_len"),
    typeOff: field(8, 4, "type_off"),
    typeLen: field(12, 4, "type_len"),
    strOff: field(16, 4, "str_off"),
    strLen: field(20, 4, "str_len"),
  },
} as const satisfies Layout;

/**
 * `struct btf_type`: the common head of every type record. `size` and `type` share a slot:
 * sized kinds (`INT`, `ENUM`, `STRUCT`, `UNION`, `DATASEC`, `FLOAT`, `ENUM64`) keep their size
 * there, the others a type id.
 */
export const BTF_TYPE = {
  type: "struct btf_type",
  fields: {
    nameOff: field(0, 4, "name_off"),
    info: field(4, 4, "info"),
    size: field(8, 4, "size"),
    type: field(8, 4, "type"),
  },
} as const satisfies Layout;

/** `struct btf_array`: what follows a `BTF_KIND_ARRAY` head. */
export const BTF_ARRAY = {
  type: "struct btf_array",
  fields: {
    type: field(0, 4, "type"),
    indexType: field(4, 4, "index_type"),
    nelems: field(8, 4, "nelems"),
  },
} as const satisfies Layout;

/** `struct btf_member`: one of the `vlen` records after a `STRUCT` or `UNION` head. */
export const BTF_MEMBER = {
  type: "struct btf_member",
  fields: {
    nameOff: field(0, 4, "name_off"),
    type: field(4, 4, "type"),
    offset: field(8, 4, "offset"),
  },
} as const satisfies Layout;

/** `struct btf_param`: one of the `vlen` records after a `FUNC_PROTO` head. */
export const BTF_PARAM = {
  type: "struct btf_param",
  fields: {
    nameOff: field(0, 4, "name_off"),
    type: field(4, 4, "type"),
  },
} as const satisfies Layout;

/** `struct btf_enum`: one of the `vlen` enumerators after an `ENUM` head (`val` is 32 bits). */
export const BTF_ENUM = {
  type: "struct btf_enum",
  fields: {
    nameOff: field(0, 4, "name_off"),
    val: field(4, 4, "val"),
  },
} as const satisfies Layout;

/** `struct btf_enum64`: one of the `vlen` enumerators after an `ENUM64` head. */
export const BTF_ENUM64 = {
  type: "struct btf_enum64",
  fields: {
    nameOff: field(0, 4, "name_off"),
    valLo32: field(4, 4, "val_lo32"),
    valHi32: field(8, 4, "val_hi32"),
  },
} as const satisfies Layout;

/** `struct btf_var`: what follows a `VAR` head. */
export const BTF_VAR = {
  type: "struct btf_var",
  fields: { linkage: field(0, 4, "linkage") },
} as const satisfies Layout;

/** `struct btf_var_secinfo`: one of the `vlen` variables after a `DATASEC` head. */
export const BTF_VAR_SECINFO = {
  type: "struct btf_var_secinfo",
  fields: {
    type: field(0, 4, "type"),
    offset: field(4, 4, "offset"),
    size: field(8, 4, "size"),
  },
} as const satisfies Layout;

/** `struct btf_decl_tag`: what follows a `DECL_TAG` head (-1: the tag is on the type itself). */
export const BTF_DECL_TAG = {
  type: "struct btf_decl_tag",
  fields: { componentIdx: field(0, 4, "component_idx") },
} as const satisfies Layout;

/**
 * `struct bpf_btf_info`, as `BPF_OBJ_GET_INFO_BY_FD` fills it for a BTF fd. `btf` and `name`
 * are user pointers the kernel copies the raw BTF and the name into, `btf_size` and
 * `name_len` the room there (the kernel writes back the full sizes).
 */
export const BPF_BTF_INFO = {
  type: "struct bpf_btf_info",
  fields: {
    btf: field(0, 8, "btf"),
    btfSize: field(8, 4, "btf_size"),
    id: field(12, 4, "id"),
    name: field(16, 8, "name"),
    nameLen: field(24, 4, "name_len"),
    kernelBtf: field(28, 4, "kernel_btf"),
  },
} as const satisfies Layout;

/** `union bpf_attr`, arm of `BPF_BTF_GET_FD_BY_ID`. */
export const BTF_GET_FD_BY_ID_ATTR = {
  type: "union bpf_attr",
  fields: {
    btfId: field(0, 4, "btf_id"),
    openFlags: field(8, 4, "open_flags"),
  },
} as const satisfies Layout;

/** `union bpf_attr`, arm of `BPF_BTF_LOAD`: kept with the other arms, in `sys/layout.ts`. */
export { BTF_LOAD_ATTR };

/** Every BTF layout, by the name a probe prints (`linux/btf.h` and `linux/bpf.h`). */
export const BTF_LAYOUTS = {
  BTF_HEADER,
  BTF_TYPE,
  BTF_ARRAY,
  BTF_MEMBER,
  BTF_PARAM,
  BTF_ENUM,
  BTF_ENUM64,
  BTF_VAR,
  BTF_VAR_SECINFO,
  BTF_DECL_TAG,
  BPF_BTF_INFO,
  BTF_GET_FD_BY_ID_ATTR,
  BTF_LOAD_ATTR,
} as const;

/**
 * `sizeof()` of each BTF record, as the type section packs them (no padding between
 * records). `int` is the `__u32` after an `INT` head.
 */
export const BTF_RECORD_SIZE = {
  header: 24,
  type: 12,
  int: 4,
  array: 12,
  member: 12,
  param: 8,
  enum: 8,
  enum64: 12,
  var: 4,
  varSecinfo: 12,
  declTag: 4,
} as const;

/** The C type of each `BTF_RECORD_SIZE` entry, for the probe. */
export const BTF_RECORD_C_TYPE: Readonly<Record<keyof typeof BTF_RECORD_SIZE, string>> = {
  header: "struct btf_header",
  type: "struct btf_type",
  int: "__u32",
  array: "struct btf_array",
  member: "struct btf_member",
  param: "struct btf_param",
  enum: "struct btf_enum",
  enum64: "struct btf_enum64",
  var: "struct btf_var",
  varSecinfo: "struct btf_var_secinfo",
  declTag: "struct btf_decl_tag",
};

/** `BTF_KIND_*`: bits 24-28 of `btf_type.info`. */
export const BtfKind = {
  UNKN: 0,
  INT: 1,
  PTR: 2,
  ARRAY: 3,
  STRUCT: 4,
  UNION: 5,
  ENUM: 6,
  FWD: 7,
  TYPEDEF: 8,
  VOLATILE: 9,
  CONST: 10,
  RESTRICT: 11,
  FUNC: 12,
  FUNC_PROTO: 13,
  VAR: 14,
  DATASEC: 15,
  FLOAT: 16,
  DECL_TAG: 17,
  TYPE_TAG: 18,
  ENUM64: 19,
} as const;
/** A `BTF_KIND_*` number. */
export type BtfKind = typeof BtfKind[keyof typeof BtfKind];

/** `NR_BTF_KINDS - 1`: the largest kind number this reader knows. */
export const BTF_KIND_MAX = BtfKind.ENUM64;

/**
 * Returns the `BTF_KIND_*` name of a kind number (`"STRUCT"`), or `kind N`.
 *
 * @example
 * ```ts
 * import { btfKindName } from "./layout.ts";
 * console.log(btfKindName(4)); // "STRUCT"
 * ```
 */
export function btfKindName(kind: number): string {
  return KIND_NAMES[kind] ?? `kind ${kind}`;
}

const KIND_NAMES: readonly string[] = Object.entries(BtfKind).reduce<string[]>(
  (names, [name, value]) => {
    names[value] = name;
    return names;
  },
  [],
);

/** `BTF_INT_*`: bits 24-27 of the `__u32` after an `INT` head (at most one is set). */
export const BtfIntEncoding = {
  SIGNED: 1 << 0,
  CHAR: 1 << 1,
  BOOL: 1 << 2,
} as const;
/** A `BTF_INT_*` flag. */
export type BtfIntEncoding = typeof BtfIntEncoding[keyof typeof BtfIntEncoding];

/** `btf_func_linkage` (`FUNC`, in `vlen`) and `BTF_VAR_*` (`VAR`, in `btf_var.linkage`). */
export const BtfLinkage = {
  STATIC: 0,
  GLOBAL: 1,
  EXTERN: 2,
} as const;
/** A linkage number. */
export type BtfLinkage = typeof BtfLinkage[keyof typeof BtfLinkage];

/**
 * `BTF_INFO_KIND(info)`.
 *
 * @example
 * ```ts
 * import { infoKind, makeInfo } from "./layout.ts";
 * console.log(infoKind(makeInfo(4, 2, false))); // 4
 * ```
 */
export function infoKind(info: number): number {
  return (info >>> 24) & 0x1f;
}

/**
 * `BTF_INFO_VLEN(info)`.
 *
 * @example
 * ```ts
 * import { infoVlen, makeInfo } from "./layout.ts";
 * console.log(infoVlen(makeInfo(4, 2, false))); // 2
 * ```
 */
export function infoVlen(info: number): number {
  return info & 0xffff;
}

/**
 * `BTF_INFO_KFLAG(info)`.
 *
 * @example
 * ```ts
 * import { infoKflag, makeInfo } from "./layout.ts";
 * console.log(infoKflag(makeInfo(4, 2, true))); // true
 * ```
 */
export function infoKflag(info: number): boolean {
  return info >>> 31 === 1;
}

/** The bits of `btf_type.info` that mean something: vlen, kind and kind_flag. */
export const BTF_INFO_MASK = 0x9f00_ffff;

/**
 * Packs `btf_type.info` from its parts (the inverse of `infoKind`, `infoVlen`, `infoKflag`).
 *
 * @example
 * ```ts
 * import { BtfKind, makeInfo } from "./layout.ts";
 * console.log(makeInfo(BtfKind.STRUCT, 3, true).toString(16)); // "84000003"
 * ```
 */
export function makeInfo(kind: number, vlen: number, kflag: boolean): number {
  return ((kflag ? 0x8000_0000 : 0) | ((kind & 0x1f) << 24) | (vlen & 0xffff)) >>> 0;
}

/** The bits of an `INT`'s `__u32` that mean something: encoding, offset and bits. */
export const BTF_INT_MASK = 0x0fff_00ff;

/**
 * `BTF_INT_ENCODING(val)`.
 *
 * @example
 * ```ts
 * import { intEncoding, makeIntData } from "./layout.ts";
 * console.log(intEncoding(makeIntData(1, 0, 32))); // 1 (BTF_INT_SIGNED)
 * ```
 */
export function intEncoding(data: number): number {
  return (data & 0x0f00_0000) >>> 24;
}

/**
 * `BTF_INT_OFFSET(val)`.
 *
 * @example
 * ```ts
 * import { intOffset, makeIntData } from "./layout.ts";
 * console.log(intOffset(makeIntData(0, 3, 5))); // 3
 * ```
 */
export function intOffset(data: number): number {
  return (data & 0x00ff_0000) >>> 16;
}

/**
 * `BTF_INT_BITS(val)`.
 *
 * @example
 * ```ts
 * import { intBits, makeIntData } from "./layout.ts";
 * console.log(intBits(makeIntData(0, 3, 5))); // 5
 * ```
 */
export function intBits(data: number): number {
  return data & 0xff;
}

/**
 * Packs an `INT`'s `__u32` from encoding flags, bit offset and bit count.
 *
 * @example
 * ```ts
 * import { BtfIntEncoding, makeIntData } from "./layout.ts";
 * console.log(makeIntData(BtfIntEncoding.SIGNED, 0, 32).toString(16)); // "1000020"
 * ```
 */
export function makeIntData(encoding: number, offset: number, bits: number): number {
  return (((encoding & 0xf) << 24) | ((offset & 0xff) << 16) | (bits & 0xff)) >>> 0;
}

/**
 * `BTF_MEMBER_BITFIELD_SIZE(val)`: a member's bitfield size when its struct has kind_flag.
 *
 * @example
 * ```ts
 * import { memberBitfieldSize } from "./layout.ts";
 * console.log(memberBitfieldSize(0x0300_0021)); // 3
 * ```
 */
export function memberBitfieldSize(offset: number): number {
  return offset >>> 24;
}

/**
 * `BTF_MEMBER_BIT_OFFSET(val)`: a member's bit offset when its struct has kind_flag.
 *
 * @example
 * ```ts
 * import { memberBitOffset } from "./layout.ts";
 * console.log(memberBitOffset(0x0300_0021)); // 33
 * ```
 */
export function memberBitOffset(offset: number): number {
  return offset & 0x00ff_ffff;
}
