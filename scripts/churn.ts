/**
 * The churn study: a map of S stable keys, dumped by every method and by the `dump` command
 * while writers insert and delete transient keys (in user space, from another thread, at
 * random or as a sliding window, and in the kernel, from a BPF program run in a loop) at
 * target rates or flat out. Per writer, rate and method: median time, stable keys missed,
 * stable keys handed over twice, stable keys the walk returned again and the dump dropped,
 * restarts, transient keys seen, dumps that gave up, and the writers' achieved rate. Exits 1
 * when a method that promises keys present throughout once missed one or gave one twice.
 *
 * @module
 */

import {
  BPFFS_ROOT,
  BpfMap,
  dumpMap,
  ensureBpffs,
  MapCounter,
  MapSnapshot,
  type MapTypeName,
  ParallelPool,
} from "../mod.ts";
import { DUMP_METHODS, promisesStableKeysOnce } from "../ffi/dump/dump.ts";
import { methodUnavailable } from "../ffi/dump/methods.ts";
import {
  type Churner,
  type ChurnResult,
  KERNEL_WRITER_FACILITIES,
  startKernelChurn,
  startUserChurn,
} from "../ffi/map/churn.ts";
import { unavailableReason } from "../ffi/sys/features.ts";
import { fillMap } from "../ffi/map/fill.ts";
import { MapIterator } from "../ffi/dump/iter.ts";
import { intFlag, paint, parseFlags, runMain, RuntimeError, summary, UsageError } from "./_cli.ts";
import { printTable } from "./_report.ts";
import { renderChart } from "./_charts.ts";

const USAGE =
  `usage: churn.ts [--stable N] [--transient N] [--max-entries N] [--type hash|lru_hash|percpu_hash]
                [--rates LIST] [--writers user,kernel,window] [--methods LIST] [--rounds R] [--parallel N]
                [--json] [--svg FILE]
  The churn study. Builds a --type map (default hash) of --stable keys (default 1,000,000)
  with room to spare (--max-entries, default twice the stable and transient keys), then, for
  each of --writers (default all three; user: another thread making UPDATE_ELEM and DELETE_ELEM calls on random
  transient keys; kernel: the same from a BPF program run with BPF_PROG_TEST_RUN; window:
  another thread inserting the transient keys in turn and deleting each --transient/2
  inserts later) and each --rates target (operations per second, or max; default
  0,1e4,1e5,max), writes --transient keys (default 1,000, never a stable one; about half
  present at once) while it dumps the map by each of --methods (default
  normal,batch,parallel,iter,snapshot,hybrid,dump; dump is the dump command itself, its
  default method, as a whole process on the pinned map; the snapshot's methods are left out
  of per-CPU maps), --rounds times each (default 3). Prints per writer, rate and method:
  median seconds, stable keys missed, stable keys handed over (or printed) twice, stable
  keys the walk returned again that the dump dropped (batch, parallel and dump keep no key
  set: a key they return twice is handed over twice), restarts, transient keys seen, dumps
  that gave up, and the rate the writer achieved; --json prints one object
  per line, --svg draws the times.`;

/**
 * Every method but the study's loop (which reports keys it never saw as seen), and `dump`:
 * the dump command, as a whole process.
 */
const METHODS = [...DUMP_METHODS.filter((m) => m !== "seed-compat"), "dump"] as const;
type StudyMethod = typeof METHODS[number];
const TYPES: readonly MapTypeName[] = ["hash", "lru_hash", "percpu_hash"];
const WRITERS = ["user", "kernel", "window"] as const;
type Writer = typeof WRITERS[number];
/** The repository root, where `deno task dump` is defined. */
const ROOT = new URL("..", import.meta.url).pathname;

/** One writer at one rate: `rate` 0 means no writer at all. */
interface Setting {
  writer: Writer | "none";
  rate: number | "max";
}

/** What the rounds of one method measured at one setting. */
interface Row {
  writer: Writer | "none";
  rate: number | "max";
  achieved: number | null;
  method: StudyMethod;
  seconds: number[];
  stableMissed: number[];
  /** Stable keys handed over (or printed) twice: a broken promise. */
  stableTwice: number[];
  /** Stable keys the walk returned again and the dump's key set dropped. */
  stableDropped: number[];
  restarts: number[];
  transientSeen: number[];
  gaveUp: number;
  errors: string[];
  /** Why this kernel cannot run the method, or the writer; `null` when the row ran. */
  unavailable: string | null;
}

function parseRates(text: string): (number | "max")[] {
  return text.split(",").map((word) => {
    if (word === "max") return "max";
    const rate = Number(word);
    if (!Number.isFinite(rate) || rate < 0) {
      throw new UsageError(`--rates takes numbers of operations per second or max, not "${word}"`);
    }
    return rate;
  });
}

function parseList<T extends string>(text: string, flag: string, known: readonly T[]): T[] {
  const words = text.split(",");
  for (const word of words) {
    if (!known.includes(word as T)) {
      throw new UsageError(`unknown --${flag} "${word}": use ${known.join(", ")}`);
    }
  }
  return words as T[];
}

/** The settings in order: no writer once, then each writer at each non-zero rate. */
function settings(rates: (number | "max")[], writers: Writer[]): Setting[] {
  const out: Setting[] = [];
  if (rates.includes(0)) out.push({ writer: "none", rate: 0 });
  for (const writer of writers) {
    for (const rate of rates) if (rate !== 0) out.push({ writer, rate });
  }
  return out;
}

function startWriter(map: BpfMap, setting: Setting, stable: number, transient: number) {
  if (setting.writer === "none") return Promise.resolve(undefined);
  const options = { first: stable, count: transient, rate: setting.rate };
  switch (setting.writer) {
    case "user":
      return startUserChurn(map, options);
    case "window":
      return startUserChurn(map, { ...options, pattern: "window" });
    case "kernel":
      return startKernelChurn(map, options);
  }
}

/** Marks stable keys seen (one bit each) and counts the rest. */
class StableTally {
  readonly #seen: Uint8Array;
  transient = 0;
  /** Stable keys handed over twice. */
  twice = 0;
  /** Stable keys the walk returned again, dropped by the dump. */
  dropped = 0;
  readonly #stable: number;

  constructor(stable: number) {
    this.#stable = stable;
    this.#seen = new Uint8Array(Math.ceil(stable / 8));
  }

  static keyNumber(keys: Uint8Array, at: number): number {
    return (keys[at] | (keys[at + 1] << 8) | (keys[at + 2] << 16) | (keys[at + 3] << 24)) >>> 0;
  }

  /** A key handed over: a stable key handed over before is counted twice. */
  see(key: number): void {
    if (key >= this.#stable) {
      this.transient++;
      return;
    }
    const mask = 1 << (key & 7);
    if (this.#seen[key >>> 3] & mask) this.twice++;
    this.#seen[key >>> 3] |= mask;
  }

  /** A key the walk returned again and the dump dropped. */
  repeat(key: number): void {
    if (key < this.#stable) this.dropped++;
  }

  /** Stable keys never seen. */
  missed(): number {
    let seen = 0;
    for (const byte of this.#seen) {
      let b = byte;
      while (b) {
        seen += b & 1;
        b >>>= 1;
      }
    }
    return this.#stable - seen;
  }
}

await runMain(USAGE, async () => {
  const flags = parseFlags({
    stable: { type: "string" },
    transient: { type: "string" },
    type: { type: "string" },
    rates: { type: "string" },
    writers: { type: "string" },
    methods: { type: "string" },
    rounds: { type: "string" },
    parallel: { type: "string" },
    "max-entries": { type: "string" },
    json: { type: "boolean" },
    svg: { type: "string" },
  });
  const stable = intFlag(flags.stable, "stable", 1_000_000, { max: 1 << 28 });
  const transient = intFlag(flags.transient, "transient", 1000, { max: 1 << 24 });
  const rates = parseRates(flags.rates ?? "0,1e4,1e5,max");
  const writers = parseList(flags.writers ?? WRITERS.join(","), "writers", WRITERS);
  const type = parseList(flags.type ?? "hash", "type", TYPES)[0];
  // The snapshot sees one CPU's values of a per-CPU map: left out by default, refused if named.
  const defaults = type === "percpu_hash"
    ? METHODS.filter((m) => m !== "snapshot" && m !== "hybrid")
    : METHODS;
  const methods = parseList(flags.methods ?? defaults.join(","), "methods", METHODS);
  const rounds = intFlag(flags.rounds, "rounds", 3, { max: 1000 });
  const ranges = intFlag(flags.parallel, "parallel", navigator.hardwareConcurrency, { max: 64 });
  const say = flags.json ? () => {} : (text: string) => console.error(text);

  // Room for the stable keys, every transient key at once and as much again: hash maps never
  // fill, and LRU maps (which evict once full) never evict.
  const maxEntries = intFlag(flags["max-entries"], "max-entries", 2 * (stable + transient), {
    max: 1 << 30,
  });
  if (maxEntries < stable + transient) {
    throw new UsageError(
      `--max-entries ${maxEntries} leaves no room for ${stable} stable and ${transient} transient keys`,
    );
  }
  say(
    `filling a ${type} map of ${stable} stable keys (max_entries ${maxEntries}${
      type.startsWith("lru") ? ": room to spare, so the LRU map never evicts" : ""
    })`,
  );
  using map = BpfMap.create({ type, keySize: 4, valueSize: 8, maxEntries, name: "churn" });
  await fillMap(map, { entries: stable });
  // What this kernel refuses is a row that says why; the rest runs.
  const refused = new Map<StudyMethod | Writer, string>();
  for (const method of methods) {
    const why = method === "dump" ? null : methodUnavailable(method, map.info.type);
    if (why !== null) refused.set(method, why);
  }
  const kernelWriter = unavailableReason(...KERNEL_WRITER_FACILITIES);
  if (kernelWriter !== null) refused.set("kernel", kernelWriter);
  const runs = (method: StudyMethod) => methods.includes(method) && !refused.has(method);
  // The counts of each method's dumps, by a source that is not its own walk.
  const counters = new Map(
    methods.filter((m): m is Exclude<StudyMethod, "dump"> => m !== "dump" && runs(m)).map((m) => [
      m,
      MapCounter.open(map, { method: m }),
    ]),
  );
  // The dump command reads the map by its pin.
  const pin = runs("dump") ? `${BPFFS_ROOT}/deno-bpf-batch-churn-${Deno.pid}` : undefined;
  if (pin) {
    ensureBpffs(pin);
    map.pin(pin);
  }
  using _pin = { [Symbol.dispose]: () => pin && Deno.removeSync(pin) };
  using _counters = { [Symbol.dispose]: () => counters.forEach((c) => c.close()) };
  using pool = await ParallelPool.forRanges(ranges);
  using iterator = runs("iter") ? MapIterator.attach(map) : undefined;
  using snapshot = runs("snapshot") || runs("hybrid") ? MapSnapshot.open(map) : undefined;
  using hybridPool = runs("hybrid")
    ? await ParallelPool.start(Math.max(1, navigator.hardwareConcurrency - 1))
    : undefined;

  const rows: Row[] = [];
  for (const setting of settings(rates, writers)) {
    const writerRefused = setting.writer === "none" ? undefined : refused.get(setting.writer);
    const churner: Churner | undefined = writerRefused === undefined
      ? await startWriter(map, setting, stable, transient)
      : undefined;
    const started = rows.length;
    try {
      for (const method of methods) {
        const why = writerRefused ?? refused.get(method);
        rows.push({
          ...setting,
          achieved: null,
          method,
          seconds: [],
          stableMissed: [],
          stableTwice: [],
          stableDropped: [],
          restarts: [],
          transientSeen: [],
          gaveUp: 0,
          errors: [],
          unavailable: why === undefined
            ? null
            : writerRefused
            ? `the ${setting.writer} writer: ${why}`
            : why,
        });
      }
      for (let round = 0; round < rounds; round++) {
        for (const [i, method] of methods.entries()) {
          const row = rows[started + i];
          if (row.unavailable !== null) continue;
          say(`${setting.writer} @ ${setting.rate}: round ${round + 1}/${rounds}: ${method}`);
          const tally = new StableTally(stable);
          try {
            const dumped = method === "dump" ? await dumpCommand(pin!, tally) : await dumpMap(map, {
              method,
              ranges: method === "parallel" ? ranges : undefined,
              pool: method === "hybrid" ? hybridPool : pool,
              iterator,
              snapshot,
              counter: counters.get(method),
              // Batch walks keep no key set, as the dump command: a key they returned
              // twice would be handed over twice, and counted here.
              trackKeys: method !== "batch" && method !== "parallel",
              visit: (batch) => {
                for (let k = 0; k < batch.count; k++) {
                  tally.see(StableTally.keyNumber(batch.keys, k * 4));
                }
              },
              onRepeat: (key) => tally.repeat(StableTally.keyNumber(key, 0)),
            });
            row.seconds.push(dumped.seconds);
            row.restarts.push(dumped.restarts);
          } catch (e) {
            row.gaveUp++;
            row.errors.push((e as Error).message);
          }
          row.stableMissed.push(tally.missed());
          row.stableTwice.push(tally.twice);
          row.stableDropped.push(tally.dropped);
          row.transientSeen.push(tally.transient);
        }
      }
    } finally {
      const achieved: ChurnResult | undefined = await churner?.stop();
      for (const row of rows.slice(started)) row.achieved = achieved?.rate ?? null;
    }
  }
  report(rows, { stable, transient, type, rounds }, flags);
  if (flags.svg !== undefined) {
    Deno.writeTextFileSync(flags.svg, await renderChart(chartSpec(rows, stable, type)));
    if (!flags.json) console.log(`chart written to ${flags.svg}`);
  }
  // Only the methods that promise stable keys once can break that promise.
  const broken = rows.find((r) =>
    (r.method === "dump" || promisesStableKeysOnce(r.method)) &&
    Math.max(0, ...r.stableMissed, ...r.stableTwice) > 0
  );
  if (broken) {
    throw new RuntimeError(
      `${broken.method} missed stable keys, or reported them twice, with the ${broken.writer} writer at ${broken.rate}/s`,
    );
  }
});

/**
 * Runs the dump command (`deno task -q dump --pin PIN --jsonl`, its default method) as a
 * whole process and tallies the keys it printed; its seconds are the process's, start to exit.
 */
async function dumpCommand(
  pin: string,
  tally: StableTally,
): Promise<{ seconds: number; restarts: number }> {
  const started = performance.now();
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "dump", "--pin", pin, "--jsonl"],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const seconds = (performance.now() - started) / 1000;
  if (!output.success) {
    const said = new TextDecoder().decode(output.stderr).trim().split("\n").at(-1);
    throw new Error(`dump failed: ${said || `exit ${output.code}`}`);
  }
  for (const key of jsonlKeys(output.stdout)) tally.see(key);
  return { seconds, restarts: 0 };
}

/** The keys of `dump --jsonl`'s lines for a map without BTF (`{"key":N,...}`), in order. */
function* jsonlKeys(bytes: Uint8Array): Generator<number> {
  const PREFIX = '{"key":';
  for (let at = 0; at < bytes.length;) {
    for (let i = 0; i < PREFIX.length; i++) {
      if (bytes[at + i] !== PREFIX.charCodeAt(i)) {
        throw new Error(`dump --jsonl printed an unexpected line at byte ${at}`);
      }
    }
    let key = 0;
    let i = at + PREFIX.length;
    while (bytes[i] >= 0x30 && bytes[i] <= 0x39) key = key * 10 + bytes[i++] - 0x30;
    yield key;
    const end = bytes.indexOf(0x0a, i);
    at = end < 0 ? bytes.length : end + 1;
  }
}

function median(values: number[]): number | null {
  return values.length ? summary(values).median : null;
}

function most(values: number[]): number {
  return values.length ? Math.max(...values) : 0;
}

function report(
  rows: Row[],
  study: { stable: number; transient: number; type: MapTypeName; rounds: number },
  flags: { json?: boolean },
): void {
  if (flags.json) {
    for (const r of rows) {
      console.log(JSON.stringify({
        writer: r.writer,
        rate: r.rate,
        achieved: r.achieved,
        method: r.method,
        ...study,
        median: median(r.seconds),
        seconds: r.seconds,
        stableMissed: r.stableMissed,
        stableTwice: r.stableTwice,
        stableDropped: r.stableDropped,
        restarts: r.restarts,
        transientSeen: r.transientSeen,
        gaveUp: r.gaveUp,
        errors: r.errors,
        unavailable: r.unavailable,
      }));
    }
    return;
  }
  console.log(
    `${study.type} map, ${study.stable} stable keys, ${study.transient} transient keys, ${study.rounds} rounds each`,
  );
  printTable(
    [
      "writer",
      "target ops/s",
      "achieved ops/s",
      "method",
      "median s",
      "stable missed (max)",
      "stable twice (max)",
      "repeats dropped (max)",
      "restarts (median)",
      "transient seen (median)",
      "gave up",
    ],
    rows.map((r) => {
      if (r.unavailable !== null) {
        return [r.writer, String(r.rate), "-", r.method, paint("yellow", "unavailable")];
      }
      const missed = most(r.stableMissed);
      return [
        r.writer,
        String(r.rate),
        r.achieved === null ? "-" : Math.round(r.achieved),
        r.method,
        median(r.seconds)?.toFixed(3) ?? "-",
        missed ? paint("red", String(missed)) : 0,
        most(r.stableTwice) ? paint("red", String(most(r.stableTwice))) : 0,
        most(r.stableDropped),
        median(r.restarts) ?? "-",
        median(r.transientSeen) ?? "-",
        r.gaveUp ? paint("yellow", `${r.gaveUp}/${r.seconds.length + r.gaveUp}`) : 0,
      ];
    }),
  );
  const reasons = new Set(rows.map((r) => r.unavailable).filter((why) => why !== null));
  for (const why of reasons) {
    const which = [...new Set(rows.filter((r) => r.unavailable === why).map((r) => r.method))];
    console.log(paint("yellow", `unavailable (${which.join(", ")}): ${why}`));
  }
}

/** Median seconds per method, by writer and target rate. */
function chartSpec(rows: Row[], stable: number, type: string) {
  return {
    title: `Dumping a ${stable.toLocaleString("en")}-key ${type} map while it is written`,
    data: {
      values: rows.filter((r) => r.seconds.length).map((r) => ({
        setting: r.writer === "none" ? "no writer" : `${r.writer}, ${r.rate}/s`,
        method: r.method,
        seconds: median(r.seconds),
      })),
    },
    mark: { type: "bar" },
    encoding: {
      y: { field: "setting", type: "nominal", title: null, sort: null },
      yOffset: { field: "method" },
      x: { field: "seconds", type: "quantitative", title: "median seconds of the dump" },
      color: { field: "method", type: "nominal" },
    },
    width: 520,
  } as const;
}
