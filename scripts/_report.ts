/**
 * What scripts print besides their own lines: tables, progress bars on stderr, byte counts
 * and memory reports. Apart from `_cli.ts` so that scripts without them (`dump`, `maps`)
 * start without loading their npm packages.
 *
 * @module
 */

import process from "node:process";
import Table from "cli-table3";
// @ts-types="@types/cli-progress"
import cliProgress from "cli-progress";
import prettyBytes from "pretty-bytes";
import { probeFacility } from "../ffi/sys/features.ts";

/** Prints a table on stdout. */
export function printTable(head: string[], rows: (string | number)[][]): void {
  // No style colours: for them cli-table3 loads @colors/colors, which reads CI, TERM and the
  // like, env access no task grants (a prompt on a terminal). Cells come `paint`ed instead.
  const table = new Table({ head, style: { head: [], border: [] } });
  table.push(...rows.map((row) => row.map(String)));
  console.log(table.toString());
}

/** A progress bar on stderr (drawn only when stderr is a terminal). */
export function progressBar(
  total: number,
  label: string,
): cliProgress.SingleBar {
  const bar = new cliProgress.SingleBar({
    stream: process.stderr,
    format: `${label} [{bar}] {percentage}% {value}/{total} entries, ETA {eta}s`,
    hideCursor: true,
  }, cliProgress.Presets.shades_classic);
  bar.start(total, 0);
  return bar;
}

/** Formats bytes for people. */
export function bytes(value: number): string {
  return prettyBytes(value, { binary: true });
}

/**
 * `""` where a map's `memlock` is the kernel's own figure; else what it is: before Linux 6.4
 * the kernel reports an estimate from the map's sizes, well under what a hash map holds.
 */
export function memlockNote(): string {
  return probeFacility("map_memory").status === "unavailable"
    ? " (the kernel's estimate, sizes x max_entries: Linux 6.4+ accounts per map)"
    : "";
}

/** Prints a memory report like the study's `-mem` output. */
export function printMemory(
  title: string,
  m: { rss: number; heapTotal: number; heapUsed: number; external: number },
): void {
  console.log(`----- ${title} -----`);
  console.log(`rss = ${m.rss} (${bytes(m.rss)})`);
  console.log(`heapTotal = ${m.heapTotal} (${bytes(m.heapTotal)})`);
  console.log(`heapUsed = ${m.heapUsed} (${bytes(m.heapUsed)})`);
  console.log(`external = ${m.external} (${bytes(m.external)})`);
}
