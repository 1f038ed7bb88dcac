/**
 * The `libbpf` backend: the wrappers of `bpf/bpf.h`, which return `-errno` themselves.
 *
 * Buffers go to libbpf as `"buffer"` parameters, which Deno keeps alive for the call; the
 * prepared calls hold them in `#private` fields for as long as they may run.
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
import { ownedBytes } from "./buffers.ts";
import {
  LIBBPF_BATCH_OPTS,
  LIBBPF_MAP_CREATE_OPTS,
  LIBBPF_OPTS_SIZE,
  type MapCreateAttr,
  writeField,
} from "./layout.ts";
import { cString } from "./libc.ts";
import { type LibbpfSymbols, libbpfSymbols, requireSymbol } from "./libbpf.ts";

/** An element call on owned buffers, passed by address; the buffers are held here. */
class PreparedElem {
  readonly #lib: LibbpfSymbols;
  readonly #command: ElemCommandName;
  readonly #fd: number;
  readonly #flags: bigint;
  // Held so that the memory the pointers address stays alive.
  readonly #key: Uint8Array | null;
  readonly #value: Uint8Array | null;
  readonly #keyPointer: Deno.PointerValue;
  readonly #valuePointer: Deno.PointerValue;

  constructor(
    lib: LibbpfSymbols,
    command: ElemCommandName,
    fd: number,
    key: Uint8Array | null,
    value: Uint8Array | null,
    flags: bigint,
  ) {
    this.#lib = lib;
    this.#command = command;
    this.#fd = fd;
    this.#flags = flags;
    this.#key = key;
    this.#value = value;
    this.#keyPointer = this.#key && Deno.UnsafePointer.of(this.#key);
    this.#valuePointer = this.#value && Deno.UnsafePointer.of(this.#value);
  }

  run(): number {
    switch (this.#command) {
      case "lookup":
        return this.#lib.bpf_map_lookup_elem(this.#fd, this.#keyPointer, this.#valuePointer);
      case "update":
        return this.#lib.bpf_map_update_elem(
          this.#fd,
          this.#keyPointer,
          this.#valuePointer,
          this.#flags,
        );
      case "delete":
        return this.#lib.bpf_map_delete_elem(this.#fd, this.#keyPointer);
      case "nextKey":
        return this.#lib.bpf_map_get_next_key(this.#fd, this.#keyPointer, this.#valuePointer);
      case "lookupAndDelete":
        return this.#lib.bpf_map_lookup_and_delete_elem(
          this.#fd,
          this.#keyPointer,
          this.#valuePointer,
        );
    }
  }
}

class PreparedBatch implements BatchCall {
  readonly #lib: LibbpfSymbols;
  readonly #command: BatchCommandName;
  readonly #fd: number;
  readonly #buffers: BatchBuffers;
  readonly #count = new Uint32Array(new ArrayBuffer(4));
  readonly #opts = ownedBytes(LIBBPF_OPTS_SIZE.batch);
  readonly #optsView = new DataView(this.#opts.buffer);

  constructor(
    lib: LibbpfSymbols,
    command: BatchCommandName,
    fd: number,
    buffers: BatchBuffers,
  ) {
    this.#lib = lib;
    this.#command = command;
    this.#fd = fd;
    this.#buffers = buffers;
    writeField(
      this.#optsView,
      LIBBPF_BATCH_OPTS.fields.sz,
      BigInt(LIBBPF_OPTS_SIZE.batch),
    );
  }

  run(count: number, fromStart: boolean, elemFlags: bigint): number {
    this.#count[0] = count;
    writeField(this.#optsView, LIBBPF_BATCH_OPTS.fields.elemFlags, elemFlags);
    const b = this.#buffers;
    switch (this.#command) {
      case "lookup":
      case "lookupAndDelete": {
        const lookup = this.#command === "lookup"
          ? this.#lib.bpf_map_lookup_batch
          : this.#lib.bpf_map_lookup_and_delete_batch;
        return lookup(
          this.#fd,
          fromStart ? null : b.inBatch,
          b.outBatch,
          b.keys,
          b.values,
          this.#count,
          this.#opts,
        );
      }
      case "update":
        return this.#lib.bpf_map_update_batch(
          this.#fd,
          b.keys,
          b.values,
          this.#count,
          this.#opts,
        );
      case "delete":
        return this.#lib.bpf_map_delete_batch(
          this.#fd,
          b.keys,
          this.#count,
          this.#opts,
        );
    }
  }

  done(): number {
    return this.#count[0];
  }
}

/** The `libbpf` backend. */
export class LibbpfBackend implements Backend {
  readonly name = "libbpf" as const;
  readonly #lib: LibbpfSymbols = libbpfSymbols();

  createMap(attr: MapCreateAttr): number {
    const create = requireSymbol("bpf_map_create", "0.7");
    const opts = ownedBytes(LIBBPF_OPTS_SIZE.mapCreate);
    const view = new DataView(opts.buffer);
    writeField(
      view,
      LIBBPF_MAP_CREATE_OPTS.fields.sz,
      BigInt(LIBBPF_OPTS_SIZE.mapCreate),
    );
    writeField(view, LIBBPF_MAP_CREATE_OPTS.fields.mapFlags, attr.mapFlags);
    if (attr.innerMapFd) {
      writeField(view, LIBBPF_MAP_CREATE_OPTS.fields.innerMapFd, attr.innerMapFd);
    }
    if (attr.ifindex) writeField(view, LIBBPF_MAP_CREATE_OPTS.fields.mapIfindex, attr.ifindex);
    const name = attr.name ? cString(attr.name.slice(0, 15)) : null;
    return create(
      attr.mapType,
      name,
      attr.keySize,
      attr.valueSize,
      attr.maxEntries,
      opts,
    );
  }

  elem(
    command: ElemCommandName,
    fd: number,
    key: Uint8Array | null,
    value: Uint8Array | null,
    flags = 0n,
  ): ElemCall {
    const call = new PreparedElem(this.#lib, command, fd, key, value, flags);
    return call.run.bind(call);
  }

  batch(
    command: BatchCommandName,
    fd: number,
    buffers: BatchBuffers,
  ): BatchCall {
    return new PreparedBatch(this.#lib, command, fd, buffers);
  }

  pin(fd: number, path: string): number {
    return this.#lib.bpf_obj_pin(fd, cString(path));
  }

  objGet(path: string): number {
    return this.#lib.bpf_obj_get(cString(path));
  }

  mapFdById(id: number): number {
    return this.#lib.bpf_map_get_fd_by_id(id);
  }

  nextMapId(startId: number): number {
    const next = new Uint32Array(1);
    const result = this.#lib.bpf_map_get_next_id(startId, next);
    return result < 0 ? result : next[0];
  }

  info(fd: number, info: Uint8Array): number {
    const length = new Uint32Array([info.byteLength]);
    return this.#lib.bpf_obj_get_info_by_fd(fd, info, length);
  }

  freeze(fd: number): number {
    return this.#lib.bpf_map_freeze(fd);
  }
}
