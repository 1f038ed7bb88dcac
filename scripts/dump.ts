/**
 * `bpftool map dump`, in Deno: the same selectors and the same bytes out (plain text,
 * `--json`, `--pretty`), or typed JSON lines (`--jsonl`), written as the map is walked.
 *
 * @module
 */

import { BpfMap, type DumpMethodChoice } from "../mod.ts";
import type { BpftoolFormat } from "../ffi/format/bpftool_dump.ts";
import { ByteWriter } from "../ffi/format/byte_writer.ts";
import { dumpOne, dumpSeveral } from "./_map_dump.ts";
import { backendFlag, intFlag, parseFlags, runMain, RuntimeError, UsageError } from "./_cli.ts";

const USAGE =
  `usage: dump.ts (--id N | --pin PATH | --name NAME) [--json | --pretty | --jsonl] [--method auto|normal|batch|parallel|iter|snapshot|hybrid] [--chunk N] [--backend syscall|libbpf]
  Prints every entry of the map as "bpftool map dump" does: plain text by default, --json
  compact and --pretty indented (the same bytes as bpftool -j / -p), or --jsonl: one typed
  {"key", "value"} object per line (decoded through the map's BTF; 64-bit integers as strings).
  Entries come in the kernel's bucket order, as bpftool's walk gives them: --method auto
  reads them with LOOKUP_BATCH (per entry for maps without it), on large maps with Workers
  walking ranges in order while this thread prints. The hybrid, whose two sides interleave,
  is refused for bpftool's formats; --jsonl takes every method.`;

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
/** The methods that hand entries over in bucket order (parallel: its ranges in order). */
const ORDERED = ["normal", "batch", "parallel", "iter", "snapshot"];
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
      `--method ${method} interleaves its two sides, so bpftool's order is lost: give --jsonl, or one of ${
        ORDERED.join(", ")
      }`,
    );
  }
  const chunk = intFlag(flags.chunk, "chunk", 4096, { max: 0xffff_ffff });
  const backend = backendFlag(flags.backend);
  const maps = selectMaps(flags, backend);
  try {
    const out = new ByteWriter(Deno.stdout);
    try {
      if (maps.length > 1 && format !== "jsonl") {
        await dumpSeveral(maps, format, method, chunk, out);
      } else for (const map of maps) await dumpOne(map, format, method, chunk, out);
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
