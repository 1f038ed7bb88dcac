/**
 * Typed views of a byte-keyed map: codecs for the common fixed-width integers, and
 * `TypedMap`, which encodes and decodes through them.
 *
 * @module
 */

import type { UpdateFlag } from "../sys/constants.ts";
import { BpfArgumentError } from "../sys/errors.ts";
import type { BatchView, BpfMap, WalkStats } from "./map.ts";

/** Encodes values of `T` into `size` bytes and back (little-endian, as the kernel stores them on x86_64 and arm64). */
export interface Codec<T> {
  /** Bytes of one encoded value. */
  readonly size: number;
  /** Writes `value` into `into` (at least `size` bytes). */
  encode(value: T, into: Uint8Array): void;
  /** Reads a value from `bytes` (at least `size` bytes). */
  decode(bytes: Uint8Array): T;
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Unsigned 32-bit integers (`__u32`). */
export const u32: Codec<number> = {
  size: 4,
  encode: (value, into) => view(into).setUint32(0, value, true),
  decode: (bytes) => view(bytes).getUint32(0, true),
};

/** Unsigned 64-bit integers (`__u64`). */
export const u64: Codec<bigint> = {
  size: 8,
  encode: (value, into) => view(into).setBigUint64(0, value, true),
  decode: (bytes) => view(bytes).getBigUint64(0, true),
};

/**
 * A map seen through codecs. Per-CPU maps decode to one value per CPU.
 *
 * @example
 * ```ts
 * import { BpfMap, u32, u64 } from "../../mod.ts";
 * using map = BpfMap.create({ type: "hash", keySize: 4, valueSize: 8, maxEntries: 8 });
 * const counters = map.typed(u32, u64);
 * counters.set(7, 1n);
 * for (const [key, value] of counters.entries()) console.log(key, value);
 * ```
 */
export class TypedMap<K, V> {
  readonly #map: BpfMap;
  readonly #key: Codec<K>;
  readonly #value: Codec<V>;
  readonly #keyBytes: Uint8Array;
  readonly #valueBytes: Uint8Array;

  constructor(map: BpfMap, key: Codec<K>, value: Codec<V>) {
    if (key.size !== map.keySize || value.size !== map.valueSize) {
      throw new BpfArgumentError(
        `Codecs of ${key.size}/${value.size} bytes for ${map.subject}: its keys and values are ${map.keySize}/${map.valueSize} bytes`,
      );
    }
    this.#map = map;
    this.#key = key;
    this.#value = value;
    this.#keyBytes = new Uint8Array(map.keySize);
    this.#valueBytes = new Uint8Array(map.valueBytes);
  }

  #encodeKey(key: K): Uint8Array {
    this.#key.encode(key, this.#keyBytes);
    return this.#keyBytes;
  }

  /** The value of `key` (the first CPU's for per-CPU maps), or `undefined`. */
  get(key: K): V | undefined {
    const bytes = this.#map.lookup(this.#encodeKey(key), this.#valueBytes);
    return bytes && this.#value.decode(bytes);
  }

  /** Every CPU's value of `key`, or `undefined` when absent. */
  getPerCpu(key: K): V[] | undefined {
    const bytes = this.#map.lookup(this.#encodeKey(key), this.#valueBytes);
    return bytes &&
      this.#map.cpuValues(bytes).map((slot) => this.#value.decode(slot));
  }

  /** Sets `key` to `value` (on every CPU for per-CPU maps). */
  set(key: K, value: V, flag?: UpdateFlag): void {
    for (const slot of this.#map.cpuValues(this.#valueBytes)) {
      this.#value.encode(value, slot);
    }
    this.#map.update(this.#encodeKey(key), this.#valueBytes, flag);
  }

  /** Deletes `key`; false when it was not there. */
  delete(key: K): boolean {
    return this.#map.delete(this.#encodeKey(key));
  }

  /** Decodes entry `i` of a batch. */
  #decode(batch: BatchView, i: number): [K, V] {
    const k = this.#map.keySize;
    const v = this.#map.valueBytes;
    return [
      this.#key.decode(batch.keys.subarray(i * k, (i + 1) * k)),
      this.#value.decode(batch.values.subarray(i * v, (i + 1) * v)),
    ];
  }

  /** Yields decoded `[key, value]` pairs (first CPU's value for per-CPU maps), in batches. */
  *entries(chunk?: number): Generator<[K, V]> {
    for (const batch of this.#map.batches({ chunk })) {
      for (let i = 0; i < batch.count; i++) yield this.#decode(batch, i);
    }
  }

  /** Visits decoded pairs; returns the walk's statistics. */
  forEach(visit: (key: K, value: V) => void, chunk?: number): WalkStats {
    return this.#map.forEachBatch((batch) => {
      for (let i = 0; i < batch.count; i++) visit(...this.#decode(batch, i));
    }, { chunk });
  }
}
