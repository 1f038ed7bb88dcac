/**
 * `map restore` of a saved u32 -> u32 hash map against the C reference and bpftool, whole
 * processes timed side by side, in turn (ours, C, bpftool, ours, ...), each run into a map of
 * its own:
 *
 * - ours: `deno run <the map task's flags> scripts/map.ts restore FILE pinned PIN`, FILE made
 *   by `map save` of a map the C reference filled (N entries, max_entries N);
 * - C: `peer mkmap PIN N` (`bench/peers/c`, `make peers`): creates the same map and fills it
 *   with `UPDATE_BATCH` from keys and values it makes in memory;
 * - bpftool: `bpftool batch file F`, F a `map create` line and N lines of
 *   `map update pinned PIN key hex .. value hex ..`, the same entries.
 *
 * Prints the median wall seconds of each with their range (fastest to slowest), and the median
 * and range of the ratios of each round's pair. Our restore of a million entries writes in
 * parts at once, one per CPU (see `restoreMap`).
 *
 * ```console
 * $ sudo make peers
 * $ sudo deno run --allow-all bench/restore_compare.ts --entries 1000000 --runs 7
 * ```
 *
 * `--c PATH` runs another C reference taking `mkmap PIN N`; `--bpftool-runs N` (default 3)
 * bounds bpftool's slow runs; `--keep` keeps the files in the temporary folder it names. The
 * maps of every run stay pinned until the end (so that no run shares the CPUs with the
 * kernel freeing the map before it): about 80 MiB of kernel memory each at a million entries.
 *
 * `--recycle` removes each round's maps after the round instead, and pauses half a second for
 * the kernel to free them, so that the next round's maps are made of memory just used. On a VM
 * that hands freed memory back to its host (free page reporting), memory the guest has not
 * used lately costs a host fault per page on first use: creating a million-entry map then
 * takes about 215 ms instead of 28 ms (measured here), for every tool alike, and the maps kept
 * pinned reach that memory after a few rounds.
 *
 * @module
 */

import { parseArgs } from "node:util";

const ROOT = new URL("../", import.meta.url).pathname;
const { values: flags } = parseArgs({
  options: {
    entries: { type: "string", default: "1000000" },
    runs: { type: "string", default: "5" },
    "bpftool-runs": { type: "string", default: "3" },
    c: { type: "string", default: `${ROOT}build/peers/c/peer` },
    keep: { type: "boolean", default: false },
    recycle: { type: "boolean", default: false },
  },
});
const ENTRIES = Number(flags.entries);
const RUNS = Number(flags.runs);
const BPFTOOL_RUNS = Number(flags["bpftool-runs"]);

/** The flags the `map` task runs `scripts/map.ts` with (the permissions a user's run has). */
function mapTaskFlags(): string[] {
  const tasks = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).tasks;
  const words = (tasks.map as string).split(/\s+/);
  return words.slice(2, -1);
}

/** Runs `command` to its end; returns its wall seconds (it must succeed). */
async function timed(command: string[]): Promise<number> {
  const start = performance.now();
  const child = new Deno.Command(command[0], {
    args: command.slice(1),
    cwd: ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const { success, stderr } = await child.output();
  const seconds = (performance.now() - start) / 1000;
  if (!success) throw new Error(`${command.join(" ")}: ${new TextDecoder().decode(stderr)}`);
  return seconds;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Removes the pins at `paths` (`--recycle`), then gives the kernel time to free their maps. */
async function recycle(...paths: string[]): Promise<void> {
  for (const path of paths) Deno.removeSync(path);
  await new Promise((resolve) => setTimeout(resolve, 500));
}

const dir = Deno.makeTempDirSync({ prefix: "restore_compare_" });
const pins: string[] = [];
const pin = (name: string) => {
  const path = `/sys/fs/bpf/restore_compare_${Deno.pid}_${name}`;
  pins.push(path);
  return path;
};

try {
  const source = pin("source");
  const save = `${dir}/map.save`;
  const batch = `${dir}/bpftool.batch`;
  await timed([flags.c, "mkmap", source, String(ENTRIES)]);
  const deno = [Deno.execPath(), "run", ...mapTaskFlags(), "scripts/map.ts"];
  await timed([...deno, "save", "pinned", source, save]);
  const target = pin("bpftool");
  const lines = [`map create ${target} type hash key 4 value 4 entries ${ENTRIES} name test_map`];
  const hex = (n: number) => n.toString(16).padStart(2, "0");
  for (let i = 0; i < ENTRIES; i++) {
    const key = [i & 0xff, (i >>> 8) & 0xff, (i >>> 16) & 0xff, i >>> 24].map(hex).join(" ");
    lines.push(`map update pinned ${target} key hex ${key} value hex ef be ad de`);
  }
  Deno.writeTextFileSync(batch, lines.join("\n") + "\n");

  const times: Record<"ours" | "c" | "bpftool", number[]> = { ours: [], c: [], bpftool: [] };
  for (let round = -1; round < RUNS; round++) {
    // Round -1 warms the caches up and is not counted.
    const [oursPin, cPin] = [pin(`ours${round}`), pin(`c${round}`)];
    const ours = await timed([...deno, "restore", save, "pinned", oursPin]);
    const c = await timed([flags.c, "mkmap", cPin, String(ENTRIES)]);
    if (flags.recycle) await recycle(oursPin, cPin);
    if (round < 0) continue;
    times.ours.push(ours);
    times.c.push(c);
    if (round < BPFTOOL_RUNS) {
      try {
        Deno.removeSync(target);
      } catch { /* first round */ }
      times.bpftool.push(await timed(["bpftool", "batch", "file", batch]));
    }
  }
  /** `a[i] / b[i]` over the rounds both ran. */
  const ratios = (a: number[], b: number[]) => {
    const n = Math.min(a.length, b.length);
    return a.slice(0, n).map((x, i) => x / b[i]);
  };
  /** The median of `xs` and their range, each with `digits` decimals. */
  const spread = (xs: number[], digits: number, unit: string) =>
    `${median(xs).toFixed(digits)}${unit} (${Math.min(...xs).toFixed(digits)} to ${
      Math.max(...xs).toFixed(digits)
    }, ${xs.length} runs)`;
  console.log(`restore of ${ENTRIES} u32 -> u32 entries, whole processes, wall seconds:`);
  console.log(`  map restore (ours)   ${spread(times.ours, 3, " s")}`);
  console.log(`  C: peer mkmap        ${spread(times.c, 3, " s")}`);
  if (times.bpftool.length) console.log(`  bpftool batch file   ${spread(times.bpftool, 3, " s")}`);
  const raw = (xs: number[]) => xs.map((x) => x.toFixed(3)).join(" ");
  console.log(`  in the order run: ours ${raw(times.ours)}; C ${raw(times.c)}`);
  if (times.bpftool.length) console.log(`  bpftool ${raw(times.bpftool)}`);
  console.log(`each round's ratio, median (range):`);
  console.log(`  ours / C         ${spread(ratios(times.ours, times.c), 2, "x")}`);
  if (times.bpftool.length) {
    console.log(`  bpftool / ours   ${spread(ratios(times.bpftool, times.ours), 1, "x")}`);
    console.log(`  bpftool / C      ${spread(ratios(times.bpftool, times.c), 1, "x")}`);
  }
} finally {
  for (const path of pins) {
    try {
      Deno.removeSync(path);
    } catch { /* not made */ }
  }
  if (flags.keep) console.log(`files kept in ${dir}`);
  else Deno.removeSync(dir, { recursive: true });
}
