/**
 * Where the ranges of a parallel walk of a hash map meet, and how each key read there is
 * handed over once, whatever the map's writers do meanwhile.
 *
 * A range reads buckets from its start on. LOOKUP_BATCH copies whole buckets until the chunk
 * is full, so a range's last call reads on past the range's end, into buckets that the next
 * ranges read too, at other times: its entries cannot tell where the range ended (the old
 * way, cutting the last call at the next range's first key, failed when a writer deleted or
 * moved that key meanwhile, and printed keys twice). But a key lives in one bucket, and the
 * calls of a range read disjoint buckets, so a key two ranges both report was read by an
 * earlier range's *last call* and by a later range's call that began before that last call
 * ended (its `from` below the last call's `to`). `RangeSeams` drops every such second report:
 *
 * - a batch handed over after an earlier range's last call loses the keys that last call
 *   reported, if it began before that call's end;
 * - a last call handed over after later ranges' batches that began before its end loses the
 *   keys those batches reported: while a range before them runs, the keys of the batches
 *   handed over are kept (keys only, and only until every range before them has ended).
 *
 * Which keys two reads share does not depend on when they were made: the check is exact, and
 * bounded by the ranges running at once.
 *
 * @module
 */

import type { BatchView } from "../map/map.ts";
import { withoutEntries } from "./batches.ts";
import { PackedKeys } from "./verify.ts";

/** Bytes of a block of kept keys. */
const COPY_BLOCK_BYTES = 1 << 20;

/** Keys a range handed over, copied: a last call's (a seam), or a batch kept for one. */
interface HandedOver {
  /** The range that handed them over. */
  range: number;
  /** The bucket its call began at. */
  from: number;
  /** The bucket after the last one its call read (`END_OF_MAP`: the end of the map). */
  to: number;
  /** The keys, packed. */
  keys: Uint8Array;
  /** How many. */
  count: number;
  /** The keys as a set, made when first looked in. */
  set?: PackedKeys;
}

/**
 * Where the ranges of one parallel walk of a hash map meet: every batch a range read goes
 * through `take` before it is handed over, and `ended` says when a range has no more.
 *
 * @example
 * ```ts
 * import { RangeSeams } from "../../mod.ts";
 * const u32s = (...keys: number[]) => new Uint8Array(new Uint32Array(keys).buffer);
 * const seams = new RangeSeams([[0, 8], [8, 16]], 4);
 * const batch = (...keys: number[]) => ({ keys: u32s(...keys), values: u32s(...keys), count: keys.length });
 * seams.take(1, batch(90, 91), 8, 16, 4); // range 1 read buckets 8 to 15 first
 * seams.ended(1);
 * // Range 0's last call read buckets 5 to 11: 90 and 91 were range 1's to report.
 * console.log(seams.take(0, batch(50, 90, 91), 5, 12, 4).count); // 1
 * ```
 */
export class RangeSeams {
  /** Keys two ranges both read where they meet: handed over once, the second report dropped. */
  dropped = 0;
  readonly #keySize: number;
  readonly #starts: number[];
  readonly #ends: number[];
  /** Whether each range has ended: its walk is over and all it read was taken. */
  readonly #ended: boolean[];
  /** The first range that has not ended. */
  #firstRunning = 0;
  /** Where each range's next batch begins: the `to` of the last one taken (at first, its start). */
  readonly #reached: number[];
  /** The last calls of ranges, read past their ends, as long as a later range may read there. */
  #lastCalls: HandedOver[] = [];
  /** Batches handed over while a range before theirs ran: what its last call may also read. */
  #kept: HandedOver[] = [];
  /** Where kept keys are copied to, and how much of it is used. */
  #block = new Uint8Array(0);
  #blockUsed = 0;

  /** Seams of the ranges `bounds` (bucket ranges `[start, end)`, in order, disjoint). */
  constructor(bounds: readonly (readonly [number, number])[], keySize: number) {
    this.#keySize = keySize;
    this.#starts = bounds.map(([start]) => start);
    this.#ends = bounds.map(([, end]) => end);
    this.#ended = bounds.map(() => false);
    this.#reached = [...this.#starts];
  }

  /**
   * Takes a batch that range `range` read from bucket `from` up to `to`, about to be handed
   * over: returns it without the keys another range reported already where they meet (fresh
   * buffers when any is dropped).
   */
  take(range: number, batch: BatchView, from: number, to: number, valueBytes: number): BatchView {
    let drop: Set<number> | undefined;
    for (const last of this.#lastCalls) {
      if (last.range < range && from < last.to) this.#dropLastCall(batch, last, drop ??= new Set());
    }
    const pastEnd = to > this.#ends[range];
    if (pastEnd) {
      const met = this.#kept.filter((kept) => kept.range > range && kept.from < to);
      if (met.length) this.#dropKept(batch, met, drop ??= new Set());
    }
    const taken = drop?.size
      ? withoutEntries(batch, [...drop].sort((a, b) => a - b), this.#keySize, valueBytes)
      : batch;
    this.dropped += drop?.size ?? 0;
    if (taken.count > 0 && (pastEnd || range > this.#firstRunning)) {
      const handed = {
        range,
        from,
        to,
        keys: this.#copy(taken.keys.subarray(0, taken.count * this.#keySize)),
        count: taken.count,
      };
      if (range > this.#firstRunning) this.#kept.push(handed);
      if (pastEnd) this.#lastCalls.push(handed);
    }
    this.#reached[range] = to;
    if (this.#lastCalls.length) this.#forgetLastCalls();
    return taken;
  }

  /**
   * A copy of `keys`, in a block of copies (allocating a buffer per batch costs more than the
   * copy): kept keys must not change if the caller changes the batches handed over.
   */
  #copy(keys: Uint8Array): Uint8Array {
    if (this.#block.length - this.#blockUsed < keys.length) {
      this.#block = new Uint8Array(Math.max(COPY_BLOCK_BYTES, keys.length));
      this.#blockUsed = 0;
    }
    const copy = this.#block.subarray(this.#blockUsed, this.#blockUsed + keys.length);
    copy.set(keys);
    this.#blockUsed += keys.length;
    return copy;
  }

  /** Range `range` has ended: every batch it read was taken. */
  ended(range: number): void {
    this.#ended[range] = true;
    while (this.#firstRunning < this.#ended.length && this.#ended[this.#firstRunning]) {
      this.#firstRunning++;
    }
    // Kept batches are forgotten once every range before theirs has ended.
    if (this.#kept.length) this.#kept = this.#kept.filter((k) => k.range > this.#firstRunning);
    this.#forgetLastCalls();
  }

  /** Adds to `drop` the indexes of `batch`'s keys that the last call `last` reported. */
  #dropLastCall(batch: BatchView, last: HandedOver, drop: Set<number>): void {
    last.set ??= new PackedKeys([last], this.#keySize);
    last.set.forEachFound(batch, (i) => drop.add(i));
  }

  /** Adds to `drop` the indexes of the last call `batch`'s keys that the kept batches `met` reported. */
  #dropKept(batch: BatchView, met: readonly HandedOver[], drop: Set<number>): void {
    new PackedKeys(met, this.#keySize).forEachFound(batch, (i) => drop.add(i));
  }

  /**
   * Forgets the last calls no later batch can meet: every later range that starts before a
   * last call's end has ended or read past it.
   */
  #forgetLastCalls(): void {
    this.#lastCalls = this.#lastCalls.filter((last) => {
      for (let j = last.range + 1; j < this.#starts.length && this.#starts[j] < last.to; j++) {
        if (!this.#ended[j] && this.#reached[j] < last.to) return true;
      }
      return false;
    });
  }
}
