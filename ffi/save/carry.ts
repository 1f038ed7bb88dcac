/**
 * Carrying entries from one BTF type to another by member name, for a restore into a map
 * whose BTF is not the saved one (members added, removed, reordered, arrays grown or shrunk):
 * each entry is decoded with the saved type (`compileDecoder`), its members matched by name
 * to the target type's, and encoded with the target type (`compileEncoder`, which checks
 * each value fits).
 *
 * - A member the target adds is zero. A member the target lacks must be zero in every entry
 *   (else the restore stops, naming it), unless it is dropped.
 * - An array the target makes shorter must hold zeros past its new end; a longer one is
 *   padded with zeros.
 * - A value that no longer fits (a narrowed integer, an enumerator the target lacks) stops the
 *   restore, naming the member, unless it is dropped; a dropped member is zero in the target.
 * - Member paths read as in C, from `key` or `value`: `value.stats[2].bytes`; the members of
 *   anonymous structs and unions are their parent's (`value.lo`, as the decoders name them).
 *   In a drop path, `[*]` stands for every element: `value.flows[*].port`.
 *
 * The same carrier takes typed JSON (`dump --jsonl` lines, without a saved type): 64-bit
 * integers as decimal strings, enumerators by name.
 *
 * @module
 */

import { aliasOf, slotsOf } from "../btf/_plan.ts";
import { type BtfValue, compileDecoder } from "../btf/decode.ts";
import { typeName } from "../btf/name.ts";
import { sizeof } from "../btf/size.ts";
import type { BtfType, Datasec, Struct, Union } from "../btf/types.ts";

/**
 * The type a typedef, qualifier or variable stands for, through any number of them.
 *
 * @example
 * ```ts
 * import { kernelBtf } from "../btf/kernel.ts";
 * import { resolved } from "./carry.ts";
 * console.log(resolved(kernelBtf().find("typedef", "pid_t")!).kind); // "int"
 * ```
 */
export function resolved(type: BtfType): BtfType {
  let t = type;
  for (let alias = aliasOf(t); alias; alias = aliasOf(t)) t = alias;
  return t;
}

type Aggregate = Struct | Union | Datasec;

function isAggregate(type: BtfType): type is Aggregate {
  return type.kind === "struct" || type.kind === "union" || type.kind === "datasec";
}

const SIGNATURES = new WeakMap<BtfType, string>();

/**
 * A text that two types share exactly when their values lie in the same bytes under the same
 * member names: sizes, offsets, bitfields, integer encodings and member names, through
 * typedefs and qualifiers (type names and enumerator names aside: an entry's bytes mean the
 * same under both). Entries of types with equal signatures are copied byte for byte.
 *
 * @example
 * ```ts
 * import { layoutSignature } from "./carry.ts";
 * import { parseBtf } from "../btf/parse.ts";
 * import { BtfBuilder } from "../btf/builder.ts";
 * const b = new BtfBuilder();
 * const u32 = b.add({ kind: "int", name: "unsigned int", size: 4 });
 * const btf = parseBtf(b.build());
 * console.log(layoutSignature(btf.typeById(u32))); // "i4:unsigned:0:32"
 * ```
 */
export function layoutSignature(type: BtfType): string {
  const t = resolved(type);
  const known = SIGNATURES.get(t);
  if (known !== undefined) return known;
  let signature: string;
  switch (t.kind) {
    case "int":
      signature = `i${t.size}:${t.encoding}:${t.offset}:${t.bits}`;
      break;
    case "enum":
    case "enum64":
      signature = `e${t.size}:${t.signed ? "s" : "u"}`;
      break;
    case "ptr":
      signature = `p${t.size}`;
      break;
    case "float":
      signature = `f${t.size}`;
      break;
    case "array":
      signature = `[${t.nelems}]${layoutSignature(t.element)}`;
      break;
    case "struct":
    case "union":
      signature = `${t.kind[0]}${t.size}{${
        t.members.map((m) =>
          `${m.name}@${m.bitOffset}:${m.bitfieldSize}=${layoutSignature(m.type)}`
        ).join(",")
      }}`;
      break;
    case "datasec":
      signature = `d${t.size}{${
        t.vars.map((v) => `${v.type.name}@${v.offset}=${layoutSignature(v.type)}`).join(",")
      }}`;
      break;
    default:
      signature = `${t.kind}`;
  }
  SIGNATURES.set(t, signature);
  return signature;
}

const ZEROS = new WeakMap<BtfType, BtfValue>();

/**
 * The decoded value of all-zero bytes of `type`: what a member the target adds holds.
 *
 * @example
 * ```ts
 * import { kernelBtf } from "../btf/kernel.ts";
 * import { zeroOf } from "./carry.ts";
 * console.log(zeroOf(kernelBtf().find("struct", "bpf_spin_lock")!)); // { val: 0 }
 * ```
 */
export function zeroOf(type: BtfType): BtfValue {
  let zero = ZEROS.get(type);
  if (zero === undefined) {
    zero = compileDecoder(type)(new DataView(new ArrayBuffer(sizeof(type))), 0);
    ZEROS.set(type, zero);
  }
  return zero;
}

/** The members of an aggregate by name (anonymous members merged), or `undefined`. */
function slotTypes(type: BtfType | undefined): Map<string, BtfType> | undefined {
  const t = type && resolved(type);
  if (!t || !isAggregate(t)) return undefined;
  return new Map(slotsOf(t).map((s) => [s.name, s.type]));
}

/**
 * Whether a decoded (or JSON) value is all zero: numbers and BigInts 0, `false`, decimal or
 * hex strings of 0, an enumerator of value 0 when the type `from` tells it, arrays and
 * objects of zeros. An enumerator's name without its type is taken as non-zero.
 *
 * @example
 * ```ts
 * import { isZero } from "./carry.ts";
 * console.log(isZero({ a: 0, b: [0n, "0"] }), isZero({ a: 1 })); // true false
 * ```
 */
export function isZero(value: unknown, from?: BtfType): boolean {
  const t = from && resolved(from);
  switch (typeof value) {
    case "undefined":
      return true;
    case "number":
      return value === 0;
    case "bigint":
      return value === 0n;
    case "boolean":
      return !value;
    case "string": {
      if (t && (t.kind === "enum" || t.kind === "enum64")) {
        const e = (t.values as readonly { name: string; value: number | bigint }[])
          .find((v) => v.name === value);
        if (e) return BigInt(e.value) === 0n;
      }
      if (/^-?\d+$/.test(value)) return BigInt(value) === 0n;
      return /^0x0*$/i.test(value);
    }
  }
  if (value === null) return true;
  if (value instanceof Uint8Array) return value.every((b) => b === 0);
  if (Array.isArray(value)) {
    const element = t?.kind === "array" ? t.element : undefined;
    return value.every((v) => isZero(v, element));
  }
  if (typeof value === "object") {
    const members = slotTypes(t);
    return Object.entries(value as Record<string, unknown>).every(([name, v]) =>
      isZero(v, members?.get(name))
    );
  }
  return false;
}

function describe(value: unknown): string {
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "string") return JSON.stringify(value.slice(0, 64));
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (value === null) return "null";
  if (typeof value === "object") return "an object";
  return String(value);
}

/**
 * A value that cannot be carried: `at` is where (built on the way out, `.name` and `[i]`
 * steps), `drop` the path that `--drop` takes to carry the entry without it.
 *
 * @example
 * ```ts
 * import { CarryMisfit } from "./carry.ts";
 * const e = new CarryMisfit("the target has no member \"old\"", "value.old");
 * console.log(e.drop); // "value.old"
 * ```
 */
export class CarryMisfit extends Error {
  override name = "CarryMisfit";
  at = "";

  constructor(readonly detail: string, readonly drop: string) {
    super(detail);
  }
}

function within(e: unknown, step: string): unknown {
  if (e instanceof CarryMisfit) e.at = step + e.at;
  return e;
}

/**
 * Drop paths, as given, matched against member paths with `[*]` for any index.
 *
 * @example
 * ```ts
 * import { DropPaths } from "./carry.ts";
 * const drops = new DropPaths(["value.flows[*].port"]);
 * console.log(drops.covering("value.flows[3].port.hi")); // "value.flows[*].port"
 * ```
 */
export class DropPaths {
  /** Each drop path given, and how many values held data there that was not zero. */
  readonly dropped = new Map<string, number>();
  /** Drop paths that matched a member of the saved or target types. */
  readonly used = new Set<string>();
  readonly #patterns: { path: string; regex: RegExp }[];

  constructor(paths: readonly string[]) {
    this.#patterns = paths.map((path) => {
      const pattern = path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replaceAll(
        "\\[\\*\\]",
        "\\[(?:\\d+|\\*)\\]",
      );
      return { path, regex: new RegExp(`^${pattern}$`) };
    });
    for (const { path } of this.#patterns) this.dropped.set(path, 0);
  }

  /** The drop path that covers the member at `path` (it, or a member holding it), if any. */
  covering(path: string): string | undefined {
    for (let p = path; p;) {
      const hit = this.#patterns.find((d) => d.regex.test(p));
      if (hit) {
        this.used.add(hit.path);
        return hit.path;
      }
      const cut = Math.max(p.lastIndexOf("."), p.lastIndexOf("["));
      p = cut > 0 ? p.slice(0, cut) : "";
    }
    return undefined;
  }

  /** Whether a drop path names an element of the array at `path` by its index. */
  indexes(path: string): boolean {
    return this.#patterns.some((d) =>
      d.path.startsWith(`${path}[`) && !d.path.startsWith(`${path}[*]`)
    );
  }

  /** Counts one value (a key, or one CPU's value) whose data at a dropped path was not zero. */
  note(drop: string): void {
    this.dropped.set(drop, (this.dropped.get(drop) ?? 0) + 1);
  }
}

/** Carries one value of the saved type (or JSON) into a value the target's encoder takes (`compileCarry`). */
export type Carry = (value: unknown) => BtfValue;

/**
 * The carrier of values of type `from` (`undefined`: typed JSON) into type `to`, for the
 * member at `path` (`"key"` or `"value"` at the top).
 *
 * @example
 * ```ts
 * import { BtfBuilder } from "../btf/builder.ts";
 * import { parseBtf } from "../btf/parse.ts";
 * import { compileCarry, DropPaths } from "./carry.ts";
 * const b = new BtfBuilder();
 * const u32 = b.add({ kind: "int", name: "unsigned int", size: 4 });
 * const old = b.add({ kind: "struct", name: "v", size: 8, members: [{ name: "a", type: u32, bitOffset: 0 }, { name: "b", type: u32, bitOffset: 32 }] });
 * const now = b.add({ kind: "struct", name: "v", size: 8, members: [{ name: "b", type: u32, bitOffset: 0 }, { name: "c", type: u32, bitOffset: 32 }] });
 * const btf = parseBtf(b.build());
 * const carry = compileCarry(btf.typeById(old), btf.typeById(now), "value", new DropPaths([]));
 * console.log(carry({ a: 0, b: 7 })); // { b: 7, c: 0 }
 * ```
 */
export function compileCarry(
  from: BtfType | undefined,
  to: BtfType,
  path: string,
  drops: DropPaths,
): Carry {
  const drop = drops.covering(path);
  if (drop !== undefined) {
    const zero = zeroOf(to);
    return (value) => {
      if (!isZero(value, from)) drops.note(drop);
      return zero;
    };
  }
  const t = resolved(to);
  const f = from && resolved(from);
  if (isAggregate(t)) return aggregateCarry(f, t, path, drops);
  if (t.kind === "array") return arrayCarry(f, t, path, drops);
  if (t.kind === "float") return floatCarry(t.size, path);
  return leafCarry(f, t, path);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) &&
    !ArrayBuffer.isView(value);
}

function aggregateCarry(
  from: BtfType | undefined,
  to: Aggregate,
  path: string,
  drops: DropPaths,
): Carry {
  const fromTypes = slotTypes(from);
  const slots = slotsOf(to).map((slot) => ({
    name: slot.name,
    optional: slot.optional,
    zero: zeroOf(slot.type),
    carry: compileCarry(fromTypes?.get(slot.name), slot.type, `${path}.${slot.name}`, drops),
  }));
  const known = new Set(slots.map((s) => s.name));
  // Members the target lacks: their drop path, found once per name.
  const gone = new Map<string, string | undefined>();
  for (const name of fromTypes?.keys() ?? []) {
    if (!known.has(name)) gone.set(name, drops.covering(`${path}.${name}`));
  }
  const union = to.kind === "union";
  return (value) => {
    if (!isObject(value)) {
      throw new CarryMisfit(
        `expected the members of "${typeName(to)}", got ${describe(value)}`,
        path,
      );
    }
    const out: Record<string, BtfValue> = {};
    let given = 0;
    for (const slot of slots) {
      const member = value[slot.name];
      if (member === undefined) {
        // A member the target adds: zero (members of unions may be left out).
        if (!slot.optional) out[slot.name] = slot.zero;
        continue;
      }
      try {
        out[slot.name] = slot.carry(member);
      } catch (e) {
        throw within(e, `.${slot.name}`);
      }
      given++;
    }
    if (union && given === 0 && slots.length > 0) out[slots[0].name] = slots[0].zero;
    for (const name in value) {
      if (known.has(name)) continue;
      if (!gone.has(name)) gone.set(name, drops.covering(`${path}.${name}`));
      const drop = gone.get(name);
      if (isZero(value[name], fromTypes?.get(name))) continue;
      if (drop !== undefined) {
        drops.note(drop);
        continue;
      }
      const e = new CarryMisfit(
        `the target's "${typeName(to)}" has no member "${name}", which holds ${
          describe(value[name])
        } here`,
        `${path}.${name}`,
      );
      throw within(e, `.${name}`);
    }
    return out;
  };
}

function arrayCarry(
  from: BtfType | undefined,
  to: Extract<BtfType, { kind: "array" }>,
  path: string,
  drops: DropPaths,
): Carry {
  const n = to.nelems;
  const fromElement = from?.kind === "array" ? from.element : undefined;
  const zero = zeroOf(to.element);
  const carries: Carry[] = drops.indexes(path)
    ? Array.from(
      { length: n },
      (_, i) => compileCarry(fromElement, to.element, `${path}[${i}]`, drops),
    )
    : new Array(n).fill(compileCarry(fromElement, to.element, `${path}[*]`, drops));
  return (value) => {
    if (!Array.isArray(value)) {
      throw new CarryMisfit(`expected an array of ${n}, got ${describe(value)}`, path);
    }
    const out: BtfValue[] = new Array(n);
    for (let i = 0; i < n; i++) {
      try {
        out[i] = i < value.length ? carries[i](value[i]) : zero;
      } catch (e) {
        throw within(e, `[${i}]`);
      }
    }
    for (let i = n; i < value.length; i++) {
      if (isZero(value[i], fromElement)) continue;
      const drop = drops.covering(`${path}[${i}]`);
      if (drop !== undefined) {
        drops.note(drop);
        continue;
      }
      const e = new CarryMisfit(
        `the target's array has ${n} elements, and element ${i} holds ${describe(value[i])}`,
        `${path}[${i}]`,
      );
      throw within(e, `[${i}]`);
    }
    return out;
  };
}

function floatCarry(size: number, path: string): Carry {
  if (size === 4 || size === 8) {
    return (value) => {
      if (typeof value === "number") return value;
      if (value === null) return NaN; // JSON writes NaN and infinities as null
      throw new CarryMisfit(`expected a number, got ${describe(value)}`, path);
    };
  }
  return (value) => {
    if (value instanceof Uint8Array) return value;
    // JSON.stringify writes a Uint8Array as {"0": b0, "1": b1, ...}.
    const bytes = Array.isArray(value) ? value : isObject(value) ? Object.values(value) : [];
    if (bytes.length !== size || !bytes.every((b) => Number.isInteger(b))) {
      throw new CarryMisfit(`expected ${size} bytes, got ${describe(value)}`, path);
    }
    return Uint8Array.from(bytes as number[]);
  };
}

function leafCarry(from: BtfType | undefined, to: BtfType, path: string): Carry {
  const fromNames = from && (from.kind === "enum" || from.kind === "enum64")
    ? new Map<string, number | bigint>(from.values.map((v) => [v.name, v.value]))
    : undefined;
  const toNames = to.kind === "enum" || to.kind === "enum64"
    ? new Set(to.values.map((v) => v.name))
    : undefined;
  const bool = to.kind === "int" && to.encoding === "bool";
  return (value) => {
    switch (typeof value) {
      case "number":
      case "bigint":
        return value;
      case "boolean":
        return bool ? value : value ? 1 : 0;
      case "string": {
        if (toNames?.has(value)) return value;
        const known = fromNames?.get(value);
        if (known !== undefined) return known;
        if (/^-?\d+$/.test(value) || /^0x[0-9a-f]+$/i.test(value)) return BigInt(value);
        return value; // the encoder names what it is not: an unknown enumerator
      }
    }
    throw new CarryMisfit(`expected a number, got ${describe(value)}`, path);
  };
}
