/**
 * Batches with entries left out: the first entries of a batch (views of its buffers), or a
 * batch without some of its entries (fresh buffers), for the walks that drop what another
 * part of the walk reported already.
 *
 * @module
 */

import type { BatchView } from "../map/map.ts";

/** The first `count` entries of `batch`, as views of its buffers. */
export function firstEntries(
  batch: BatchView,
  count: number,
  keySize: number,
  valueBytes: number,
): BatchView {
  return count === batch.count ? batch : {
    keys: batch.keys.subarray(0, count * keySize),
    values: batch.values.subarray(0, count * valueBytes),
    count,
  };
}

/** `batch` without the entries at `drop` (indexes in ascending order), in fresh buffers. */
export function withoutEntries(
  batch: BatchView,
  drop: readonly number[],
  keySize: number,
  valueBytes: number,
): BatchView {
  if (drop.length === 0) return batch;
  const count = batch.count - drop.length;
  const keys = new Uint8Array(count * keySize);
  const values = new Uint8Array(count * valueBytes);
  for (let i = 0, kept = 0, d = 0; i < batch.count; i++) {
    if (drop[d] === i) {
      d++;
      continue;
    }
    keys.set(batch.keys.subarray(i * keySize, (i + 1) * keySize), kept * keySize);
    values.set(batch.values.subarray(i * valueBytes, (i + 1) * valueBytes), kept * valueBytes);
    kept++;
  }
  return { keys, values, count };
}
