/**
 * The bpf_iter dump: an `iter/bpf_map_elem` program (`bpf/dump_iter.bpf.c`) attached to a
 * map writes each entry as a raw record (key bytes, then value bytes: every CPU's slot for
 * per-CPU maps) into a seq_file, which is read with `read()` in large buffers: one system
 * call per ~32 KiB of records instead of one per batch or two per entry.
 *
 * @module
 */

import { BpfArgumentError } from "../sys/errors.ts";
import { requireFacilities } from "../sys/features.ts";
import { ownedBytes } from "../sys/buffers.ts";
import type { BatchView, BpfMap, WalkStats } from "../map/map.ts";
import { BpfObject, builtObjectPath, type IterLink } from "../map/object.ts";

/** Bytes asked for per `read()`; the kernel returns at most one seq_file buffer (32 KiB) per call. */
const READ_SIZE = 64 * 1024;
/** The largest record the program writes (it must fit in the 32 KiB seq_file buffer). */
const MAX_RECORD = 32_767;

/**
 * Splits `count` records (key then value) into packed keys and packed values, as the batch
 * walks return them: 32-bit words at a time when the sizes allow, bytes otherwise.
 */
function unzipRecords(
  records: Uint8Array,
  count: number,
  keySize: number,
  valueBytes: number,
  keys: Uint8Array,
  values: Uint8Array,
): void {
  if ((keySize | valueBytes | records.byteOffset) % 4 === 0) {
    const from = new Uint32Array(records.buffer, records.byteOffset, records.byteLength / 4);
    const toKeys = new Uint32Array(keys.buffer, keys.byteOffset, keys.byteLength / 4);
    const toValues = new Uint32Array(values.buffer, values.byteOffset, values.byteLength / 4);
    unzip(from, count, keySize / 4, valueBytes / 4, toKeys, toValues);
  } else {
    unzip(records, count, keySize, valueBytes, keys, values);
  }
}

function unzip<T extends Uint8Array | Uint32Array>(
  from: T,
  count: number,
  keyUnits: number,
  valueUnits: number,
  keys: T,
  values: T,
): void {
  let at = 0;
  for (let i = 0; i < count; i++) {
    for (let u = 0; u < keyUnits; u++) keys[i * keyUnits + u] = from[at++];
    for (let u = 0; u < valueUnits; u++) values[i * valueUnits + u] = from[at++];
  }
}

/**
 * A map with the dump program attached: each `forEachBatch` is one fresh walk of the map.
 * Attaching loads the program (tens of milliseconds, mostly BTF); walks are cheap after.
 *
 * @example
 * ```ts
 * import { BpfMap, MapIterator } from "../../mod.ts";
 * using map = BpfMap.fromPin("/sys/fs/bpf/test_map");
 * using iterator = MapIterator.attach(map);
 * const stats = iterator.forEachBatch((batch) => console.log(batch.count));
 * ```
 */
export class MapIterator implements Disposable {
  readonly #map: BpfMap;
  readonly #object: BpfObject;
  readonly #link: IterLink;
  readonly #buffer = ownedBytes(READ_SIZE);

  private constructor(map: BpfMap, object: BpfObject, link: IterLink) {
    this.#map = map;
    this.#object = object;
    this.#link = link;
  }

  /**
   * Loads the dump program with `map`'s key and value sizes and attaches it to `map`;
   * refuses in one line, loading nothing, where the kernel refuses bpf_iter programs.
   */
  static attach(map: BpfMap, objectPath: string = builtObjectPath("dump_iter.bpf.o")): MapIterator {
    if (map.keySize + map.valueBytes > MAX_RECORD) {
      throw new BpfArgumentError(
        `Records of ${
          map.keySize + map.valueBytes
        } bytes for ${map.subject}: bpf_iter records are at most ${MAX_RECORD} bytes`,
      );
    }
    requireFacilities(
      ["kernel_btf", "iter_map_elem"],
      "the bpf_iter dump",
      "use the batch method instead (--method batch)",
    );
    const object = BpfObject.open(objectPath);
    try {
      const sizes = new Uint32Array([map.keySize, map.valueBytes]);
      object.setReadOnlyData(new Uint8Array(sizes.buffer));
      object.load();
      return new MapIterator(map, object, object.attachIter("dump_map", map));
    } catch (e) {
      object.close();
      throw e;
    }
  }

  /**
   * Walks the map once, handing `visit` the records of each `read()` as a batch (packed
   * keys and values, views reused by the next read). Allocates nothing per entry.
   */
  forEachBatch(visit: (batch: BatchView) => void): WalkStats {
    const { keySize, valueBytes } = this.#map;
    const record = keySize + valueBytes;
    let keys = ownedBytes(0);
    let values = ownedBytes(0);
    let entries = 0;
    let reads = 0;
    let batches = 0;
    this.#link.read(this.#buffer, (bytes) => {
      reads++;
      if (bytes.byteLength % record !== 0) {
        throw new Error(
          `A bpf_iter read of ${bytes.byteLength} bytes split a ${record}-byte record`,
        );
      }
      const count = bytes.byteLength / record;
      if (keys.byteLength < count * keySize) {
        keys = ownedBytes(count * keySize);
        values = ownedBytes(count * valueBytes);
      }
      unzipRecords(bytes, count, keySize, valueBytes, keys, values);
      entries += count;
      batches++;
      visit({
        keys: keys.subarray(0, count * keySize),
        values: values.subarray(0, count * valueBytes),
        count,
      });
    });
    return { entries, syscalls: reads + 1, batches, chunk: 0 };
  }

  /** Detaches and unloads the program. Safe to call twice. */
  close(): void {
    this.#link.close();
    this.#object.close();
  }

  /** Detaches and unloads the program (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}
