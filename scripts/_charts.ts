/**
 * Charts for benchmark results, drawn by vega-lite: a chart is a vega-lite spec, and
 * `renderChart` draws one as a self-contained SVG document, headless (no browser, no canvas, no
 * permissions). `barChart` and `lineChart` build the two specs the scripts draw; a new chart is
 * a spec of a few lines passed to `renderChart`, which adds the house style.
 *
 * vega and vega-lite load on the first render, so a script that draws nothing does not carry
 * their ~50 MB of resident memory into the figures it measures.
 *
 * @module
 */

import type { TopLevelSpec } from "vega-lite";

/** A vega-lite spec: what `renderChart` draws. */
export type ChartSpec = TopLevelSpec;

/** One bar: a median with its spread. */
export interface Bar {
  /** The name left of the bar, e.g. the method; one row per distinct label. */
  label: string;
  /** The median: the bar's length, printed at its end. */
  value: number;
  /** The whisker's lower end. */
  min?: number;
  /** The whisker's upper end. */
  max?: number;
  /** Bars of one group share a colour; the legend lists the groups. */
  group?: string;
}

/** One line series. */
export interface Series {
  /** The name shown in the legend. */
  name: string;
  /** The `[x, y]` points; drawn in order of x. */
  points: [x: number, y: number][];
}

const TEXT = "#222222";
const MUTED = "#555555";
const AXIS = "#333333";
/** Bars when no bar has a group. */
const FIRST = "#4c78a8";
/** Bars without a group when other bars have one. */
const NEUTRAL = "#9d9d9d";
/** Five shapes against ten colours: a pair repeats only after 10 series. */
const SHAPES = ["circle", "square", "diamond", "triangle-up", "triangle-down"];

/** The house style under every chart: fonts, greys, whole labels, a legend below the plot. */
const CONFIG = {
  background: "white",
  padding: 16,
  font: "sans-serif",
  title: {
    anchor: "start",
    frame: "bounds",
    fontSize: 18,
    color: TEXT,
    offset: 14,
    subtitleFontSize: 13,
    subtitleColor: MUTED,
  },
  axis: {
    labelFontSize: 12,
    labelColor: MUTED,
    labelLimit: 0,
    titleFontSize: 13,
    titleFontWeight: "normal",
    titleColor: TEXT,
    titlePadding: 10,
    gridColor: "#e3e3e3",
    domainColor: AXIS,
    tickColor: AXIS,
  },
  legend: {
    orient: "bottom",
    direction: "horizontal",
    title: null,
    labelFontSize: 12,
    labelColor: TEXT,
    labelLimit: 0,
    columnPadding: 18,
    symbolStrokeWidth: 2,
  },
  view: { stroke: null },
} as const;

/**
 * A vega expression formatting the number `value` (an expression too) compactly: three
 * significant digits, and k, M, G, T from a thousand up ("0.25", "250", "12.3k", "1.05M").
 *
 * @example
 * ```ts
 * // A text layer printing "1.05M entries" at each point.
 * const labels = {
 *   transform: [{ calculate: `${compact("datum.entries")} + " entries"`, as: "text" }],
 *   mark: "text",
 * };
 * ```
 */
export function compact(value: string): string {
  return `(abs(${value}) >= 1000 ? format(${value}, '.3~s') : format(${value}, '.3~r'))`;
}

type Vega = typeof import("vega");
type VegaLite = typeof import("vega-lite");
type Measured = { fontSize?: number; fontWeight?: string | number };
let libraries: Promise<[Vega, VegaLite]> | undefined;

/** vega and vega-lite, loaded once, measuring text as a viewer's fonts will draw it. */
function load(): Promise<[Vega, VegaLite]> {
  libraries ??= Promise.all([import("vega"), import("vega-lite")]).then(([vega, vegaLite]) => {
    // Without a canvas vega guesses 0.8 em for every character: too wide for most, too narrow
    // for "m" and "W". `textMetrics` is exported, but missing from vega's typings.
    const metrics = vega as unknown as { textMetrics: { width: typeof textWidth } };
    metrics.textMetrics.width = textWidth;
    return [vega, vegaLite];
  });
  return libraries;
}

/** Width in em of a character in DejaVu Sans, the widest common sans-serif, rounded up. */
function emWidth(c: string): number {
  if ("ijlIJ'".includes(c)) return 0.3;
  if (" .,:;|/!-frt()[]".includes(c)) return 0.42;
  if (/[a-z0-9_]/.test(c)) return 0.64;
  if ("mwMW%@#+<=>~&—".includes(c)) return 1;
  return 0.8;
}

/** The width in pixels of `text` as `item` draws it. */
function textWidth(item: Measured, text?: unknown): number {
  const value = text === undefined || text === null ? "" : String(text).trim();
  const bold = item.fontWeight === "bold" || Number(item.fontWeight) >= 600 ? 1.1 : 1;
  return [...value].reduce((sum, c) => sum + emWidth(c), 0) * (item.fontSize ?? 11) * bold;
}

/**
 * Draws a vega-lite spec as an SVG document in the house style (the spec's own `config` wins).
 * vega escapes all text.
 *
 * @example
 * ```ts
 * const svg = await renderChart({
 *   title: "Entries per CPU",
 *   data: { values: [{ cpu: "0", entries: 5200 }, { cpu: "1", entries: 4800 }] },
 *   mark: "bar",
 *   encoding: {
 *     x: { field: "cpu", type: "nominal" },
 *     y: { field: "entries", type: "quantitative" },
 *   },
 * });
 * Deno.writeTextFileSync("cpus.svg", svg);
 * ```
 */
export async function renderChart(spec: ChartSpec): Promise<string> {
  const [vega, vegaLite] = await load();
  const compiled = vegaLite.compile(spec, { config: CONFIG }).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/**
 * Horizontal bar chart of medians: one bar per entry in order, a whisker from min to max, the
 * value and unit printed at the bar's end; bars coloured by `group` (legend of groups). Values
 * a log scale cannot show are left out of the drawing; their labels stay.
 *
 * @example
 * ```ts
 * const spec = barChart({
 *   title: "Dumping a 1M-entry hash map",
 *   unit: "s",
 *   bars: [
 *     { label: "normal/syscall", value: 2.3, min: 2.2, max: 2.5, group: "normal" },
 *     { label: "batch/libbpf", value: 0.31, min: 0.3, max: 0.33, group: "batch" },
 *   ],
 * });
 * Deno.writeTextFileSync("dump.svg", await renderChart(spec));
 * ```
 */
export function barChart(
  options: { title: string; unit: string; bars: Bar[]; logScale?: boolean; width?: number },
): ChartSpec {
  const { title, unit, bars, logScale = false, width = 480 } = options;
  const rows = bars.map((bar) => {
    const [value, min, max] = [bar.value, bar.min, bar.max].map((v) => placeable(v, logScale));
    const end = Math.max(...[value, min, max].filter((v) => v !== null));
    const group = bar.group ?? null;
    return { label: bar.label, group, value, min, max, end: Number.isFinite(end) ? end : null };
  });
  const labels = [...new Set(bars.map((bar) => bar.label))];
  const groups = [...new Set(bars.flatMap((bar) => bar.group ?? []))];
  const whiskers = bars.some((bar) => bar.min !== undefined || bar.max !== undefined);
  const withUnit = unit === "" ? "" : ` + ${JSON.stringify(` ${unit}`)}`;
  const x = scaled(rows.flatMap((r) => [r.value, r.min, r.max]), logScale, {
    marks: "bars",
    length: width,
  });
  return {
    title: heading(title, rows.some((r) => r.end !== null)),
    width,
    height: { step: 30 },
    data: { values: rows },
    encoding: {
      // The rows in order, even those with nothing to draw.
      y: { field: "label", type: "nominal", scale: { domain: labels }, title: null },
      x: {
        field: "value",
        type: "quantitative",
        title: `Median (${unit})${whiskers ? " — whiskers span min to max" : ""}`,
        scale: x.scale,
        axis: { ...x.axis, labelFlush: false, tickCount: Math.round(width / 80) },
        stack: null,
      },
    },
    layer: [
      {
        mark: { type: "bar", height: 20 },
        encoding: {
          color: groups.length === 0 ? { value: FIRST } : {
            condition: { test: "datum.group === null", value: NEUTRAL },
            field: "group",
            type: "nominal",
            scale: { domain: groups },
            legend: { columns: legendColumns(groups, width, 32) },
          },
        },
      },
      {
        mark: { type: "errorbar", color: AXIS, thickness: 1.5, ticks: { size: 10 } },
        encoding: { x: { field: "min", type: "quantitative" }, x2: { field: "max" } },
      },
      {
        transform: [{ calculate: `${compact("datum.value")}${withUnit}`, as: "text" }],
        mark: { type: "text", align: "left", dx: 6, fontSize: 12, color: TEXT },
        encoding: { x: { field: "end", type: "quantitative" }, text: { field: "text" } },
      },
    ],
  };
}

/**
 * Line chart of series with a marker at each point; log axes optional. Points a log axis
 * cannot show are left out, breaking the line. The legend lists the series by colour and shape.
 *
 * @example
 * ```ts
 * const spec = lineChart({
 *   title: "Time per entry by map size",
 *   xLabel: "entries in the map",
 *   yLabel: "ns per entry",
 *   series: [{ name: "batch", points: [[1e3, 120], [1e6, 95]] }],
 *   logX: true,
 *   logY: true,
 * });
 * Deno.writeTextFileSync("sizes.svg", await renderChart(spec));
 * ```
 */
export function lineChart(
  options: {
    title: string;
    xLabel: string;
    yLabel: string;
    series: Series[];
    logX?: boolean;
    logY?: boolean;
    width?: number;
    height?: number;
  },
): ChartSpec {
  const { title, xLabel, yLabel, series, logX = false, logY = false } = options;
  const { width = 640, height = 320 } = options;
  const names = series.map((s) => s.name);
  const points = series
    .flatMap((s) => s.points.map(([x, y]) => ({ series: s.name, x: placeable(x, logX), y })))
    .filter((p) => p.x !== null)
    .map((p) => ({ ...p, y: placeable(p.y, logY) }));
  const legend = { columns: legendColumns(names, width, 40), symbolSize: 60 };
  return {
    title: heading(title, points.some((p) => p.y !== null)),
    width,
    height,
    data: { values: points },
    encoding: {
      x: {
        field: "x",
        type: "quantitative",
        title: xLabel,
        ...scaled(points.map((p) => p.x), logX, { marks: "lines", length: width }),
      },
      y: {
        field: "y",
        type: "quantitative",
        title: yLabel,
        ...scaled(points.map((p) => p.y), logY, { marks: "lines", length: height, zero: true }),
      },
      color: { field: "series", type: "nominal", scale: { domain: names }, legend },
    },
    layer: [
      { mark: { type: "line", strokeWidth: 2 } },
      {
        mark: {
          type: "point",
          filled: true,
          size: 60,
          opacity: 1,
          stroke: "white",
          strokeWidth: 1,
        },
        encoding: {
          shape: {
            field: "series",
            type: "nominal",
            scale: { domain: names, range: SHAPES },
            legend,
          },
        },
      },
    ],
  };
}

/** The chart's title, with "no data" under it when nothing can be drawn. */
function heading(text: string, drawn: boolean): string | { text: string; subtitle: string } {
  return drawn ? text : { text, subtitle: "no data" };
}

/** A number a scale can place: finite, and positive on a log scale; else `null` (not drawn). */
function placeable(value: number | undefined, log: boolean): number | null {
  return value !== undefined && Number.isFinite(value) && (!log || value > 0) ? value : null;
}

/** A quantitative position's scale and axis, as `scaled` makes them. */
interface Scaled {
  scale: { zero: boolean } | { type: "log"; domain: number[]; nice: false };
  axis: { labelExpr: string; values?: number[] };
}

/**
 * A quantitative scale over `values` with compact tick labels. Linear scales start at zero for
 * bars (and when `zero`). Log scales span the nearest 1, 2 or 5 of a decade around the values:
 * at or below the least for lines, strictly below for bars (which start there, and would
 * otherwise vanish); ticks at 1, 2 and 5 of each decade where `length` pixels give each of
 * them 50, else at decades.
 */
function scaled(
  values: (number | null)[],
  log: boolean,
  axis: { marks: "bars" | "lines"; length: number; zero?: boolean },
): Scaled {
  const { marks, length, zero = false } = axis;
  const labelExpr = compact("datum.value");
  if (!log) return { scale: { zero: zero || marks === "bars" }, axis: { labelExpr } };
  const usable = values.filter((v): v is number => v !== null);
  const [lo, hi] = usable.length ? [Math.min(...usable), Math.max(...usable)] : [2, 5];
  const nice = (from: number, to: number, mantissas = [1, 2, 5]) =>
    range(from, to).flatMap((e) => mantissas.map((m) => Number(`${m}e${e}`)));
  const first = nice(exponent(lo) - 1, exponent(lo))
    .findLast((v) => marks === "bars" ? v < lo : v <= lo)!;
  const last = nice(exponent(hi), exponent(hi) + 1).find((v) => v >= hi)!;
  const decades = exponent(last) - exponent(first);
  const ticks = nice(exponent(first), exponent(last), decades * 3 * 50 > length ? [1] : undefined)
    .filter((v) => v >= first && v <= last);
  return {
    scale: { type: "log", domain: [first, last], nice: false },
    axis: { labelExpr, values: ticks },
  };
}

/** The integers from `from` to `to`, both included. */
function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

function exponent(value: number): number {
  return Math.floor(Math.log10(value));
}

/** Legend columns that fit `names` in `width` pixels, each beside a `symbol`-wide swatch. */
function legendColumns(names: string[], width: number, symbol: number): number {
  const widest = Math.max(...names.map((name) => textWidth({ fontSize: 12 }, name))) + symbol;
  return Math.max(1, Math.min(names.length, Math.floor(width / (widest + 18))));
}
