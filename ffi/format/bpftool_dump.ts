/**
 * `bpftool map dump` output, byte for byte (bpftool 7.1): its BTF dumper (`btf_dumper.c`)
 * with its quirks and its plain text (`print_entry_plain`), over the port of its JSON writer
 * (`./json_writer.ts`).
 *
 * Fast because the JSON writer runs once per map, not per entry: one entry's output is
 * compiled into a template (`_template.ts`) whose holes write values as bytes
 * (`byte_writer.ts`).
 *
 * The BTF dumper's quirks reproduced (named in `tests/dump_test.ts` and
 * `tests/btf_kernel_test.ts`):
 * - bitfields (kind_flag members, INTs with an offset or a bit count not a whole number of
 *   bytes, and INTs at an odd bit offset) print as unsigned hex, quoted in JSON, bare in text;
 * - `__int128` prints as hex the same way; pointers as unsigned decimal (JSON) or `%p` (text);
 * - enums are read as signed integers of their size and matched against the enumerators'
 *   32-bit values; ENUM64 prints unmatched values as signed 64-bit numbers;
 * - a `char` array prints as a string only when NUL-terminated and printable before the NUL;
 *   a `char` INT prints quoted when printable, unescaped (`"""` for a quote);
 * - anonymous members print under the name "", repeated as often as they occur;
 * - in strings, a backslash comes out as `\n` (`jsonw_puts`), a single quote raw;
 * - FLOAT (and other kinds bpftool does not print) stop the value with "(unsupported-kind".
 *
 * @module
 */

import type { BtfType, Enum, Enum64, Int } from "../btf/types.ts";
import { sizeof } from "../btf/size.ts";
import { isCharArray } from "../btf/codec.ts";
import { BPFTOOL_ESCAPES, JsonWriter } from "./json_writer.ts";
import { type ByteWriter, MAX_NUMBER_BYTES } from "./byte_writer.ts";
import { readSmall } from "./_bytes.ts";
import {
  dropLeading,
  type HoleFn,
  render,
  type Source,
  type Template,
  TemplateBuilder,
} from "./_template.ts";

const encoder = new TextEncoder();

/**
 * `jsonw_puts` as bpftool 7.1 has it, checked against bpftool in `tests/dump_test.ts`: a
 * backslash comes out as `\n`, a single quote raw. (`JsonWriter.string` writes `\'` for a
 * single quote, which bpftool 7.1 does not: strings of values go through this instead.)
 */
function bpftoolString(text: string): string {
  return `"${text.replace(/[\t\n\r\f\b\\"]/g, (c) => BPFTOOL_ESCAPES[c])}"`;
}

function isPrint(c: number): boolean {
  return c >= 0x20 && c < 0x7f;
}

/** Where a value lies: in the key or the value, at a byte offset and a bit offset (0-7). */
interface Place {
  source: Source;
  offset: number;
  bitOffset: number;
}

function at(place: Place, bytes: number, bitOffset = 0): Place {
  return { source: place.source, offset: place.offset + bytes, bitOffset };
}

/** The two hex digits of each byte as one little-endian 16-bit word (`"ab"` -> 0x6261). */
const HEX_PAIRS = new Uint16Array(256).map((_, i) => {
  const digits = i.toString(16).padStart(2, "0");
  return digits.charCodeAt(0) | digits.charCodeAt(1) << 8;
});
/** `,"0x` and `"0x`, little-endian. */
const COMMA_QUOTE_0X = 0x7830_222c;
const QUOTE_0X = 0x78_3022;

/** `print_hex_data_json`'s elements, `"0x00","0x01"`, for `length` bytes. */
function hexList(length: number): HoleFn {
  return (w, b, o) => {
    const view = w.view;
    let p = w.pos;
    if (length > 0) {
      // `"0x` (its fourth byte overwritten by the digits), the digits, `"`.
      view.setUint32(p, QUOTE_0X, true);
      view.setUint16(p + 3, HEX_PAIRS[b[o]], true);
      view.setUint8(p + 5, 0x22);
      p += 6;
      // Then `,"0x`, the digits, `"` for each next byte.
      for (let i = 1; i < length; i++) {
        view.setUint32(p, COMMA_QUOTE_0X, true);
        view.setUint16(p + 4, HEX_PAIRS[b[o + i]], true);
        view.setUint8(p + 6, 0x22);
        p += 7;
      }
    }
    w.pos = p;
  };
}

/** `fprint_hex`: bytes separated by spaces, a double space every 8, a newline every 16. */
function plainHex(length: number): HoleFn {
  return (w, b, o) => {
    for (let i = 0; i < length; i++) {
      if (i > 0) {
        if (i % 16 === 0) w.byte(0x0a);
        else if (i % 8 === 0) w.ascii("  ");
        else w.byte(0x20);
      }
      w.hex2(b[o + i]);
    }
  };
}

/** The `bits` bits at bit `within` (0-7) of `b[o..]`, as hex (`0x1f`), quoted in JSON. */
function bitfieldHole(within: number, bits: number, plain: boolean): HoleFn {
  const n = Math.min(16, Math.ceil((within + bits) / 8));
  return (w, b, o) => {
    let text: string;
    if (n <= 6) {
      let x = 0;
      for (let i = n - 1; i >= 0; i--) x = x * 256 + (b[o + i] ?? 0);
      text = (Math.floor(x / 2 ** within) % 2 ** bits).toString(16);
    } else {
      let x = 0n;
      for (let i = n - 1; i >= 0; i--) x = (x << 8n) | BigInt(b[o + i] ?? 0);
      text = ((x >> BigInt(within)) & ((1n << BigInt(bits)) - 1n)).toString(16);
    }
    if (!plain) w.byte(0x22);
    w.ascii("0x");
    w.ascii(text);
    if (!plain) w.byte(0x22);
  };
}

function intHole(type: Int, plain: boolean): { fn: HoleFn; max: number } {
  const bytes = type.bits / 8;
  if (type.encoding === "char") {
    return {
      max: 8,
      fn: (w, b, o) => {
        const c = b[o];
        if (isPrint(c)) {
          w.byte(0x22);
          w.byte(c);
          w.byte(0x22);
        } else if (plain) {
          w.ascii("0x");
          w.ascii(c.toString(16));
        } else {
          w.ascii('"\\u00');
          w.hex2(c);
          w.byte(0x22);
        }
      },
    };
  }
  if (type.encoding === "bool") {
    return { max: 5, fn: (w, b, o) => w.ascii(b[o] ? "true" : "false") };
  }
  const signed = type.encoding === "signed";
  if (bytes === 8) return { max: 21, fn: (w, b, o) => w.int64(b, o, signed) };
  if (bytes === 4 && !signed) {
    return {
      max: MAX_NUMBER_BYTES,
      fn: (w, b, o) => w.uint((b[o] | b[o + 1] << 8 | b[o + 2] << 16 | b[o + 3] << 24) >>> 0),
    };
  }
  return { max: MAX_NUMBER_BYTES, fn: (w, b, o) => w.int(readSmall(b, o, bytes, signed)) };
}

/** Enumerator names by value, quoted as bpftool writes them. */
function quotedNames<V>(values: readonly { name: string; value: V }[]): Map<V, Uint8Array> {
  const names = new Map<V, Uint8Array>();
  for (const v of values) {
    if (!names.has(v.value)) names.set(v.value, encoder.encode(bpftoolString(v.name)));
  }
  return names;
}

function longestName(names: Map<unknown, Uint8Array>): number {
  let max = 0;
  for (const n of names.values()) max = Math.max(max, n.length);
  return max;
}

function enumHole(type: Enum): { fn: HoleFn; max: number } {
  const size = type.size;
  const names = quotedNames(type.values.map((v) => ({ name: v.name, value: v.value | 0 })));
  const max = Math.max(longestName(names), 21);
  if (size === 8) {
    return {
      max,
      fn: (w, b, o) => {
        const lo = (b[o] | b[o + 1] << 8 | b[o + 2] << 16 | b[o + 3] << 24) | 0;
        const hi = (b[o + 4] | b[o + 5] << 8 | b[o + 6] << 16 | b[o + 7] << 24) >>> 0;
        const name = hi === (lo < 0 ? 0xffff_ffff : 0) ? names.get(lo) : undefined;
        if (name) w.bytes(name);
        else w.int64(b, o, true);
      },
    };
  }
  return {
    max,
    fn: (w, b, o) => {
      const x = readSmall(b, o, size, true);
      const name = names.get(x);
      if (name) w.bytes(name);
      else w.int(x);
    },
  };
}

function enum64Hole(type: Enum64): { fn: HoleFn; max: number } {
  const names = quotedNames(type.values.map((v) => ({
    name: v.name,
    value: BigInt.asUintN(64, v.value),
  })));
  return {
    max: Math.max(longestName(names), 21),
    fn: (w, b, o) => {
      const x = new DataView(b.buffer, b.byteOffset + o, 8).getBigUint64(0, true);
      const name = names.get(x);
      if (name) w.bytes(name);
      else w.int64(b, o, true);
    },
  };
}

/**
 * `btf_dumper_do_type` for `type` at `place`, compiled: writes the value's structure into
 * `t` and holes for its numbers and strings. Returns false where bpftool's dumper fails
 * (which depends on the type only), after which bpftool writes nothing more of the value.
 */
function emitType(t: TemplateBuilder, type: BtfType, plain: boolean, place: Place): boolean {
  const w = t.json!;
  const value = (fn: HoleFn, max: number) =>
    t.value({ fn, max, source: place.source, offset: place.offset });
  switch (type.kind) {
    case "typedef":
    case "const":
    case "volatile":
    case "restrict": {
      let target: BtfType = type;
      while (
        target.kind === "typedef" || target.kind === "const" || target.kind === "volatile" ||
        target.kind === "restrict" || target.kind === "type_tag"
      ) target = target.target;
      return emitType(t, target, plain, place);
    }
    case "var": {
      w.startObject();
      w.name(type.name);
      const ok = emitType(t, type.type, plain, place);
      w.endObject();
      return ok;
    }
    case "int": {
      const bits = type.bits;
      const bytes = bits / 8;
      if (place.bitOffset || type.offset || bits % 8 || bits === 128) {
        value(bitfieldHole(place.bitOffset + type.offset, bits, plain), bits / 4 + 4);
      } else if (type.encoding !== "char" && ![1, 2, 4, 8].includes(bytes)) {
        value(bitfieldHole(0, bits, plain), bits / 4 + 4);
      } else {
        const { fn, max } = intHole(type, plain);
        value(fn, max);
      }
      return true;
    }
    case "ptr":
      value(
        plain
          ? (w, b, o) => {
            const x = new DataView(b.buffer, b.byteOffset + o, 8).getBigUint64(0, true);
            w.ascii(x === 0n ? "(nil)" : `0x${x.toString(16)}`);
          }
          : (w, b, o) => w.int64(b, o, false),
        21,
      );
      return true;
    case "enum": {
      if (![1, 2, 4, 8].includes(type.size)) return false;
      const { fn, max } = enumHole(type);
      value(fn, max);
      return true;
    }
    case "enum64": {
      const { fn, max } = enum64Hole(type);
      value(fn, max);
      return true;
    }
    case "array": {
      const n = type.nelems;
      const size = n > 0 ? sizeof(type.element) : 0;
      const elements = (into: TemplateBuilder, from: Place) => {
        into.json!.startArray();
        let ok = true;
        for (let i = 0; i < n && ok; i++) {
          ok = emitType(into, type.element, plain, at(from, i * size));
        }
        into.json!.endArray();
        return ok;
      };
      if (!(isCharArray(type) && n > 0)) return elements(t, place);
      // A string when NUL-terminated and printable before the NUL, else the array: both
      // forms start with the separator, which the hole writes.
      const before = w.fork();
      const array = new TemplateBuilder(w.fork());
      elements(array, { source: "value", offset: 0, bitOffset: 0 });
      const asArray = array.finish();
      before.raw("");
      const separator = encoder.encode(before.take());
      t.hole({
        source: place.source,
        offset: place.offset,
        max: Math.max(asArray.max, separator.length + 2 * n + 2),
        fn: (out, b, o) => {
          for (let i = 0; i < n; i++) {
            const c = b[o + i];
            if (c === 0) {
              out.bytes(separator);
              out.byte(0x22);
              for (let j = 0; j < i; j++) {
                const d = b[o + j];
                if (d === 0x5c) out.ascii("\\n");
                else if (d === 0x22) out.ascii('\\"');
                else out.byte(d);
              }
              out.byte(0x22);
              return;
            }
            if (!isPrint(c)) break;
          }
          render(asArray, out, b, o, b, o);
        },
      });
      // The writer goes on as after a value; the separator was the hole's to write.
      w.raw("");
      w.take();
      return true;
    }
    case "struct":
    case "union": {
      w.startObject();
      let ok = true;
      for (const m of type.members) {
        w.name(m.name);
        const inner = at(place, m.bitOffset >> 3, m.bitOffset & 7);
        if (m.bitfieldSize) {
          t.value({
            fn: bitfieldHole(m.bitOffset & 7, m.bitfieldSize, plain),
            max: m.bitfieldSize / 4 + 4,
            source: inner.source,
            offset: inner.offset,
          });
        } else if (!emitType(t, m.type, plain, inner)) {
          ok = false;
          break;
        }
      }
      w.endObject();
      return ok;
    }
    case "datasec": {
      w.startObject();
      w.name(type.name);
      w.startArray();
      let ok = true;
      for (const v of type.vars) {
        if (!emitType(t, v.type, plain, at(place, v.offset))) {
          ok = false;
          break;
        }
      }
      w.endArray();
      w.endObject();
      return ok;
    }
    case "void":
      w.raw("(unknown)");
      return true;
    case "fwd":
      w.raw("(fwd-kind-invalid)");
      return false;
    default:
      w.raw("(unsupported-kind");
      return false;
  }
}

/** What a formatter (`BpftoolDump`, `JsonlDump`) needs to know of the map. */
export interface DumpShape {
  /** Key bytes. */
  keySize: number;
  /** Value bytes (one CPU's). */
  valueSize: number;
  /** CPUs of per-CPU values, or 0 for a map with one value per key. */
  perCpu: number;
  /** BTF key type (undefined: none) and value type, or null without BTF. */
  btf: { keyType?: BtfType; valueType: BtfType } | null;
}

/** The output formats bpftool has. */
export type BpftoolFormat = "json" | "pretty" | "plain";

const KEY: Place = { source: "key", offset: 0, bitOffset: 0 };
const VALUE: Place = { source: "value", offset: 0, bitOffset: 0 };

/** `do_dump_btf`: the formatted entry, `{"key": ..., "value": ...}`. */
function emitFormatted(t: TemplateBuilder, shape: DumpShape, plain: boolean): void {
  const w = t.json!;
  const { keyType, valueType } = shape.btf!;
  w.startObject();
  let ok = true;
  if (keyType) {
    w.name("key");
    ok = emitType(t, keyType, plain, KEY);
  }
  if (ok && !shape.perCpu) {
    w.name("value");
    emitType(t, valueType, plain, VALUE);
  } else if (ok) {
    w.name("values");
    w.startArray();
    const stride = (shape.valueSize + 7) & ~7;
    for (let cpu = 0; cpu < shape.perCpu; cpu++) {
      w.startObject();
      w.name("cpu");
      w.raw(String(cpu));
      w.name("value");
      const fine = emitType(t, valueType, plain, at(VALUE, cpu * stride));
      w.endObject();
      if (!fine) break;
    }
    w.endArray();
  }
  w.endObject();
}

/** `print_hex_data_json` of `length` bytes at `place`: `["0x00",...]`. */
function emitHexArray(t: TemplateBuilder, place: Place, length: number): void {
  t.json!.startArray();
  if (length > 0) {
    t.value({ fn: hexList(length), max: length * 7, source: place.source, offset: place.offset });
  }
  t.json!.endArray();
}

/** `print_entry_json`: raw bytes, and what BTF formats of them. */
function emitJsonEntry(t: TemplateBuilder, shape: DumpShape): void {
  const w = t.json!;
  const { keySize, valueSize, perCpu } = shape;
  w.startObject();
  w.name("key");
  emitHexArray(t, KEY, keySize);
  if (!perCpu) {
    w.name("value");
    emitHexArray(t, VALUE, valueSize);
  } else {
    w.name("values");
    w.startArray();
    const stride = (valueSize + 7) & ~7;
    for (let cpu = 0; cpu < perCpu; cpu++) {
      w.startObject();
      w.name("cpu");
      w.raw(String(cpu));
      w.name("value");
      emitHexArray(t, at(VALUE, cpu * stride), valueSize);
      w.endObject();
    }
    w.endArray();
  }
  if (shape.btf) {
    w.name("formatted");
    emitFormatted(t, shape, false);
  }
  w.endObject();
}

/** `print_entry_plain` (no BTF): hex bytes under `key:` and `value:`. */
function emitPlainEntry(t: TemplateBuilder, shape: DumpShape): void {
  const { keySize, valueSize, perCpu } = shape;
  const hex = (place: Place, length: number) =>
    t.hole({ fn: plainHex(length), max: length * 3, ...place });
  if (!perCpu) {
    const breakNames = keySize > 16 || valueSize > 16;
    const singleLine = keySize + valueSize <= 24 && !breakNames;
    if (keySize) {
      t.text(`key:${breakNames ? "\n" : " "}`);
      hex(KEY, keySize);
      t.text(singleLine ? "  " : "\n");
    }
    if (valueSize) {
      t.text(`value:${breakNames ? "\n" : " "}`);
      hex(VALUE, valueSize);
    }
    t.text("\n");
    return;
  }
  if (keySize) {
    t.text("key:\n");
    hex(KEY, keySize);
    t.text("\n");
  }
  if (valueSize) {
    const stride = (valueSize + 7) & ~7;
    for (let cpu = 0; cpu < perCpu; cpu++) {
      t.text(`value (CPU ${String(cpu).padStart(2, "0")}):${valueSize > 16 ? "\n" : " "}`);
      hex(at(VALUE, cpu * stride), valueSize);
      t.text("\n");
    }
  }
}

/** Options of a `BpftoolDump`. */
export interface BpftoolDumpOptions {
  /**
   * The JSON writer the dump's array goes into, already where it belongs (in a dump of
   * several maps, after a map's header and `"elements":`); default: a new document.
   */
  json?: JsonWriter;
}

/**
 * `bpftool map dump` of one map as it walks: `begin()`, `entry()` per key in the walk's
 * order, `end()`. Entries go to `out` as bytes.
 *
 * @example
 * ```ts
 * import { BpftoolDump } from "./bpftool_dump.ts";
 * import { ByteWriter } from "./byte_writer.ts";
 * const out = new ByteWriter(Deno.stdout);
 * const dump = new BpftoolDump({ keySize: 4, valueSize: 4, perCpu: 0, btf: null }, "json", out);
 * dump.begin();
 * dump.entry(Uint8Array.of(1, 0, 0, 0), 0, Uint8Array.of(0xef, 0xbe, 0xad, 0xde), 0);
 * dump.end();
 * out.flush(); // [{"key":["0x01","0x00","0x00","0x00"],"value":["0xef","0xbe","0xad","0xde"]}]
 * ```
 */
export class BpftoolDump {
  readonly #shape: DumpShape;
  readonly #format: BpftoolFormat;
  readonly #out: ByteWriter;
  readonly #w: JsonWriter;
  readonly #ownsDocument: boolean;
  #first?: Template;
  #rest?: Template;
  #count = 0;

  /** A dump of a map of `shape` in `format` to `out`. */
  constructor(
    shape: DumpShape,
    format: BpftoolFormat,
    out: ByteWriter,
    options: BpftoolDumpOptions = {},
  ) {
    this.#shape = shape;
    this.#format = format;
    this.#out = out;
    this.#ownsDocument = !options.json;
    this.#w = options.json ?? new JsonWriter({ pretty: format !== "json" });
  }

  /** Entries printed so far. */
  get count(): number {
    return this.#count;
  }

  /** Whether this dump prints JSON (bpftool prints plain text with BTF as pretty JSON). */
  get #json(): boolean {
    return this.#format !== "plain" || this.#shape.btf !== null;
  }

  /** The opening of the dump; compiles the entries' template. */
  begin(): void {
    if (this.#json) this.#w.startArray();
    const opening = encoder.encode(this.#w.take());
    this.#out.reserve(opening.length);
    this.#out.bytes(opening);
    if (!this.#json) {
      const t = new TemplateBuilder();
      emitPlainEntry(t, this.#shape);
      this.#first = this.#rest = t.finish();
      return;
    }
    // Compiled as an entry after another: the first one drops the separator.
    const json = this.#w.fork();
    json.raw("");
    const t = new TemplateBuilder(json);
    if (this.#format === "plain") emitFormatted(t, this.#shape, true);
    else emitJsonEntry(t, this.#shape);
    this.#rest = t.finish();
    this.#first = dropLeading(this.#rest, 1);
  }

  /** One entry: the key at `key[ko..]`, the value (every CPU's) at `value[vo..]`. */
  entry(key: Uint8Array, ko: number, value: Uint8Array, vo: number): void {
    render(this.#count++ === 0 ? this.#first! : this.#rest!, this.#out, key, ko, value, vo);
  }

  /** The close of the dump (and of the document, when the dump has its own). */
  end(): void {
    let closing: string;
    if (!this.#json) {
      closing = `Found ${this.#count} element${this.#count !== 1 ? "s" : ""}\n`;
    } else {
      const w = this.#w;
      if (this.#count > 0) w.raw(""); // the writer learns that the array holds elements
      w.endArray();
      closing = this.#ownsDocument ? w.end() : w.take();
    }
    const bytes = encoder.encode(closing);
    this.#out.reserve(bytes.length);
    this.#out.bytes(bytes);
  }
}

/**
 * One entry as `bpftool map lookup`, `peek` and `pop` print it (`print_key_value`): with
 * `json` (the run's writer, `-j`/`-p`), its raw bytes and what BTF formats of them; without,
 * the BTF-formatted entry as pretty JSON, or hex text when the map has no BTF. The value is
 * every CPU's for a per-CPU map.
 *
 * @example
 * ```ts
 * import { printEntry } from "./bpftool_dump.ts";
 * import { ByteWriter } from "./byte_writer.ts";
 * const out = new ByteWriter(Deno.stdout);
 * const shape = { keySize: 4, valueSize: 4, perCpu: 0, btf: null };
 * printEntry(shape, out, Uint8Array.of(1, 0, 0, 0), Uint8Array.of(7, 0, 0, 0));
 * out.flush(); // key: 01 00 00 00  value: 07 00 00 00
 * ```
 */
export function printEntry(
  shape: DumpShape,
  out: ByteWriter,
  key: Uint8Array,
  value: Uint8Array,
  json?: JsonWriter,
): void {
  // Plain text of a map with BTF: its own pretty writer, ended (a newline) after the entry.
  const pretty = !json && shape.btf ? new JsonWriter({ pretty: true }) : undefined;
  const t = new TemplateBuilder(json ?? pretty);
  if (json) emitJsonEntry(t, shape);
  else if (pretty) emitFormatted(t, shape, true);
  else emitPlainEntry(t, shape);
  render(t.finish(), out, key, 0, value, 0);
  if (pretty) out.text(pretty.end());
}
