/**
 * `BtfBuilder`: raw BTF from type descriptions, the inverse of `parseBtf`. Tests use it to
 * make BTF of every kind (well-formed or not, through `raw()`) without a compiler; it is
 * also what creating maps with BTF from TypeScript (`BPF_BTF_LOAD`) would start from.
 *
 * @module
 */

import { BpfArgumentError } from "../sys/errors.ts";
import {
  BTF_HEADER,
  BTF_MAGIC,
  BTF_MAX_VLEN,
  BTF_RECORD_SIZE,
  BTF_VERSION,
  BtfIntEncoding,
  BtfKind,
  BtfLinkage,
  makeInfo,
  makeIntData,
} from "./layout.ts";
import type { Btf } from "./parse.ts";
import type { IntEncoding, Linkage } from "./types.ts";

/** A type to add, by kind; references are type ids (earlier, later, or the base's). */
export type TypeSpec =
  | {
    kind: "int";
    name: string;
    size: number;
    encoding?: IntEncoding;
    /** Default `size * 8`. */
    bits?: number;
    offset?: number;
  }
  | { kind: "ptr"; target: number }
  | { kind: "array"; element: number; index: number; nelems: number }
  | {
    kind: "struct" | "union";
    name?: string;
    size: number;
    members: { name?: string; type: number; bitOffset: number; bitfieldSize?: number }[];
    /** Default: set when a member has a `bitfieldSize`. */
    kflag?: boolean;
  }
  | {
    kind: "enum";
    name?: string;
    /** Default 4. */
    size?: number;
    signed?: boolean;
    values: { name: string; value: number }[];
  }
  | {
    kind: "enum64";
    name?: string;
    /** Default 8. */
    size?: number;
    signed?: boolean;
    values: { name: string; value: bigint }[];
  }
  | { kind: "fwd"; name: string; fwdKind?: "struct" | "union" }
  | { kind: "typedef" | "type_tag"; name: string; target: number }
  | { kind: "volatile" | "const" | "restrict"; target: number }
  | { kind: "func"; name: string; proto: number; linkage?: Linkage }
  | {
    kind: "func_proto";
    returns: number;
    params: { name?: string; type: number }[];
    variadic?: boolean;
  }
  | { kind: "var"; name: string; type: number; linkage?: Linkage }
  | {
    kind: "datasec";
    name: string;
    size: number;
    vars: { type: number; offset: number; size: number }[];
  }
  | { kind: "float"; name: string; size: number }
  | { kind: "decl_tag"; name: string; target: number; componentIdx?: number };

/** Options of `BtfBuilder`. */
export interface BuilderOptions {
  /** Make split BTF on top of this base: ids and string offsets continue from its own. */
  base?: Btf;
  /** Byte order (default little-endian). */
  littleEndian?: boolean;
}

const ENCODINGS: Record<IntEncoding, number> = {
  unsigned: 0,
  signed: BtfIntEncoding.SIGNED,
  char: BtfIntEncoding.CHAR,
  bool: BtfIntEncoding.BOOL,
};

/** The `BTF_KIND_*` number of each kind that only names or qualifies a target. */
const KINDS = {
  typedef: BtfKind.TYPEDEF,
  type_tag: BtfKind.TYPE_TAG,
  volatile: BtfKind.VOLATILE,
  const: BtfKind.CONST,
  restrict: BtfKind.RESTRICT,
} as const;

const LINKAGES: Record<Linkage, number> = {
  static: BtfLinkage.STATIC,
  global: BtfLinkage.GLOBAL,
  extern: BtfLinkage.EXTERN,
};

/**
 * Assembles BTF: `add()` types (each returns its id), then `build()` the bytes.
 *
 * @example
 * ```ts
 * import { BtfBuilder, parseBtf, typeName } from "./mod.ts";
 * const b = new BtfBuilder();
 * const u32 = b.add({ kind: "int", name: "unsigned int", size: 4 });
 * const key = b.add({
 *   kind: "struct",
 *   name: "key",
 *   size: 8,
 *   members: [{ name: "a", type: u32, bitOffset: 0 }, { name: "b", type: u32, bitOffset: 32 }],
 * });
 * console.log(typeName(parseBtf(b.build()).typeById(key))); // "struct key"
 * ```
 */
export class BtfBuilder {
  readonly #words: number[] = [];
  readonly #strings: string[] = [];
  readonly #offsets = new Map<string, number>();
  readonly #firstString: number;
  #stringBytes = 0;
  readonly #littleEndian: boolean;
  readonly #base: Btf | undefined;
  #nextId: number;

  constructor(options: BuilderOptions = {}) {
    this.#littleEndian = options.littleEndian ?? options.base?.littleEndian ?? true;
    this.#base = options.base;
    this.#nextId = options.base ? options.base.typeCount : 1;
    this.#firstString = options.base ? options.base.stringsLength : 0;
    this.#offsets.set("", 0);
    if (!options.base) {
      this.#strings.push("");
      this.#stringBytes = 1;
    }
  }

  /** The id the next type added gets. */
  get nextId(): number {
    return this.#nextId;
  }

  /** The name offset of `text`: the base's when it has it, else added to the strings when new. */
  string(text: string): number {
    const known = this.#offsets.get(text) ?? this.#base?.findString(text);
    if (known !== undefined) return known;
    const offset = this.#firstString + this.#stringBytes;
    this.#offsets.set(text, offset);
    this.#strings.push(text);
    this.#stringBytes += new TextEncoder().encode(text).length + 1;
    return offset;
  }

  /** Appends a record given as `__u32` words (head and trailing records); returns its id. */
  raw(words: readonly number[]): number {
    for (const w of words) this.#words.push(w >>> 0);
    return this.#nextId++;
  }

  /** Appends a type; returns its id. Throws a `BpfArgumentError` for more than `BTF_MAX_VLEN` members. */
  add(spec: TypeSpec): number {
    const s = (text = "") => this.string(text);
    const count = "members" in spec
      ? spec.members.length
      : "values" in spec
      ? spec.values.length
      : "params" in spec
      ? spec.params.length + (spec.variadic ? 1 : 0)
      : "vars" in spec
      ? spec.vars.length
      : 0;
    if (count > BTF_MAX_VLEN) {
      throw new BpfArgumentError(
        `A ${spec.kind} of ${count} members, enumerators or parameters: BTF holds at most ${BTF_MAX_VLEN}`,
      );
    }
    switch (spec.kind) {
      case "int":
        return this.raw([
          s(spec.name),
          makeInfo(BtfKind.INT, 0, false),
          spec.size,
          makeIntData(
            ENCODINGS[spec.encoding ?? "unsigned"],
            spec.offset ?? 0,
            spec.bits ?? spec.size * 8,
          ),
        ]);
      case "ptr":
        return this.raw([0, makeInfo(BtfKind.PTR, 0, false), spec.target]);
      case "array":
        return this.raw([
          0,
          makeInfo(BtfKind.ARRAY, 0, false),
          0,
          spec.element,
          spec.index,
          spec.nelems,
        ]);
      case "struct":
      case "union": {
        const kflag = spec.kflag ?? spec.members.some((m) => (m.bitfieldSize ?? 0) > 0);
        const kind = spec.kind === "struct" ? BtfKind.STRUCT : BtfKind.UNION;
        const words = [s(spec.name), makeInfo(kind, spec.members.length, kflag), spec.size];
        for (const m of spec.members) {
          const offset = kflag
            ? ((m.bitfieldSize ?? 0) * 2 ** 24) + (m.bitOffset & 0xff_ffff)
            : m.bitOffset;
          words.push(s(m.name), m.type, offset);
        }
        return this.raw(words);
      }
      case "enum": {
        const words = [
          s(spec.name),
          makeInfo(BtfKind.ENUM, spec.values.length, spec.signed ?? false),
          spec.size ?? 4,
        ];
        for (const v of spec.values) words.push(s(v.name), v.value | 0);
        return this.raw(words);
      }
      case "enum64": {
        const words = [
          s(spec.name),
          makeInfo(BtfKind.ENUM64, spec.values.length, spec.signed ?? false),
          spec.size ?? 8,
        ];
        for (const v of spec.values) {
          const u = BigInt.asUintN(64, v.value);
          words.push(s(v.name), Number(u & 0xffff_ffffn), Number(u >> 32n));
        }
        return this.raw(words);
      }
      case "fwd":
        return this.raw([s(spec.name), makeInfo(BtfKind.FWD, 0, spec.fwdKind === "union"), 0]);
      case "typedef":
      case "type_tag":
      case "volatile":
      case "const":
      case "restrict": {
        const name = "name" in spec ? s(spec.name) : 0;
        return this.raw([name, makeInfo(KINDS[spec.kind], 0, false), spec.target]);
      }
      case "func":
        return this.raw([
          s(spec.name),
          makeInfo(BtfKind.FUNC, LINKAGES[spec.linkage ?? "static"], false),
          spec.proto,
        ]);
      case "func_proto": {
        const params = [...spec.params];
        if (spec.variadic) params.push({ type: 0 });
        const words = [0, makeInfo(BtfKind.FUNC_PROTO, params.length, false), spec.returns];
        for (const p of params) words.push(s(p.name), p.type);
        return this.raw(words);
      }
      case "var":
        return this.raw([
          s(spec.name),
          makeInfo(BtfKind.VAR, 0, false),
          spec.type,
          LINKAGES[spec.linkage ?? "global"],
        ]);
      case "datasec": {
        const words = [s(spec.name), makeInfo(BtfKind.DATASEC, spec.vars.length, false), spec.size];
        for (const v of spec.vars) words.push(v.type, v.offset, v.size);
        return this.raw(words);
      }
      case "float":
        return this.raw([s(spec.name), makeInfo(BtfKind.FLOAT, 0, false), spec.size]);
      case "decl_tag":
        return this.raw([
          s(spec.name),
          makeInfo(BtfKind.DECL_TAG, 0, false),
          spec.target,
          spec.componentIdx ?? -1,
        ]);
    }
  }

  /** The BTF bytes: header, type section, string section. */
  build(): Uint8Array<ArrayBuffer> {
    const strings = new TextEncoder().encode(this.#strings.map((t) => `${t}\0`).join(""));
    const hdrLen = BTF_RECORD_SIZE.header;
    const typeLen = this.#words.length * 4;
    const bytes = new Uint8Array(hdrLen + typeLen + strings.length);
    const view = new DataView(bytes.buffer);
    const le = this.#littleEndian;
    const f = BTF_HEADER.fields;
    view.setUint16(f.magic.offset, BTF_MAGIC, le);
    view.setUint8(f.version.offset, BTF_VERSION);
    view.setUint32(f.hdrLen.offset, hdrLen, le);
    view.setUint32(f.typeOff.offset, 0, le);
    view.setUint32(f.typeLen.offset, typeLen, le);
    view.setUint32(f.strOff.offset, typeLen, le);
    view.setUint32(f.strLen.offset, strings.length, le);
    this.#words.forEach((w, i) => view.setUint32(hdrLen + i * 4, w, le));
    bytes.set(strings, hdrLen + typeLen);
    return bytes;
  }
}
