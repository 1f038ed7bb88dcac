/**
 * The type section as records: one pass that sizes each record by its kind (libbpf's
 * `btf_type_size()` switch) and checks what the head alone can tell (the kernel's
 * `btf_check_meta()`): known kind, no unused `info` bits, `vlen` and `kind_flag` only where
 * the kind gives them a meaning, and every record inside the section.
 *
 * @module
 */

import { BtfError } from "./errors.ts";
import {
  BTF_INFO_MASK,
  BTF_KIND_MAX,
  BTF_MAX_TYPE,
  BTF_RECORD_SIZE,
  BTF_TYPE,
  BtfKind,
  btfKindName,
  infoKflag,
  infoKind,
  infoVlen,
} from "./layout.ts";

const R = BTF_RECORD_SIZE;

/**
 * Bytes after the head of a record of `kind` with `vlen`, or -1 for a kind this reader does
 * not know.
 */
export function extraSize(kind: number, vlen: number): number {
  switch (kind) {
    case BtfKind.INT:
      return R.int;
    case BtfKind.PTR:
    case BtfKind.FWD:
    case BtfKind.TYPEDEF:
    case BtfKind.VOLATILE:
    case BtfKind.CONST:
    case BtfKind.RESTRICT:
    case BtfKind.FUNC:
    case BtfKind.FLOAT:
    case BtfKind.TYPE_TAG:
      return 0;
    case BtfKind.ARRAY:
      return R.array;
    case BtfKind.STRUCT:
    case BtfKind.UNION:
      return vlen * R.member;
    case BtfKind.ENUM:
      return vlen * R.enum;
    case BtfKind.FUNC_PROTO:
      return vlen * R.param;
    case BtfKind.VAR:
      return R.var;
    case BtfKind.DATASEC:
      return vlen * R.varSecinfo;
    case BtfKind.DECL_TAG:
      return R.declTag;
    case BtfKind.ENUM64:
      return vlen * R.enum64;
    default:
      return -1;
  }
}

/** Whether `vlen` means something for `kind` (a count, or a FUNC's linkage). */
function hasVlen(kind: number): boolean {
  switch (kind) {
    case BtfKind.STRUCT:
    case BtfKind.UNION:
    case BtfKind.ENUM:
    case BtfKind.ENUM64:
    case BtfKind.FUNC_PROTO:
    case BtfKind.DATASEC:
    case BtfKind.FUNC:
      return true;
    default:
      return false;
  }
}

/** Whether `kind_flag` means something for `kind` (bitfields, signedness, union fwd, attribute tags). */
function hasKflag(kind: number): boolean {
  switch (kind) {
    case BtfKind.STRUCT:
    case BtfKind.UNION:
    case BtfKind.ENUM:
    case BtfKind.ENUM64:
    case BtfKind.FWD:
    case BtfKind.DECL_TAG:
    case BtfKind.TYPE_TAG:
      return true;
    default:
      return false;
  }
}

/**
 * Walks the type section `[start, end)` of `view`; returns the byte offset of each record,
 * in type id order from `firstId`. Throws a `BtfError` at the first record that does not fit.
 */
export function scanTypes(
  view: DataView,
  start: number,
  end: number,
  littleEndian: boolean,
  firstId: number,
): Uint32Array {
  // Every record has a 12-byte head: there are at most this many.
  let offsets = new Uint32Array(Math.min(1024, Math.floor((end - start) / R.type) + 1));
  let count = 0;
  let at = start;
  while (at < end) {
    const id = firstId + count;
    if (id > BTF_MAX_TYPE) {
      throw new BtfError(`More than ${BTF_MAX_TYPE} BTF types`, { typeId: id, offset: at });
    }
    if (end - at < R.type) {
      throw new BtfError(
        `Truncated BTF type record: ${end - at} bytes left of a ${R.type}-byte head`,
        { typeId: id, offset: at },
      );
    }
    const info = view.getUint32(at + BTF_TYPE.fields.info.offset, littleEndian);
    const kind = infoKind(info);
    const vlen = infoVlen(info);
    if ((info & ~BTF_INFO_MASK) !== 0) {
      throw new BtfError(
        `Invalid BTF info "0x${info.toString(16)}": unused bits are set`,
        { typeId: id, offset: at + BTF_TYPE.fields.info.offset },
      );
    }
    const extra = extraSize(kind, vlen);
    if (kind === BtfKind.UNKN || kind > BTF_KIND_MAX || extra < 0) {
      throw new BtfError(`Unknown BTF kind "${kind}"`, {
        typeId: id,
        offset: at + BTF_TYPE.fields.info.offset,
      });
    }
    if (vlen !== 0 && !hasVlen(kind)) {
      throw new BtfError(`Invalid vlen "${vlen}" for a ${btfKindName(kind)}: expected 0`, {
        typeId: id,
        offset: at + BTF_TYPE.fields.info.offset,
      });
    }
    if (infoKflag(info) && !hasKflag(kind)) {
      throw new BtfError(`Invalid kind_flag for a ${btfKindName(kind)}: expected 0`, {
        typeId: id,
        offset: at + BTF_TYPE.fields.info.offset,
      });
    }
    const size = R.type + extra;
    if (end - at < size) {
      throw new BtfError(
        `Truncated BTF ${btfKindName(kind)} record: ${size} bytes (vlen ${vlen}) but ${
          end - at
        } left in the type section`,
        { typeId: id, offset: at },
      );
    }
    if (count === offsets.length) {
      const grown = new Uint32Array(offsets.length * 2);
      grown.set(offsets);
      offsets = grown;
    }
    offsets[count++] = at;
    at += size;
  }
  return offsets.subarray(0, count);
}
