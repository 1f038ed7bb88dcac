/**
 * The experiment in one command: load the study's object at `--entries` entries, fill it,
 * dump it per entry, in batches and with the study's flawed loop, and print the comparison.
 *
 * @module
 */

import { DEMO_METHODS, dumpMap, type DumpResult } from "../ffi/dump/dump.ts";
import { methodUnavailable } from "../ffi/dump/methods.ts";
import { COUNT_SOURCES } from "../ffi/dump/count.ts";
import { fillMap } from "../ffi/map/fill.ts";
import { verifiedCell } from "./_dump.ts";
import { BpfObject, builtObjectPath } from "../ffi/map/object.ts";
import { backendFlag, intFlag, paint, parseFlags, runMain, RuntimeError } from "./_cli.ts";
import { bytes, memlockNote, printTable, progressBar } from "./_report.ts";
import { fdMemlock } from "../ffi/sys/system.ts";

const USAGE = `usage: demo.ts [--entries N] [--chunk N] [--backend syscall|libbpf] [--json]
  Loads build/test_map.bpf.o with N entries (default 1,048,576), fills it, and dumps it per
  entry, in batches of --chunk (default 4096), in parallel batches, through bpf_iter, with
  the in-kernel snapshot and the hybrid (snapshot + batch on the other CPUs), with the
  method auto picks (it says why) and with the study's loop, side by side. A method this
  kernel refuses gets a row that says so, and why. --json prints one JSON object per row
  (the dump's figures and verdict, or why the method is unavailable) instead of the table.`;

await runMain(USAGE, async () => {
  const flags = parseFlags({
    entries: { type: "string" },
    chunk: { type: "string" },
    backend: { type: "string" },
    json: { type: "boolean" },
  });
  const say = flags.json ? () => {} : console.log;
  const entries = intFlag(flags.entries, "entries", 1 << 20, {
    max: 0xffff_ffff,
  });
  const chunk = intFlag(flags.chunk, "chunk", 4096, { max: 0xffff_ffff });
  const backend = backendFlag(flags.backend);

  // The study's map alone: its XDP program is not needed to dump it.
  using object = BpfObject.open(builtObjectPath("test_map.bpf.o"), { programs: [] });
  object.setMaxEntries("test_map", entries);
  object.load();
  using map = object.map("test_map", { backend });
  say(`map id ${map.info.id}: filling ${entries} entries (key i -> 0xdeadbeef)`);
  const bar = progressBar(entries, "fill");
  const fill = await fillMap(map, {
    entries,
    onProgress: (done) => bar.update(done),
  });
  bar.stop();
  const memlock = fdMemlock(map.fd);
  say(
    `filled in ${fill.seconds.toFixed(3)} s; the map holds ${
      memlock === undefined ? "?" : bytes(memlock)
    } of kernel memory${memlockNote()}`,
  );

  // A method this kernel refuses is a row that says why; the others run.
  const rows: { label: string; result?: DumpResult; unavailable?: string }[] = [];
  for (const method of DEMO_METHODS) {
    const unavailable = method === "auto" ? null : methodUnavailable(method, map.info.type);
    if (unavailable !== null) {
      rows.push({ label: method, unavailable });
      continue;
    }
    console.error(`dumping: ${method}`);
    const result = await dumpMap(map, { method, chunk });
    rows.push({ label: method === "auto" ? `auto: ${result.method}` : method, result });
  }
  if (flags.json) {
    for (const { label, result, unavailable } of rows) {
      console.log(JSON.stringify(result ? { row: label, ...result } : { row: label, unavailable }));
    }
  }
  const ran = rows.filter((r) => r.result) as { label: string; result: DumpResult }[];
  const seconds = (label: string) => ran.find((r) => r.label === label)?.result.seconds;
  const normal = seconds("normal")!;
  if (!flags.json) {
    printTable(
      [
        "method",
        "entries",
        "distinct",
        "verified",
        "count",
        "seconds",
        "syscalls",
        "batches",
        "time vs normal",
      ],
      rows.map(({ label, result: r }) =>
        r
          ? [
            label,
            r.entries,
            r.distinct,
            verifiedCell(r),
            r.countSource ?? "-",
            r.seconds.toFixed(3),
            r.syscalls,
            r.batches,
            `${(r.seconds / normal).toFixed(3)}x`,
          ]
          : [label, "-", "-", paint("yellow", "unavailable"), "-", "-", "-", "-", "-"]
      ),
    );
  }
  for (const { label, unavailable } of rows) {
    if (unavailable) say(paint("yellow", `${label}: unavailable: ${unavailable}`));
  }
  const batch = seconds("batch");
  if (batch !== undefined) {
    say(`batch is ${(normal / batch).toFixed(1)}x faster than per-entry`);
  }
  const fastest = ran.filter((r) => r.label !== "seed-compat")
    .reduce((a, b) => b.result.seconds < a.result.seconds ? b : a);
  const reference = batch ?? normal;
  say(
    `fastest: ${fastest.label}, ${(reference / fastest.result.seconds).toFixed(1)}x ${
      batch === undefined ? "per-entry" : "batch"
    }`,
  );
  const auto = ran.find((r) => r.label.startsWith("auto"))!.result;
  say(`auto chose ${auto.method}: ${auto.plan?.reason}`);
  const sources = [...new Set(ran.map((r) => r.result.countSource).filter((s) => s !== null))];
  say(`counts checked against: ${sources.map((s) => COUNT_SOURCES[s!]).join(", ")}`);
  const seed = ran.find((r) => r.label === "seed-compat")?.result;
  if (seed) {
    say(
      `the study's loop reported ${seed.entries} entries but saw only ${seed.distinct} distinct keys: its cursor never moved`,
    );
  }
  const unverified = ran.find((r) => r.label !== "seed-compat" && r.result.problem !== null);
  if (unverified) {
    throw new RuntimeError(
      `the ${unverified.label} dump was not verified: ${unverified.result.problem}`,
    );
  }
});
