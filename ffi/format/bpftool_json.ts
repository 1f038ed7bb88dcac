/**
 * `bpftool map dump` output, byte for byte (bpftool 7.1): its BTF dumper (`btf_dumper.c`)
 * with its quirks and its plain text (`print_entry_plain`), over the port of its JSON writer
 * (`../json_writer.ts`). Pure: the caller hands over bytes and a sink.
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

import type { BtfType, Member } from "../btf/types.ts";
import { sizeof } from "../btf/size.ts";
import { isCharArray } from "../btf/codec.ts";
import { BPFTOOL_ESCAPES, JsonWriter } from "../json_writer.ts";

/** Where formatted text goes. */
export interface TextSink {
  /** Appends text. */
  write(text: string): void;
}

const HEX2 = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
const HEX_QUOTED = HEX2.map((h) => `"0x${h}"`);

/**
 * `jsonw_puts` as bpftool 7.1 has it, checked against bpftool in `tests/dump_test.ts`: a
 * backslash comes out as `\n`, a single quote raw. (`JsonWriter.string` writes `\'` for a
 * single quote, which bpftool 7.1 does not: strings of values go through this instead.)
 */
function bpftoolString(text: string): string {
  return `"${text.replace(/[\t\n\r\f\b\\"]/g, (c) => BPFTOOL_ESCAPES[c])}"`;
}

/** The elements of `print_hex_data_json`'s array: `"0x00","0x01"`. */
function hexList(bytes: Uint8Array, offset: number, length: number): string {
  if (length === 0) return "";
  let text = HEX_QUOTED[bytes[offset]];
  for (let i = 1; i < length; i++) text += "," + HEX_QUOTED[bytes[offset + i]];
  return text;
}

/** `print_hex_data_json`: `["0x00",...]`, the elements in one `jsonw_printf` (same bytes). */
function hexArray(w: JsonWriter, bytes: Uint8Array, offset: number, length: number): void {
  w.startArray();
  if (length > 0) w.raw(hexList(bytes, offset, length));
  w.endArray();
}

/** Prints one value of a type at a byte offset; returns false where bpftool's dumper fails. */
export type FormatFn = (w: JsonWriter, bytes: Uint8Array, offset: number) => boolean;

function readBits(bytes: Uint8Array, offset: number, bitOffset: number, bits: number): bigint {
  const n = Math.min(16, Math.ceil((bitOffset + bits) / 8));
  let x = 0n;
  for (let i = n - 1; i >= 0; i--) x = (x << 8n) | BigInt(bytes[offset + i] ?? 0);
  return (x >> BigInt(bitOffset)) & ((1n << BigInt(bits)) - 1n);
}

function hexNumber(x: bigint, plain: boolean): string {
  return plain ? `0x${x.toString(16)}` : `"0x${x.toString(16)}"`;
}

function readInt(bytes: Uint8Array, offset: number, size: number, signed: boolean): bigint {
  let x = 0n;
  for (let i = size - 1; i >= 0; i--) x = (x << 8n) | BigInt(bytes[offset + i]);
  return signed ? BigInt.asIntN(size * 8, x) : x;
}

/** `btf_dumper_bitfield` at a fixed place. */
function bitfield(bitOffset: number, bits: number, plain: boolean): FormatFn {
  const skip = bitOffset >> 3;
  const within = bitOffset & 7;
  return (w, b, o) => {
    w.raw(hexNumber(readBits(b, o + skip, within, bits), plain));
    return true;
  };
}

function isPrint(c: number): boolean {
  return c >= 0x20 && c < 0x7f;
}

/**
 * Compiles `btf_dumper_do_type` for `type` at `bitOffset` (0-7): a function printing a
 * value as bpftool does, in JSON or (`plain`) its plain-text variant.
 */
export function compileBpftoolFormatter(type: BtfType, plain: boolean, bitOffset = 0): FormatFn {
  switch (type.kind) {
    case "typedef":
    case "const":
    case "volatile":
    case "restrict": {
      let t: BtfType = type;
      while (
        t.kind === "typedef" || t.kind === "const" || t.kind === "volatile" ||
        t.kind === "restrict" || t.kind === "type_tag"
      ) t = t.target;
      return compileBpftoolFormatter(t, plain, bitOffset);
    }
    case "var": {
      const inner = compileBpftoolFormatter(type.type, plain, bitOffset);
      const name = type.name;
      return (w, b, o) => {
        w.startObject();
        w.name(name);
        const ok = inner(w, b, o);
        w.endObject();
        return ok;
      };
    }
    case "int": {
      if (bitOffset || type.offset || type.bits % 8) {
        return bitfield(bitOffset + type.offset, type.bits, plain);
      }
      if (type.bits === 128) return bitfield(0, 128, plain);
      const bytes = type.bits / 8;
      if (type.encoding === "char") {
        return (w, b, o) => {
          const c = b[o];
          w.raw(
            isPrint(c)
              ? `"${String.fromCharCode(c)}"`
              : plain
              ? `0x${c.toString(16)}`
              : `"\\u00${HEX2[c]}"`,
          );
          return true;
        };
      }
      if (type.encoding === "bool") {
        return (w, b, o) => {
          w.raw(b[o] ? "true" : "false");
          return true;
        };
      }
      if (![1, 2, 4, 8].includes(bytes)) return bitfield(0, type.bits, plain);
      const signed = type.encoding === "signed";
      if (bytes === 8) {
        return (w, b, o) => {
          w.raw(readInt(b, o, 8, signed).toString());
          return true;
        };
      }
      const shift = 32 - bytes * 8;
      return (w, b, o) => {
        let x = 0;
        for (let i = bytes - 1; i >= 0; i--) x = x * 256 + b[o + i];
        if (signed) x = (x << shift) >> shift;
        w.raw(String(x));
        return true;
      };
    }
    case "ptr":
      return (w, b, o) => {
        const x = readInt(b, o, 8, false);
        w.raw(plain ? (x === 0n ? "(nil)" : `0x${x.toString(16)}`) : x.toString());
        return true;
      };
    case "enum": {
      const size = type.size;
      const values = type.values.map((v) => ({ name: v.name, value: BigInt(v.value | 0) }));
      if (![1, 2, 4, 8].includes(size)) return () => false;
      return (w, b, o) => {
        const x = readInt(b, o, size, true);
        const match = values.find((v) => v.value === x);
        if (match) w.raw(bpftoolString(match.name));
        else w.raw(x.toString());
        return true;
      };
    }
    case "enum64": {
      const values = type.values.map((v) => ({ name: v.name, value: BigInt.asUintN(64, v.value) }));
      return (w, b, o) => {
        const x = readInt(b, o, 8, false);
        const match = values.find((v) => v.value === x);
        if (match) w.raw(bpftoolString(match.name));
        else w.raw(BigInt.asIntN(64, x).toString());
        return true;
      };
    }
    case "array": {
      const n = type.nelems;
      const str = isCharArray(type) && n > 0;
      const size = n > 0 ? sizeof(type.element) : 0;
      const element = compileBpftoolFormatter(type.element, plain);
      return (w, b, o) => {
        if (str) {
          for (let i = 0; i < n; i++) {
            const c = b[o + i];
            if (c === 0) {
              w.raw(bpftoolString(String.fromCharCode(...b.subarray(o, o + i))));
              return true;
            }
            if (!isPrint(c)) break;
          }
        }
        w.startArray();
        let ok = true;
        for (let i = 0; i < n && ok; i++) ok = element(w, b, o + i * size);
        w.endArray();
        return ok;
      };
    }
    case "struct":
    case "union": {
      const members = type.members.map((m: Member) => {
        const skip = m.bitOffset >> 3;
        const fn = m.bitfieldSize
          ? bitfield(m.bitOffset & 7, m.bitfieldSize, plain)
          : compileBpftoolFormatter(m.type, plain, m.bitOffset & 7);
        return { name: m.name, skip, fn };
      });
      return (w, b, o) => {
        w.startObject();
        let ok = true;
        for (const m of members) {
          w.name(m.name);
          if (!m.fn(w, b, o + m.skip)) {
            ok = false;
            break;
          }
        }
        w.endObject();
        return ok;
      };
    }
    case "datasec": {
      const vars = type.vars.map((v) => ({
        offset: v.offset,
        fn: compileBpftoolFormatter(v.type, plain),
      }));
      const name = type.name;
      return (w, b, o) => {
        w.startObject();
        w.name(name);
        w.startArray();
        let ok = true;
        for (const v of vars) {
          if (!v.fn(w, b, o + v.offset)) {
            ok = false;
            break;
          }
        }
        w.endArray();
        w.endObject();
        return ok;
      };
    }
    case "void":
      return (w) => {
        w.raw("(unknown)");
        return true;
      };
    case "fwd":
      return (w) => {
        w.raw("(fwd-kind-invalid)");
        return false;
      };
    default:
      return (w) => {
        w.raw("(unsupported-kind");
        return false;
      };
  }
}

/** What the formatter needs to know of the map. */
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

/** `fprint_hex` of bytes, separated by spaces, a double space every 8, a newline every 16. */
function plainHex(bytes: Uint8Array, offset: number, length: number): string {
  let text = "";
  for (let i = 0; i < length; i++) {
    const pfx = i === 0 ? "" : i % 16 === 0 ? "\n" : i % 8 === 0 ? "  " : " ";
    text += pfx + HEX2[bytes[offset + i]];
  }
  return text;
}

/**
 * `bpftool map dump` of one map as it walks: `begin()`, `entry()` per key in the walk's
 * order, `end()`.
 *
 * @example
 * ```ts
 * import { BpftoolDump } from "./bpftool_json.ts";
 * let text = "";
 * const dump = new BpftoolDump(
 *   { keySize: 4, valueSize: 4, perCpu: 0, btf: null },
 *   "json",
 *   { write: (s) => (text += s) },
 * );
 * dump.begin();
 * dump.entry(Uint8Array.of(1, 0, 0, 0), 0, Uint8Array.of(0xef, 0xbe, 0xad, 0xde), 0);
 * dump.end();
 * console.log(text); // [{"key":["0x01","0x00","0x00","0x00"],"value":["0xef","0xbe","0xad","0xde"]}]
 * ```
 */
export class BpftoolDump {
  #shape: DumpShape;
  #format: BpftoolFormat;
  #out: TextSink;
  #w: JsonWriter;
  #key?: FormatFn;
  #value?: FormatFn;
  #count = 0;
  #stride: number;

  /** A dump of a map of `shape` in `format` to `out`. */
  constructor(shape: DumpShape, format: BpftoolFormat, out: TextSink) {
    this.#shape = shape;
    this.#format = format;
    this.#out = out;
    this.#w = new JsonWriter({ pretty: format !== "json" });
    this.#stride = (shape.valueSize + 7) & ~7;
    if (shape.btf) {
      const plain = format === "plain";
      if (shape.btf.keyType) this.#key = compileBpftoolFormatter(shape.btf.keyType, plain);
      this.#value = compileBpftoolFormatter(shape.btf.valueType, plain);
    }
  }

  /** Entries printed so far. */
  get count(): number {
    return this.#count;
  }

  /** The opening of the dump. */
  begin(): void {
    if (this.#format !== "plain" || this.#value) this.#w.startArray();
    this.#out.write(this.#w.take());
  }

  /** `do_dump_btf`. */
  #formatted(w: JsonWriter, key: Uint8Array, ko: number, value: Uint8Array, vo: number): void {
    w.startObject();
    let ok = true;
    if (this.#key) {
      w.name("key");
      ok = this.#key(w, key, ko);
    }
    if (ok && !this.#shape.perCpu) {
      w.name("value");
      this.#value!(w, value, vo);
    } else if (ok) {
      w.name("values");
      w.startArray();
      for (let cpu = 0; cpu < this.#shape.perCpu; cpu++) {
        w.startObject();
        w.name("cpu");
        w.raw(String(cpu));
        w.name("value");
        const fine = this.#value!(w, value, vo + cpu * this.#stride);
        w.endObject();
        if (!fine) break;
      }
      w.endArray();
    }
    w.endObject();
  }

  /** One entry (gathered until `flush()`): the key at `key[ko..]`, the value (every CPU's) at `value[vo..]`. */
  entry(key: Uint8Array, ko: number, value: Uint8Array, vo: number): void {
    this.#count++;
    const { keySize, valueSize, perCpu } = this.#shape;
    if (this.#format === "plain") {
      // With BTF, one pretty JSON array of the formatted entries, and no count.
      if (this.#value) this.#formatted(this.#w, key, ko, value, vo);
      else this.#out.write(this.#plainEntry(key, ko, value, vo));
      return;
    }
    const w = this.#w;
    if (this.#format === "json" && !perCpu && !this.#value) {
      // The common case in one piece: the same bytes as the writer's calls below.
      w.raw(`{"key":[${hexList(key, ko, keySize)}],"value":[${hexList(value, vo, valueSize)}]}`);
      return;
    }
    w.startObject();
    w.name("key");
    hexArray(w, key, ko, keySize);
    if (!perCpu) {
      w.name("value");
      hexArray(w, value, vo, valueSize);
    } else {
      w.name("values");
      w.startArray();
      for (let cpu = 0; cpu < perCpu; cpu++) {
        w.startObject();
        w.name("cpu");
        w.raw(String(cpu));
        w.name("value");
        hexArray(w, value, vo + cpu * this.#stride, valueSize);
        w.endObject();
      }
      w.endArray();
    }
    if (this.#value) {
      w.name("formatted");
      this.#formatted(w, key, ko, value, vo);
    }
    w.endObject();
  }

  /** Hands what the entries so far wrote to the sink (`entry()` only gathers JSON). */
  flush(): void {
    const text = this.#w.take();
    if (text) this.#out.write(text);
  }

  #plainEntry(key: Uint8Array, ko: number, value: Uint8Array, vo: number): string {
    const { keySize, valueSize, perCpu } = this.#shape;
    let text = "";
    if (!perCpu) {
      const breakNames = keySize > 16 || valueSize > 16;
      const singleLine = keySize + valueSize <= 24 && !breakNames;
      if (keySize) {
        text += `key:${breakNames ? "\n" : " "}${plainHex(key, ko, keySize)}${
          singleLine ? "  " : "\n"
        }`;
      }
      if (valueSize) text += `value:${breakNames ? "\n" : " "}${plainHex(value, vo, valueSize)}`;
      return text + "\n";
    }
    if (keySize) text += `key:\n${plainHex(key, ko, keySize)}\n`;
    if (valueSize) {
      for (let cpu = 0; cpu < perCpu; cpu++) {
        text += `value (CPU ${String(cpu).padStart(2, "0")}):${valueSize > 16 ? "\n" : " "}${
          plainHex(value, vo + cpu * this.#stride, valueSize)
        }\n`;
      }
    }
    return text;
  }

  /** The close of the dump. */
  end(): void {
    if (this.#format === "plain" && !this.#value) {
      this.#out.write(`Found ${this.#count} element${this.#count !== 1 ? "s" : ""}\n`);
    } else {
      this.#w.endArray();
      this.flush();
      this.#out.write(this.#w.end());
    }
  }
}

/**
 * A buffered writer to a file (stdout): text gathered and written in chunks of about
 * `size` bytes, with `writeSync` (so `| head` surfaces as `Deno.errors.BrokenPipe`).
 */
export class BufferedOutput implements TextSink {
  #file: { writeSync(p: Uint8Array): number };
  #size: number;
  #text = "";
  #bytes: Uint8Array;
  #encoder = new TextEncoder();

  /** A writer to `file`, flushing every `size` bytes (default 64 KiB). */
  constructor(file: { writeSync(p: Uint8Array): number }, size = 1 << 16) {
    this.#file = file;
    this.#size = size;
    this.#bytes = new Uint8Array(size * 3 + 64);
  }

  /** Appends text; writes when the buffer is full. */
  write(text: string): void {
    this.#text += text;
    if (this.#text.length >= this.#size) this.flush();
  }

  /** Writes what is gathered. */
  flush(): void {
    while (this.#text.length) {
      const part = this.#text.slice(0, this.#size);
      this.#text = this.#text.slice(part.length);
      const { written } = this.#encoder.encodeInto(part, this.#bytes);
      let done = 0;
      while (done < written) done += this.#file.writeSync(this.#bytes.subarray(done, written));
    }
  }
}
