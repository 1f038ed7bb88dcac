/**
 * The two dumps built on the in-kernel snapshot (`MapSnapshot`), each completed by
 * LOOKUP_BATCH where the snapshot stops:
 *
 * - `snapshot`: one kernel walk from the start of the map; when the map holds more than one
 *   run may copy (its bound on kernel time), LOOKUP_BATCH reads the rest from where the walk
 *   stopped (`resumeCursor`).
 * - `hybrid`: LOOKUP_BATCH over the cursor space from a split point `B` to the end, in
 *   Workers, while this thread runs the snapshot from the start; the snapshot stops at the
 *   first key the batch side returned (its sentinel), so the two sides meet exactly, and the
 *   entries come out in the walk's order. If the sentinel was deleted before the snapshot
 *   reached it, the snapshot walked the whole map and the batch side is dropped. If the
 *   snapshot met its bound first, this thread reads the gap between where it stopped and the
 *   sentinel with LOOKUP_BATCH while the Workers go on; the gap's batches and the batch
 *   side's then interleave.
 *
 * Entries are handed to `visit` once per side; a key that moved between the sides while the
 * map was written may come from both, so callers count keys (as `dumpMap` does).
 *
 * @module
 */

import { isArray } from "../sys/constants.ts";
import type { BatchView, BpfMap, WalkStats } from "../map/map.ts";
import { firstEntries } from "./batches.ts";
import { cursorSpace, splitRanges, walkRanges } from "./parallel.ts";
import type { ParallelPool } from "./pool.ts";
import type { MapSnapshot, SnapshotStats } from "./snapshot.ts";

/** How long this thread walks a hybrid's gap before it takes in the Workers' batches. */
const GAP_YIELD_MS = 5;

/** What a snapshot or hybrid dump did, beyond the entries and calls of every walk. */
export interface SnapshotDumpStats extends WalkStats {
  /** The kernel walk: its stop, its bound, its length. */
  snapshot: SnapshotStats;
  /** Entries handed out from the snapshot. */
  snapshotEntries: number;
  /** Entries handed out from LOOKUP_BATCH (the rest after the bound, the gap, the batch side). */
  batchEntries: number;
  /**
   * Hybrid: the bucket (hash maps) or key (arrays) where the batch side began, and whether
   * its entries were kept (`false`: the sentinel was gone, the snapshot walked everything).
   */
  split?: { at: number; of: number; batchSideKept: boolean };
  /** Cursor positions `[from, to)` read by LOOKUP_BATCH after the snapshot met its bound. */
  gap?: [number, number];
  /** The longest single system call, in milliseconds: the snapshot's run. */
  longestCallMs: number;
}

/** How many of a batch's entries precede `marker` (all of them when it is null). */
function countBeforeMarker(batch: BatchView, keySize: number, marker: Uint8Array | null): number {
  if (marker === null) return batch.count;
  const keys = batch.keys;
  for (let i = 0; i < batch.count; i++) {
    let same = true;
    for (let b = 0; b < keySize && same; b++) same = keys[i * keySize + b] === marker[b];
    if (same) return i;
  }
  return batch.count;
}

/** Options of `walkRange`. */
export interface RangeOptions {
  /** Entries per call (default 4096). */
  chunk?: number;
  /** The first key a walk from the range's end returned, or `null`: the range runs to the end. */
  endMarker?: Uint8Array | null;
  /**
   * Lets the event loop run after this many milliseconds of walking (default: never), so
   * that messages from Workers walking meanwhile are taken in rather than queued.
   */
  yieldEveryMs?: number;
}

/**
 * Resolves after the event loop has run the tasks already queued (Workers' messages): a
 * message to itself, which costs microseconds where a timer waits a millisecond or more.
 */
function nextTask(): Promise<void> {
  const { port1, port2 } = new MessageChannel();
  return new Promise((resolve) => {
    port1.onmessage = () => {
      port1.close();
      resolve();
    };
    port2.postMessage(null);
  });
}

/**
 * Reads the range `[start, end)` of `map` on this thread with LOOKUP_BATCH, keeping of its
 * last call of a hash map what precedes `endMarker` (the first key a walk from `end`
 * returned; `null`: the range runs to the end of the map). Views are reused by the next batch.
 */
export async function walkRange(
  map: BpfMap,
  range: readonly [number, number],
  visit: (batch: BatchView) => void,
  options: RangeOptions = {},
): Promise<WalkStats> {
  const array = isArray(map.info.type);
  const marker = array ? null : options.endMarker ?? null;
  const batches = map.batches({
    chunk: options.chunk,
    range: { start: range[0], end: range[1], array },
  });
  let entries = 0;
  let handedOut = 0;
  let walked = performance.now();
  for (let step = batches.next();; step = batches.next()) {
    if (step.done) return { ...step.value, entries, batches: handedOut };
    const batch = step.value;
    const kept = batch.crossed ? countBeforeMarker(batch, map.keySize, marker) : batch.count;
    if (kept > 0) {
      entries += kept;
      handedOut++;
      visit(firstEntries(batch, kept, map.keySize, map.valueBytes));
    }
    if (options.yieldEveryMs !== undefined && performance.now() - walked > options.yieldEveryMs) {
      await nextTask();
      walked = performance.now();
    }
  }
}

function addWalk(stats: SnapshotDumpStats, walk: WalkStats): void {
  stats.entries += walk.entries;
  stats.batchEntries += walk.entries;
  stats.syscalls += walk.syscalls;
  stats.batches += walk.batches;
}

function fromSnapshot(snapshot: SnapshotStats, chunk: number): SnapshotDumpStats {
  return {
    entries: snapshot.entries,
    syscalls: snapshot.syscalls,
    batches: snapshot.batches,
    chunk,
    snapshot,
    snapshotEntries: snapshot.entries,
    batchEntries: 0,
    longestCallMs: snapshot.kernelMs,
  };
}

/**
 * Where LOOKUP_BATCH takes over after a snapshot that stopped at its bound: the cursor it
 * gave, or the start of the map when it could not tell (its entries were all handed out:
 * the keys read again are repeats).
 */
function resumeFrom(snapshot: SnapshotStats): number {
  return snapshot.resumeCursor ?? 0;
}

/** Options of `forEachBatchSnapshot`. */
export interface SnapshotDumpOptions {
  /** The snapshot opened for the map (kept between dumps). */
  snapshot: MapSnapshot;
  /** Entries per LOOKUP_BATCH call for the rest (default 4096). */
  chunk?: number;
}

/**
 * Dumps `map` with one snapshot run from its start and, when the run met its bound,
 * LOOKUP_BATCH from where it stopped to the end. `visit`'s views are reused by the next batch.
 *
 * @example
 * ```ts
 * import { BpfMap, forEachBatchSnapshot, MapSnapshot } from "../../mod.ts";
 * using map = BpfMap.fromPin("/sys/fs/bpf/test_map");
 * using snapshot = MapSnapshot.open(map);
 * const stats = await forEachBatchSnapshot(map, (batch) => console.log(batch.count), { snapshot });
 * console.log(stats.snapshotEntries, stats.batchEntries);
 * ```
 */
export async function forEachBatchSnapshot(
  map: BpfMap,
  visit: (batch: BatchView) => void,
  options: SnapshotDumpOptions,
): Promise<SnapshotDumpStats> {
  const snapshot = options.snapshot.forEachBatch(visit);
  const stats = fromSnapshot(snapshot, options.chunk ?? 0);
  if (!snapshot.complete) {
    stats.gap = [resumeFrom(snapshot), cursorSpace(map)];
    addWalk(stats, await walkRange(map, stats.gap, visit, { chunk: options.chunk }));
  }
  return stats;
}

/** Options of `forEachBatchHybrid`. */
export interface HybridOptions extends SnapshotDumpOptions {
  /** The Workers of the batch side. */
  pool: ParallelPool;
  /** Ranges of the batch side, walked at once (default: the pool's size). */
  ranges?: number;
  /** The fraction of the cursor space the snapshot walks, from 0 (exclusive) to 1. */
  split: number;
  /**
   * Hears the sentinel (the batch side's first key, or `null` when the batch side is empty)
   * just before the snapshot starts: for tracing, and for tests that write the map there.
   */
  onSentinel?: (key: Uint8Array | null) => void;
}

/**
 * Dumps `map` with the snapshot on this thread over the start of the cursor space and
 * LOOKUP_BATCH over the rest in the pool's Workers, meeting at the batch side's first key.
 * `visit` hears the snapshot's entries first, then the batch side's (those views stay valid).
 *
 * @example
 * ```ts
 * import { BpfMap, forEachBatchHybrid, MapSnapshot, ParallelPool } from "../../mod.ts";
 * using map = BpfMap.fromPin("/sys/fs/bpf/test_map");
 * using snapshot = MapSnapshot.open(map);
 * using pool = await ParallelPool.start(1);
 * const stats = await forEachBatchHybrid(map, () => {}, { snapshot, pool, split: 0.55 });
 * console.log(stats.split, stats.snapshotEntries, stats.batchEntries);
 * ```
 */
export async function forEachBatchHybrid(
  map: BpfMap,
  visit: (batch: BatchView) => void,
  options: HybridOptions,
): Promise<SnapshotDumpStats> {
  const space = cursorSpace(map);
  const at = Math.min(space, Math.max(1, Math.round(options.split * space)));
  const workers = Math.max(1, Math.min(options.ranges ?? options.pool.size, space - at));
  let result: SnapshotDumpStats | undefined;
  let keepBatchSide = true;
  let gapWalk: Promise<WalkStats> | undefined;
  const runSnapshot = (sentinel: Uint8Array | null) => {
    options.onSentinel?.(sentinel);
    const snapshot = options.snapshot.forEachBatch(visit, {
      stopAtKey: sentinel ?? undefined,
    });
    result = fromSnapshot(snapshot, options.chunk ?? 0);
    // Without a sentinel the batch side is empty; with one not met, the snapshot either
    // walked the whole map (it was deleted) or stopped at its bound.
    keepBatchSide = sentinel === null || snapshot.sentinelMet === true || !snapshot.complete;
    if (!snapshot.complete && !snapshot.sentinelMet) {
      const from = resumeFrom(snapshot);
      // Past the split (the sentinel was gone): the batch side covers the rest.
      const to = sentinel === null ? space : at;
      if (from < to) {
        result.gap = [from, to];
        // Walked here while the Workers go on, letting their batches in as it goes: held
        // back, they would pile up in memory.
        gapWalk = walkRange(map, result.gap, visit, {
          chunk: options.chunk,
          endMarker: sentinel,
          yieldEveryMs: GAP_YIELD_MS,
        });
        // Awaited once the batch side ends: a failure before then is not unhandled.
        gapWalk.catch(() => {});
      }
    }
  };
  let batchSide: WalkStats = { entries: 0, syscalls: 0, batches: 0, chunk: options.chunk ?? 0 };
  if (at < space) {
    batchSide = await walkRanges(
      map,
      // One range per Worker: this thread runs the snapshot meanwhile and could not start
      // more. Where the ranges meet, the keys of the later ones are kept until the earlier
      // ones end (`RangeSeams`): no more than the key set a hybrid dump keeps anyway.
      splitRanges(at, space, workers),
      (batch) => {
        if (keepBatchSide) visit(batch);
      },
      { chunk: options.chunk, pool: options.pool, onFirstKey: runSnapshot },
    );
  } else {
    runSnapshot(null);
  }
  const stats = result!;
  if (gapWalk) addWalk(stats, await gapWalk);
  stats.split = { at, of: space, batchSideKept: keepBatchSide && at < space };
  stats.syscalls += batchSide.syscalls;
  stats.chunk = batchSide.chunk;
  if (keepBatchSide) {
    stats.entries += batchSide.entries;
    stats.batchEntries += batchSide.entries;
    stats.batches += batchSide.batches;
  }
  return stats;
}
