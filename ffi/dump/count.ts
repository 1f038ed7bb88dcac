/**
 * Counts of a map's entries, to check a dump against: the kernel's own count where the kernel
 * has one to give, else a count by a walk that is not the dump's own. Read just before a dump
 * and just after, a count also tells a still map from one written meanwhile.
 *
 * The sources, in the order they are tried (each names itself in the verdict and in
 * `DumpResult.countSource`):
 * - `kernel`: `bpf_map_sum_elem_count` (Linux 6.6+), read by an `iter/bpf_map` program
 *   (`bpf/map_count.bpf.c`): the sum of the hash map's per-CPU element counters;
 * - `for_each`: one `bpf_for_each_map_elem` pass in a syscall program, for maps it walks
 *   within the kernel time budget of one call (about 4M entries);
 * - `iter`: one `iter/bpf_map_elem` pass that writes a byte per element (any size: the walk
 *   is read in pieces);
 * - `batch`: one `LOOKUP_BATCH` pass;
 * - `keys`: one `GET_NEXT_KEY` + `LOOKUP_ELEM` pass, following restarts.
 * A dump is never checked against a walk of its own kind (a batch dump against a batch
 * pass): a walk that is wrong would agree with itself. Arrays always hold `max_entries`.
 *
 * @module
 */

import { BpfArgumentError, BpfError, Errno } from "../sys/errors.ts";
import { isArray } from "../sys/constants.ts";
import {
  type Facility,
  lookupBatchFacility,
  unavailableReason,
  vmlinuxFuncId,
} from "../sys/features.ts";
import {
  asm,
  attachIterator,
  callWithCallback,
  closeAll,
  describeFailure,
  Helper,
  type Insn,
  loadProgram,
  readIterator,
  RETURN_ZERO,
  runProgram,
} from "../sys/programs.ts";
import type { BpfMap } from "../map/map.ts";
import { BpfObject, builtObjectPath } from "../map/object.ts";
import { bucketCount, SNAPSHOT_NS_PER_BUCKET, snapshotNsPerElement } from "./snapshot.ts";
import { KeySet } from "./verify.ts";

/** Where a count of a map's entries came from, and how a verdict names it. */
export const COUNT_SOURCES = {
  kernel: "the kernel's count (bpf_map_sum_elem_count)",
  for_each: "a bpf_for_each_map_elem pass",
  iter: "a bpf_iter pass",
  batch: "a LOOKUP_BATCH pass",
  keys: "a GET_NEXT_KEY pass",
  array: "an array's max_entries",
  given: "the count given",
} as const;
/** A count's source: `kernel`, `for_each`, `iter`, `batch`, `keys`, `array` or `given`. */
export type CountSource = keyof typeof COUNT_SOURCES;

/** A count of a map's entries and where it came from, or why there is none. */
export type KernelCount =
  | { count: number; source: CountSource; unavailable?: undefined }
  | { count?: undefined; source?: undefined; unavailable: string };

/** The walks each dump method makes: a count by one of them would share the walk under test. */
const OWN_WALKS: Readonly<Record<string, readonly CountSource[]>> = {
  normal: ["keys"],
  batch: ["batch"],
  parallel: ["batch"],
  "seed-compat": ["batch"],
  iter: ["iter"],
  snapshot: ["for_each", "batch"],
  hybrid: ["for_each", "batch"],
};

/** The kernel time a `for_each` pass may take, in milliseconds: one call, not preemptible. */
const FOR_EACH_BUDGET_MS = 1000;

/** The first line of an error's message. */
function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0];
}

/** One way of counting a map: `count()` is one pass (or one read of the kernel's count). */
interface Counting extends Disposable {
  readonly source: CountSource;
  count(): number;
}

const OBJECT = "map_count.bpf.o";
const RECORD_SIZE = 16; // struct { __u32 id; __u32 max_entries; __s64 count; }

/**
 * The kernel's count of the entries of hash maps (`bpf_map_sum_elem_count`), read by an
 * `iter/bpf_map` program loaded once and read as often as needed. It lists every map of
 * the system at each read, so one counter serves any number of maps.
 *
 * @example
 * ```ts
 * import { BpfMap, KernelCounter } from "../../mod.ts";
 * using map = BpfMap.fromPin("/sys/fs/bpf/test_map");
 * const counter = KernelCounter.open();
 * if (typeof counter !== "string") {
 *   using _ = counter;
 *   console.log(counter.count(map));
 * }
 * ```
 */
export class KernelCounter implements Disposable {
  #object: BpfObject | undefined;
  readonly #buffer = new Uint8Array(64 * 1024);

  private constructor(object: BpfObject) {
    this.#object = object;
  }

  /** Why the kernel's count cannot be read here (the kernel, the object file), or `null`. */
  static unavailable(): string | null {
    const refused = unavailableReason("iter_map", "elem_count_kfunc");
    if (refused) return refused;
    return BpfObject.missing(builtObjectPath(OBJECT));
  }

  /** Loads the counting program, or says why it cannot. */
  static open(): KernelCounter | string {
    const why = KernelCounter.unavailable();
    if (why !== null) return why;
    try {
      const object = BpfObject.open(builtObjectPath(OBJECT));
      try {
        object.load();
      } catch (e) {
        object.close();
        throw e;
      }
      return new KernelCounter(object);
    } catch (e) {
      return `the counting program did not load: ${firstLine(e)}`;
    }
  }

  /** The number of entries `map` holds now, by the kernel's count, or why it cannot be told. */
  count(map: BpfMap): KernelCount {
    if (isArray(map.info.type)) return { count: map.info.maxEntries, source: "array" };
    if (!this.#object) throw new Error("The kernel counter is closed");
    try {
      using link = this.#object.attachIterAll("count_elems");
      let count: number | undefined;
      link.read(this.#buffer, (bytes) => {
        const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        for (let at = 0; at + RECORD_SIZE <= bytes.byteLength; at += RECORD_SIZE) {
          if (view.getUint32(at, true) !== map.info.id) continue;
          count = Number(view.getBigInt64(at + 8, true));
        }
      });
      if (count === undefined) {
        return { unavailable: `the counting iterator did not list map id ${map.info.id}` };
      }
      if (count < 0) {
        return { unavailable: `the kernel keeps no element count for ${map.subject}` };
      }
      return { count, source: "kernel" };
    } catch (e) {
      return { unavailable: `the counting iterator failed: ${firstLine(e)}` };
    }
  }

  /** Unloads the program; idempotent. */
  close(): void {
    this.#object?.close();
    this.#object = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** A program of a few instructions, loaded for one map and closed with the counter. */
function loadCountingProgram(
  name: string,
  kind: "syscall" | { iterTarget: number },
  program: { insns: readonly Insn[]; callbacks?: number[] },
  subject: string,
): number {
  const loaded = loadProgram({ name, kind, ...program });
  if (typeof loaded === "number") return loaded;
  throw new Error(
    `the ${name} program for ${subject} was refused: ${describeFailure(loaded, "load")}`,
  );
}

/** `for_each`: a syscall program returns what `bpf_for_each_map_elem` walked. */
function forEachCounting(map: BpfMap): Counting {
  const program = loadCountingProgram(
    "count_each",
    "syscall",
    callWithCallback(Helper.forEachMapElem, asm.loadMap(1, map.fd)),
    map.subject,
  );
  return {
    source: "for_each",
    count() {
      const result = runProgram(program);
      if (result < 0) {
        throw new BpfError({ errno: -result, command: "BPF_PROG_TEST_RUN", subject: map.subject });
      }
      return result;
    },
    [Symbol.dispose]: () => closeAll(program),
  };
}

/**
 * `iter`: an iterator over the map's elements writes one byte per element (none at the final
 * call, whose key is NULL); the count is the bytes read.
 */
function iterCounting(map: BpfMap, target: number): Counting {
  // r2 = ctx->key; if (!r2) return 0; r3 = 0 on the stack; bpf_seq_write(ctx->meta->seq, fp - 8, 1)
  const insns: Insn[] = [
    asm.loadU64(2, 1, 16),
    asm.jumpIfEqual(2, 0, 8),
    asm.loadU64(1, 1, 0),
    asm.loadU64(1, 1, 0),
    asm.movImm(3, 0),
    asm.storeU64(10, -8, 3),
    asm.mov(2, 10),
    asm.addImm(2, -8),
    asm.movImm(3, 1),
    asm.call(Helper.seqWrite),
    ...RETURN_ZERO,
  ];
  const program = loadCountingProgram("count_iter", { iterTarget: target }, { insns }, map.subject);
  const link = attachIterator(program, map.fd);
  if (link < 0) {
    closeAll(program);
    throw new BpfError({ errno: -link, command: "BPF_LINK_CREATE", subject: map.subject });
  }
  return {
    source: "iter",
    count() {
      const read = readIterator(link);
      if (read < 0) throw new BpfError({ errno: -read, command: "read", subject: map.subject });
      return read;
    },
    [Symbol.dispose]: () => closeAll(link, program),
  };
}

/** `batch`: entries a LOOKUP_BATCH walk returns. */
function batchCounting(map: BpfMap): Counting {
  return {
    source: "batch",
    count: () => map.forEachBatch(() => {}).entries,
    [Symbol.dispose]: () => {},
  };
}

/** `keys`: distinct keys of a per-entry walk that follows its restarts. */
function keysCounting(map: BpfMap): Counting {
  return {
    source: "keys",
    count() {
      const keys = new KeySet(map.keySize, map.info.maxEntries);
      map.forEachEntry(() => {}, { keys });
      return keys.added - keys.duplicates;
    },
    [Symbol.dispose]: () => {},
  };
}

/** The estimated kernel time of one `for_each` pass over `map`, in milliseconds. */
function forEachMs(map: BpfMap): number {
  const { type, maxEntries } = map.info;
  return (maxEntries * snapshotNsPerElement(maxEntries) +
    bucketCount(type, maxEntries) * SNAPSHOT_NS_PER_BUCKET) / 1e6;
}

/** Why `source` cannot count `map` here, or `null` when it can (`iterTarget` aside). */
function sourceRefusal(source: CountSource, map: BpfMap): string | null {
  const needs: Record<string, Facility[]> = {
    for_each: ["for_each_map_elem"],
    iter: ["iter_map_elem"],
    batch: [lookupBatchFacility(map.info.type) ?? "maps"],
    keys: ["maps"],
  };
  const refused = unavailableReason(...needs[source]);
  if (refused) return refused;
  if (source === "for_each" && forEachMs(map) > FOR_EACH_BUDGET_MS) {
    return `one pass over ${map.info.maxEntries} entries would hold a CPU for about ${
      Math.round(forEachMs(map))
    } ms, over the ${FOR_EACH_BUDGET_MS} ms budget`;
  }
  return null;
}

/** Options of `MapCounter.open`. */
export interface MapCounterOptions {
  /** The dump method the count checks: its own walk is never the count's. */
  method?: string;
  /** The kernel's counter, already loaded (shared by several maps). */
  kernel?: KernelCounter;
  /** The sources to try, in this order (default: all, `kernel` first). */
  sources?: readonly Exclude<CountSource, "array" | "given">[];
}

/** The sources a counter tries, in order. */
const SOURCE_ORDER = ["kernel", "for_each", "iter", "batch", "keys"] as const;

/**
 * Counts one map's entries by the first source that this kernel allows and that is not the
 * checked method's own walk (see the module's list). Each `count()` is a fresh count.
 *
 * @example
 * ```ts
 * import { BpfMap, MapCounter } from "../../mod.ts";
 * using map = BpfMap.fromPin("/sys/fs/bpf/test_map");
 * using counter = MapCounter.open(map, { method: "batch" });
 * const counted = counter.count();
 * console.log(counted.count !== undefined ? `${counted.count} by ${counted.source}` : counted.unavailable);
 * ```
 */
export class MapCounter implements Disposable {
  readonly #map: BpfMap;
  readonly #kernel: KernelCounter | undefined;
  readonly #ownKernel: boolean;
  readonly #counting: Counting | undefined;
  readonly #unavailable: string | undefined;

  private constructor(
    map: BpfMap,
    found: {
      kernel?: KernelCounter;
      ownKernel?: boolean;
      counting?: Counting;
      unavailable?: string;
    },
  ) {
    this.#map = map;
    this.#kernel = found.kernel;
    this.#ownKernel = found.ownKernel ?? false;
    this.#counting = found.counting;
    this.#unavailable = found.unavailable;
  }

  /** Picks the source for `map` and loads what it needs; never throws for a refused source. */
  static open(map: BpfMap, options: MapCounterOptions = {}): MapCounter {
    if (isArray(map.info.type)) return new MapCounter(map, {});
    const own = OWN_WALKS[options.method ?? ""] ?? [];
    const passed: string[] = [];
    for (const source of options.sources ?? SOURCE_ORDER) {
      if (source === "kernel") {
        const kernel = options.kernel ?? KernelCounter.open();
        if (typeof kernel !== "string") {
          return new MapCounter(map, { kernel, ownKernel: options.kernel === undefined });
        }
        passed.push(`the kernel's count: ${kernel}`);
        continue;
      }
      if (own.includes(source)) {
        passed.push(`${COUNT_SOURCES[source]}: it is the ${options.method} dump's own walk`);
        continue;
      }
      const refusal = sourceRefusal(source, map);
      if (refusal) {
        passed.push(`${COUNT_SOURCES[source]}: ${refusal}`);
        continue;
      }
      try {
        return new MapCounter(map, { counting: MapCounter.#start(source, map) });
      } catch (e) {
        passed.push(`${COUNT_SOURCES[source]}: ${firstLine(e)}`);
      }
    }
    return new MapCounter(map, { unavailable: passed.join("; ") || "no source to count by" });
  }

  static #start(source: "for_each" | "iter" | "batch" | "keys", map: BpfMap): Counting {
    switch (source) {
      case "for_each":
        return forEachCounting(map);
      case "iter":
        return iterCounting(map, iterTarget());
      case "batch":
        return batchCounting(map);
      case "keys":
        return keysCounting(map);
    }
  }

  /** The source this counter counts by, or `null` when none is available (`count()` says why). */
  get source(): CountSource | null {
    if (isArray(this.#map.info.type)) return "array";
    return this.#kernel ? "kernel" : this.#counting?.source ?? null;
  }

  /** Whether this counter counts by a walk that the dump method `method` makes itself. */
  sharesWalkWith(method: string): boolean {
    const source = this.source;
    return source !== null && (OWN_WALKS[method] ?? []).includes(source);
  }

  /** The map's entries now, by this counter's source, or why they cannot be counted. */
  count(): KernelCount {
    const map = this.#map;
    if (isArray(map.info.type)) return { count: map.info.maxEntries, source: "array" };
    if (this.#kernel) return this.#kernel.count(map);
    if (!this.#counting) return { unavailable: this.#unavailable ?? "no count" };
    try {
      return { count: this.#counting.count(), source: this.#counting.source };
    } catch (e) {
      if (e instanceof BpfArgumentError) throw e;
      return { unavailable: `${COUNT_SOURCES[this.#counting.source]} failed: ${firstLine(e)}` };
    }
  }

  /** Unloads what the counter loaded; idempotent. */
  close(): void {
    if (this.#ownKernel) this.#kernel?.close();
    this.#counting?.[Symbol.dispose]();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** The BTF id of `bpf_iter_bpf_map_elem`, for the `iter` count. */
function iterTarget(): number {
  const id = vmlinuxFuncId("bpf_iter_bpf_map_elem");
  if (typeof id === "string" || id === 0) {
    throw new BpfError({
      errno: Errno.ENOENT,
      command: "btf__find_by_name_kind",
      subject: "bpf_iter_bpf_map_elem",
    });
  }
  return id;
}

/**
 * The number of entries `map` holds, by the first source available (the kernel's count,
 * else a pass of a walk), or why it cannot be told. Only exact while nothing writes the map.
 *
 * @example
 * ```ts
 * import { BpfMap, readKernelCount } from "../../mod.ts";
 * using map = BpfMap.fromPin("/sys/fs/bpf/test_map");
 * const counted = readKernelCount(map);
 * console.log(counted.count ?? `no count: ${counted.unavailable}`);
 * ```
 */
export function readKernelCount(map: BpfMap, options: { method?: string } = {}): KernelCount {
  using counter = MapCounter.open(map, options);
  return counter.count();
}

/** `readKernelCount(map).count`: the count, or `undefined` when it cannot be told. */
export function kernelEntryCount(map: BpfMap): number | undefined {
  return readKernelCount(map).count;
}
