/**
 * `BpfObject`: a clang-built BPF object file opened and loaded through libbpf's object API,
 * and the maps and iterator links taken from it.
 *
 * @module
 */

import { addressOf, keepAlive, ownedBytes } from "../sys/buffers.ts";
import { BpfError, check } from "../sys/errors.ts";
import {
  ITER_LINK_INFO,
  LIBBPF_ITER_ATTACH_OPTS,
  LIBBPF_OPTS_SIZE,
  writeField,
} from "../sys/layout.ts";
import { closeFd, cString, dupFd, errno, readFd } from "../sys/libc.ts";
import { libbpfMessage, type LibbpfSymbols, libbpfSymbols, requireSymbol } from "../sys/libbpf.ts";
import { BpfMap, type OpenOptions } from "./map.ts";

/** libbpf's first own error code (`LIBBPF_ERRNO__LIBELF`); smaller ones are kernel errnos. */
const LIBBPF_ERRNO_BASE = 4000;

/** A loaded program attached as a BPF iterator: each `open()` starts a fresh walk. */
export class IterLink implements Disposable {
  readonly #lib: LibbpfSymbols;
  #link: Deno.PointerValue;

  /** @internal Made by `BpfObject.attachIter`. */
  constructor(lib: LibbpfSymbols, link: Deno.PointerObject) {
    this.#lib = lib;
    this.#link = link;
  }

  /** Creates an iterator fd (`bpf_iter_create`); read it to the end, then close it. */
  open(): number {
    if (this.#link === null) throw new Error("The iterator link is closed");
    const create = requireSymbol("bpf_iter_create", "0.0.9");
    return check(create(this.#lib.bpf_link__fd(this.#link)), "bpf_iter_create");
  }

  /**
   * Runs one walk, handing each chunk the kernel returns to `visit` (a view into `buffer`,
   * reused). Returns the bytes read.
   */
  read(buffer: Uint8Array, visit: (bytes: Uint8Array) => void): number {
    const fd = this.open();
    let total = 0;
    try {
      for (;;) {
        const n = readFd(fd, buffer);
        if (n === 0) return total;
        check(n, "read", { subject: "a BPF iterator" });
        total += n;
        visit(buffer.subarray(0, n));
      }
    } finally {
      closeFd(fd);
    }
  }

  /** Detaches the iterator. Safe to call twice. */
  close(): void {
    if (this.#link === null) return;
    this.#lib.bpf_link__destroy(this.#link);
    this.#link = null;
  }

  /** Detaches the iterator (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * A BPF object file opened through libbpf: adjust its maps, load it, then take maps and
 * attach programs. Closing the object unloads what it loaded, except maps taken with `map()`
 * (they hold an fd of their own) and pins.
 *
 * @example
 * ```ts
 * import { BpfObject } from "../../mod.ts";
 * using object = BpfObject.open("build/test_map.bpf.o");
 * object.setMaxEntries("test_map", 1 << 20);
 * object.load();
 * using map = object.map("test_map");
 * ```
 */
export class BpfObject implements Disposable {
  readonly #lib: LibbpfSymbols;
  readonly #path: string;
  #object: Deno.PointerValue;

  private constructor(
    lib: LibbpfSymbols,
    path: string,
    object: Deno.PointerObject,
  ) {
    this.#lib = lib;
    this.#path = path;
    this.#object = object;
  }

  /** Opens a BPF object file (`bpf_object__open_file`); nothing is loaded yet. */
  static open(path: string): BpfObject {
    const lib = libbpfSymbols();
    return new BpfObject(lib, path, openObjectFile(lib, path));
  }

  #handle(): Deno.PointerObject {
    if (this.#object === null) {
      throw new Error(`The BPF object "${this.#path}" is closed`);
    }
    return this.#object;
  }

  #findMap(name: string): Deno.PointerObject {
    const map = this.#lib.bpf_object__find_map_by_name(
      this.#handle(),
      cString(name),
    );
    if (map === null) {
      throw new Error(`No map "${name}" in the BPF object "${this.#path}"`);
    }
    return map;
  }

  /** Sets a map's `max_entries` before `load()`. */
  setMaxEntries(mapName: string, maxEntries: number): void {
    check(
      this.#lib.bpf_map__set_max_entries(this.#findMap(mapName), maxEntries),
      "bpf_map__set_max_entries",
      {
        subject: `map "${mapName}"`,
      },
    );
  }

  /** Sets the initial bytes of the object's `.rodata` (its `const volatile` globals) before `load()`. */
  setReadOnlyData(bytes: Uint8Array): void {
    check(
      this.#lib.bpf_map__set_initial_value(
        this.#findMap(".rodata"),
        bytes,
        BigInt(bytes.byteLength),
      ),
      "bpf_map__set_initial_value",
      { subject: `".rodata" of "${this.#path}"` },
    );
  }

  /** Loads the object's maps and programs into the kernel (`bpf_object__load`). */
  load(): void {
    this.#checkLoad(this.#lib.bpf_object__load(this.#handle()));
  }

  /**
   * Loads the object on another thread (libbpf returns `-errno`, so no errno is lost), so
   * that this thread can work meanwhile. Nothing else may use the object until it resolves.
   */
  async loadInBackground(): Promise<void> {
    this.#checkLoad(await this.#lib.bpf_object__load_nonblocking(this.#handle()));
  }

  #checkLoad(result: number): void {
    check(result, "bpf_object__load", {
      subject: `"${this.#path}"`,
      // libbpf's own codes (from 4000 on) are explained by libbpf; kernel errnos by BpfError.
      hint: -result >= LIBBPF_ERRNO_BASE ? libbpfMessage(result) : undefined,
    });
  }

  /** Opens one of the loaded object's maps as a `BpfMap` with an fd of its own. */
  map(name: string, options: OpenOptions = {}): BpfMap {
    const fd = check(
      this.#lib.bpf_map__fd(this.#findMap(name)),
      "bpf_map__fd",
      { subject: `map "${name}"` },
    );
    return BpfMap.fromFd(
      check(dupFd(fd), "dup", { subject: `map "${name}"` }),
      options,
    );
  }

  /** Attaches the iterator program `program` to `map` (`bpf_program__attach_iter`). */
  attachIter(program: string, map: BpfMap): IterLink {
    const prog = this.#lib.bpf_object__find_program_by_name(
      this.#handle(),
      cString(program),
    );
    if (prog === null) {
      throw new Error(
        `No program "${program}" in the BPF object "${this.#path}"`,
      );
    }
    const linkInfo = ownedBytes(8);
    writeField(
      new DataView(linkInfo.buffer),
      ITER_LINK_INFO.fields.mapFd,
      map.fd,
    );
    return this.#attach(prog, linkInfo);
  }

  /** Attaches an iterator program that takes no target (e.g. `iter/bpf_map`). */
  attachIterAll(program: string): IterLink {
    const prog = this.#lib.bpf_object__find_program_by_name(
      this.#handle(),
      cString(program),
    );
    if (prog === null) {
      throw new Error(
        `No program "${program}" in the BPF object "${this.#path}"`,
      );
    }
    return this.#attach(prog, null);
  }

  #attach(prog: Deno.PointerObject, linkInfo: Uint8Array | null): IterLink {
    const attach = requireSymbol("bpf_program__attach_iter", "0.0.9");
    const opts = ownedBytes(LIBBPF_OPTS_SIZE.iterAttach);
    const view = new DataView(opts.buffer);
    const f = LIBBPF_ITER_ATTACH_OPTS.fields;
    writeField(view, f.sz, BigInt(LIBBPF_OPTS_SIZE.iterAttach));
    if (linkInfo) {
      writeField(view, f.linkInfo, addressOf(linkInfo));
      writeField(view, f.linkInfoLen, linkInfo.byteLength);
    }
    const link = attach(prog, opts);
    const code = errno();
    keepAlive(linkInfo);
    if (link === null) {
      throw new BpfError({
        errno: code,
        command: "bpf_program__attach_iter",
        subject: `"${this.#path}"`,
      });
    }
    return new IterLink(this.#lib, link);
  }

  /** Unloads the object. Safe to call twice. */
  close(): void {
    if (this.#object === null) return;
    this.#lib.bpf_object__close(this.#object);
    this.#object = null;
  }

  /** Unloads the object (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** The path of one of the toolkit's own BPF objects, built by `make build` into `build/`. */
export function builtObjectPath(name: string): string {
  return new URL(`../../build/${name}`, import.meta.url).pathname;
}

/**
 * libbpf's handle of the BPF object file at `path` (`bpf_object__open_file`), for modules that
 * drive libbpf's object API themselves; throws a `BpfError` saying how to build it when absent.
 */
export function openObjectFile(lib: LibbpfSymbols, path: string): Deno.PointerObject {
  const object = lib.bpf_object__open_file(cString(path), null);
  if (object !== null) return object;
  const code = errno();
  throw new BpfError({
    errno: code,
    command: "bpf_object__open_file",
    subject: `"${path}"`,
    hint: code === 2
      ? "build it first: make build"
      : code >= LIBBPF_ERRNO_BASE
      ? libbpfMessage(-code)
      : undefined,
  });
}

/** A map or program of an opened object, or an error naming what is missing. */
export function findInObject(
  lib: LibbpfSymbols,
  object: Deno.PointerObject,
  kind: "map" | "program",
  name: string,
  path: string,
): Deno.PointerObject {
  const found = kind === "map"
    ? lib.bpf_object__find_map_by_name(object, cString(name))
    : lib.bpf_object__find_program_by_name(object, cString(name));
  if (found === null) {
    throw new Error(`No ${kind} "${name}" in the BPF object "${path}": rebuild it with make build`);
  }
  return found;
}
