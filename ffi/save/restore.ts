/**
 * `restoreMap`: a save (or a dump) back into a map, created when it does not exist, with
 * `BPF_MAP_UPDATE_BATCH` in large chunks, in parts written at once from several threads when
 * the restore is large (`_parallel_write.ts`). The whole input is parsed and checked, and
 * every entry put into the target's layout, before the first write; a write the kernel
 * refuses midway stops the restore with the count written and the first entry not written.
 *
 * @module
 */

import { compileDecoder } from "../btf/decode.ts";
import { BtfValueError, compileEncoder } from "../btf/encode.ts";
import { createMapWithBtf, loadBtf, loadMapBtf } from "../btf/kernel.ts";
import { parseBtf } from "../btf/parse.ts";
import { sizeof } from "../btf/size.ts";
import type { BtfType } from "../btf/types.ts";
import { KeySet } from "../dump/verify.ts";
import { BpfMap, type OpenOptions } from "../map/map.ts";
import type { BackendName } from "../sys/backend.ts";
import { backend as pickBackend } from "../sys/backends.ts";
import { roundUp8 } from "../sys/buffers.ts";
import {
  BpfCommand,
  isArray,
  isPerCpu,
  MapFlag,
  MapType,
  type MapTypeName,
  mapTypeName,
} from "../sys/constants.ts";
import { BpfArgumentError, BpfError, Errno } from "../sys/errors.ts";
import { pathExists, possibleCpus } from "../sys/system.ts";
import {
  type Carry,
  CarryMisfit,
  compileCarry,
  DropPaths,
  isZero,
  layoutSignature,
} from "./carry.ts";
import { type PartOutcome, writeBatches } from "./_batch_write.ts";
import { partCount, partStarts, PartWriters } from "./_parallel_write.ts";
import { hexBytes, MapSaveError } from "./errors.ts";
import type { MapDefinition, SaveContents } from "./format.ts";
import {
  type JsonlEntry,
  type PackedEntries,
  readRestoreSource,
  type RestoreSource,
  savedEntries,
  type SourceKind,
} from "./sources.ts";

/**
 * Where a restore writes: an open map, or bpftool's `pinned PATH`, `id N` or `name NAME`.
 * A pinned path where nothing is pinned gets a new map, made from the save's definition and
 * BTF and pinned there once it is filled; a name no map has gets a new map of that name
 * (not pinned: it lives while the returned map is open); an id no map has is an error.
 */
export type RestoreTarget = BpfMap | { pinned: string } | { id: number } | { name: string };

/** Options of `restoreMap`. */
export interface RestoreOptions {
  /**
   * Member paths (`value.stats[2].bytes`, `[*]` for every element) not carried when the
   * target's BTF differs from the saved one: the target gets zero there, whatever the save
   * held. Without it, a member the target lacks that holds data, or a value the target's
   * type cannot hold, stops the restore before any write.
   */
  drop?: readonly string[];
  /** Entries per `UPDATE_BATCH` call (default 1,048,576). */
  chunk?: number;
  /** The backend that opens or creates the map. */
  backend?: BackendName;
}

/** What `restoreMap` did. */
export interface RestoreResult {
  /** The map written, open: the one given, or the one opened or created (close it). */
  map: BpfMap;
  /** Whether the map was created for the restore. */
  created: boolean;
  /** Where the created map was pinned, if it was. */
  pinned?: string;
  /** Entries written. */
  entries: number;
  /** The kind of input. */
  source: SourceKind;
  /** Whether entries were carried member by member between two BTF types. */
  carried: boolean;
  /**
   * Each drop path, and how many values (keys, or values: each CPU's, for per-CPU maps) held
   * data there that was not zero and was dropped.
   */
  dropped: Record<string, number>;
  /** `UPDATE_BATCH` calls made (or `UPDATE_ELEM` calls, for maps without batch updates). */
  calls: number;
  /** Parts written at once, each from its own thread (1: the restore wrote from one thread). */
  parts: number;
}

/** Entries per `UPDATE_BATCH` call by default: the C reference's chunk. */
const DEFAULT_RESTORE_CHUNK = 1 << 20;

/** The map being written, as the packing needs to know it. */
interface Shape {
  /** How messages name it. */
  subject: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  cpus: number;
  valueStride: number;
  /** Its BTF types; `undefined` without BTF (or without a key type). */
  keyType?: BtfType;
  valueType?: BtfType;
}

function shapeOfMap(map: BpfMap): Shape {
  const btf = loadMapBtf(map);
  return {
    subject: map.subject,
    type: map.info.type,
    keySize: map.keySize,
    valueSize: map.valueSize,
    maxEntries: map.info.maxEntries,
    cpus: map.cpus,
    valueStride: map.valueStride,
    keyType: btf && btf.keyType.kind !== "void" ? btf.keyType : undefined,
    valueType: btf?.valueType,
  };
}

/** The saved BTF's key and value types (`undefined` where it has none). */
function savedTypes(save: SaveContents): { keyType?: BtfType; valueType?: BtfType } {
  if (!save.btf) return {};
  const btf = parseBtf(save.btf.bytes);
  const typed = (id: number, size: number, what: string) => {
    if (id === 0) return undefined;
    const type = btf.typeById(id);
    if (sizeof(type) !== size) {
      throw new MapSaveError(
        `Corrupt save file: its ${what} type (id ${id}) is ${
          sizeof(type)
        } bytes, its ${what}s ${size}`,
      );
    }
    return type;
  };
  return {
    keyType: typed(save.btf.keyTypeId, save.definition.keySize, "key"),
    valueType: typed(save.btf.valueTypeId, save.definition.valueSize, "value"),
  };
}

function shapeOfDefinition(d: MapDefinition, save: SaveContents, name?: string): Shape {
  const perCpu = isPerCpu(d.type);
  return {
    subject: `the new ${d.typeName} map${name ? ` "${name}"` : ""}`,
    type: d.type,
    keySize: d.keySize,
    valueSize: d.valueSize,
    maxEntries: d.maxEntries,
    cpus: perCpu ? possibleCpus() : 1,
    valueStride: perCpu ? roundUp8(d.valueSize) : d.valueSize,
    ...savedTypes(save),
  };
}

/**
 * Buffers read or copied here into memory of their own: their entries go to the kernel in
 * place. Entries in other buffers are copied first. Each is a `SharedArrayBuffer`, off the V8
 * heap and never moved (as `ownedBytes` are), which the Workers of a parallel restore see
 * without a copy.
 */
const OWNED = new WeakSet<ArrayBufferLike>();

function ownedBuffer(size: number): Uint8Array<SharedArrayBuffer> {
  const bytes = new Uint8Array(new SharedArrayBuffer(Math.max(size, 1)), 0, size);
  OWNED.add(bytes.buffer);
  return bytes;
}

/** `bytes` itself when its buffer is one of `OWNED`, else a copy in one. */
function inOwned(bytes: Uint8Array): Uint8Array {
  if (OWNED.has(bytes.buffer)) return bytes;
  const copy = ownedBuffer(bytes.byteLength);
  copy.set(bytes);
  return copy;
}

/**
 * Reads a whole file into owned memory, which the kernel may be handed: a regular file at its
 * size, anything else (a pipe, `/dev/stdin`) to its end.
 */
function readOwned(path: string): Uint8Array<SharedArrayBuffer> {
  using file = Deno.openSync(path);
  const stat = file.statSync();
  if (!stat.isFile) return readToEnd(file);
  const bytes = ownedBuffer(stat.size);
  for (let done = 0; done < stat.size;) {
    const n = file.readSync(bytes.subarray(done));
    if (n === null || n === 0) {
      throw new MapSaveError(
        `"${path}" shrank from ${stat.size} to ${done} bytes while it was read`,
      );
    }
    done += n;
  }
  return bytes;
}

/** Reads `from` to its end, into owned memory. */
function readToEnd(
  from: { readSync(p: Uint8Array): number | null },
): Uint8Array<SharedArrayBuffer> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const chunk = new Uint8Array(1 << 20);
    const n = from.readSync(chunk);
    if (n === null) break;
    chunks.push(chunk.subarray(0, n));
    size += n;
  }
  const bytes = ownedBuffer(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return bytes;
}

/**
 * Reads and parses a restore's input file (`"-"`: standard input) into memory the kernel may
 * be handed, so that `restoreMap` writes a save's entries from where they lie.
 *
 * @example
 * ```ts
 * import { readRestoreFile } from "../../mod.ts";
 * const source = readRestoreFile("/tmp/counts.save");
 * if (source.kind === "save") console.log(source.save.entries, source.save.origin.pinned);
 * ```
 */
export function readRestoreFile(path: string): RestoreSource {
  return readRestoreSource(path === "-" ? readToEnd(Deno.stdin) : readOwned(path));
}

/** The input parsed; a file's bytes are read into owned memory and used in place. */
function parseSource(source: string | Uint8Array | RestoreSource): RestoreSource {
  if (typeof source === "string") return readRestoreFile(source);
  if (source instanceof Uint8Array) return readRestoreSource(inOwned(source));
  return source;
}

/** What the target is: an open map, or one to create (pinned at `pinned`, named `name`). */
type Resolved = { map: BpfMap; opened: boolean } | { create: { pinned?: string; name?: string } };

function resolveTarget(
  target: RestoreTarget | undefined,
  source: RestoreSource,
  open: OpenOptions,
): Resolved {
  if (target instanceof BpfMap) return { map: target, opened: false };
  if (target === undefined) {
    if (source.kind !== "save") {
      throw new MapSaveError(
        "A dump holds no map definition: give the map to restore it into (pinned PATH, id N or name NAME)",
      );
    }
    const pinned = source.save.origin.pinned;
    return pinned && pathExists(pinned)
      ? { map: BpfMap.fromPin(pinned, open), opened: true }
      : { create: { pinned } };
  }
  if ("pinned" in target) {
    return pathExists(target.pinned)
      ? { map: BpfMap.fromPin(target.pinned, open), opened: true }
      : { create: { pinned: target.pinned } };
  }
  if ("id" in target) {
    try {
      return { map: BpfMap.fromId(target.id, open), opened: true };
    } catch (e) {
      if (e instanceof BpfError && e.code === "ENOENT") {
        throw new MapSaveError(
          `No map has id ${target.id}: a new map's id cannot be chosen, restore into pinned PATH or name NAME to create one`,
        );
      }
      throw e;
    }
  }
  const named: BpfMap[] = [];
  for (const id of BpfMap.ids(open)) {
    try {
      const map = BpfMap.fromId(id, open);
      if (map.info.name === target.name) named.push(map);
      else map.close();
    } catch { /* gone meanwhile */ }
  }
  if (named.length > 1) {
    const ids = named.map((m) => m.info.id).join(", ");
    for (const map of named) map.close();
    throw new MapSaveError(
      `${named.length} maps are named "${target.name}" (ids ${ids}): restore into one by id N or pinned PATH`,
    );
  }
  return named.length ? { map: named[0], opened: true } : { create: { name: target.name } };
}

/** `text` with its first letter in capitals, to start a message. */
function capitalized(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** "a hash", "an array", "an lru_hash". */
function article(name: string): string {
  return `${/^[aeiolu]/i.test(name) ? "an" : "a"} ${name}`;
}

/** Why a map cannot be created from `d`, or `undefined`. */
function uncreatable(d: MapDefinition): string | undefined {
  if (!(Object.values(MapType) as number[]).includes(d.type)) {
    return `this toolkit creates ${
      Object.keys(MapType).join(", ")
    } maps, not ${d.typeName}: create the map first, then restore into it`;
  }
  if (d.flags & MapFlag.RDONLY) {
    return "the saved map was made read-only for user space (BPF_F_RDONLY), so it could not be filled: restore into an existing map";
  }
  if (d.mapExtra !== 0n) {
    return `the saved map has map_extra ${d.mapExtra}, which creation cannot set`;
  }
  return undefined;
}

/** How one side (key or value) of an entry becomes the target's bytes. */
interface Side {
  /** Writes entry `i`'s key, or value (every CPU slot), at `offset` of `out`. */
  write(i: number, out: Uint8Array, view: DataView, offset: number): void;
  /** Whether it carries members through BTF. */
  carries: boolean;
}

/** Turns a misfit from the carrier or the encoder into a one-line refusal. */
function carryError(e: unknown, side: string, entry: string, target: string): unknown {
  if (e instanceof CarryMisfit && e.drop === "") {
    return new MapSaveError(`The ${side} of ${entry} does not fit ${target}: ${e.detail}`);
  }
  if (e instanceof CarryMisfit) {
    const at = `${side}${e.at}`;
    return new MapSaveError(
      `Cannot carry ${at} of ${entry} to ${target}: ${e.detail}; --drop ${e.drop} restores without it`,
    );
  }
  if (e instanceof BtfValueError) {
    const at = e.path ? `${side}${e.path.startsWith("[") ? "" : "."}${e.path}` : side;
    return new MapSaveError(
      `Cannot carry ${at} of ${entry} to ${target}: ${e.detail}; --drop ${at} restores it as zero`,
    );
  }
  return e;
}

/**
 * A side of packed source entries: copied byte for byte when the layouts match (per-CPU
 * slots moved to the target's stride and CPUs), else decoded with the saved type, carried
 * by name and encoded with the target's.
 */
function packedSide(
  source: PackedEntries,
  side: "key" | "value",
  from: BtfType | undefined,
  to: BtfType | undefined,
  shape: Shape,
  drops: DropPaths,
): Side {
  const key = side === "key";
  const size = key ? source.keySize : source.valueSize;
  const stride = key ? source.keySize : source.valueStride;
  const slots = key ? 1 : source.cpus;
  const toSize = key ? shape.keySize : shape.valueSize;
  const toStride = key ? shape.keySize : shape.valueStride;
  const toSlots = key ? 1 : shape.cpus;
  const bytes = key ? source.keys : source.values;
  const carry = from && to && layoutSignature(from) !== layoutSignature(to)
    ? compileCarry(from, to, side, drops)
    : undefined;
  if (!carry && size !== toSize) {
    throw new MapSaveError(
      `The entries have ${size}-byte ${side}s, ${shape.subject} takes ${toSize}-byte ones${
        from && !to ? ` and has no BTF to carry them by member` : ""
      }: restore into a map of the same shape`,
    );
  }
  const decode = carry && compileDecoder(from!);
  const encode = carry && compileEncoder(to!);
  const sourceView = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    carries: carry !== undefined,
    write(i, out, view, offset) {
      const base = i * stride * slots;
      for (let cpu = 0; cpu < slots; cpu++) {
        const at = base + cpu * stride;
        if (cpu >= toSlots) {
          if (!bytes.subarray(at, at + size).every((b) => b === 0)) {
            throw new MapSaveError(
              `The entries hold ${slots} CPUs' values, ${shape.subject} ${toSlots}: CPU ${cpu} holds data, which it has no slot for`,
            );
          }
          continue;
        }
        const to = offset + cpu * toStride;
        if (carry) encode!(carry(decode!(sourceView, at)), view, to);
        else out.set(bytes.subarray(at, at + size), to);
      }
    },
  };
}

/**
 * Bytes of a key or value of a map without BTF, as `dump --jsonl` writes them; a misfit
 * without a drop path (the bytes have no members) when the value is not one.
 */
function rawJson(value: unknown, size: number, out: Uint8Array, offset: number): void {
  const view = new DataView(out.buffer, out.byteOffset + offset, size);
  if (typeof value === "string" && /^0x([0-9a-f]{2})+$/i.test(value)) {
    if (value.length !== 2 + size * 2) {
      throw new CarryMisfit(`expected ${size} bytes, got ${(value.length - 2) / 2}`, "");
    }
    for (let b = 0; b < size; b++) {
      view.setUint8(b, parseInt(value.slice(2 + b * 2, 4 + b * 2), 16));
    }
    return;
  }
  const integer = typeof value === "string" && /^-?\d+$/.test(value)
    ? BigInt(value)
    : typeof value === "number" && Number.isSafeInteger(value)
    ? BigInt(value)
    : undefined;
  const bits = BigInt(size * 8);
  if (
    size > 8 || integer === undefined || integer >= 1n << bits || integer < -(1n << (bits - 1n))
  ) {
    throw new CarryMisfit(
      `expected ${
        size > 8 ? `a hex string of ${size} bytes ("0x0a0b...")` : `an integer of ${size} bytes`
      }, got ${JSON.stringify(value)}`,
      "",
    );
  }
  const u = BigInt.asUintN(size * 8, integer);
  for (let b = 0; b < size; b++) view.setUint8(b, Number((u >> BigInt(8 * b)) & 0xffn));
}

/** A side of typed JSON lines: through the target's BTF when it has it, else raw. */
function jsonlSide(
  lines: JsonlEntry[],
  side: "key" | "value",
  to: BtfType | undefined,
  shape: Shape,
  drops: DropPaths,
): Side {
  const key = side === "key";
  const size = key ? shape.keySize : shape.valueSize;
  const stride = key ? shape.keySize : shape.valueStride;
  const carry: Carry | undefined = to && compileCarry(undefined, to, side, drops);
  const encode = to && compileEncoder(to);
  const one = (value: unknown, out: Uint8Array, view: DataView, offset: number) => {
    if (carry) encode!(carry(value), view, offset);
    else rawJson(value, size, out, offset);
  };
  return {
    carries: false,
    write(i, out, view, offset) {
      const line = lines[i];
      if (key) return one(line.key, out, view, offset);
      if (line.perCpu !== isPerCpu(shape.type)) {
        throw new MapSaveError(
          `Line ${line.line} has ${
            line.perCpu ? "per-CPU values" : "one value"
          }, ${shape.subject} is ${line.perCpu ? "not " : ""}a per-CPU map`,
        );
      }
      const values = line.perCpu ? line.value as unknown[] : [line.value];
      values.forEach((value, cpu) => {
        if (cpu < shape.cpus) return one(value, out, view, offset + cpu * stride);
        if (!isZero(value)) {
          throw new MapSaveError(
            `Line ${line.line} holds ${values.length} CPUs' values, ${shape.subject} ${shape.cpus}: CPU ${cpu} holds data, which it has no slot for`,
          );
        }
      });
    },
  };
}

/** Entries in the target's layout, in the order they are to be written. */
interface Packed {
  keys: Uint8Array;
  values: Uint8Array;
  count: number;
  /** The input's index (0-based) of the entry written `i`th. */
  inputIndex: (i: number) => number;
  /** How messages name the input's entry `i`. */
  describe: (i: number) => string;
  /** How messages name the input's entries `first` to `last` (`first <= last`). */
  describeRange: (first: number, last: number) => string;
  carried: boolean;
  /** Whether the input came from an exact walk, so that no key can be there twice. */
  distinct: boolean;
}

/** Lays every entry out for the target, or throws the first reason it cannot be. */
function pack(source: RestoreSource, shape: Shape, drops: DropPaths): Packed {
  let count: number;
  let keySide: Side;
  let valueSide: Side;
  let describe: (i: number) => string;
  let describeRange: (first: number, last: number) => string;
  // Dumps list entries in the walk's order: write them last first, as saves are laid out, so
  // that a hash bucket's chain is rebuilt in the order it had (see format.ts).
  let reversed = true;
  if (source.kind === "jsonl") {
    const { lines } = source;
    count = lines.length;
    keySide = jsonlSide(lines, "key", shape.keyType, shape, drops);
    valueSide = jsonlSide(lines, "value", shape.valueType, shape, drops);
    describe = (i) => `line ${lines[i].line}`;
    describeRange = (first, last) => `lines ${lines[first].line} to ${lines[last].line}`;
  } else {
    const entries = source.kind === "save" ? savedEntries(source.save) : source.entries;
    const types = source.kind === "save" ? savedTypes(source.save) : {};
    count = entries.count;
    if (source.kind === "bpftool" && count > 0 && entries.perCpu !== isPerCpu(shape.type)) {
      throw new MapSaveError(
        `The dump's entries have ${
          entries.perCpu ? "per-CPU values" : "one value each"
        }, ${shape.subject} is ${entries.perCpu ? "not " : ""}a per-CPU map`,
      );
    }
    if (count === 0) entries.keySize = shape.keySize;
    if (count === 0) entries.valueSize = shape.valueSize;
    keySide = packedSide(entries, "key", types.keyType, shape.keyType, shape, drops);
    valueSide = packedSide(entries, "value", types.valueType, shape.valueType, shape, drops);
    const of = source.kind === "save" ? " of the save" : "";
    describe = (i) => `entry ${i}${of}`;
    describeRange = (first, last) => `entries ${first} to ${last}${of}`;
    reversed = source.kind === "bpftool";
    const inPlace = !keySide.carries && !valueSide.carries && entries.cpus === shape.cpus &&
      entries.valueStride === shape.valueStride && !reversed;
    if (inPlace) {
      checkDrops(drops, false);
      return {
        keys: inOwned(entries.keys),
        values: inOwned(entries.values),
        count,
        inputIndex: (i) => i,
        describe,
        describeRange,
        carried: false,
        distinct: source.kind === "save",
      };
    }
  }
  const carried = keySide.carries || valueSide.carries;
  // Both types known: a drop path that names nothing is told before any entry is carried.
  if (source.kind !== "jsonl") checkDrops(drops, carried);
  const valueBytes = shape.valueStride * shape.cpus;
  const keys = ownedBuffer(count * shape.keySize);
  const values = ownedBuffer(count * valueBytes);
  const keyView = new DataView(keys.buffer);
  const valueView = new DataView(values.buffer);
  for (let i = 0; i < count; i++) {
    const at = reversed ? count - 1 - i : i;
    const entry = describe(i);
    try {
      keySide.write(i, keys, keyView, at * shape.keySize);
    } catch (e) {
      throw carryError(e, "key", entry, shape.subject);
    }
    try {
      valueSide.write(i, values, valueView, at * valueBytes);
    } catch (e) {
      throw carryError(
        e,
        "value",
        `${entry} (key ${hexBytes(keyAt(keys, at, shape))})`,
        shape.subject,
      );
    }
  }
  // Typed JSON has no saved type: the members it holds show only as its lines are read.
  if (source.kind === "jsonl") checkDrops(drops, true);
  return {
    keys,
    values,
    count,
    inputIndex: (i) => reversed ? count - 1 - i : i,
    describe,
    describeRange,
    carried,
    distinct: source.kind === "save" && !keySide.carries,
  };
}

/** Refuses drop paths that can do nothing: no carrying, or a path no member has. */
function checkDrops(drops: DropPaths, carrying: boolean): void {
  const given = [...drops.dropped.keys()];
  if (given.length === 0) return;
  if (!carrying) {
    throw new MapSaveError(
      `--drop ${
        given[0]
      }: the entries' types match the target's byte for byte, so nothing is carried by member and nothing can be dropped`,
    );
  }
  const unused = given.find((path) => !drops.used.has(path));
  if (unused !== undefined) {
    throw new MapSaveError(
      `--drop ${unused} names no member of the saved or the target type (paths start with "key" or "value": value.stats[2].bytes, value.flows[*].port)`,
    );
  }
}

function keyAt(keys: Uint8Array, i: number, shape: { keySize: number }): Uint8Array {
  return keys.subarray(i * shape.keySize, (i + 1) * shape.keySize);
}

/** What the target must allow before the first write: room, array indices, distinct keys. */
function checkFits(packed: Packed, shape: Shape): void {
  const { count, keys } = packed;
  if (isArray(shape.type)) {
    const view = new DataView(keys.buffer, keys.byteOffset, keys.byteLength);
    for (let i = 0; i < count; i++) {
      const index = view.getUint32(i * 4, true);
      if (index >= shape.maxEntries) {
        throw new MapSaveError(
          `${
            capitalized(packed.describe(packed.inputIndex(i)))
          } has index ${index}, past the end of ${shape.subject} (max_entries ${shape.maxEntries})`,
        );
      }
    }
  } else if (count > shape.maxEntries) {
    throw new MapSaveError(
      `${count} entries do not fit ${shape.subject} (max_entries ${shape.maxEntries}): restore into a larger map${
        shape.type === MapType.lru_hash || shape.type === MapType.lru_percpu_hash
          ? " (an LRU map would evict entries as they are written)"
          : ""
      }`,
    );
  }
  if (packed.distinct || count < 2) return;
  const seen = new KeySet(shape.keySize, count);
  let repeat = -1;
  seen.addPacked(keys, count, (i) => {
    if (repeat < 0) repeat = i;
  });
  if (repeat >= 0) {
    throw new MapSaveError(
      `The key ${hexBytes(keyAt(keys, repeat, shape))} is given twice (again at ${
        packed.describe(packed.inputIndex(repeat))
      }): a restore writes each key once`,
    );
  }
}

/** Creates the target from the save's definition and BTF. */
function createTarget(save: SaveContents, name: string | undefined, open: OpenOptions): BpfMap {
  const d = save.definition;
  const why = uncreatable(d);
  if (why) throw new MapSaveError(`Cannot create the map: ${why}`);
  const spec = {
    type: mapTypeName(d.type) as MapTypeName,
    keySize: d.keySize,
    valueSize: d.valueSize,
    maxEntries: d.maxEntries,
    flags: d.flags,
    name: name ?? d.name,
  };
  if (!save.btf) return BpfMap.create(spec, open);
  using btf = loadBtf(save.btf.bytes);
  return createMapWithBtf(
    { ...spec, btf, keyTypeId: save.btf.keyTypeId, valueTypeId: save.btf.valueTypeId },
    open,
  );
}

/** What `UPDATE_BATCH` fails with, before any element, on a map type without it. */
const NO_BATCH_UPDATE = new Set<number>([Errno.EINVAL, Errno.ENOTSUPP, Errno.EOPNOTSUPP]);

/**
 * The map types a restore may write in parts at once. Not LRU maps: each CPU takes free
 * elements from the map's list in batches of 128 for itself, and one that finds fewer there
 * evicts entries to make up its batch, even while other CPUs hold free ones: written from
 * several CPUs at once, a map filled near its size would lose entries just written.
 */
const PARALLEL_TYPES: ReadonlySet<number> = new Set([
  MapType.hash,
  MapType.percpu_hash,
  MapType.array,
  MapType.percpu_array,
]);

/** Why the kernel refused a write, as a `BpfError` with the fix where it is known. */
function writeError(errno: number, command: number, map: BpfMap): BpfError {
  return new BpfError({
    errno,
    command,
    subject: map.subject,
    hint: errno === Errno.E2BIG
      ? `the map is full (max_entries ${map.info.maxEntries})`
      : errno === Errno.EPERM
      ? "the map is frozen or read-only for user space"
      : undefined,
  });
}

function entryCount(source: RestoreSource): number {
  if (source.kind === "save") return source.save.entries;
  return source.kind === "bpftool" ? source.entries.count : source.lines.length;
}

/**
 * Where the parts a restore writes at once start (`[0]`: one part, from this thread). A large
 * restore (`partCount`) into a hash or array map (`PARALLEL_TYPES`) is split into one part per
 * CPU. The kernel adds an entry at the head of its hash bucket, so the entries of one bucket
 * must go in in the file's order for a dump to list them as before (see `format.ts`): two
 * parts written at once would interleave a bucket that straddles the point between them. So:
 *
 * - into an array, or a map this restore created (it has a hash seed of its own, so there is
 *   no earlier order to keep), parts split anywhere, into equal shares;
 * - into a hash map that exists, only at the save's `bucketBoundaries` (the nearest to each
 *   equal share), where no bucket of the saved map straddles;
 * - without them (a dump, a save made before saves recorded them), from one thread.
 */
function planParts(source: RestoreSource, shape: Shape, created: boolean): number[] {
  const count = entryCount(source);
  const parts = PARALLEL_TYPES.has(shape.type) ? partCount(count) : 1;
  if (parts < 2) return [0];
  if (created || isArray(shape.type)) return partStarts(count, parts);
  const boundaries = source.kind === "save" ? source.save.bucketBoundaries : undefined;
  return boundaries ? partStarts(count, parts, boundaries) : [0];
}

/** What writing the entries took: calls made, and parts written at once. */
interface WriteCount {
  calls: number;
  parts: number;
}

/**
 * Writes the packed entries with `UPDATE_BATCH` in chunks, straight from their buffers: in
 * the parts starting at `starts` at once, with `writers` (from one thread when they could not
 * load), or per entry with `UPDATE_ELEM` when the map type has no batch update. Throws the
 * kernel's refusal with the count written (`stopError`).
 */
async function writeEntries(
  map: BpfMap,
  packed: Packed,
  chunk: number,
  starts: readonly number[],
  writers: PartWriters | undefined,
): Promise<WriteCount> {
  const { keys, values, count } = packed;
  const entries = { keys, values, count, keySize: map.keySize, valueBytes: map.valueBytes };
  const parallel = starts.length > 1 && writers !== undefined && await writers.ready();
  if (!parallel) starts = [0];
  const outcomes = parallel
    ? await writers.write(map, entries, starts, chunk)
    : [writeBatches(pickBackend(map.backend), map.fd, entries, chunk)];
  const calls = outcomes.reduce((sum, outcome) => sum + outcome.calls, 0);
  if (outcomes.every((o) => o.written === 0 && NO_BATCH_UPDATE.has(o.errno))) {
    return { calls: calls + writeEach(map, packed), parts: 1 };
  }
  if (outcomes.some((o) => o.errno !== 0 || o.halted)) {
    throw stopError(map, packed, starts, outcomes, BpfCommand.MAP_UPDATE_BATCH);
  }
  return { calls, parts: starts.length };
}

/** Writes every entry with `UPDATE_ELEM`, for map types without `UPDATE_BATCH`. */
function writeEach(map: BpfMap, packed: Packed): number {
  const { keySize, valueBytes } = map;
  for (let i = 0; i < packed.count; i++) {
    try {
      map.update(
        packed.keys.subarray(i * keySize, (i + 1) * keySize),
        packed.values.subarray(i * valueBytes, (i + 1) * valueBytes),
      );
    } catch (e) {
      if (!(e instanceof BpfError)) throw e;
      const outcome = { written: i, errno: e.errno, halted: false, calls: i + 1 };
      throw stopError(map, packed, [0], [outcome], BpfCommand.MAP_UPDATE_ELEM);
    }
  }
  return packed.count;
}

/**
 * The refusal of a restore the kernel stopped: the count written, the first entry (lowest
 * index) not written and its key, the kernel's reason (the first part refused), and, for
 * parts written at once, the ranges of entries they wrote.
 */
function stopError(
  map: BpfMap,
  packed: Packed,
  starts: readonly number[],
  outcomes: readonly PartOutcome[],
  command: number,
): MapSaveError {
  const { count } = packed;
  const ends = starts.map((start, i) => start + outcomes[i].written);
  const written = outcomes.reduce((sum, outcome) => sum + outcome.written, 0);
  const index = ends.find((end, i) => end < (starts[i + 1] ?? count))!;
  // A part stops short only when refused, or halted by another part refused: one has an errno.
  const refusedPart = outcomes.findIndex((outcome) => outcome.errno !== 0);
  const error = writeError(outcomes[refusedPart].errno, command, map);
  const ranges = starts
    .map((start, i): [number, number] => [start, ends[i]])
    .filter(([start, end]) => end > start);
  const stay = `the ${written} written stay in the map`;
  const detail = starts.length === 1
    ? `the kernel refused the next, ${entryName(map, packed, index)}: ${error.message}; ${stay}`
    : `${starts.length} parts were written at once; ${
      firstNotWritten(map, packed, index, ends[refusedPart])
    }: ${error.message}; ${stay}: ${describeRanges(packed, ranges)}`;
  const key = keyAt(packed.keys, index, map).slice();
  return new MapSaveError(
    `Restore into ${map.subject} stopped after ${written} of ${count} entries: ${detail}`,
    { cause: error, stop: { written, total: count, index, key, ranges } },
  );
}

/** How messages name the entry written `i`th: its key, and where the input has it. */
function entryName(map: BpfMap, packed: Packed, i: number): string {
  return `key ${hexBytes(keyAt(packed.keys, i, map))} (${packed.describe(packed.inputIndex(i))})`;
}

/**
 * The first entry not written (`index`), and the entry refused (`refused`): the same, or, when
 * `index`'s part was halted, one of a later part.
 */
function firstNotWritten(map: BpfMap, packed: Packed, index: number, refused: number): string {
  const name = (i: number) => entryName(map, packed, i);
  return refused === index
    ? `the kernel refused ${name(index)}, the first entry not written`
    : `the first entry not written is ${
      name(index)
    }, where its part stopped because the kernel refused ${name(refused)} in another`;
}

/** How messages name the entries written, `ranges` of the order written, in the input's terms. */
function describeRanges(packed: Packed, ranges: readonly [number, number][]): string {
  if (ranges.length === 0) return "none";
  return joined(ranges).map(([start, end]) => {
    const [a, b] = [packed.inputIndex(start), packed.inputIndex(end - 1)];
    return packed.describeRange(Math.min(a, b), Math.max(a, b));
  }).join(", ");
}

/** `ranges` (increasing) with those that meet made one. */
function joined(ranges: readonly [number, number][]): [number, number][] {
  const out: [number, number][] = [];
  for (const [start, end] of ranges) {
    if (out.length > 0 && out[out.length - 1][1] === start) out[out.length - 1][1] = end;
    else out.push([start, end]);
  }
  return out;
}

/**
 * The shape of the map a restore writes: the target's, checked against the save's type, or
 * the one to create from the save (refused for a dump, or a definition that cannot be made).
 */
function targetShape(resolved: Resolved, parsed: RestoreSource): Shape {
  if ("map" in resolved) {
    const shape = shapeOfMap(resolved.map);
    if (parsed.kind === "save" && parsed.save.definition.type !== shape.type) {
      throw new MapSaveError(
        `${capitalized(shape.subject)} is ${article(mapTypeName(shape.type))} map, the save holds ${
          article(parsed.save.definition.typeName)
        } map: restore into a map of the same type, or a pinned path where nothing is pinned to create one`,
      );
    }
    return shape;
  }
  const { create } = resolved;
  if (parsed.kind !== "save") {
    throw new MapSaveError(
      `${
        create.pinned
          ? `Nothing is pinned at "${create.pinned}"`
          : `No map is named "${create.name}"`
      }, and a dump holds no map definition to create it from: create the map first, or restore a save (map save)`,
    );
  }
  const why = uncreatable(parsed.save.definition);
  if (why) throw new MapSaveError(`Cannot create the map: ${why}`);
  return shapeOfDefinition(parsed.save.definition, parsed.save, create.name);
}

/**
 * Restores a save (`saveMap`'s file) or a dump into `target`.
 *
 * - `source`: a file path, its bytes, or a parsed `RestoreSource`. Besides saves, a restore
 *   reads `bpftool -j map dump` (and `-p`, `dump --json`, `dump --pretty`) and
 *   `dump --jsonl` output (see `sources.ts`); those have no definition and go into a map
 *   that exists.
 * - `target`: an open map, or bpftool's `pinned PATH`, `id N`, `name NAME` (see
 *   `RestoreTarget`). A pinned path where nothing is pinned gets a new map with the save's
 *   definition and BTF, pinned there once every entry is written (a failed restore pins
 *   nothing). Without a target, a save goes back where it was saved from by its pin
 *   (recorded in the file), or into a new map that is not pinned.
 * - An existing map must have the save's type, and its key and value sizes, unless both
 *   have BTF: then entries are carried member by member (see `carry.ts`), members the
 *   target adds are zero, and anything that cannot be carried stops the restore before any
 *   write, naming the member, unless `options.drop` names it.
 *
 * The input is parsed and checked whole, and every entry laid out for the target, before
 * the first write. Entries go in with `UPDATE_BATCH` (`BPF_ANY`: existing keys are
 * overwritten, other keys of the map stay), a million a call.
 *
 * A large restore (200,000 entries and more: `partCount`) into a hash or array map is
 * written in parts at once, one per CPU (at most four, each of 100,000 entries or more): this thread writes one, Workers the others (started as
 * the restore begins, they load while it reads and checks; `result.parts` says how many
 * parts there were). A dump after a restore into the map a save came from lists the entries
 * in the order it listed them before, because each hash bucket's entries go in in the file's
 * order: into a hash map that exists, parts are split only at bucket boundaries the save
 * recorded, and a restore of an input without them (a dump, an older save) writes from one
 * thread; into an array, or a map the restore created (its own hash seed: no order to keep),
 * parts split anywhere. LRU maps are written from one thread (see `PARALLEL_TYPES`).
 *
 * A write the kernel refuses stops its part there, and the other parts before their next
 * call; the restore then fails with a `MapSaveError` whose `stop` gives the count written
 * (they stay), the first entry not written (the lowest index) with its key, and the ranges
 * of entries each part wrote.
 *
 * @example
 * ```ts
 * import { restoreMap } from "../../mod.ts";
 * const result = await restoreMap("/tmp/counts.save", { pinned: "/sys/fs/bpf/counts" });
 * console.log(`${result.entries} entries, map ${result.map.info.id}${result.created ? " (new)" : ""}`);
 * result.map.close();
 * ```
 */
export async function restoreMap(
  source: string | Uint8Array | RestoreSource,
  target?: RestoreTarget,
  options: RestoreOptions = {},
): Promise<RestoreResult> {
  const chunk = options.chunk ?? DEFAULT_RESTORE_CHUNK;
  if (!Number.isInteger(chunk) || chunk < 1) {
    throw new BpfArgumentError(`Invalid chunk "${chunk}": expected a whole number from 1`);
  }
  const parsed = parseSource(source);
  const open = { backend: options.backend };
  const resolved = resolveTarget(target, parsed, open);
  let map: BpfMap | undefined = "map" in resolved ? resolved.map : undefined;
  const create = "create" in resolved ? resolved.create : undefined;
  try {
    const shape = targetShape(resolved, parsed);
    const starts = planParts(parsed, shape, create !== undefined);
    // Started now, the Workers load while the entries are laid out and the map is created.
    using writers = PartWriters.start(starts.length - 1);
    const drops = new DropPaths(options.drop ?? []);
    const packed = pack(parsed, shape, drops);
    checkFits(packed, shape);
    if (!map) map = createTarget((parsed as { save: SaveContents }).save, create!.name, open);
    const { calls, parts } = await writeEntries(map, packed, chunk, starts, writers);
    if (create?.pinned) map.pin(create.pinned);
    return {
      map,
      created: create !== undefined,
      ...(create?.pinned ? { pinned: create.pinned } : {}),
      entries: packed.count,
      source: parsed.kind,
      carried: packed.carried,
      dropped: Object.fromEntries(drops.dropped),
      calls,
      parts,
    };
  } catch (e) {
    if (map && ("opened" in resolved ? resolved.opened : true)) map.close();
    if (e instanceof MapSaveError && create && map) {
      throw new MapSaveError(
        `${e.message}; the map made for it is gone${
          create.pinned ? `, nothing was pinned at "${create.pinned}"` : ""
        }`,
        { cause: e.cause, stop: e.stop },
      );
    }
    throw e;
  }
}
