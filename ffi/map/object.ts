/**
 * `BpfObject`: a clang-built BPF object file opened, configured and loaded through libbpf's
 * object API, and the maps, programs, iterator links and test runs taken from it. Every
 * object the toolkit loads goes through here: one check of its programs against what the
 * kernel allows (`sys/features.ts`), one set of hints when a load fails.
 *
 * @module
 */

import { addressOf, keepAlive, ownedBytes } from "../sys/buffers.ts";
import { BpfError, check, Errno } from "../sys/errors.ts";
import { type Facility, requireFacilities } from "../sys/features.ts";
import {
  ITER_LINK_INFO,
  layoutSize,
  LIBBPF_ITER_ATTACH_OPTS,
  LIBBPF_OPTS_SIZE,
  LIBBPF_TEST_RUN_OPTS,
  readU32,
  writeField,
} from "../sys/layout.ts";
import { closeFd, cString, dupFd, errno, readFd } from "../sys/libc.ts";
import { libbpfMessage, type LibbpfSymbols, libbpfSymbols, requireSymbol } from "../sys/libbpf.ts";
import { type CapabilityName, privilegeHint } from "../sys/privileges.ts";
import { pathExists } from "../sys/system.ts";
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

/** The facilities and capabilities a program of each section needs (libbpf's section names). */
const SECTION_NEEDS: Readonly<Record<string, { facilities: Facility[]; caps: CapabilityName[] }>> =
  {
    "iter/bpf_map_elem": { facilities: ["iter_map_elem"], caps: ["CAP_BPF", "CAP_PERFMON"] },
    "iter/bpf_map": { facilities: ["iter_map"], caps: ["CAP_BPF", "CAP_PERFMON"] },
    "syscall": { facilities: ["syscall_programs"], caps: ["CAP_BPF"] },
  };

/** Options of `BpfObject.open`. */
export interface ObjectOpenOptions {
  /** The programs to load (by name); the others are left out of `load()`. Default: all. */
  programs?: readonly string[];
}

/** Options of `BpfObject.load`. */
export interface ObjectLoadOptions {
  /** What the object is loaded for, in messages (default: its path), e.g. `the snapshot of map 5`. */
  subject?: string;
  /** A hint of the caller's own for a load refused with this errno (e.g. what memory its maps need). */
  hint?: (errno: number) => string | undefined;
}

/**
 * A BPF object file opened through libbpf: configure its maps, load it, then take maps,
 * programs and iterators. Closing the object unloads what it loaded, except maps taken with
 * `map()` (they hold an fd of their own) and pins.
 *
 * @example
 * ```ts
 * import { BpfObject } from "../../mod.ts";
 * using object = BpfObject.open("build/test_map.bpf.o", { programs: [] });
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

  /**
   * Opens a BPF object file (`bpf_object__open_file`); nothing is loaded yet. With
   * `programs`, only those programs will be loaded.
   */
  static open(path: string, options: ObjectOpenOptions = {}): BpfObject {
    const lib = libbpfSymbols();
    const object = new BpfObject(lib, path, openObjectFile(lib, path));
    if (options.programs) {
      try {
        for (const program of object.#programs()) {
          const name = readCString(lib.bpf_program__name(program));
          check(
            lib.bpf_program__set_autoload(program, options.programs.includes(name)),
            "bpf_program__set_autoload",
            { subject: `program "${name}" of "${path}"` },
          );
        }
      } catch (e) {
        object.close();
        throw e;
      }
    }
    return object;
  }

  /** Why the object file at `path` cannot be opened (it is not built), or `null`. */
  static missing(path: string): string | null {
    return pathExists(path) ? null : `${path} is missing (make build makes it)`;
  }

  #handle(): Deno.PointerObject {
    if (this.#object === null) {
      throw new Error(`The BPF object "${this.#path}" is closed`);
    }
    return this.#object;
  }

  /** The object's programs, in order. */
  *#programs(): Generator<Deno.PointerObject> {
    const next = requireSymbol("bpf_object__next_program", "0.7");
    for (
      let program = next(this.#handle(), null);
      program !== null;
      program = next(this.#handle(), program)
    ) {
      yield program;
    }
  }

  #find(kind: "map" | "program", name: string): Deno.PointerObject {
    return findInObject(this.#lib, this.#handle(), kind, name, this.#path);
  }

  #subject(map: string): string {
    return `map "${map}" of "${this.#path}"`;
  }

  /** Sets a map's `max_entries` before `load()`. */
  setMaxEntries(mapName: string, maxEntries: number): void {
    check(
      this.#lib.bpf_map__set_max_entries(this.#find("map", mapName), maxEntries),
      "bpf_map__set_max_entries",
      { subject: this.#subject(mapName) },
    );
  }

  /** Sets a map's `value_size` before `load()`. */
  setValueSize(mapName: string, valueSize: number): void {
    check(
      this.#lib.bpf_map__set_value_size(this.#find("map", mapName), valueSize),
      "bpf_map__set_value_size",
      { subject: this.#subject(mapName) },
    );
  }

  /**
   * Makes the object's map `mapName` the existing map `map` before `load()`
   * (`bpf_map__reuse_fd`: libbpf takes a reference of its own, so `map` may be closed after).
   */
  reuseMap(mapName: string, map: BpfMap): void {
    check(this.#lib.bpf_map__reuse_fd(this.#find("map", mapName), map.fd), "bpf_map__reuse_fd", {
      subject: this.#subject(mapName),
    });
  }

  /** Sets the initial bytes of the object's `.rodata` (its `const volatile` globals) before `load()`. */
  setReadOnlyData(bytes: Uint8Array): void {
    check(
      this.#lib.bpf_map__set_initial_value(
        this.#find("map", ".rodata"),
        bytes,
        BigInt(bytes.byteLength),
      ),
      "bpf_map__set_initial_value",
      { subject: `".rodata" of "${this.#path}"` },
    );
  }

  /**
   * Loads the object's maps and programs into the kernel (`bpf_object__load`). A program of
   * a kind this kernel refuses (as the probes found) is refused first, in one line, without
   * loading anything.
   */
  load(options: ObjectLoadOptions = {}): void {
    const caps = this.#checkPrograms();
    this.#checkLoad(this.#lib.bpf_object__load(this.#handle()), caps, options);
  }

  /** Refuses a program this kernel refuses; returns the capabilities the programs need. */
  #checkPrograms(): CapabilityName[] {
    const caps = new Set<CapabilityName>(["CAP_BPF"]);
    for (const program of this.#programs()) {
      if (!this.#lib.bpf_program__autoload(program)) continue;
      const needs = SECTION_NEEDS[readCString(this.#lib.bpf_program__section_name(program))];
      if (!needs) continue;
      const name = readCString(this.#lib.bpf_program__name(program));
      requireFacilities(needs.facilities, `the program "${name}" of "${this.#path}"`);
      for (const cap of needs.caps) caps.add(cap);
    }
    return [...caps];
  }

  #checkLoad(result: number, caps: CapabilityName[], options: ObjectLoadOptions): void {
    const code = -result;
    check(result, "bpf_object__load", {
      subject: options.subject ?? `"${this.#path}"`,
      // libbpf's own codes (from 4000 on) are explained by libbpf; kernel errnos here.
      hint: options.hint?.(code) ??
        (code >= LIBBPF_ERRNO_BASE
          ? libbpfMessage(result)
          : code === Errno.EPERM || code === Errno.EACCES
          ? privilegeHint(caps)
          : code === Errno.EINVAL
          ? "the kernel refused a program or map of the object (libbpf printed why above): deno task features lists what this kernel allows"
          : undefined),
    });
  }

  /** Opens one of the loaded object's maps as a `BpfMap` with an fd of its own. */
  map(name: string, options: OpenOptions = {}): BpfMap {
    const fd = check(dupFd(this.mapFd(name)), "dup", { subject: this.#subject(name) });
    return BpfMap.fromFd(fd, options);
  }

  /** The fd of one of the loaded object's maps (owned by the object: valid until `close()`). */
  mapFd(name: string): number {
    return check(this.#lib.bpf_map__fd(this.#find("map", name)), "bpf_map__fd", {
      subject: this.#subject(name),
    });
  }

  /** The fd of one of the loaded object's programs (owned by the object). */
  programFd(name: string): number {
    return check(this.#lib.bpf_program__fd(this.#find("program", name)), "bpf_program__fd", {
      subject: `program "${name}" of "${this.#path}"`,
    });
  }

  /**
   * Prepares runs of the loaded syscall program `program` with `BPF_PROG_TEST_RUN`, on
   * `context` (copied in and back out at each run; the run keeps it referenced).
   */
  testRun(program: string, context: Uint8Array<ArrayBuffer>): TestRun {
    return new TestRun(this.programFd(program), context, `program "${program}" of "${this.#path}"`);
  }

  /** Attaches the iterator program `program` to `map` (`bpf_program__attach_iter`). */
  attachIter(program: string, map: BpfMap): IterLink {
    const linkInfo = ownedBytes(8);
    writeField(
      new DataView(linkInfo.buffer),
      ITER_LINK_INFO.fields.mapFd,
      map.fd,
    );
    return this.#attach(this.#find("program", program), linkInfo);
  }

  /** Attaches an iterator program that takes no target (e.g. `iter/bpf_map`). */
  attachIterAll(program: string): IterLink {
    return this.#attach(this.#find("program", program), null);
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

/**
 * Prepared runs of a loaded syscall program (`BPF_PROG_TEST_RUN`) on one context buffer:
 * libbpf's options hold the context's address, so both are kept here together.
 */
export class TestRun {
  readonly #programFd: number;
  readonly #subject: string;
  readonly #context: Uint8Array<ArrayBuffer>;
  readonly #options = ownedBytes(layoutSize(LIBBPF_TEST_RUN_OPTS));
  readonly #view = new DataView(this.#options.buffer);
  readonly #run = requireSymbol("bpf_prog_test_run_opts", "0.7");

  /** @internal Made by `BpfObject.testRun`. */
  constructor(programFd: number, context: Uint8Array<ArrayBuffer>, subject: string) {
    this.#programFd = programFd;
    this.#context = context;
    this.#subject = subject;
    const f = LIBBPF_TEST_RUN_OPTS.fields;
    writeField(this.#view, f.sz, BigInt(this.#options.byteLength));
    writeField(this.#view, f.ctxIn, addressOf(context));
    writeField(this.#view, f.ctxSizeIn, context.byteLength);
  }

  /** Runs the program once; returns its return value (the context holds what it wrote back). */
  run(): number {
    const result = this.#run(this.#programFd, this.#options);
    keepAlive(this.#context);
    check(result, "BPF_PROG_TEST_RUN", {
      subject: this.#subject,
      hint: -result === Errno.EPERM ? privilegeHint(["CAP_BPF"]) : undefined,
    });
    return readU32(this.#view, LIBBPF_TEST_RUN_OPTS.fields.retval);
  }
}

/** A C string libbpf returned (NUL-terminated, owned by libbpf). */
function readCString(pointer: Deno.PointerValue): string {
  return pointer === null ? "" : Deno.UnsafePointerView.getCString(pointer);
}

/** The path of one of the toolkit's own BPF objects, built by `make build` into `build/`. */
export function builtObjectPath(name: string): string {
  return new URL(`../../build/${name}`, import.meta.url).pathname;
}

/** libbpf's handle of the BPF object file at `path`; a `BpfError` saying how to build it when absent. */
function openObjectFile(lib: LibbpfSymbols, path: string): Deno.PointerObject {
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
function findInObject(
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
