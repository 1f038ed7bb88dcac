/**
 * The string section: names by offset, checked to lie inside the section (or the base's, for
 * split BTF, whose offsets continue from the base's string bytes). The section must end with
 * a NUL, so every offset inside it starts a NUL-terminated string.
 *
 * @module
 */

import { BtfError } from "./errors.ts";
import { BTF_MAX_NAME_OFFSET } from "./layout.ts";

const LATIN1 = new TextDecoder("latin1");
const UTF8 = new TextDecoder();

/** One BTF's string section, chained to its base's for split BTF. */
export class StringTable {
  /** Bytes of strings up to the end of this section: the base's plus this section's. */
  readonly length: number;
  readonly #base: StringTable | undefined;
  readonly #bytes: Uint8Array;
  readonly #start: number;
  readonly #end: number;
  /** The whole section as one string, when it is all ASCII (offsets are then indices). */
  readonly #ascii: string | undefined;
  readonly #cache = new Map<number, string>();
  #index: Map<string, number> | undefined;

  /**
   * Checks the section `[start, end)` of `bytes` (libbpf's `btf_parse_str_sec()`): a base
   * section starts with the empty string; every section ends with a NUL.
   */
  constructor(bytes: Uint8Array, start: number, end: number, base?: StringTable) {
    this.#base = base;
    this.#bytes = bytes;
    this.#start = start;
    this.#end = end;
    const own = end - start;
    this.length = (base?.length ?? 0) + own;
    if (!base && (own === 0 || bytes[start] !== 0)) {
      throw new BtfError(
        own === 0
          ? "Empty BTF string section: a base BTF needs at least the empty string"
          : "BTF string section does not start with the empty string",
        { offset: start },
      );
    }
    if (own > 0 && bytes[end - 1] !== 0) {
      throw new BtfError("BTF string section does not end with a NUL", { offset: end - 1 });
    }
    if (this.length - 1 > BTF_MAX_NAME_OFFSET) {
      throw new BtfError(
        `BTF strings of ${this.length} bytes exceed the largest name offset ${BTF_MAX_NAME_OFFSET}`,
        { offset: start },
      );
    }
    let ascii = true;
    for (let i = start; i < end; i++) {
      if (bytes[i] >= 0x80) {
        ascii = false;
        break;
      }
    }
    this.#ascii = ascii ? LATIN1.decode(bytes.subarray(start, end)) : undefined;
  }

  /** The offset of `text` (the base's first), or `undefined`; indexes the strings on first use. */
  offsetOf(text: string): number | undefined {
    const inBase = this.#base?.offsetOf(text);
    if (inBase !== undefined) return inBase;
    if (!this.#index) {
      const index = new Map<string, number>();
      const baseLength = this.#base?.length ?? 0;
      const own = this.#end - this.#start;
      for (let local = 0; local < own;) {
        const nul = this.#bytes.indexOf(0, this.#start + local) - this.#start;
        const found = this.get(baseLength + local, "a");
        if (!index.has(found)) index.set(found, baseLength + local);
        local = nul + 1;
      }
      this.#index = index;
    }
    return this.#index.get(text);
  }

  /** Whether `offset` names a string of this table (or of its base). */
  has(offset: number): boolean {
    return offset >= 0 && offset < this.length;
  }

  /**
   * The string at `offset`; throws a `BtfError` naming `what` (and `typeId`, `at`) when the
   * offset lies outside the strings.
   */
  get(offset: number, what: string, typeId?: number, at?: number): string {
    const baseLength = this.#base?.length ?? 0;
    if (offset < baseLength) return this.#base!.get(offset, what, typeId, at);
    const local = offset - baseLength;
    if (local >= this.#end - this.#start) {
      throw new BtfError(
        `Invalid ${what} name offset "${offset}": the strings end at ${this.length}`,
        { typeId, offset: at },
      );
    }
    if (this.#ascii !== undefined) {
      if (this.#ascii.charCodeAt(local) === 0) return "";
      return this.#ascii.slice(local, this.#ascii.indexOf("\0", local));
    }
    let text = this.#cache.get(local);
    if (text === undefined) {
      const from = this.#start + local;
      const nul = this.#bytes.indexOf(0, from);
      text = UTF8.decode(this.#bytes.subarray(from, nul));
      this.#cache.set(local, text);
    }
    return text;
  }
}
