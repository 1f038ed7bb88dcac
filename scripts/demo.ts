/**
 * The experiment in one command: load the study's object at `--entries` entries, fill it,
 * dump it per entry, in batches and with the study's flawed loop, and print the comparison.
 *
 * @module
 */

import { dumpMap, type DumpMethodChoice, type DumpResult } from "../ffi/dump/dump.ts";
import { MapSnapshot } from "../ffi/dump/snapshot.ts";
import { fillMap } from "../ffi/map/fill.ts";
import { readKernelCount } from "../ffi/dump/count.ts";
import { verifiedCell } from "./_dump.ts";
import { BpfObject, builtObjectPath } from "../ffi/map/object.ts";
import { fdMemlock } from "../ffi/sys/system.ts";
import { backendFlag, intFlag, paint, parseFlags, runMain, RuntimeError } from "./_cli.ts";
import { bytes, printTable, progressBar } from "./_report.ts";

const USAGE = `usage: demo.ts [--entries N] [--chunk N] [--backend syscall|libbpf]
  Loads build/test_map.bpf.o with N entries (default 1,048,576), fills it, and dumps it per
  entry, in batches of --chunk (default 4096), in parallel batches, through bpf_iter, with
  the in-kernel snapshot and the hybrid (snapshot + batch on the other CPUs), with the
  method auto picks (it says why) and with the study's loop, side by side.`;

await runMain(USAGE, async () => {
  const flags = parseFlags({
    entries: { type: "string" },
    chunk: { type: "string" },
    backend: { type: "string" },
  });
  const entries = intFlag(flags.entries, "entries", 1 << 20, {
    max: 0xffff_ffff,
  });
  const chunk = intFlag(flags.chunk, "chunk", 4096, { max: 0xffff_ffff });
  const backend = backendFlag(flags.backend);

  using object = BpfObject.open(builtObjectPath("test_map.bpf.o"));
  object.setMaxEntries("test_map", entries);
  object.load();
  using map = object.map("test_map", { backend });
  console.log(
    `map id ${map.info.id}: filling ${entries} entries (key i -> 0xdeadbeef)`,
  );
  const bar = progressBar(entries, "fill");
  const fill = await fillMap(map, {
    entries,
    onProgress: (done) => bar.update(done),
  });
  bar.stop();
  const memlock = fdMemlock(map.fd);
  console.log(
    `filled in ${fill.seconds.toFixed(3)} s; the map holds ${
      memlock === undefined ? "?" : bytes(memlock)
    } of kernel memory`,
  );

  const expected = readKernelCount(map);
  const results: DumpResult[] = [];
  const methods: DumpMethodChoice[] = ["normal", "batch", "parallel", "iter"];
  // The snapshot needs root (or CAP_BPF and CAP_PERFMON) and Linux 5.14+: say so when it cannot run.
  const noSnapshot = MapSnapshot.unavailable(map);
  if (noSnapshot === null) methods.push("snapshot", "hybrid");
  methods.push("auto", "seed-compat");
  for (const method of methods) {
    console.error(`dumping: ${method}`);
    results.push(await dumpMap(map, { method, chunk, expected }));
  }
  const normal = results[0].seconds;
  printTable(
    [
      "method",
      "entries",
      "distinct",
      "verified",
      "seconds",
      "syscalls",
      "batches",
      "time vs normal",
    ],
    results.map((r, i) => [
      methods[i] === "auto" ? `auto: ${r.method}` : r.method,
      r.entries,
      r.distinct,
      verifiedCell(r),
      r.seconds.toFixed(3),
      r.syscalls,
      r.batches,
      `${(r.seconds / normal).toFixed(3)}x`,
    ]),
  );
  const [perEntry, batch] = results;
  const seed = results[results.length - 1];
  console.log(
    `batch is ${(perEntry.seconds / batch.seconds).toFixed(1)}x faster than per-entry`,
  );
  const fastest = results.slice(0, -1).reduce((a, b) => b.seconds < a.seconds ? b : a);
  console.log(
    `fastest: ${fastest.method}, ${(batch.seconds / fastest.seconds).toFixed(1)}x batch`,
  );
  const auto = results[methods.indexOf("auto")];
  console.log(`auto chose ${auto.method}: ${auto.plan?.reason}`);
  if (noSnapshot !== null) console.log(paint("yellow", `no snapshot: ${noSnapshot}`));
  console.log(
    `the study's loop reported ${seed.entries} entries but saw only ${seed.distinct} distinct keys: its cursor never moved`,
  );
  if (expected.unavailable !== undefined) {
    console.log(paint("yellow", `kernel count unavailable: ${expected.unavailable}`));
  }
  const unverified = results.find((r) => r.method !== "seed-compat" && r.problem !== null);
  if (unverified) {
    throw new RuntimeError(`the ${unverified.method} dump was not verified: ${unverified.problem}`);
  }
});
