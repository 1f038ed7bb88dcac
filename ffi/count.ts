/**
 * The kernel's own count of a map's entries, to check a dump against without a second
 * pass over the map. Hash maps keep a count (read with the `bpf_map_sum_elem_count` kfunc
 * from an `iter/bpf_map` program, `bpf/map_count.bpf.c`); arrays always hold `maxEntries`.
 *
 * @module
 */

import { isArray } from "./constants.ts";
import type { BpfMap } from "./map.ts";
import { BpfObject, builtObjectPath } from "./object.ts";

const RECORD_SIZE = 16; // struct { __u32 id; __u32 max_entries; __s64 count; }

/** Opens the counting object, or `undefined` when it is not built. */
function openCounter(): BpfObject | undefined {
  try {
    return BpfObject.open(builtObjectPath("map_count.bpf.o"));
  } catch {
    return undefined;
  }
}

/** Reads `map`'s count through the loaded counting object, then closes it. */
function readCount(object: BpfObject, map: BpfMap): number | undefined {
  try {
    using link = object.attachIterAll("count_elems");
    let count: number | undefined;
    link.read(new Uint8Array(64 * 1024), (bytes) => {
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let at = 0; at + RECORD_SIZE <= bytes.byteLength; at += RECORD_SIZE) {
        if (view.getUint32(at, true) !== map.info.id) continue;
        const value = Number(view.getBigInt64(at + 8, true));
        count = value < 0 ? undefined : value;
      }
    });
    return count;
  } catch {
    return undefined;
  } finally {
    object.close();
  }
}

/**
 * The number of entries `map` holds by the kernel's count, or `undefined` when it cannot be
 * told (the counting object is not built, or the kernel lacks the kfunc). Only exact while
 * nothing writes the map.
 */
export function kernelEntryCount(map: BpfMap): number | undefined {
  if (isArray(map.info.type)) return map.info.maxEntries;
  const object = openCounter();
  if (!object) return undefined;
  try {
    object.load();
  } catch {
    object.close();
    return undefined;
  }
  return readCount(object, map);
}

/**
 * `kernelEntryCount`, with the counting program loaded on another thread: start it, dump the
 * map, then await the count, and the ~20 ms of loading overlap the dump.
 */
export async function kernelEntryCountInBackground(map: BpfMap): Promise<number | undefined> {
  if (isArray(map.info.type)) return map.info.maxEntries;
  const object = openCounter();
  if (!object) return undefined;
  try {
    await object.loadInBackground();
  } catch {
    object.close();
    return undefined;
  }
  return readCount(object, map);
}
