/**
 * `bpftool map dump`, in Deno: the same selectors and the same bytes out (plain text,
 * `--json`, `--pretty`), or typed JSON lines (`--jsonl`), written as the map is walked.
 *
 * @module
 */

import { BpfMap, btfCodec, dumpMap, type DumpMethodChoice, loadMapBtf } from "../mod.ts";
import { isPerCpu, MapType } from "../ffi/constants.ts";
import { BpftoolDump, type BpftoolFormat, BufferedOutput } from "../ffi/format/bpftool_json.ts";
import { backendFlag, intFlag, parseFlags, runMain, RuntimeError, UsageError } from "./_cli.ts";

const USAGE =
  `usage: dump.ts (--id N | --pin PATH | --name NAME) [--json | --pretty | --jsonl] [--method auto|normal|batch|parallel|iter|snapshot|hybrid] [--chunk N] [--backend syscall|libbpf]
  Prints every entry of the map as "bpftool map dump" does: plain text by default, --json
  compact and --pretty indented (the same bytes as bpftool -j / -p), or --jsonl: one typed
  {"key", "value"} object per line (decoded through the map's BTF; 64-bit integers as strings).
  bpftool's formats keep its order (the kernel's bucket order): --method auto reads them with
  LOOKUP_BATCH (per entry for maps without it), on a Worker for large maps so that the walk
  and the printing overlap; parallel and hybrid, which interleave ranges, are refused there.
  --jsonl takes every method; auto picks the fastest.`;

const FLAGS = {
  id: { type: "string" },
  pin: { type: "string" },
  name: { type: "string" },
  json: { type: "boolean" },
  pretty: { type: "boolean" },
  jsonl: { type: "boolean" },
  method: { type: "string" },
  chunk: { type: "string" },
  backend: { type: "string" },
} as const;

const METHODS = ["auto", "normal", "batch", "parallel", "iter", "snapshot", "hybrid"] as const;
const ORDERED = ["normal", "batch", "iter", "snapshot"];
const BATCH_TYPES: number[] = Object.values(MapType);
/** Map types without keys to walk (`GET_NEXT_KEY` is refused). */
const KEYLESS: Record<number, string> = {
  22: "queue",
  23: "stack",
  27: "ringbuf",
  30: "bloom_filter",
  31: "user_ringbuf",
};

function replacer(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? value.toString() : value;
}

/** A key or value without BTF: an unsigned integer for 1, 2, 4 and 8 bytes, else hex. */
/**
 * A key or value without BTF, as JSON text: an unsigned integer (little-endian) for 1, 2 and
 * 4 bytes, a string of one for 8 (so any parser keeps it exact), a hex string otherwise.
 */
function rawJson(bytes: Uint8Array, offset: number, size: number): string {
  switch (size) {
    case 1:
      return String(bytes[offset]);
    case 2:
      return String(bytes[offset] | bytes[offset + 1] << 8);
    case 4:
      return String(
        (bytes[offset] | bytes[offset + 1] << 8 | bytes[offset + 2] << 16 |
          bytes[offset + 3] << 24) >>> 0,
      );
    case 8: {
      const view = new DataView(bytes.buffer, bytes.byteOffset + offset, 8);
      return `"${view.getBigUint64(0, true)}"`;
    }
  }
  let hex = '"0x';
  for (let i = 0; i < size; i++) hex += HEX_DIGITS[bytes[offset + i]];
  return hex + '"';
}

const HEX_DIGITS = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

function selectMaps(
  flags: { id?: string; pin?: string; name?: string },
  backend: ReturnType<typeof backendFlag>,
): BpfMap[] {
  const given = [flags.id, flags.pin, flags.name].filter((x) => x !== undefined).length;
  if (given !== 1) throw new UsageError("give exactly one of --id, --pin and --name");
  if (flags.id !== undefined) {
    return [BpfMap.fromId(intFlag(flags.id, "id", 0, { max: 0xffff_ffff }), { backend })];
  }
  if (flags.pin !== undefined) return [BpfMap.fromPin(flags.pin, { backend })];
  const maps: BpfMap[] = [];
  for (const id of BpfMap.ids({ backend })) {
    let map: BpfMap;
    try {
      map = BpfMap.fromId(id, { backend });
    } catch {
      continue; // gone meanwhile
    }
    if (map.info.name === flags.name) maps.push(map);
    else map.close();
  }
  if (maps.length === 0) throw new RuntimeError(`no map named "${flags.name}"`);
  return maps;
}

/** Maps from this size on are walked on a Worker (about 30 ms to start) while this thread prints. */
const OVERLAP_FROM_ENTRIES = 65_536;

/** Whether a bpftool-format dump walks on a Worker: a large map, and a CPU to spare. */
function overlapWalk(map: BpfMap): boolean {
  return map.info.maxEntries >= OVERLAP_FROM_ENTRIES && navigator.hardwareConcurrency > 1;
}

async function dumpOne(
  map: BpfMap,
  format: BpftoolFormat | "jsonl",
  method: DumpMethodChoice,
  chunk: number,
  out: BufferedOutput,
): Promise<void> {
  const type = map.info.type;
  if (KEYLESS[type]) {
    throw new RuntimeError(`${map.subject} is a ${KEYLESS[type]} map: it has no keys to walk`);
  }
  const ordered = format !== "jsonl";
  if (!BATCH_TYPES.includes(type) && method !== "auto" && method !== "normal") {
    throw new RuntimeError(
      `${map.subject} (${map.typeName}) has no LOOKUP_BATCH: only --method normal reads it`,
    );
  }
  const chosen: DumpMethodChoice = !BATCH_TYPES.includes(type)
    ? "normal"
    : ordered && method === "auto"
    ? (overlapWalk(map) ? "parallel" : "batch")
    : method;
  const btf = map.info.btfValueTypeId || map.info.btfVmlinuxValueTypeId ? loadMapBtf(map) : null;
  const keySize = map.keySize;
  const valueBytes = map.valueBytes;
  let visit: (keys: Uint8Array, values: Uint8Array, i: number) => void;
  let end = () => {};
  let batchDone = () => {};
  if (ordered) {
    const dump = new BpftoolDump(
      {
        keySize,
        valueSize: map.valueSize,
        perCpu: isPerCpu(type) ? map.cpus : 0,
        btf: btf &&
          {
            keyType: btf.keyType.kind === "void" ? undefined : btf.keyType,
            valueType: btf.valueType,
          },
      },
      format,
      out,
    );
    dump.begin();
    visit = (keys, values, i) => dump.entry(keys, i * keySize, values, i * valueBytes);
    end = () => dump.end();
    batchDone = () => dump.flush();
  } else {
    const key = btf && btf.keyType.kind !== "void" ? btfCodec(btf.keyType) : undefined;
    const value = btf ? btfCodec(btf.valueType) : undefined;
    const perCpu = map.perCpu;
    const stride = map.valueStride;
    const one = (values: Uint8Array, at: number): string =>
      value
        ? JSON.stringify(value.decode(values.subarray(at, at + map.valueSize)), replacer)
        : rawJson(values, at, map.valueSize);
    visit = (keys, values, i) => {
      const k = key
        ? JSON.stringify(key.decode(keys.subarray(i * keySize, (i + 1) * keySize)), replacer)
        : rawJson(keys, i * keySize, keySize);
      const at = i * valueBytes;
      if (perCpu) {
        const each = Array.from({ length: map.cpus }, (_, cpu) => one(values, at + cpu * stride));
        out.write(`{"key":${k},"values":[${each.join(",")}]}\n`);
      } else {
        out.write(`{"key":${k},"value":${one(values, at)}}\n`);
      }
    };
  }
  await dumpMap(map, {
    method: chosen,
    chunk,
    // One range keeps the kernel's order: the Worker walks while this thread prints.
    ranges: chosen === "parallel" && ordered ? 1 : undefined,
    // The dump is not checked against the kernel's count: no counting program to load.
    expected: { unavailable: "not counted by dump" },
    visit: (batch) => {
      for (let i = 0; i < batch.count; i++) visit(batch.keys, batch.values, i);
      batchDone();
    },
  });
  end();
}

async function main(): Promise<void> {
  const flags = parseFlags(FLAGS);
  const formats = (["json", "pretty", "jsonl"] as const).filter((f) => flags[f]);
  if (formats.length > 1) {
    throw new UsageError(`--${formats.join(" and --")} exclude each other`);
  }
  const format: BpftoolFormat | "jsonl" = formats[0] ?? "plain";
  const method = (flags.method ?? "auto") as DumpMethodChoice;
  if (!(METHODS as readonly string[]).includes(method)) {
    throw new UsageError(`unknown --method "${flags.method}": choose from ${METHODS.join(", ")}`);
  }
  if (format !== "jsonl" && method !== "auto" && !ORDERED.includes(method)) {
    throw new UsageError(
      `--method ${method} interleaves ranges, so bpftool's order is lost: give --jsonl, or one of ${
        ORDERED.join(", ")
      }`,
    );
  }
  const chunk = intFlag(flags.chunk, "chunk", 4096, { max: 0xffff_ffff });
  const backend = backendFlag(flags.backend);
  const maps = selectMaps(flags, backend);
  try {
    if (maps.length > 1 && format !== "jsonl") {
      throw new RuntimeError(
        `${maps.length} maps are named "${flags.name}": bpftool prints each map's header then, which dump does not; give --id or --jsonl`,
      );
    }
    const out = new BufferedOutput(Deno.stdout);
    try {
      for (const map of maps) await dumpOne(map, format, method, chunk, out);
      out.flush();
    } catch (e) {
      // A closed pipe (| head) ends the dump quietly.
      if (e instanceof Deno.errors.BrokenPipe) return;
      throw e;
    }
  } finally {
    for (const map of maps) map.close();
  }
}

await runMain(USAGE, main);
