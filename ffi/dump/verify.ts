/**
 * `KeySet`: counts the distinct keys a dump reports, so a dump can prove it saw every key
 * exactly once. Nothing here allocates per key: 4-byte keys go into a bitmap of 64 Ki-key
 * pages made on first use (a dense u32 map of N keys costs N / 8 bytes); other key sizes go
 * into an open-addressing table over the key bytes, held in typed arrays (one 32-bit hash
 * per slot, then the key's words), that doubles when half full.
 *
 * @module
 */

import type { KeySetReply, KeySetRequest } from "./_keyset_worker.ts";

const PAGE_BITS = 16;
const PAGE_KEYS = 1 << PAGE_BITS;
/** Slots of a table before it first grows (it doubles when half full). */
const FIRST_SLOTS = 1 << 12;
/** The most keys a table is sized for up front, whatever the map's `maxEntries`. */
const MAX_PRESIZE = 1 << 20;

/** The distinct 4-byte keys seen, one bit each. */
class KeyBitmap {
  readonly #pages: (Uint8Array | undefined)[] = [];

  /** Adds `key`; true when it was there already. */
  add(key: number): boolean {
    const page = this.#pages[key >>> PAGE_BITS] ??= new Uint8Array(PAGE_KEYS / 8);
    const bit = key & (PAGE_KEYS - 1);
    const byte = bit >>> 3;
    const mask = 1 << (bit & 7);
    if (page[byte] & mask) return true;
    page[byte] |= mask;
    return false;
  }
}

/** The hash of the key at word `at` of `source`, `words` long: odd, so never 0 (an empty slot). */
function hashWords(source: Uint32Array, at: number, words: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < words; i++) {
    hash = Math.imul(hash ^ source[at + i], 0x9e3779b1);
    hash ^= hash >>> 15;
  }
  hash = Math.imul(hash ^ (hash >>> 16), 0x85ebca6b);
  return ((hash ^ (hash >>> 13)) | 1) >>> 0;
}

/**
 * The distinct keys of any size seen, by open addressing: slot `s` holds a hash in
 * `#hashes[s]` (0 for an empty slot; hashes are odd) and the key, zero-padded to whole 32-bit
 * words, at `#keys[s * words]`. Linear probing; compares words only where hashes match.
 */
class KeyTable {
  readonly #words: number;
  #mask: number;
  #hashes: Uint32Array;
  #keys: Uint32Array;
  #count = 0;

  constructor(words: number, expected: number) {
    this.#words = words;
    let slots = FIRST_SLOTS;
    while (slots < 2 * Math.min(expected, MAX_PRESIZE)) slots *= 2;
    this.#mask = slots - 1;
    this.#hashes = new Uint32Array(slots);
    this.#keys = new Uint32Array(slots * words);
  }

  /** Adds the key at word `at` of `source`; true when it was there already. */
  add(source: Uint32Array, at: number): boolean {
    if (2 * this.#count >= this.#hashes.length) this.#grow();
    const hash = hashWords(source, at, this.#words);
    const slot = this.#probe(source, at, hash);
    if (this.#hashes[slot] !== 0) return true;
    this.#hashes[slot] = hash;
    const words = this.#words;
    for (let i = 0; i < words; i++) this.#keys[slot * words + i] = source[at + i];
    this.#count++;
    return false;
  }

  /** Whether the key at word `at` of `source` was added. */
  has(source: Uint32Array, at: number): boolean {
    return this.#hashes[this.#probe(source, at, hashWords(source, at, this.#words))] !== 0;
  }

  /** The slot that holds the key at word `at` of `source`, or the empty slot where it would go. */
  #probe(source: Uint32Array, at: number, hash: number): number {
    const words = this.#words;
    const hashes = this.#hashes;
    const keys = this.#keys;
    const mask = this.#mask;
    for (let slot = hash & mask;; slot = (slot + 1) & mask) {
      const held = hashes[slot];
      if (held === 0) return slot;
      if (held === hash) {
        const offset = slot * words;
        let i = 0;
        while (i < words && keys[offset + i] === source[at + i]) i++;
        if (i === words) return slot;
      }
    }
  }

  #grow(): void {
    const oldHashes = this.#hashes;
    const oldKeys = this.#keys;
    const words = this.#words;
    const slots = oldHashes.length * 2;
    const mask = this.#mask = slots - 1;
    const hashes = this.#hashes = new Uint32Array(slots);
    const keys = this.#keys = new Uint32Array(slots * words);
    for (let old = 0; old < oldHashes.length; old++) {
      const hash = oldHashes[old];
      if (hash === 0) continue;
      let slot = hash & mask;
      while (hashes[slot] !== 0) slot = (slot + 1) & mask;
      hashes[slot] = hash;
      keys.set(oldKeys.subarray(old * words, (old + 1) * words), slot * words);
    }
  }
}

/** The distinct keys seen so far, and how many were seen more than once. */
export class KeySet {
  /** Keys added, duplicates included. */
  added = 0;
  /** Keys added that had been added before. */
  duplicates = 0;
  readonly #keySize: number;
  readonly #bitmap: KeyBitmap | undefined;
  readonly #table: KeyTable | undefined;
  /** One key, zero-padded to whole words, for keys that cannot be read in place. */
  readonly #scratch: Uint32Array;
  readonly #scratchBytes: Uint8Array;

  /**
   * A set for keys of `keySize` bytes; `expected`, the number of keys likely to come (e.g. the
   * map's `maxEntries`), sizes the table up front (up to a million keys).
   *
   * @example
   * ```ts
   * import { KeySet } from "../../mod.ts";
   * const keys = new KeySet(16);
   * keys.addPacked(new Uint8Array(32), 2); // two equal 16-byte keys
   * console.log(keys.distinct, keys.duplicates); // 1 1
   * ```
   */
  constructor(keySize: number, expected = 0) {
    this.#keySize = keySize;
    const words = Math.ceil(keySize / 4);
    if (keySize === 4) this.#bitmap = new KeyBitmap();
    else this.#table = new KeyTable(words, expected);
    this.#scratch = new Uint32Array(words);
    this.#scratchBytes = new Uint8Array(this.#scratch.buffer);
  }

  /** Distinct keys seen. */
  get distinct(): number {
    return this.added - this.duplicates;
  }

  /** Adds one key (`keySize` bytes); false when it had been added before. */
  add(key: Uint8Array): boolean {
    let seen: boolean;
    if (this.#bitmap) {
      seen = this.#bitmap.add((key[0] | (key[1] << 8) | (key[2] << 16) | (key[3] << 24)) >>> 0);
    } else {
      const scratch = this.#scratchBytes;
      for (let b = 0; b < this.#keySize; b++) scratch[b] = key[b];
      seen = this.#table!.add(this.#scratch, 0);
    }
    this.added++;
    if (seen) this.duplicates++;
    return !seen;
  }

  /**
   * Adds `count` packed keys and returns how many had been added before; `onDuplicate`, if
   * given, hears the index of each.
   */
  addPacked(keys: Uint8Array, count: number, onDuplicate?: (index: number) => void): number {
    const before = this.duplicates;
    const size = this.#keySize;
    const inPlace = size % 4 === 0 && keys.byteOffset % 4 === 0;
    const words = inPlace ? new Uint32Array(keys.buffer, keys.byteOffset, count * size / 4) : null;
    const bitmap = this.#bitmap;
    for (let i = 0; i < count; i++) {
      let source = this.#scratch;
      let at = 0;
      if (words) {
        source = words;
        at = i * (size >>> 2);
      } else {
        const scratch = this.#scratchBytes;
        for (let b = 0, from = i * size; b < size; b++) scratch[b] = keys[from + b];
      }
      const seen = bitmap ? bitmap.add(source[at]) : this.#table!.add(source, at);
      if (seen) {
        this.duplicates++;
        onDuplicate?.(i);
      }
    }
    this.added += count;
    return this.duplicates - before;
  }
}

const WORKER_MODULE = new URL("./_keyset_worker.ts", import.meta.url);

/**
 * A `KeySet` on a thread of its own: `addPacked` copies the keys and hands them over, and
 * `counts()` waits for the worker to count them all. For dumps that only count (no key is
 * needed at once to drop a repeat), where the walk's thread should go back to the kernel
 * as soon as it can. Needs read access to this module's folder, as Workers do; `start`
 * returns `undefined` without it.
 *
 * @example
 * ```ts
 * import { KeySetInBackground } from "./verify.ts";
 * const keys = await KeySetInBackground.start(16, 1_000_000);
 * if (keys) {
 *   keys.addPacked(new Uint8Array(32), 2);
 *   console.log(await keys.counts()); // { added: 2, duplicates: 1 }
 *   keys.close();
 * }
 * ```
 */
export class KeySetInBackground implements Disposable {
  readonly #worker: Worker;
  readonly #keySize: number;
  readonly #free: ArrayBuffer[] = [];
  #counts: ((counts: { added: number; duplicates: number }) => void) | undefined;

  private constructor(worker: Worker, keySize: number) {
    this.#worker = worker;
    this.#keySize = keySize;
    worker.onmessage = (event: MessageEvent<KeySetReply>) => {
      const reply = event.data;
      if (reply.kind === "free") this.#free.push(reply.buffer);
      else this.#counts?.({ added: reply.added, duplicates: reply.duplicates });
    };
  }

  /** Starts the worker, or `undefined` when Workers may not load their module here. */
  static start(keySize: number, expected = 0): KeySetInBackground | undefined {
    if (
      WORKER_MODULE.protocol === "file:" &&
      Deno.permissions.querySync({ name: "read", path: new URL(".", WORKER_MODULE).pathname })
          .state !== "granted"
    ) return undefined;
    const worker = new Worker(WORKER_MODULE, { type: "module" });
    worker.postMessage({ kind: "start", keySize, expected } satisfies KeySetRequest);
    return new KeySetInBackground(worker, keySize);
  }

  /** Copies `count` packed keys to the worker. */
  addPacked(keys: Uint8Array, count: number): void {
    const bytes = count * this.#keySize;
    let buffer = this.#free.pop();
    if (!buffer || buffer.byteLength < bytes) buffer = new ArrayBuffer(bytes);
    new Uint8Array(buffer).set(keys.subarray(0, bytes));
    this.#worker.postMessage({ kind: "keys", buffer, count } satisfies KeySetRequest, [buffer]);
  }

  /** The keys added and the repeats among them, once the worker has counted everything. */
  counts(): Promise<{ added: number; duplicates: number }> {
    const counted = new Promise<{ added: number; duplicates: number }>((resolve) => {
      this.#counts = resolve;
    });
    this.#worker.postMessage({ kind: "end" } satisfies KeySetRequest);
    return counted;
  }

  /** Stops the worker; idempotent. */
  close(): void {
    this.#worker.terminate();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Packed keys: `count` keys of one size, one after the other. */
export interface PackedKeyList {
  /** The keys. */
  readonly keys: Uint8Array;
  /** How many. */
  readonly count: number;
}

/**
 * A set of packed keys, found by value: what the checks where the ranges of a parallel walk
 * meet look keys up in. 4-byte keys go into a `Set` of numbers (a bitmap page each would cost
 * 8 KiB for keys scattered over the u32 space), other sizes into an open-addressing table.
 */
export class PackedKeys {
  readonly #keySize: number;
  readonly #numbers: Set<number> | undefined;
  readonly #table: KeyTable | undefined;
  /** One key, zero-padded to whole words, for keys that cannot be read in place. */
  readonly #scratch: Uint32Array;
  readonly #scratchBytes: Uint8Array;

  /**
   * The keys of `lists`, of `keySize` bytes each.
   *
   * @example
   * ```ts
   * import { PackedKeys } from "./verify.ts";
   * const set = new PackedKeys([{ keys: new Uint8Array([1, 0, 0, 0, 2, 0, 0, 0]), count: 2 }], 4);
   * set.forEachFound({ keys: new Uint8Array([3, 0, 0, 0, 2, 0, 0, 0]), count: 2 }, console.log); // 1
   * ```
   */
  constructor(lists: readonly PackedKeyList[], keySize: number) {
    this.#keySize = keySize;
    const words = Math.ceil(keySize / 4);
    this.#scratch = new Uint32Array(words);
    this.#scratchBytes = new Uint8Array(this.#scratch.buffer);
    const total = lists.reduce((sum, list) => sum + list.count, 0);
    if (keySize === 4) {
      const numbers = this.#numbers = new Set();
      for (const { keys, count } of lists) {
        for (let i = 0; i < count; i++) numbers.add(u32Key(keys, i));
      }
    } else {
      const table = this.#table = new KeyTable(words, total);
      for (const list of lists) this.#eachKey(list, (source, at) => table.add(source, at));
    }
  }

  /** Calls `found` with the index of each key of `list` that is in the set, in order. */
  forEachFound(list: PackedKeyList, found: (index: number) => void): void {
    const numbers = this.#numbers;
    if (numbers) {
      for (let i = 0; i < list.count; i++) if (numbers.has(u32Key(list.keys, i))) found(i);
      return;
    }
    const table = this.#table!;
    this.#eachKey(list, (source, at, i) => {
      if (table.has(source, at)) found(i);
    });
  }

  /** Calls `visit` with each key of `list` as words: in place when aligned, else copied. */
  #eachKey(
    { keys, count }: PackedKeyList,
    visit: (source: Uint32Array, at: number, index: number) => void,
  ): void {
    const size = this.#keySize;
    if (size % 4 === 0 && keys.byteOffset % 4 === 0) {
      const words = new Uint32Array(keys.buffer, keys.byteOffset, (count * size) / 4);
      for (let i = 0; i < count; i++) visit(words, (i * size) / 4, i);
      return;
    }
    for (let i = 0; i < count; i++) {
      this.#scratchBytes.set(keys.subarray(i * size, (i + 1) * size));
      visit(this.#scratch, 0, i);
    }
  }
}

/** The 4-byte key at `index` of `keys`, little-endian. */
function u32Key(keys: Uint8Array, index: number): number {
  const at = index * 4;
  return (keys[at] | (keys[at + 1] << 8) | (keys[at + 2] << 16) | (keys[at + 3] << 24)) >>> 0;
}
