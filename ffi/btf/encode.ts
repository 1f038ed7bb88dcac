/**
 * Encoders compiled once per type: the inverse of `decode.ts`, so that lookups and updates
 * can take typed values. Each takes what the decoder of the same type returns, and a little
 * more: `number` or `bigint` for any integer (range-checked against its bits), an
 * enumerator's name or its number, any array-like of the right length.
 *
 * The compiled encoder zeroes the type's bytes first (padding and holes stay zero, as hash
 * keys need), then writes each member; a struct needs every member but those in unions, a
 * union at least one (all given are written, in declaration order, later ones winning where
 * they overlap). A value that does not fit is a `BpfArgumentError` naming the path to it.
 *
 * @module
 */

import {
  type CodecOptions,
  compiler,
  enumNames,
  enumShape,
  type IntShape,
  intShape,
  type Slot,
  slotAccess,
  slotsOf,
} from "./_plan.ts";
import { bitSpan, readBigWord, readWord, writeBigWord, writeWord } from "./_bits.ts";
import { BpfArgumentError } from "../sys/errors.ts";
import type { BtfValue } from "./decode.ts";
import { BtfError } from "./errors.ts";
import { typeName } from "./name.ts";
import { sizeof } from "./size.ts";
import type { BtfType, Enum, Enum64, Int } from "./types.ts";

/**
 * A value that does not fit its type: `path` is where inside the value (`stats[2].bytes`,
 * "" for the value itself) and `detail` why.
 */
export class BtfValueError extends BpfArgumentError {
  override name = "BtfValueError";

  /** The error for the value at `path` of a `typeName` value, unfit because of `detail`. */
  constructor(readonly path: string, readonly detail: string, typeName: string) {
    super(`Invalid value${path ? ` at "${path}"` : ""} for "${typeName}": ${detail}`);
  }
}

/** Writes one value of a type into `view` at byte `offset`. */
export type EncodeFn = (value: BtfValue, view: DataView, offset: number) => void;

/** Why a value does not fit, and where (built up as it travels out of nested encoders). */
class Misfit {
  path = "";
  constructor(readonly detail: string) {}
}

function within(e: unknown, step: string): unknown {
  if (e instanceof Misfit) e.path = step + e.path;
  return e;
}

function describe(value: unknown): string {
  if (typeof value === "bigint") return `${value}`;
  if (typeof value === "string") return JSON.stringify(value.slice(0, 64));
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (value instanceof Uint8Array) return `a Uint8Array of ${value.length}`;
  if (value === null) return "null";
  if (typeof value === "object") return "an object";
  return String(value);
}

/** A function of a type's value, made from the functions of the types it holds. */
type Compile = (type: BtfType) => EncodeFn;

const compileValue = compiler<EncodeFn>("encode", make);

/**
 * Compiles the encoder of `type` (memoized per type and byte order): it zeroes the type's
 * bytes at `offset`, then writes `value` there. Throws a `BtfError` for types without a value;
 * the encoder throws a `BpfArgumentError` for values that do not fit.
 *
 * @example
 * ```ts
 * import { compileDecoder, compileEncoder, kernelBtf } from "./mod.ts";
 * const lock = kernelBtf().find("struct", "bpf_spin_lock")!;
 * const view = new DataView(new ArrayBuffer(4));
 * compileEncoder(lock)({ val: 7 }, view, 0);
 * console.log(compileDecoder(lock)(view, 0)); // { val: 7 }
 * ```
 */
export function compileEncoder(type: BtfType, options: CodecOptions = {}): EncodeFn {
  const inner = compileValue(type, options);
  const size = sizeof(type);
  return (value, view, offset) => {
    if (!(offset >= 0 && offset + size <= view.byteLength)) {
      throw new BpfArgumentError(
        `No room for "${
          typeName(type)
        }" (${size} bytes) at offset ${offset} of ${view.byteLength} bytes`,
      );
    }
    if (size <= 64) {
      for (let i = 0; i < size; i++) view.setUint8(offset + i, 0);
    } else {
      new Uint8Array(view.buffer, view.byteOffset + offset, size).fill(0);
    }
    try {
      inner(value, view, offset);
    } catch (e) {
      if (!(e instanceof Misfit)) throw e;
      throw new BtfValueError(e.path.replace(/^\./, ""), e.detail, typeName(type));
    }
  };
}

function make(t: BtfType, le: boolean, compile: Compile): EncodeFn {
  switch (t.kind) {
    case "int":
      return intEncoder(t, le);
    case "enum":
    case "enum64":
      return enumEncoder(t, wholeWriter(t.size, le), t.size * 8);
    case "ptr": {
      const write = wholeWriter(t.size, le);
      const check = integer(t.size * 8, false);
      return (value, v, o) => write(check(value), v, o);
    }
    case "float":
      if (t.size === 4 || t.size === 8) {
        const wide = t.size === 8;
        return (value, v, o) => {
          if (typeof value !== "number") {
            throw new Misfit(`expected a number, got ${describe(value)}`);
          }
          if (wide) v.setFloat64(o, value, le);
          else v.setFloat32(o, value, le);
        };
      }
      return bytesEncoder(t.size);
    case "array": {
      const element = compile(t.element);
      const n = t.nelems;
      const stride = sizeof(t.element);
      return (value, v, o) => {
        if (!isArrayLike(value)) throw new Misfit(`expected ${n} elements, got ${describe(value)}`);
        const values = value as ArrayLike<BtfValue>;
        if (values.length !== n) {
          throw new Misfit(`expected ${n} elements, got ${values.length}`);
        }
        for (let i = 0; i < n; i++) {
          try {
            element(values[i], v, o + i * stride);
          } catch (e) {
            throw within(e, `[${i}]`);
          }
        }
      };
    }
    case "struct":
    case "union":
    case "datasec":
      return objectEncoder(slotsOf(t), t.kind === "union", le, compile);
    default:
      // compiler() refused the kinds without a value and resolved the aliases.
      throw new BtfError(`Cannot encode a value of type "${typeName(t)}"`, { typeId: t.id });
  }
}

function isArrayLike(value: unknown): boolean {
  return Array.isArray(value) || (ArrayBuffer.isView(value) && !(value instanceof DataView));
}

function bytesEncoder(size: number): EncodeFn {
  return (value, v, o) => {
    if (!(value instanceof Uint8Array) || value.length !== size) {
      throw new Misfit(`expected a Uint8Array of ${size} bytes, got ${describe(value)}`);
    }
    for (let i = 0; i < size; i++) v.setUint8(o + i, value[i]);
  };
}

function objectEncoder(
  slots: Slot[],
  union: boolean,
  le: boolean,
  compile: Compile,
): EncodeFn {
  const names = slots.map((s) => s.name);
  const known = new Set(names);
  const optional = slots.map((s) => s.optional);
  const fns = slots.map((s) => slotEncoder(s, le, compile));
  const offsets = slots.map((s) => s.byteOffset);
  const n = slots.length;
  const expected = `an object with ${union ? "one of" : ""} ${
    names.slice(0, 8).map((m) => `"${m}"`).join(", ")
  }${n > 8 ? ", ..." : ""}`;
  return (value, v, o) => {
    if (typeof value !== "object" || value === null || isArrayLike(value)) {
      throw new Misfit(`expected ${expected}, got ${describe(value)}`);
    }
    const object = value as { [name: string]: BtfValue };
    let written = 0;
    for (let i = 0; i < n; i++) {
      const member = object[names[i]];
      if (member === undefined) {
        if (optional[i]) continue;
        throw new Misfit(`missing member "${names[i]}"`);
      }
      try {
        fns[i](member, v, o + offsets[i]);
      } catch (e) {
        throw within(e, `.${names[i]}`);
      }
      written++;
    }
    if (union && written === 0 && n > 0) throw new Misfit(`expected ${expected}`);
    for (const key of Object.keys(object)) {
      if (!known.has(key)) throw new Misfit(`unknown member "${key}"`);
    }
  };
}

/** The encoder of one struct place: a bitfield, an old-style `INT` bitfield, or a whole member. */
function slotEncoder(slot: Slot, le: boolean, compile: Compile): EncodeFn {
  const access = slotAccess(slot);
  switch (access.kind) {
    case "whole":
      return compile(access.type);
    case "int":
      return bitsEncoder(access.bitPos, access.bits, access.shape, le);
    case "enum":
      return enumEncoder(
        access.type,
        bitsWriter(access.bitPos, access.bits, le),
        access.bits,
        access.shape,
      );
  }
}

/**
 * A checker that turns a JS value into the integer to store in `bits` bits: a `number` when
 * `bits <= 48`, else a `bigint`; negative values of signed types as they are (writers
 * reduce them modulo 2^bits).
 */
function integer(
  bits: number,
  signed: boolean,
  bool = false,
  what = `a ${bits}-bit ${signed ? "signed" : "unsigned"} integer`,
): (value: BtfValue) => number | bigint {
  if (bits === 0) {
    // An INT of no bits holds only 0 (the decoder reads 0, or false).
    return (value: BtfValue) => {
      if (value === 0 || value === 0n || value === false) return 0;
      throw new Misfit(`expected 0 (the integer has no bits), got ${describe(value)}`);
    };
  }
  const min = signed ? -(2 ** (bits - 1)) : 0;
  const max = signed ? 2 ** (bits - 1) - 1 : 2 ** bits - 1;
  const range = `${min} to ${max}`;
  if (bool) {
    return (value: BtfValue) => {
      if (value === true || value === 1 || value === 1n) return bits > 48 ? 1n : 1;
      if (value === false || value === 0 || value === 0n) return bits > 48 ? 0n : 0;
      throw new Misfit(`expected a boolean, got ${describe(value)}`);
    };
  }
  if (bits <= 48) {
    return (value: BtfValue) => {
      const x = typeof value === "bigint" ? Number(value) : value;
      if (typeof x !== "number" || !Number.isInteger(x)) {
        throw new Misfit(`expected an integer from ${range}, got ${describe(value)}`);
      }
      if (x < min || x > max) {
        throw new Misfit(`${describe(value)} does not fit ${what} (${range})`);
      }
      return x;
    };
  }
  const bigMin = signed ? -(1n << BigInt(bits - 1)) : 0n;
  const bigMax = signed ? (1n << BigInt(bits - 1)) - 1n : (1n << BigInt(bits)) - 1n;
  return (value: BtfValue) => {
    let x: bigint;
    if (typeof value === "bigint") x = value;
    else if (typeof value === "number" && Number.isSafeInteger(value)) x = BigInt(value);
    else throw new Misfit(`expected a bigint from ${bigMin} to ${bigMax}, got ${describe(value)}`);
    if (x < bigMin || x > bigMax) {
      throw new Misfit(`${describe(value)} does not fit ${what} (${bigMin} to ${bigMax})`);
    }
    return x;
  };
}

/** Writes an integer (from `integer()`) over `size` whole bytes. */
type Writer = (x: number | bigint, v: DataView, o: number) => void;

function wholeWriter(size: number, le: boolean): Writer {
  switch (size) {
    case 1:
      return (x, v, o) => v.setUint8(o, Number(x) & 0xff);
    case 2:
      return (x, v, o) => v.setUint16(o, Number(x) & 0xffff, le);
    case 4:
      return (x, v, o) => v.setUint32(o, Number(x) >>> 0, le);
    case 8:
      return (x, v, o) => v.setBigUint64(o, BigInt.asUintN(64, BigInt(x)), le);
    default: {
      const lo = le ? 0 : 8;
      const hi = le ? 8 : 0;
      return (x, v, o) => {
        const u = BigInt.asUintN(128, BigInt(x));
        v.setBigUint64(o + lo, BigInt.asUintN(64, u), le);
        v.setBigUint64(o + hi, u >> 64n, le);
      };
    }
  }
}

/** Writes the low `bits` bits of an integer at bit `bitPos`, keeping the bits around them. */
function bitsWriter(bitPos: number, bits: number, le: boolean): Writer {
  if (bits === 0) return () => {};
  const { first, n, shift } = bitSpan(bitPos, bits, le);
  if (n <= 6) {
    const mul = 2 ** shift;
    const mod = 2 ** bits;
    return (x, v, o) => {
      const p = o + first;
      const word = readWord(v, p, n, le);
      const old = Math.floor(word / mul) % mod;
      const field = ((Number(x) % mod) + mod) % mod;
      writeWord(v, p, n, le, word + (field - old) * mul);
    };
  }
  const bigShift = BigInt(shift);
  const mask = ((1n << BigInt(bits)) - 1n) << bigShift;
  return (x, v, o) => {
    const p = o + first;
    const word = readBigWord(v, p, n, le);
    writeBigWord(
      v,
      p,
      n,
      le,
      (word & ~mask) | ((BigInt.asUintN(bits, BigInt(x)) << bigShift) & mask),
    );
  };
}

function intEncoder(t: Int, le: boolean): EncodeFn {
  if (t.offset !== 0 || t.bits !== t.size * 8) {
    return bitsEncoder(t.offset, t.bits, intShape(t), le);
  }
  const check = integer(t.bits, t.encoding === "signed", t.encoding === "bool", typeName(t));
  const write = wholeWriter(t.size, le);
  return (value, v, o) => write(check(value), v, o);
}

function bitsEncoder(bitPos: number, bits: number, shape: IntShape, le: boolean): EncodeFn {
  const check = integer(bits, shape.signed, shape.bool);
  const write = bitsWriter(bitPos, bits, le);
  return (value, v, o) => write(check(value), v, o);
}

/**
 * The encoder of an enum stored in `bits` bits by `write`: an enumerator's name, or a
 * number in range (`shape` of the storage; by default the enum's own).
 */
function enumEncoder(
  t: Enum | Enum64,
  write: Writer,
  bits: number,
  shape: IntShape = enumShape(t),
): EncodeFn {
  const byName = new Map<string, number | bigint>();
  for (const [value, name] of enumNames(t)) if (!byName.has(name)) byName.set(name, value);
  for (const e of t.values) if (!byName.has(e.name)) byName.set(e.name, e.value);
  const check = integer(bits, shape.signed, false, typeName(t));
  return (value, v, o) => {
    if (typeof value === "string") {
      const known = byName.get(value);
      if (known === undefined) {
        throw new Misfit(`unknown enumerator ${describe(value)} of "${typeName(t)}"`);
      }
      value = known;
    }
    write(check(value), v, o);
  };
}
