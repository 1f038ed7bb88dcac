/**
 * `btfCodec`: a type's compiled decoder and encoder as a `Codec` (`../map/typed.ts`), so that
 * `map.typed(btfCodec(keyType), btfCodec(valueType))` reads and writes a map with BTF by
 * value; and the helpers between `char` arrays (decoded as numbers) and strings.
 *
 * @module
 */

import { BpfArgumentError } from "../sys/errors.ts";
import type { Codec } from "../map/typed.ts";
import { type BtfValue, type CodecOptions, compileDecoder } from "./decode.ts";
import { compileEncoder } from "./encode.ts";
import { BtfError } from "./errors.ts";
import { typeName } from "./name.ts";
import { sizeof } from "./size.ts";
import type { ArrayType, BtfType } from "./types.ts";
import { isQualifier, underlying } from "./types.ts";

/** A type's decoder and encoder, over bytes (`Codec`) or at an offset of a `DataView`. */
export interface BtfCodec extends Codec<BtfValue> {
  /** The type. */
  readonly type: BtfType;
  /** Reads a value at `offset` of `view`. */
  decodeAt(view: DataView, offset: number): BtfValue;
  /** Zeroes the type's bytes at `offset` of `view`, then writes `value` there. */
  encodeAt(value: BtfValue, view: DataView, offset: number): void;
}

/**
 * The codec of `type`. `decode(bytes)` reads the first `size` bytes of `bytes`; views
 * into one buffer (a batch's) share one `DataView`, so decoding allocates nothing but the
 * value.
 *
 * @example
 * ```ts
 * import { BpfMap } from "../../mod.ts";
 * import { btfCodec, loadMapBtf } from "./mod.ts";
 * using map = BpfMap.fromId(42);
 * const btf = loadMapBtf(map);
 * if (btf) {
 *   const typed = map.typed(btfCodec(btf.keyType), btfCodec(btf.valueType));
 *   for (const [key, value] of typed.entries()) console.log(key, value);
 * }
 * ```
 */
export function btfCodec(type: BtfType, options: CodecOptions = {}): BtfCodec {
  const size = sizeof(type);
  const decodeAt = compileDecoder(type, options);
  const encodeAt = compileEncoder(type, options);
  let buffer: ArrayBufferLike | undefined;
  let view: DataView = new DataView(new ArrayBuffer(0));
  const viewOf = (bytes: Uint8Array): DataView => {
    if (bytes.byteLength < size) {
      throw new BpfArgumentError(
        `${bytes.byteLength} bytes for "${typeName(type)}": it takes ${size}`,
      );
    }
    if (bytes.buffer !== buffer) {
      buffer = bytes.buffer;
      view = new DataView(bytes.buffer);
    }
    return view;
  };
  return {
    type,
    size,
    decodeAt,
    encodeAt,
    decode: (bytes) => decodeAt(viewOf(bytes), bytes.byteOffset),
    encode: (value, into) => encodeAt(value, viewOf(into), into.byteOffset),
  };
}

/**
 * Whether `type` is an array of `char` as bpftool tells it (`is_str_array`): elements of one
 * byte, through qualifiers but not typedefs, with the `char` encoding or named `char`.
 *
 * @example
 * ```ts
 * import { kernelBtf, isCharArray } from "./mod.ts";
 * const task = kernelBtf().find("struct", "task_struct")!;
 * console.log(isCharArray(task.members.find((m) => m.name === "comm")!.type)); // true
 * ```
 */
export function isCharArray(type: BtfType): type is ArrayType {
  const t = underlying(type);
  if (t.kind !== "array") return false;
  let e = t.element;
  while (isQualifier(e) && e.kind !== "typedef") e = e.target;
  return e.kind === "int" && e.size === 1 && (e.encoding === "char" || e.name === "char");
}

/**
 * The string in a decoded `char` array: the bytes (signed or not) up to the first NUL,
 * as UTF-8.
 *
 * @example
 * ```ts
 * import { charsToString } from "./mod.ts";
 * console.log(charsToString([104, 105, 0, 0])); // "hi"
 * ```
 */
export function charsToString(chars: ArrayLike<number>): string {
  const bytes = new Uint8Array(chars.length);
  let n = 0;
  while (n < chars.length && (chars[n] & 0xff) !== 0) {
    bytes[n] = chars[n] & 0xff;
    n++;
  }
  return new TextDecoder().decode(bytes.subarray(0, n));
}

/**
 * The value of a `char` array type holding `text` (UTF-8, NUL-padded; signed elements get
 * bytes above 127 as negative numbers). Throws a `BpfArgumentError` when `text` and its NUL
 * do not fit.
 *
 * @example
 * ```ts
 * import { kernelBtf, stringToChars } from "./mod.ts";
 * const comm = kernelBtf().find("struct", "task_struct")!.members.find((m) => m.name === "comm")!;
 * console.log(stringToChars("init", comm.type).slice(0, 5)); // [105, 110, 105, 116, 0]
 * ```
 */
export function stringToChars(text: string, type: BtfType): number[] {
  const array = underlying(type);
  if (array.kind !== "array") {
    throw new BtfError(`Type "${typeName(type)}" is not an array`, { typeId: type.id });
  }
  const element = underlying(array.element);
  if (element.kind !== "int" || element.size !== 1) {
    throw new BtfError(`Type "${typeName(type)}" is not an array of bytes`, { typeId: type.id });
  }
  const bytes = new TextEncoder().encode(text);
  if (bytes.length >= array.nelems) {
    throw new BpfArgumentError(
      `String of ${bytes.length} bytes does not fit "${typeName(type)}" with its NUL`,
    );
  }
  const signed = element.encoding === "signed";
  return Array.from(
    { length: array.nelems },
    (_, i) => i < bytes.length ? (signed && bytes[i] > 127 ? bytes[i] - 256 : bytes[i]) : 0,
  );
}
