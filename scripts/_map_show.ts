/**
 * `bpftool map show`'s loop, shared by `maps.ts` and `map.ts show`: each map's record in
 * bpftool's plain text or JSON, in the order given, each map closed once written.
 *
 * @module
 */

import { type BackendName, BpfMap } from "../mod.ts";
import type { JsonWriter } from "../ffi/format/json_writer.ts";
import {
  formatMapPlain,
  isVanished,
  MapInfoScratch,
  mapShowRecord,
  writeMapJson,
} from "../ffi/format/map_show.ts";

/** How `showMaps` writes. */
export interface ShowOptions {
  /** The document's JSON writer (`-j`/`-p`); absent: plain text. */
  json?: JsonWriter;
  /** Each map's pin paths (`-f`), by id. */
  pins?: Map<number, string[]>;
}

/**
 * Writes `maps` as `bpftool map show` does, through `write`: one JSON object when `single`,
 * else an array (in JSON mode). The JSON document is left open: the caller ends it.
 */
export function showMaps(
  maps: Iterable<BpfMap>,
  single: boolean,
  options: ShowOptions,
  write: (text: string) => void,
): void {
  const { json, pins } = options;
  // One info buffer for the whole run, never cleared, as bpftool has it (see MapInfoScratch).
  const scratch = new MapInfoScratch();
  if (json && !single) json.startArray();
  for (const map of maps) {
    try {
      const record = mapShowRecord(map, { pins, scratch });
      if (json) {
        writeMapJson(json, record);
        write(json.take());
      } else {
        write(formatMapPlain(record));
      }
    } finally {
      map.close();
    }
  }
  if (json && !single) json.endArray();
}

/** Opens every map on the system in id order, skipping those that vanish meanwhile. */
export function* allMaps(backend?: BackendName): Generator<BpfMap> {
  for (const id of BpfMap.ids({ backend })) {
    let map: BpfMap;
    try {
      map = BpfMap.fromId(id, { backend });
    } catch (e) {
      if (isVanished(e)) continue;
      throw e;
    }
    yield map;
  }
}
