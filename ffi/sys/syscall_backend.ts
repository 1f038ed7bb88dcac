/**
 * The `syscall` backend: `syscall(SYS_bpf, cmd, &attr, size)` through libc, with the
 * attrs encoded in TypeScript (`layout.ts`). Needs no libbpf.
 *
 * Each prepared call owns its attr and every buffer whose address the attr holds, in
 * `#private` fields, so none can be collected while the call can still run.
 *
 * @module
 */

import type {
  Backend,
  BatchBuffers,
  BatchCall,
  BatchCommandName,
  ElemCall,
  ElemCommandName,
} from "./backend.ts";
import { addressOf, keepAlive, ownedBytes } from "./buffers.ts";
import { BpfCommand, SYS_BPF } from "./constants.ts";
import {
  BATCH_ATTR,
  ELEM_ATTR,
  encodeBatch,
  encodeElem,
  encodeMapCreate,
  FREEZE_ATTR,
  GET_ID_ATTR,
  INFO_ATTR,
  layoutSize,
  MAP_CREATE_ATTR,
  type MapCreateAttr,
  OBJ_ATTR,
  readU32,
  writeField,
} from "./layout.ts";
import { cString, errno, libcSymbols } from "./libc.ts";

const ELEM_COMMANDS: Record<ElemCommandName, bigint> = {
  lookup: BigInt(BpfCommand.MAP_LOOKUP_ELEM),
  update: BigInt(BpfCommand.MAP_UPDATE_ELEM),
  delete: BigInt(BpfCommand.MAP_DELETE_ELEM),
  nextKey: BigInt(BpfCommand.MAP_GET_NEXT_KEY),
  lookupAndDelete: BigInt(BpfCommand.MAP_LOOKUP_AND_DELETE_ELEM),
};

const BATCH_COMMANDS: Record<BatchCommandName, bigint> = {
  lookup: BigInt(BpfCommand.MAP_LOOKUP_BATCH),
  lookupAndDelete: BigInt(BpfCommand.MAP_LOOKUP_AND_DELETE_BATCH),
  update: BigInt(BpfCommand.MAP_UPDATE_BATCH),
  delete: BigInt(BpfCommand.MAP_DELETE_BATCH),
};

const ELEM_SIZE = BigInt(layoutSize(ELEM_ATTR));
const BATCH_SIZE = BigInt(layoutSize(BATCH_ATTR));

/** Returns `SYS_bpf` for this machine's architecture. */
function sysBpf(): bigint {
  const number = SYS_BPF[Deno.build.arch];
  if (number === undefined) {
    throw new Error(
      `SYS_bpf is not known on "${Deno.build.arch}": the syscall backend and the BTF commands cannot run here (the libbpf backend can)`,
    );
  }
  return BigInt(number);
}

/** Issues one `bpf(2)` command; returns its result or `-errno`. */
function bpf(command: bigint, attr: Deno.PointerValue, size: bigint): number {
  const result = Number(libcSymbols().syscall(SYS, command, attr, size));
  return result < 0 ? -errno() : result;
}

let SYS = 0n;

/**
 * Issues `command` on `attr`, an owned buffer holding the encoded attr (kept alive through
 * the call); returns the result or `-errno`. For the one-off commands, here and in the BTF
 * code (`BPF_BTF_LOAD`, `BPF_BTF_GET_FD_BY_ID`), which no backend method covers.
 *
 * @example
 * ```ts
 * import { ownedBytes } from "./buffers.ts";
 * import { BpfCommand } from "./constants.ts";
 * import { GET_ID_ATTR, layoutSize } from "./layout.ts";
 * import { bpfCommand } from "./syscall_backend.ts";
 * const attr = ownedBytes(layoutSize(GET_ID_ATTR));
 * console.log(bpfCommand(BpfCommand.MAP_GET_NEXT_ID, attr)); // 0, or -errno
 * ```
 */
export function bpfCommand(command: number, attr: Uint8Array): number {
  if (SYS === 0n) SYS = sysBpf();
  const result = bpf(BigInt(command), Deno.UnsafePointer.of(attr), BigInt(attr.byteLength));
  keepAlive(attr);
  return result;
}

/** Encodes a one-off attr of `size` bytes with `fill`, runs `command` on it, and returns `[result, view]`. */
function oneOff(
  command: number,
  size: number,
  fill: (view: DataView) => void,
): [number, DataView] {
  const attr = ownedBytes(size);
  const view = new DataView(attr.buffer);
  fill(view);
  return [bpfCommand(command, attr), view];
}

/**
 * `BPF_OBJ_GET_INFO_BY_FD` into `info`, an owned buffer (the caller keeps alive whatever
 * pointers inside it point into); returns 0 or `-errno`.
 *
 * @example
 * ```ts
 * import { ownedBytes } from "./buffers.ts";
 * import { layoutSize, MAP_INFO } from "./layout.ts";
 * import { objInfo } from "./syscall_backend.ts";
 * const info = ownedBytes(layoutSize(MAP_INFO));
 * console.log(objInfo(3, info)); // 0 when fd 3 is a BPF object, else -errno
 * ```
 */
export function objInfo(fd: number, info: Uint8Array): number {
  const [result] = oneOff(
    BpfCommand.OBJ_GET_INFO_BY_FD,
    layoutSize(INFO_ATTR),
    (view) => {
      writeField(view, INFO_ATTR.fields.bpfFd, fd);
      writeField(view, INFO_ATTR.fields.infoLen, info.byteLength);
      writeField(view, INFO_ATTR.fields.info, addressOf(info));
    },
  );
  keepAlive(info);
  return result;
}

class PreparedElem {
  readonly #command: bigint;
  readonly #attr: Uint8Array;
  readonly #attrPointer: Deno.PointerValue;
  // Referenced only to keep the memory the attr points into alive.
  readonly #key: Uint8Array | null;
  readonly #value: Uint8Array | null;

  constructor(
    command: bigint,
    fd: number,
    key: Uint8Array | null,
    value: Uint8Array | null,
    flags: bigint,
  ) {
    this.#command = command;
    this.#key = key;
    this.#value = value;
    this.#attr = ownedBytes(Number(ELEM_SIZE));
    this.#attrPointer = Deno.UnsafePointer.of(this.#attr);
    encodeElem(new DataView(this.#attr.buffer), {
      mapFd: fd,
      key: this.#key ? addressOf(this.#key) : 0n,
      value: this.#value ? addressOf(this.#value) : 0n,
      flags,
    });
  }

  run(): number {
    return bpf(this.#command, this.#attrPointer, ELEM_SIZE);
  }
}

class PreparedBatch implements BatchCall {
  readonly #command: bigint;
  readonly #attr: Uint8Array;
  readonly #attrPointer: Deno.PointerValue;
  readonly #view: DataView;
  readonly #buffers: BatchBuffers;
  readonly #inBatch: bigint;

  constructor(command: bigint, fd: number, buffers: BatchBuffers) {
    this.#command = command;
    this.#buffers = buffers;
    this.#attr = ownedBytes(Number(BATCH_SIZE));
    this.#attrPointer = Deno.UnsafePointer.of(this.#attr);
    this.#view = new DataView(this.#attr.buffer);
    this.#inBatch = addressOf(this.#buffers.inBatch);
    encodeBatch(this.#view, {
      inBatch: 0n,
      outBatch: addressOf(this.#buffers.outBatch),
      keys: addressOf(this.#buffers.keys),
      values: addressOf(this.#buffers.values),
      count: 0,
      mapFd: fd,
      elemFlags: 0n,
    });
  }

  run(count: number, fromStart: boolean, elemFlags: bigint): number {
    const f = BATCH_ATTR.fields;
    this.#view.setBigUint64(
      f.inBatch.offset,
      fromStart ? 0n : this.#inBatch,
      true,
    );
    this.#view.setUint32(f.count.offset, count, true);
    this.#view.setBigUint64(f.elemFlags.offset, elemFlags, true);
    return bpf(this.#command, this.#attrPointer, BATCH_SIZE);
  }

  done(): number {
    return readU32(this.#view, BATCH_ATTR.fields.count);
  }
}

/** The `syscall` backend. */
export class SyscallBackend implements Backend {
  readonly name = "syscall" as const;

  constructor() {
    SYS = sysBpf();
    libcSymbols();
  }

  createMap(attr: MapCreateAttr): number {
    return oneOff(
      BpfCommand.MAP_CREATE,
      layoutSize(MAP_CREATE_ATTR),
      (view) => encodeMapCreate(view, attr),
    )[0];
  }

  elem(
    command: ElemCommandName,
    fd: number,
    key: Uint8Array | null,
    value: Uint8Array | null,
    flags = 0n,
  ): ElemCall {
    const call = new PreparedElem(ELEM_COMMANDS[command], fd, key, value, flags);
    return call.run.bind(call);
  }

  batch(
    command: BatchCommandName,
    fd: number,
    buffers: BatchBuffers,
  ): BatchCall {
    return new PreparedBatch(BATCH_COMMANDS[command], fd, buffers);
  }

  pin(fd: number, path: string): number {
    const name = ownedCString(path);
    const [result] = oneOff(
      BpfCommand.OBJ_PIN,
      layoutSize(OBJ_ATTR),
      (view) => {
        writeField(view, OBJ_ATTR.fields.pathname, addressOf(name));
        writeField(view, OBJ_ATTR.fields.bpfFd, fd);
      },
    );
    keepAlive(name);
    return result;
  }

  objGet(path: string): number {
    const name = ownedCString(path);
    const [result] = oneOff(
      BpfCommand.OBJ_GET,
      layoutSize(OBJ_ATTR),
      (view) => {
        writeField(view, OBJ_ATTR.fields.pathname, addressOf(name));
      },
    );
    keepAlive(name);
    return result;
  }

  mapFdById(id: number): number {
    return oneOff(
      BpfCommand.MAP_GET_FD_BY_ID,
      layoutSize(GET_ID_ATTR),
      (view) => {
        writeField(view, GET_ID_ATTR.fields.mapId, id);
      },
    )[0];
  }

  nextMapId(startId: number): number {
    const [result, view] = oneOff(
      BpfCommand.MAP_GET_NEXT_ID,
      layoutSize(GET_ID_ATTR),
      (view) => {
        writeField(view, GET_ID_ATTR.fields.startId, startId);
      },
    );
    return result < 0 ? result : readU32(view, GET_ID_ATTR.fields.nextId);
  }

  info(fd: number, info: Uint8Array): number {
    return objInfo(fd, info);
  }

  freeze(fd: number): number {
    return oneOff(BpfCommand.MAP_FREEZE, layoutSize(FREEZE_ATTR), (view) => {
      writeField(view, FREEZE_ATTR.fields.mapFd, fd);
    })[0];
  }
}

/** A NUL-terminated path in an owned buffer, whose address can go into an attr. */
function ownedCString(text: string): Uint8Array {
  const bytes = cString(text);
  const owned = ownedBytes(bytes.length);
  owned.set(bytes);
  return owned;
}
