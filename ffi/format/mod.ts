/**
 * Output as bpftool prints it, byte for byte: its JSON writer, `map show`, `map dump` (plain,
 * `-j`, `-p`, several maps of one name), and typed JSON lines, written as bytes.
 *
 * @module
 */

export {
  BPFTOOL_MAP_TYPE_NAMES,
  formatMapPlain,
  jsonMapHeader,
  type MapDevice,
  MapInfoScratch,
  type MapShowRecord,
  mapShowRecord,
  pinnedMapPaths,
  plainMapHeader,
  writeMapJson,
} from "./map_show.ts";
export {
  BpftoolDump,
  type BpftoolDumpOptions,
  type BpftoolFormat,
  type DumpShape,
} from "./bpftool_dump.ts";
export { type ByteSink, ByteWriter } from "./byte_writer.ts";
export { JsonWriter } from "./json_writer.ts";
export { JsonlDump } from "./jsonl.ts";
export {
  jsonMapStart,
  PLAIN_MAP_SEPARATOR,
  plainFoundLine,
  plainUsesBtfWriter,
} from "./bpftool_header.ts";
