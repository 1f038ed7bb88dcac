/**
 * `parseBtf`: raw BTF bytes to a checked `Btf`, whose types are linked objects. The steps,
 * one module each: the header (`_header.ts`), the strings (`_strings.ts`), the records sized
 * by kind (`_records.ts`), the objects and their links (`_build.ts`), then the whole-graph
 * checks (`_graph.ts`). Any problem is a `BtfError` naming the type id and byte offset.
 *
 * Split BTF (a kernel module's, based on `vmlinux`) continues the base's type ids and string
 * offsets: pass the parsed base as `options.base`.
 *
 * @module
 */

import { checkGraph, type GraphFacts } from "./_graph.ts";
import { readHeader } from "./_header.ts";
import { scanTypes } from "./_records.ts";
import { StringTable } from "./_strings.ts";
import { buildTypes } from "./_build.ts";
import { BtfError } from "./errors.ts";
import { BTF_MAX_TYPE } from "./layout.ts";
import type { BtfKindName, BtfType } from "./types.ts";
import { VOID } from "./types.ts";

/** Options of `parseBtf`. */
export interface ParseOptions {
  /** The base of split BTF (e.g. the parsed `/sys/kernel/btf/vmlinux` for a module's BTF). */
  base?: Btf;
  /**
   * Bytes of a pointer. Default: the base's; else the size of the `long` integer type when
   * the BTF has one (as libbpf guesses it); else 8.
   */
  pointerSize?: number;
}

/** The type of kind `K`, e.g. `TypeOfKind<"struct">` is `Struct`. */
export type TypeOfKind<K extends BtfKindName> = Extract<BtfType, { kind: K }>;

const LONG_NAMES = new Set([
  "long",
  "long int",
  "int long",
  "unsigned long",
  "long unsigned",
  "unsigned long int",
  "long unsigned int",
]);

/** What the graph check learned of each parsed BTF, for split BTF parsed on top of it. */
const FACTS = new WeakMap<Btf, GraphFacts>();

/**
 * Parsed, checked BTF: its types as linked objects, by id and by name.
 *
 * @example
 * ```ts
 * import { parseBtf, sizeof } from "./mod.ts";
 * const btf = parseBtf(Deno.readFileSync("/sys/kernel/btf/vmlinux"));
 * const task = btf.find("struct", "task_struct");
 * console.log(task && sizeof(task));
 * ```
 */
export class Btf {
  /** The base BTF, for split BTF. */
  readonly base: Btf | undefined;
  /** Byte order of the BTF, and of the data its types describe. */
  readonly littleEndian: boolean;
  /** Bytes of a pointer. */
  readonly pointerSize: number;
  /** The id of this BTF's first own type: 1, or the base's `typeCount` for split BTF. */
  readonly firstId: number;
  /** Type ids run from 0 (void) to `typeCount - 1`, the base's included. */
  readonly typeCount: number;
  readonly #types: readonly BtfType[];
  readonly #strings: StringTable;
  #byName: Map<string, BtfType[]> | undefined;

  /** @internal Made by `parseBtf`. */
  constructor(
    parts: {
      base: Btf | undefined;
      littleEndian: boolean;
      pointerSize: number;
      firstId: number;
      types: readonly BtfType[];
      strings: StringTable;
    },
  ) {
    this.base = parts.base;
    this.littleEndian = parts.littleEndian;
    this.pointerSize = parts.pointerSize;
    this.firstId = parts.firstId;
    this.typeCount = parts.firstId + parts.types.length;
    this.#types = parts.types;
    this.#strings = parts.strings;
  }

  /** This BTF's own types, in id order (not the base's, not void). */
  get types(): readonly BtfType[] {
    return this.#types;
  }

  /** Bytes of strings, the base's included: valid name offsets are below it. */
  get stringsLength(): number {
    return this.#strings.length;
  }

  /** The type with this id (0 is void; ids below `firstId` are the base's). */
  typeById(id: number): BtfType {
    if (!Number.isInteger(id) || id < 0 || id >= this.typeCount) {
      throw new BtfError(
        `No BTF type with id "${id}": the ids run from 0 to ${this.typeCount - 1}`,
      );
    }
    if (id === 0) return VOID;
    return id < this.firstId ? this.base!.typeById(id) : this.#types[id - this.firstId];
  }

  /** The string at a name offset (the base's below its length). */
  string(offset: number): string {
    return this.#strings.get(offset, "a");
  }

  /**
   * The name offset of `text` in the strings (the base's first), or `undefined`. The first
   * call indexes the strings (about 50 ms for vmlinux).
   *
   * @example
   * ```ts
   * import { kernelBtf } from "./mod.ts";
   * const btf = kernelBtf();
   * console.log(btf.string(btf.findString("task_struct")!)); // "task_struct"
   * ```
   */
  findString(text: string): number | undefined {
    return this.#strings.offsetOf(text);
  }

  #index(): Map<string, BtfType[]> {
    if (this.#byName) return this.#byName;
    const index = new Map<string, BtfType[]>();
    for (const t of this.#types) {
      if (!t.name) continue;
      const list = index.get(t.name);
      if (list) list.push(t);
      else index.set(t.name, [t]);
    }
    return this.#byName = index;
  }

  /** Every type named `name`: this BTF's first, then the base's. */
  findAll(name: string): BtfType[] {
    return [...(this.#index().get(name) ?? []), ...(this.base?.findAll(name) ?? [])];
  }

  /**
   * The first type of `kind` named `name` (this BTF's before the base's), or `undefined`.
   *
   * @example
   * ```ts
   * import { kernelBtf } from "./mod.ts";
   * const map = kernelBtf().find("struct", "bpf_map");
   * console.log(map?.members.map((m) => m.name));
   * ```
   */
  find<K extends BtfKindName>(kind: K, name: string): TypeOfKind<K> | undefined {
    for (const t of this.#index().get(name) ?? []) {
      if (t.kind === kind) return t as TypeOfKind<K>;
    }
    return this.base?.find(kind, name);
  }
}

/**
 * Parses and checks raw BTF (`.BTF` section, `/sys/kernel/btf/*`, or the kernel's copy of a
 * loaded BTF object). Throws a `BtfError` for anything malformed; never a `RangeError`.
 *
 * @example
 * ```ts
 * import { parseBtf } from "./mod.ts";
 * const vmlinux = parseBtf(Deno.readFileSync("/sys/kernel/btf/vmlinux"));
 * console.log(vmlinux.typeCount, vmlinux.find("struct", "bpf_map")?.size);
 * ```
 */
export function parseBtf(bytes: Uint8Array, options: ParseOptions = {}): Btf {
  const base = options.base;
  const sections = readHeader(bytes);
  if (base && base.littleEndian !== sections.littleEndian) {
    throw new BtfError("Split BTF and its base differ in byte order", { offset: 0 });
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const strings = new StringTable(
    bytes,
    sections.strStart,
    sections.strEnd,
    base ? baseStrings(base) : undefined,
  );
  const firstId = base ? base.typeCount : 1;
  if (firstId > BTF_MAX_TYPE + 1) {
    throw new BtfError(`The base BTF already has ${firstId} types`, { offset: 0 });
  }
  const offsets = scanTypes(
    view,
    sections.typeStart,
    sections.typeEnd,
    sections.littleEndian,
    firstId,
  );
  let pointerSize = options.pointerSize ?? base?.pointerSize ?? 8;
  const types = buildTypes({
    view,
    littleEndian: sections.littleEndian,
    strings,
    offsets,
    firstId,
    baseType: (id) => id === 0 ? VOID : base!.typeById(id),
    pointerSize,
  });
  if (options.pointerSize === undefined && !base) {
    const long = types.find((t) => t.kind === "int" && LONG_NAMES.has(t.name));
    if (long && long.kind === "int" && (long.size === 4 || long.size === 8)) {
      pointerSize = long.size;
      for (const t of types) {
        // deno-lint-ignore no-explicit-any
        if (t.kind === "ptr") (t as any).size = pointerSize;
      }
    }
  }
  const facts = checkGraph(types, firstId, offsets, (t) => baseDepth(base, t));
  const btf = new Btf({
    base,
    littleEndian: sections.littleEndian,
    pointerSize,
    firstId,
    types,
    strings,
  });
  FACTS.set(btf, facts);
  STRINGS.set(btf, strings);
  return btf;
}

const STRINGS = new WeakMap<Btf, StringTable>();

function baseStrings(base: Btf): StringTable {
  const strings = STRINGS.get(base);
  if (!strings) throw new BtfError("The base BTF was not made by parseBtf");
  return strings;
}

function baseDepth(base: Btf | undefined, type: BtfType): number {
  if (type.id === 0 || !base) return 0;
  let b: Btf | undefined = base;
  while (b && type.id < b.firstId) b = b.base;
  const facts = b && FACTS.get(b);
  return facts ? facts.depth[type.id - b!.firstId] : 0;
}
