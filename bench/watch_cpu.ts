/**
 * The CPU `map watch` takes: `scripts/map.ts watch pinned PIN` run as a whole process (its
 * frames piped here and read for their footers), its CPU time (utime + stime of every thread,
 * from `/proc/PID/stat`) taken over `--seconds` after a warm-up, as a share of one CPU. Twice:
 * on the map left alone, then while a kernel writer (`startKernelChurn`, on a Worker of this
 * process, so not counted) makes `--rate` operations per second: a quarter rewrite values of
 * the keys `0 .. --stable - 1`, the others insert, rewrite and delete `--transient` keys after
 * them (refused in a full map). Issue 18 asks for under 50% of one CPU at one read per second
 * of a 1,000,000-entry hash map. The first command below watches the peer's full map, whose
 * keys only change values; the second a map of its own with room for 100,000 more keys,
 * inserted and deleted meanwhile (so that keys shift, and the diff pairs them by index):
 *
 * ```console
 * $ sudo ../shared/peers/c/peer mkmap /sys/fs/bpf/w1m 1000000
 * $ sudo deno run --allow-all bench/watch_cpu.ts --pin /sys/fs/bpf/w1m
 * $ sudo deno run --allow-all bench/watch_cpu.ts --room 1000000 --transient 100000
 * ```
 *
 * @module
 */

import { BpfMap, fillMap, startKernelChurn } from "../mod.ts";
import { intFlag, parseFlags, runMain, summary, UsageError } from "../scripts/_cli.ts";

const USAGE =
  `usage: watch_cpu.ts [--pin PATH] [--seconds S] [--interval S] [--rate OPS] [--warmup S]
                    [--stable N] [--transient N] [--room N]
  Runs map watch on the map pinned at --pin (default /sys/fs/bpf/w1m; make it with
  "../shared/peers/c/peer mkmap /sys/fs/bpf/w1m 1000000") every --interval seconds (default 1)
  and prints the CPU time of its process over --seconds (default 20) after --warmup seconds
  (default 3) as a share of one CPU: on the map left alone, then while a kernel writer makes
  --rate operations per second (default 300000; 0 skips it). A quarter of them rewrite the
  values of keys 0 .. --stable - 1 (default the map's max_entries); the others insert,
  rewrite and delete the --transient keys after them (default 1; refused in a full map).
  --room N watches a map of its own instead: N u32 keys of u32 values, room for --transient
  more, pinned at /sys/fs/bpf/watch_cpu_PID while it runs (--stable is then N).`;

const ROOT = new URL("..", import.meta.url).pathname;
/** Clock ticks per second of `/proc/PID/stat`'s times (`sysconf(_SC_CLK_TCK)` on Linux). */
const CLOCK_TICKS = 100;

/** utime + stime of process `pid`, in seconds. */
function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // Fields after the command name (in parentheses, which may hold spaces): state is field 3.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** What one run measured. */
interface Run {
  /** CPU seconds per wall second over the measured span. */
  share: number;
  /** Frames drawn in the measured span. */
  frames: number;
  /** Walk and diff milliseconds of those frames (medians). */
  walkMs: number;
  diffMs: number;
  /** Changed keys per frame (median). */
  changed: number;
  /** The footer of the last frame. */
  footer: string;
}

/** Runs the watch for `warmup + seconds`; measures the last `seconds`. */
async function measure(pin: string, interval: number, warmup: number, seconds: number) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      `${ROOT}scripts/map.ts`,
      "watch",
      "pinned",
      pin,
      "--interval",
      String(interval),
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const footers: { at: number; line: string }[] = [];
  const reading = (async () => {
    let pending = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) {
        if (line.startsWith("walk ")) footers.push({ at: performance.now(), line });
      }
    }
  })();
  await new Promise((r) => setTimeout(r, warmup * 1000));
  const start = performance.now();
  const before = cpuSeconds(child.pid);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const used = cpuSeconds(child.pid) - before;
  const span = (performance.now() - start) / 1000;
  child.kill("SIGINT");
  const status = await child.status;
  await reading;
  if (status.code !== 0) throw new Error(`map watch exited with status ${status.code}`);
  const counted = footers.filter((f) => f.at >= start);
  const number = (re: RegExp) =>
    summary(counted.map((f) => Number(re.exec(f.line)?.[1]?.replaceAll(",", "") ?? NaN))).median;
  return {
    share: used / span,
    frames: counted.length,
    walkMs: number(/^walk ([\d.]+) ms/),
    diffMs: number(/diff ([\d.]+) ms/),
    changed: number(/; ([\d,]+) changed/),
    footer: counted.at(-1)?.line ?? "",
  } satisfies Run;
}

function report(label: string, run: Run): void {
  console.log(
    `${label}: ${(run.share * 100).toFixed(1)}% of one CPU; ${run.frames} frames, median walk ${
      run.walkMs.toFixed(1)
    } ms, diff ${run.diffMs.toFixed(1)} ms, ${run.changed} keys changed per frame`,
  );
  console.log(`  last footer: ${run.footer}`);
}

/** What the runs take from the command line. */
interface Settings {
  seconds: number;
  warmup: number;
  rate: number;
  interval: number;
  /** Keys whose values the writer rewrites (`undefined`: the map's max_entries). */
  stable: number | undefined;
  transient: number;
}

/** Both runs on the map pinned at `pin`: left alone, then with the writer. */
async function watchCpu(pin: string, settings: Settings): Promise<void> {
  const { seconds, warmup, rate, interval, transient } = settings;
  using map = BpfMap.fromPin(pin);
  console.log(
    `map watch on ${map.subject} (${map.typeName}, ${map.info.maxEntries} entries at most), every ${interval} s, CPU over ${seconds} s after ${warmup} s`,
  );
  report("left alone", await measure(pin, interval, warmup, seconds));
  if (rate === 0) return;
  const stable = settings.stable ?? map.info.maxEntries;
  await using churner = await startKernelChurn(map, {
    first: stable,
    count: transient,
    rate,
    rewriteStable: stable,
  });
  report(`with a writer at ${rate} ops/s`, await measure(pin, interval, warmup, seconds));
  const done = await churner.stop();
  console.log(`  writer: ${Math.round(done.rate)} ops/s done, ${done.failed} refused`);
}

/** A map of `room` u32 keys with room for `transient` more, pinned at `pin` until disposed. */
async function roomyMap(pin: string, room: number, transient: number): Promise<Disposable> {
  using map = BpfMap.create({
    type: "hash",
    keySize: 4,
    valueSize: 4,
    maxEntries: room + transient,
    name: "watch_cpu",
  });
  await fillMap(map, { entries: room });
  map.pin(pin);
  return { [Symbol.dispose]: () => Deno.removeSync(pin) };
}

if (import.meta.main) {
  await runMain(USAGE, async () => {
    const flags = parseFlags({
      pin: { type: "string" },
      seconds: { type: "string" },
      interval: { type: "string" },
      rate: { type: "string" },
      warmup: { type: "string" },
      stable: { type: "string" },
      transient: { type: "string" },
      room: { type: "string" },
    });
    const interval = Number(flags.interval ?? 1);
    if (!(interval > 0)) throw new UsageError(`--interval takes seconds, not "${flags.interval}"`);
    const room = flags.room === undefined ? undefined : intFlag(flags.room, "room", 0);
    if (room !== undefined && flags.pin !== undefined) {
      throw new UsageError("give --pin or --room, not both");
    }
    const settings: Settings = {
      seconds: intFlag(flags.seconds, "seconds", 20),
      warmup: intFlag(flags.warmup, "warmup", 3, { min: 0 }),
      rate: intFlag(flags.rate, "rate", 300_000, { min: 0 }),
      interval,
      stable: room ?? (flags.stable === undefined ? undefined : intFlag(flags.stable, "stable", 0)),
      transient: intFlag(flags.transient, "transient", 1),
    };
    if (room === undefined) return await watchCpu(flags.pin ?? "/sys/fs/bpf/w1m", settings);
    const pin = `/sys/fs/bpf/watch_cpu_${Deno.pid}`;
    using _made = await roomyMap(pin, room, settings.transient);
    await watchCpu(pin, settings);
  });
}
