/**
 * What `restoreMap` reads, told apart by their first bytes and parsed whole before anything
 * is written:
 *
 * - a save file (`format.ts`): the definition, the BTF and packed entries;
 * - a bpftool dump: `bpftool -j map dump` or `-p` (and `deno task dump --json`/`--pretty`,
 *   the same bytes), a JSON array of `{"key": ["0x0a", ...], "value": [...]}`, per-CPU maps
 *   with `"values": [{"cpu": 0, "value": [...]}, ...]`. The raw bytes are taken; bpftool's
 *   `"formatted"` view of maps with BTF is left aside;
 * - typed JSON lines (`deno task dump --jsonl`): one `{"key": K, "value": V}` a line
 *   (`"values": [V, ...]` per CPU), typed through the map's BTF, or, without BTF, integers
 *   of 1, 2 and 4 bytes, decimal strings of 8 bytes and hex strings (`"0x0a0b"`) of others.
 *
 * Dumps hold no definition: they go into a map that exists.
 *
 * @module
 */

import { isPerCpu } from "../sys/constants.ts";
import { MapSaveError } from "./errors.ts";
import { isSaveFile, parseSaveFile, type SaveContents } from "./format.ts";

/** Packed entries: `count` keys of `keySize` bytes and values of `valueStride * cpus` bytes. */
export interface PackedEntries {
  /** Entries. */
  count: number;
  /** Bytes of a key (0 when there are no entries to tell). */
  keySize: number;
  /** Bytes of a value, per CPU (0 when there are no entries to tell). */
  valueSize: number;
  /** Whether values come one per CPU (a per-CPU map's). */
  perCpu: boolean;
  /** Value slots per entry. */
  cpus: number;
  /** Bytes from one CPU's slot to the next. */
  valueStride: number;
  /** The keys, packed. */
  keys: Uint8Array;
  /** The values, packed. */
  values: Uint8Array;
}

/** One typed JSON line: its key and value (or per-CPU values) as JSON gave them. */
export interface JsonlEntry {
  /** The line number (from 1), for messages. */
  line: number;
  /** The key. */
  key: unknown;
  /** The value, or one per CPU. */
  value: unknown;
  /** Whether `value` is the array of a per-CPU map's `"values"`. */
  perCpu: boolean;
}

/** A restore's input, parsed. */
export type RestoreSource =
  | { readonly kind: "save"; readonly save: SaveContents }
  | { readonly kind: "bpftool"; readonly entries: PackedEntries }
  | { readonly kind: "jsonl"; readonly lines: JsonlEntry[] };

/** The kinds of input, as messages and summaries name them. */
export type SourceKind = RestoreSource["kind"];

/**
 * A save's entries as `PackedEntries`.
 *
 * @example
 * ```ts
 * import { parseSaveFile } from "./format.ts";
 * import { savedEntries } from "./sources.ts";
 * console.log(savedEntries(parseSaveFile(Deno.readFileSync("/tmp/map.save"))).count);
 * ```
 */
export function savedEntries(save: SaveContents): PackedEntries {
  return {
    count: save.entries,
    keySize: save.definition.keySize,
    valueSize: save.definition.valueSize,
    perCpu: isPerCpu(save.definition.type),
    cpus: save.cpus,
    valueStride: save.valueStride,
    keys: save.keys,
    values: save.values,
  };
}

const NOT_A_SOURCE =
  "not a save file (map save), a dump (bpftool -j map dump, dump --json) or typed JSON lines (dump --jsonl)";

/**
 * Parses a restore's input (see the module documentation), checking it whole: a corrupt save,
 * JSON that does not parse, or an entry of the wrong shape is a `MapSaveError` naming it.
 *
 * @example
 * ```ts
 * import { readRestoreSource } from "../../mod.ts";
 * const source = readRestoreSource(new TextEncoder().encode('[{"key":["0x01"],"value":["0x02"]}]'));
 * console.log(source.kind); // "bpftool"
 * ```
 */
export function readRestoreSource(bytes: Uint8Array): RestoreSource {
  if (isSaveFile(bytes)) return { kind: "save", save: parseSaveFile(bytes) };
  let start = 0;
  while (start < bytes.length && [0x20, 0x09, 0x0a, 0x0d].includes(bytes[start])) start++;
  if (start === bytes.length) throw new MapSaveError(`Empty input: ${NOT_A_SOURCE}`);
  if (bytes[start] === 0x5b) return { kind: "bpftool", entries: parseBpftoolDump(bytes) };
  if (bytes[start] === 0x7b) return { kind: "jsonl", lines: parseJsonl(bytes) };
  throw new MapSaveError(`The input is ${NOT_A_SOURCE}`);
}

function decodeText(bytes: Uint8Array): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new MapSaveError(`The input is not UTF-8 text: ${NOT_A_SOURCE}`);
  }
}

/** Bytes from bpftool's `["0x0a", "0x0b"]`, or an error naming `what`. */
function hexArray(value: unknown, what: string): Uint8Array {
  if (!Array.isArray(value)) throw new MapSaveError(`${what} is not an array of hex bytes`);
  const bytes = new Uint8Array(value.length);
  for (let i = 0; i < value.length; i++) {
    const byte = value[i];
    if (typeof byte !== "string" || !/^0x[0-9a-fA-F]{1,2}$/.test(byte)) {
      throw new MapSaveError(`${what}[${i}] is ${JSON.stringify(byte)}, not a hex byte ("0x0a")`);
    }
    bytes[i] = parseInt(byte.slice(2), 16);
  }
  return bytes;
}

/** One entry of a bpftool dump: its key, and one value per CPU (one for other maps). */
function bpftoolEntry(entry: unknown, at: string): { key: Uint8Array; values: Uint8Array[] } {
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
    throw new MapSaveError(
      `${at} is not an object${
        Array.isArray(entry) ? " (a dump of several maps: restore one map's dump at a time)" : ""
      }`,
    );
  }
  const e = entry as Record<string, unknown>;
  const key = hexArray(e.key, `${at}.key`);
  if (e.value !== undefined) return { key, values: [hexArray(e.value, `${at}.value`)] };
  if (!Array.isArray(e.values)) {
    throw new MapSaveError(`${at} has neither "value" nor "values"`);
  }
  const values = e.values.map((slot: unknown, i: number) => {
    const s = slot as Record<string, unknown> | null;
    if (typeof s !== "object" || s === null || s.cpu !== i) {
      throw new MapSaveError(`${at}.values[${i}] is not {"cpu": ${i}, "value": [...]}`);
    }
    return hexArray(s.value, `${at}.values[${i}].value`);
  });
  if (values.length === 0) throw new MapSaveError(`${at}.values is empty`);
  return { key, values };
}

/** Parses a bpftool `-j`/`-p` dump into packed entries, every entry of one shape. */
function parseBpftoolDump(bytes: Uint8Array): PackedEntries {
  let document: unknown;
  try {
    document = JSON.parse(decodeText(bytes));
  } catch (e) {
    if (e instanceof MapSaveError) throw e;
    throw new MapSaveError(`The dump is not JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(document)) {
    throw new MapSaveError("The dump is JSON but not an array of entries (bpftool -j map dump)");
  }
  const list = document as unknown[];
  const entries = list.map((entry, i) => bpftoolEntry(entry, `entry ${i}`));
  const first = entries[0];
  const keySize = first?.key.length ?? 0;
  const valueSize = first?.values[0].length ?? 0;
  const cpus = first?.values.length ?? 1;
  const perCpu = first !== undefined && (list[0] as Record<string, unknown>).values !== undefined;
  const valueStride = perCpu ? Math.ceil(valueSize / 8) * 8 : valueSize;
  const keys = new Uint8Array(entries.length * keySize);
  const values = new Uint8Array(entries.length * valueStride * cpus);
  entries.forEach((entry, i) => {
    if (entry.key.length !== keySize) {
      throw new MapSaveError(
        `entry ${i} has a key of ${entry.key.length} bytes, entry 0 one of ${keySize}`,
      );
    }
    if (entry.values.length !== cpus) {
      throw new MapSaveError(`entry ${i} has ${entry.values.length} CPUs' values, entry 0 ${cpus}`);
    }
    keys.set(entry.key, i * keySize);
    entry.values.forEach((value, cpu) => {
      if (value.length !== valueSize) {
        throw new MapSaveError(
          `entry ${i} has a value of ${value.length} bytes, entry 0 one of ${valueSize}`,
        );
      }
      values.set(value, (i * cpus + cpu) * valueStride);
    });
  });
  return { count: entries.length, keySize, valueSize, perCpu, cpus, valueStride, keys, values };
}

/** Parses typed JSON lines; blank lines are skipped. */
function parseJsonl(bytes: Uint8Array): JsonlEntry[] {
  const lines = decodeText(bytes).split("\n");
  const entries: JsonlEntry[] = [];
  lines.forEach((text, i) => {
    if (text.trim() === "") return;
    let entry: unknown;
    try {
      entry = JSON.parse(text);
    } catch (e) {
      throw new MapSaveError(`Line ${i + 1} is not JSON: ${(e as Error).message}`);
    }
    const e = entry as Record<string, unknown>;
    if (typeof e !== "object" || e === null || Array.isArray(e) || e.key === undefined) {
      throw new MapSaveError(`Line ${i + 1} is not a {"key": ..., "value": ...} object`);
    }
    const perCpu = e.value === undefined;
    if (perCpu && !Array.isArray(e.values)) {
      throw new MapSaveError(`Line ${i + 1} has neither "value" nor "values"`);
    }
    entries.push({ line: i + 1, key: e.key, value: perCpu ? e.values : e.value, perCpu });
  });
  return entries;
}
