/**
 * Typed JSON lines: one `{"key": ..., "value": ...}` object per entry (`"values"`, one per
 * CPU, for per-CPU maps), decoded through the map's BTF (`../btf/decode.ts`) and written as
 * bytes. 64-bit integers are strings, so that any JSON parser keeps them exact. Without BTF,
 * keys and values of 1, 2 and 4 bytes are unsigned integers (little-endian), of 8 bytes
 * strings of one, others hex strings (`"0x0a0b"`).
 *
 * @module
 */

import { aliasOf, slotAccess, slotsOf } from "../btf/_plan.ts";
import { type BtfValue, compileDecoder } from "../btf/decode.ts";
import { sizeof } from "../btf/size.ts";
import type { BtfType } from "../btf/types.ts";
import type { DumpShape } from "./bpftool_dump.ts";
import type { ByteWriter } from "./byte_writer.ts";
import { readSmall } from "./_bytes.ts";
import { type HoleFn, render, type Source, type Template, TemplateBuilder } from "./_template.ts";

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

/** A key or value without BTF (see the module documentation), and the most bytes it takes. */
function rawHole(size: number): { fn: HoleFn; max: number } {
  switch (size) {
    case 1:
    case 2:
    case 4:
      return { max: 10, fn: (w, b, o) => w.uint(readSmall(b, o, size, false)) };
    case 8:
      return {
        max: 22,
        fn: (w, b, o) => {
          w.byte(0x22);
          w.int64(b, o, false);
          w.byte(0x22);
        },
      };
  }
  return {
    max: size * 2 + 4,
    fn: (w, b, o) => {
      w.ascii('"0x');
      for (let i = 0; i < size; i++) {
        const h = b[o + i] * 2;
        w.byte(HEX[h]);
        w.byte(HEX[h + 1]);
      }
      w.byte(0x22);
    },
  };
}

/** The decoder's value of `type` at `b[o..]`, through `JSON.stringify`'s rules (`writeValue`). */
function decodedHole(type: BtfType): HoleFn {
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

/**
 * A leaf the decoder gives as a number, a BigInt or an enumerator's name, written from the
 * bytes without making the value: whole integers of 1, 2, 4 and 8 bytes and enums of up to
 * 4 bytes. `undefined` for other types.
 */
function leafHole(type: BtfType): { fn: HoleFn; max: number } | undefined {
  if (type.kind === "int" && type.offset === 0 && type.bits === type.size * 8) {
    const signed = type.encoding === "signed";
    switch (type.encoding === "bool" ? 0 : type.size) {
      case 1:
      case 2:
      case 4:
        return { max: 11, fn: (w, b, o) => w.int(readSmall(b, o, type.size, signed)) };
      case 8:
        return {
          max: 22,
          fn: (w, b, o) => {
            w.byte(0x22);
            w.int64(b, o, signed);
            w.byte(0x22);
          },
        };
    }
  }
  if (type.kind === "enum" && type.size <= 4 && [1, 2, 4].includes(type.size)) {
    const names = new Map<number, Uint8Array>();
    for (const e of type.values) {
      if (!names.has(Number(e.value))) {
        names.set(Number(e.value), encoder.encode(JSON.stringify(e.name)));
      }
    }
    let max = 11;
    for (const name of names.values()) max = Math.max(max, name.length);
    return {
      max,
      fn: (w, b, o) => {
        const x = readSmall(b, o, type.size, type.signed);
        const name = names.get(x);
        if (name) w.bytes(name);
        else w.int(x);
      },
    };
  }
  return undefined;
}

/** Arrays up to this many elements are unrolled into the template; longer ones are one hole. */
const MAX_UNROLLED = 256;
/** The most holes one line's template gets by unrolling; past it, values are one hole each. */
const MAX_HOLES = 4096;

/**
 * The JSON of `type`'s decoded value at `offset` of `source`, compiled into `t`: structs
 * (without bitfields) and arrays as text around their members' holes, leaves as holes that
 * write from the bytes (`leafHole`), anything else (or past the `budget` of holes) as one
 * hole through the decoder. The same text as `JSON.stringify` of the decoder's value, with
 * BigInts as strings.
 */
function emitTyped(
  t: TemplateBuilder,
  type: BtfType,
  source: Source,
  offset: number,
  budget: { holes: number },
): void {
  let u = type;
  for (let alias = aliasOf(u); alias; alias = aliasOf(u)) u = alias;
  const leaf = leafHole(u);
  budget.holes--;
  if (leaf) return t.hole({ ...leaf, source, offset });
  if (u.kind === "struct" || u.kind === "union" || u.kind === "datasec") {
    const slots = slotsOf(u);
    const whole = slots.every((s) =>
      slotAccess(s).kind === "whole" && !/^(0|[1-9][0-9]*)$/.test(s.name)
    );
    if (whole) {
      t.text("{");
      slots.forEach((s, i) => {
        t.text(`${i ? "," : ""}${JSON.stringify(s.name)}:`);
        emitTyped(t, s.type, source, offset + s.byteOffset, budget);
      });
      t.text("}");
      return;
    }
  } else if (u.kind === "array" && u.nelems <= MAX_UNROLLED && u.nelems <= budget.holes) {
    const stride = sizeof(u.element);
    t.text("[");
    for (let i = 0; i < u.nelems; i++) {
      if (i) t.text(",");
      emitTyped(t, u.element, source, offset + i * stride, budget);
    }
    t.text("]");
    return;
  }
  t.hole({ fn: decodedHole(u), max: Infinity, source, offset });
}

/**
 * Typed JSON lines of a map's entries, in the order they are handed in. One entry's line is
 * compiled once into a template, so typed values are written from their bytes.
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
  readonly #line: Template;

  /** Lines for a map of `shape`, to `out`. */
  constructor(shape: DumpShape, out: ByteWriter) {
    this.#out = out;
    const { btf } = shape;
    const t = new TemplateBuilder();
    // The decoders refuse what cannot be decoded, or would cost too much per value.
    if (btf?.keyType) compileDecoder(btf.keyType);
    if (btf) compileDecoder(btf.valueType);
    const budget = { holes: MAX_HOLES };
    const part = (type: BtfType | undefined, size: number, source: Source, offset: number) => {
      if (type) emitTyped(t, type, source, offset, budget);
      else t.hole({ ...rawHole(size), source, offset });
    };
    t.text('{"key":');
    part(btf?.keyType, shape.keySize, "key", 0);
    if (!shape.perCpu) {
      t.text(',"value":');
      part(btf?.valueType, shape.valueSize, "value", 0);
    } else {
      t.text(',"values":[');
      const stride = (shape.valueSize + 7) & ~7;
      for (let cpu = 0; cpu < shape.perCpu; cpu++) {
        if (cpu) t.text(",");
        part(btf?.valueType, shape.valueSize, "value", cpu * stride);
      }
      t.text("]");
    }
    t.text("}\n");
    this.#line = t.finish();
  }

  /** One entry: the key at `key[ko..]`, the value (every CPU's) at `value[vo..]`. */
  entry(key: Uint8Array, ko: number, value: Uint8Array, vo: number): void {
    render(this.#line, this.#out, key, ko, value, vo);
  }
}
