/**
 * The element verbs of `bpftool map` and those that make or keep maps: `lookup` (`peek`),
 * `getnext`, `update` (`push`, `enqueue`), `delete`, `pop` (`dequeue`), `freeze`, `pin` and
 * `create`, each as bpftool 7.1's `map.c` has it: the same words taken, the same bytes out,
 * the same exit status. Where bpftool takes bytes (`key DATA`, `value DATA`), a JSON text
 * is taken too, encoded through the map's BTF (`JsonMap`'s rules).
 *
 * @module
 */

import { type BpfMap, loadMapBtf } from "../mod.ts";
import { backend as pickBackend } from "../ffi/sys/backends.ts";
import { Errno } from "../ffi/sys/errors.ts";
import { closeFd, errnoText, mountFileSystem, readSmallFile } from "../ffi/sys/libc.ts";
import { encodeJson, encodeRawJson, looksLikeJson, parseJsonExact } from "../ffi/btf/json_input.ts";
import { BtfValueError } from "../ffi/btf/encode.ts";
import { JsonValueError } from "../ffi/btf/json_map.ts";
import type { BtfType } from "../ffi/btf/types.ts";
import { type DumpShape, printEntry } from "../ffi/format/bpftool_dump.ts";
import type { ByteWriter } from "../ffi/format/byte_writer.ts";
import type { JsonWriter } from "../ffi/format/json_writer.ts";
import { BPFTOOL_MAP_TYPE_NAMES } from "../ffi/format/map_show.ts";
import {
  BpftoolError,
  dirname,
  isBpffs,
  isPrefix,
  kernelStatus,
  openSelected,
  strtoul,
  takeBytes,
  takeMapSelector,
  takeProgram,
  type Words,
} from "./_map_args.ts";

/** Where a verb writes, and how (bpftool's globals). */
export interface Run {
  /** The run's JSON writer with `-j`/`-p`; absent: plain text. */
  json?: JsonWriter;
  /** Standard output. */
  out: ByteWriter;
  /** `-n`/`--nomount`: never mount a bpffs to pin. */
  nomount: boolean;
  /** `-f`/`--bpffs`: `show` lists each map's pins. */
  bpffs: boolean;
}

/** A verb: takes its words, writes, returns the exit status (or throws a `BpftoolError`). */
export type Verb = (words: Words, run: Run) => number;

/** Too few words: bpftool prints the map help (`usage()`), exit 255. */
function usage(): never {
  throw new BpftoolError("", 255, true);
}

/** The types whose values are maps (`array_of_maps`, `hash_of_maps`) and programs. */
const MAP_OF_MAPS = new Set([12, 13]);
const PROG_ARRAY = 3;
/** Hash types, where bpftool pops with a key it never set (see `pop`). */
const HASHES = new Set([1, 5, 9, 10]);

/** The BTF types of `map`'s keys and values, when it has BTF. */
function typesOf(map: BpfMap): { keyType?: BtfType; valueType: BtfType } | null {
  if (!map.info.btfValueTypeId && !map.info.btfVmlinuxValueTypeId) return null;
  const btf = loadMapBtf(map);
  if (!btf) return null;
  return {
    keyType: btf.keyType.kind === "void" ? undefined : btf.keyType,
    valueType: btf.valueType,
  };
}

/** What `printEntry` needs of `map`. */
function shapeOf(map: BpfMap): DumpShape {
  return {
    keySize: map.keySize,
    valueSize: map.valueSize,
    perCpu: map.perCpu ? map.cpus : 0,
    btf: typesOf(map),
  };
}

/** `-?digits` or `0x…`: one word that is an integer, taken as a typed key or value. */
const INTEGER_WORD = /^\s*[-+]?(\d+|0[xX][0-9a-fA-F]+)$/;
const KEYWORDS = ["key", "value", "any", "exist", "noexist"];

/**
 * `DATA` for `into`: JSON text (one word opening an object, an array or a string, or a
 * lone integer for a key or value of more than one byte) encoded through `type`, or bytes
 * as bpftool reads them.
 */
function takeData(words: Words, what: "key" | "value", into: Uint8Array, type?: BtfType): void {
  const word = words.word;
  const next = words.peek(1);
  const lone = next === undefined || KEYWORDS.some((k) => isPrefix(next, k));
  const typed = word !== undefined && word !== "" && !isPrefix(word, "hex") &&
    (looksLikeJson(word) || (into.length > 1 && lone && INTEGER_WORD.test(word)));
  if (!typed) return takeBytes(words, what, into);
  let json: unknown;
  try {
    json = INTEGER_WORD.test(word) ? BigInt(word.trim()) : parseJsonExact(word);
  } catch (e) {
    // Not JSON after all: a word that opens an object or an array was meant as JSON; any
    // other is read as bytes, for bpftool's message.
    if (!/^\s*[[{]/.test(word)) return takeBytes(words, what, into);
    throw new BpftoolError(`${what}: ${(e as Error).message}`, 255, false, true);
  }
  words.next();
  try {
    if (type) encodeJson(type, json, into);
    else encodeRawJson(json, into);
  } catch (e) {
    const message = e instanceof BtfValueError
      ? new JsonValueError(what, e).message
      : (e as Error).message;
    throw new BpftoolError(message, 255, false, true);
  }
}

/** What `parseElem` fills: the buffers still wanted (null: taken, or not wanted). */
interface Elem {
  map: BpfMap;
  types: { keyType?: BtfType; valueType: BtfType } | null;
  key: Uint8Array | null;
  value: Uint8Array | null;
  /** `value_size` as bpftool passes it (0 where a value is not taken). */
  valueSize: number;
  /** The update flag, while it may still be given. */
  flags: { value: number } | null;
  /** What map-in-map and program values opened: the verb closes them after its call. */
  opened: { close(): void }[];
  json: boolean;
}

/** bpftool's `parse_elem`: `key DATA`, `value VALUE` and a flag, in any order, once each. */
function parseElem(words: Words, elem: Elem): void {
  for (;;) {
    const word = words.word;
    if (word === undefined) {
      if (!elem.key && !elem.value) return;
      throw new BpftoolError(`did not find ${elem.key ? "key" : "value"}`);
    }
    if (isPrefix(word, "key")) {
      if (!elem.key) throw new BpftoolError(elem.map.keySize ? "duplicate key" : "unnecessary key");
      words.next();
      takeData(words, "key", elem.key, elem.types?.keyType);
      elem.key = null;
    } else if (isPrefix(word, "value")) {
      if (!elem.value) {
        throw new BpftoolError(elem.valueSize ? "duplicate value" : "unnecessary value");
      }
      words.next();
      takeValue(words, elem, elem.value);
      elem.value = null;
    } else if (isPrefix(word, "any") || isPrefix(word, "noexist") || isPrefix(word, "exist")) {
      if (!elem.flags) throw new BpftoolError(`flags specified multiple times: ${word}`);
      elem.flags.value = isPrefix(word, "any") ? 0 : isPrefix(word, "noexist") ? 1 : 2;
      elem.flags = null;
      words.next();
    } else {
      throw new BpftoolError(`expected key or value, got: ${word}`);
    }
  }
}

/** `VALUE := DATA | MAP | PROG`, by the map's type; per-CPU data copied to every CPU. */
function takeValue(words: Words, elem: Elem, value: Uint8Array): void {
  const { map } = elem;
  const type = map.info.type;
  const objectKind = MAP_OF_MAPS.has(type) ? "map" : type === PROG_ARRAY ? "prog" : undefined;
  if (objectKind) {
    const what = objectKind === "map" ? "map in map" : "map of progs";
    if (elem.valueSize !== 4) throw new BpftoolError(`value smaller than 4B for ${what}?`);
    if (words.word === undefined || words.peek(1) === undefined) {
      throw new BpftoolError(`not enough value arguments for ${what}`);
    }
    if (objectKind === "prog" && isPrefix(words.word, "id") && !elem.json) {
      console.error(
        "Warning: updating program array via MAP_ID, make sure this map is kept open\n         by some process or pinned otherwise update will be lost",
      );
    }
    let fd: number;
    if (objectKind === "map") {
      const inner = openSelected(takeMapSelector(words));
      elem.opened.push(inner);
      fd = inner.fd;
    } else {
      const program = takeProgram(words);
      elem.opened.push({ close: () => closeFd(program) });
      fd = program;
    }
    new DataView(value.buffer, value.byteOffset).setUint32(0, fd, true);
    return;
  }
  const one = value.subarray(0, map.valueSize);
  takeData(words, "value", one, elem.types?.valueType);
  if (!map.perCpu) return;
  const stride = (map.valueSize + 7) & ~7;
  for (let cpu = 1; cpu < map.cpus; cpu++) value.copyWithin(cpu * stride, 0, map.valueSize);
}

/** Opens the map a verb names, after bpftool's `argc < 2` check. */
function openFor(words: Words): BpfMap {
  if (words.left < 2) usage();
  return openSelected(takeMapSelector(words));
}

/** An element command's raw result: 0 or `-errno`. */
function elemCall(
  map: BpfMap,
  command: "lookup" | "update" | "delete" | "nextKey" | "lookupAndDelete",
  key: Uint8Array | null,
  value: Uint8Array | null,
  flags = 0,
): number {
  return pickBackend().elem(command, map.fd, key, value, BigInt(flags))();
}

/** `fprint_hex(..., " ")`: bytes as `%02x`, a space between, two after each eighth, a newline after each sixteenth. */
function plainHex(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i++) {
    if (i) text += i % 16 === 0 ? "\n" : i % 8 === 0 ? "  " : " ";
    text += bytes[i].toString(16).padStart(2, "0");
  }
  return text;
}

/** `print_hex_data_json`: `["0x01","0x00"]`. */
function jsonHex(json: JsonWriter, bytes: Uint8Array): void {
  json.startArray();
  for (const byte of bytes) json.raw(`"0x${byte.toString(16).padStart(2, "0")}"`);
  json.endArray();
}

/** `null` in JSON mode (verbs that succeed with nothing to say). */
function jsonNull(run: Run): void {
  run.json?.raw("null");
}

/** bpftool's `parse_elem` for verbs that take a key only (`lookup`, `getnext`, `delete`). */
function parseKey(words: Words, map: BpfMap, key: Uint8Array | null, run: Run): void {
  parseElem(words, {
    map,
    types: typesOf(map),
    key,
    value: null,
    valueSize: 0,
    flags: null,
    opened: [],
    json: !!run.json,
  });
}

/** `lookup MAP [key DATA]` (and `peek`). */
export const lookup: Verb = (words, run) => {
  using map = openFor(words);
  const key = map.keySize ? new Uint8Array(map.keySize) : null;
  parseKey(words, map, key, run);
  const value = new Uint8Array(map.valueBytes);
  const result = elemCall(map, "lookup", key, value);
  if (result === -Errno.ENOENT) {
    if (run.json) jsonNull(run);
    else run.out.text(`key:\n${plainHex(key ?? new Uint8Array())}\n\nNot found\n`);
    return kernelStatus(Errno.ENOENT);
  }
  if (result < 0) {
    throw new BpftoolError(`lookup failed: ${errnoText(-result)}`, kernelStatus(-result));
  }
  printEntry(shapeOf(map), run.out, key ?? new Uint8Array(), value, run.json);
  return 0;
};

/** `getnext MAP [key DATA]`. */
export const getnext: Verb = (words, run) => {
  using map = openFor(words);
  let key: Uint8Array | null = new Uint8Array(map.keySize);
  if (words.left) {
    parseKey(words, map, key, run);
  } else {
    key = null;
  }
  const next = new Uint8Array(map.keySize);
  const result = elemCall(map, "nextKey", key, next);
  if (result < 0) {
    throw new BpftoolError(`can't get next key: ${errnoText(-result)}`, kernelStatus(-result));
  }
  if (run.json) {
    const w = run.json;
    w.startObject();
    w.name("key");
    if (key) jsonHex(w, key);
    else w.raw("null");
    w.name("next_key");
    jsonHex(w, next);
    w.endObject();
  } else {
    run.out.text(
      `${key ? `key:\n${plainHex(key)}\n` : "key: None\n"}next key:\n${plainHex(next)}\n`,
    );
  }
  return 0;
};

/** `update MAP [key DATA] [value VALUE] [UPDATE_FLAGS]` (and `push`, `enqueue`). */
export const update: Verb = (words, run) => {
  using map = openFor(words);
  const key = map.keySize ? new Uint8Array(map.keySize) : null;
  const value = new Uint8Array(map.valueBytes);
  const flags = { value: 0 };
  const opened: { close(): void }[] = [];
  try {
    parseElem(words, {
      map,
      types: typesOf(map),
      key,
      value: map.valueSize ? value : null,
      valueSize: map.valueSize,
      flags,
      opened,
      json: !!run.json,
    });
    const result = elemCall(map, "update", key, value, flags.value);
    if (result < 0) {
      throw new BpftoolError(`update failed: ${errnoText(-result)}`, kernelStatus(-result));
    }
  } finally {
    for (const object of opened) object.close();
  }
  jsonNull(run);
  return 0;
};

/** `delete MAP key DATA`. */
export const remove: Verb = (words, run) => {
  using map = openFor(words);
  const key = new Uint8Array(map.keySize);
  parseKey(words, map, key, run);
  const result = elemCall(map, "delete", key, null);
  if (result < 0) {
    throw new BpftoolError(`delete failed: ${errnoText(-result)}`, kernelStatus(-result));
  }
  jsonNull(run);
  return 0;
};

/**
 * `pop MAP` (and `dequeue`): the words after MAP are ignored, as bpftool ignores them. On a
 * hash map bpftool pops with a key buffer it never set, and finds nothing; this pops nothing
 * there either (it would delete whichever key the buffer held), and says so as bpftool does.
 */
export const pop: Verb = (words, run) => {
  using map = openFor(words);
  const key = map.keySize ? new Uint8Array(map.keySize) : null;
  const value = new Uint8Array(map.valueBytes);
  const type = map.info.type;
  const result = HASHES.has(type) ? -Errno.ENOENT : elemCall(map, "lookupAndDelete", key, value);
  if (result === -Errno.ENOENT) {
    if (run.json) jsonNull(run);
    else run.out.text("Error: empty map\n");
    return kernelStatus(Errno.ENOENT);
  }
  if (result < 0) {
    throw new BpftoolError(`pop failed: ${errnoText(-result)}`, kernelStatus(-result));
  }
  printEntry(shapeOf(map), run.out, key ?? new Uint8Array(), value, run.json);
  return 0;
};

/** `freeze MAP`. */
export const freeze: Verb = (words, run) => {
  words.require(2);
  using map = openSelected(takeMapSelector(words));
  if (words.left) throw new BpftoolError(`what is '${words.word}'?`);
  const result = pickBackend().freeze(map.fd);
  if (result < 0) {
    throw new BpftoolError(`failed to freeze map: ${errnoText(-result)}`, kernelStatus(-result));
  }
  jsonNull(run);
  return 0;
};

/** `mount --make-private DIR` then `mount -t bpf bpf DIR`, as bpftool's `mnt_fs`. */
function mountBpffs(dir: string): string | undefined {
  const MS_PRIVATE_REC = 0x40000n | 0x4000n;
  const privateResult = mountPrivate(dir, MS_PRIVATE_REC);
  if (privateResult < 0) {
    return `mount --make-private ${dir} failed: ${errnoText(-privateResult)}`;
  }
  const result = mountFileSystem("bpf", dir, "bpf");
  if (result < 0) return `mount -t bpf bpf ${dir} failed: ${errnoText(-result)}`;
  return undefined;
}

/** `mount("none", dir, NULL, flags, NULL)`: changes the propagation of a mount. */
function mountPrivate(dir: string, flags: bigint): number {
  return mountFileSystem("none", dir, "", flags);
}

/**
 * bpftool's `do_pin_fd`: pins `fd` at `path`, mounting a bpffs on the path's folder first
 * when it is not one (refused with `-n`).
 */
function pinFd(fd: number, path: string, run: Run): number {
  const dir = dirname(path);
  if (!isBpffs(dir)) {
    if (run.nomount) {
      throw new BpftoolError("no BPF file system found, not mounting it due to --nomount option");
    }
    const failure = mountBpffs(dir);
    if (failure) {
      throw new BpftoolError(`can't mount BPF file system to pin the object (${path}): ${failure}`);
    }
  }
  const result = pickBackend().pin(fd, path);
  if (result < 0) {
    throw new BpftoolError(
      `can't pin the object (${path}): ${errnoText(-result)}`,
      kernelStatus(-result),
    );
  }
  return 0;
}

/** `pin MAP FILE` (words after FILE are ignored, as bpftool ignores them). */
export const pin: Verb = (words, run) => {
  words.require(3, kernelStatus(Errno.EINVAL));
  using map = openSelected(takeMapSelector(words));
  pinFd(map.fd, words.word!, run);
  jsonNull(run);
  return 0;
};

/** bpftool's `parse_u32_arg`: `KEYWORD N`, once. */
function takeU32(words: Words, what: string, current: number | undefined): number {
  words.next();
  if (current) throw new BpftoolError(`${what} already specified`);
  const text = words.next();
  const n = strtoul(text, 0);
  if (n === undefined) throw new BpftoolError(`can't parse ${text} as ${what}`);
  return Number(n & 0xffff_ffffn);
}

/**
 * `create FILE type TYPE key K value V entries N name NAME [flags F] [inner_map MAP]
 * [dev NAME]`: creates the map and pins it at FILE.
 */
export const create: Verb = (words, run) => {
  words.require(7);
  const path = words.next();
  let type = 0;
  let name: string | undefined;
  let keySize: number | undefined;
  let valueSize: number | undefined;
  let maxEntries: number | undefined;
  let flags: number | undefined;
  let ifindex = 0;
  let inner: BpfMap | undefined;
  try {
    while (words.left) {
      words.require(2);
      const word = words.word;
      if (isPrefix(word, "type")) {
        words.next();
        if (type) throw new BpftoolError("map type already specified");
        const typeWord = words.next();
        type = BPFTOOL_MAP_TYPE_NAMES.indexOf(typeWord);
        if (type < 0) throw new BpftoolError(`unrecognized map type: ${typeWord}`);
      } else if (isPrefix(word, "name")) {
        words.next();
        name = words.next();
      } else if (isPrefix(word, "key")) {
        keySize = takeU32(words, "key size", keySize);
      } else if (isPrefix(word, "value")) {
        valueSize = takeU32(words, "value size", valueSize);
      } else if (isPrefix(word, "entries")) {
        maxEntries = takeU32(words, "max entries", maxEntries);
      } else if (isPrefix(word, "flags")) {
        flags = takeU32(words, "flags", flags);
      } else if (isPrefix(word, "dev")) {
        words.next();
        if (ifindex) throw new BpftoolError("offload device already specified");
        const device = words.next();
        ifindex = interfaceIndex(device);
        if (!ifindex) {
          throw new BpftoolError(
            `unrecognized netdevice '${device}': ${errnoText(Errno.ENODEV)}`,
          );
        }
      } else if (isPrefix(word, "inner_map")) {
        words.next();
        if (words.left < 2) {
          throw new BpftoolError(
            `'${words.previous}' needs at least 2 arguments, ${words.left} found`,
            255,
            true,
          );
        }
        inner?.close();
        inner = openSelected(takeMapSelector(words));
      } else {
        throw new BpftoolError(`unknown arg ${word}`);
      }
    }
    if (name === undefined) throw new BpftoolError("map name not specified");
    const fd = pickBackend().createMap({
      mapType: type,
      keySize: keySize ?? 0,
      valueSize: valueSize ?? 0,
      maxEntries: maxEntries ?? 0,
      mapFlags: flags ?? 0,
      name,
      innerMapFd: inner?.fd,
      ifindex,
    });
    if (fd < 0) throw new BpftoolError(`map create failed: ${errnoText(-fd)}`);
    try {
      pinFd(fd, path, run);
    } finally {
      closeFd(fd);
    }
  } finally {
    inner?.close();
  }
  jsonNull(run);
  return 0;
};

/** `if_nametoindex(name)`: the interface's index from sysfs, or 0. */
function interfaceIndex(name: string): number {
  if (name.includes("/") || name === "" || name === "." || name === "..") return 0;
  return Number(readSmallFile(`/sys/class/net/${name}/ifindex`)?.trim()) || 0;
}
