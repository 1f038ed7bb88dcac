/**
 * Output templates: what one entry of a dump prints, worked out once per map. The JSON
 * writer's structure (names, brackets, commas, the indentation of `-p`) does not depend on
 * the bytes of an entry, only the values do; so the writer runs once, at compile time, and
 * leaves *holes* where values go. Per entry, the template copies its literals and fills its
 * holes straight into a `ByteWriter`.
 *
 * @module
 */

import type { ByteWriter } from "./byte_writer.ts";
import type { JsonWriter } from "./json_writer.ts";

/** Writes one value read from `bytes` at `offset`. */
export type HoleFn = (w: ByteWriter, bytes: Uint8Array, offset: number) => void;

/** Where a hole reads: the entry's key or its value. */
export type Source = "key" | "value";

/** A value in a template. */
export interface Hole {
  /** Writes the value. */
  fn: HoleFn;
  /** Which bytes it reads. */
  source: Source;
  /** Where in them. */
  offset: number;
  /**
   * The most bytes it writes, or `Infinity` when that has no bound known in advance: then
   * the hole reserves room itself, as it writes.
   */
  max: number;
}

/** Literals and holes, alternating: `lits[0] hole[0] lits[1] ... hole[n-1] lits[n]`. */
export interface Template {
  /** The literal bytes between holes (one more than holes). */
  lits: Uint8Array[];
  /** The holes. */
  holes: Hole[];
  /** The most bytes one rendering writes (`Infinity` when a hole has no bound). */
  max: number;
}

const encoder = new TextEncoder();

/**
 * Builds a template from text and holes. JSON goes through `json` (a `JsonWriter`), whose
 * text is taken in before each hole, so a hole gets the separator the writer would give a
 * value there.
 */
export class TemplateBuilder {
  /** The writer of the template's JSON structure, if it has any. */
  readonly json: JsonWriter | undefined;
  #text = "";
  #lits: Uint8Array[] = [];
  #holes: Hole[] = [];

  /** A builder; `json` writes the structure around the holes. */
  constructor(json?: JsonWriter) {
    this.json = json;
  }

  /** Appends literal text. */
  text(text: string): void {
    this.#text += text;
  }

  /** A value written where the JSON writer would put one (`jsonw_printf`). */
  value(hole: Hole): void {
    this.json!.raw("");
    this.hole(hole);
  }

  /** A hole here, with no separator. */
  hole(hole: Hole): void {
    this.#take();
    this.#lits.push(encoder.encode(this.#text));
    this.#text = "";
    this.#holes.push(hole);
  }

  #take(): void {
    if (this.json) this.#text += this.json.take();
  }

  /** The template built. */
  finish(): Template {
    this.#take();
    const lits = [...this.#lits, encoder.encode(this.#text)];
    const max = lits.reduce((n, l) => n + l.length, 0) +
      this.#holes.reduce((n, h) => n + h.max, 0);
    return { lits, holes: this.#holes, max };
  }
}

/** `template` without the first `bytes` bytes of its first literal. */
export function dropLeading(template: Template, bytes: number): Template {
  const [first, ...rest] = template.lits;
  return { ...template, lits: [first.subarray(bytes), ...rest], max: template.max - bytes };
}

/**
 * Writes `template` for the entry whose key is at `key[ko..]` and value at `value[vo..]`,
 * making room in `w` as it goes.
 */
export function render(
  template: Template,
  w: ByteWriter,
  key: Uint8Array,
  ko: number,
  value: Uint8Array,
  vo: number,
): void {
  const { lits, holes } = template;
  const n = holes.length;
  const bounded = template.max !== Infinity;
  if (bounded) w.reserve(template.max);
  for (let i = 0; i < n; i++) {
    const hole = holes[i];
    if (!bounded) w.reserve(lits[i].length + (hole.max === Infinity ? 0 : hole.max));
    w.bytes(lits[i]);
    if (hole.source === "key") hole.fn(w, key, ko + hole.offset);
    else hole.fn(w, value, vo + hole.offset);
  }
  if (!bounded) w.reserve(lits[n].length);
  w.bytes(lits[n]);
}
