/**
 * Records to objects: one object per type record (heads first, so that any id can be
 * resolved), then each record's references and trailing records (members, enumerators,
 * parameters, variables) resolved to those objects, with the checks a record can have on its
 * own (the kernel's `*_check_meta()`): sizes a kind allows, ids in range and of the right
 * kind, member offsets in order, variables inside their section.
 *
 * @module
 */

import type { StringTable } from "./_strings.ts";
import { BtfError } from "./errors.ts";
import {
  BTF_ARRAY,
  BTF_DECL_TAG,
  BTF_ENUM,
  BTF_ENUM64,
  BTF_INT_MASK,
  BTF_MEMBER,
  BTF_PARAM,
  BTF_RECORD_SIZE,
  BTF_TYPE,
  BTF_VAR,
  BTF_VAR_SECINFO,
  BtfIntEncoding,
  BtfKind,
  btfKindName,
  infoKflag,
  infoKind,
  infoVlen,
  intBits,
  intEncoding,
  intOffset,
  memberBitfieldSize,
  memberBitOffset,
} from "./layout.ts";
import type {
  BtfKindName,
  BtfType,
  Datasec,
  DeclTag,
  Enum,
  Enum64,
  Func,
  FuncProto,
  IntEncoding,
  Linkage,
  Member,
  Param,
  VarSecinfo,
} from "./types.ts";
import { VOID } from "./types.ts";

/** What `buildTypes` reads from. */
export interface BuildInput {
  /** The whole blob. */
  readonly view: DataView;
  /** Byte order of the blob. */
  readonly littleEndian: boolean;
  /** The strings (chained to the base's). */
  readonly strings: StringTable;
  /** The byte offset of each record, from `scanTypes`. */
  readonly offsets: Uint32Array;
  /** The id of the first record. */
  readonly firstId: number;
  /** Resolves an id below `firstId` (the base's types, and void). */
  readonly baseType: (id: number) => BtfType;
  /** Bytes of a pointer. */
  readonly pointerSize: number;
}

// deno-lint-ignore no-explicit-any
type Mutable = any;

const LINKAGES: readonly Linkage[] = ["static", "global", "extern"];
const INT_SIZES = new Set([1, 2, 4, 8, 16]);
const ENUM_SIZES = new Set([1, 2, 4, 8]);
const FLOAT_SIZES = new Set([2, 4, 8, 12, 16]);
const R = BTF_RECORD_SIZE;
const T = BTF_TYPE.fields;
const A = BTF_ARRAY.fields;
const M = BTF_MEMBER.fields;
const P = BTF_PARAM.fields;
const E = BTF_ENUM.fields;
const E64 = BTF_ENUM64.fields;
const V = BTF_VAR.fields;
const S = BTF_VAR_SECINFO.fields;
const D = BTF_DECL_TAG.fields;

/** The object kind of each `BTF_KIND_*` number: its name in lower case (`"type_tag"`). */
const KIND_NAMES: BtfKindName[] = [];
for (const [name, kind] of Object.entries(BtfKind)) {
  KIND_NAMES[kind] = name.toLowerCase() as BtfKindName;
}

function kindName(kind: number): BtfKindName {
  return KIND_NAMES[kind];
}

function intEncodingName(encoding: number): IntEncoding | undefined {
  switch (encoding) {
    case 0:
      return "unsigned";
    case BtfIntEncoding.SIGNED:
      return "signed";
    case BtfIntEncoding.CHAR:
      return "char";
    case BtfIntEncoding.BOOL:
      return "bool";
    default:
      return undefined;
  }
}

/** Builds the objects of every record in `input`, in id order; throws a `BtfError` at the first problem. */
export function buildTypes(input: BuildInput): BtfType[] {
  const { view, littleEndian: le, strings, offsets, firstId } = input;
  const count = offsets.length;
  const typeCount = firstId + count;
  const types: Mutable[] = new Array(count);
  const u32 = (at: number) => view.getUint32(at, le);
  const body = R.type; // trailing records start after the head

  // Pass 1: the heads, with references left at void.
  for (let i = 0; i < count; i++) {
    const at = offsets[i];
    const id = firstId + i;
    const info = u32(at + T.info.offset);
    const kind = infoKind(info);
    const vlen = infoVlen(info);
    const kflag = infoKflag(info);
    const sizeOrType = u32(at + T.size.offset); // or `type`: the same slot
    const name = strings.get(u32(at + T.nameOff.offset), btfKindName(kind), id, at);
    const fail = (message: string, offset = at): never => {
      throw new BtfError(message, { typeId: id, offset });
    };
    switch (kind) {
      case BtfKind.INT: {
        const data = u32(at + body);
        if (!INT_SIZES.has(sizeOrType)) {
          fail(`Invalid INT size "${sizeOrType}": expected 1, 2, 4, 8 or 16`, at + T.size.offset);
        }
        const encoding = intEncodingName(intEncoding(data));
        if ((data & ~BTF_INT_MASK) !== 0 || encoding === undefined) {
          fail(`Invalid INT encoding word "0x${data.toString(16)}"`, at + body);
        }
        const bits = intBits(data);
        const offset = intOffset(data);
        if (bits > 128 || offset + bits > sizeOrType * 8) {
          fail(
            `Invalid INT bits "${bits}" at bit offset ${offset}: more than its ${sizeOrType} bytes hold`,
            at + body,
          );
        }
        types[i] = { kind: "int", id, name, size: sizeOrType, encoding, offset, bits };
        break;
      }
      case BtfKind.PTR:
        types[i] = { kind: "ptr", id, name, target: VOID, size: input.pointerSize };
        break;
      case BtfKind.ARRAY:
        if (sizeOrType !== 0) {
          fail(`Invalid ARRAY size field "${sizeOrType}": expected 0`, at + T.size.offset);
        }
        types[i] = {
          kind: "array",
          id,
          name,
          element: VOID,
          index: VOID,
          nelems: u32(at + body + A.nelems.offset),
          size: -1,
        };
        break;
      case BtfKind.STRUCT:
      case BtfKind.UNION:
        types[i] = { kind: kindName(kind), id, name, size: sizeOrType, members: [] };
        break;
      case BtfKind.ENUM:
      case BtfKind.ENUM64:
        if (!ENUM_SIZES.has(sizeOrType)) {
          fail(
            `Invalid ${btfKindName(kind)} size "${sizeOrType}": expected 1, 2, 4 or 8`,
            at + T.size.offset,
          );
        }
        types[i] = {
          kind: kindName(kind),
          id,
          name,
          size: sizeOrType,
          signed: kflag,
          values: [],
        };
        break;
      case BtfKind.FWD:
        types[i] = { kind: "fwd", id, name, fwdKind: kflag ? "union" : "struct" };
        break;
      case BtfKind.TYPEDEF:
      case BtfKind.VOLATILE:
      case BtfKind.CONST:
      case BtfKind.RESTRICT:
      case BtfKind.TYPE_TAG:
        types[i] = { kind: kindName(kind), id, name, target: VOID };
        break;
      case BtfKind.FUNC:
        if (vlen >= LINKAGES.length) {
          fail(`Invalid FUNC linkage "${vlen}": expected 0, 1 or 2`, at + T.info.offset);
        }
        types[i] = { kind: "func", id, name, proto: undefined, linkage: LINKAGES[vlen] };
        break;
      case BtfKind.FUNC_PROTO:
        types[i] = { kind: "func_proto", id, name, returns: VOID, params: [], variadic: false };
        break;
      case BtfKind.VAR: {
        const linkage = u32(at + body + V.linkage.offset);
        if (linkage >= LINKAGES.length) {
          fail(`Invalid VAR linkage "${linkage}": expected 0, 1 or 2`, at + body);
        }
        types[i] = { kind: "var", id, name, type: VOID, linkage: LINKAGES[linkage] };
        break;
      }
      case BtfKind.DATASEC:
        types[i] = { kind: "datasec", id, name, size: sizeOrType, vars: [] };
        break;
      case BtfKind.FLOAT:
        if (!FLOAT_SIZES.has(sizeOrType)) {
          fail(
            `Invalid FLOAT size "${sizeOrType}": expected 2, 4, 8, 12 or 16`,
            at + T.size.offset,
          );
        }
        types[i] = { kind: "float", id, name, size: sizeOrType };
        break;
      case BtfKind.DECL_TAG: {
        const componentIdx = view.getInt32(at + body + D.componentIdx.offset, le);
        if (componentIdx < -1) {
          fail(`Invalid DECL_TAG component_idx "${componentIdx}": expected -1 or more`, at + body);
        }
        types[i] = { kind: "decl_tag", id, name, target: VOID, componentIdx };
        break;
      }
      default:
        // scanTypes let no other kind through.
        fail(`Unknown BTF kind "${kind}"`, at + T.info.offset);
    }
  }

  const resolve = (
    id: number,
    what: string,
    from: number,
    offset: number,
    voidOk: boolean,
  ): BtfType => {
    if (id >= typeCount) {
      throw new BtfError(
        `Invalid type id "${id}" for ${what}: the BTF has types 0 to ${typeCount - 1}`,
        { typeId: from, offset },
      );
    }
    if (id === 0 && !voidOk) {
      throw new BtfError(`Invalid type id "0" for ${what}: it cannot be void`, {
        typeId: from,
        offset,
      });
    }
    return id < firstId ? input.baseType(id) : types[id - firstId];
  };

  // Pass 2: references and trailing records.
  for (let i = 0; i < count; i++) {
    const at = offsets[i];
    const id = firstId + i;
    const t = types[i];
    const info = u32(at + T.info.offset);
    const vlen = infoVlen(info);
    const kflag = infoKflag(info);
    const sizeOrType = u32(at + T.size.offset); // or `type`: the same slot
    switch (t.kind) {
      case "ptr":
      case "typedef":
      case "volatile":
      case "const":
      case "restrict":
      case "type_tag":
        t.target = resolve(sizeOrType, `the ${t.kind} target`, id, at + T.type.offset, true);
        break;
      case "array":
        {
          const a = at + body;
          t.element = resolve(u32(a + A.type.offset), "the array element", id, a, false);
          t.index = resolve(
            u32(a + A.indexType.offset),
            "the array index",
            id,
            a + A.indexType.offset,
            false,
          );
        }
        break;
      case "struct":
      case "union": {
        const members: Member[] = new Array(vlen);
        let last = 0;
        for (let j = 0; j < vlen; j++) {
          const m = at + body + j * R.member;
          const raw = u32(m + M.offset.offset);
          const bitfieldSize = kflag ? memberBitfieldSize(raw) : 0;
          const bitOffset = kflag ? memberBitOffset(raw) : raw;
          if (bitfieldSize > 128) {
            throw new BtfError(
              `Invalid bitfield size "${bitfieldSize}" of member ${j}: at most 128 bits`,
              { typeId: id, offset: m + M.offset.offset },
            );
          }
          if (t.kind === "struct" && bitOffset < last) {
            throw new BtfError(
              `Invalid bit offset "${bitOffset}" of member ${j}: before the previous member's ${last}`,
              { typeId: id, offset: m + M.offset.offset },
            );
          }
          last = bitOffset;
          members[j] = {
            name: strings.get(u32(m + M.nameOff.offset), `member ${j}`, id, m),
            type: resolve(u32(m + M.type.offset), `member ${j}`, id, m + M.type.offset, false),
            bitOffset,
            bitfieldSize,
          };
        }
        t.members = members;
        break;
      }
      case "enum": {
        const values: Enum["values"][number][] = new Array(vlen);
        for (let j = 0; j < vlen; j++) {
          const e = at + body + j * R.enum;
          const raw = view.getInt32(e + E.val.offset, le);
          values[j] = {
            name: strings.get(u32(e + E.nameOff.offset), `enumerator ${j}`, id, e),
            value: kflag ? raw : raw >>> 0,
          };
        }
        t.values = values;
        break;
      }
      case "enum64": {
        const values: Enum64["values"][number][] = new Array(vlen);
        for (let j = 0; j < vlen; j++) {
          const e = at + body + j * R.enum64;
          const raw = (BigInt(u32(e + E64.valHi32.offset)) << 32n) |
            BigInt(u32(e + E64.valLo32.offset));
          values[j] = {
            name: strings.get(u32(e + E64.nameOff.offset), `enumerator ${j}`, id, e),
            value: kflag ? BigInt.asIntN(64, raw) : raw,
          };
        }
        t.values = values;
        break;
      }
      case "func": {
        const proto = resolve(sizeOrType, "the function prototype", id, at + T.type.offset, false);
        if (proto.kind !== "func_proto") {
          throw new BtfError(
            `Invalid FUNC prototype: type ${proto.id} is a ${proto.kind}, not a func_proto`,
            { typeId: id, offset: at + T.type.offset },
          );
        }
        (t as Func & Mutable).proto = proto;
        break;
      }
      case "func_proto": {
        t.returns = resolve(sizeOrType, "the return type", id, at + T.type.offset, true);
        const params: Param[] = [];
        for (let j = 0; j < vlen; j++) {
          const p = at + body + j * R.param;
          const nameOff = u32(p + P.nameOff.offset);
          const typeId = u32(p + P.type.offset);
          if (typeId === 0 && nameOff === 0 && j === vlen - 1) {
            (t as FuncProto & Mutable).variadic = true;
            break;
          }
          params.push({
            name: strings.get(nameOff, `parameter ${j}`, id, p),
            type: resolve(typeId, `parameter ${j}`, id, p + P.type.offset, false),
          });
        }
        t.params = params;
        break;
      }
      case "var":
        t.type = resolve(sizeOrType, "the variable", id, at + T.type.offset, false);
        break;
      case "datasec": {
        const vars: VarSecinfo[] = new Array(vlen);
        let end = 0;
        for (let j = 0; j < vlen; j++) {
          const v = at + body + j * R.varSecinfo;
          const type = resolve(u32(v + S.type.offset), `section variable ${j}`, id, v, false);
          if (type.kind !== "var" && type.kind !== "func") {
            throw new BtfError(
              `Invalid section variable ${j}: type ${type.id} is a ${type.kind}, not a var`,
              { typeId: id, offset: v },
            );
          }
          const offset = u32(v + S.offset.offset);
          const size = u32(v + S.size.offset);
          if (offset < end || offset + size > (t as Datasec).size) {
            throw new BtfError(
              `Invalid section variable ${j} at [${offset}, ${
                offset + size
              }): outside the section's ${
                (t as Datasec).size
              } bytes or before the previous variable's end ${end}`,
              { typeId: id, offset: v + S.offset.offset },
            );
          }
          end = offset + size;
          vars[j] = { type, offset, size };
        }
        t.vars = vars;
        break;
      }
      case "decl_tag":
        t.target = resolve(sizeOrType, "the tagged type", id, at + T.type.offset, false);
        break;
    }
  }

  // Pass 3: what needs other records complete (decl tags name members and parameters).
  for (let i = 0; i < count; i++) {
    const t = types[i] as BtfType;
    if (t.kind !== "decl_tag") continue;
    checkDeclTag(t, offsets[i]);
  }
  return types;
}

function checkDeclTag(t: DeclTag, at: number): void {
  const target = t.target;
  const fail = (detail: string): never => {
    throw new BtfError(`Invalid DECL_TAG "${t.name}": ${detail}`, { typeId: t.id, offset: at });
  };
  let components: number;
  switch (target.kind) {
    case "struct":
    case "union":
      components = target.members.length;
      break;
    case "func":
      components = target.proto.params.length;
      break;
    case "var":
    case "typedef":
      components = 0;
      break;
    default:
      return fail(`it tags a ${target.kind} (type ${target.id})`);
  }
  if (t.componentIdx >= components) {
    fail(
      `component_idx ${t.componentIdx} but type ${target.id} has ${components} members or parameters`,
    );
  }
}
