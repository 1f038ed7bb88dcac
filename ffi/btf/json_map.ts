/**
 * `JsonMap`: a map read and written by JSON keys and values, through its BTF when it has one
 * (`json_input.ts` says which shapes are taken). What `map lookup`, `update` and `delete`
 * take as typed input, and what a program uses to do the same.
 *
 * @module
 */

import type { BpfMap } from "../map/map.ts";
import { UpdateFlag } from "../sys/constants.ts";
import { BpfArgumentError } from "../sys/errors.ts";
import { roundUp8 } from "../sys/buffers.ts";
import { type BtfValue, compileDecoder } from "./decode.ts";
import { BtfValueError } from "./encode.ts";
import { encodeJson, encodeRawJson, parseJsonExact } from "./json_input.ts";
import { loadMapBtf } from "./kernel.ts";
import type { BtfType } from "./types.ts";

/** A key or value that does not fit: the message names where, `value.stats[2].bytes: ...`. */
export class JsonValueError extends BpfArgumentError {
  override name = "JsonValueError";

  /** The error for `cause` in the `part` ("key" or "value"). */
  constructor(readonly part: "key" | "value", override readonly cause: BtfValueError) {
    const path = cause.path === "" || cause.path.startsWith("[") ? cause.path : `.${cause.path}`;
    super(`${part}${path}: ${cause.detail}`);
  }
}

/** `BPF_ANY`, `BPF_NOEXIST` or `BPF_EXIST`, by name. */
export type JsonUpdateFlag = "any" | "noexist" | "exist";

const FLAGS: Record<JsonUpdateFlag, UpdateFlag> = {
  any: UpdateFlag.ANY,
  noexist: UpdateFlag.NOEXIST,
  exist: UpdateFlag.EXIST,
};

/**
 * A map whose keys and values are JSON values: parsed (`parseJsonExact`, for text) and
 * encoded through the map's BTF key and value types, or as bytes and integers when the map
 * has no BTF. Per-CPU maps take one value for every CPU, as bpftool does, and give each
 * CPU's value back.
 *
 * @example
 * ```ts
 * import { BpfMap, JsonMap } from "../../mod.ts";
 * using map = BpfMap.create({ type: "hash", keySize: 4, valueSize: 8, maxEntries: 16 });
 * const json = JsonMap.of(map);
 * json.update(7, "12345678901234567890");
 * console.log(json.lookup(7)); // [ 210, 10, 31, 235, 140, 169, 84, 171 ] (no BTF: the bytes)
 * json.delete("[7,0,0,0]");
 * ```
 */
export class JsonMap {
  /** The map. */
  readonly map: BpfMap;
  /** The BTF type of the keys, or `undefined` (no BTF, or none for keys). */
  readonly keyType: BtfType | undefined;
  /** The BTF type of the values, or `undefined` without BTF. */
  readonly valueType: BtfType | undefined;

  private constructor(map: BpfMap, keyType?: BtfType, valueType?: BtfType) {
    this.map = map;
    this.keyType = keyType;
    this.valueType = valueType;
  }

  /** The JSON view of `map`, typed by its BTF if it has some. */
  static of(map: BpfMap): JsonMap {
    const btf = loadMapBtf(map);
    if (!btf) return new JsonMap(map);
    return new JsonMap(
      map,
      btf.keyType.kind === "void" ? undefined : btf.keyType,
      btf.valueType,
    );
  }

  /** The key's bytes for `json` (a parsed value, or JSON text). */
  keyBytes(json: unknown): Uint8Array {
    const bytes = new Uint8Array(this.map.keySize);
    this.#encode("key", this.keyType, json, bytes);
    return bytes;
  }

  /**
   * The value's bytes for `json`, as the kernel takes them: one value, copied to every CPU's
   * slot for a per-CPU map.
   */
  valueBytes(json: unknown): Uint8Array {
    const one = new Uint8Array(this.map.valueSize);
    this.#encode("value", this.valueType, json, one);
    if (!this.map.perCpu) return one;
    const stride = roundUp8(this.map.valueSize);
    const all = new Uint8Array(this.map.valueBytes);
    for (let cpu = 0; cpu < this.map.cpus; cpu++) all.set(one, cpu * stride);
    return all;
  }

  #encode(part: "key" | "value", type: BtfType | undefined, json: unknown, into: Uint8Array) {
    const value = typeof json === "string" && /^\s*[[{"]/.test(json) ? parseJsonExact(json) : json;
    try {
      if (type) encodeJson(type, value, into);
      else encodeRawJson(value, into);
    } catch (e) {
      if (e instanceof BtfValueError) throw new JsonValueError(part, e);
      throw e;
    }
  }

  /**
   * The value of key `json`, decoded through BTF (an array of them, one per CPU, for a
   * per-CPU map), or its bytes without BTF; `undefined` when the key is absent.
   */
  lookup(json: unknown): BtfValue | BtfValue[] | undefined {
    const value = this.map.lookup(this.keyBytes(json));
    if (!value) return undefined;
    const slots = this.map.perCpu ? this.map.cpuValues(value) : [value];
    const decoded = slots.map((slot) => {
      if (!this.valueType) return [...slot.subarray(0, this.map.valueSize)];
      const view = new DataView(slot.buffer, slot.byteOffset, slot.byteLength);
      return compileDecoder(this.valueType)(view, 0);
    });
    return this.map.perCpu ? decoded : decoded[0];
  }

  /** Writes `value` at `key` (both JSON), with `flag` (default `any`). */
  update(key: unknown, value: unknown, flag: JsonUpdateFlag = "any"): void {
    this.map.update(this.keyBytes(key), this.valueBytes(value), FLAGS[flag]);
  }

  /** Deletes key `json`; false when it was absent. */
  delete(json: unknown): boolean {
    return this.map.delete(this.keyBytes(json));
  }
}
