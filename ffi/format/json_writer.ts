/**
 * A port of bpftool's streaming JSON writer (`json_writer.c`, bpftool 7.1), quirks included,
 * so that output built with it is byte for byte what `bpftool -j` / `bpftool -p` print.
 *
 * The quirks, kept on purpose: a backslash is written as `\n` and a single quote as `\'`
 * (`jsonw_puts`); other control characters and non-ASCII text go out raw; in pretty mode an
 * array of plain values stays on the line of its name and only its closing bracket gets a
 * line of its own (`"pinned": ["/a","/b"\n        ]`); a document ends with one newline
 * (`jsonw_destroy`).
 *
 * @module
 */

/**
 * bpftool's `json_writer_t`, writing into a string buffer that `take()` empties.
 *
 * @example
 * ```ts
 * import { JsonWriter } from "./json_writer.ts";
 * const w = new JsonWriter({ pretty: false });
 * w.startObject();
 * w.uintField("id", 7);
 * w.endObject();
 * console.log(w.end()); // {"id":7}\n
 * ```
 */
export class JsonWriter {
  readonly #pretty: boolean;
  #depth = 0;
  #sep = "";
  #out = "";

  /** A writer for `bpftool -j` (`pretty: false`) or `bpftool -p` (`pretty: true`) output. */
  constructor({ pretty }: { pretty: boolean }) {
    this.#pretty = pretty;
  }

  /** Returns what was written since the last `take()`, and forgets it. */
  take(): string {
    const text = this.#out;
    this.#out = "";
    return text;
  }

  /**
   * A writer where this one is (its depth and separator) with nothing written: what follows
   * it is written as it would be here. Templates are built on forks.
   */
  fork(): JsonWriter {
    const w = new JsonWriter({ pretty: this.#pretty });
    w.#depth = this.#depth;
    w.#sep = this.#sep;
    return w;
  }

  /** Ends the document (`jsonw_destroy`): a newline; returns what `take()` had left. */
  end(): string {
    if (this.#depth !== 0) throw new Error("JSON writer ended inside an object or array");
    this.#out += "\n";
    return this.take();
  }

  #eol(): void {
    if (!this.#pretty) return;
    this.#out += "\n" + "    ".repeat(this.#depth);
  }

  #eor(): void {
    this.#out += this.#sep;
    this.#sep = ",";
  }

  #puts(text: string): void {
    let quoted = QUOTED.get(text);
    if (quoted === undefined) {
      quoted = '"';
      for (const c of text) quoted += QUIRK_ESCAPES[c] ?? c;
      quoted += '"';
      // Names and enumerators repeat entry after entry: quote each once.
      if (QUOTED.size < QUOTED_MAX && text.length <= 64) QUOTED.set(text, quoted);
    }
    this.#out += quoted;
  }

  #begin(c: string): void {
    this.#eor();
    this.#out += c;
    this.#depth++;
    this.#sep = "";
  }

  #end(c: string): void {
    if (this.#depth === 0) throw new Error(`JSON writer closed "${c}" at depth 0`);
    this.#depth--;
    if (this.#sep !== "") this.#eol();
    this.#out += c;
    this.#sep = ",";
  }

  /** `jsonw_name`. */
  name(name: string): void {
    this.#eor();
    this.#eol();
    this.#sep = "";
    this.#puts(name);
    this.#out += this.#pretty ? ": " : ":";
  }

  /** `jsonw_printf`: a value written as is. */
  raw(text: string): void {
    this.#eor();
    this.#out += text;
  }

  /** `jsonw_string`. */
  string(value: string): void {
    this.#eor();
    this.#puts(value);
  }

  /** `jsonw_start_object`. */
  startObject(): void {
    this.#begin("{");
  }

  /** `jsonw_end_object`. */
  endObject(): void {
    this.#end("}");
  }

  /** `jsonw_start_array`. */
  startArray(): void {
    this.#begin("[");
  }

  /** `jsonw_end_array`. */
  endArray(): void {
    this.#end("]");
  }

  /** `jsonw_string_field`. */
  stringField(name: string, value: string): void {
    this.name(name);
    this.string(value);
  }

  /** `jsonw_uint_field` / `jsonw_int_field`: an integer, in decimal. */
  uintField(name: string, value: number | bigint): void {
    this.name(name);
    this.raw(String(value));
  }

  /** `jsonw_int_field`. */
  intField(name: string, value: number | bigint): void {
    this.uintField(name, value);
  }

  /** `jsonw_bool_field`. */
  boolField(name: string, value: boolean): void {
    this.name(name);
    this.raw(value ? "true" : "false");
  }
}

/**
 * The escapes bpftool's writers share, its backslash bug included (`\` comes out as `\n`):
 * `btf_dumper`'s strings use these.
 */
export const BPFTOOL_ESCAPES: Readonly<Record<string, string>> = {
  "\t": "\\t",
  "\n": "\\n",
  "\r": "\\r",
  "\f": "\\f",
  "\b": "\\b",
  "\\": "\\n",
  '"': '\\"',
};
/** Strings already quoted by `#puts`, and how many it keeps. */
const QUOTED = new Map<string, string>();
const QUOTED_MAX = 65_536;

/** `jsonw_puts`'s escapes: those, and a single quote escaped too. */
const QUIRK_ESCAPES: Readonly<Record<string, string>> = { ...BPFTOOL_ESCAPES, "'": "\\'" };
