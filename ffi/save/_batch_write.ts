/**
 * One part of a restore written with `BPF_MAP_UPDATE_BATCH` in chunks, straight from its
 * buffers: the loop the restoring thread and the Workers that write parts at once
 * (`_restore_worker.ts`) both run, on their own thread (errno is per thread).
 *
 * @module
 */

import type { Backend } from "../sys/backend.ts";
import { ownedBytes } from "../sys/buffers.ts";
import { UpdateFlag } from "../sys/constants.ts";

/** Packed entries to write, and the map's layout of them. */
export interface BatchPart {
  /** `count` keys, packed. */
  keys: Uint8Array;
  /** `count` values (every CPU's slot), packed. */
  values: Uint8Array;
  /** Entries. */
  count: number;
  /** Bytes of a key. */
  keySize: number;
  /** Bytes of a whole value. */
  valueBytes: number;
}

/** How a part's write went: its entries `[0, written)` are in the map. */
export interface PartOutcome {
  /** Entries written, from the part's first. */
  written: number;
  /** The errno the kernel refused entry `written` with; 0 when it refused none. */
  errno: number;
  /** Whether the part stopped, unfinished, because another part was refused. */
  halted: boolean;
  /** `UPDATE_BATCH` calls made. */
  calls: number;
}

const EMPTY = ownedBytes(0);

/**
 * Writes `part` in calls of at most `chunk` entries, and stops at the first the kernel
 * refuses. With `halt` (an `Int32Array` on a `SharedArrayBuffer`, shared by the parts written
 * at once), a refusal sets `halt[0]`, and a part that finds it set stops before its next call.
 *
 * @example
 * ```ts
 * import { BpfMap } from "../../mod.ts";
 * import { backend } from "../sys/backends.ts";
 * import { writeBatches } from "./_batch_write.ts";
 * using map = BpfMap.create({ type: "hash", keySize: 4, valueSize: 4, maxEntries: 8 });
 * const keys = new Uint8Array(Uint32Array.of(1, 2).buffer);
 * const part = { keys, values: keys.slice(), count: 2, keySize: 4, valueBytes: 4 };
 * console.log(writeBatches(backend(map.backend), map.fd, part, 1024).written); // 2
 * ```
 */
export function writeBatches(
  batch: Backend,
  fd: number,
  part: BatchPart,
  chunk: number,
  halt?: Int32Array,
): PartOutcome {
  const { count, keySize, valueBytes } = part;
  let calls = 0;
  for (let start = 0; start < count; start += chunk) {
    if (halt && Atomics.load(halt, 0) !== 0) {
      return { written: start, errno: 0, halted: true, calls };
    }
    const n = Math.min(chunk, count - start);
    const call = batch.batch("update", fd, {
      inBatch: EMPTY,
      outBatch: EMPTY,
      keys: part.keys.subarray(start * keySize, (start + n) * keySize),
      values: part.values.subarray(start * valueBytes, (start + n) * valueBytes),
    });
    const result = call.run(n, true, BigInt(UpdateFlag.ANY));
    calls++;
    if (result >= 0) continue;
    if (halt) Atomics.store(halt, 0, 1);
    // A refusal before the first element leaves the input count in place.
    const done = call.done() === n ? 0 : call.done();
    return { written: start + done, errno: -result, halted: false, calls };
  }
  return { written: count, errno: 0, halted: false, calls };
}
