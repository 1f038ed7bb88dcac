/**
 * Filling a map the way the study did: key `i` (little-endian in the key's first 4 bytes),
 * value `0xdeadbeef` (repeated across the value and every CPU slot), for `i < entries`.
 *
 * @module
 */

import { BpfArgumentError } from "../sys/errors.ts";
import type { BpfMap } from "./map.ts";

/** How often a fill lets the event loop run (for Ctrl-C), in milliseconds. */
const YIELD_MS = 100;

/** The study's value. */
export const SEED_VALUE = 0xdeadbeef;

/** Options of `fillMap`. */
export interface FillOptions {
  /** How many entries, keys `0 .. entries - 1`. */
  entries: number;
  /** One UPDATE_ELEM per entry (the study's loop) instead of UPDATE_BATCH. */
  perEntry?: boolean;
  /** Entries per UPDATE_BATCH call (default 65,536). */
  chunk?: number;
  /** Called after each chunk with the entries written so far. */
  onProgress?: (done: number) => void;
  /** Stops the fill between chunks when aborted. */
  signal?: AbortSignal;
}

/** What a fill did. */
export interface FillResult {
  /** Entries written. */
  written: number;
  /** Whether the signal stopped it before the end. */
  aborted: boolean;
  /** Wall-clock seconds. */
  seconds: number;
  /** `bpf(2)` calls made. */
  syscalls: number;
}

/** Writes keys `first .. first + count - 1` into a packed key buffer. */
function encodeKeys(
  map: BpfMap,
  first: number,
  count: number,
  keys: Uint8Array,
): void {
  const keyView = new DataView(keys.buffer, keys.byteOffset, keys.byteLength);
  for (let i = 0; i < count; i++) {
    keyView.setUint32(i * map.keySize, first + i, true);
  }
}

/** A packed buffer of `count` seed values (written once: every value is the same). */
function seedValues(map: BpfMap, count: number): Uint8Array {
  const values = new Uint8Array(count * map.valueBytes);
  const view = new DataView(values.buffer);
  for (let at = 0; at + 4 <= values.length; at += 4) {
    view.setUint32(at, SEED_VALUE, true);
  }
  return values;
}

/**
 * Fills `map` with the study's data. Yields to the event loop between chunks, so that a
 * signal handler can abort it; the map then holds the entries written so far.
 */
export async function fillMap(
  map: BpfMap,
  options: FillOptions,
): Promise<FillResult> {
  if (map.keySize < 4) {
    throw new BpfArgumentError(
      `Cannot fill ${map.subject}: keys of ${map.keySize} bytes cannot hold an entry index`,
    );
  }
  if (options.entries > map.info.maxEntries) {
    throw new BpfArgumentError(
      `Cannot fill ${options.entries} entries into ${map.subject}: it holds at most ${map.info.maxEntries}`,
    );
  }
  const chunk = options.perEntry
    ? 65_536
    : Math.min(options.chunk ?? 65_536, Math.max(options.entries, 1));
  const keys = new Uint8Array(chunk * map.keySize);
  const values = seedValues(map, options.perEntry ? 1 : chunk);
  const t0 = performance.now();
  let lastYield = t0;
  let written = 0;
  let syscalls = 0;
  while (written < options.entries) {
    if (options.signal?.aborted) break;
    const count = Math.min(chunk, options.entries - written);
    encodeKeys(map, written, count, keys);
    if (options.perEntry) {
      for (let i = 0; i < count; i++) {
        map.update(
          keys.subarray(i * map.keySize, (i + 1) * map.keySize),
          values,
        );
      }
      syscalls += count;
    } else {
      map.updateBatch(
        keys.subarray(0, count * map.keySize),
        values.subarray(0, count * map.valueBytes),
      );
      syscalls++;
    }
    written += count;
    options.onProgress?.(written);
    // Let signal handlers run, at most every YIELD_MS: each turn of the event loop costs ~1 ms.
    if (performance.now() - lastYield >= YIELD_MS) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      lastYield = performance.now();
    }
  }
  return {
    written,
    aborted: written < options.entries,
    seconds: (performance.now() - t0) / 1000,
    syscalls,
  };
}
