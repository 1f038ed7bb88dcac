/**
 * The per-map headers of `bpftool map dump name NAME` when several maps carry that name
 * (bpftool 7.1, `map.c` `do_dump` / `map_dump`): pure functions over a `MapInfo`.
 *
 * What bpftool prints then, maps in ascending id order (`map_fd_by_name` walks
 * `BPF_MAP_GET_NEXT_ID` from 0):
 *
 * - `-j` / `-p`: a root array of one object per map, `{"id","type","name","flags"` (the
 *   header, `jsonMapHeader`) then `"elements": [...]` holding the entries a single-map dump
 *   prints; an empty map gives `"elements": []`. In `-p` every entry sits two levels (8
 *   spaces) deeper than in a single-map dump, as the one writer nests it.
 * - plain text, when `plainUsesBtfWriter()` says no: per map the `plainMapHeader()` line (`./map_show.ts`), its
 *   entries, `Found N element(s)`, and a blank line between maps (none after the last).
 * - plain text when it says yes: the `-p` layout above (root array, headers, `"elements"`),
 *   with the entries of the plain BTF dump (`"key"`, `"value"` / `"values"` decoded, no hex,
 *   no `"formatted"`), no `Found` lines; the document ends with one newline.
 *
 * A single map (one match, `id`, `pinned`) gets none of this: no root array, no header.
 *
 * bpftool reads every map's `bpf_map_info` into one struct it never clears (`do_dump`, and
 * another in `maps_have_btf`); kernels that copy the caller's struct in first (Linux 6.18
 * does) leave a map without BTF with the BTF fields (`btf_id`, `btf_key_type_id`,
 * `btf_value_type_id`) of the last map before it that had them. So a map without BTF that
 * follows one with BTF is dumped through the *other* map's types (with `"formatted"` in JSON,
 * decoded in plain text), and plain text turns to the BTF writer as soon as the first map has
 * BTF. Read the infos as bpftool does, one `MapInfoScratch` for all maps in id order
 * (`mapShowRecord(map, { scratch }).info` in `./map_show.ts`), and pass those infos here and
 * to the entry formatting. The header fields themselves (`id`, `type`, `name`, `map_flags`)
 * are always set by the kernel.
 *
 * @module
 */

import type { JsonWriter } from "./json_writer.ts";
import type { MapInfo } from "../sys/layout.ts";
import { jsonMapHeader } from "./map_show.ts";

/**
 * What `map_dump` writes before a map's elements when several maps are dumped: the map's
 * object opened, its header (`jsonMapHeader`), and the name `"elements"`. The caller then
 * writes the elements array (`[`, the entries, `]`) and closes the object (`w.endObject()`);
 * around all maps goes one root array (`w.startArray()` ... `w.endArray()`, then `w.end()`).
 *
 * @example
 * ```ts
 * import { JsonWriter } from "./json_writer.ts";
 * import { jsonMapStart } from "./bpftool_header.ts";
 * const info = { id: 7, type: 1, keySize: 4, valueSize: 4, maxEntries: 16, flags: 0, name: "foo",
 *   btfId: 0, btfKeyTypeId: 0, btfValueTypeId: 0, btfVmlinuxValueTypeId: 0 };
 * const w = new JsonWriter({ pretty: false });
 * w.startArray();
 * jsonMapStart(w, info);
 * w.startArray();
 * w.endArray();
 * w.endObject();
 * w.endArray();
 * console.log(w.end()); // [{"id":7,"type":"hash","name":"foo","flags":0,"elements":[]}]
 * ```
 */
export function jsonMapStart(w: JsonWriter, info: MapInfo): void {
  w.startObject();
  jsonMapHeader(w, info);
  w.name("elements");
}

/**
 * bpftool's plain-text count after a map's entries (`map_dump`), newline included:
 * `Found 1 element`, `Found N elements` otherwise (0 too).
 *
 * @example
 * ```ts
 * import { plainFoundLine } from "./bpftool_header.ts";
 * console.log(plainFoundLine(0)); // "Found 0 elements\n"
 * ```
 */
export function plainFoundLine(count: number): string {
  return `Found ${count} element${count !== 1 ? "s" : ""}\n`;
}

/** What plain text prints between two maps' dumps (`do_dump`, without the BTF writer). */
export const PLAIN_MAP_SEPARATOR = "\n";

/**
 * bpftool's `maps_have_btf`: whether a plain-text dump of these maps (in id order) goes
 * through the pretty JSON writer of the BTF dumper, as every map has a `btf_id`. Pass infos
 * read as bpftool reads them (one `MapInfoScratch` for all, see the module doc): on kernels
 * that copy the struct in, a map after one with BTF keeps that `btf_id`.
 *
 * @example
 * ```ts
 * import { plainUsesBtfWriter } from "./bpftool_header.ts";
 * const info = { id: 7, type: 1, keySize: 4, valueSize: 4, maxEntries: 16, flags: 0, name: "foo",
 *   btfId: 3, btfKeyTypeId: 1, btfValueTypeId: 1, btfVmlinuxValueTypeId: 0 };
 * console.log(plainUsesBtfWriter([info, { ...info, btfId: 0 }])); // false
 * ```
 */
export function plainUsesBtfWriter(infos: readonly MapInfo[]): boolean {
  return infos.every((info) => info.btfId !== 0);
}
