/**
 * The command line shared by `normal.ts` and `batch.ts`: open the map, dump it `--runs`
 * times by one method, verify, and print the study's report, a `multitime`-like table, or
 * JSON lines.
 *
 * @module
 */

import {
  DUMP_METHODS,
  dumpMap,
  type DumpMethod,
  type DumpMethodChoice,
  type DumpResult,
  methodBackend,
  verdict,
} from "../ffi/dump/dump.ts";
import { MapSnapshot } from "../ffi/dump/snapshot.ts";
import { MapCounter } from "../ffi/dump/count.ts";
import { requireMethod } from "../ffi/dump/methods.ts";
import {
  backendFlag,
  expectSizes,
  intFlag,
  openMap,
  paint,
  parseFlags,
  RuntimeError,
  summary,
  UsageError,
} from "./_cli.ts";
import { printMemory, printTable } from "./_report.ts";

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
  method: { type: "string" },
  "kernel-budget": { type: "string" },
  steady: { type: "boolean" },
} as const;

/** The methods `batch.ts --method` takes: those built on LOOKUP_BATCH or the snapshot, and `auto`. */
export const BATCH_SCRIPT_METHODS = ["batch", "parallel", "snapshot", "hybrid", "auto"] as const;

/** `--method`, checked: one of `BATCH_SCRIPT_METHODS`. */
function methodFlag(value: string | undefined): DumpMethodChoice | undefined {
  if (value === undefined) return undefined;
  if ((BATCH_SCRIPT_METHODS as readonly string[]).includes(value)) {
    return value as DumpMethodChoice;
  }
  const elsewhere = (DUMP_METHODS as readonly string[]).includes(value)
    ? ` (${value} has a script or flag of its own)`
    : "";
  throw new UsageError(
    `unknown --method "${value}"${elsewhere}: choose from ${BATCH_SCRIPT_METHODS.join(", ")}`,
  );
}

/** `--parallel` may stand without a number, meaning one range per CPU. */
function withParallelDefault(args: string[]): string[] {
  const at = args.indexOf("--parallel");
  if (at < 0 || (at + 1 < args.length && !args[at + 1].startsWith("-"))) return args;
  return [...args.slice(0, at + 1), String(navigator.hardwareConcurrency), ...args.slice(at + 1)];
}

function optionalIntFlag(value: string | undefined, flag: string): number | undefined {
  return value === undefined ? undefined : intFlag(value, flag, 0);
}

/** What distinguishes one dump script from another. */
export interface DumpScript {
  /** `normal`, `batch` (the default of `--method`) or `iter`. */
  method: Extract<DumpMethod, "normal" | "batch" | "iter">;
  /** The words the study printed around the walk. */
  verb: string;
}

/** Runs a dump script on `Deno.args`. */
export async function dumpScript(script: DumpScript): Promise<void> {
  const flags = parseFlags(DUMP_FLAGS, withParallelDefault(Deno.args));
  const batch = script.method === "batch";
  if (
    !batch && (flags.chunk !== undefined || flags["seed-compat"] || flags.parallel !== undefined ||
      flags.method !== undefined || flags["kernel-budget"] !== undefined)
  ) {
    throw new UsageError(
      "--chunk, --parallel, --method, --kernel-budget and --seed-compat belong to batch.ts",
    );
  }
  const chosen = methodFlag(flags.method);
  if (flags.steady && chosen !== "auto") {
    throw new UsageError("--steady narrows --method auto: give --method auto");
  }
  if (flags["seed-compat"] && (flags.parallel !== undefined || chosen !== undefined)) {
    throw new UsageError("--seed-compat excludes --parallel and --method");
  }
  if (flags.parallel !== undefined && chosen !== undefined && chosen !== "parallel") {
    throw new UsageError(`--parallel and --method ${chosen} exclude each other`);
  }
  const ranges = flags.parallel === undefined
    ? undefined
    : intFlag(flags.parallel, "parallel", 1, { max: 1 << 20 });
  const method: DumpMethodChoice = flags["seed-compat"]
    ? "seed-compat"
    : ranges !== undefined
    ? "parallel"
    : chosen ?? script.method;
  const kernelTimeBudgetMs = flags["kernel-budget"] === undefined
    ? undefined
    : intFlag(flags["kernel-budget"], "kernel-budget", 1000, {
      max: 20_000,
      maxReason: " (the kernel warns of a soft lockup at 20 s)",
    });
  const chunk = intFlag(flags.chunk, "chunk", 4096, {
    max: KERNEL_CHUNK_LIMIT,
    maxReason: " (the kernel's count is a __u32)",
  });
  const runs = intFlag(flags.runs, "runs", 1, { max: 1000 });
  // The map's own sizes are used; a size given on the command line is checked against them.
  const keySize = optionalIntFlag(flags["key-size"], "key-size");
  const valueSize = optionalIntFlag(flags["value-size"], "value-size");
  const backend = backendFlag(flags.backend);
  const json = flags.json === true;
  const say = json ? () => {} : console.log;

  using map = openMap(flags, backend);
  expectSizes(map, { keySize, valueSize });
  // A method the kernel refuses is refused here, in one line, before anything is loaded.
  if (method !== "auto") {
    requireMethod(
      method,
      map.info.type,
      (instead) => batch ? `--method ${instead}` : `deno task ${instead}`,
    );
  }
  // The count, read before and after each walk, by a source that is not the method's own
  // walk: loaded once for every run (auto: chosen per run, once the method is).
  using counter = method === "auto" ? undefined : MapCounter.open(map, { method });
  // The snapshot is loaded once for every run (setup, not timed), and refused in one line.
  const snapshot = method === "snapshot" || method === "hybrid"
    ? MapSnapshot.open(map, { kernelTimeBudgetMs })
    : undefined;
  using _snapshot = snapshot;
  say(
    `get from id: ${map.info.id} (${map.typeName}, ${map.info.maxEntries} max entries${
      method === "auto" ? "" : `, ${methodBackend(method, map)}`
    })`,
  );
  const results: DumpResult[] = [];
  for (let run = 0; run < runs; run++) {
    say(`Start ${script.verb} bpf map`);
    const result = await dumpMap(map, {
      method,
      chunk,
      ranges,
      snapshot,
      kernelTimeBudgetMs,
      steady: flags.steady,
      counter,
    });
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
    if (result.plan) say(`Method auto: ${result.plan.method}: ${result.plan.reason}`);
    say(`Finish ${script.verb} bpf map`);
    say(`Count ${result.entries} entries`);
    if (result.method !== "normal") {
      say(`${result.method === "iter" ? "Read" : "Batch"} Count is ${result.batches}`);
    }
    const kernel = result.kernelWalk;
    if (kernel) {
      const split = kernel.split
        ? `, batch side from ${kernel.split.at} of ${kernel.split.of} ${
          kernel.split.batchSideKept ? "" : "(dropped: the snapshot walked the whole map)"
        }`
        : "";
      say(
        `Snapshot ${kernel.snapshotEntries} entries in one ${
          kernel.longestCallMs.toFixed(1)
        } ms kernel call (stopped: ${kernel.snapshot.stoppedBy}), LOOKUP_BATCH ${kernel.batchEntries}${split}`,
      );
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
  // A dump whose count could not be checked is not a failure: its verdict says what held.
  const failed = results.find((r) => r.problem !== null);
  if (failed && method !== "seed-compat") {
    throw new RuntimeError(`dump not verified: ${failed.problem}`);
  }
}

/**
 * A table cell for a dump's verdict: `yes` (every key once, the kernel's count matched),
 * `keys only` (every key once, no kernel count to check against) or `NO`.
 */
export function verifiedCell(result: DumpResult): string {
  if (result.problem !== null) return paint("red", "NO");
  return result.verified ? paint("green", "yes") : paint("yellow", "keys only");
}

function report(result: DumpResult): void {
  if (result.method === "seed-compat" && result.problem !== null) {
    const against = result.expected === null ? "" : ` (kernel count ${result.expected})`;
    console.log(paint(
      "yellow",
      `Seed-compat: ${result.entries} entries reported but only ${result.distinct} distinct keys${against}: the cursor was never advanced`,
    ));
  } else if (result.problem !== null) {
    console.error(paint("red", verdict(result)));
  } else {
    console.log(paint(result.verified ? "green" : "yellow", verdict(result)));
  }
}
