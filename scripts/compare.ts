/**
 * Every dump method on every backend, on one map, in one run: rounds interleaved, every
 * dump verified, one table (and `--json`, `--svg`), optionally beside a C reference.
 *
 * @module
 */

import { type BpfMap, checkRanges, type MapTypeName, parseMapType, peakRss } from "../mod.ts";
import { ensureBpffs, pathExists } from "../ffi/system.ts";
import { unlinkPath } from "../ffi/libc.ts";
import {
  bytes,
  intFlag,
  openMap,
  paint,
  parseFlags,
  printTable,
  runMain,
  RuntimeError,
  UsageError,
} from "./_cli.ts";
import {
  createFilledMap,
  measure,
  type Measurement,
  peerCanRead,
  runPeer,
  spread,
  VARIANTS,
} from "./_measure.ts";
import { type Bar, barChart } from "./_svg.ts";

const USAGE =
  `usage: compare.ts [--pin PATH | --id N | --entries N [--type TYPE]] [--rounds R] [--chunk N] [--parallel N]
                  [--peer COMMAND] [--json] [--svg FILE]
  Dumps one map by every method (per-entry and batch on both backends, parallel batch,
  bpf_iter), --rounds times each (default 5) interleaved, verifies every dump, and prints
  median and spread of seconds, ns per entry, syscalls, ratio to per-entry, heap growth and
  peak RSS. Without --pin or --id it makes a fresh map of --entries (default 1,048,576) of
  --type (default hash). --peer runs a native reference (PEER normal|batch PIN [CHUNK]) in
  the same rounds, and ratios to its batch time are shown. --svg writes a bar chart.`;

interface Row {
  label: string;
  mechanism: string;
  seconds: number[];
  syscalls: number | null;
  heapGrowth: number | null;
  peakRss: number | null;
  problem: string | null;
  skipped: string | null;
}

function checkWritable(path: string): void {
  try {
    Deno.writeTextFileSync(path, "", { append: true });
  } catch (e) {
    throw new RuntimeError(`cannot write --svg "${path}": ${(e as Error).message.split(":")[0]}`);
  }
}

await runMain(USAGE, async () => {
  const flags = parseFlags({
    pin: { type: "string" },
    id: { type: "string" },
    entries: { type: "string" },
    type: { type: "string" },
    rounds: { type: "string" },
    chunk: { type: "string" },
    parallel: { type: "string" },
    peer: { type: "string" },
    json: { type: "boolean" },
    svg: { type: "string" },
  });
  const fresh = flags.pin === undefined && flags.id === undefined;
  if (!fresh && (flags.entries !== undefined || flags.type !== undefined)) {
    throw new UsageError("--entries and --type make a fresh map: drop them with --pin or --id");
  }
  const rounds = intFlag(flags.rounds, "rounds", 5, { max: 1000 });
  const chunk = intFlag(flags.chunk, "chunk", 4096, { max: 0xffff_ffff });
  const ranges = intFlag(flags.parallel, "parallel", navigator.hardwareConcurrency, {
    max: 1 << 20,
  });
  const entries = intFlag(flags.entries, "entries", 1 << 20, { max: 0xffff_ffff });
  const typeName = flags.type ?? "hash";
  if (parseMapType(typeName) === undefined) throw new UsageError(`unknown --type "${typeName}"`);
  if (flags.svg !== undefined) checkWritable(flags.svg);
  const say = flags.json ? () => {} : (text: string) => console.error(text);

  if (fresh) say(`filling a fresh ${typeName} map of ${entries} entries`);
  using map: BpfMap = fresh
    ? await createFilledMap(typeName as MapTypeName, entries)
    : openMap(flags, undefined);
  checkRanges(map, ranges);
  let pin = flags.pin;
  let madePin = false;
  if (flags.peer !== undefined) {
    if (!peerCanRead(map)) {
      throw new RuntimeError(`the reference reads u32 keys and values: ${map.subject} has others`);
    }
    if (pin === undefined) {
      pin = `/sys/fs/bpf/deno-bpf-batch-compare-${Deno.pid}`;
      ensureBpffs(pin);
      map.pin(pin);
      madePin = true;
    }
  }
  const peerSeconds = { normal: [] as number[], batch: [] as number[] };
  try {
    const measurements = await measure(map.info.id, VARIANTS, {
      rounds,
      chunk,
      ranges,
      onStep: (variant, round) => say(`round ${round + 1}/${rounds}: ${variant.label}`),
      afterRound: async (round) => {
        if (flags.peer === undefined || pin === undefined) return;
        for (const mode of ["normal", "batch"] as const) {
          say(`round ${round + 1}/${rounds}: C ${mode}`);
          peerSeconds[mode].push((await runPeer(flags.peer, mode, pin, chunk)).seconds);
        }
      },
    });
    report(map, measurements, peerSeconds, flags);
  } finally {
    if (madePin && pin !== undefined && pathExists(pin)) unlinkPath(pin);
  }
});

function report(
  map: BpfMap,
  measurements: Measurement[],
  peer: { normal: number[]; batch: number[] },
  flags: { json?: boolean; svg?: string },
): void {
  const rows: Row[] = measurements.map((m) => ({
    label: m.variant.label,
    mechanism: m.last?.backend ?? m.variant.backend,
    seconds: m.seconds,
    syscalls: m.last?.syscalls ?? null,
    heapGrowth: m.heapGrowth,
    peakRss: m.peakRss,
    problem: m.problem,
    skipped: m.skipped,
  }));
  for (const mode of ["normal", "batch"] as const) {
    if (peer[mode].length === 0) continue;
    rows.push({
      label: `C reference ${mode === "normal" ? "per-entry" : "batch"}`,
      mechanism: "libbpf (C)",
      seconds: peer[mode],
      syscalls: null,
      heapGrowth: null,
      peakRss: null,
      problem: null,
      skipped: null,
    });
  }
  const entries = measurements.find((m) => m.last)?.last?.distinct ?? 0;
  const perEntry = rows.find((r) => r.label.startsWith("per-entry") && r.seconds.length);
  const cBatch = rows.find((r) => r.label === "C reference batch");
  const medianOf = (r: Row | undefined) =>
    r && r.seconds.length ? spread(r.seconds).median : undefined;
  const base = medianOf(perEntry);
  const cBase = medianOf(cBatch);

  if (flags.json) {
    for (const r of rows) {
      const s = r.seconds.length ? spread(r.seconds) : null;
      console.log(JSON.stringify({
        method: r.label,
        mechanism: r.mechanism,
        entries,
        rounds: r.seconds.length,
        median: s?.median ?? null,
        min: s?.min ?? null,
        max: s?.max ?? null,
        nsPerEntry: s && entries ? (s.median / entries) * 1e9 : null,
        syscalls: r.syscalls,
        ratioToPerEntry: s && base ? s.median / base : null,
        ratioToCBatch: s && cBase ? s.median / cBase : null,
        heapGrowth: r.heapGrowth,
        peakRss: r.peakRss,
        verified: r.problem === null && r.skipped === null,
        problem: r.problem,
        skipped: r.skipped,
      }));
    }
  } else {
    console.log(
      `${map.subject}: ${map.typeName}, ${entries} entries, ${
        rows[0].seconds.length
      } rounds each, process peak RSS ${bytes(peakRss() ?? 0)}`,
    );
    const head = [
      "method",
      "calls via",
      "median s",
      "min–max s",
      "ns/entry",
      "syscalls",
      "vs per-entry",
    ];
    if (cBase) head.push("vs C batch");
    head.push("heap growth", "peak RSS");
    printTable(
      head,
      rows.map((r) => {
        if (r.skipped) return [r.label, paint("yellow", `skipped: ${r.skipped}`)];
        const s = spread(r.seconds);
        const row = [
          r.problem ? paint("red", `${r.label} (NOT VERIFIED)`) : r.label,
          r.mechanism,
          s.median.toFixed(3),
          `${s.min.toFixed(3)}–${s.max.toFixed(3)}`,
          entries ? ((s.median / entries) * 1e9).toFixed(1) : "-",
          r.syscalls ?? "-",
          base ? `${(s.median / base).toFixed(3)}x` : "-",
        ];
        if (cBase) row.push(`${(s.median / cBase).toFixed(3)}x`);
        row.push(
          r.heapGrowth === null ? "-" : bytes(r.heapGrowth),
          r.peakRss === null ? "-" : bytes(r.peakRss),
        );
        return row;
      }),
    );
  }
  if (flags.svg !== undefined) {
    const bars: Bar[] = rows.filter((r) => r.seconds.length).map((r) => {
      const s = spread(r.seconds);
      return { label: r.label, value: s.median, min: s.min, max: s.max, group: r.mechanism };
    });
    Deno.writeTextFileSync(
      flags.svg,
      barChart({
        title: `Dumping a ${
          entries.toLocaleString("en")
        }-entry ${map.typeName} map: median seconds (min–max)`,
        unit: "s",
        bars,
      }),
    );
    if (!flags.json) console.log(`chart written to ${flags.svg}`);
  }
  const bad = rows.find((r) => r.problem);
  if (bad) throw new RuntimeError(`${bad.label}: dump not verified: ${bad.problem}`);
}
