/**
 * BTF and the kernel: the running kernel's own (`/sys/kernel/btf/vmlinux`, parsed once),
 * any BTF object by id (`BPF_BTF_GET_FD_BY_ID`, then `BPF_OBJ_GET_INFO_BY_FD` twice: once
 * for the size, once for the bytes), a map's key and value types (`bpf_map_info`'s
 * `btf_id`, `btf_key_type_id`, `btf_value_type_id`); and the other way, BTF loaded into the
 * kernel (`BPF_BTF_LOAD`) and maps created with it.
 *
 * @module
 */

import { addressOf, keepAlive, ownedBytes } from "../sys/buffers.ts";
import { BpfCommand, type MapType, mapTypeName, parseMapType } from "../sys/constants.ts";
import { BpfArgumentError, BpfError, check, Errno } from "../sys/errors.ts";
import { layoutSize, type MapInfo, readU32, writeField } from "../sys/layout.ts";
import { closeFd, readWholeFile } from "../sys/libc.ts";
import { BpfMap, type MapSpec, type OpenOptions } from "../map/map.ts";
import { objInfo } from "../sys/syscall_backend.ts";
import { btfFdById, btfLoad, mapCreateWithBtf } from "./_syscall.ts";
import { BtfError } from "./errors.ts";
import { BPF_BTF_INFO } from "./layout.ts";
import { typeName } from "./name.ts";
import { type Btf, parseBtf } from "./parse.ts";
import { sizeof } from "./size.ts";
import type { BtfType } from "./types.ts";
import { VOID } from "./types.ts";

/** Where the running kernel exposes its own BTF. */
export const VMLINUX_BTF_PATH = "/sys/kernel/btf/vmlinux";

let vmlinux: Btf | undefined;

/**
 * The running kernel's BTF, read from `/sys/kernel/btf/vmlinux` and parsed on first use
 * (a few hundred milliseconds), then kept.
 *
 * @example
 * ```ts
 * import { kernelBtf } from "./mod.ts";
 * console.log(kernelBtf().find("struct", "bpf_map")?.size);
 * ```
 */
export function kernelBtf(): Btf {
  if (vmlinux) return vmlinux;
  // Read through libc, as `../sys/system.ts` reads /sys: no `--allow-read` needed.
  const bytes = readWholeFile(VMLINUX_BTF_PATH);
  if (typeof bytes === "number") {
    throw new BpfError({
      errno: -bytes,
      command: "read",
      subject: `"${VMLINUX_BTF_PATH}"`,
      hint: -bytes === Errno.ENOENT ? "the kernel was built without BTF" : undefined,
    });
  }
  return vmlinux = parseBtf(bytes);
}

/** What the kernel says of a BTF object. */
export interface BtfInfo {
  /** The BTF object id. */
  id: number;
  /** Bytes of its raw BTF. */
  size: number;
  /** Its name: "vmlinux", a module's name, or "" for BTF loaded from user space. */
  name: string;
  /** Whether it is the kernel's or a module's BTF. */
  kernelBtf: boolean;
}

const INFO_SIZE = layoutSize(BPF_BTF_INFO);
const NAME_ROOM = 256;

/** `BPF_OBJ_GET_INFO_BY_FD` on a BTF fd; with `data`, the raw BTF is copied into it. */
function btfInfo(fd: number, data?: Uint8Array): BtfInfo {
  const info = ownedBytes(INFO_SIZE);
  const name = ownedBytes(NAME_ROOM);
  const view = new DataView(info.buffer);
  const f = BPF_BTF_INFO.fields;
  if (data) {
    writeField(view, f.btf, addressOf(data));
    writeField(view, f.btfSize, data.byteLength);
  }
  writeField(view, f.name, addressOf(name));
  writeField(view, f.nameLen, NAME_ROOM);
  check(objInfo(fd, info), BpfCommand.OBJ_GET_INFO_BY_FD, { subject: `BTF fd ${fd}` });
  keepAlive(name);
  const nameEnd = name.indexOf(0);
  return {
    id: readU32(view, f.id),
    size: readU32(view, f.btfSize),
    name: new TextDecoder().decode(name.subarray(0, nameEnd < 0 ? NAME_ROOM : nameEnd)),
    kernelBtf: readU32(view, f.kernelBtf) !== 0,
  };
}

/**
 * The raw bytes and info of BTF object `id`.
 *
 * @example
 * ```ts
 * import { readBtfById } from "./mod.ts";
 * const { info, bytes } = readBtfById(1);
 * console.log(info.name, bytes.length);
 * ```
 */
export function readBtfById(id: number): { info: BtfInfo; bytes: Uint8Array } {
  const fd = btfFdById(id);
  if (fd < 0) {
    throw new BpfError({
      errno: -fd,
      command: BpfCommand.BTF_GET_FD_BY_ID,
      subject: `BTF id ${id}`,
      hint: -fd === Errno.ENOENT ? "no BTF object with that id" : undefined,
    });
  }
  try {
    // The size can only be learnt by asking; the object cannot change while the fd holds it.
    const first = btfInfo(fd);
    const bytes = ownedBytes(first.size);
    const info = btfInfo(fd, bytes);
    if (info.size !== first.size) {
      throw new BtfError(`BTF id ${id} changed size from ${first.size} to ${info.size} bytes`);
    }
    return { info, bytes };
  } finally {
    closeFd(fd);
  }
}

/**
 * Parses BTF object `id`. A module's BTF (kernel BTF other than "vmlinux") is split BTF on
 * top of `kernelBtf()`.
 *
 * @example
 * ```ts
 * import { loadBtfById } from "./mod.ts";
 * const btf = loadBtfById(1);
 * console.log(btf.typeCount);
 * ```
 */
export function loadBtfById(id: number): Btf {
  const { info, bytes } = readBtfById(id);
  const split = info.kernelBtf && info.name !== "vmlinux";
  return parseBtf(bytes, split ? { base: kernelBtf() } : {});
}

/** A map's BTF: the BTF object and the types of its keys and values. */
export interface MapBtf {
  /** The map's BTF object id (0 for struct_ops maps described by the kernel's BTF alone). */
  btfId: number;
  /** The BTF holding `keyType` (and `valueType`, but for struct_ops maps). */
  btf: Btf;
  /** The key type; void when the map names none (global data maps: `.bss`, `.data`). */
  keyType: BtfType;
  /** The value type (from the kernel's BTF for struct_ops maps). */
  valueType: BtfType;
}

/**
 * The BTF of `map` (its BTF ids from `map.info`, then the BTF object), or `null` when the
 * map was created without BTF. The types are checked against the map's key and value sizes.
 * `options.info` gives the ids to follow instead (a dump of several maps reads them as
 * bpftool does, see `../format/bpftool_header.ts`).
 *
 * @example
 * ```ts
 * import { BpfMap } from "../../mod.ts";
 * import { loadMapBtf, typeName } from "./mod.ts";
 * using map = BpfMap.fromId(42);
 * const btf = loadMapBtf(map);
 * console.log(btf ? `${typeName(btf.keyType)} -> ${typeName(btf.valueType)}` : "no BTF");
 * ```
 */
export function loadMapBtf(map: BpfMap, options: { info?: MapInfo } = {}): MapBtf | null {
  const {
    btfId,
    btfKeyTypeId: keyId,
    btfValueTypeId: valueId,
    btfVmlinuxValueTypeId: vmlinuxValueId,
  } = options.info ?? map.info;
  if (btfId === 0 && vmlinuxValueId === 0) return null;
  const btf = btfId !== 0 ? loadBtfById(btfId) : kernelBtf();
  const keyType = btfId !== 0 ? btf.typeById(keyId) : VOID;
  const valueType = vmlinuxValueId !== 0
    ? kernelBtf().typeById(vmlinuxValueId)
    : btf.typeById(valueId);
  const expect = (type: BtfType, bytes: number, what: string) => {
    if (type.kind !== "void" && sizeof(type) !== bytes) {
      throw new BtfError(
        `The ${what} type "${typeName(type)}" of ${map.subject} is ${
          sizeof(type)
        } bytes but its ${what}s are ${bytes}`,
        { typeId: type.id },
      );
    }
  };
  expect(keyType, map.keySize, "key");
  if (vmlinuxValueId === 0) expect(valueType, map.valueSize, "value");
  return { btfId, btf, keyType, valueType };
}

/**
 * BTF loaded into the kernel (`BPF_BTF_LOAD`): maps can be created with its types. Holds an
 * fd; close it (or `using`) once the maps are made (they keep the BTF alive).
 *
 * @example
 * ```ts
 * import { BtfBuilder, loadBtf } from "./mod.ts";
 * const b = new BtfBuilder();
 * b.add({ kind: "int", name: "int", size: 4, encoding: "signed" });
 * using btf = loadBtf(b.build());
 * console.log(btf.id, btf.fd);
 * ```
 */
export class LoadedBtf implements Disposable {
  /** The kernel's id of this BTF object. */
  readonly id: number;
  #fd: number;

  /** @internal Made by `loadBtf`. */
  constructor(fd: number, id: number) {
    this.#fd = fd;
    this.id = id;
  }

  /** The BTF fd; -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  /** Closes the fd. Safe to call twice. */
  close(): void {
    if (this.#fd < 0) return;
    closeFd(this.#fd);
    this.#fd = -1;
  }

  /** Closes the fd (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}

const LOG_SIZE = 64 * 1024;

/**
 * Loads raw BTF (e.g. from `BtfBuilder`) into the kernel. When the kernel refuses it, the
 * load is retried with a log, whose last line is the error's hint.
 *
 * @example
 * ```ts
 * import { BtfBuilder, loadBtf } from "./mod.ts";
 * const b = new BtfBuilder();
 * b.add({ kind: "int", name: "int", size: 4, encoding: "signed" });
 * using btf = loadBtf(b.build());
 * console.log(btf.id);
 * ```
 */
export function loadBtf(bytes: Uint8Array): LoadedBtf {
  const owned = ownedBytes(bytes.byteLength);
  owned.set(bytes);
  let fd = btfLoad(owned);
  if (fd < 0) {
    const log = ownedBytes(LOG_SIZE);
    fd = btfLoad(owned, log);
    if (fd < 0) {
      const end = log.indexOf(0);
      const lines = new TextDecoder().decode(log.subarray(0, end < 0 ? LOG_SIZE : end))
        .split("\n").map((l) => l.trim()).filter(Boolean);
      throw new BpfError({
        errno: -fd,
        command: BpfCommand.BTF_LOAD,
        subject: `${bytes.byteLength} bytes of BTF`,
        hint: lines.length ? `the kernel says: ${lines.slice(-2).join(": ")}` : undefined,
      });
    }
  }
  try {
    const info = btfInfo(fd);
    return new LoadedBtf(fd, info.id);
  } catch (e) {
    closeFd(fd);
    throw e;
  }
}

/** What `createMapWithBtf` makes: a map spec, and the BTF of its keys and values. */
export interface BtfMapSpec extends MapSpec {
  /** The loaded BTF holding the key and value types. */
  btf: LoadedBtf;
  /** Id of the key type in `btf` (0 for none). */
  keyTypeId: number;
  /** Id of the value type in `btf`. */
  valueTypeId: number;
}

/**
 * Creates a map whose keys and values have BTF (`BPF_MAP_CREATE` with `btf_fd`,
 * `btf_key_type_id`, `btf_value_type_id`): `bpftool map dump` prints it formatted, and
 * `loadMapBtf` finds its types. The kernel checks the types' sizes against the spec.
 *
 * @example
 * ```ts
 * import { BtfBuilder, createMapWithBtf, loadBtf } from "./mod.ts";
 * const b = new BtfBuilder();
 * const u32 = b.add({ kind: "int", name: "unsigned int", size: 4 });
 * using btf = loadBtf(b.build());
 * using map = createMapWithBtf({
 *   type: "hash", keySize: 4, valueSize: 4, maxEntries: 8, btf, keyTypeId: u32, valueTypeId: u32,
 * });
 * ```
 */
export function createMapWithBtf(spec: BtfMapSpec, options: OpenOptions = {}): BpfMap {
  const type = typeof spec.type === "number" ? spec.type : parseMapType(spec.type);
  if (type === undefined) {
    throw new BpfArgumentError(`Unknown map type "${spec.type}"`);
  }
  if (spec.btf.fd < 0) throw new BpfArgumentError("The BTF is closed");
  const fd = mapCreateWithBtf({
    mapType: type,
    keySize: spec.keySize,
    valueSize: spec.valueSize,
    maxEntries: spec.maxEntries,
    mapFlags: spec.flags ?? 0,
    name: spec.name ?? "",
  }, { fd: spec.btf.fd, keyTypeId: spec.keyTypeId, valueTypeId: spec.valueTypeId });
  if (fd < 0) {
    throw new BpfError({
      errno: -fd,
      command: BpfCommand.MAP_CREATE,
      subject: `a ${mapTypeName(type as MapType)} map with BTF ${spec.btf.id}`,
      hint: -fd === Errno.EINVAL
        ? `check that types ${spec.keyTypeId} and ${spec.valueTypeId} are ${spec.keySize} and ${spec.valueSize} bytes`
        : undefined,
    });
  }
  return BpfMap.fromFd(fd, options);
}
