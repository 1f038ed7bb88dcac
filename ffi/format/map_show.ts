/**
 * What `bpftool map show` prints, byte for byte (bpftool 7.1 with libbpf 1.1, as
 * `map.c` `show_map_close_plain` / `show_map_close_json` write it): the formatting is pure
 * (`formatMapPlain`, `writeMapJson`, over a `MapShowRecord`), the gathering (`mapShowRecord`,
 * `pinnedMapPaths`) reads the kernel and `/proc`.
 *
 * bpftool's quirks kept here: type and program type names come from libbpf 1.1's tables
 * (newer types print as `type N`); `memlock`, `frozen`, `owner_prog_type` and `owner_jited`
 * are the first fdinfo line *containing* the key; `flags` is printed as a signed int in JSON;
 * with `-f` every map gets a `"pinned"` array as soon as any map is pinned anywhere, and
 * several pins of one map come in the order libbpf's hashmap leaves them in.
 *
 * @module
 */

import { backend as pickBackend } from "../sys/backends.ts";
import { ownedBytes } from "../sys/buffers.ts";
import { BpfCommand } from "../sys/constants.ts";
import { BpfError, check, Errno } from "../sys/errors.ts";
import type { JsonWriter } from "./json_writer.ts";
import {
  decodeMapInfo,
  layoutSize,
  MAP_INFO,
  type MapInfo,
  readU32,
  readU64,
} from "../sys/layout.ts";
import { closeFd, DirentType, readFolder, readSmallFile } from "../sys/libc.ts";
import type { BpfMap } from "../map/map.ts";

/** libbpf 1.1's `map_type_name[]`, indexed by `enum bpf_map_type`, as bpftool 7.1 prints them. */
export const BPFTOOL_MAP_TYPE_NAMES: readonly string[] = [
  "unspec",
  "hash",
  "array",
  "prog_array",
  "perf_event_array",
  "percpu_hash",
  "percpu_array",
  "stack_trace",
  "cgroup_array",
  "lru_hash",
  "lru_percpu_hash",
  "lpm_trie",
  "array_of_maps",
  "hash_of_maps",
  "devmap",
  "sockmap",
  "cpumap",
  "xskmap",
  "sockhash",
  "cgroup_storage",
  "reuseport_sockarray",
  "percpu_cgroup_storage",
  "queue",
  "stack",
  "sk_storage",
  "devmap_hash",
  "struct_ops",
  "ringbuf",
  "inode_storage",
  "task_storage",
  "bloom_filter",
  "user_ringbuf",
  "cgrp_storage",
];

/** libbpf 1.1's `prog_type_name[]`, indexed by `enum bpf_prog_type` (for `owner_prog_type`). */
export const BPFTOOL_PROG_TYPE_NAMES: readonly string[] = [
  "unspec",
  "socket_filter",
  "kprobe",
  "sched_cls",
  "sched_act",
  "tracepoint",
  "xdp",
  "perf_event",
  "cgroup_skb",
  "cgroup_sock",
  "lwt_in",
  "lwt_out",
  "lwt_xmit",
  "sock_ops",
  "sk_skb",
  "cgroup_device",
  "sk_msg",
  "raw_tracepoint",
  "cgroup_sock_addr",
  "lwt_seg6local",
  "lirc_mode2",
  "sk_reuseport",
  "flow_dissector",
  "cgroup_sysctl",
  "raw_tracepoint_writable",
  "cgroup_sockopt",
  "tracing",
  "struct_ops",
  "ext",
  "lsm",
  "sk_lookup",
  "syscall",
];

/** `BPF_MAP_TYPE_PROG_ARRAY`. */
const PROG_ARRAY = 3;

/** Where an offloaded map lives (`bpf_map_info.ifindex`, `netns_dev`, `netns_ino`). */
export interface MapDevice {
  /** The netdev's ifindex; 0 for maps that are not offloaded. */
  ifindex: number;
  /** `netns_dev`. */
  netnsDev: bigint;
  /** `netns_ino`. */
  netnsIno: bigint;
}

/** Everything `bpftool map show` prints about one map. */
export interface MapShowRecord {
  /** The decoded `bpf_map_info`. */
  info: MapInfo;
  /** The offload device; `ifindex` 0 (or absent) when the map is not offloaded. */
  device?: MapDevice;
  /** The text of `/proc/self/fdinfo/FD` for an fd of the map. */
  fdinfo: string;
  /**
   * With `-f` (`--bpffs`) and at least one map pinned anywhere: this map's pin paths, in
   * bpftool's order (possibly empty). `undefined` prints no pins at all.
   */
  pinned?: readonly string[];
}

/**
 * bpftool's `get_fdinfo()`: the value of the first fdinfo line that contains `key` anywhere,
 * from after its first tab, its last character (the newline) dropped.
 *
 * @example
 * ```ts
 * import { fdinfoValue } from "./map_show.ts";
 * console.log(fdinfoValue("memlock:\t2320\nmap_id:\t5\n", "memlock")); // "2320"
 * ```
 */
export function fdinfoValue(fdinfo: string, key: string): string | undefined {
  for (const line of fdinfo.split(/(?<=\n)/)) {
    if (!line.includes(key)) continue;
    const tab = line.indexOf("\t");
    if (tab < 0 || tab + 1 >= line.length) return undefined;
    return line.slice(tab + 1, -1);
  }
  return undefined;
}

/** C `atoi`/`atoll`: optional blanks, a sign, digits; 0 when there are none. */
function atoi(text: string | undefined): number {
  const match = text?.match(/^[ \t\n\v\f\r]*([+-]?\d+)/);
  return match ? Number(match[1]) : 0;
}

/** `libbpf_bpf_map_type_str()`, or `undefined` for types libbpf 1.1 has no name for. */
export function bpftoolMapTypeName(type: number): string | undefined {
  return BPFTOOL_MAP_TYPE_NAMES[type];
}

/**
 * bpftool's `print_dev_plain`: `  offloaded_to ifindex N ns_dev D ns_ino I` for an offloaded
 * map, `""` otherwise.
 */
function plainDevice(device: MapDevice | undefined): string {
  if (!device?.ifindex) return "";
  // bpftool prints the interface name when it can resolve it in that namespace.
  return `  offloaded_to ifindex ${device.ifindex} ns_dev ${device.netnsDev} ns_ino ${device.netnsIno}`;
}

/**
 * One map as `bpftool map show` prints it (`show_map_close_plain`), newline included.
 *
 * @example
 * ```ts
 * import { formatMapPlain } from "./map_show.ts";
 * const info = { id: 7, type: 1, keySize: 4, valueSize: 4, maxEntries: 16, flags: 0, name: "foo",
 *   btfId: 0, btfKeyTypeId: 0, btfValueTypeId: 0, btfVmlinuxValueTypeId: 0 };
 * console.log(formatMapPlain({ info, fdinfo: "memlock:\t2320\nfrozen:\t0\n" }));
 * // 7: hash  name foo  flags 0x0
 * // \tkey 4B  value 4B  max_entries 16  memlock 2320B
 * ```
 */
export function formatMapPlain(record: MapShowRecord): string {
  const { info, fdinfo } = record;
  let out = plainMapHeader(info, record.device);
  out += `\tkey ${info.keySize}B  value ${info.valueSize}B  max_entries ${info.maxEntries}`;
  const memlock = fdinfoValue(fdinfo, "memlock");
  if (memlock !== undefined) out += `  memlock ${memlock}B`;
  if (info.type === PROG_ARRAY) {
    const ownerType = fdinfoValue(fdinfo, "owner_prog_type");
    const ownerJited = fdinfoValue(fdinfo, "owner_jited");
    if (ownerType !== undefined || ownerJited !== undefined) out += "\n\t";
    if (ownerType !== undefined) {
      const type = atoi(ownerType) >>> 0;
      const name = BPFTOOL_PROG_TYPE_NAMES[type];
      out += `owner_prog_type ${name ?? (type | 0)}  `;
    }
    if (ownerJited !== undefined) out += `owner${atoi(ownerJited) ? "" : " not"} jited`;
  }
  for (const path of record.pinned ?? []) out += `\n\tpinned ${path}`;
  const frozen = atoi(fdinfoValue(fdinfo, "frozen"));
  if (info.btfId || frozen) out += "\n\t";
  if (info.btfId) out += `btf_id ${info.btfId | 0}`;
  if (frozen) out += `${info.btfId ? "  " : ""}frozen`;
  return out + "\n";
}

/**
 * Writes one map as `bpftool -j map show` does (`show_map_close_json`).
 *
 * @example
 * ```ts
 * import { JsonWriter } from "./json_writer.ts";
 * import { writeMapJson } from "./map_show.ts";
 * const info = { id: 7, type: 1, keySize: 4, valueSize: 4, maxEntries: 16, flags: 0, name: "",
 *   btfId: 0, btfKeyTypeId: 0, btfValueTypeId: 0, btfVmlinuxValueTypeId: 0 };
 * const w = new JsonWriter({ pretty: false });
 * writeMapJson(w, { info, fdinfo: "memlock:\t2320\n" });
 * console.log(w.end());
 * ```
 */
export function writeMapJson(w: JsonWriter, record: MapShowRecord): void {
  const { info, fdinfo, device } = record;
  w.startObject();
  jsonMapHeader(w, info);
  if (device?.ifindex) {
    w.name("dev");
    w.startObject();
    w.uintField("ifindex", device.ifindex);
    w.uintField("ns_dev", device.netnsDev);
    w.uintField("ns_inode", device.netnsIno);
    w.endObject();
  }
  w.uintField("bytes_key", info.keySize);
  w.uintField("bytes_value", info.valueSize);
  w.uintField("max_entries", info.maxEntries);
  const memlock = fdinfoValue(fdinfo, "memlock");
  if (memlock !== undefined) w.intField("bytes_memlock", atoi(memlock));
  if (info.type === PROG_ARRAY) {
    const ownerType = fdinfoValue(fdinfo, "owner_prog_type");
    const ownerJited = fdinfoValue(fdinfo, "owner_jited");
    if (ownerType !== undefined) {
      const type = atoi(ownerType) >>> 0;
      const name = BPFTOOL_PROG_TYPE_NAMES[type];
      if (name !== undefined) w.stringField("owner_prog_type", name);
      else w.uintField("owner_prog_type", type);
    }
    if (ownerJited !== undefined) w.boolField("owner_jited", atoi(ownerJited) !== 0);
  }
  w.intField("frozen", atoi(fdinfoValue(fdinfo, "frozen")));
  if (info.btfId) w.intField("btf_id", info.btfId | 0);
  if (record.pinned !== undefined) {
    w.name("pinned");
    w.startArray();
    for (const path of record.pinned) w.string(path);
    w.endArray();
  }
  w.endObject();
}

/**
 * The `struct bpf_map_info` buffer bpftool reuses for every map of one `map show`: it never
 * clears it between maps, and kernels that copy the caller's struct in before filling it
 * (Linux 6.18 does) leave fields a map does not set (`btf_id` of a map without BTF) as the
 * previous map had them. Passing one `MapInfoScratch` to every `mapShowRecord` of a listing
 * reproduces that, on any kernel.
 */
export class MapInfoScratch {
  /** `sizeof(struct bpf_map_info)` as bpftool 7.1 (libbpf 1.1 headers) passes it. */
  readonly bytes: Uint8Array = ownedBytes(layoutSize(MAP_INFO));
}

/**
 * bpftool's `show_map_header_plain`: `ID: TYPE  name NAME  flags 0xFLAGS`, the offload device
 * when `device` has an ifindex, and a newline. `type N` for types libbpf 1.1 has no name for;
 * no `name` part for an unnamed map.
 *
 * @example
 * ```ts
 * import { plainMapHeader } from "./map_show.ts";
 * const info = { id: 7, type: 1, keySize: 4, valueSize: 4, maxEntries: 16, flags: 0, name: "foo",
 *   btfId: 0, btfKeyTypeId: 0, btfValueTypeId: 0, btfVmlinuxValueTypeId: 0 };
 * console.log(plainMapHeader(info)); // "7: hash  name foo  flags 0x0\n"
 * ```
 */
export function plainMapHeader(info: MapInfo, device?: MapDevice): string {
  const typeName = bpftoolMapTypeName(info.type);
  let out = `${info.id}: ${typeName !== undefined ? typeName : `type ${info.type}`}  `;
  if (info.name) out += `name ${info.name}  `;
  return out + `flags 0x${(info.flags >>> 0).toString(16)}${plainDevice(device)}\n`;
}

/**
 * bpftool's `show_map_header_json`: the fields `"id"`, `"type"` (a number for types libbpf 1.1
 * has no name for), `"name"` (only when the map has one) and `"flags"` (as a signed int),
 * written into the object `w` is in. No device, sizes or BTF id: a dump's header has none.
 *
 * @example
 * ```ts
 * import { JsonWriter } from "./json_writer.ts";
 * import { jsonMapHeader } from "./map_show.ts";
 * const info = { id: 7, type: 1, keySize: 4, valueSize: 4, maxEntries: 16, flags: 0, name: "foo",
 *   btfId: 0, btfKeyTypeId: 0, btfValueTypeId: 0, btfVmlinuxValueTypeId: 0 };
 * const w = new JsonWriter({ pretty: false });
 * w.startObject();
 * jsonMapHeader(w, info);
 * w.endObject();
 * console.log(w.end()); // {"id":7,"type":"hash","name":"foo","flags":0}
 * ```
 */
export function jsonMapHeader(w: JsonWriter, info: MapInfo): void {
  w.uintField("id", info.id);
  const typeName = bpftoolMapTypeName(info.type);
  if (typeName !== undefined) w.stringField("type", typeName);
  else w.uintField("type", info.type);
  if (info.name) w.stringField("name", info.name);
  w.name("flags");
  w.raw(String(info.flags | 0));
}

/**
 * What the kernel says of an open map, for `formatMapPlain` / `writeMapJson`: `bpf_map_info`
 * read again into `scratch` (a fresh one when not given), its fdinfo, and its pins from
 * `pins` (`pinnedMapPaths()`, for `-f`).
 */
export function mapShowRecord(
  map: BpfMap,
  { pins, scratch = new MapInfoScratch() }: {
    pins?: ReadonlyMap<number, readonly string[]>;
    scratch?: MapInfoScratch;
  } = {},
): MapShowRecord {
  const buffer = scratch.bytes;
  check(pickBackend(map.backend).info(map.fd, buffer), BpfCommand.OBJ_GET_INFO_BY_FD, {
    subject: map.subject,
  });
  const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  const info = decodeMapInfo(view);
  const f = MAP_INFO.fields;
  return {
    info,
    device: {
      ifindex: readU32(view, f.ifindex),
      netnsDev: readU64(view, f.netnsDev),
      netnsIno: readU64(view, f.netnsIno),
    },
    fdinfo: readSmallFile(`/proc/self/fdinfo/${map.fd}`) ?? "",
    pinned: pins === undefined || pins.size === 0 ? undefined : pins.get(info.id) ?? [],
  };
}

/** Decodes the octal escapes `getmntent()` undoes (`\040` for a space, ...). */
function unescapeMount(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal) => String.fromCharCode(parseInt(octal, 8)));
}

/** Mount points of every bpf file system (`/proc/mounts` entries whose type starts with `bpf`). */
export function bpfMounts(mounts: string): string[] {
  const points: string[] = [];
  for (const line of mounts.split("\n")) {
    const [, dir, type] = line.split(/[ \t]+/);
    if (dir !== undefined && type?.startsWith("bpf")) points.push(unescapeMount(dir));
  }
  return points;
}

/**
 * Orders the pins of each map id as bpftool's pinned-object table (libbpf's `hashmap`,
 * filled with `hashmap__append` in `nftw` order) hands them back: every append goes to the
 * head of its bucket, and every growth of the table reverses the pins of each id.
 *
 * @example
 * ```ts
 * import { hashmapPinOrder } from "./map_show.ts";
 * console.log(hashmapPinOrder([[1, "/a"], [1, "/b"]]).get(1)); // ["/b", "/a"]
 * ```
 */
export function hashmapPinOrder(
  walk: readonly (readonly [number, string])[],
): Map<number, string[]> {
  const table = new Map<number, string[]>();
  let cap = 0;
  let size = 0;
  for (const [id, path] of walk) {
    if (cap === 0 || Math.floor((size + 1) * 4 / 3) > cap) {
      cap = Math.max(cap * 2, 4);
      for (const list of table.values()) list.reverse();
    }
    const list = table.get(id) ?? [];
    list.unshift(path);
    table.set(id, list);
    size++;
  }
  return table;
}

/** Walks a folder as `nftw(FTW_PHYS)` does: pre-order, `readdir` order, symlinks not followed. */
function* walkFiles(folder: string): Generator<string> {
  const entries = readFolder(folder);
  if (typeof entries === "number") return;
  for (const entry of entries) {
    const path = `${folder === "/" ? "" : folder}/${entry.name}`;
    if (entry.type === DirentType.DIR) yield* walkFiles(path);
    else if (entry.type !== DirentType.LNK) yield path;
  }
}

/**
 * The pins of every map on every bpf file system, by map id, in the order `bpftool -f map show`
 * prints them. Reads `/proc/mounts` and the folders through libc (`--allow-ffi` only).
 */
export function pinnedMapPaths(): Map<number, string[]> {
  const mounts = readSmallFile("/proc/mounts") ?? "";
  const backend = pickBackend();
  const walk: [number, string][] = [];
  const buffer = ownedBytes(layoutSize(MAP_INFO));
  const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  for (const point of bpfMounts(mounts)) {
    for (const path of walkFiles(point)) {
      const fd = backend.objGet(path);
      if (fd < 0) continue;
      try {
        // bpftool tells a map from a program or link by the fd's anon inode name; fdinfo
        // has `map_id` only for maps.
        if (fdObjectKind(fd) !== "map") continue;
        buffer.fill(0);
        if (backend.info(fd, buffer) < 0) continue;
        walk.push([readU32(view, MAP_INFO.fields.id), path]);
      } finally {
        closeFd(fd);
      }
    }
  }
  return hashmapPinOrder(walk);
}

/** bpftool's name (`get_fd_type_name`) for the kind of object behind an fd: `map`, `prog`, `link` or `unknown`. */
export function fdObjectKind(fd: number): "map" | "prog" | "link" | "unknown" {
  const fdinfo = readSmallFile(`/proc/self/fdinfo/${fd}`) ?? "";
  if (/^map_id:/m.test(fdinfo)) return "map";
  if (/^link_id:/m.test(fdinfo)) return "link"; // before prog_id: a link's fdinfo has both
  if (/^prog_id:/m.test(fdinfo)) return "prog";
  return "unknown";
}

/** A map vanished between listing its id and opening it (bpftool skips it). */
export function isVanished(e: unknown): boolean {
  return e instanceof BpfError && e.errno === Errno.ENOENT;
}
