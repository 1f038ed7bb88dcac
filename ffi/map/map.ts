/**
 * `BpfMap`: one eBPF map, opened or created, read and written through a backend.
 *
 * @module
 */

import type { Backend, BackendName, ElemCall } from "../sys/backend.ts";
import { backend as pickBackend } from "../sys/backends.ts";
import { ownedBytes, roundUp8 } from "../sys/buffers.ts";
import {
  BpfCommand,
  isArray,
  isPerCpu,
  MapType,
  type MapTypeName,
  mapTypeName,
  OBJ_NAME_LEN,
  parseMapType,
  UpdateFlag,
} from "../sys/constants.ts";
import { BpfArgumentError, BpfError, check, Errno } from "../sys/errors.ts";
import { decodeMapInfo, layoutSize, MAP_INFO, type MapInfo } from "../sys/layout.ts";
import { closeFd } from "../sys/libc.ts";
import { BPFFS_ROOT, ensureBpffs, outsideBpffs, possibleCpus } from "../sys/system.ts";
import { type Codec, TypedMap } from "./typed.ts";
import {
  BATCH_COMMAND_NUMBERS,
  type BatchOptions,
  BatchWalker,
  EntryWalker,
  type EntryWalkOptions,
  type WalkTarget,
} from "./walk.ts";

/** What `BpfMap.create` makes. */
export interface MapSpec {
  /** Map type, by name (`"hash"`) or number. */
  type: MapTypeName | MapType;
  /** Key size in bytes (4 for arrays). */
  keySize: number;
  /** Value size in bytes (per CPU, for per-CPU maps). */
  valueSize: number;
  /** The most entries the map can hold. */
  maxEntries: number;
  /** `map_flags` (see `MapFlag`); default 0. */
  flags?: number;
  /** Map name, at most 15 characters of `[A-Za-z0-9_.]`. */
  name?: string;
}

/** Options for opening or creating a map. */
export interface OpenOptions {
  /** Which backend issues the commands (default `syscall`, or `BPF_BACKEND`). */
  backend?: BackendName;
}

/** A batch as a callback sees it: `count` packed keys and values, views reused by the next batch. */
export interface BatchView {
  /** `count * keySize` bytes of keys. */
  readonly keys: Uint8Array;
  /** `count * valueBytes` bytes of values. */
  readonly values: Uint8Array;
  /** Entries in this batch. */
  readonly count: number;
  /**
   * Range walks of hash maps (`BatchOptions.range`): whether this batch may hold entries of
   * buckets past the range's end (its last call).
   */
  readonly crossed?: boolean;
}

/** What a whole walk did: entries seen and system calls made. */
export interface WalkStats {
  /** Entries visited. */
  entries: number;
  /** `bpf(2)` calls made. */
  syscalls: number;
  /** Batch calls that returned entries (0 for per-entry walks). */
  batches: number;
  /** The chunk in use at the end (grown on ENOSPC); 0 for per-entry walks. */
  chunk: number;
  /** In-order parallel walks: the most entries held back at once, waiting for ranges before theirs. */
  maxHeld?: number;
  /**
   * Parallel walks of hash maps: keys that two ranges both read where they meet (a range's
   * last call reads past its end), handed over once.
   */
  repeatsDropped?: number;
}

const MAX_U32 = 0xffff_ffff;

/** Why a write on an open map fd gets EPERM: no capability is checked there. */
const WRITE_EPERM_HINT = "the map is frozen or its fd is read-only: user space cannot write it";

function requireCount(
  value: number,
  what: string,
  min = 1,
  max = MAX_U32,
): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new BpfArgumentError(
      `Invalid ${what} "${value}": expected a whole number from ${min} to ${max}`,
    );
  }
  return value;
}

function resolveType(type: MapTypeName | MapType): MapType {
  const number = typeof type === "number"
    ? (Object.values(MapType) as number[]).includes(type) ? type as MapType : undefined
    : parseMapType(type);
  if (number === undefined) {
    throw new BpfArgumentError(
      `Unknown map type "${type}": use one of ${Object.keys(MapType).join(", ")}`,
    );
  }
  return number;
}

/** Checks a spec before `BPF_MAP_CREATE`, so that the kernel's EINVAL never has to be guessed at. */
function validateSpec(spec: MapSpec): Required<MapSpec> & { type: MapType } {
  const type = resolveType(spec.type);
  const keySize = requireCount(spec.keySize, "keySize");
  const valueSize = requireCount(spec.valueSize, "valueSize");
  const maxEntries = requireCount(spec.maxEntries, "maxEntries");
  const flags = requireCount(spec.flags ?? 0, "flags", 0);
  const name = spec.name ?? "";
  if (isArray(type) && keySize !== 4) {
    throw new BpfArgumentError(
      `Invalid keySize "${keySize}": ${mapTypeName(type)} maps take 4-byte keys`,
    );
  }
  if (name.length >= OBJ_NAME_LEN || !/^[A-Za-z0-9_.]*$/.test(name)) {
    throw new BpfArgumentError(
      `Invalid map name "${name}": at most ${
        OBJ_NAME_LEN - 1
      } characters of A-Z, a-z, 0-9, "_" and "."`,
    );
  }
  return { type, keySize, valueSize, maxEntries, flags, name };
}

/** The fix for a `BPF_MAP_CREATE` refusal, naming the argument at fault where it can be told. */
function createHint(
  errno: number,
  spec: Required<MapSpec>,
): string | undefined {
  switch (errno) {
    case Errno.E2BIG:
      // Linux 5.11 lifted the 512-byte limit on hash keys: since then only key plus value
      // (under KMALLOC_MAX_SIZE, 4 MiB on x86_64) bounds keySize, so it cannot be ruled out.
      return `keySize ${spec.keySize}, valueSize ${spec.valueSize} or maxEntries ${spec.maxEntries} is too large for this map type${
        spec.keySize > 512 ? " (hash keys are at most 512 bytes before Linux 5.11)" : ""
      }`;
    case Errno.EINVAL:
      return `the kernel refused type "${spec.type}", keySize ${spec.keySize}, valueSize ${spec.valueSize}, maxEntries ${spec.maxEntries} or flags ${spec.flags}: check the flags first`;
    case Errno.ENOMEM:
      return `not enough kernel memory for maxEntries ${spec.maxEntries}: lower maxEntries`;
    default:
      return undefined;
  }
}

/**
 * One eBPF map, held open by a file descriptor.
 *
 * Keys and values are bytes: `keySize` and `valueBytes` long (`valueBytes` covers every
 * CPU's slot in per-CPU maps: `roundUp8(valueSize) * possibleCpus()`). Lookups return
 * copies unless an output buffer is given; the walks (`forEachEntry`, `entries`,
 * `forEachBatch`, `batches`) hand out views into buffers they reuse, and allocate nothing
 * per entry.
 *
 * @example
 * ```ts
 * import { BpfMap, u32 } from "../../mod.ts";
 * using map = BpfMap.create({ type: "hash", keySize: 4, valueSize: 4, maxEntries: 16 });
 * const typed = map.typed(u32, u32);
 * typed.set(1, 0xdeadbeef);
 * console.log(typed.get(1)); // 3735928559
 * ```
 */
export class BpfMap implements Disposable {
  /** What the kernel says of the map (read once, when it was opened). */
  readonly info: MapInfo;
  /** Key size in bytes. */
  readonly keySize: number;
  /** Value size in bytes, per CPU for per-CPU maps. */
  readonly valueSize: number;
  /** Bytes of a whole value as user space reads and writes it. */
  readonly valueBytes: number;
  /** The CPU slots of a value: `possibleCpus()` for per-CPU maps, else 1. */
  readonly cpus: number;
  /** Whether values hold one slot per possible CPU. */
  readonly perCpu: boolean;
  /** Bytes from one CPU's slot to the next (`valueSize` rounded up to 8 for per-CPU maps). */
  readonly valueStride: number;
  readonly #backend: Backend;
  #fd: number;
  // Scratch buffers for the single-element calls, owned here because the prepared calls
  // hold their addresses.
  readonly #key: Uint8Array;
  readonly #value: Uint8Array;
  readonly #nextKey: Uint8Array;
  #calls?: {
    lookup: ElemCall;
    /** One update call per flag (`ANY`, `NOEXIST`, `EXIST`). */
    update: ElemCall[];
    delete: ElemCall;
    nextKey: ElemCall;
    first: ElemCall;
  };

  private constructor(fd: number, backend: Backend) {
    this.#fd = fd;
    this.#backend = backend;
    const buffer = ownedBytes(MAP_INFO_SIZE);
    try {
      check(backend.info(fd, buffer), BpfCommand.OBJ_GET_INFO_BY_FD, {
        subject: `fd ${fd}`,
      });
    } catch (e) {
      closeFd(fd);
      throw e;
    }
    this.info = decodeMapInfo(new DataView(buffer.buffer));
    this.keySize = this.info.keySize;
    this.valueSize = this.info.valueSize;
    this.perCpu = isPerCpu(this.info.type);
    this.cpus = this.perCpu ? possibleCpus() : 1;
    this.valueStride = this.perCpu ? roundUp8(this.valueSize) : this.valueSize;
    this.valueBytes = this.valueStride * this.cpus;
    this.#key = ownedBytes(this.keySize);
    this.#value = ownedBytes(this.valueBytes);
    this.#nextKey = ownedBytes(this.keySize);
  }

  /**
   * Creates a map with `BPF_MAP_CREATE`.
   *
   * @example
   * ```ts
   * import { BpfMap } from "../../mod.ts";
   * using map = BpfMap.create({ type: "percpu_hash", keySize: 4, valueSize: 8, maxEntries: 1024 }, { backend: "libbpf" });
   * ```
   */
  static create(spec: MapSpec, options: OpenOptions = {}): BpfMap {
    const valid = validateSpec(spec);
    const backend = pickBackend(options.backend);
    const fd = backend.createMap({
      mapType: valid.type,
      keySize: valid.keySize,
      valueSize: valid.valueSize,
      maxEntries: valid.maxEntries,
      mapFlags: valid.flags,
      name: valid.name,
    });
    if (fd < 0) {
      throw new BpfError({
        errno: -fd,
        command: BpfCommand.MAP_CREATE,
        subject: `a ${mapTypeName(valid.type)} map`,
        hint: createHint(-fd, valid),
      });
    }
    return new BpfMap(fd, backend);
  }

  /** Takes ownership of an fd that refers to a map (closing it with the map). */
  static fromFd(fd: number, options: OpenOptions = {}): BpfMap {
    requireCount(fd, "fd", 0, 0x7fff_ffff);
    return new BpfMap(fd, pickBackend(options.backend));
  }

  /**
   * Opens the map with this id (`BPF_MAP_GET_FD_BY_ID`).
   *
   * @example
   * ```ts
   * import { BpfMap } from "../../mod.ts";
   * using map = BpfMap.fromId(42);
   * console.log(map.info.name);
   * ```
   */
  static fromId(id: number, options: OpenOptions = {}): BpfMap {
    requireCount(id, "map id");
    const backend = pickBackend(options.backend);
    const fd = backend.mapFdById(id);
    if (fd < 0) {
      throw new BpfError({
        errno: -fd,
        command: BpfCommand.MAP_GET_FD_BY_ID,
        subject: `map id ${id}`,
        hint: -fd === Errno.ENOENT ? "no map with that id" : undefined,
      });
    }
    return new BpfMap(fd, backend);
  }

  /**
   * Opens the map pinned at `path` (`BPF_OBJ_GET`).
   *
   * @example
   * ```ts
   * import { BpfMap } from "../../mod.ts";
   * using map = BpfMap.fromPin("/sys/fs/bpf/test_map");
   * ```
   */
  static fromPin(path: string, options: OpenOptions = {}): BpfMap {
    if (!path) {
      throw new BpfArgumentError(
        "Empty pin path: give the path of a pinned map",
      );
    }
    const backend = pickBackend(options.backend);
    const fd = backend.objGet(path);
    if (fd < 0) {
      throw new BpfError({
        errno: -fd,
        command: BpfCommand.OBJ_GET,
        subject: `"${path}"`,
        hint: -fd === Errno.ENOENT
          ? "nothing is pinned at that path"
          : -fd === Errno.EACCES && outsideBpffs(path)
          ? `the path is not on a bpf file system: pins live under ${BPFFS_ROOT}`
          : undefined,
      });
    }
    try {
      return new BpfMap(fd, backend);
    } catch (e) {
      if (e instanceof BpfError && e.code === "EINVAL") {
        throw new BpfError({
          errno: Errno.EINVAL,
          command: BpfCommand.OBJ_GET_INFO_BY_FD,
          subject: `"${path}"`,
          hint: "the object pinned there is not a map",
        });
      }
      throw e;
    }
  }

  /** Ids of every map on the system (`BPF_MAP_GET_NEXT_ID`). */
  static ids(options: OpenOptions = {}): number[] {
    const backend = pickBackend(options.backend);
    const ids: number[] = [];
    for (let id = 0;;) {
      const next = backend.nextMapId(id);
      if (next === -Errno.ENOENT) return ids;
      id = check(next, BpfCommand.MAP_GET_NEXT_ID);
      ids.push(id);
    }
  }

  /** The map's file descriptor; -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  /** The backend issuing this map's commands. */
  get backend(): BackendName {
    return this.#backend.name;
  }

  /** The map type's name, e.g. `"hash"`. */
  get typeName(): string {
    return mapTypeName(this.info.type);
  }

  /** How the map is named in error messages. */
  get subject(): string {
    return `map ${this.info.id}${this.info.name ? ` "${this.info.name}"` : ""}`;
  }

  #open(): number {
    if (this.#fd < 0) {
      throw new BpfArgumentError(`The ${this.subject} is closed`);
    }
    return this.#fd;
  }

  #elemCalls() {
    const fd = this.#open();
    const b = this.#backend;
    return this.#calls ??= {
      lookup: b.elem("lookup", fd, this.#key, this.#value),
      update: Object.values(UpdateFlag).map((flag) =>
        b.elem("update", fd, this.#key, this.#value, BigInt(flag))
      ),
      delete: b.elem("delete", fd, this.#key, null),
      nextKey: b.elem("nextKey", fd, this.#key, this.#nextKey),
      first: b.elem("nextKey", fd, null, this.#nextKey),
    };
  }

  #setKey(key: Uint8Array): void {
    if (key.byteLength !== this.keySize) {
      throw new BpfArgumentError(
        `Key of ${key.byteLength} bytes for ${this.subject}: its keys are ${this.keySize} bytes`,
      );
    }
    this.#key.set(key);
  }

  #setValue(value: Uint8Array): void {
    if (value.byteLength !== this.valueBytes) {
      const perCpu = this.perCpu ? ` (${this.cpus} CPUs x ${this.valueStride} bytes)` : "";
      throw new BpfArgumentError(
        `Value of ${value.byteLength} bytes for ${this.subject}: its values are ${this.valueBytes} bytes${perCpu}`,
      );
    }
    this.#value.set(value);
  }

  /** Looks a key up; returns the value (a copy, or `out` filled), or `undefined` when absent. */
  lookup(key: Uint8Array, out?: Uint8Array): Uint8Array | undefined {
    this.#setKey(key);
    const result = this.#elemCalls().lookup();
    if (result === -Errno.ENOENT) return undefined;
    check(result, BpfCommand.MAP_LOOKUP_ELEM, { subject: this.subject });
    if (!out) return this.#value.slice();
    out.set(this.#value);
    return out;
  }

  /** Writes a key's value; `flag` is `UpdateFlag.ANY` (default), `NOEXIST` or `EXIST`. */
  update(
    key: Uint8Array,
    value: Uint8Array,
    flag: UpdateFlag = UpdateFlag.ANY,
  ): void {
    const call = this.#elemCalls().update[flag];
    if (!call) {
      throw new BpfArgumentError(
        `Unknown update flag "${flag}": use UpdateFlag.ANY, NOEXIST or EXIST`,
      );
    }
    this.#setKey(key);
    this.#setValue(value);
    const result = call();
    check(result, BpfCommand.MAP_UPDATE_ELEM, {
      subject: this.subject,
      hint: result === -Errno.EEXIST
        ? "the key exists and NOEXIST was asked"
        : result === -Errno.ENOENT
        ? "the key does not exist and EXIST was asked"
        : result === -Errno.E2BIG
        ? `the map is full (maxEntries ${this.info.maxEntries})`
        : result === -Errno.EPERM
        ? WRITE_EPERM_HINT
        : undefined,
    });
  }

  /** Deletes a key; returns false when it was not there. */
  delete(key: Uint8Array): boolean {
    this.#setKey(key);
    const result = this.#elemCalls().delete();
    if (result === -Errno.ENOENT) return false;
    check(result, BpfCommand.MAP_DELETE_ELEM, {
      subject: this.subject,
      hint: result === -Errno.EPERM ? WRITE_EPERM_HINT : undefined,
    });
    return true;
  }

  /** The key after `key` (the first key for `null`), or `undefined` at the end. */
  nextKey(key: Uint8Array | null, out?: Uint8Array): Uint8Array | undefined {
    const calls = this.#elemCalls();
    let result: number;
    if (key === null) {
      result = calls.first();
    } else {
      this.#setKey(key);
      result = calls.nextKey();
    }
    if (result === -Errno.ENOENT) return undefined;
    check(result, BpfCommand.MAP_GET_NEXT_KEY, { subject: this.subject });
    if (!out) return this.#nextKey.slice();
    out.set(this.#nextKey);
    return out;
  }

  /** This map seen through codecs, e.g. `map.typed(u32, u32)`. */
  typed<K, V>(key: Codec<K>, value: Codec<V>): TypedMap<K, V> {
    return new TypedMap(this, key, value);
  }

  /** Splits a value into its per-CPU slots (views of `value`, `valueSize` bytes each). */
  cpuValues(value: Uint8Array): Uint8Array[] {
    const stride = this.valueStride;
    return Array.from(
      { length: this.cpus },
      (_, cpu) => value.subarray(cpu * stride, cpu * stride + this.valueSize),
    );
  }

  #target(): WalkTarget {
    return {
      backend: this.#backend,
      fd: this.#open(),
      keySize: this.keySize,
      valueBytes: this.valueBytes,
      maxEntries: this.info.maxEntries,
      subject: this.subject,
    };
  }

  /**
   * Visits every entry with GET_NEXT_KEY + LOOKUP_ELEM, two system calls per entry. The
   * views passed to `visit` are reused: copy what must outlive the call. Allocates nothing
   * per entry. With `options.keys`, each key is visited once even while the map is written
   * (see `EntryWalkOptions`).
   *
   * @example
   * ```ts
   * import { BpfMap } from "../../mod.ts";
   * using map = BpfMap.fromPin("/sys/fs/bpf/test_map");
   * let sum = 0;
   * map.forEachEntry((key) => { sum += new DataView(key.buffer, key.byteOffset).getUint32(0, true); });
   * ```
   */
  forEachEntry(
    visit: (key: Uint8Array, value: Uint8Array) => void,
    options: EntryWalkOptions = {},
  ): WalkStats & { restarts?: number } {
    const walker = new EntryWalker(this.#target(), options);
    let entries = 0;
    while (walker.next()) {
      entries++;
      visit(walker.key, walker.value);
    }
    const stats = { entries, syscalls: walker.syscalls, batches: 0, chunk: 0 };
    // Restarts are followed, and counted, only by walks that keep their keys.
    return options.keys ? { ...stats, restarts: walker.restarts } : stats;
  }

  /**
   * Yields every entry as `[key, value]` views, GET_NEXT_KEY + LOOKUP_ELEM per entry. The
   * views are reused by the next step but one: copy what must be kept. Deleting the current
   * key while iterating is allowed (the kernel then restarts from the first key left).
   */
  *entries(): Generator<[key: Uint8Array, value: Uint8Array]> {
    const walker = new EntryWalker(this.#target());
    while (walker.next()) yield [walker.key, walker.value];
  }

  /**
   * Visits every entry in batches with LOOKUP_BATCH (`chunk` entries per call, default
   * 4096). The views in the batch are reused by the next batch. Allocates nothing per entry.
   */
  forEachBatch(
    visit: (batch: BatchView) => void,
    options: BatchOptions = {},
  ): WalkStats {
    const walker = this.#batchWalker(options);
    let entries = 0;
    while (walker.next()) {
      entries += walker.count;
      visit(walker);
    }
    return {
      entries,
      syscalls: walker.syscalls,
      batches: walker.batches,
      chunk: walker.chunk,
    };
  }

  /**
   * Yields the map in batches with LOOKUP_BATCH; each batch's views are reused by the next.
   * Returns the walk's figures when it ends.
   */
  *batches(options: BatchOptions = {}): Generator<BatchView, WalkStats> {
    const walker = this.#batchWalker(options);
    let entries = 0;
    while (walker.next()) {
      entries += walker.count;
      yield {
        keys: walker.keys,
        values: walker.values,
        count: walker.count,
        crossed: walker.crossed,
      };
    }
    return { entries, syscalls: walker.syscalls, batches: walker.batches, chunk: walker.chunk };
  }

  #batchWalker(options: BatchOptions): BatchWalker {
    if (options.chunk !== undefined) requireCount(options.chunk, "chunk");
    return new BatchWalker(this.#target(), options);
  }

  /**
   * Reads and deletes every entry in batches (LOOKUP_AND_DELETE_BATCH). Hash maps only:
   * the kernel refuses it for arrays.
   */
  forEachBatchAndDelete(
    visit: (batch: BatchView) => void,
    options: Omit<BatchOptions, "command"> = {},
  ): WalkStats {
    return this.forEachBatch(visit, { ...options, command: "lookupAndDelete" });
  }

  #packedCount(keys: Uint8Array, values: Uint8Array | null): number {
    if (keys.byteLength % this.keySize !== 0) {
      throw new BpfArgumentError(
        `Keys of ${keys.byteLength} bytes for ${this.subject}: not a whole number of ${this.keySize}-byte keys`,
      );
    }
    const count = keys.byteLength / this.keySize;
    if (values && values.byteLength !== count * this.valueBytes) {
      throw new BpfArgumentError(
        `Values of ${values.byteLength} bytes for ${count} keys of ${this.subject}: expected ${
          count * this.valueBytes
        }`,
      );
    }
    return count;
  }

  #runBatch(
    command: "update" | "delete",
    keys: Uint8Array,
    values: Uint8Array | null,
    flag: UpdateFlag,
  ): number {
    const count = this.#packedCount(keys, values);
    if (count === 0) return 0;
    const ownedKeys = ownedBytes(keys.byteLength);
    ownedKeys.set(keys);
    const ownedValues = ownedBytes(values ? values.byteLength : 0);
    if (values) ownedValues.set(values);
    const call = this.#backend.batch(command, this.#open(), {
      inBatch: ownedBytes(0),
      outBatch: ownedBytes(0),
      keys: ownedKeys,
      values: ownedValues,
    });
    const result = call.run(count, true, BigInt(flag));
    // A refusal before the first element (EPERM, EINVAL) leaves the input count in place; a
    // failure on an element always leaves fewer than `count` done.
    const done = result < 0 && call.done() === count ? 0 : call.done();
    check(result, BATCH_COMMAND_NUMBERS[command], {
      subject: `${this.subject} (${done} of ${count} done)`,
      hint: result === -Errno.EPERM
        ? WRITE_EPERM_HINT
        : result === -Errno.EINVAL && flag !== UpdateFlag.ANY
        ? "UPDATE_BATCH takes no NOEXIST or EXIST (the kernel allows only BPF_F_LOCK there): use update() per key"
        : undefined,
    });
    return done;
  }

  /**
   * Writes `keys.length / keySize` entries in one UPDATE_BATCH call; keys and values are
   * packed. Returns how many were written (all, or it throws saying how many were done).
   */
  updateBatch(
    keys: Uint8Array,
    values: Uint8Array,
    flag: UpdateFlag = UpdateFlag.ANY,
  ): number {
    return this.#runBatch("update", keys, values, flag);
  }

  /** Deletes packed keys in one DELETE_BATCH call; returns how many were deleted. */
  deleteBatch(keys: Uint8Array): number {
    return this.#runBatch("delete", keys, null, UpdateFlag.ANY);
  }

  /** Pins the map at `path` on bpffs (mounting bpffs at /sys/fs/bpf if it is not). */
  pin(path: string): void {
    if (!path) {
      throw new BpfArgumentError(
        "Empty pin path: give a path under /sys/fs/bpf",
      );
    }
    ensureBpffs(path);
    const result = this.#backend.pin(this.#open(), path);
    check(result, BpfCommand.OBJ_PIN, {
      subject: `"${path}"`,
      hint: result === -Errno.EEXIST
        ? "something is already pinned at that path: remove it first"
        : undefined,
    });
  }

  /** Freezes the map: user space can no longer write it (BPF programs still can). */
  freeze(): void {
    check(this.#backend.freeze(this.#open()), BpfCommand.MAP_FREEZE, {
      subject: this.subject,
    });
  }

  /** Closes the map's fd. Safe to call twice. */
  close(): void {
    if (this.#fd < 0) return;
    closeFd(this.#fd);
    this.#fd = -1;
  }

  /** Closes the map (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}

const MAP_INFO_SIZE = layoutSize(MAP_INFO);
