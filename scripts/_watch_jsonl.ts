/**
 * `map watch --jsonl`: after each read but the first (the baseline), one JSON line per key
 * whose value bytes changed, per key that appeared and per key that went. A line holds:
 *
 * - `t`: when the read started, in seconds since the epoch (milliseconds as decimals);
 * - `key` and `value` (`values`, one per CPU, for per-CPU maps), typed as `dump --jsonl`
 *   prints them (`JsonlDump`): through the map's BTF, 64-bit integers as strings; without
 *   BTF, keys and values of 1, 2 and 4 bytes as unsigned integers, of 8 bytes as strings of
 *   one, others as hex strings (`"0x0a0b"`);
 * - `delta` and `rate`, for maps whose values have numeric fields (see `watchFields`): the
 *   change since the previous read (exact; a string for 8-byte fields, as their values) and
 *   that change per second (a number). Summed over CPUs, or an array of one per CPU with
 *   `--cpus`. For a value that is an integer, a number or string; for a struct, an object
 *   by member path (`{"packets":"10","stats.bytes":"1500"}`);
 * - `"new":true` for a key the previous read did not have (no `delta`, no `rate`), and
 *   `"gone":true` for a key that went (its `value` as the previous read saw it).
 *
 * For example `{"t":1765000000.123,"key":1,"value":"120","delta":"20","rate":20.013}`.
 *
 * @module
 */

import type { ByteSink, ByteWriter } from "../ffi/format/byte_writer.ts";
import { ByteWriter as Writer } from "../ffi/format/byte_writer.ts";
import { JsonlDump } from "../ffi/format/jsonl.ts";
import type { DumpShape } from "../ffi/format/bpftool_dump.ts";
import { EntryState, type WatchSnapshot } from "../ffi/dump/watch.ts";

/**
 * Forwards what a writer flushes to `out`, less the first `skip` bytes: the `{` a
 * `JsonlDump` line starts with, whose members are spliced into a watch line.
 */
class Splice implements ByteSink {
  skip = 0;
  constructor(readonly out: ByteWriter) {}

  writeSync(p: Uint8Array): number {
    const from = Math.min(this.skip, p.length);
    this.skip -= from;
    this.out.reserve(p.length);
    this.out.bytes(p.subarray(from));
    return p.length;
  }
}

/**
 * Writes the lines of each read of a `WatchSnapshot` to `out` (see the module documentation).
 *
 * @example
 * ```ts
 * import { BpfMap, ByteWriter, watchFields, WatchSnapshot } from "../mod.ts";
 * import { WatchJsonl } from "./_watch_jsonl.ts";
 * using map = BpfMap.create({ type: "hash", keySize: 4, valueSize: 8, maxEntries: 16 });
 * const snapshot = new WatchSnapshot(map, watchFields(null, map.valueSize));
 * const out = new ByteWriter(Deno.stdout);
 * const shape = { keySize: 4, valueSize: 8, perCpu: 0, btf: null };
 * const lines = new WatchJsonl(snapshot, shape, out, false);
 * snapshot.read(map);
 * map.update(Uint8Array.of(1, 0, 0, 0), new Uint8Array(8));
 * const at = Date.now();
 * snapshot.read(map);
 * lines.write(at);
 * out.flush(); // {"t":...,"key":1,"value":"0","new":true}
 * ```
 */
export class WatchJsonl {
  readonly #snapshot: WatchSnapshot;
  readonly #out: ByteWriter;
  readonly #splice: Splice;
  readonly #scratch: ByteWriter;
  readonly #dump: JsonlDump;
  readonly #cpus: boolean;
  readonly #quotedFields: string[];

  /** Lines of `snapshot`'s reads of a map of `shape`, to `out`; `cpus`: deltas per CPU. */
  constructor(snapshot: WatchSnapshot, shape: DumpShape, out: ByteWriter, cpus: boolean) {
    this.#snapshot = snapshot;
    this.#out = out;
    this.#splice = new Splice(out);
    this.#scratch = new Writer(this.#splice, 1 << 16);
    this.#dump = new JsonlDump(shape, this.#scratch);
    this.#cpus = cpus && shape.perCpu > 0;
    this.#quotedFields = snapshot.fields.map((f) => JSON.stringify(f.path));
  }

  /** The lines of the last read, which started at `unixMs`; returns how many. */
  write(unixMs: number): number {
    const s = this.#snapshot;
    if (s.seconds === 0) return 0;
    const t = (unixMs / 1000).toFixed(3);
    const { keySize, valueBytes } = s.shape;
    let lines = 0;
    for (let i = 0, n = s.count; i < n; i++) {
      const state = s.state(i);
      if (state === EntryState.same) continue;
      this.#begin(t, s.keys, i * keySize, s.values, i * valueBytes);
      if (state === EntryState.added) this.#out.text(',"new":true}\n');
      else this.#changes(i);
      lines++;
    }
    for (const j of s.gone()) {
      this.#begin(t, s.previousKeys, j * keySize, s.previousValues, j * valueBytes);
      this.#out.text(',"gone":true}\n');
      lines++;
    }
    return lines;
  }

  /** `{"t":T,"key":...,"value":...` of one entry, without its closing brace. */
  #begin(t: string, keys: Uint8Array, ko: number, values: Uint8Array, vo: number): void {
    this.#out.text(`{"t":${t},`);
    this.#splice.skip = 1;
    this.#dump.entry(keys, ko, values, vo);
    this.#scratch.pos -= 2; // "}\n"
    this.#scratch.flush();
  }

  /** `,"delta":...,"rate":...}` of entry `i`, and the newline. */
  #changes(i: number): void {
    const s = this.#snapshot;
    const fields = s.fields;
    if (!fields.length) return this.#out.text("}\n");
    const seconds = s.seconds;
    const cpus = this.#cpus ? Array.from({ length: s.shape.cpus }, (_, c) => c) : [-1];
    const one = (f: number, cpu: number, rate: boolean) => {
      const delta = s.delta(i, f, cpu) ?? 0n;
      if (rate) return String(Math.round((Number(delta) / seconds) * 1000) / 1000);
      return fields[f].size === 8 ? `"${delta}"` : delta.toString();
    };
    const shaped = (cpu: number, rate: boolean) =>
      fields.length === 1 && fields[0].path === ""
        ? one(0, cpu, rate)
        : `{${fields.map((_, f) => `${this.#quotedFields[f]}:${one(f, cpu, rate)}`).join(",")}}`;
    const part = (rate: boolean) =>
      this.#cpus ? `[${cpus.map((cpu) => shaped(cpu, rate)).join(",")}]` : shaped(-1, rate);
    this.#out.text(`,"delta":${part(false)},"rate":${part(true)}}\n`);
  }
}
