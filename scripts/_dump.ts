/**
 * The command line shared by `normal.ts` and `batch.ts`: open the map, dump it `--runs`
 * times by one method, verify, and print the study's report, a `multitime`-like table, or
 * JSON lines.
 *
 * @module
 */

import { dumpMap, type DumpMethod, type DumpResult, methodBackend } from "../ffi/dump.ts";
import { kernelEntryCountInBackground } from "../ffi/count.ts";
import {
  backendFlag,
  expectSizes,
  intFlag,
  openMap,
  paint,
  parseFlags,
  printMemory,
  printTable,
  RuntimeError,
  summary,
  UsageError,
} from "./_cli.ts";

const KERNEL_CHUNK_LIMIT = 0xffff_ffff;

/** Flags every dump script takes. */
const DUMP_FLAGS = {
  id: { type: "string" },
  pin: { type: "string" },
  backend: { type: "string" },
  runs: { type: "string" },
  json: { type: "boolean" },
  mem: { type: "boolean" },
  "key-size": { type: "string" },
  "value-size": { type: "string" },
  chunk: { type: "string" },
  "seed-compat": { type: "boolean" },
  parallel: { type: "string" },
} as const;

/** `--parallel` may stand without a number, meaning one range per CPU. */
function withParallelDefault(args: string[]): string[] {
  const at = args.indexOf("--parallel");
  if (at < 0 || (at + 1 < args.length && !args[at + 1].startsWith("-"))) return args;
  return [...args.slice(0, at + 1), String(navigator.hardwareConcurrency), ...args.slice(at + 1)];
}

/** What distinguishes one dump script from another. */
export interface DumpScript {
  /** `normal`, `batch` or `iter`. */
  method: Extract<DumpMethod, "normal" | "batch" | "iter">;
  /** The words the study printed around the walk. */
  verb: string;
}

/** Runs a dump script on `Deno.args`. */
export async function dumpScript(script: DumpScript): Promise<void> {
  const flags = parseFlags(DUMP_FLAGS, withParallelDefault(Deno.args));
  const batch = script.method === "batch";
  if (
    !batch && (flags.chunk !== undefined || flags["seed-compat"] || flags.parallel !== undefined)
  ) {
    throw new UsageError("--chunk, --parallel and --seed-compat belong to batch.ts");
  }
  if (flags["seed-compat"] && flags.parallel !== undefined) {
    throw new UsageError("--seed-compat and --parallel exclude each other");
  }
  const ranges = flags.parallel === undefined
    ? undefined
    : intFlag(flags.parallel, "parallel", 1, { max: 1 << 20 });
  const method: DumpMethod = flags["seed-compat"]
    ? "seed-compat"
    : ranges !== undefined
    ? "parallel"
    : script.method;
  const chunk = intFlag(flags.chunk, "chunk", 4096, {
    max: KERNEL_CHUNK_LIMIT,
    maxReason: " (the kernel's count is a __u32)",
  });
  const runs = intFlag(flags.runs, "runs", 1, { max: 1000 });
  const keySize = intFlag(flags["key-size"], "key-size", 4);
  const valueSize = intFlag(flags["value-size"], "value-size", 4);
  const backend = backendFlag(flags.backend);
  const json = flags.json === true;
  const say = json ? () => {} : console.log;

  using map = openMap(flags, backend);
  expectSizes(map, keySize, valueSize);
  // Loaded on another thread while the first dump runs; awaited when it ends.
  const expected = kernelEntryCountInBackground(map);
  say(
    `get from id: ${map.info.id} (${map.typeName}, ${map.info.maxEntries} max entries, ${
      methodBackend(method, map)
    })`,
  );
  const results: DumpResult[] = [];
  for (let run = 0; run < runs; run++) {
    say(`Start ${script.verb} bpf map`);
    const result = await dumpMap(map, { method, chunk, expected, ranges });
    results.push(result);
    if (json) {
      console.log(JSON.stringify(result));
      continue;
    }
    if (flags.mem) {
      printMemory("init", result.memory.start);
      printMemory("last", result.memory.end);
      console.log(`peakRss = ${result.memory.peakRss}`);
      console.log(
        `cpu user = ${result.user.toFixed(3)} s, sys = ${result.sys.toFixed(3)} s`,
      );
      console.log("------------------------");
    }
    say(`Finish ${script.verb} bpf map`);
    say(`Count ${result.entries} entries`);
    if (method !== "normal") {
      say(`${method === "iter" ? "Read" : "Batch"} Count is ${result.batches}`);
    }
    say(
      `Elapsed ${result.seconds.toFixed(3)} s (${result.syscalls} syscalls${
        batch ? `, chunk ${result.chunk}` : ""
      })`,
    );
    report(result);
  }
  if (runs > 1 && !json) {
    const rows = (["real", "user", "sys"] as const).map((name) => {
      const s = summary(
        results.map((r) => name === "real" ? r.seconds : r[name]),
      );
      return [
        name,
        ...[s.mean, s.sd, s.min, s.median, s.max].map((x) => x.toFixed(3)),
      ];
    });
    console.log(`===> ${runs} runs`);
    printTable(["", "Mean", "Std.Dev.", "Min", "Median", "Max"], rows);
  }
  const failed = results.find((r) => !r.verified);
  if (failed && method !== "seed-compat") {
    throw new RuntimeError(`dump not verified: ${failed.problem}`);
  }
}

function report(result: DumpResult): void {
  const against = result.expected === null ? "" : ` (kernel count ${result.expected})`;
  if (result.verified) {
    console.log(
      paint(
        "green",
        `Verified: every key once, ${result.distinct} distinct${against}`,
      ),
    );
  } else if (result.method === "seed-compat") {
    console.log(paint(
      "yellow",
      `Seed-compat: ${result.entries} entries reported but only ${result.distinct} distinct keys${against}: the cursor was never advanced`,
    ));
  } else {
    console.error(paint("red", `NOT VERIFIED: ${result.problem}`));
  }
}
