/**
 * The two ways to walk a whole map, each written once: `EntryWalker` (GET_NEXT_KEY +
 * LOOKUP_ELEM per entry) and `BatchWalker` (LOOKUP_BATCH in chunks). Both step with
 * `next()` and expose views into buffers they own and reuse, so a walk allocates nothing per
 * entry; `BpfMap` builds its callbacks and generators on them, and the dumps of `ffi/dump/`
 * (the parallel ranges' Workers among them) step them directly.
 *
 * @module
 */

import type { Backend, BatchCall, BatchCommandName, ElemCall } from "../sys/backend.ts";
import { ownedBytes } from "../sys/buffers.ts";
import { BpfCommand } from "../sys/constants.ts";
import { check, Errno } from "../sys/errors.ts";

/**
 * The keys a per-entry walk has reported, for a walk that must report each key once
 * (`KeySet` of `ffi/dump/` is one).
 */
export interface SeenKeys {
  /** Adds one key (`keySize` bytes); false when it had been added before. */
  add(key: Uint8Array): boolean;
}

/** What a walker needs to know of the map it walks. */
export interface WalkTarget {
  /** The backend issuing the commands. */
  readonly backend: Backend;
  /** The map's fd. */
  readonly fd: number;
  /** Key size in bytes. */
  readonly keySize: number;
  /** Bytes of one value as user space sees it (all CPUs' slots for per-CPU maps). */
  readonly valueBytes: number;
  /** The map's `max_entries`. */
  readonly maxEntries: number;
  /** How the map is named in errors. */
  readonly subject: string;
}

/** Options of a per-entry walk. */
export interface EntryWalkOptions {
  /**
   * The keys seen, for a walk that must report each key once while the map changes: a key
   * seen before is dropped (and counted), and a walk that restarted at the first bucket
   * (`GET_NEXT_KEY` from a key deleted meanwhile) resumes after the last key it reported that
   * still exists. Without it, the walk follows the kernel as it is.
   */
  keys?: SeenKeys;
  /** Restarts tolerated before the walk gives up with an error (default 10,000). */
  maxRestarts?: number;
  /** Hears each key the kernel returned again, before it is dropped (a view, reused). */
  onRepeat?: (key: Uint8Array) => void;
}

/** Keys remembered to resume from after a restart: the last ones the walk reported. */
const RESUME_KEYS = 16;
/** Restarts a walk tolerates by default. */
export const DEFAULT_MAX_RESTARTS = 10_000;

/**
 * Walks a map one entry at a time. After `next()` returns true, `key` and `value` view the
 * entry; they alternate between two key buffers, so a view is valid until the second next
 * call after it. An entry deleted between GET_NEXT_KEY and LOOKUP_ELEM is skipped.
 *
 * With `keys` (see `EntryWalkOptions`), the walk reports each key once and bounds itself:
 * `GET_NEXT_KEY` from a key deleted since it was returned silently starts again at the first
 * bucket (kernel `htab_map_get_next_key`), which shows as a key seen before. The walk then
 * looks for the newest of its last 16 reported keys that still exists and goes on after it;
 * keys in between were reported already, or were written during the walk. After
 * `maxRestarts` restarts, or four times as many steps as the map has room for, it throws,
 * naming the batch walk as the way out. A restart that lands on a key written during the walk
 * shows only at the next repeat; the walk then reads again from the first bucket, dropping
 * what it saw before.
 */
export class EntryWalker {
  /** The current key (a view into a buffer the walker reuses). */
  key: Uint8Array;
  /** The current value (a view into a buffer the walker reuses). */
  readonly value: Uint8Array;
  /** System calls made so far. */
  syscalls = 0;
  /** Keys the kernel returned again and the walk dropped. */
  duplicates = 0;
  /** Times the kernel's walk went back to the first bucket. */
  restarts = 0;
  readonly #first: ElemCall;
  readonly #nextFrom: [ElemCall, ElemCall];
  readonly #lookup: [ElemCall, ElemCall];
  readonly #keys: [Uint8Array, Uint8Array];
  readonly #subject: string;
  readonly #seen: SeenKeys | undefined;
  readonly #maxRestarts: number;
  readonly #maxSteps: number;
  #steps = 0;
  readonly #onRepeat: ((key: Uint8Array) => void) | undefined;
  /** The last keys reported, oldest overwritten first. */
  readonly #recent: Uint8Array;
  #recentCount = 0;
  /** Which key buffer holds the current key: -1 before the first entry. */
  #current = -1;
  #finished = false;

  constructor(target: WalkTarget, options: EntryWalkOptions = {}) {
    const { backend, fd } = target;
    this.#keys = [ownedBytes(target.keySize), ownedBytes(target.keySize)];
    this.value = ownedBytes(target.valueBytes);
    this.key = this.#keys[0];
    this.#subject = target.subject;
    this.#seen = options.keys;
    this.#maxRestarts = options.maxRestarts ?? DEFAULT_MAX_RESTARTS;
    // A restart that lands on a key written during the walk shows only at the next repeat,
    // and the walk then reads again from the first bucket: bound the steps as well.
    this.#maxSteps = this.#seen ? Math.max(4 * target.maxEntries, 1_000_000) : Infinity;
    this.#onRepeat = options.onRepeat;
    this.#recent = new Uint8Array(this.#seen ? RESUME_KEYS * target.keySize : 0);
    this.#first = backend.elem("nextKey", fd, null, this.#keys[0]);
    this.#nextFrom = [
      backend.elem("nextKey", fd, this.#keys[0], this.#keys[1]),
      backend.elem("nextKey", fd, this.#keys[1], this.#keys[0]),
    ];
    this.#lookup = [
      backend.elem("lookup", fd, this.#keys[0], this.value),
      backend.elem("lookup", fd, this.#keys[1], this.value),
    ];
  }

  /** Steps to the next entry; false at the end of the map. */
  next(): boolean {
    while (!this.#finished) {
      const from = this.#current;
      if (++this.#steps > this.#maxSteps) {
        throw new Error(
          `The per-entry walk of ${this.#subject} took ${this.#maxSteps} steps without reaching the end: the map changes faster than GET_NEXT_KEY can follow; dump it in batches (LOOKUP_BATCH), which copies each bucket whole`,
        );
      }
      const found = from < 0 ? this.#first() : this.#nextFrom[from]();
      this.syscalls++;
      if (found === -Errno.ENOENT) {
        this.#finished = true;
        return false;
      }
      if (found < 0) check(found, BpfCommand.MAP_GET_NEXT_KEY, { subject: this.#subject });
      const slot = from < 0 ? 0 : 1 - from;
      this.#current = slot;
      const looked = this.#lookup[slot]();
      this.syscalls++;
      if (looked === -Errno.ENOENT) continue; // deleted since GET_NEXT_KEY returned it
      if (looked < 0) check(looked, BpfCommand.MAP_LOOKUP_ELEM, { subject: this.#subject });
      if (this.#seen && !this.#seen.add(this.#keys[slot])) {
        this.duplicates++;
        this.#onRepeat?.(this.#keys[slot]);
        this.#resume(from, slot);
        continue;
      }
      this.key = this.#keys[slot];
      if (this.#seen) this.#remember(this.key);
      return true;
    }
    return false;
  }

  #remember(key: Uint8Array): void {
    this.#recent.set(key, (this.#recentCount++ % RESUME_KEYS) * key.byteLength);
  }

  /**
   * After GET_NEXT_KEY from the key in buffer `from` gave a key seen before (now in buffer
   * `slot`): if that key still exists, it was deleted and written again ahead of the walk,
   * which goes on. Else the kernel restarted: go on after the newest remembered key that
   * still exists (from the first bucket when none does).
   */
  #resume(from: number, slot: number): void {
    if (from >= 0 && this.#lookup[from]() !== -Errno.ENOENT) {
      this.syscalls++;
      return;
    }
    if (from >= 0) this.syscalls++;
    if (++this.restarts > this.#maxRestarts) {
      throw new Error(
        `The per-entry walk of ${this.#subject} restarted at the first bucket ${this.#maxRestarts} times: the map changes faster than GET_NEXT_KEY can follow; dump it in batches (LOOKUP_BATCH), which copies each bucket whole`,
      );
    }
    const size = this.#keys[0].byteLength;
    const remembered = Math.min(this.#recentCount, RESUME_KEYS);
    for (let back = 1; back <= remembered; back++) {
      const at = ((this.#recentCount - back) % RESUME_KEYS) * size;
      this.#keys[slot].set(this.#recent.subarray(at, at + size));
      const looked = this.#lookup[slot]();
      this.syscalls++;
      if (looked !== -Errno.ENOENT) return; // go on after this key
    }
    this.#current = -1; // nothing remembered exists: start over; what was seen is dropped
  }
}

/** Options of a batch walk. */
export interface BatchOptions {
  /** Entries asked for per call (default 4096); grown when one hash bucket holds more. */
  chunk?: number;
  /** `lookupAndDelete` empties the map as it reads (default `lookup`). */
  command?: Extract<BatchCommandName, "lookup" | "lookupAndDelete">;
  /**
   * Reproduces the original study's flawed loop: the cursor is never advanced (every call
   * passes the same zeroed `in_batch`), `ENOENT` does not end the walk, and the walk stops
   * after `maxCalls` calls. For demonstrating the flaw only.
   */
  seedCompat?: { maxCalls: number };
  /**
   * Walks one range of the cursor space only (for the parallel dump). Hash maps start at
   * bucket `start` and stop once `out_batch` reaches `end`; the last call is `crossed` when
   * it may hold entries of buckets past `end` (`out_batch > end`, or the end of the map).
   * Arrays resume after key `start - 1` and never ask for keys past `end - 1`.
   */
  range?: BatchRange;
  /** Gives every batch fresh buffers, so that its views stay valid (and transferable) after the next call. */
  handOff?: boolean;
}

/** A range of cursor positions: buckets `[start, end)` of a hash map, or keys of an array. */
export interface BatchRange {
  /** First bucket or key. */
  start: number;
  /** One past the last bucket or key. */
  end: number;
  /** Whether the cursor is an array key (else a hash bucket index). */
  array: boolean;
}

/** The command number of each batch command name, for errors. */
export const BATCH_COMMAND_NUMBERS: Record<BatchCommandName, number> = {
  lookup: BpfCommand.MAP_LOOKUP_BATCH,
  lookupAndDelete: BpfCommand.MAP_LOOKUP_AND_DELETE_BATCH,
  update: BpfCommand.MAP_UPDATE_BATCH,
  delete: BpfCommand.MAP_DELETE_BATCH,
};

/** `BatchWalker.to` of a call that read to the end of the map: past every bucket. */
export const END_OF_MAP = 2 ** 32;

/** The default number of entries per batch call, as in the original study. */
export const DEFAULT_CHUNK = 4096;

/**
 * Walks a map with LOOKUP_BATCH (or LOOKUP_AND_DELETE_BATCH). After `next()` returns true,
 * `keys` and `values` view `count` entries, packed (`keySize` and `valueBytes` apart); the
 * views are reused by the next call.
 *
 * The cursor is opaque: NULL starts the walk, each call's `out_batch` is the next call's
 * `in_batch`, and `ENOENT` ends the walk while still carrying the last, partial count.
 * `ENOSPC` with nothing copied means one hash bucket holds more entries than the chunk:
 * the chunk doubles and the same call is retried.
 */
export class BatchWalker {
  /** Keys of the current batch. */
  keys: Uint8Array;
  /** Values of the current batch. */
  values: Uint8Array;
  /** Entries in the current batch. */
  count = 0;
  /** Batch calls made so far (each one system call). */
  syscalls = 0;
  /** Calls that returned entries. */
  batches = 0;
  /** The chunk in use (it grows on `ENOSPC`). */
  chunk: number;
  /** Whether the current batch may hold entries past the range's end (range walks of hash maps). */
  crossed = false;
  /**
   * Hash maps: the bucket the current batch was read from (its call's `in_batch`; 0 for the
   * first call of a whole walk). Its entries are of buckets `[from, to)`.
   */
  from = 0;
  /**
   * Hash maps: the bucket the next call starts at (the current call's `out_batch`), or
   * `END_OF_MAP` when the current call read to the end of the map.
   */
  to = 0;
  readonly #target: WalkTarget;
  readonly #command: BatchCommandName;
  readonly #inBatch: Uint8Array;
  readonly #outBatch: Uint8Array;
  #keyBuffer!: Uint8Array;
  #valueBuffer!: Uint8Array;
  #call!: BatchCall;
  #fromStart = true;
  #finished = false;
  readonly #seedCompat: { maxCalls: number } | undefined;
  readonly #range: BatchRange | undefined;
  readonly #handOff: boolean;

  constructor(target: WalkTarget, options: BatchOptions = {}) {
    this.#target = target;
    this.#command = options.command ?? "lookup";
    this.#seedCompat = options.seedCompat;
    // The study passed a pointer to a zero cursor, never NULL, on every call.
    if (this.#seedCompat) this.#fromStart = false;
    // The cursor is a bucket index (u32) for hash maps and a key for arrays.
    const cursorSize = Math.max(target.keySize, 4);
    this.#inBatch = ownedBytes(cursorSize);
    this.#outBatch = ownedBytes(cursorSize);
    this.chunk = Math.max(
      1,
      Math.min(options.chunk ?? DEFAULT_CHUNK, Math.max(target.maxEntries, 1)),
    );
    this.#range = options.range;
    this.#handOff = options.handOff ?? false;
    if (this.#range) {
      if (this.#range.array) {
        this.chunk = Math.min(this.chunk, Math.max(this.#range.end - this.#range.start, 1));
      }
      // Hash maps start at bucket `start`; arrays resume after key `start - 1`.
      const first = this.#range.array ? this.#range.start - 1 : this.#range.start;
      if (first >= 0) {
        new DataView(this.#inBatch.buffer).setUint32(0, first, true);
        this.#fromStart = false;
      }
    }
    this.#allocate(this.chunk);
    this.keys = this.#keyBuffer.subarray(0, 0);
    this.values = this.#valueBuffer.subarray(0, 0);
  }

  #allocate(chunk: number): void {
    const t = this.#target;
    this.#keyBuffer = ownedBytes(chunk * t.keySize);
    this.#valueBuffer = ownedBytes(chunk * t.valueBytes);
    this.#call = t.backend.batch(this.#command, t.fd, {
      inBatch: this.#inBatch,
      outBatch: this.#outBatch,
      keys: this.#keyBuffer,
      values: this.#valueBuffer,
    });
  }

  /** The cursor `in_batch` holds, as a u32 (bucket index or key). */
  #cursor(buffer: Uint8Array): number {
    return new DataView(buffer.buffer).getUint32(0, true);
  }

  /** How many entries the next call may ask for: the chunk, or what is left of an array range. */
  #ask(): number {
    const range = this.#range;
    if (!range?.array) return this.chunk;
    const nextKey = this.#fromStart ? range.start : this.#cursor(this.#inBatch) + 1;
    return Math.min(this.chunk, range.end - nextKey);
  }

  /** Fetches the next batch; false when the walk is over. */
  next(): boolean {
    const t = this.#target;
    if (this.#handOff && this.count > 0) this.#allocate(this.chunk);
    while (!this.#finished) {
      if (this.#seedCompat && this.syscalls >= this.#seedCompat.maxCalls) break;
      const ask = this.#ask();
      if (ask <= 0) break;
      const from = this.#fromStart ? 0 : this.#cursor(this.#inBatch);
      const result = this.#call.run(ask, this.#fromStart, 0n);
      this.syscalls++;
      const count = this.#call.done();
      if (result === -Errno.ENOSPC && count === 0) {
        this.chunk *= 2;
        this.#allocate(this.chunk);
        continue;
      }
      if (this.#seedCompat) {
        if (result !== -Errno.ENOENT) {
          check(result, BATCH_COMMAND_NUMBERS[this.#command], {
            subject: t.subject,
          });
        }
      } else if (result === -Errno.ENOENT) {
        this.#finished = true;
      } else {
        check(result, BATCH_COMMAND_NUMBERS[this.#command], {
          subject: t.subject,
        });
        this.#inBatch.set(this.#outBatch);
        this.#fromStart = false;
      }
      this.to = this.#finished ? END_OF_MAP : this.#cursor(this.#outBatch);
      if (this.#range && !this.#range.array) {
        this.crossed = this.to > this.#range.end;
        if (this.to >= this.#range.end) this.#finished = true;
      }
      if (count === 0) continue;
      this.from = from;
      this.count = count;
      this.batches++;
      this.keys = this.#keyBuffer.subarray(0, count * t.keySize);
      this.values = this.#valueBuffer.subarray(0, count * t.valueBytes);
      return true;
    }
    this.#finished = true;
    this.count = 0;
    return false;
  }
}
