/**
 * `saveMap`: a map's definition, its BTF and every entry, into a save file (`format.ts`).
 *
 * @module
 */

import type { ByteSink } from "../format/byte_writer.ts";
import { BPFTOOL_MAP_TYPE_NAMES } from "../format/map_show.ts";
import { loadMapBtf, readBtfById } from "../btf/kernel.ts";
import { typeName } from "../btf/name.ts";
import { KeySet } from "../dump/verify.ts";
import type { BpfMap } from "../map/map.ts";
import { ownedBytes } from "../sys/buffers.ts";
import { BpfCommand, isArray, MapType } from "../sys/constants.ts";
import { check } from "../sys/errors.ts";
import { kernelRelease } from "../sys/features.ts";
import { layoutSize, MAP_INFO, readU64 } from "../sys/layout.ts";
import { objInfo } from "../sys/syscall_backend.ts";
import { MapSaveError } from "./errors.ts";
import {
  encodeHeader,
  type MapDefinition,
  nearestBoundary,
  payloadLayout,
  type SaveContents,
  type SavedBtf,
} from "./format.ts";

/** `BPF_MAP_TYPE_LPM_TRIE`: keys and values of plain data, walked per entry. */
const LPM_TRIE = 11;
/** The map types read with `LOOKUP_BATCH`. */
const BATCH_TYPES: readonly number[] = Object.values(MapType);

/** Why a map of this type cannot be saved, or `undefined` when it can. */
function unsavable(type: number): string | undefined {
  if (BATCH_TYPES.includes(type) || type === LPM_TRIE) return undefined;
  const name = BPFTOOL_MAP_TYPE_NAMES[type] ?? `type ${type}`;
  if ([22, 23, 27, 30, 31].includes(type)) return `a ${name} map has no keys to walk`;
  return `the values of a ${name} map are not plain data (they hold references the kernel keeps: fds, ids or sockets), so they cannot be written back`;
}

/** Options of `saveMap`. */
export interface SaveOptions {
  /**
   * Entries per `LOOKUP_BATCH` call (default 4,096, fewer for entries over 16 KiB; grown when
   * a hash bucket holds more). The calls' ends are the bucket boundaries a save can record,
   * so the chunk is also how closely a restore can split the file into equal parts.
   */
  chunk?: number;
  /** Where the map is pinned, recorded so that a restore without a target puts it back there. */
  pinned?: string;
}

/** What `saveMap` wrote. */
export interface SaveResult {
  /** Entries saved. */
  entries: number;
  /** Bytes of the file. */
  bytes: number;
  /** How the map was read: `LOOKUP_BATCH`, or `GET_NEXT_KEY + LOOKUP_ELEM` per entry. */
  walk: string;
  /** Whether the map's BTF was saved with it. */
  btf: boolean;
}

/** Packed entries of one size, in a buffer that doubles when full. */
class Packed {
  bytes: Uint8Array;
  count = 0;

  constructor(readonly size: number, expected: number) {
    this.bytes = new Uint8Array(size * Math.max(expected, 16));
  }

  append(source: Uint8Array, count: number): void {
    const need = (this.count + count) * this.size;
    if (need > this.bytes.length) {
      const grown = new Uint8Array(Math.max(need, this.bytes.length * 2));
      grown.set(this.bytes.subarray(0, this.count * this.size));
      this.bytes = grown;
    }
    this.bytes.set(source.subarray(0, count * this.size), this.count * this.size);
    this.count += count;
  }
}

/**
 * Copies `count` packed entries of `size` bytes from `from` into `to`, last first. Entries of
 * 4 and 8 bytes go through typed arrays (`reverse()` is native); others byte by byte.
 */
function reverseInto(from: Uint8Array, to: Uint8Array, count: number, size: number): void {
  const aligned = (from.byteOffset | to.byteOffset) % 8 === 0;
  if (aligned && size === 4) {
    const out = new Uint32Array(to.buffer, to.byteOffset, count);
    out.set(new Uint32Array(from.buffer, from.byteOffset, count));
    out.reverse();
  } else if (aligned && size === 8) {
    const out = new BigUint64Array(to.buffer, to.byteOffset, count);
    out.set(new BigUint64Array(from.buffer, from.byteOffset, count));
    out.reverse();
  } else {
    for (let i = 0, o = (count - 1) * size; i < count * size; i += size, o -= size) {
      for (let b = 0; b < size; b++) to[o + b] = from[i + b];
    }
  }
}

/**
 * Entries per `LOOKUP_BATCH` call: 4,096, fewer when that would take more than 64 MiB. (A
 * million-entry save takes no longer than with 65,536, and a restore splits the file within
 * 2,048 entries of where it would.)
 */
function defaultChunk(map: BpfMap): number {
  return Math.max(1, Math.min(1 << 12, Math.floor((64 << 20) / (map.keySize + map.valueBytes))));
}

/** The parts of a save a restore may split it into: halves, thirds and quarters. */
const BOUNDARY_FRACTIONS = 12;

/**
 * Of `ends` (how many entries the walk had read at the end of each of its calls, increasing),
 * the bucket boundaries a save records: in file order (the file is the walk reversed, so the
 * walk's `p` is the file's `entries - p`), the one nearest to each twelfth of the entries,
 * increasing, without repeats, the file's ends left out.
 */
function pickBucketBoundaries(ends: readonly number[], entries: number): number[] {
  const inFile = ends.map((p) => entries - p).filter((at) => at > 0 && at < entries);
  const picked = new Set<number>();
  for (let k = 1; k < BOUNDARY_FRACTIONS; k++) {
    const at = nearestBoundary(inFile, (entries * k) / BOUNDARY_FRACTIONS);
    if (at !== undefined) picked.add(at);
  }
  return [...picked].sort((a, b) => a - b);
}

/** `map_extra` of `map`, which `BpfMap.info` does not decode. */
function mapExtra(map: BpfMap): bigint {
  const info = ownedBytes(layoutSize(MAP_INFO));
  check(objInfo(map.fd, info), BpfCommand.OBJ_GET_INFO_BY_FD, { subject: map.subject });
  return readU64(new DataView(info.buffer), MAP_INFO.fields.mapExtra);
}

/** The map's definition, as `BPF_MAP_CREATE` would make it again. */
function definitionOf(map: BpfMap): MapDefinition {
  const { info } = map;
  return {
    type: info.type,
    typeName: BPFTOOL_MAP_TYPE_NAMES[info.type] ?? `type ${info.type}`,
    keySize: info.keySize,
    valueSize: info.valueSize,
    maxEntries: info.maxEntries,
    flags: info.flags,
    name: info.name,
    mapExtra: mapExtra(map),
  };
}

/** The map's raw BTF with its key and value type ids and names, or `null` without BTF. */
function btfOf(map: BpfMap): SavedBtf | null {
  const types = loadMapBtf(map);
  if (!types) return null;
  const { info, bytes } = readBtfById(types.btfId);
  if (info.kernelBtf) {
    throw new MapSaveError(
      `${map.subject} is described by the kernel's own BTF ("${info.name}"), which a save cannot carry`,
    );
  }
  return {
    bytes,
    keyTypeId: map.info.btfKeyTypeId,
    valueTypeId: map.info.btfValueTypeId,
    keyType: types.keyType.kind === "void" ? "" : typeName(types.keyType),
    valueType: typeName(types.valueType),
  };
}

/**
 * Reads every entry of `map` into memory, with its definition and BTF, as a save holds them
 * (entries last read first: see `format.ts`). `saveMap` writes what this returns.
 *
 * The walk is exact: hash, LRU hash, array and their per-CPU kinds are read with
 * `LOOKUP_BATCH`, which copies each hash bucket whole under its lock, so every key is read
 * once (and every call ends at a bucket's end: a hash map's save records a few of those ends
 * as `bucketBoundaries`, where a restore may split the file between threads); an LPM trie is read per entry (`GET_NEXT_KEY` + `LOOKUP_ELEM`), each key kept once
 * even when the walk restarts. While the map is written, every key present for the whole walk
 * is saved once; a key added or deleted during the walk may or may not be saved; each value is
 * read as any lookup reads it, at the moment its bucket (or index) is copied, so the file is
 * not a snapshot of one instant, and a value written in place at that very moment (by a
 * program through a pointer, or an array update) may be read half old, half new. Stop the
 * map's writers for a save of one instant.
 *
 * @example
 * ```ts
 * import { BpfMap, readMapForSave } from "../../mod.ts";
 * using map = BpfMap.fromPin("/sys/fs/bpf/counts");
 * const contents = readMapForSave(map);
 * console.log(contents.entries, contents.btf?.valueType);
 * ```
 */
export function readMapForSave(map: BpfMap, options: SaveOptions = {}): SaveContents {
  const why = unsavable(map.info.type);
  if (why) throw new MapSaveError(`Cannot save ${map.subject}: ${why}`);
  const definition = definitionOf(map);
  const btf = btfOf(map);
  const expected = Math.min(map.info.maxEntries, 1 << 16);
  const keys = new Packed(map.keySize, expected);
  const values = new Packed(map.valueBytes, expected);
  let walk: string;
  /** Entries read by the end of each `LOOKUP_BATCH` call: bucket boundaries of hash maps. */
  let ends: number[] | undefined;
  if (BATCH_TYPES.includes(map.info.type)) {
    walk = "LOOKUP_BATCH";
    if (!isArray(map.info.type)) ends = [];
    map.forEachBatch((batch) => {
      keys.append(batch.keys, batch.count);
      values.append(batch.values, batch.count);
      ends?.push(keys.count);
    }, { chunk: options.chunk ?? defaultChunk(map) });
  } else {
    walk = "GET_NEXT_KEY + LOOKUP_ELEM";
    map.forEachEntry((key, value) => {
      keys.append(key, 1);
      values.append(value, 1);
    }, { keys: new KeySet(map.keySize, map.info.maxEntries) });
  }
  const entries = keys.count;
  const reversed = (packed: Packed) => {
    const out = new Uint8Array(entries * packed.size);
    reverseInto(packed.bytes, out, entries, packed.size);
    return out;
  };
  return {
    definition,
    btf,
    cpus: map.cpus,
    valueStride: map.valueStride,
    entries,
    ...(ends ? { bucketBoundaries: pickBucketBoundaries(ends, entries) } : {}),
    keys: reversed(keys),
    values: reversed(values),
    origin: {
      id: map.info.id,
      ...(options.pinned ? { pinned: options.pinned } : {}),
      kernel: kernelRelease(),
      time: new Date().toISOString(),
      walk,
    },
  };
}

/**
 * A save file of `contents`: its header line and its payload (`format.ts`), to be written one
 * after the other.
 *
 * @example
 * ```ts
 * import { BpfMap, encodeSave, readMapForSave } from "../../mod.ts";
 * using map = BpfMap.fromPin("/sys/fs/bpf/counts");
 * const [header, payload] = encodeSave(readMapForSave(map));
 * console.log(header.length + payload.length);
 * ```
 */
export function encodeSave(contents: SaveContents): [header: Uint8Array, payload: Uint8Array] {
  const { btf, entries } = contents;
  const layout = payloadLayout(
    btf?.bytes.byteLength ?? 0,
    entries,
    contents.definition.keySize,
    contents.valueStride * contents.cpus,
  );
  const payload = new Uint8Array(layout.size);
  if (btf) payload.set(btf.bytes, layout.btf[0]);
  payload.set(contents.keys, layout.keys[0]);
  payload.set(contents.values, layout.values[0]);
  return [encodeHeader(contents, layout, payload), payload];
}

function writeAll(sink: ByteSink, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length;) done += sink.writeSync(bytes.subarray(done));
}

/**
 * Saves `map` (definition, BTF and every entry: see `readMapForSave` for what a walk of a
 * map being written guarantees) to the file `to`, or to a sink (`Deno.stdout`, an open
 * `Deno.FsFile`). A file is written beside its path first, then renamed over it: a save that
 * fails leaves no partial file. The format is in `format.ts`; `restoreMap` reads it.
 *
 * @example
 * ```ts
 * import { BpfMap, saveMap } from "../../mod.ts";
 * using map = BpfMap.fromPin("/sys/fs/bpf/counts");
 * const saved = saveMap(map, "/tmp/counts.save", { pinned: "/sys/fs/bpf/counts" });
 * console.log(`${saved.entries} entries, ${saved.bytes} bytes`);
 * ```
 */
export function saveMap(
  map: BpfMap,
  to: string | ByteSink,
  options: SaveOptions = {},
): SaveResult {
  const contents = readMapForSave(map, options);
  const [header, payload] = encodeSave(contents);
  if (typeof to === "string") {
    const partial = `${to}.partial-${Deno.pid}`;
    try {
      using file = Deno.openSync(partial, { write: true, create: true, truncate: true });
      writeAll(file, header);
      writeAll(file, payload);
      Deno.renameSync(partial, to);
    } catch (e) {
      try {
        Deno.removeSync(partial);
      } catch { /* never made, or renamed */ }
      throw e;
    }
  } else {
    writeAll(to, header);
    writeAll(to, payload);
  }
  return {
    entries: contents.entries,
    bytes: header.length + payload.length,
    walk: contents.origin.walk!,
    btf: contents.btf !== null,
  };
}
