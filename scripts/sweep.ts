/**
 * Time per entry of every dump method across map sizes, chunk sizes, map types, parallel
 * range counts and fill ratios; writes a CSV and SVG charts (log axes) that show where
 * batching starts to pay, where the chunk size stops mattering, how the parallel dump
 * scales, and how sparse a table must be before the kernel's walks lose their lead.
 *
 * @module
 */

import { MapType, type MapTypeName } from "../mod.ts";
import { intFlag, paint, parseFlags, runMain, RuntimeError, UsageError } from "./_cli.ts";
import { createFilledMap, measure, spread, type Variant, VARIANTS } from "./_measure.ts";
import { barChart, lineChart, renderChart, type Series } from "./_charts.ts";

const USAGE =
  `usage: sweep.ts [--min N] [--max N] [--rounds R] [--chunk-entries N] [--type-entries N] [--parts LIST] [--out DIR]
  Measures ns per entry for every method: across map sizes (decades from --min 1000 to --max
  10,000,000; --max 104857600 reaches the original study's size), across chunk sizes (1 to
  65,536 on a --chunk-entries map, default 1,048,576), across map types (--type-entries,
  default 100,000), across parallel range counts and across fill ratios (1% to 100% of a
  --chunk-entries hash map, for the batch, snapshot, hybrid and auto dumps). --parts picks
  some of sizes,chunks,types,parallel,fill. Writes DIR/sweep.csv and
  DIR/{sizes,chunks,types,parallel,fill}.svg (default DIR: sweep-results).`;

const PARTS = ["sizes", "chunks", "types", "parallel", "fill"] as const;
/** Fill ratios of the `fill` part, in percent of max_entries. */
const FILLS = [1, 2, 5, 10, 25, 50, 100];
type Part = typeof PARTS[number];
const CHUNKS = [1, 4, 16, 64, 256, 1024, 4096, 16_384, 65_536];
const RANGES = [1, 2, 3, 4, 8, 16, 64];

/** One CSV row: one variant's median at one setting. */
interface Point {
  part: Part;
  type: string;
  entries: number;
  chunk: number;
  ranges: number;
  method: string;
  /** What `auto` chose (else the method itself). */
  chose: string;
  /** Entries over max_entries. */
  fill: number;
  median: number;
  min: number;
  max: number;
  nsPerEntry: number;
  verified: boolean;
}

/** Decades from `min` to `max`, and `max` itself when it is not a decade. */
function sizes(min: number, max: number): number[] {
  const out: number[] = [];
  for (let n = min; n <= max; n *= 10) out.push(n);
  if (out.at(-1) !== max) out.push(max);
  return out;
}

/** Runs `variants` on a fresh filled map and returns one point per variant. */
async function sweepPoint(
  setting: {
    part: Part;
    type: MapTypeName;
    entries: number;
    maxEntries?: number;
    chunk?: number;
    ranges?: number;
  },
  variants: readonly Variant[],
  rounds: number,
  unavailable: Map<string, string>,
): Promise<Point[]> {
  console.error(
    `${setting.part}: ${setting.type}, ${setting.entries} entries${
      setting.chunk ? `, chunk ${setting.chunk}` : ""
    }${setting.ranges ? `, ${setting.ranges} ranges` : ""}`,
  );
  using map = await createFilledMap(setting.type, setting.entries, setting.maxEntries);
  const measurements = await measure(map.info.id, variants, {
    rounds,
    chunk: setting.chunk,
    ranges: setting.ranges,
  });
  for (const m of measurements) {
    if (m.skipped !== null) unavailable.set(`${m.variant.label} (${setting.type})`, m.skipped);
  }
  return measurements.filter((m) => m.last).map((m) => {
    const s = spread(m.seconds);
    const entries = m.last!.distinct;
    return {
      part: setting.part,
      type: setting.type,
      entries,
      chunk: setting.chunk ?? 4096,
      ranges: setting.ranges ?? navigator.hardwareConcurrency,
      method: m.variant.label,
      chose: m.last!.method,
      fill: entries / map.info.maxEntries,
      ...s,
      nsPerEntry: entries ? (s.median / entries) * 1e9 : NaN,
      verified: m.problem === null,
    };
  });
}

/** Groups points into one series per method, x picked by `x`. */
function seriesOf(points: Point[], x: (p: Point) => number): Series[] {
  const byMethod = new Map<string, [number, number][]>();
  for (const p of points) {
    const list = byMethod.get(p.method) ?? [];
    list.push([x(p), p.nsPerEntry]);
    byMethod.set(p.method, list);
  }
  return [...byMethod].map(([name, pts]) => ({ name, points: pts }));
}

function toCsv(points: Point[]): string {
  const head =
    "part,type,entries,fill,chunk,ranges,method,chose,median_s,min_s,max_s,ns_per_entry,verified";
  const lines = points.map((p) =>
    [
      p.part,
      p.type,
      p.entries,
      p.fill.toFixed(4),
      p.chunk,
      p.ranges,
      `"${p.method}"`,
      p.chose,
      p.median,
      p.min,
      p.max,
      p.nsPerEntry.toFixed(2),
      p.verified,
    ]
      .join(",")
  );
  return [head, ...lines].join("\n") + "\n";
}

await runMain(USAGE, async () => {
  const flags = parseFlags({
    min: { type: "string" },
    max: { type: "string" },
    rounds: { type: "string" },
    "chunk-entries": { type: "string" },
    "type-entries": { type: "string" },
    parts: { type: "string" },
    out: { type: "string" },
  });
  const min = intFlag(flags.min, "min", 1000, { max: 0xffff_ffff });
  const max = intFlag(flags.max, "max", 10_000_000, { min, max: 0xffff_ffff });
  const rounds = intFlag(flags.rounds, "rounds", 3, { max: 100 });
  const chunkEntries = intFlag(flags["chunk-entries"], "chunk-entries", 1 << 20, {
    max: 0xffff_ffff,
  });
  const typeEntries = intFlag(flags["type-entries"], "type-entries", 100_000, { max: 0xffff_ffff });
  const parts = (flags.parts ?? PARTS.join(",")).split(",") as Part[];
  const unknown = parts.find((p) => !PARTS.includes(p));
  if (unknown) throw new UsageError(`unknown part "${unknown}" in --parts: use ${PARTS.join(",")}`);
  const out = flags.out ?? "sweep-results";
  try {
    Deno.mkdirSync(out, { recursive: true });
    Deno.writeTextFileSync(`${out}/sweep.csv`, "");
  } catch (e) {
    throw new RuntimeError(
      `cannot write into --out "${out}": ${(e as Error).message.split(":")[0]}`,
    );
  }

  const points: Point[] = [];
  // Methods this kernel refuses, with why: printed at the end.
  const unavailable = new Map<string, string>();
  const charts: Record<string, string> = {};
  if (parts.includes("sizes")) {
    const found: Point[] = [];
    for (const entries of sizes(min, max)) {
      found.push(
        ...await sweepPoint(
          { part: "sizes", type: "hash", entries },
          VARIANTS,
          rounds,
          unavailable,
        ),
      );
    }
    points.push(...found);
    charts.sizes = await renderChart(lineChart({
      title: "Time per entry by map size (hash map, u32 keys and values)",
      xLabel: "entries in the map",
      yLabel: "ns per entry",
      series: seriesOf(found, (p) => p.entries),
      logX: true,
      logY: true,
    }));
  }
  if (parts.includes("chunks")) {
    const batchVariants = VARIANTS.filter((v) =>
      v.method === "parallel" || (v.method === "batch" && v.backend === "syscall")
    );
    const found: Point[] = [];
    for (const chunk of CHUNKS) {
      found.push(
        ...await sweepPoint(
          { part: "chunks", type: "hash", entries: chunkEntries, chunk },
          batchVariants,
          rounds,
          unavailable,
        ),
      );
    }
    points.push(...found);
    charts.chunks = await renderChart(lineChart({
      title: `Time per entry by chunk size (${chunkEntries.toLocaleString("en")}-entry hash map)`,
      xLabel: "entries per batch call (chunk)",
      yLabel: "ns per entry",
      series: seriesOf(found, (p) => p.chunk),
      logX: true,
      logY: true,
    }));
  }
  if (parts.includes("types")) {
    const found: Point[] = [];
    for (const type of Object.keys(MapType) as MapTypeName[]) {
      found.push(
        ...await sweepPoint(
          { part: "types", type, entries: typeEntries },
          VARIANTS,
          rounds,
          unavailable,
        ),
      );
    }
    points.push(...found);
    charts.types = await renderChart(barChart({
      title: `Time per entry by map type (${typeEntries.toLocaleString("en")} entries)`,
      unit: "ns/entry",
      bars: found.map((p) => ({
        label: `${p.type}: ${p.method}`,
        value: p.nsPerEntry,
        group: p.method,
      })),
      logScale: true,
    }));
  }
  if (parts.includes("parallel")) {
    const parallel = VARIANTS.filter((v) => v.method === "parallel");
    const found: Point[] = [];
    for (const ranges of RANGES) {
      found.push(
        ...await sweepPoint(
          { part: "parallel", type: "hash", entries: chunkEntries, ranges },
          parallel,
          rounds,
          unavailable,
        ),
      );
    }
    points.push(...found);
    charts.parallel = await renderChart(lineChart({
      title: `Parallel batch dump by range count (${
        chunkEntries.toLocaleString("en")
      }-entry hash map, ${navigator.hardwareConcurrency} CPUs)`,
      xLabel: "ranges walked at once",
      yLabel: "ns per entry",
      series: seriesOf(found, (p) => p.ranges),
      logX: true,
    }));
  }
  if (parts.includes("fill")) {
    const kernelWalks = VARIANTS.filter((v) =>
      v.method === "snapshot" || v.method === "hybrid" || v.method === "auto" ||
      (v.method === "batch" && v.backend === "syscall")
    );
    const found: Point[] = [];
    for (const percent of FILLS) {
      const entries = Math.max(1, Math.round(chunkEntries * percent / 100));
      found.push(
        ...await sweepPoint(
          { part: "fill", type: "hash", entries, maxEntries: chunkEntries },
          kernelWalks,
          rounds,
          unavailable,
        ),
      );
    }
    points.push(...found);
    charts.fill = await renderChart(lineChart({
      title: `Time per entry by fill (hash map of ${
        chunkEntries.toLocaleString("en")
      } max entries; auto's choice in sweep.csv)`,
      xLabel: "entries / max_entries (%)",
      yLabel: "ns per entry",
      series: seriesOf(found, (p) => p.fill * 100),
      logX: true,
      logY: true,
    }));
  }
  Deno.writeTextFileSync(`${out}/sweep.csv`, toCsv(points));
  for (const [name, svg] of Object.entries(charts)) {
    Deno.writeTextFileSync(`${out}/${name}.svg`, svg);
  }
  console.log(
    `wrote ${out}/sweep.csv and ${Object.keys(charts).map((n) => `${out}/${n}.svg`).join(", ")}`,
  );
  for (const [what, why] of unavailable) {
    console.log(paint("yellow", `unavailable: ${what}: ${why}`));
  }
  const bad = points.find((p) => !p.verified);
  if (bad) {
    throw new RuntimeError(
      `${bad.method} at ${bad.entries} entries (${bad.part}): dump not verified`,
    );
  }
});
