/**
 * Typed JSON lines: one `{"key": ..., "value": ...}` object per entry (`"values"`, one per
 * CPU, for per-CPU maps), decoded through the map's BTF (`../btf/decode.ts`) and written as
 * bytes. 64-bit integers are strings, so that any JSON parser keeps them exact. Without BTF,
 * keys and values of 1, 2 and 4 bytes are unsigned integers (little-endian), of 8 bytes
 * strings of one, others hex strings (`"0x0a0b"`).
 *
 * @module
 */

import { compileDecoder } from "../btf/decode.ts";
import type { BtfValue } from "../btf/decode.ts";
import type { BtfType } from "../btf/types.ts";
import type { ByteWriter } from "./byte_writer.ts";

/** What a `JsonlDump` needs to know of the map. */
export interface JsonlShape {
  /** Key bytes. */
  keySize: number;
  /** Value bytes (one CPU's). */
  valueSize: number;
  /** CPUs of per-CPU values, or 0 for a map with one value per key. */
  perCpu: number;
  /** BTF key type (undefined: none) and value type, or null without BTF. */
  btf: { keyType?: BtfType; valueType: BtfType } | null;
}

/** Writes one key or value read from `bytes` at `offset`. */
type WriteFn = (w: ByteWriter, bytes: Uint8Array, offset: number) => void;

const encoder = new TextEncoder();
/** Object keys, quoted with their colon (`"name":`), by name. */
const QUOTED_KEYS = new Map<string, Uint8Array>();

function quotedKey(name: string): Uint8Array {
  let quoted = QUOTED_KEYS.get(name);
  if (!quoted) {
    quoted = encoder.encode(JSON.stringify(name) + ":");
    if (QUOTED_KEYS.size < 65_536) QUOTED_KEYS.set(name, quoted);
  }
  return quoted;
}

/** Whether `text` needs no escaping in JSON: printable ASCII without `"` and `\`. */
function plainText(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return false;
  }
  return true;
}

/** `JSON.stringify(value)` with BigInts as strings, into `w`. */
function writeValue(w: ByteWriter, value: BtfValue): void {
  switch (typeof value) {
    case "number":
      w.reserve(32);
      if (Number.isSafeInteger(value)) w.int(value);
      else w.ascii(JSON.stringify(value));
      return;
    case "bigint":
      w.reserve(24);
      w.byte(0x22);
      w.ascii(value.toString());
      w.byte(0x22);
      return;
    case "boolean":
      w.reserve(5);
      w.ascii(value ? "true" : "false");
      return;
    case "string":
      if (plainText(value)) {
        w.reserve(value.length + 2);
        w.byte(0x22);
        w.ascii(value);
        w.byte(0x22);
      } else {
        w.text(JSON.stringify(value));
      }
      return;
  }
  if (value instanceof Uint8Array) {
    w.text(JSON.stringify(value));
  } else if (Array.isArray(value)) {
    w.reserve(1);
    w.byte(0x5b);
    for (let i = 0; i < value.length; i++) {
      if (i > 0) {
        w.reserve(1);
        w.byte(0x2c);
      }
      writeValue(w, value[i]);
    }
    w.reserve(1);
    w.byte(0x5d);
  } else {
    w.reserve(1);
    w.byte(0x7b);
    let first = true;
    for (const name in value) {
      const key = quotedKey(name);
      w.reserve(key.length + 1);
      if (!first) w.byte(0x2c);
      first = false;
      w.bytes(key);
      writeValue(w, value[name]);
    }
    w.reserve(1);
    w.byte(0x7d);
  }
}

const HEX = encoder.encode(
  Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0")).join(""),
);

/** A key or value without BTF (see the module documentation). */
function rawWriter(size: number): WriteFn {
  switch (size) {
    case 1:
    case 2:
    case 4:
      return (w, b, o) => {
        let x = 0;
        for (let i = size - 1; i >= 0; i--) x = x * 256 + b[o + i];
        w.reserve(10);
        w.uint(x);
      };
    case 8:
      return (w, b, o) => {
        w.reserve(22);
        w.byte(0x22);
        w.int64(b, o, false);
        w.byte(0x22);
      };
  }
  return (w, b, o) => {
    w.reserve(size * 2 + 4);
    w.ascii('"0x');
    for (let i = 0; i < size; i++) {
      const h = b[o + i] * 2;
      w.byte(HEX[h]);
      w.byte(HEX[h + 1]);
    }
    w.byte(0x22);
  };
}

/** A key or value through its BTF type's decoder. */
function typedWriter(type: BtfType): WriteFn {
  const decode = compileDecoder(type);
  let buffer: ArrayBufferLike | undefined;
  let view: DataView = new DataView(new ArrayBuffer(0));
  return (w, b, o) => {
    if (b.buffer !== buffer) {
      buffer = b.buffer;
      view = new DataView(b.buffer);
    }
    writeValue(w, decode(view, b.byteOffset + o));
  };
}

const KEY = encoder.encode('{"key":');
const VALUE = encoder.encode(',"value":');
const VALUES = encoder.encode(',"values":[');
const END = encoder.encode("}\n");
const END_VALUES = encoder.encode("]}\n");

/**
 * Typed JSON lines of a map's entries, in the order they are handed in.
 *
 * @example
 * ```ts
 * import { ByteWriter, JsonlDump } from "../../mod.ts";
 * const out = new ByteWriter(Deno.stdout);
 * const dump = new JsonlDump({ keySize: 4, valueSize: 4, perCpu: 0, btf: null }, out);
 * dump.entry(Uint8Array.of(1, 0, 0, 0), 0, Uint8Array.of(0xef, 0xbe, 0xad, 0xde), 0);
 * out.flush(); // {"key":1,"value":3735928559}
 * ```
 */
export class JsonlDump {
  readonly #out: ByteWriter;
  readonly #key: WriteFn;
  readonly #value: WriteFn;
  readonly #perCpu: number;
  readonly #stride: number;

  /** Lines for a map of `shape`, to `out`. */
  constructor(shape: JsonlShape, out: ByteWriter) {
    this.#out = out;
    const { btf } = shape;
    this.#key = btf?.keyType ? typedWriter(btf.keyType) : rawWriter(shape.keySize);
    this.#value = btf ? typedWriter(btf.valueType) : rawWriter(shape.valueSize);
    this.#perCpu = shape.perCpu;
    this.#stride = (shape.valueSize + 7) & ~7;
  }

  /** One entry: the key at `key[ko..]`, the value (every CPU's) at `value[vo..]`. */
  entry(key: Uint8Array, ko: number, value: Uint8Array, vo: number): void {
    const w = this.#out;
    w.reserve(KEY.length);
    w.bytes(KEY);
    this.#key(w, key, ko);
    if (!this.#perCpu) {
      w.reserve(VALUE.length);
      w.bytes(VALUE);
      this.#value(w, value, vo);
      w.reserve(END.length);
      w.bytes(END);
      return;
    }
    w.reserve(VALUES.length);
    w.bytes(VALUES);
    for (let cpu = 0; cpu < this.#perCpu; cpu++) {
      if (cpu > 0) {
        w.reserve(1);
        w.byte(0x2c);
      }
      this.#value(w, value, vo + cpu * this.#stride);
    }
    w.reserve(END_VALUES.length);
    w.bytes(END_VALUES);
  }
}
