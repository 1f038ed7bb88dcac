/**
 * Every dump method on every backend, on one map, in one run: rounds interleaved, every
 * dump verified, one table (and `--json`, `--svg`), optionally beside a C reference.
 *
 * @module
 */

import {
  type BpfMap,
  checkRanges,
  type DumpMethod,
  type MapTypeName,
  parseMapType,
  peakRss,
  readKernelCount,
} from "../mod.ts";
import { ensureBpffs, pathExists } from "../ffi/sys/system.ts";
import { methodUnavailable } from "../ffi/dump/methods.ts";
import { unlinkPath } from "../ffi/sys/libc.ts";
import { intFlag, openMap, paint, parseFlags, runMain, RuntimeError, UsageError } from "./_cli.ts";
import { bytes, printTable } from "./_report.ts";
import {
  createFilledMap,
  measure,
  type Measurement,
  spread,
  type Variant,
  VARIANTS,
} from "./_measure.ts";
import {
  builtReferences,
  commandReferences,
  type MissingReference,
  type Reference,
  type ReferenceResult,
  runReference,
  type WalkKind,
} from "./_peers.ts";
import { type Bar, barChart, renderChart } from "./_charts.ts";
import {
  bpftoolProcess,
  bpftoolVersion,
  DUMP_PROCESS,
  firstDifference,
  PROCESS_METHODS,
  type ProcessMethod,
  timeToFile,
  type WholeProcess,
} from "./_processes.ts";

const USAGE =
  `usage: compare.ts [--pin PATH | --id N | --entries N [--type TYPE]] [--rounds R] [--chunk N] [--parallel N]
                  [--methods M,...] [--kernel-budget MS] [--peers] [--peer COMMAND] [--bpftool PATH] [--json] [--svg FILE]
  Dumps one map by every method (per-entry, batch and parallel batch on both backends,
  bpf_iter, snapshot, hybrid, and auto, which says what it chose and why; --methods picks
  some of normal,batch,parallel,iter,snapshot,hybrid,auto and the references of their
  kinds), --rounds times each (default 5) interleaved, verifies every dump, and prints
  median and spread of seconds, ns per entry, distinct keys, syscalls, ratio to per-entry,
  heap growth and peak RSS. Without --pin or --id it makes a fresh map of --entries
  (default 1,048,576) of --type (default hash). --peers runs, in the same rounds on the
  same pinned map, the references make peers builds: C with libbpf (the C reference), the
  Go study with cilium/ebpf 0.9.1 (its batch loop as written, and fixed) and node_bpf;
  each row is then compared with the C reference's walk of its kind. --peer COMMAND runs
  another reference (COMMAND normal|batch PIN [CHUNK], printing a JSON line or
  count=N seconds=S). --kernel-budget bounds one snapshot run's kernel time (default 1000
  ms; the rest goes to LOOKUP_BATCH). --svg writes a bar chart.
  --methods dump,bpftool (not run by default) adds two whole processes in the same rounds on
  the same pinned map, stdout to a file: "deno task -q dump --pin P --json" and "bpftool -j
  map dump pinned P" (--bpftool PATH: another bpftool), their outputs compared byte for byte
  every round (a difference is an error); the dump row says its time against bpftool's.`;

/** One row of the table: one of our methods, or a reference. */
interface Row {
  label: string;
  /** `auto`: why it chose its method. */
  plan?: string | null;
  mechanism: string;
  kind: WalkKind;
  /** A reference (another program), not one of our methods. */
  reference: boolean;
  seconds: number[];
  /** Entries the last dump was handed, duplicates included. */
  entries: number | null;
  /** Distinct keys among them. */
  distinct: number | null;
  syscalls: number | null;
  heapGrowth: number | null;
  peakRss: number | null;
  /** What was wrong with a dump (for a reference meant to be inexact, what it got wrong). */
  problem: string | null;
  /** Why the dumps could not be checked against the kernel's count, if they could not. */
  unchecked: string | null;
  skipped: string | null;
  /** A whole process (`--methods dump,bpftool`), timed from spawn to exit. */
  wholeProcess: boolean;
  /** Whole processes: whether every round's output was the other's byte for byte (`null`: not compared). */
  identical: boolean | null;
}

/** The kind of walk each of our methods makes. */
const METHOD_KIND: Record<DumpMethod, WalkKind> = {
  normal: "per-entry",
  batch: "batch",
  "seed-compat": "batch",
  parallel: "parallel",
  iter: "iter",
  snapshot: "snapshot",
  hybrid: "hybrid",
};

/**
 * The variants `--methods` names (labels or methods, comma-separated), or all of them, and
 * the whole processes it names (`dump`, `bpftool`: none unless named).
 */
function selectMethods(
  list: string | undefined,
): { variants: readonly Variant[]; processes: ProcessMethod[] } {
  if (list === undefined) return { variants: VARIANTS, processes: [] };
  const names = list.split(",").map((name) => name.trim()).filter(Boolean);
  const chosen = VARIANTS.filter((v) => names.includes(v.method) || names.includes(v.label));
  const processes = PROCESS_METHODS.filter((method) => names.includes(method));
  const unknown = names.filter((name) =>
    !VARIANTS.some((v) => v.method === name || v.label === name) &&
    !(PROCESS_METHODS as readonly string[]).includes(name)
  );
  if (unknown.length > 0 || chosen.length + processes.length === 0) {
    throw new UsageError(
      `unknown --methods "${unknown.join(",") || list}": choose from ${
        [...new Set(VARIANTS.map((v) => v.method)), ...PROCESS_METHODS].join(", ")
      }`,
    );
  }
  return { variants: chosen, processes };
}

function checkWritable(path: string): void {
  try {
    Deno.writeTextFileSync(path, "", { append: true });
  } catch (e) {
    throw new RuntimeError(`cannot write --svg "${path}": ${(e as Error).message.split(":")[0]}`);
  }
}

/** The row of a reference, to be filled round by round. */
function referenceRow(reference: Reference): Row {
  return {
    label: reference.label,
    mechanism: reference.mechanism,
    kind: reference.kind,
    reference: true,
    seconds: [],
    entries: null,
    distinct: null,
    syscalls: null,
    heapGrowth: null,
    peakRss: null,
    problem: null,
    unchecked: null,
    skipped: null,
    wholeProcess: false,
    identical: null,
  };
}

/** The row of a whole process, to be filled round by round: bpftool's is a reference. */
function processRow(process: WholeProcess, mechanism: string): Row {
  return {
    ...referenceRow({ label: process.label, mechanism, kind: "batch" } as Reference),
    reference: process.method === "bpftool",
    wholeProcess: true,
  };
}

/** What a reference's dump got wrong, against the kernel's count, or `null`. */
function referenceProblem(result: ReferenceResult, expected: number | null): string | null {
  if (result.distinct !== null && result.distinct !== result.entries) {
    return `${result.entries} entries but ${result.distinct} distinct keys`;
  }
  const seen = result.distinct ?? result.entries;
  if (expected !== null && seen !== expected) {
    return `${seen} keys, but the kernel counts ${expected}`;
  }
  return null;
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
    peers: { type: "boolean" },
    peer: { type: "string" },
    json: { type: "boolean" },
    svg: { type: "string" },
    methods: { type: "string" },
    bpftool: { type: "string" },
    "kernel-budget": { type: "string" },
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
  const { variants, processes } = selectMethods(flags.methods);
  if (flags.bpftool !== undefined && !processes.includes("bpftool")) {
    throw new UsageError("--bpftool is for --methods bpftool: add it, or drop --bpftool");
  }
  const kernelTimeBudgetMs = intFlag(flags["kernel-budget"], "kernel-budget", 1000, {
    max: 20_000,
    maxReason: " (the kernel warns of a soft lockup at 20 s)",
  });
  const say = flags.json ? () => {} : (text: string) => console.error(text);

  const references: Reference[] = [];
  const missing: MissingReference[] = [];
  if (flags.peers) {
    const built = builtReferences();
    references.push(...built.references);
    missing.push(...built.missing);
  }
  if (flags.peer !== undefined) references.push(...commandReferences(flags.peer));
  if (flags.methods !== undefined) {
    // The references of the kinds chosen, and the batch walk every row is also compared with.
    const kinds = new Set<WalkKind>(["batch"]);
    for (const v of variants) if (v.method !== "auto") kinds.add(METHOD_KIND[v.method]);
    if (variants.some((v) => v.method === "auto")) kinds.add("parallel").add("hybrid");
    const kept = references.filter((r) => kinds.has(r.kind));
    references.splice(0, references.length, ...kept);
  }

  // The whole processes: the dump's row, then bpftool's (which says why, if it cannot run).
  const wholeProcesses: { process: WholeProcess; row: Row }[] = [];
  if (processes.includes("dump")) {
    wholeProcesses.push({
      process: DUMP_PROCESS,
      row: processRow(DUMP_PROCESS, "deno task dump, whole process"),
    });
  }
  if (processes.includes("bpftool")) {
    const process = bpftoolProcess(flags.bpftool);
    const found = await bpftoolVersion(flags.bpftool);
    const row = processRow(
      process,
      "version" in found ? `${found.version}, whole process` : "bpftool",
    );
    if ("missing" in found) row.skipped = found.missing;
    wholeProcesses.push({ process, row });
  }

  if (fresh) say(`filling a fresh ${typeName} map of ${entries} entries`);
  using map: BpfMap = fresh
    ? await createFilledMap(typeName as MapTypeName, entries)
    : openMap(flags, undefined);
  checkRanges(map, ranges);
  let pin = flags.pin;
  let madePin = false;
  const external = references.length + wholeProcesses.length > 0;
  if (external && pin === undefined) {
    pin = `/sys/fs/bpf/deno-bpf-batch-compare-${Deno.pid}`;
    ensureBpffs(pin);
    map.pin(pin);
    madePin = true;
  }
  const referenceRows = references.map(referenceRow);
  // A reference of a walk this kernel refuses is a row that says why.
  for (const [i, reference] of references.entries()) {
    const method = reference.kind === "per-entry" ? "normal" : reference.kind;
    const unavailable = methodUnavailable(method, map.info.type);
    if (unavailable !== null) referenceRows[i].skipped = unavailable;
  }
  const expected = external ? readKernelCount(map).count ?? null : null;
  // Each whole process's output, overwritten every round; kept when they differ.
  const outputs = wholeProcesses.length > 0 ? Deno.makeTempDirSync({ prefix: "compare_" }) : null;
  let keepOutputs = false;
  try {
    const measurements = await measure(map.info.id, variants, {
      rounds,
      chunk,
      ranges,
      kernelTimeBudgetMs,
      onStep: (variant, round) => say(`round ${round + 1}/${rounds}: ${variant.label}`),
      afterRound: async (round) => {
        for (const [i, reference] of references.entries()) {
          const row = referenceRows[i];
          if (row.skipped !== null || pin === undefined) continue;
          say(`round ${round + 1}/${rounds}: ${reference.label}`);
          try {
            const result = await runReference(reference, {
              pin,
              chunk,
              ranges,
              kernelBudgetMs: kernelTimeBudgetMs,
            });
            row.seconds.push(result.seconds);
            row.entries = result.entries;
            row.distinct = result.distinct;
            row.syscalls = result.syscalls;
            row.peakRss = result.peakRss;
            row.problem ??= referenceProblem(result, expected);
          } catch (e) {
            row.skipped = (e as Error).message;
          }
        }
        if (pin === undefined || outputs === null) return;
        const ran: string[] = [];
        for (const { process, row } of wholeProcesses) {
          if (row.skipped !== null) continue;
          say(`round ${round + 1}/${rounds}: ${process.label}`);
          try {
            row.seconds.push(
              await timeToFile(process.command(pin), `${outputs}/${process.method}`),
            );
            ran.push(process.method);
          } catch (e) {
            row.skipped = (e as Error).message;
          }
        }
        if (ran.length === 2) {
          const difference = await firstDifference(outputs, ran[0], ran[1]);
          if (difference !== null) {
            keepOutputs = true;
            throw new RuntimeError(
              `${wholeProcesses.map((p) => p.process.label).join(" and ")} differ on ${pin} ` +
                `(round ${round + 1}): ${difference} (outputs kept in ${outputs})`,
            );
          }
          for (const { row } of wholeProcesses) row.identical = true;
        }
      },
    });
    const rows: Row[] = [...measurements.map(measuredRow), ...referenceRows];
    for (const { label, reason } of missing) {
      rows.push({ ...referenceRow({ label } as Reference), skipped: reason });
    }
    for (const { process, row } of wholeProcesses) {
      if (row.skipped === null && row.identical === null) {
        const other = wholeProcesses.find((p) => p.process !== process);
        row.unchecked = other
          ? `not compared: ${other.process.label} ${other.row.skipped ? "skipped" : "did not run"}`
          : `not compared: add ${process.method === "dump" ? "bpftool" : "dump"} to --methods`;
      }
      rows.push(row);
    }
    await report(map, rows, expected, flags);
  } finally {
    if (madePin && pin !== undefined && pathExists(pin)) unlinkPath(pin);
    if (outputs !== null && !keepOutputs) Deno.removeSync(outputs, { recursive: true });
  }
});

function measuredRow(m: Measurement): Row {
  const method = m.last?.method ?? (m.variant.method === "auto" ? "batch" : m.variant.method);
  return {
    // `auto` says what it chose.
    label: m.variant.method === "auto" && m.last ? `auto: ${m.last.method}` : m.variant.label,
    plan: m.last?.plan?.reason ?? null,
    mechanism: m.last?.backend ?? m.variant.backend,
    kind: METHOD_KIND[method],
    reference: false,
    seconds: m.seconds,
    entries: m.last?.entries ?? null,
    distinct: m.last?.distinct ?? null,
    syscalls: m.last?.syscalls ?? null,
    heapGrowth: m.heapGrowth,
    peakRss: m.peakRss,
    problem: m.problem,
    unchecked: m.last?.countUnavailable ?? null,
    skipped: m.skipped,
    wholeProcess: false,
    identical: null,
  };
}

function medianOf(r: Row | undefined): number | undefined {
  return r && r.seconds.length ? spread(r.seconds).median : undefined;
}

/**
 * The reference each row's time is compared with: the C reference's walk of the row's kind
 * (its batch walk where it has none of that kind), or with `--peer` alone, that command's.
 */
function baseReferences(
  rows: Row[],
): { name: string; of: (kind: WalkKind) => number | undefined; batch: number | undefined } {
  const measured = rows.filter((r) => r.reference && !r.wholeProcess && r.seconds.length);
  const c = measured.filter((r) => r.label.startsWith("C / "));
  const pool = c.length ? c : measured.filter((r) =>
    !r.label.startsWith("Go ") &&
    !r.label.startsWith("node_bpf ")
  );
  const name = c.length ? "C" : pool[0]?.label.split(" / ")[0] ?? "";
  const batch = medianOf(pool.find((r) => r.kind === "batch"));
  return {
    name,
    of: (kind) => medianOf(pool.find((r) => r.kind === kind)) ?? batch,
    batch,
  };
}

async function report(
  map: BpfMap,
  rows: Row[],
  kernelCount: number | null,
  flags: { json?: boolean; svg?: string },
): Promise<void> {
  const entries = rows.find((r) => !r.reference && r.distinct !== null)?.distinct ??
    kernelCount ?? 0;
  const base = medianOf(
    rows.find((r) => r.kind === "per-entry" && !r.reference && r.seconds.length),
  );
  const references = baseReferences(rows);
  // Whole processes are compared with bpftool's, and only with it: the other rows time walks.
  const bpftool = medianOf(rows.find((r) => r.wholeProcess && r.reference && r.seconds.length));
  const ratio = (r: Row, to: number | undefined) => {
    const median = medianOf(r);
    return median !== undefined && to ? median / to : null;
  };
  const walkRatio = (r: Row, to: number | undefined) => r.wholeProcess ? null : ratio(r, to);
  const processRatio = (r: Row) => r.wholeProcess ? ratio(r, bpftool) : null;

  if (flags.json) {
    for (const r of rows) {
      const s = r.seconds.length ? spread(r.seconds) : null;
      console.log(JSON.stringify({
        method: r.label,
        mechanism: r.mechanism,
        kind: r.wholeProcess ? "whole process" : r.kind,
        reference: r.reference,
        entries: r.entries,
        distinct: r.distinct,
        mapEntries: entries,
        rounds: r.seconds.length,
        median: s?.median ?? null,
        min: s?.min ?? null,
        max: s?.max ?? null,
        nsPerEntry: s && entries ? (s.median / entries) * 1e9 : null,
        syscalls: r.syscalls,
        ratioToPerEntry: walkRatio(r, base),
        ratioToReference: walkRatio(r, references.of(r.kind)),
        ratioToReferenceBatch: walkRatio(r, references.batch),
        comparedWith: (!r.wholeProcess && references.name) || null,
        wholeProcess: r.wholeProcess,
        ratioToBpftool: processRatio(r),
        identical: r.identical,
        plan: r.plan,
        heapGrowth: r.heapGrowth,
        peakRss: r.peakRss,
        verified: r.problem === null && r.unchecked === null && r.skipped === null,
        problem: r.problem,
        countUnavailable: r.unchecked,
        skipped: r.skipped,
      }));
    }
  } else {
    const rounds = Math.max(...rows.map((r) => r.seconds.length));
    console.log(
      `${map.subject}: ${map.typeName}, ${entries} entries, ${rounds} rounds each, process peak RSS ${
        bytes(peakRss() ?? 0)
      }`,
    );
    const head = [
      "method",
      "calls via",
      "median s",
      "min–max s",
      "ns/entry",
      "distinct keys",
      "syscalls",
      "vs per-entry",
    ];
    if (references.name) head.push(`vs ${references.name}`, `vs ${references.name} batch`);
    if (bpftool !== undefined) head.push("vs bpftool");
    head.push("heap growth", "peak RSS");
    printTable(
      head,
      rows.map((r) => {
        if (r.skipped) {
          return [
            r.label,
            paint("yellow", `${r.reference ? "skipped" : "unavailable"}: ${r.skipped}`),
          ];
        }
        const s = spread(r.seconds);
        const shown = (x: number | null) => x === null ? "-" : `${x.toFixed(3)}x`;
        const through = (to: number | undefined) => shown(walkRatio(r, to));
        const row = [
          r.problem
            ? paint(
              r.reference ? "yellow" : "red",
              `${r.label} (${r.reference ? "NOT EXACT" : "NOT VERIFIED"})`,
            )
            : r.unchecked
            ? paint("yellow", `${r.label} (${r.wholeProcess ? "not compared" : "keys only"})`)
            : r.label,
          r.mechanism,
          s.median.toFixed(3),
          `${s.min.toFixed(3)}–${s.max.toFixed(3)}`,
          entries ? ((s.median / entries) * 1e9).toFixed(1) : "-",
          r.distinct ?? "-",
          r.syscalls ?? "-",
          through(base),
        ];
        if (references.name) row.push(through(references.of(r.kind)), through(references.batch));
        if (bpftool !== undefined) row.push(shown(processRatio(r)));
        row.push(
          r.heapGrowth === null ? "-" : bytes(r.heapGrowth),
          r.peakRss === null ? "-" : bytes(r.peakRss),
        );
        return row;
      }),
    );
    for (const r of rows.filter((r) => r.reference && r.problem)) {
      console.log(paint("yellow", `${r.label}: ${r.problem}`));
    }
    for (const r of rows.filter((r) => r.plan)) console.log(`${r.label}: ${r.plan}`);
    const unchecked = rows.find((r) => r.unchecked && !r.wholeProcess);
    if (unchecked) {
      console.log(paint("yellow", `keys only: kernel count unavailable: ${unchecked.unchecked}`));
    }
    for (const r of rows.filter((r) => r.wholeProcess && r.unchecked)) {
      console.log(paint("yellow", `${r.label}: ${r.unchecked}`));
    }
    if (rows.some((r) => r.identical)) {
      console.log(
        "dump --json and bpftool -j map dump: whole processes, stdout to a file; " +
          "byte-identical every round",
      );
    }
  }
  if (flags.svg !== undefined) {
    const bars: Bar[] = rows.filter((r) => r.seconds.length).map((r) => {
      const s = spread(r.seconds);
      return { label: r.label, value: s.median, min: s.min, max: s.max, group: r.mechanism };
    });
    const chart = barChart({
      title: `Dumping a ${
        entries.toLocaleString("en")
      }-entry ${map.typeName} map: median seconds (min–max)`,
      unit: "s",
      bars,
    });
    Deno.writeTextFileSync(flags.svg, await renderChart(chart));
    if (!flags.json) console.log(`chart written to ${flags.svg}`);
  }
  const bad = rows.find((r) => r.problem && !r.reference);
  if (bad) throw new RuntimeError(`${bad.label}: dump not verified: ${bad.problem}`);
}
