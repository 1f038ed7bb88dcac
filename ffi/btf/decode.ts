/**
 * Decoders compiled once per type: closures over `DataView` that read one value at an
 * offset without walking the type graph again. What each kind becomes:
 *
 * | BTF                                  | JavaScript                                       |
 * | ------------------------------------ | ------------------------------------------------ |
 * | `INT` of 1, 2 or 4 bytes             | `number` (signed when the encoding says so)      |
 * | `INT` of 8 or 16 bytes               | `bigint`                                         |
 * | `INT` with `bool` encoding           | `boolean` (any non-zero byte is `true`)          |
 * | `INT` with `char` encoding           | `number`, 0 to 255                               |
 * | bitfield (kind_flag or `INT` bits)   | as its integer type: by the type's size, not the bit count |
 * | `ENUM`, `ENUM64`                     | the enumerator's name when one matches, else the number (`bigint` for 8 bytes) |
 * | `FLOAT` of 4 or 8 bytes              | `number`                                         |
 * | `FLOAT` of 2, 12 or 16 bytes         | `Uint8Array` (a copy of the raw bytes)           |
 * | `PTR`                                | `bigint` address                                 |
 * | `ARRAY`                              | `Array` of the element values (`char[]` too: see `charsToString`) |
 * | `STRUCT`, `UNION`                    | object by member name, anonymous struct and union members merged into it (see below) |
 * | `DATASEC` (global data maps)         | object by variable name                          |
 * | typedefs, qualifiers, type tags, `VAR` | what they name                                 |
 *
 * Anonymous members: their members become the parent's, as C code reads them
 * (`v.lo` for `union { u32 w; struct { u16 lo, hi; }; } v`). bpftool instead nests them under
 * the key "" (so two anonymous members of one struct collide in its JSON); unnamed bitfields
 * (padding) are left out. Encoders take the same shape, members of anonymous unions optional.
 *
 * Void, functions and forward declarations cannot be decoded (`BtfError` at compile time).
 *
 * @module
 */

import {
  type CodecOptions,
  compiler,
  enumNames,
  type IntShape,
  intShape,
  type Slot,
  slotAccess,
  slotsOf,
} from "./_plan.ts";
import { bitSpan, readBigWord, readWord } from "./_bits.ts";
import { BtfError } from "./errors.ts";
import { typeName } from "./name.ts";
import { sizeof } from "./size.ts";
import type { BtfType, Enum, Enum64, Int } from "./types.ts";

/** A decoded value (see the module documentation for what each kind becomes). */
export type BtfValue =
  | number
  | bigint
  | boolean
  | string
  | Uint8Array
  | BtfValue[]
  | { [name: string]: BtfValue };

/** Reads one value of a type from `view` at byte `offset`. */
export type DecodeFn = (view: DataView, offset: number) => BtfValue;

export type { CodecOptions };

/** A function of a type's value, made from the functions of the types it holds. */
type Compile = (type: BtfType) => DecodeFn;

const compileValue = compiler<DecodeFn>("decode", make);

/**
 * Compiles the decoder of `type` (memoized per type and byte order). Throws a `BtfError`
 * when the type has no value (void, functions, forward declarations) or would cost more
 * than `maxSteps` per value.
 *
 * @example
 * ```ts
 * import { compileDecoder, kernelBtf } from "./mod.ts";
 * const btf = kernelBtf();
 * const decode = compileDecoder(btf.find("struct", "bpf_spin_lock")!);
 * console.log(decode(new DataView(new ArrayBuffer(4)), 0)); // { val: 0 }
 * ```
 */
export function compileDecoder(type: BtfType, options: CodecOptions = {}): DecodeFn {
  return compileValue(type, options);
}

function make(t: BtfType, le: boolean, compile: Compile): DecodeFn {
  switch (t.kind) {
    case "int":
      return intDecoder(t, le);
    case "enum":
    case "enum64":
      return enumDecoder(t, le);
    case "ptr":
      return t.size === 8 ? (v, o) => v.getBigUint64(o, le) : (v, o) => BigInt(v.getUint32(o, le));
    case "float":
      if (t.size === 4) return (v, o) => v.getFloat32(o, le);
      if (t.size === 8) return (v, o) => v.getFloat64(o, le);
      return rawBytes(t.size);
    case "array": {
      const element = compile(t.element);
      const n = t.nelems;
      const stride = sizeof(t.element);
      return (v, o) => {
        const values: BtfValue[] = new Array(n);
        for (let i = 0; i < n; i++) values[i] = element(v, o + i * stride);
        return values;
      };
    }
    case "struct":
    case "union":
    case "datasec": {
      const slots = slotsOf(t);
      const names = slots.map((s) => s.name);
      const fns = slots.map((s) => slotDecoder(s, le, compile));
      const offsets = slots.map((s) => s.byteOffset);
      const n = slots.length;
      return (v, o) => {
        const value: { [name: string]: BtfValue } = {};
        for (let i = 0; i < n; i++) value[names[i]] = fns[i](v, o + offsets[i]);
        return value;
      };
    }
    default:
      // compiler() refused the kinds without a value and resolved the aliases.
      throw new BtfError(`Cannot decode a value of type "${typeName(t)}"`, { typeId: t.id });
  }
}

function rawBytes(size: number): DecodeFn {
  return (v, o) => new Uint8Array(v.buffer.slice(v.byteOffset + o, v.byteOffset + o + size));
}

/** The decoder of one struct place: a bitfield, an old-style `INT` bitfield, or a whole member. */
function slotDecoder(slot: Slot, le: boolean, compile: Compile): DecodeFn {
  const access = slotAccess(slot);
  switch (access.kind) {
    case "whole":
      return compile(access.type);
    case "int":
      return bitsDecoder(access.bitPos, access.bits, access.shape, le);
    case "enum": {
      const raw = bitsDecoder(access.bitPos, access.bits, access.shape, le);
      const names = enumNames(access.type);
      return (v, o) => {
        const x = raw(v, o) as number | bigint;
        return names.get(x) ?? x;
      };
    }
  }
}

/** The decoder of an `INT` (of fewer bits than its bytes hold, or off its first bit: as bits). */
function intDecoder(t: Int, le: boolean): DecodeFn {
  if (t.offset !== 0 || t.bits !== t.size * 8) {
    return bitsDecoder(t.offset, t.bits, intShape(t), le);
  }
  if (t.encoding === "bool") {
    switch (t.size) {
      case 1:
        return (v, o) => v.getUint8(o) !== 0;
      case 2:
        return (v, o) => v.getUint16(o, le) !== 0;
      case 4:
        return (v, o) => v.getUint32(o, le) !== 0;
      case 8:
        return (v, o) => v.getBigUint64(o, le) !== 0n;
      default:
        return (v, o) => v.getBigUint64(o, le) !== 0n || v.getBigUint64(o + 8, le) !== 0n;
    }
  }
  return wholeReader(t.size, t.encoding === "signed", le);
}

/** Reads an integer of `size` whole bytes (1, 2, 4, 8 or 16): a `number` up to 4, else a `bigint`. */
function wholeReader(
  size: number,
  signed: boolean,
  le: boolean,
): (v: DataView, o: number) => number | bigint {
  switch (size) {
    case 1:
      return signed ? (v, o) => v.getInt8(o) : (v, o) => v.getUint8(o);
    case 2:
      return signed ? (v, o) => v.getInt16(o, le) : (v, o) => v.getUint16(o, le);
    case 4:
      return signed ? (v, o) => v.getInt32(o, le) : (v, o) => v.getUint32(o, le);
    case 8:
      return signed ? (v, o) => v.getBigInt64(o, le) : (v, o) => v.getBigUint64(o, le);
    default: {
      const lo = le ? 0 : 8;
      const hi = le ? 8 : 0;
      return (v, o) => {
        const x = (v.getBigUint64(o + hi, le) << 64n) | v.getBigUint64(o + lo, le);
        return signed ? BigInt.asIntN(128, x) : x;
      };
    }
  }
}

/** The decoder of `bits` bits from bit `bitPos` (see `_bits.ts` for the order of the bits). */
function bitsDecoder(bitPos: number, bits: number, shape: IntShape, le: boolean): DecodeFn {
  const { signed, big, bool } = shape;
  if (bits === 0) return bool ? () => false : big ? () => 0n : () => 0;
  const { first, n, shift } = bitSpan(bitPos, bits, le);
  if (n <= 6) {
    // At most 48 bits: exact in a double.
    const div = 2 ** shift;
    const mod = 2 ** bits;
    const half = 2 ** (bits - 1);
    return (v, o) => {
      let x = Math.floor(readWord(v, o + first, n, le) / div) % mod;
      if (signed && x >= half) x -= mod;
      return bool ? x !== 0 : big ? BigInt(x) : x;
    };
  }
  const bigShift = BigInt(shift);
  return (v, o) => {
    let x = BigInt.asUintN(bits, readBigWord(v, o + first, n, le) >> bigShift);
    if (signed) x = BigInt.asIntN(bits, x);
    return bool ? x !== 0n : big ? x : Number(x);
  };
}

function enumDecoder(t: Enum | Enum64, le: boolean): DecodeFn {
  const names = enumNames(t);
  const read = wholeReader(t.size, t.signed, le);
  return (v, o) => {
    const x = read(v, o);
    return names.get(x) ?? x;
  };
}
