/**
 * Charts for benchmark results as self-contained SVG documents built from plain strings: a
 * horizontal bar chart of medians with min-max whiskers, and a line chart with optional log
 * axes. Every chart carries its title, axis labels with units, tick labels, gridlines and a
 * legend on a white background, so it reads without the raw numbers. All text is XML-escaped.
 *
 * @module
 */

/** One bar: a median with its spread. */
export interface Bar {
  /** The name left of the bar, e.g. the method. */
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

/** Distinguishable colours (Tableau 10), assigned to groups and series in order. */
const PALETTE = [
  "#4e79a7",
  "#f28e2b",
  "#e15759",
  "#76b7b2",
  "#59a14f",
  "#b07aa1",
  "#9c755f",
  "#edc948",
] as const;
/** Bars without a group when other bars have one. */
const NEUTRAL = "#9d9d9d";
const TEXT = "#222222";
const MUTED = "#555555";
const AXIS = "#333333";
const GRID = "#e3e3e3";
const MINOR_GRID = "#f2f2f2";
/** Approximate width of one character at the 12px body font. */
const CHAR_WIDTH = 7;
/** Approximate width of one character of the bold 18px title. */
const TITLE_CHAR_WIDTH = 10.5;
const PAD = 16;
/** Top of the plot area, below the title. */
const PLOT_TOP = 50;
/** Height of one bar's row and of the bar inside it. */
const ROW = 30;
const BAR_HEIGHT = 20;
const LEGEND_ROW = 20;
const LEGEND_GAP = 18;
/** Space below a plot for tick labels and the axis label, before the legend. */
const BELOW_PLOT = 62;
const SUFFIXES = ["", "k", "M", "G", "T"] as const;
/** Five shapes against eight colours: a colour and shape pair repeats only after 40 series. */
const MARKERS = ["circle", "square", "diamond", "triangle", "triangle-down"] as const;
type Marker = typeof MARKERS[number];

const XML_ENTITIES: Record<string, string> = {
  "&": "amp",
  "<": "lt",
  ">": "gt",
  '"': "quot",
  "'": "apos",
};

/** Control characters XML 1.0 forbids even as references: dropped from text on purpose. */
// deno-lint-ignore no-control-regex
const FORBIDDEN_IN_XML = /[\u0000-\u0008\u000B\u000C\u000E-\u001F]/g;

type Attrs = Record<string, string | number | undefined>;
type Point = [x: number, y: number];

/** A plot area in pixels. */
interface Box {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** A scale's domain with its labelled ticks and unlabelled minor gridlines. */
interface Axis {
  lo: number;
  hi: number;
  log: boolean;
  ticks: number[];
  minor: number[];
}

/** A laid-out legend, drawn from the origin. */
interface Legend {
  svg: string;
  width: number;
  height: number;
}

interface LegendItem {
  name: string;
  colour: string;
  marker?: Marker;
}

/**
 * Formats a number compactly for ticks: three significant digits and a k, M, G or T suffix.
 *
 * @example
 * ```ts
 * compactNumber(1000); // "1k"
 * compactNumber(1048576); // "1.05M"
 * compactNumber(0.5); // "0.5"
 * compactNumber(250); // "250"
 * ```
 */
export function compactNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (value < 0) return `-${compactNumber(-value)}`;
  let tier = 0;
  let scaled = Number(value.toPrecision(3));
  while (scaled >= 1000 && tier < SUFFIXES.length - 1) {
    tier += 1;
    scaled = Number((value / 1000 ** tier).toPrecision(3));
  }
  return `${scaled}${SUFFIXES[tier]}`;
}

/**
 * Horizontal bar chart: one bar per entry, whiskers from min to max, value printed at the bar
 * end; bars coloured by `group` (legend of groups). Log scale optional.
 *
 * @example
 * ```ts
 * const svg = barChart({
 *   title: "Dumping a 1M-entry hash map",
 *   unit: "s",
 *   bars: [
 *     { label: "normal/syscall", value: 2.3, min: 2.2, max: 2.5, group: "normal" },
 *     { label: "batch/libbpf", value: 0.31, min: 0.3, max: 0.33, group: "batch" },
 *   ],
 * });
 * Deno.writeTextFileSync("dump.svg", svg);
 * ```
 */
export function barChart(
  options: { title: string; unit: string; bars: Bar[]; logScale?: boolean; width?: number },
): string {
  const { title, unit, bars, logScale = false, width = 800 } = options;
  const valueLabels = bars.map((bar) => withUnit(bar.value, unit));
  const left = Math.max(60, longest(bars.map((bar) => bar.label)) * CHAR_WIDTH + 24);
  const right = longest(valueLabels) * CHAR_WIDTH + 24;
  const box = {
    left,
    top: PLOT_TOP,
    width: Math.max(200, width - left - right),
    height: bars.length > 0 ? bars.length * ROW : 60,
  };
  const axis = makeAxis(barExtent(bars), logScale, maxTicks(box.width, 80), true);
  const groups = [...new Set(bars.flatMap((bar) => bar.group ?? []))];
  const key = legend(
    groups.map((name, i) => ({ name, colour: PALETTE[i % PALETTE.length] })),
    box.width,
  );
  const whiskers = bars.some((bar) => bar.min !== undefined || bar.max !== undefined);
  const body = bars.length === 0 ? [noData(box), axisLines(box)] : [
    ...verticalGrid(axis, box),
    ...bars.map((bar, i) => barRow(bar, i, { axis, box, colour: barColour(bar, groups), unit })),
    axisLines(box),
    ...xTickLabels(axis, box),
  ];
  const xLabel = `Median (${unit})${whiskers ? " — whiskers span min to max" : ""}`;
  const minWidth = Math.max(width, box.left + box.width + right);
  return chartDocument(title, box, { minWidth, xLabel, key, body });
}

/**
 * Line chart with markers; log axes optional (decade ticks labelled "1k", "10k", "1M"...).
 * Points with y <= 0 or non-finite values are skipped on log axes, breaking the line. The
 * legend lists the series.
 *
 * @example
 * ```ts
 * const svg = lineChart({
 *   title: "Time per entry by map size",
 *   xLabel: "entries in the map",
 *   yLabel: "ns per entry",
 *   series: [{ name: "batch", points: [[1e3, 120], [1e6, 95]] }],
 *   logX: true,
 *   logY: true,
 * });
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
): string {
  const { title, xLabel, yLabel, series, logX = false, logY = false } = options;
  const { width = 800, height = 480 } = options;
  const lines = series.map((s) => usablePoints(s.points, logX, logY));
  const all = lines.flat().filter((p): p is Point => p !== null);
  const yAxis = makeAxis(all.map((p) => p[1]), logY, maxTicks(height - 180, 40), !logY);
  const left = Math.max(60, longest(yAxis.ticks.map(compactNumber)) * CHAR_WIDTH + 48);
  const plotWidth = Math.max(200, width - left - PAD * 2);
  const key = legend(
    series.map((s, i) => ({ name: s.name, colour: seriesColour(i), marker: seriesMarker(i) })),
    plotWidth,
  );
  const box = {
    left,
    top: PLOT_TOP,
    width: plotWidth,
    height: Math.max(120, height - PLOT_TOP - BELOW_PLOT - key.height - PAD / 2),
  };
  const xAxis = makeAxis(all.map((p) => p[0]), logX, maxTicks(box.width, 80), false);
  const body = all.length === 0 ? [noData(box), axisLines(box), yAxisLabel(yLabel, box)] : [
    ...verticalGrid(xAxis, box),
    ...horizontalGrid(yAxis, box),
    axisLines(box),
    ...xTickLabels(xAxis, box),
    ...yTickLabels(yAxis, box),
    ...lines.map((points, i) => seriesMarkup(points, i, xAxis, yAxis, box)),
    yAxisLabel(yLabel, box),
  ];
  const minWidth = Math.max(width, box.left + box.width + PAD * 2);
  return chartDocument(title, box, { minWidth, xLabel, key, body });
}

// ---- Document and text ----

/** A finished chart: the plot's body, its x-axis label and legend below, nothing clipped. */
function chartDocument(
  title: string,
  box: Box,
  parts: { minWidth: number; xLabel: string; key: Legend; body: string[] },
): string {
  const { minWidth, xLabel, key, body } = parts;
  const below = box.top + box.height + BELOW_PLOT;
  const width = Math.max(
    minWidth,
    box.left + box.width / 2 + (xLabel.length * CHAR_WIDTH) / 2 + PAD,
    box.left + key.width + PAD,
  );
  const markup = [...body, xAxisLabel(xLabel, box), translate(key.svg, box.left, below)];
  return svgDocument(width, below + key.height + PAD / 2, title, markup);
}

function svgDocument(width: number, height: number, title: string, body: string[]): string {
  const fullWidth = Math.ceil(Math.max(width, title.length * TITLE_CHAR_WIDTH + PAD * 2));
  const fullHeight = Math.ceil(height);
  const open =
    `<svg xmlns="http://www.w3.org/2000/svg" width="${fullWidth}" height="${fullHeight}"` +
    ` viewBox="0 0 ${fullWidth} ${fullHeight}" font-family="sans-serif" font-size="12">`;
  return [
    open,
    tag("title", {}, escapeXml(title)),
    tag("rect", { width: fullWidth, height: fullHeight, fill: "#ffffff" }),
    text(PAD, 30, title, { "font-size": 18, "font-weight": "bold", fill: TEXT }),
    ...body.filter((part) => part !== ""),
    "</svg>",
    "",
  ].join("\n");
}

function tag(name: string, attrs: Attrs, children?: string): string {
  const rendered = Object.entries(attrs)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => ` ${key}="${typeof value === "number" ? px(value) : escapeXml(value!)}"`)
    .join("");
  return children === undefined
    ? `<${name}${rendered}/>`
    : `<${name}${rendered}>${children}</${name}>`;
}

function text(x: number, y: number, content: string, attrs: Attrs = {}): string {
  return tag("text", { x, y, ...attrs }, escapeXml(content));
}

/** Text safe in XML content and attributes; control characters XML forbids are dropped. */
function escapeXml(value: string): string {
  return value
    .replace(FORBIDDEN_IN_XML, "")
    .replace(/[&<>"']/g, (c) => `&${XML_ENTITIES[c]};`);
}

/** A pixel coordinate with at most one decimal. */
function px(value: number): string {
  return String(Math.round(value * 10) / 10);
}

function translate(markup: string, x: number, y: number): string {
  return markup === "" ? "" : `<g transform="translate(${px(x)} ${px(y)})">${markup}</g>`;
}

function longest(labels: string[]): number {
  return Math.max(0, ...labels.map((label) => label.length));
}

function withUnit(value: number, unit: string): string {
  if (!Number.isFinite(value)) return "n/a";
  return unit === "" ? compactNumber(value) : `${compactNumber(value)} ${unit}`;
}

// ---- Axes ----

/** How many ticks fit in `length` pixels with at least `spacing` between them. */
function maxTicks(length: number, spacing: number): number {
  return Math.max(2, Math.floor(length / spacing));
}

/** An axis over the values the scale can show (finite; positive on log); zero on request. */
function makeAxis(values: number[], log: boolean, ticks: number, includeZero: boolean): Axis {
  const usable = values.filter((v) => Number.isFinite(v) && (!log || v > 0));
  if (usable.length === 0) return log ? logAxis(1, 10, ticks) : linearAxis(0, 1, ticks);
  let lo = Math.min(...usable);
  let hi = Math.max(...usable);
  if (includeZero && !log) [lo, hi] = [Math.min(lo, 0), Math.max(hi, 0)];
  return log ? logAxis(lo, hi, ticks) : linearAxis(lo, hi, ticks);
}

function linearAxis(lo: number, hi: number, ticks: number): Axis {
  if (lo === hi) {
    const pad = lo === 0 ? 1 : Math.abs(lo) / 2;
    [lo, hi] = lo === 0 ? [0, 1] : [lo - pad, hi + pad];
  }
  const step = niceStep((hi - lo) / ticks);
  const first = Math.floor(lo / step) * step;
  const count = Math.ceil(hi / step) - Math.floor(lo / step);
  const values = Array.from(
    { length: count + 1 },
    (_, i) => Number((first + i * step).toPrecision(12)),
  );
  return { lo: values[0], hi: values[count], log: false, ticks: values, minor: [] };
}

/** The smallest 1, 2 or 5 times a power of ten that is at least `raw`. */
function niceStep(raw: number): number {
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const factor = [1, 2, 5, 10].find((f) => f * magnitude >= raw * (1 - 1e-9)) ?? 10;
  return factor * magnitude;
}

/**
 * Decade ticks; when the data spans few decades, 2 and 5 are labelled too and the domain
 * shrinks to the nearest 1, 2 or 5 around the data.
 */
function logAxis(lo: number, hi: number, ticks: number): Axis {
  let low = Math.floor(Math.log10(lo) + 1e-9);
  let high = Math.ceil(Math.log10(hi) - 1e-9);
  if (low === high) [low, high] = [low - 1, high + 1];
  if (2 * (high - low) <= ticks) return fineLogAxis(lo, hi, range(low, high, 1));
  const step = Math.max(1, Math.ceil((high - low) / ticks));
  const exponents = range(Math.floor(low / step) * step, Math.ceil(high / step) * step, step);
  const minor = step === 1 && exponents.length <= 7
    ? mantissas(exponents.slice(0, -1), [2, 3, 4, 5, 6, 7, 8, 9])
    : [];
  const [first, last] = [exponents[0], exponents[exponents.length - 1]];
  return { lo: decade(first), hi: decade(last), log: true, ticks: exponents.map(decade), minor };
}

/** A log axis labelled at 1, 2 and 5 of each decade, from just below `lo` to just above `hi`. */
function fineLogAxis(lo: number, hi: number, exponents: number[]): Axis {
  const nice = mantissas(exponents, [1, 2, 5]);
  let first = nice.findLastIndex((v) => v <= lo * (1 + 1e-9));
  let last = nice.findIndex((v) => v >= hi * (1 - 1e-9));
  if (first === last) [first, last] = [first - 1, last + 1];
  const [min, max] = [nice[first], nice[last]];
  const minor = mantissas(exponents, [3, 4, 6, 7, 8, 9]).filter((v) => v > min && v < max);
  return { lo: min, hi: max, log: true, ticks: nice.slice(first, last + 1), minor };
}

/** Every mantissa times every decade of `exponents`, ascending. */
function mantissas(exponents: number[], factors: number[]): number[] {
  return exponents.flatMap((e) => factors.map((m) => Number(`${m}e${e}`)));
}

function range(from: number, to: number, step: number): number[] {
  return Array.from({ length: Math.floor((to - from) / step) + 1 }, (_, i) => from + i * step);
}

function decade(exponent: number): number {
  return Number(`1e${exponent}`);
}

/** Maps `value` on `axis` to a pixel between `from` (the axis low end) and `to`. */
function project(axis: Axis, value: number, from: number, to: number): number {
  const fraction = axis.log
    ? value <= 0 ? 0 : Math.log10(value / axis.lo) / Math.log10(axis.hi / axis.lo)
    : (value - axis.lo) / (axis.hi - axis.lo);
  return from + fraction * (to - from);
}

function xOf(axis: Axis, value: number, box: Box): number {
  return project(axis, value, box.left, box.left + box.width);
}

function yOf(axis: Axis, value: number, box: Box): number {
  return project(axis, value, box.top + box.height, box.top);
}

function verticalGrid(axis: Axis, box: Box): string[] {
  const line = (value: number, stroke: string) => {
    const x = xOf(axis, value, box);
    return tag("line", { x1: x, y1: box.top, x2: x, y2: box.top + box.height, stroke });
  };
  return [...axis.minor.map((v) => line(v, MINOR_GRID)), ...axis.ticks.map((v) => line(v, GRID))];
}

function horizontalGrid(axis: Axis, box: Box): string[] {
  const line = (value: number, stroke: string) => {
    const y = yOf(axis, value, box);
    return tag("line", { x1: box.left, y1: y, x2: box.left + box.width, y2: y, stroke });
  };
  return [...axis.minor.map((v) => line(v, MINOR_GRID)), ...axis.ticks.map((v) => line(v, GRID))];
}

function axisLines(box: Box): string {
  const bottom = box.top + box.height;
  const d = `M ${px(box.left)} ${px(box.top)} V ${px(bottom)} H ${px(box.left + box.width)}`;
  return tag("path", { d, fill: "none", stroke: AXIS });
}

function xTickLabels(axis: Axis, box: Box): string[] {
  const y = box.top + box.height + 18;
  return axis.ticks.map((value) =>
    text(xOf(axis, value, box), y, compactNumber(value), {
      class: "tick",
      "text-anchor": "middle",
      fill: MUTED,
    })
  );
}

function yTickLabels(axis: Axis, box: Box): string[] {
  return axis.ticks.map((value) =>
    text(box.left - 8, yOf(axis, value, box) + 4, compactNumber(value), {
      class: "tick",
      "text-anchor": "end",
      fill: MUTED,
    })
  );
}

function xAxisLabel(label: string, box: Box): string {
  const attrs = { "text-anchor": "middle", "font-size": 13, fill: TEXT };
  return text(box.left + box.width / 2, box.top + box.height + 42, label, attrs);
}

function yAxisLabel(label: string, box: Box): string {
  const x = 20;
  const y = box.top + box.height / 2;
  const transform = `rotate(-90 ${px(x)} ${px(y)})`;
  return text(x, y, label, { "text-anchor": "middle", "font-size": 13, fill: TEXT, transform });
}

function noData(box: Box): string {
  const attrs = { "text-anchor": "middle", "font-size": 14, fill: MUTED };
  return text(box.left + box.width / 2, box.top + box.height / 2 + 5, "no data", attrs);
}

// ---- Bars ----

/** A group's colour; ungrouped bars are grey beside grouped ones, else the first colour. */
function barColour(bar: Bar, groups: string[]): string {
  if (bar.group !== undefined) return PALETTE[groups.indexOf(bar.group) % PALETTE.length];
  return groups.length > 0 ? NEUTRAL : PALETTE[0];
}

/** Every finite value, min and max: what the value axis must show. */
function barExtent(bars: Bar[]): number[] {
  return bars.flatMap((bar) => [bar.value, bar.min ?? bar.value, bar.max ?? bar.value]);
}

function barRow(
  bar: Bar,
  index: number,
  context: { axis: Axis; box: Box; colour: string; unit: string },
): string {
  const { axis, box, colour, unit } = context;
  const centre = box.top + index * ROW + ROW / 2;
  const zero = xOf(axis, axis.log ? axis.lo : 0, box);
  const parts = [text(box.left - 8, centre + 4, bar.label, { "text-anchor": "end", fill: TEXT })];
  let end = zero;
  if (Number.isFinite(bar.value)) {
    const x = xOf(axis, bar.value, box);
    const [from, to] = [Math.min(zero, x), Math.max(zero, x)];
    parts.push(tag("rect", {
      class: "bar",
      x: from,
      y: centre - BAR_HEIGHT / 2,
      width: to - from,
      height: BAR_HEIGHT,
      fill: colour,
    }));
    end = to;
  }
  if (bar.min !== undefined || bar.max !== undefined) {
    const whisker = whiskerMarkup(bar, axis, box, centre);
    parts.push(whisker.svg);
    end = Math.max(end, whisker.end);
  }
  parts.push(text(end + 6, centre + 4, withUnit(bar.value, unit), valueLabelStyle()));
  return parts.join("");
}

/** The min-max whisker with end caps, and the pixel where its right end lies. */
function whiskerMarkup(
  bar: Bar,
  axis: Axis,
  box: Box,
  centre: number,
): { svg: string; end: number } {
  const ends = [bar.min ?? bar.value, bar.max ?? bar.value].filter(Number.isFinite);
  if (ends.length < 2) return { svg: "", end: -Infinity };
  const [x1, x2] = ends.map((v) => xOf(axis, v, box));
  const cap = BAR_HEIGHT / 4;
  const d = `M ${px(x1)} ${px(centre)} H ${px(x2)}` +
    ` M ${px(x1)} ${px(centre - cap)} V ${px(centre + cap)}` +
    ` M ${px(x2)} ${px(centre - cap)} V ${px(centre + cap)}`;
  return {
    svg: tag("path", { class: "whisker", d, stroke: AXIS, "stroke-width": 1.5 }),
    end: Math.max(x1, x2),
  };
}

/** Value labels get a white halo so gridlines behind them do not cut through the digits. */
function valueLabelStyle(): Attrs {
  return {
    fill: TEXT,
    stroke: "#ffffff",
    "stroke-width": 3,
    "paint-order": "stroke",
    "stroke-linejoin": "round",
  };
}

// ---- Lines ----

function seriesColour(index: number): string {
  return PALETTE[index % PALETTE.length];
}

function seriesMarker(index: number): Marker {
  return MARKERS[index % MARKERS.length];
}

/** Points in order of x; those a scale cannot show become `null`, a break in the line. */
function usablePoints(points: Point[], logX: boolean, logY: boolean): (Point | null)[] {
  const fits = (v: number, log: boolean) => Number.isFinite(v) && (!log || v > 0);
  return points
    .filter(([x]) => Number.isFinite(x))
    .toSorted((a, b) => a[0] - b[0])
    .map((p) => fits(p[0], logX) && fits(p[1], logY) ? p : null);
}

function seriesMarkup(
  points: (Point | null)[],
  index: number,
  xAxis: Axis,
  yAxis: Axis,
  box: Box,
): string {
  const colour = seriesColour(index);
  const placed = points.map((p) => p && [xOf(xAxis, p[0], box), yOf(yAxis, p[1], box)] as Point);
  let pen = "M";
  const d: string[] = [];
  for (const p of placed) {
    if (p === null) {
      pen = "M";
      continue;
    }
    d.push(`${pen} ${px(p[0])} ${px(p[1])}`);
    pen = "L";
  }
  const line = d.length > 1
    ? tag("path", {
      class: "series",
      d: d.join(" "),
      fill: "none",
      stroke: colour,
      "stroke-width": 2,
      "stroke-linejoin": "round",
    })
    : "";
  const markers = placed.flatMap((p) => p ? [marker(seriesMarker(index), p, colour)] : []);
  return `<g>${line}${markers.join("")}</g>`;
}

const MARKER_SHAPES: Record<Exclude<Marker, "circle" | "square">, Point[]> = {
  diamond: [[0, -5.5], [5.5, 0], [0, 5.5], [-5.5, 0]],
  triangle: [[0, -5.5], [5, 3.5], [-5, 3.5]],
  "triangle-down": [[0, 5.5], [5, -3.5], [-5, -3.5]],
};

function marker(shape: Marker, [x, y]: Point, colour: string, className = "marker"): string {
  const style = { class: className, fill: colour, stroke: "#ffffff", "stroke-width": 1 };
  if (shape === "circle") return tag("circle", { cx: x, cy: y, r: 4.5, ...style });
  if (shape === "square") return tag("rect", { x: x - 4, y: y - 4, width: 8, height: 8, ...style });
  const points = MARKER_SHAPES[shape].map(([dx, dy]) => `${px(x + dx)},${px(y + dy)}`).join(" ");
  return tag("polygon", { points, ...style });
}

// ---- Legend ----

/** Legend items laid out in rows that wrap at `maxWidth`, drawn from the origin. */
function legend(items: LegendItem[], maxWidth: number): Legend {
  let [x, y, width] = [0, 0, 0];
  const parts: string[] = [];
  for (const item of items) {
    const itemWidth = 28 + item.name.length * CHAR_WIDTH;
    if (x > 0 && x + itemWidth > maxWidth) [x, y] = [0, y + LEGEND_ROW];
    parts.push(legendItem(item, x, y));
    width = Math.max(width, x + itemWidth);
    x += itemWidth + LEGEND_GAP;
  }
  return { svg: parts.join(""), width, height: items.length > 0 ? y + LEGEND_ROW : 0 };
}

function legendItem(item: LegendItem, x: number, y: number): string {
  const label = text(x + 28, y + 14, item.name, { class: "legend", fill: TEXT });
  if (item.marker === undefined) {
    const swatch = tag("rect", { x: x + 4, y: y + 3, width: 14, height: 14, fill: item.colour });
    return swatch + label;
  }
  const line = tag("line", {
    x1: x,
    y1: y + 10,
    x2: x + 22,
    y2: y + 10,
    stroke: item.colour,
    "stroke-width": 2,
  });
  return line + marker(item.marker, [x + 11, y + 10], item.colour, "legend-marker") + label;
}
