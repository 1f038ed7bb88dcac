/**
 * `bpftool map dump`'s walk and bytes, shared by `dump.ts` and `map.ts dump`: one map's
 * dump (`dumpOne`), and the dump of several maps of one name (`dumpSeveral`).
 *
 * @module
 */

import {
  type BpfMap,
  dumpMap,
  type DumpMethodChoice,
  type DumpResult,
  loadMapBtf,
} from "../mod.ts";
import { promisesStableKeysOnce } from "../ffi/dump/dump.ts";
import { isPerCpu, MapType } from "../ffi/sys/constants.ts";
import { BpftoolDump, type BpftoolFormat } from "../ffi/format/bpftool_dump.ts";
import type { ByteWriter } from "../ffi/format/byte_writer.ts";
import { JsonlDump } from "../ffi/format/jsonl.ts";
import {
  jsonMapStart,
  PLAIN_MAP_SEPARATOR,
  plainUsesBtfWriter,
} from "../ffi/format/bpftool_header.ts";
import { JsonWriter } from "../ffi/format/json_writer.ts";
import type { MapInfo } from "../ffi/sys/layout.ts";
import { MapInfoScratch, mapShowRecord, plainMapHeader } from "../ffi/format/map_show.ts";
import { RuntimeError } from "./_cli.ts";

const BATCH_TYPES: number[] = Object.values(MapType);
/** Map types without keys to walk (`GET_NEXT_KEY` is refused). */
const KEYLESS: Record<number, string> = {
  22: "queue",
  23: "stack",
  27: "ringbuf",
  30: "bloom_filter",
  31: "user_ringbuf",
};

/** Maps from this size on are walked on a Worker (about 30 ms to start) while this thread prints. */
const OVERLAP_FROM_ENTRIES = 65_536;

/** Whether a bpftool-format dump walks on a Worker: a large map, and a CPU to spare. */
function overlapWalk(map: BpfMap): boolean {
  return map.info.maxEntries >= OVERLAP_FROM_ENTRIES && navigator.hardwareConcurrency > 1;
}

/** Where one map's dump goes among several (`--name` matching more than one map). */
export interface Among {
  /** The map's info as bpftool reads it (its BTF ids may be a map's before it). */
  info: MapInfo;
  /** The document's writer, in bpftool's JSON layout; absent: plain text, in hex. */
  json?: JsonWriter;
}

/**
 * One map's dump as `bpftool map dump` prints it (or typed JSON lines): walked by `method`
 * (`auto`: in batches, by Workers in order on large maps), written to `out`; `among` places
 * it in a dump of several maps.
 */
export async function dumpOne(
  map: BpfMap,
  format: BpftoolFormat | "jsonl",
  method: DumpMethodChoice,
  chunk: number,
  out: ByteWriter,
  among?: Among,
): Promise<void> {
  const type = map.info.type;
  if (KEYLESS[type]) {
    throw new RuntimeError(`${map.subject} is a ${KEYLESS[type]} map: it has no keys to walk`);
  }
  const ordered = format !== "jsonl";
  if (!BATCH_TYPES.includes(type) && method !== "auto" && method !== "normal") {
    throw new RuntimeError(
      `${map.subject} (${map.typeName}) has no LOOKUP_BATCH: only --method normal reads it`,
    );
  }
  const chosen: DumpMethodChoice = !BATCH_TYPES.includes(type)
    ? "normal"
    : method === "auto"
    ? (overlapWalk(map) ? "parallel" : "batch")
    : method;
  const info = among?.info ?? map.info;
  const btf = (!among || among.json) && (info.btfValueTypeId || info.btfVmlinuxValueTypeId)
    ? loadMapBtf(map, { info })
    : null;
  const shape = {
    keySize: map.keySize,
    valueSize: map.valueSize,
    perCpu: isPerCpu(type) ? map.cpus : 0,
    btf: btf &&
      {
        keyType: btf.keyType.kind === "void" ? undefined : btf.keyType,
        valueType: btf.valueType,
      },
  };
  const dump = ordered
    ? new BpftoolDump(shape, format, out, { json: among?.json })
    : new JsonlDump(shape, out);
  if (dump instanceof BpftoolDump) dump.begin();
  const { keySize, valueBytes } = map;
  const keepsPromise = promisesStableKeysOnce(chosen);
  const result = await dumpMap(map, {
    method: chosen,
    chunk,
    // Workers walk ranges in order while this thread prints: bucket order, a bounded window.
    inOrder: true,
    // Batch walks, parallel ones too, cannot repeat a key: no key set, so memory stays flat.
    trackKeys: false,
    // A method that keeps the live-map promise is not counted: no counting program to load.
    // One that does not is counted before and after, to say so when the map was written.
    expected: keepsPromise ? { unavailable: "not counted by dump" } : undefined,
    visit: (batch) => {
      for (let i = 0; i < batch.count; i++) {
        dump.entry(batch.keys, i * keySize, batch.values, i * valueBytes);
      }
    },
  });
  if (dump instanceof BpftoolDump) dump.end();
  warnIfWritten(map, result, BATCH_TYPES.includes(type) ? "batch" : "normal");
}

/**
 * Says on stderr when a method that does not promise each key present throughout once saw
 * the map written during the dump, and names one that does.
 */
function warnIfWritten(map: BpfMap, result: DumpResult, instead: string): void {
  if (result.stableOnce || !result.changed) return;
  const counts = result.countBefore !== null && result.expected !== null
    ? ` (${result.countBefore} -> ${result.expected} entries)`
    : "";
  console.error(
    `dump: warning: ${map.subject} was written during the dump${counts}: --method ${result.method} walks it without the buckets' locks, so keys present throughout may be missing or printed twice; --method ${instead} prints each of them once`,
  );
}

/**
 * bpftool's dump of several maps of one name, in id order: in JSON, an array of
 * `{header, "elements": [...]}`; in plain text, each map's header line, its entries in hex
 * and its count, unless every map has BTF (as bpftool reads the infos): then the JSON layout.
 * `document`: the run's JSON writer, left open (default: a document of its own, ended).
 */
export async function dumpSeveral(
  maps: BpfMap[],
  format: BpftoolFormat,
  method: DumpMethodChoice,
  chunk: number,
  out: ByteWriter,
  document?: JsonWriter,
): Promise<void> {
  const scratch = new MapInfoScratch();
  const infos = maps.map((map) => mapShowRecord(map, { scratch }).info);
  if (format === "plain" && !plainUsesBtfWriter(infos)) {
    for (const [i, map] of maps.entries()) {
      out.text(plainMapHeader(infos[i]));
      await dumpOne(map, format, method, chunk, out, { info: infos[i] });
      if (i < maps.length - 1) out.text(PLAIN_MAP_SEPARATOR);
    }
    return;
  }
  const json = document ?? new JsonWriter({ pretty: format !== "json" });
  json.startArray();
  for (const [i, map] of maps.entries()) {
    jsonMapStart(json, infos[i]);
    await dumpOne(map, format, method, chunk, out, { info: infos[i], json });
    json.endObject();
  }
  json.endArray();
  out.text(document ? json.take() : json.end());
}
