/**
 * One screen of `map watch`, as lines: a title, the column headers, the top keys (each
 * with its numeric fields, their rates per second, and the rest of its value), and a footer
 * with the walk's time and method. Pure: the terminal is `_watch_terminal.ts`'s.
 *
 * @module
 */

import type { WatchSnapshot, WatchStats } from "../ffi/dump/watch.ts";
import { EntryState } from "../ffi/dump/watch.ts";
import { type CellFormat, fieldLabel, rateText } from "./_watch_cells.ts";

/** What a frame shows besides the snapshot. */
export interface FrameSpec {
  /** The map, as the title names it (`map id 12 'name' (hash)`). */
  subject: string;
  /** Seconds between reads. */
  interval: number;
  /** The field ranking the keys (an index into the snapshot's fields), or -1. */
  sort: number;
  /** Whether each key gets one row per CPU under its sum. */
  perCpu: boolean;
  /** CPU slots of a value. */
  cpus: number;
  /** How keys and values read. */
  cells: CellFormat;
  /** Terminal columns (`Infinity`: lines are not cut). */
  width: number;
  /** Terminal rows (`Infinity`: `top` alone bounds the keys). */
  height: number;
  /** The most keys shown (`--top`), if given. */
  top?: number;
  /** What the footer ends with (the key that quits). */
  hint: string;
  /** Whether the frame fills `height` (the footer on the last row), as a screen redrawn in place. */
  fill: boolean;
}

/** Lines of the title, the headers and the footer. */
const CHROME = 3;

/** How many keys fit: `--top`, bounded by the rows left once the title, headers and footer are drawn. */
export function keysShown(spec: FrameSpec): number {
  const perKey = spec.perCpu ? spec.cpus + 1 : 1;
  const fit = Math.max(1, Math.floor((spec.height - CHROME) / perKey));
  return Math.min(spec.top ?? fit, fit);
}

/** A column: its header, whether it is right-aligned, its cells, and the widest it may be (0: any). */
interface Column {
  header: string;
  right: boolean;
  cells: string[];
  max?: number;
}

const METHOD_NAMES = { batch: "LOOKUP_BATCH", normal: "GET_NEXT_KEY + LOOKUP_ELEM" } as const;

/** Thousands separated by commas. */
function grouped(n: number): string {
  return n.toLocaleString("en-US");
}

/** `1 key`, `2 keys`. */
function counted(n: number, noun: string): string {
  return `${grouped(n)} ${noun}${n === 1 ? "" : "s"}`;
}

/**
 * The frame of `snapshot` after the read `stats` described, showing `rows` (indices of the
 * current read, best first) as `spec` says. Every line fits `spec.width`.
 *
 * @example
 * ```ts
 * import { BpfMap, watchFields, WatchSnapshot } from "../mod.ts";
 * import { cellFormat } from "./_watch_cells.ts";
 * import { keysShown, renderFrame } from "./_watch_view.ts";
 * using map = BpfMap.create({ type: "hash", keySize: 4, valueSize: 8, maxEntries: 16 });
 * const fields = watchFields(null, map.valueSize);
 * const snapshot = new WatchSnapshot(map, fields);
 * const stats = snapshot.read(map);
 * const spec = {
 *   subject: "map id 1 (hash)",
 *   interval: 1,
 *   sort: 0,
 *   perCpu: false,
 *   cpus: 1,
 *   cells: cellFormat(map, null, fields),
 *   width: 80,
 *   height: 24,
 *   hint: "",
 *   fill: false,
 * };
 * console.log(renderFrame(snapshot, stats, snapshot.top(keysShown(spec)), spec).join("\n"));
 * ```
 */
export function renderFrame(
  snapshot: WatchSnapshot,
  stats: WatchStats,
  rows: Int32Array,
  spec: FrameSpec,
): string[] {
  const { fields } = snapshot;
  const cpuRows = spec.perCpu ? Array.from({ length: spec.cpus }, (_, c) => c) : [];
  const order = fields.map((_, f) => f);
  if (spec.sort > 0) order.unshift(...order.splice(spec.sort, 1));
  // A long key (a struct's) leaves room for the numbers: cut past 40% of the width.
  const keyWidth = Number.isFinite(spec.width) ? Math.max(16, Math.floor(spec.width * 0.4)) : 0;
  const columns: Column[] = [{ header: "KEY", right: false, cells: [], max: keyWidth }];
  const cpuColumn: Column = { header: "CPU", right: true, cells: [] };
  if (spec.perCpu) columns.push(cpuColumn);
  const fieldColumns = order.map((f) => ({
    f,
    value: { header: fieldLabel(fields[f]), right: true, cells: [] as string[] },
    rate: { header: `${fieldLabel(fields[f])}/s`, right: true, cells: [] as string[] },
  }));
  for (const c of fieldColumns) columns.push(c.value, c.rate);
  const change: Column = { header: "CHANGE", right: false, cells: [] };
  if (!fields.length) columns.push(change);
  const rest: Column = { header: fields.length ? "OTHER" : "VALUE", right: false, cells: [] };
  if (spec.cells.hasRest) columns.push(rest);

  const { keySize } = snapshot.shape;
  const seconds = snapshot.seconds;
  for (const i of rows) {
    const state = snapshot.state(i);
    const added = state === EntryState.added;
    const line = (cpu: number) => {
      for (const { f, value, rate } of fieldColumns) {
        value.cells.push(snapshot.value(i, f, cpu).toString());
        const delta = snapshot.delta(i, f, cpu);
        rate.cells.push(delta === undefined ? (seconds ? "new" : "-") : rateText(delta, seconds));
      }
      change.cells.push(
        added ? (seconds ? "new" : "") : state === EntryState.changed ? "changed" : "",
      );
      rest.cells.push(restText(snapshot, i, spec, cpu));
    };
    columns[0].cells.push(spec.cells.key(snapshot.keys, i * keySize));
    cpuColumn.cells.push("all");
    line(-1);
    for (const cpu of cpuRows) {
      columns[0].cells.push("");
      cpuColumn.cells.push(String(cpu));
      line(cpu);
    }
  }
  const lines = [title(snapshot, stats, spec), ...layout(columns)];
  if (spec.fill) {
    // A screen too short for one key and the footer loses rows, never the footer.
    lines.length = Math.min(lines.length, Math.max(1, spec.height - 1));
    while (lines.length < spec.height - 1) lines.push("");
  }
  lines.push(footer(stats, spec));
  return lines.map((line) => clip(line, spec.width));
}

/** The rest of entry `i`'s value on `cpu` (-1: CPU 0's, when every CPU's reads the same). */
function restText(
  snapshot: WatchSnapshot,
  i: number,
  spec: FrameSpec,
  cpu: number,
): string {
  if (!spec.cells.hasRest) return "";
  const { valueBytes, valueStride } = snapshot.shape;
  const at = (c: number) => spec.cells.rest(snapshot.values, i * valueBytes + c * valueStride);
  if (cpu >= 0) return at(cpu);
  const first = at(0);
  for (let c = 1; c < spec.cpus; c++) if (at(c) !== first) return "(differs by CPU)";
  return first;
}

/** Columns as lines: the header, then the cells, two spaces apart. */
function layout(columns: Column[]): string[] {
  for (const c of columns) {
    if (c.max) c.cells = c.cells.map((s) => s.length > c.max! ? `${s.slice(0, c.max! - 1)}~` : s);
  }
  const widths = columns.map((c) => Math.max(c.header.length, ...c.cells.map((s) => s.length)));
  const rows = columns[0].cells.length;
  const line = (cell: (c: Column) => string) =>
    columns.map((c, k) => {
      const text = cell(c);
      return c.right ? text.padStart(widths[k]) : text.padEnd(widths[k]);
    }).join("  ").trimEnd();
  const lines = [line((c) => c.header)];
  for (let r = 0; r < rows; r++) lines.push(line((c) => c.cells[r]));
  return lines;
}

function title(snapshot: WatchSnapshot, stats: WatchStats, spec: FrameSpec): string {
  const by = spec.sort >= 0 ? `${fieldLabel(snapshot.fields[spec.sort])}/s` : "change";
  const left = `${spec.subject}: ${
    counted(stats.entries, "key")
  }, every ${spec.interval} s, by ${by}`;
  const clock = new Date().toTimeString().slice(0, 8);
  if (!Number.isFinite(spec.width)) return `${left}  ${clock}`;
  const gap = spec.width - left.length - clock.length;
  return gap >= 2 ? left + " ".repeat(gap) + clock : left;
}

function footer(stats: WatchStats, spec: FrameSpec): string {
  const changes = stats.seconds === 0
    ? "the first read: rates from the next"
    : `${grouped(stats.changed)} changed, ${grouped(stats.added)} new, ${grouped(stats.gone)} gone`;
  const late = stats.walkMs + stats.diffMs > spec.interval * 1000
    ? " (slower than the interval)"
    : "";
  const method = `${METHOD_NAMES[stats.method]} (${counted(stats.syscalls, "call")})`;
  const hint = spec.hint ? `  ${spec.hint}` : "";
  return `walk ${stats.walkMs.toFixed(1)} ms by ${method}, diff ${
    stats.diffMs.toFixed(1)
  } ms${late}; ${changes}${hint}`;
}

/** A line cut to `width` characters. */
function clip(line: string, width: number): string {
  return line.length > width ? line.slice(0, width) : line;
}
