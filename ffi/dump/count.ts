/**
 * The kernel's own count of a map's entries, to check a dump against without a second
 * pass over the map. Hash maps keep a count (read with the `bpf_map_sum_elem_count` kfunc
 * from an `iter/bpf_map` program, `bpf/map_count.bpf.c`); arrays always hold `maxEntries`.
 *
 * @module
 */

import { isArray } from "../sys/constants.ts";
import { BpfError, Errno } from "../sys/errors.ts";
import type { BpfMap } from "../map/map.ts";
import { BpfObject, builtObjectPath } from "../map/object.ts";

const RECORD_SIZE = 16; // struct { __u32 id; __u32 max_entries; __s64 count; }

/** The kernel's count of a map's entries, or why it could not be read. */
export type KernelCount = { count: number; unavailable?: undefined } | {
  count?: undefined;
  unavailable: string;
};

const OBJECT = "map_count.bpf.o";

/** The first line of an error's message. */
function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0];
}

/** Opens the counting object, or says why it cannot. */
function openCounter(): BpfObject | string {
  try {
    return BpfObject.open(builtObjectPath(OBJECT));
  } catch (e) {
    return e instanceof BpfError && e.errno === Errno.ENOENT
      ? `build/${OBJECT} is missing (make build makes it)`
      : `build/${OBJECT} did not open: ${firstLine(e)}`;
  }
}

/** Why the counting program did not load. */
function loadFailure(e: unknown): string {
  return `the counting program did not load (it needs the bpf_map_sum_elem_count kfunc, Linux 6.6+): ${
    firstLine(e)
  }`;
}

/**
 * The counting program, loaded once and read as often as needed: a dump reads the count
 * just before its walk and just after, to tell a still map from one written meanwhile.
 * Arrays need no program: they always hold `maxEntries`.
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

  /** Loads the counting program, or says why it cannot. */
  static open(): KernelCounter | string {
    const object = openCounter();
    if (typeof object === "string") return object;
    try {
      object.load();
    } catch (e) {
      object.close();
      return loadFailure(e);
    }
    return new KernelCounter(object);
  }

  /** `open()`, with the program loaded on another thread (BTF loading takes ~20 ms). */
  static async openInBackground(): Promise<KernelCounter | string> {
    const object = openCounter();
    if (typeof object === "string") return object;
    try {
      await object.loadInBackground();
    } catch (e) {
      object.close();
      return loadFailure(e);
    }
    return new KernelCounter(object);
  }

  /** The number of entries `map` holds now, by the kernel's count, or why it cannot be told. */
  count(map: BpfMap): KernelCount {
    if (isArray(map.info.type)) return { count: map.info.maxEntries };
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
      return { count };
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

/**
 * The number of entries `map` holds by the kernel's count, or why it cannot be told (the
 * counting object is not built, or the kernel lacks the kfunc). Only exact while nothing
 * writes the map.
 *
 * @example
 * ```ts
 * import { BpfMap, readKernelCount } from "../../mod.ts";
 * using map = BpfMap.fromPin("/sys/fs/bpf/test_map");
 * const counted = readKernelCount(map);
 * console.log(counted.count ?? `no count: ${counted.unavailable}`);
 * ```
 */
export function readKernelCount(map: BpfMap): KernelCount {
  if (isArray(map.info.type)) return { count: map.info.maxEntries };
  const counter = KernelCounter.open();
  if (typeof counter === "string") return { unavailable: counter };
  using _ = counter;
  return counter.count(map);
}

/** `readKernelCount(map).count`: the count, or `undefined` when it cannot be told. */
export function kernelEntryCount(map: BpfMap): number | undefined {
  return readKernelCount(map).count;
}
