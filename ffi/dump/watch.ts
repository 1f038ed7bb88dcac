/**
 * A map read again and again, each read diffed against the one before: the engine of
 * `map watch`. `WatchSnapshot` keeps two generations of packed keys and values in large
 * buffers it reuses, so a read of a million entries allocates nothing per entry: the walk
 * copies each batch in, the diff pairs each key with its slot in the previous read
 * (positionally when the key sequence is the same, which compares the packed key bytes at
 * once; else each key equal to the previous read's at its position, and the rest through an
 * open-addressing index over the previous keys left), and the ranking selects the top N by
 * partial selection. Only the entries shown are decoded.
 *
 * @module
 */

import { aliasOf, slotAccess, slotsOf } from "../btf/_plan.ts";
import { isCharArray } from "../btf/codec.ts";
import { sizeof } from "../btf/size.ts";
import type { BtfType } from "../btf/types.ts";
import type { BatchView, BpfMap } from "../map/map.ts";
import { lookupBatchFacility, unavailableReason } from "../sys/features.ts";
import { supportsBatch } from "./plan.ts";

/** A numeric member of a value, which gets a rate. */
export interface WatchField {
  /** Its path (`packets`, `stats.bytes`, `hist[2]`), or `""` for a value that is an integer. */
  readonly path: string;
  /** Byte offset in one CPU's value. */
  readonly offset: number;
  /** Width in bytes. */
  readonly size: 1 | 2 | 4 | 8;
  /** Whether it is read as signed. */
  readonly signed: boolean;
}

/** Arrays up to this many elements give a field per element; longer ones none. */
const MAX_ARRAY_FIELDS = 16;

/**
 * The numeric fields of a value: with BTF, every whole integer member of 1, 2, 4 or 8 bytes
 * (not `bool`, not `char`), through nested structs and arrays of up to 16 elements (and the
 * variables of a global data section), in layout order (members of unions, bitfields, enums,
 * pointers and floats get none); without
 * BTF, the value itself when it is 1, 2, 4 or 8 bytes wide (unsigned, little-endian).
 *
 * @example
 * ```ts
 * import { watchFields } from "./watch.ts";
 * console.log(watchFields(null, 8)); // [{ path: "", offset: 0, size: 8, signed: false }]
 * ```
 */
export function watchFields(valueType: BtfType | null, valueSize: number): WatchField[] {
  if (!valueType) {
    return [1, 2, 4, 8].includes(valueSize)
      ? [{ path: "", offset: 0, size: valueSize as WatchField["size"], signed: false }]
      : [];
  }
  const fields: WatchField[] = [];
  collectFields(valueType, "", 0, fields);
  return fields;
}

function collectFields(type: BtfType, path: string, offset: number, out: WatchField[]): void {
  if (isCharArray(type)) return;
  let t: BtfType = type;
  for (let alias = aliasOf(t); alias; alias = aliasOf(t)) t = alias;
  switch (t.kind) {
    case "int":
      if (
        t.offset === 0 && t.bits === t.size * 8 && [1, 2, 4, 8].includes(t.size) &&
        t.encoding !== "bool" && t.encoding !== "char" && !(t.size === 1 && t.name === "char")
      ) {
        out.push({
          path,
          offset,
          size: t.size as WatchField["size"],
          signed: t.encoding === "signed",
        });
      }
      return;
    case "struct":
    case "datasec":
      for (const slot of slotsOf(t)) {
        if (slot.optional || slotAccess(slot).kind !== "whole") continue;
        const name = path ? `${path}.${slot.name}` : slot.name;
        collectFields(slot.type, name, offset + slot.byteOffset, out);
      }
      return;
    case "array": {
      if (t.nelems > MAX_ARRAY_FIELDS) return;
      const stride = sizeof(t.element);
      for (let i = 0; i < t.nelems; i++) {
        collectFields(t.element, `${path}[${i}]`, offset + i * stride, out);
      }
      return;
    }
  }
}

/** How a watch reads the map: `batch` (LOOKUP_BATCH) or `normal` (GET_NEXT_KEY + LOOKUP_ELEM). */
export type WatchMethod = "batch" | "normal";

/**
 * The fastest exact way to read `map` whole on this kernel: LOOKUP_BATCH where the map type
 * has it and the kernel allows it (`BPF_DENY` included), else one entry at a time.
 *
 * @example
 * ```ts
 * import { BpfMap } from "../../mod.ts";
 * import { watchMethod } from "./watch.ts";
 * using map = BpfMap.create({ type: "hash", keySize: 4, valueSize: 8, maxEntries: 16 });
 * console.log(watchMethod(map)); // "batch"
 * ```
 */
export function watchMethod(map: BpfMap): WatchMethod {
  const facility = lookupBatchFacility(map.info.type);
  if (!supportsBatch(map.info.type) || !facility) return "normal";
  return unavailableReason(facility) === null ? "batch" : "normal";
}

/** The layout of a map's entries, as `BpfMap` has it. */
export interface WatchShape {
  /** Key bytes. */
  readonly keySize: number;
  /** Value bytes of one CPU. */
  readonly valueSize: number;
  /** Bytes from one CPU's value to the next (`valueSize` but for per-CPU maps). */
  readonly valueStride: number;
  /** CPU slots of a value (1 but for per-CPU maps). */
  readonly cpus: number;
  /** Bytes of a whole value: `valueStride * cpus`. */
  readonly valueBytes: number;
}

/** What became of an entry of the current read, against the previous one. */
export const EntryState = {
  /** Same key, same value bytes. */
  same: 0,
  /** Same key, other value bytes. */
  changed: 1,
  /** A key the previous read did not have (every key of the first read). */
  added: 2,
} as const;
/** What became of an entry (see `EntryState`). */
export type EntryState = typeof EntryState[keyof typeof EntryState];

/** What one `read` did. */
export interface WatchStats {
  /** How the map was read. */
  method: WatchMethod;
  /** Entries read. */
  entries: number;
  /** `bpf(2)` calls the walk made. */
  syscalls: number;
  /** Milliseconds of the walk. */
  walkMs: number;
  /** Milliseconds of the diff and the ranking. */
  diffMs: number;
  /** Entries whose value bytes changed. */
  changed: number;
  /** Keys the previous read did not have. */
  added: number;
  /** Keys of the previous read that are gone. */
  gone: number;
  /** Whether the keys came in the previous read's order (diffed by position, no index). */
  positional: boolean;
  /** Seconds since the previous read started (0 for the first). */
  seconds: number;
}

/** Options of `WatchSnapshot`. */
export interface WatchOptions {
  /**
   * The field (an index into `fields`) whose change ranks the entries; -1 ranks by whether
   * the value bytes changed. Default 0, or -1 without fields.
   */
  sort?: number;
  /** Entries the buffers hold at first (they grow as needed); default 4096. */
  capacity?: number;
}

/** Packed keys and values of one read. */
class Generation {
  count = 0;
  capacity = 0;
  /** When the read started (`performance.now()`). */
  at = 0;
  keys: Uint8Array = new Uint8Array(0);
  values: Uint8Array = new Uint8Array(0);
  keyWords: Int32Array = new Int32Array(0);
  valueWords: Int32Array = new Int32Array(0);
  view: DataView = new DataView(new ArrayBuffer(0));

  constructor(readonly keySize: number, readonly valueBytes: number, capacity: number) {
    this.grow(capacity);
  }

  /** Room for at least `need` entries, keeping the `count` there are. */
  grow(need: number): void {
    const capacity = Math.max(need, this.capacity * 2, 16);
    const keys = new Uint8Array(new ArrayBuffer(roundUp4(capacity * this.keySize)));
    const values = new Uint8Array(new ArrayBuffer(roundUp4(capacity * this.valueBytes)));
    keys.set(this.keys.subarray(0, this.count * this.keySize));
    values.set(this.values.subarray(0, this.count * this.valueBytes));
    this.keys = keys;
    this.values = values;
    this.keyWords = new Int32Array(keys.buffer);
    this.valueWords = new Int32Array(values.buffer);
    this.view = new DataView(values.buffer);
    this.capacity = capacity;
  }
}

function roundUp4(n: number): number {
  return (n + 3) & ~3;
}

/** A field's width and sign as one small number, for the hot loop's switch. */
function fieldKind(field: WatchField): number {
  return field.size * 2 + (field.signed ? 1 : 0);
}

/** `cur - prev` of one field, as a double: exact while the difference is below 2^53. */
function readDelta(cur: DataView, oc: number, prev: DataView, op: number, kind: number): number {
  switch (kind) {
    case 2:
      return cur.getUint8(oc) - prev.getUint8(op);
    case 3:
      return cur.getInt8(oc) - prev.getInt8(op);
    case 4:
      return cur.getUint16(oc, true) - prev.getUint16(op, true);
    case 5:
      return cur.getInt16(oc, true) - prev.getInt16(op, true);
    case 8:
      return cur.getUint32(oc, true) - prev.getUint32(op, true);
    case 9:
      return cur.getInt32(oc, true) - prev.getInt32(op, true);
    case 16:
      return (cur.getUint32(oc + 4, true) - prev.getUint32(op + 4, true)) * 0x1_0000_0000 +
        (cur.getUint32(oc, true) - prev.getUint32(op, true));
    default:
      return (cur.getInt32(oc + 4, true) - prev.getInt32(op + 4, true)) * 0x1_0000_0000 +
        (cur.getUint32(oc, true) - prev.getUint32(op, true));
  }
}

/** One field as a double (rounded past 2^53). */
function readLevel(view: DataView, o: number, kind: number): number {
  switch (kind) {
    case 2:
      return view.getUint8(o);
    case 3:
      return view.getInt8(o);
    case 4:
      return view.getUint16(o, true);
    case 5:
      return view.getInt16(o, true);
    case 8:
      return view.getUint32(o, true);
    case 9:
      return view.getInt32(o, true);
    case 16:
      return view.getUint32(o + 4, true) * 0x1_0000_0000 + view.getUint32(o, true);
    default:
      return view.getInt32(o + 4, true) * 0x1_0000_0000 + view.getUint32(o, true);
  }
}

/** One field, exactly. */
function readExact(view: DataView, o: number, field: WatchField): bigint {
  switch (field.size) {
    case 1:
      return BigInt(field.signed ? view.getInt8(o) : view.getUint8(o));
    case 2:
      return BigInt(field.signed ? view.getInt16(o, true) : view.getUint16(o, true));
    case 4:
      return BigInt(field.signed ? view.getInt32(o, true) : view.getUint32(o, true));
    case 8:
      return field.signed ? view.getBigInt64(o, true) : view.getBigUint64(o, true);
  }
}

/** Murmur3's finaliser: spreads the bits of a 32-bit hash. */
function mix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85eb_ca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2_ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * Two reads of a map and the diff between them. Fill a read with `begin`, `add` (or
 * `addEntry`) and `finish`, or let `read` walk the map; then `state`, `previousSlot`,
 * `top`, `value` and `delta` tell what changed. The keys and values are packed in buffers
 * reused from read to read (`keys`, `values`, and the previous read's `previousKeys`,
 * `previousValues`); views and offsets into them are valid until the next `begin`.
 *
 * @example
 * ```ts
 * import { BpfMap } from "../../mod.ts";
 * import { watchFields, WatchSnapshot } from "./watch.ts";
 * using map = BpfMap.create({ type: "hash", keySize: 4, valueSize: 8, maxEntries: 16 });
 * const snapshot = new WatchSnapshot(map, watchFields(null, map.valueSize));
 * map.update(Uint8Array.of(1, 0, 0, 0), new Uint8Array(8));
 * snapshot.read(map);
 * map.update(Uint8Array.of(1, 0, 0, 0), Uint8Array.of(5, 0, 0, 0, 0, 0, 0, 0));
 * const stats = snapshot.read(map);
 * const [first] = snapshot.top(1);
 * console.log(stats.changed, snapshot.delta(first, 0)); // 1 5n
 * ```
 */
export class WatchSnapshot {
  /** The numeric fields of a value (see `watchFields`). */
  readonly fields: readonly WatchField[];
  /** How the map's entries are laid out. */
  readonly shape: WatchShape;
  readonly #shape: WatchShape;
  readonly #sort: number;
  readonly #kinds: Int32Array;
  #cur: Generation;
  #prev: Generation;
  #reads = 0;
  /** Per entry of the current read: its slot in the previous read, or -1. */
  #previousSlot = new Int32Array(0);
  /** Per entry of the current read: an `EntryState`. */
  #state = new Uint8Array(0);
  /** Per entry of the current read: the sort field's change (-Infinity for new keys). */
  #score = new Float64Array(0);
  /** Per entry of the previous read: whether a key of the current read matched it. */
  #matched = new Uint8Array(0);
  /** Slots of the previous read whose keys are gone. */
  #gone = new Int32Array(0);
  #goneCount = 0;
  /** The open-addressing index over the previous read's keys: slot + 1, 0 when empty. */
  #table = new Int32Array(0);
  readonly #addBatch = (batch: BatchView) => this.add(batch.keys, batch.values, batch.count);
  readonly #addEntry = (key: Uint8Array, value: Uint8Array) => this.add(key, value, 1);

  /** A snapshot of maps of `shape`, ranked by `options.sort` (see `WatchOptions`). */
  constructor(shape: WatchShape, fields: readonly WatchField[], options: WatchOptions = {}) {
    this.#shape = {
      keySize: shape.keySize,
      valueSize: shape.valueSize,
      valueStride: shape.valueStride,
      cpus: shape.cpus,
      valueBytes: shape.valueBytes,
    };
    this.shape = this.#shape;
    this.fields = fields;
    this.#sort = options.sort ?? (fields.length ? 0 : -1);
    if (this.#sort >= fields.length || this.#sort < -1 || !Number.isInteger(this.#sort)) {
      throw new RangeError(`Sort field ${this.#sort} of ${fields.length} fields`);
    }
    this.#kinds = Int32Array.from(fields, fieldKind);
    const capacity = options.capacity ?? 4096;
    this.#cur = new Generation(shape.keySize, shape.valueBytes, capacity);
    this.#prev = new Generation(shape.keySize, shape.valueBytes, capacity);
  }

  /** Entries of the current read. */
  get count(): number {
    return this.#cur.count;
  }

  /** Entries of the previous read. */
  get previousCount(): number {
    return this.#prev.count;
  }

  /** The current read's keys, packed (`keySize` apart); more bytes follow the last. */
  get keys(): Uint8Array {
    return this.#cur.keys;
  }

  /** The current read's values, packed (`valueBytes` apart). */
  get values(): Uint8Array {
    return this.#cur.values;
  }

  /** The previous read's keys, packed. */
  get previousKeys(): Uint8Array {
    return this.#prev.keys;
  }

  /** The previous read's values, packed. */
  get previousValues(): Uint8Array {
    return this.#prev.values;
  }

  /** Seconds between the starts of the previous read and the current one (0 before two reads). */
  get seconds(): number {
    return this.#reads > 1 ? (this.#cur.at - this.#prev.at) / 1000 : 0;
  }

  /** Starts a read: the current one becomes the previous one. `at` is its time (`performance.now()`). */
  begin(at: number = performance.now()): void {
    const previous = this.#prev;
    this.#prev = this.#cur;
    this.#cur = previous;
    this.#cur.count = 0;
    this.#cur.at = at;
    this.#reads++;
  }

  /** Appends `count` packed entries to the current read (copied). */
  add(keys: Uint8Array, values: Uint8Array, count: number): void {
    const g = this.#cur;
    const n = g.count + count;
    if (n > g.capacity) g.grow(n);
    const { keySize, valueBytes } = this.#shape;
    g.keys.set(keys.subarray(0, count * keySize), g.count * keySize);
    g.values.set(values.subarray(0, count * valueBytes), g.count * valueBytes);
    g.count = n;
  }

  /**
   * Walks `map` into a new read (`begin`, the walk, `finish`) with `method` (default
   * `watchMethod(map)`); `chunk` is the entries per LOOKUP_BATCH call.
   */
  read(map: BpfMap, options: { method?: WatchMethod; chunk?: number } = {}): WatchStats {
    const method = options.method ?? watchMethod(map);
    const start = performance.now();
    this.begin(start);
    const walk = method === "batch"
      ? map.forEachBatch(this.#addBatch, { chunk: options.chunk ?? 16_384 })
      : map.forEachEntry(this.#addEntry);
    const walked = performance.now();
    const diff = this.finish();
    return { ...diff, method, syscalls: walk.syscalls, walkMs: walked - start };
  }

  /** Ends a read: pairs its keys with the previous read's and ranks them. */
  finish(): Omit<WatchStats, "method" | "syscalls" | "walkMs"> {
    const start = performance.now();
    const cur = this.#cur;
    const prev = this.#prev;
    const n = cur.count;
    this.#ensure(n, prev.count);
    let positional = false;
    this.#goneCount = 0;
    if (this.#reads === 1) {
      this.#previousSlot.fill(-1, 0, n);
    } else if (n === prev.count && this.#sameKeys(n)) {
      positional = true;
      const slots = this.#previousSlot;
      for (let i = 0; i < n; i++) slots[i] = i;
    } else {
      this.#pairByIndex();
    }
    let changed = 0;
    let added = 0;
    const slots = this.#previousSlot;
    const state = this.#state;
    const score = this.#score;
    const sort = this.#sort;
    for (let i = 0; i < n; i++) {
      const j = slots[i];
      if (j < 0) {
        state[i] = EntryState.added;
        score[i] = -Infinity;
        added++;
      } else if (this.#sameValue(i, j)) {
        state[i] = EntryState.same;
        score[i] = 0;
      } else {
        state[i] = EntryState.changed;
        score[i] = sort < 0 ? 1 : this.#sortDelta(i, j);
        changed++;
      }
    }
    return {
      entries: n,
      changed,
      added,
      gone: this.#goneCount,
      positional,
      seconds: this.seconds,
      diffMs: performance.now() - start,
    };
  }

  #ensure(n: number, pn: number): void {
    if (this.#previousSlot.length < n) {
      const size = Math.max(n, this.#previousSlot.length * 2);
      this.#previousSlot = new Int32Array(size);
      this.#state = new Uint8Array(size);
      this.#score = new Float64Array(size);
    }
    if (this.#matched.length < pn) {
      this.#matched = new Uint8Array(Math.max(pn, this.#matched.length * 2));
      this.#gone = new Int32Array(this.#matched.length);
    }
  }

  /** Whether the first `n` keys of both reads are the same bytes in the same order. */
  #sameKeys(n: number): boolean {
    const bytes = n * this.#shape.keySize;
    const words = bytes >> 2;
    const a = this.#cur.keyWords;
    const b = this.#prev.keyWords;
    for (let w = 0; w < words; w++) if (a[w] !== b[w]) return false;
    const ak = this.#cur.keys;
    const bk = this.#prev.keys;
    for (let i = words << 2; i < bytes; i++) if (ak[i] !== bk[i]) return false;
    return true;
  }

  /** Whether value `i` of the current read holds the same bytes as value `j` of the previous. */
  #sameValue(i: number, j: number): boolean {
    const size = this.#shape.valueBytes;
    if ((size & 3) === 0) {
      const a = this.#cur.valueWords;
      const b = this.#prev.valueWords;
      const words = size >> 2;
      const ai = i * words;
      const bj = j * words;
      for (let w = 0; w < words; w++) if (a[ai + w] !== b[bj + w]) return false;
      return true;
    }
    const a = this.#cur.values;
    const b = this.#prev.values;
    const ai = i * size;
    const bj = j * size;
    for (let k = 0; k < size; k++) if (a[ai + k] !== b[bj + k]) return false;
    return true;
  }

  /** The sort field's change from slot `j` of the previous read to entry `i`, summed over CPUs. */
  #sortDelta(i: number, j: number): number {
    const { valueBytes, valueStride, cpus } = this.#shape;
    const field = this.fields[this.#sort];
    const kind = this.#kinds[this.#sort];
    const cur = this.#cur.view;
    const prev = this.#prev.view;
    let oc = i * valueBytes + field.offset;
    let op = j * valueBytes + field.offset;
    let sum = 0;
    for (let c = 0; c < cpus; c++, oc += valueStride, op += valueStride) {
      sum += readDelta(cur, oc, prev, op, kind);
    }
    return sum;
  }

  /** The sort field of entry `i`, summed over CPUs, as a double (0 without a sort field). */
  #level(i: number): number {
    if (this.#sort < 0) return 0;
    const { valueBytes, valueStride, cpus } = this.#shape;
    const kind = this.#kinds[this.#sort];
    const view = this.#cur.view;
    let o = i * valueBytes + this.fields[this.#sort].offset;
    let sum = 0;
    for (let c = 0; c < cpus; c++, o += valueStride) sum += readLevel(view, o, kind);
    return sum;
  }

  #hashKey(words: Int32Array, keys: Uint8Array, slot: number): number {
    const size = this.#shape.keySize;
    let h = size;
    if ((size & 3) === 0) {
      const base = slot * (size >> 2);
      const end = base + (size >> 2);
      for (let w = base; w < end; w++) h = Math.imul(h ^ words[w], 0x0100_0193);
    } else {
      const base = slot * size;
      for (let b = base; b < base + size; b++) h = Math.imul(h ^ keys[b], 0x0100_0193);
    }
    return mix(h);
  }

  /** Whether key `i` of the current read equals key `j` of the previous. */
  #sameKey(i: number, j: number): boolean {
    const size = this.#shape.keySize;
    if ((size & 3) === 0) {
      const words = size >> 2;
      const a = this.#cur.keyWords;
      const b = this.#prev.keyWords;
      for (let w = 0; w < words; w++) if (a[i * words + w] !== b[j * words + w]) return false;
      return true;
    }
    const a = this.#cur.keys;
    const b = this.#prev.keys;
    for (let k = 0; k < size; k++) if (a[i * size + k] !== b[j * size + k]) return false;
    return true;
  }

  /**
   * Pairs each key with the previous read's key at the same position when they are equal
   * (a writer that replaces an element moves it within its bucket only), the others through
   * an index over the previous keys left unpaired; lists the keys gone.
   */
  #pairByIndex(): void {
    const prev = this.#prev;
    const cur = this.#cur;
    const pn = prev.count;
    const n = cur.count;
    const matched = this.#matched;
    matched.fill(0, 0, pn);
    const slots = this.#previousSlot;
    let left = 0;
    for (let i = 0; i < n; i++) {
      if (i < pn && this.#sameKey(i, i)) {
        slots[i] = i;
        matched[i] = 1;
      } else {
        slots[i] = -1;
        left++;
      }
    }
    if (left > 0) {
      let size = 16;
      while (size < (pn - (n - left)) * 2) size *= 2;
      if (this.#table.length < size) this.#table = new Int32Array(size);
      const table = this.#table;
      table.fill(0, 0, size);
      const mask = size - 1;
      for (let j = 0; j < pn; j++) {
        if (matched[j]) continue;
        let h = this.#hashKey(prev.keyWords, prev.keys, j) & mask;
        while (table[h] !== 0) h = (h + 1) & mask;
        table[h] = j + 1;
      }
      for (let i = 0; i < n; i++) {
        if (slots[i] >= 0) continue;
        let h = this.#hashKey(cur.keyWords, cur.keys, i) & mask;
        for (let at = table[h]; at !== 0; h = (h + 1) & mask, at = table[h]) {
          if (matched[at - 1] === 0 && this.#sameKey(i, at - 1)) {
            slots[i] = at - 1;
            matched[at - 1] = 1;
            break;
          }
        }
      }
    }
    for (let j = 0; j < pn; j++) if (matched[j] === 0) this.#gone[this.#goneCount++] = j;
  }

  /** What became of entry `i` of the current read (an `EntryState`). */
  state(i: number): EntryState {
    return this.#state[i] as EntryState;
  }

  /** The slot of entry `i`'s key in the previous read, or -1 for a new key. */
  previousSlot(i: number): number {
    return this.#previousSlot[i];
  }

  /** Slots of the previous read whose keys the current read does not have (a view). */
  gone(): Int32Array {
    return this.#gone.subarray(0, this.#goneCount);
  }

  /**
   * The `n` entries of the current read whose sort field grew most (summed over CPUs),
   * largest first; ties go to the larger sort field, new keys come after every other. A
   * partial selection: one pass, a heap of `n`.
   */
  top(n: number): Int32Array {
    const count = this.#cur.count;
    const k = Math.max(0, Math.min(n, count));
    const heap = new Int32Array(k);
    const heapScore = new Float64Array(k);
    const heapLevel = new Float64Array(k);
    const score = this.#score;
    let size = 0;
    // A min-heap: the weakest entry kept is at the root.
    const below = (a: number, b: number) =>
      heapScore[a] < heapScore[b] || (heapScore[a] === heapScore[b] && heapLevel[a] < heapLevel[b]);
    const swap = (a: number, b: number) => {
      const e = heap[a], s = heapScore[a], l = heapLevel[a];
      heap[a] = heap[b], heapScore[a] = heapScore[b], heapLevel[a] = heapLevel[b];
      heap[b] = e, heapScore[b] = s, heapLevel[b] = l;
    };
    const down = (at: number) => {
      for (;;) {
        const l = at * 2 + 1;
        if (l >= size) return;
        const c = l + 1 < size && below(l + 1, l) ? l + 1 : l;
        if (!below(c, at)) return;
        swap(c, at);
        at = c;
      }
    };
    for (let i = 0; i < count && k > 0; i++) {
      const s = score[i];
      if (size === k) {
        if (s < heapScore[0]) continue;
        const level = this.#level(i);
        if (s === heapScore[0] && level <= heapLevel[0]) continue;
        heap[0] = i, heapScore[0] = s, heapLevel[0] = level;
        down(0);
        continue;
      }
      heap[size] = i, heapScore[size] = s, heapLevel[size] = this.#level(i);
      for (let at = size++; at > 0;) {
        const parent = (at - 1) >> 1;
        if (!below(at, parent)) break;
        swap(at, parent);
        at = parent;
      }
    }
    const order = Array.from(heap.keys());
    order.sort((a, b) =>
      heapScore[b] - heapScore[a] || heapLevel[b] - heapLevel[a] || heap[a] - heap[b]
    );
    return Int32Array.from(order, (at) => heap[at]);
  }

  /** Field `f` of entry `i` of the current read: on CPU `cpu`, or summed over CPUs (-1). */
  value(i: number, f: number, cpu = -1): bigint {
    return this.#exact(this.#cur, i, f, cpu);
  }

  /** Field `f` of slot `j` of the previous read: on CPU `cpu`, or summed over CPUs (-1). */
  previousValue(j: number, f: number, cpu = -1): bigint {
    return this.#exact(this.#prev, j, f, cpu);
  }

  /**
   * The change of field `f` of entry `i` since the previous read, exactly: on CPU `cpu`, or
   * summed over CPUs (-1); `undefined` for a new key.
   */
  delta(i: number, f: number, cpu = -1): bigint | undefined {
    const j = this.#previousSlot[i];
    if (j < 0) return undefined;
    return this.#exact(this.#cur, i, f, cpu) - this.#exact(this.#prev, j, f, cpu);
  }

  #exact(g: Generation, i: number, f: number, cpu: number): bigint {
    const { valueBytes, valueStride, cpus } = this.#shape;
    const field = this.fields[f];
    const base = i * valueBytes + field.offset;
    if (cpu >= 0) return readExact(g.view, base + cpu * valueStride, field);
    let sum = 0n;
    for (let c = 0; c < cpus; c++) sum += readExact(g.view, base + c * valueStride, field);
    return sum;
  }
}
