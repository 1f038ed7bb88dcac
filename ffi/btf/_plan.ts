/**
 * What decoders and encoders work out once per type, before any closure is made: a bound on
 * the work one value costs (so that hostile BTF, say an array of four billion empty structs,
 * is refused instead of hanging), the flat list of a struct's named places, with anonymous
 * struct and union members merged into their parent as C reads them, how each place is read
 * (whole, or as bits), and the compiler that makes each type's function once.
 *
 * @module
 */

import { BtfError } from "./errors.ts";
import { typeName } from "./name.ts";
import { sizeof } from "./size.ts";
import type { BtfType, Datasec, Enum, Enum64, Int, Struct, Union } from "./types.ts";
import { isQualifier, underlying } from "./types.ts";

/** The most steps (values read or written, objects made) one value may cost by default. */
export const MAX_STEPS = 1 << 24;

const COST = new WeakMap<BtfType, number>();
const SATURATED = Number.MAX_SAFE_INTEGER;

/** Steps one value of `type` costs to decode or encode (saturating, memoized per type). */
export function stepsOf(type: BtfType): number {
  const known = COST.get(type);
  if (known !== undefined) return known;
  let cost: number;
  switch (type.kind) {
    case "array":
      cost = 1 + type.nelems * stepsOf(type.element);
      break;
    case "struct":
    case "union":
      cost = 1;
      for (const m of type.members) cost += stepsOf(m.type);
      break;
    case "datasec":
      cost = 1;
      for (const v of type.vars) cost += stepsOf(v.type);
      break;
    default: {
      const alias = aliasOf(type);
      cost = alias ? stepsOf(alias) : 1;
    }
  }
  cost = Math.min(cost, SATURATED);
  COST.set(type, cost);
  return cost;
}

/** What a typedef, qualifier or variable stands for (its values are that type's), else `undefined`. */
export function aliasOf(type: BtfType): BtfType | undefined {
  if (isQualifier(type)) return type.target;
  return type.kind === "var" ? type.type : undefined;
}

/** Throws a `BtfError` when one value of `type` would cost more than `maxSteps`. */
export function checkSteps(type: BtfType, maxSteps: number): void {
  const steps = stepsOf(type);
  if (steps > maxSteps) {
    throw new BtfError(
      `A value of type "${
        typeName(type)
      }" takes ${steps} steps to decode, more than the ${maxSteps} allowed: raise maxSteps if it is meant`,
      { typeId: type.id },
    );
  }
}

/** One named place of a struct, union or data section, once anonymous members are merged. */
export interface Slot {
  /** The member (or variable) name. */
  readonly name: string;
  /** Its type. */
  readonly type: BtfType;
  /** Byte offset from the start of the outermost struct. */
  readonly byteOffset: number;
  /** Bit offset inside that byte (0 but for bitfields). */
  readonly bit: number;
  /** Bits of a kind_flag bitfield, or 0. */
  readonly bitfieldSize: number;
  /** Whether an encoder may leave it out: it lies in a union. */
  readonly optional: boolean;
}

/**
 * The named places of a struct, union or data section. Anonymous struct and union members
 * are merged into their parent (their members are reached as the parent's, as in C);
 * unnamed members of other types (padding bitfields) are left out. Two places of the same
 * name are a `BtfError`.
 */
export function slotsOf(type: Struct | Union | Datasec): Slot[] {
  const slots: Slot[] = [];
  const names = new Set<string>();
  const add = (slot: Slot) => {
    if (names.has(slot.name)) {
      throw new BtfError(
        `Type "${
          typeName(type)
        }" has two members named "${slot.name}" once anonymous members are merged`,
        { typeId: type.id },
      );
    }
    names.add(slot.name);
    slots.push(slot);
  };
  if (type.kind === "datasec") {
    for (const v of type.vars) {
      if (v.type.kind !== "var") continue;
      if (v.offset + sizeof(v.type.type) > type.size) {
        throw new BtfError(
          `Variable "${v.type.name}" of section "${type.name}" ends past its ${type.size} bytes`,
          { typeId: type.id },
        );
      }
      add({
        name: v.type.name,
        type: v.type.type,
        byteOffset: v.offset,
        bit: 0,
        bitfieldSize: 0,
        optional: false,
      });
    }
    return slots;
  }
  const walk = (members: Struct["members"], baseBit: number, optional: boolean) => {
    for (const m of members) {
      const bitOffset = baseBit + m.bitOffset;
      if (!m.name) {
        const inner = underlying(m.type);
        if ((inner.kind === "struct" || inner.kind === "union") && m.bitfieldSize === 0) {
          walk(inner.members, bitOffset, optional || inner.kind === "union");
        }
        continue;
      }
      add({
        name: m.name,
        type: m.type,
        byteOffset: Math.floor(bitOffset / 8),
        bit: bitOffset % 8,
        bitfieldSize: m.bitfieldSize,
        optional,
      });
    }
  };
  walk(type.members, 0, type.kind === "union");
  return slots;
}

/** Why a value of `type` cannot be decoded, or `undefined` when it can. */
export function undecodable(type: BtfType): string | undefined {
  switch (type.kind) {
    case "void":
      return "void has no value";
    case "fwd":
      return "a forward declaration has no layout";
    case "func":
    case "func_proto":
      return "functions have no value";
    case "decl_tag":
      return "a declaration tag has no value";
    default:
      return undefined;
  }
}

/** Options of `compileDecoder` and `compileEncoder`. */
export interface CodecOptions {
  /** Byte order of the data (default `true`; use the BTF's `littleEndian`). */
  littleEndian?: boolean;
  /** The most steps one value may cost (default 16,777,216): a bound against hostile BTF. */
  maxSteps?: number;
}

/**
 * A compiler of one function per type (a decoder or an encoder): `make(type, le, compile)`
 * builds the function of one type, calling `compile` for the types it holds. What it
 * returns compiles a type under `options` once the step bound is checked, memoized per type
 * and byte order; types without a value are refused with a `BtfError` ("Cannot decode a
 * value of type ..."), and typedefs, qualifiers and variables get the function of what they
 * stand for.
 */
export function compiler<F>(
  verb: "decode" | "encode",
  make: (type: BtfType, le: boolean, compile: (type: BtfType) => F) => F,
): (type: BtfType, options: CodecOptions) => F {
  const caches = { le: new WeakMap<BtfType, F>(), be: new WeakMap<BtfType, F>() };
  return (root, options) => {
    checkSteps(root, options.maxSteps ?? MAX_STEPS);
    const le = options.littleEndian ?? true;
    const cache = le ? caches.le : caches.be;
    const compile = (type: BtfType): F => {
      const known = cache.get(type);
      if (known) return known;
      const why = undecodable(type);
      if (why) {
        throw new BtfError(`Cannot ${verb} a value of type "${typeName(type)}": ${why}`, {
          typeId: type.id,
        });
      }
      const alias = aliasOf(type);
      const fn = alias ? compile(alias) : make(type, le, compile);
      cache.set(type, fn);
      return fn;
    };
    return compile(root);
  };
}

/** How an integer's bits become a value. */
export interface IntShape {
  /** Sign-extend. */
  readonly signed: boolean;
  /** A `bigint` (types of 8 bytes and more) rather than a `number`. */
  readonly big: boolean;
  /** A `boolean`. */
  readonly bool: boolean;
}

/** How the bits of `t` become a value. */
export function intShape(t: Int): IntShape {
  return { signed: t.encoding === "signed", big: t.size >= 8, bool: t.encoding === "bool" };
}

/** How the bits of an enum become a number before its names are looked up. */
export function enumShape(t: Enum | Enum64): IntShape {
  return { signed: t.signed, big: t.size >= 8, bool: false };
}

/**
 * How one place of a struct is read and written: `whole`, as its type; `int`, as `bits`
 * bits from bit `bitPos` (a kind_flag bitfield of an integer, or an old-style bitfield: an
 * `INT` of fewer bits at a bit offset); `enum`, as the bits of an enum bitfield.
 */
export type SlotAccess =
  | { readonly kind: "whole"; readonly type: BtfType }
  | {
    readonly kind: "int";
    readonly bitPos: number;
    readonly bits: number;
    readonly shape: IntShape;
  }
  | {
    readonly kind: "enum";
    readonly bitPos: number;
    readonly bits: number;
    readonly shape: IntShape;
    readonly type: Enum | Enum64;
  };

/** How `slot` is read and written; a `BtfError` for bits of what is not an integer or enum. */
export function slotAccess(slot: Slot): SlotAccess {
  if (slot.bitfieldSize === 0 && slot.bit === 0) return { kind: "whole", type: slot.type };
  const base = underlying(slot.type);
  if (slot.bitfieldSize > 0) {
    const bits = slot.bitfieldSize;
    if (base.kind === "int") return { kind: "int", bitPos: slot.bit, bits, shape: intShape(base) };
    if (base.kind === "enum" || base.kind === "enum64") {
      return { kind: "enum", bitPos: slot.bit, bits, shape: enumShape(base), type: base };
    }
    throw new BtfError(`Bitfield "${slot.name}" is not an integer or enum`, { typeId: base.id });
  }
  if (base.kind !== "int") {
    throw new BtfError(`Member "${slot.name}" is not byte aligned`, { typeId: base.id });
  }
  return { kind: "int", bitPos: slot.bit + base.offset, bits: base.bits, shape: intShape(base) };
}

/** Enumerator names by value, keyed as the decoder reads values (`bigint` for 8 bytes); first name wins. */
export function enumNames(t: Enum | Enum64): Map<number | bigint, string> {
  const names = new Map<number | bigint, string>();
  for (const e of t.values) {
    const key = t.size >= 8 ? BigInt(e.value) : Number(e.value);
    if (!names.has(key)) names.set(key, e.name);
  }
  return names;
}
