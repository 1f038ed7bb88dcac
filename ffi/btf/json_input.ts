/**
 * Keys and values given as JSON, in the shapes this toolkit and bpftool print them, turned
 * into bytes: through a map's BTF when it has one (the `"formatted"` part of `bpftool -j`,
 * or a line of `dump --jsonl`), as bytes or an integer when it has none. So a line of output
 * can be fed back as input.
 *
 * With BTF, what the encoder (`encode.ts`) takes, plus the spellings of the printers:
 * integers as decimal strings (`--jsonl` prints 64-bit ones so) or as hex strings (bpftool
 * prints bitfields and 128-bit integers so; a signed one is read as the two's complement of
 * its bits), a `char` as a one-character string, a `char` array as a string, and the
 * members of an anonymous struct or union either beside the others or under the name `""`,
 * as bpftool prints them. Without BTF: an array of bytes (numbers or `"0x1f"` strings), an
 * integer of the size (little-endian; a number or a decimal string), or the `"0x0a0b"` hex
 * string of the bytes in order, as `--jsonl` prints sizes other than 1, 2, 4 and 8.
 *
 * @module
 */

import { BpfArgumentError } from "../sys/errors.ts";
import type { BtfValue } from "./decode.ts";
import { BtfValueError, compileEncoder } from "./encode.ts";
import { enumShape } from "./_plan.ts";
import { isCharArray } from "./codec.ts";
import { sizeof } from "./size.ts";
import { type BtfType, type Member, underlying } from "./types.ts";

/**
 * `JSON.parse` that keeps integers beyond 2^53 exact, as `bigint`s (JSON has no limit, and
 * bpftool prints 64-bit values as plain numbers). Throws a `BpfArgumentError` naming the
 * text for text that is not JSON.
 *
 * @example
 * ```ts
 * import { parseJsonExact } from "./json_input.ts";
 * console.log(parseJsonExact('{"big":18446744073709551615}')); // { big: 18446744073709551615n }
 * ```
 */
export function parseJsonExact(text: string): unknown {
  try {
    return JSON.parse(text, (_key, value, context?: { source?: string }) => {
      if (
        typeof value === "number" && !Number.isSafeInteger(value) && context?.source &&
        /^-?\d+$/.test(context.source)
      ) {
        return BigInt(context.source);
      }
      return value;
    });
  } catch (e) {
    throw new BpfArgumentError(
      `${JSON.stringify(text.slice(0, 40))} is not JSON: ${(e as Error).message}`,
    );
  }
}

/** Whether `word` may be JSON text of a key or value rather than bytes: it opens one. */
export function looksLikeJson(word: string): boolean {
  return /^\s*[[{"]/.test(word);
}

/** An integer given as a number, a `bigint`, or a decimal or `0x` string; else `undefined`. */
function integerOf(value: unknown): bigint | undefined {
  if (typeof value === "bigint") return value;
  if (typeof value === "number" && Number.isInteger(value)) return BigInt(value);
  if (typeof value === "string") {
    if (/^-?\d+$/.test(value)) return BigInt(value);
    if (/^0x[0-9a-f]+$/i.test(value)) return BigInt(value);
  }
  return undefined;
}

/** Int storage of a place: its bits and sign (a bitfield member's bits when it has them). */
function intBits(type: BtfType, bitfield: number): { bits: number; signed: boolean } {
  const t = underlying(type);
  if (t.kind === "int") return { bits: bitfield || t.bits, signed: t.encoding === "signed" };
  if (t.kind === "enum" || t.kind === "enum64") {
    return { bits: bitfield || t.size * 8, signed: enumShape(t).signed };
  }
  return { bits: bitfield || sizeof(t) * 8, signed: false };
}

/**
 * The encoder's value for `json` given for `type`: the printers' spellings (see the module
 * documentation) turned into what `compileEncoder` takes. Unknown shapes are left as they
 * are, for the encoder to refuse with the path to them.
 */
export function fromPrinted(type: BtfType, json: unknown, bitfield = 0): BtfValue {
  const t = underlying(type);
  switch (t.kind) {
    case "int":
    case "enum":
    case "enum64":
    case "ptr": {
      if (typeof json === "string") {
        if (t.kind === "int" && t.size === 1 && json.length === 1 && !/\d/.test(json)) {
          return json.charCodeAt(0);
        }
        const n = integerOf(json);
        if (n === undefined) return json; // an enumerator's name, or wrong
        const { bits, signed } = intBits(t, bitfield);
        const hex = json.toLowerCase().startsWith("0x");
        const read = hex && signed ? BigInt.asIntN(bits, n) : n;
        return bits <= 48 ? Number(read) : read;
      }
      // bpftool reads enums as signed integers of their size: an unsigned one's high values
      // come out negative.
      if (
        t.kind !== "int" && t.kind !== "ptr" &&
        (typeof json === "number" || typeof json === "bigint")
      ) {
        const { bits, signed } = intBits(t, bitfield);
        if (!signed && json < 0 && BigInt(json) >= -(1n << BigInt(bits - 1))) {
          const unsigned = BigInt.asUintN(bits, BigInt(json));
          return bits <= 48 ? Number(unsigned) : unsigned;
        }
      }
      return json as BtfValue;
    }
    case "array": {
      if (typeof json === "string" && isCharArray(t)) {
        const bytes = new TextEncoder().encode(json);
        const chars = new Array<number>(t.nelems).fill(0);
        if (bytes.length > t.nelems) return json; // the encoder says it does not fit
        bytes.forEach((b, i) => chars[i] = b);
        return chars;
      }
      if (!Array.isArray(json)) return json as BtfValue;
      return json.map((element) => fromPrinted(t.element, element));
    }
    case "struct":
    case "union": {
      if (typeof json !== "object" || json === null || Array.isArray(json)) {
        return json as BtfValue;
      }
      const given = json as Record<string, unknown>;
      const out: Record<string, BtfValue> = {};
      const named = fillMembers(t.members, given, out);
      // Names of no member go on as they are, for the encoder to name.
      for (const name of Object.keys(given)) {
        if (name !== "" && !named.has(name)) out[name] = given[name] as BtfValue;
      }
      return out;
    }
    default:
      return json as BtfValue;
  }
}

/**
 * Copies `given`'s members into `out`, typed; anonymous members' own members flattened.
 * Returns the names it took.
 */
function fillMembers(
  members: readonly Member[],
  given: Record<string, unknown>,
  out: Record<string, BtfValue>,
): Set<string> {
  const named = new Set<string>();
  for (const member of members) {
    if (member.name === "") {
      const inner = underlying(member.type);
      if (inner.kind !== "struct" && inner.kind !== "union") continue;
      const nested = given[""];
      const source = typeof nested === "object" && nested !== null && !Array.isArray(nested)
        ? { ...given, ...nested as Record<string, unknown> }
        : given;
      for (const name of fillMembers(inner.members, source, out)) named.add(name);
      continue;
    }
    named.add(member.name);
    if (member.name in given) {
      out[member.name] = fromPrinted(member.type, given[member.name], member.bitfieldSize);
    }
  }
  return named;
}

/**
 * Encodes `json` (a parsed JSON value, see `parseJsonExact`) as a `type` into `into` (its
 * size). Throws a `BtfValueError` whose `path` names the member that does not fit.
 *
 * @example
 * ```ts
 * import { encodeJson, kernelBtf } from "./mod.ts";
 * const lock = kernelBtf().find("struct", "bpf_spin_lock")!;
 * const bytes = new Uint8Array(4);
 * encodeJson(lock, { val: "7" }, bytes);
 * console.log(bytes); // Uint8Array(4) [ 7, 0, 0, 0 ]
 * ```
 */
export function encodeJson(type: BtfType, json: unknown, into: Uint8Array): void {
  const encode = compileEncoder(type);
  encode(fromPrinted(type, json), new DataView(into.buffer, into.byteOffset, into.length), 0);
}

/**
 * Encodes `json` for a key or value of `into.length` bytes without BTF: an array of bytes,
 * an integer (little-endian), or the `"0x…"` string of the bytes in order. Throws a
 * `BtfValueError` (path "") saying what was expected.
 */
export function encodeRawJson(json: unknown, into: Uint8Array): void {
  const size = into.length;
  const refuse = (detail: string): never => {
    throw new BtfValueError("", detail, `${size} bytes`);
  };
  if (Array.isArray(json)) {
    if (json.length !== size) refuse(`expected ${size} bytes, got an array of ${json.length}`);
    json.forEach((element, i) => {
      const byte = integerOf(element);
      if (byte === undefined || byte < 0n || byte > 255n) {
        throw new BtfValueError(`[${i}]`, `${JSON.stringify(element)} is not a byte`, "byte");
      }
      into[i] = Number(byte);
    });
    return;
  }
  if (
    typeof json === "string" && /^0x([0-9a-f]{2})*$/i.test(json) && json.length === 2 + 2 * size
  ) {
    for (let i = 0; i < size; i++) into[i] = parseInt(json.slice(2 + 2 * i, 4 + 2 * i), 16);
    return;
  }
  const n = integerOf(json);
  if (n === undefined || (typeof json === "string" && json.startsWith("0x"))) {
    return refuse(
      `expected an integer, an array of ${size} bytes or a hex string of them, got ${
        JSON.stringify(json) ?? String(json)
      }`,
    );
  }
  const bits = BigInt(size * 8);
  if (n < -(1n << (bits - 1n)) || n >= 1n << bits) {
    refuse(`${n} does not fit ${size} bytes`);
  }
  let rest = BigInt.asUintN(size * 8, n);
  for (let i = 0; i < size; i++) {
    into[i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
}
