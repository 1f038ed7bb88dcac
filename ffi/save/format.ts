/**
 * The save file: a map's definition, its BTF and every entry, laid out so that a restore
 * reads it in one go and hands the packed keys and values to `BPF_MAP_UPDATE_BATCH` as they
 * lie in the file, without parsing an entry.
 *
 * ```text
 * offset 0   header: one line of JSON (UTF-8), padded with spaces so that the line, "\n"
 *            included, is a multiple of 8 bytes long
 * payload    BTF    layout.btf[1] bytes: the map's raw BTF, as the kernel holds it
 *            keys   entries * keySize bytes, packed
 *            values entries * valueBytes bytes, packed (valueBytes = valueStride * cpus)
 *            each part starts 8-aligned, at the payload offset the header's layout gives,
 *            zero bytes between; the file ends where the values end, padded to 8
 * ```
 *
 * The header (its keys in this order; the first 25 bytes are always
 * `{"format":"bpf-map-save",`):
 *
 * ```json
 * {"format":"bpf-map-save","version":1,
 *  "map":{"type":1,"typeName":"hash","keySize":4,"valueSize":4,"maxEntries":1024,"flags":0,
 *         "name":"counts","mapExtra":"0"},
 *  "btf":{"size":1234,"keyTypeId":2,"valueTypeId":5,"keyType":"struct flow",
 *         "valueType":"struct stats"},
 *  "cpus":1,"valueStride":4,"entries":3,"bucketBoundaries":[2],
 *  "layout":{"btf":[0,1234],"keys":[1240,12],"values":[1256,12],"size":1272},
 *  "crc32":3120966145,
 *  "saved":{"id":42,"pinned":"/sys/fs/bpf/counts","kernel":"6.18.0","time":"2025-01-01T00:00:00.000Z","walk":"LOOKUP_BATCH"}}
 * ```
 *
 * - `map`: `type` is the `enum bpf_map_type` number (`typeName` bpftool's name, for humans);
 *   `flags` is `map_flags`; `mapExtra` is `map_extra` as a decimal string (64 bits).
 * - `btf`: `null` for a map without BTF; else the byte size of the raw BTF in the payload and
 *   the ids of the key type (0: none, as for `.data` maps) and the value type in it, with
 *   their C names.
 * - `cpus`: value slots per entry: the possible CPUs of the machine that saved a per-CPU map,
 *   else 1; `valueStride`: bytes from one CPU's slot to the next (`valueSize` rounded up to 8
 *   for per-CPU maps, as the kernel lays them out, else `valueSize`).
 * - `bucketBoundaries` (optional; saves of hash maps walked with `LOOKUP_BATCH`): a few entry
 *   indexes, in file order, at which a hash bucket's entries begin, increasing, each from 1
 *   to `entries - 1`: no bucket of the saved map has entries on both sides of one. The walk
 *   copies whole buckets per call, so each boundary between two of its calls is one; the
 *   save keeps those nearest to each twelfth of the entries (see `readMapForSave`). A
 *   restore writes parts of the file at once, from several threads, split there (see
 *   `restoreMap`). Files without it (arrays, LPM tries, files of earlier saves) are read
 *   as before.
 * - `layout`: each part's `[offset, length]` from the start of the payload, and the payload's
 *   size; a file of another length is truncated or has bytes appended.
 * - `crc32`: the CRC-32 (zlib's) of the whole payload, padding included.
 * - `saved`: where the entries came from, for humans, and `pinned`, where the map was pinned
 *   when it was saved by its pin (a restore without a target goes there).
 *
 * Entries are in the reverse of the order the walk read them: the kernel adds an entry at the
 * head of its hash bucket, so a restore in file order into the map they came from rebuilds
 * each bucket's chain as it was, and a dump after the restore lists the entries in the same
 * order as before.
 *
 * @module
 */

import { crc32 } from "./_crc32.ts";
import { MapSaveError } from "./errors.ts";

/** The `format` of a save file's header. */
export const SAVE_FORMAT = "bpf-map-save";
/** The version of the layout this module writes and reads. */
export const SAVE_VERSION = 1;
/** What every save file starts with. */
export const SAVE_MAGIC = `{"format":"${SAVE_FORMAT}",`;
/** The longest header line a reader accepts. */
const MAX_HEADER = 1 << 20;

/** A map's definition: what `BPF_MAP_CREATE` needs to make it again. */
export interface MapDefinition {
  /** `enum bpf_map_type` number. */
  type: number;
  /** bpftool's name of the type (`"hash"`), for humans. */
  typeName: string;
  /** Key size in bytes. */
  keySize: number;
  /** Value size in bytes (per CPU, for per-CPU maps). */
  valueSize: number;
  /** `max_entries`. */
  maxEntries: number;
  /** `map_flags`. */
  flags: number;
  /** The map's name. */
  name: string;
  /** `map_extra` (bloom filters and arenas use it; 0 for the maps a save can hold). */
  mapExtra: bigint;
}

/** A map's BTF as a save file keeps it. */
export interface SavedBtf {
  /** The raw BTF (header, types, strings), as `BPF_BTF_LOAD` takes it. */
  bytes: Uint8Array;
  /** Id of the key type in it (0: none). */
  keyTypeId: number;
  /** Id of the value type in it. */
  valueTypeId: number;
  /** The key type's C name, for humans. */
  keyType: string;
  /** The value type's C name, for humans. */
  valueType: string;
}

/** Where a save's entries came from (informational, but for `pinned`). */
export interface SaveOrigin {
  /** The map id when it was saved. */
  id?: number;
  /** The path it was saved by (`pinned PATH`): where a restore without a target puts it back. */
  pinned?: string;
  /** The kernel release that held it. */
  kernel?: string;
  /** When it was saved (ISO 8601). */
  time?: string;
  /** How it was read: `LOOKUP_BATCH`, or `GET_NEXT_KEY + LOOKUP_ELEM`. */
  walk?: string;
}

/** A save file's contents; `keys` and `values` are packed, `entries` of each. */
export interface SaveContents {
  /** The map's definition. */
  definition: MapDefinition;
  /** Its BTF, or `null`. */
  btf: SavedBtf | null;
  /** Value slots per entry (possible CPUs for per-CPU maps, else 1). */
  cpus: number;
  /** Bytes from one CPU's slot to the next. */
  valueStride: number;
  /** Entries held. */
  entries: number;
  /**
   * Entry indexes (increasing, from 1 to `entries - 1`) at which a hash bucket's entries
   * begin in the file: no bucket has entries on both sides of one. Absent when unknown.
   */
  bucketBoundaries?: number[];
  /** `entries * keySize` bytes. */
  keys: Uint8Array;
  /** `entries * valueStride * cpus` bytes. */
  values: Uint8Array;
  /** Where they came from. */
  origin: SaveOrigin;
}

/** The payload's parts: `[offset, length]` each, and the payload's size. */
export interface PayloadLayout {
  /** The raw BTF. */
  btf: [number, number];
  /** The packed keys. */
  keys: [number, number];
  /** The packed values. */
  values: [number, number];
  /** Bytes of the payload. */
  size: number;
}

const pad8 = (n: number) => Math.ceil(n / 8) * 8;

/**
 * Of `boundaries` (bucket boundaries, as `SaveContents.bucketBoundaries` holds them), the one
 * nearest to `goal` (the first of two as near), or `undefined` when there are none.
 *
 * @example
 * ```ts
 * import { nearestBoundary } from "./format.ts";
 * console.log(nearestBoundary([3, 40, 90], 50)); // 40
 * ```
 */
export function nearestBoundary(boundaries: readonly number[], goal: number): number | undefined {
  let best: number | undefined;
  for (const at of boundaries) {
    if (best === undefined || Math.abs(at - goal) < Math.abs(best - goal)) best = at;
  }
  return best;
}

/**
 * Where each part lies in the payload of a save of `entries` entries.
 *
 * @example
 * ```ts
 * import { payloadLayout } from "./format.ts";
 * console.log(payloadLayout(0, 3, 4, 4)); // { btf: [0, 0], keys: [0, 12], values: [16, 12], size: 32 }
 * ```
 */
export function payloadLayout(
  btfSize: number,
  entries: number,
  keySize: number,
  valueBytes: number,
): PayloadLayout {
  const keys = pad8(btfSize);
  const values = keys + pad8(entries * keySize);
  const size = values + pad8(entries * valueBytes);
  return {
    btf: [0, btfSize],
    keys: [keys, entries * keySize],
    values: [values, entries * valueBytes],
    size,
  };
}

/**
 * The header line of a save whose payload is `payload` (laid out by `payloadLayout`),
 * padded to a multiple of 8 bytes.
 *
 * @example
 * ```ts
 * import { encodeHeader, payloadLayout } from "./format.ts";
 * const definition = { type: 1, typeName: "hash", keySize: 4, valueSize: 4, maxEntries: 8, flags: 0, name: "", mapExtra: 0n };
 * const layout = payloadLayout(0, 0, 4, 4);
 * const header = encodeHeader({ definition, btf: null, cpus: 1, valueStride: 4, entries: 0, origin: {} }, layout, new Uint8Array(layout.size));
 * console.log(header.length % 8); // 0
 * ```
 */
export function encodeHeader(
  contents: Omit<SaveContents, "keys" | "values">,
  layout: PayloadLayout,
  payload: Uint8Array,
): Uint8Array {
  const { definition: d, btf } = contents;
  const header = {
    format: SAVE_FORMAT,
    version: SAVE_VERSION,
    map: {
      type: d.type,
      typeName: d.typeName,
      keySize: d.keySize,
      valueSize: d.valueSize,
      maxEntries: d.maxEntries,
      flags: d.flags,
      name: d.name,
      mapExtra: d.mapExtra.toString(),
    },
    btf: btf && {
      size: btf.bytes.byteLength,
      keyTypeId: btf.keyTypeId,
      valueTypeId: btf.valueTypeId,
      keyType: btf.keyType,
      valueType: btf.valueType,
    },
    cpus: contents.cpus,
    valueStride: contents.valueStride,
    entries: contents.entries,
    ...(contents.bucketBoundaries ? { bucketBoundaries: contents.bucketBoundaries } : {}),
    layout,
    crc32: crc32(payload),
    saved: contents.origin,
  };
  const text = JSON.stringify(header);
  const bytes = new TextEncoder().encode(text);
  const line = new Uint8Array(pad8(bytes.length + 1)).fill(0x20);
  line.set(bytes);
  line[line.length - 1] = 0x0a;
  return line;
}

/**
 * Whether `bytes` start like a save file (the rest may still be corrupt: `parseSaveFile`
 * checks it).
 *
 * @example
 * ```ts
 * import { isSaveFile } from "./format.ts";
 * console.log(isSaveFile(new TextEncoder().encode("[]"))); // false
 * ```
 */
export function isSaveFile(bytes: Uint8Array): boolean {
  const magic = new TextEncoder().encode(SAVE_MAGIC);
  return bytes.length >= magic.length && magic.every((b, i) => bytes[i] === b);
}

function corrupt(detail: string): MapSaveError {
  return new MapSaveError(`Corrupt save file: ${detail}`);
}

/** `value` when it is a whole number from `min` to `max`, else a corrupt-file error naming `what`. */
function whole(value: unknown, what: string, min = 0, max = 0xffff_ffff): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw corrupt(
      `"${what}" is ${JSON.stringify(value)}, not a whole number from ${min} to ${max}`,
    );
  }
  return value;
}

function text(value: unknown, what: string): string {
  if (typeof value !== "string") throw corrupt(`"${what}" is not a string`);
  return value;
}

function object(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw corrupt(`"${what}" is not an object`);
  }
  return value as Record<string, unknown>;
}

function parseDefinition(value: unknown): MapDefinition {
  const m = object(value, "map");
  const mapExtra = text(m.mapExtra, "map.mapExtra");
  if (!/^\d{1,20}$/.test(mapExtra) || BigInt(mapExtra) >= 1n << 64n) {
    throw corrupt(`"map.mapExtra" is "${mapExtra}", not a 64-bit number`);
  }
  return {
    type: whole(m.type, "map.type", 1),
    typeName: text(m.typeName, "map.typeName"),
    keySize: whole(m.keySize, "map.keySize", 1),
    valueSize: whole(m.valueSize, "map.valueSize", 1),
    maxEntries: whole(m.maxEntries, "map.maxEntries", 1),
    flags: whole(m.flags, "map.flags"),
    name: text(m.name, "map.name"),
    mapExtra: BigInt(mapExtra),
  };
}

function parseOrigin(value: unknown): SaveOrigin {
  if (value === undefined) return {};
  const o = object(value, "saved");
  const origin: SaveOrigin = {};
  if (o.id !== undefined) origin.id = whole(o.id, "saved.id");
  for (const key of ["pinned", "kernel", "time", "walk"] as const) {
    if (o[key] !== undefined) origin[key] = text(o[key], `saved.${key}`);
  }
  return origin;
}

/** `bucketBoundaries` checked: increasing entry indexes from 1 to `entries - 1`, or absent. */
function parseBoundaries(value: unknown, entries: number): number[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) throw corrupt(`"bucketBoundaries" is not an array`);
  let last = 0;
  return value.map((at, i) => {
    last = whole(at, `bucketBoundaries[${i}]`, last + 1, entries - 1);
    return last;
  });
}

/** The header line's JSON, or a corrupt-file error. */
function readHeader(bytes: Uint8Array): { header: Record<string, unknown>; length: number } {
  const end = bytes.subarray(0, MAX_HEADER).indexOf(0x0a);
  if (end < 0) throw corrupt(`no end to the header line in the first ${MAX_HEADER} bytes`);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(0, end)));
  } catch (e) {
    throw corrupt(`the header line is not JSON (${(e as Error).message})`);
  }
  const h = object(header, "header");
  if (h.format !== SAVE_FORMAT) throw corrupt(`the header's "format" is not "${SAVE_FORMAT}"`);
  if (h.version !== SAVE_VERSION) {
    throw new MapSaveError(
      `Save file of version ${
        JSON.stringify(h.version)
      }: this toolkit reads version ${SAVE_VERSION}, update it to read a newer one`,
    );
  }
  if ((end + 1) % 8 !== 0) throw corrupt(`the header line is not padded to 8 bytes`);
  return { header: h, length: end + 1 };
}

/**
 * Parses and checks a whole save file: the header, the layout of the payload against the
 * sizes it states, the file's length and the payload's CRC-32. `keys`, `values` and the BTF
 * are views into `bytes`. Throws a `MapSaveError` ("Corrupt save file: ...") naming the first
 * fault found.
 *
 * @example
 * ```ts
 * import { parseSaveFile } from "./format.ts";
 * const save = parseSaveFile(Deno.readFileSync("/tmp/map.save"));
 * console.log(save.definition.typeName, save.entries);
 * ```
 */
export function parseSaveFile(bytes: Uint8Array): SaveContents {
  const { header: h, length } = readHeader(bytes);
  const definition = parseDefinition(h.map);
  const cpus = whole(h.cpus, "cpus", 1, 1 << 16);
  const valueStride = whole(h.valueStride, "valueStride", definition.valueSize);
  const entries = whole(h.entries, "entries", 0, Number.MAX_SAFE_INTEGER);
  const bucketBoundaries = parseBoundaries(h.bucketBoundaries, entries);
  const btfHeader = h.btf === null ? null : object(h.btf, "btf");
  const btfSize = btfHeader ? whole(btfHeader.size, "btf.size", 1) : 0;
  const expected = payloadLayout(btfSize, entries, definition.keySize, valueStride * cpus);
  if (JSON.stringify(h.layout) !== JSON.stringify(expected)) {
    throw corrupt(
      `its layout ${
        JSON.stringify(h.layout)
      } does not match ${entries} entries of ${definition.keySize}-byte keys and ${
        valueStride * cpus
      }-byte values (expected ${JSON.stringify(expected)})`,
    );
  }
  const total = length + expected.size;
  if (bytes.byteLength !== total) {
    throw corrupt(
      bytes.byteLength < total
        ? `truncated: ${bytes.byteLength} bytes of the ${total} its header promises`
        : `${bytes.byteLength - total} bytes past the ${total} its header promises`,
    );
  }
  const payload = bytes.subarray(length);
  const sum = crc32(payload);
  if (sum !== h.crc32) {
    throw corrupt(`the payload's CRC-32 is ${sum}, the header says ${JSON.stringify(h.crc32)}`);
  }
  const part = ([offset, size]: [number, number]) => payload.subarray(offset, offset + size);
  const btf = btfHeader && {
    bytes: part(expected.btf),
    keyTypeId: whole(btfHeader.keyTypeId, "btf.keyTypeId"),
    valueTypeId: whole(btfHeader.valueTypeId, "btf.valueTypeId", 1),
    keyType: text(btfHeader.keyType, "btf.keyType"),
    valueType: text(btfHeader.valueType, "btf.valueType"),
  };
  return {
    definition,
    btf,
    cpus,
    valueStride,
    entries,
    ...(bucketBoundaries ? { bucketBoundaries } : {}),
    keys: part(expected.keys),
    values: part(expected.values),
    origin: parseOrigin(h.saved),
  };
}
