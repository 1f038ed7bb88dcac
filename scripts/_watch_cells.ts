/**
 * The text of `map watch`'s cells: keys and the non-numeric rest of values, typed through
 * the map's BTF when it has one (structs as `{name:value,...}`, `char` arrays as strings,
 * enums by name, 64-bit integers in full), else keys as hex bytes and values as hex; and
 * rates. Only the rows shown are formatted, so this may allocate freely.
 *
 * @module
 */

import { aliasOf, slotsOf } from "../ffi/btf/_plan.ts";
import {
  btfCodec,
  type BtfType,
  type BtfValue,
  charsToString,
  isCharArray,
  type MapBtf,
} from "../ffi/btf/mod.ts";
import type { WatchField } from "../ffi/dump/watch.ts";

/** How one map's keys and values read on the screen. */
export interface CellFormat {
  /** The key at `bytes[offset..]`. */
  key(bytes: Uint8Array, offset: number): string;
  /**
   * What of one CPU's value at `bytes[offset..]` is not a numeric field (`""` when nothing
   * is); the whole value when there are no fields.
   */
  rest(bytes: Uint8Array, offset: number): string;
  /** Whether values have anything besides their numeric fields. */
  readonly hasRest: boolean;
}

/** Bytes as bpftool prints them: two hex digits each, spaced. */
export function hexBytes(bytes: Uint8Array, offset: number, size: number): string {
  let text = "";
  for (let i = 0; i < size; i++) {
    text += (i ? " " : "") + bytes[offset + i].toString(16).padStart(2, "0");
  }
  return text;
}

/** The type a typedef, qualifier or variable stands for. */
function resolved(type: BtfType): BtfType {
  let t = type;
  for (let alias = aliasOf(t); alias; alias = aliasOf(t)) t = alias;
  return t;
}

/**
 * A decoded value as text: `{a:1,b:"x"}`, `[1,2]`. Members whose path is in `skip` are left
 * out, and so are structs and arrays left empty; `undefined` when nothing is left.
 */
export function typedText(
  type: BtfType,
  value: BtfValue,
  path = "",
  skip: ReadonlySet<string> = new Set(),
): string | undefined {
  if (skip.has(path)) return undefined;
  if (isCharArray(type) && Array.isArray(value)) {
    return JSON.stringify(charsToString(value as number[]));
  }
  const t = resolved(type);
  if ((t.kind === "struct" || t.kind === "union" || t.kind === "datasec") && isObject(value)) {
    const types = new Map(slotsOf(t).map((slot) => [slot.name, slot.type]));
    const parts: string[] = [];
    for (const [name, member] of Object.entries(value)) {
      const text = typedText(types.get(name)!, member, path ? `${path}.${name}` : name, skip);
      if (text !== undefined) parts.push(`${name}:${text}`);
    }
    return parts.length ? `{${parts.join(",")}}` : undefined;
  }
  if (t.kind === "array" && Array.isArray(value)) {
    const parts = value.map((element, i) => typedText(t.element, element, `${path}[${i}]`, skip));
    if (parts.every((part) => part === undefined)) return undefined;
    return `[${parts.map((part) => part ?? "_").join(",")}]`;
  }
  if (t.kind === "ptr" && typeof value === "bigint") return `0x${value.toString(16)}`;
  if (value instanceof Uint8Array) {
    return `0x${hexBytes(value, 0, value.length).replaceAll(" ", "")}`;
  }
  return String(value);
}

function isObject(value: BtfValue): value is { [name: string]: BtfValue } {
  return typeof value === "object" && !Array.isArray(value) && !(value instanceof Uint8Array);
}

/**
 * The cells of a map of `keySize`-byte keys and `valueSize`-byte values (one CPU's), with
 * `btf` or without, whose values have `fields`.
 *
 * @example
 * ```ts
 * import { cellFormat } from "./_watch_cells.ts";
 * const cells = cellFormat({ keySize: 4, valueSize: 3 }, null, []);
 * console.log(cells.key(Uint8Array.of(10, 0, 0, 1), 0)); // "0a 00 00 01"
 * ```
 */
export function cellFormat(
  shape: { keySize: number; valueSize: number },
  btf: MapBtf | null,
  fields: readonly WatchField[],
): CellFormat {
  const { keySize, valueSize } = shape;
  const keyType = btf && btf.keyType.kind !== "void" ? btf.keyType : undefined;
  const keyCodec = keyType && btfCodec(keyType);
  const key = keyCodec
    ? (b: Uint8Array, o: number) => typedText(keyType!, keyCodec.decode(b.subarray(o))) ?? ""
    : (b: Uint8Array, o: number) => hexBytes(b, o, keySize);
  if (!btf) {
    return {
      key,
      hasRest: fields.length === 0,
      rest: (b, o) => fields.length ? "" : hexBytes(b, o, valueSize),
    };
  }
  const valueType = btf.valueType;
  const valueCodec = btfCodec(valueType);
  const skip = new Set(fields.map((f) => f.path));
  const hasRest = typedText(valueType, valueCodec.decode(new Uint8Array(valueSize)), "", skip) !==
    undefined;
  return {
    key,
    hasRest,
    rest: (b, o) => typedText(valueType, valueCodec.decode(b.subarray(o)), "", skip) ?? "",
  };
}

/** A field's name in headers: its path, or `value` for the value itself. */
export function fieldLabel(field: WatchField): string {
  return field.path || "value";
}

/**
 * The field `--sort` names (an index into `fields`; `value` and a leading `value.` are
 * taken), the first field by default, -1 when there are none; `undefined` when no field
 * has that path.
 */
export function sortIndex(
  fields: readonly WatchField[],
  sort: string | undefined,
): number | undefined {
  if (sort === undefined) return fields.length ? 0 : -1;
  const path = sort === "value" ? "" : sort.replace(/^value\./, "");
  const index = fields.findIndex((f) => f.path === path);
  return index < 0 ? undefined : index;
}

/** A rate per second for a cell: whole above 1000, one decimal below. */
export function rateText(delta: bigint, seconds: number): string {
  if (delta === 0n) return "0";
  const rate = Number(delta) / seconds;
  return Math.abs(rate) >= 1000 ? Math.round(rate).toString() : rate.toFixed(1);
}
