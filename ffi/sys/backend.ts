/**
 * The interface both backends implement, and the way to pick one.
 *
 * Every operation returns its result (0, a count or an fd) or `-errno`, never throws for a
 * kernel refusal: the map class turns `-errno` into a `BpfError` in one place (`check`).
 * Calls on fixed buffers are *prepared* once and run many times, so the hot loops neither
 * encode nor allocate per entry.
 *
 * @module
 */

import type { MapCreateAttr } from "./layout.ts";

/** The backend names: `syscall` (libc `syscall(SYS_bpf)`, no libbpf) or `libbpf`. */
export const BACKENDS = ["syscall", "libbpf"] as const;
/** A backend name. */
export type BackendName = typeof BACKENDS[number];

/** The element commands a prepared element call can run. */
export type ElemCommandName = "lookup" | "update" | "delete" | "nextKey" | "lookupAndDelete";

/** The batch commands a prepared batch call can run. */
export type BatchCommandName =
  | "lookup"
  | "lookupAndDelete"
  | "update"
  | "delete";

/** A prepared element call: runs on the buffers and flags it was prepared with; returns 0 or `-errno`. */
export type ElemCall = () => number;

/** The buffers a batch call works on; the backend keeps them referenced while the call lives. */
export interface BatchBuffers {
  /** The cursor to resume from (only lookups use it). */
  inBatch: Uint8Array;
  /** Where the kernel writes the next cursor (only lookups use it). */
  outBatch: Uint8Array;
  /** Keys array: `chunk * keySize` bytes. */
  keys: Uint8Array;
  /** Values array: `chunk * valueBytes` bytes; unused by delete. */
  values: Uint8Array;
}

/** A prepared batch call. */
export interface BatchCall {
  /**
   * Runs the command on up to `count` entries; `fromStart` passes a NULL `in_batch`.
   * Returns 0 or `-errno`; `done()` then tells how many entries the kernel handled, which
   * stays meaningful on `-ENOENT` (the walk's last, partial batch).
   */
  run(count: number, fromStart: boolean, elemFlags: bigint): number;
  /** Entries the last `run` handled (the kernel's `count` output). */
  done(): number;
}

/** One way of issuing `bpf(2)` commands. */
export interface Backend {
  /** This backend's name. */
  readonly name: BackendName;
  /** `BPF_MAP_CREATE`: returns the new fd or `-errno`. */
  createMap(attr: MapCreateAttr): number;
  /**
   * Prepares an element command on `key` and `value` (`next_key` for `nextKey`; a `null`
   * key starts the walk) with `flags` (update flags). The buffers must be owned
   * (`ownedBytes`): the call passes their addresses and keeps them referenced.
   */
  elem(
    command: ElemCommandName,
    fd: number,
    key: Uint8Array | null,
    value: Uint8Array | null,
    flags?: bigint,
  ): ElemCall;
  /** Prepares a batch command on `buffers`. */
  batch(
    command: BatchCommandName,
    fd: number,
    buffers: BatchBuffers,
  ): BatchCall;
  /** `BPF_OBJ_PIN`: returns 0 or `-errno`. */
  pin(fd: number, path: string): number;
  /** `BPF_OBJ_GET`: returns an fd or `-errno`. */
  objGet(path: string): number;
  /** `BPF_MAP_GET_FD_BY_ID`: returns an fd or `-errno`. */
  mapFdById(id: number): number;
  /** `BPF_MAP_GET_NEXT_ID`: returns the next id after `startId`, or `-errno` (`-ENOENT` past the last). */
  nextMapId(startId: number): number;
  /** `BPF_OBJ_GET_INFO_BY_FD` into `info`; returns 0 or `-errno`. */
  info(fd: number, info: Uint8Array): number;
  /** `BPF_MAP_FREEZE`: returns 0 or `-errno`. */
  freeze(fd: number): number;
}
