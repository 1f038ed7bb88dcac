/**
 * The churn study: a map of S stable keys, dumped by every method while writers insert and
 * delete transient keys (in user space, from another thread, and in the kernel, from a BPF
 * program run in a loop) at target rates or flat out. Per writer, rate and method: median
 * time, stable keys missed, stable keys the kernel's walk returned twice (dropped by the
 * dump), restarts, transient keys seen, dumps that gave up, and the writers' achieved rate.
 *
 * @module
 */

import {
  BpfMap,
  dumpMap,
  type DumpMethod,
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
  `usage: churn.ts [--stable N] [--transient N] [--type hash|lru_hash|percpu_hash] [--rates LIST]
                [--writers user,kernel] [--methods LIST] [--rounds R] [--parallel N] [--json] [--svg FILE]
  The churn study. Builds a --type map (default hash) of --stable keys (default 1,000,000)
  with room to spare, then, for each writer (user: another thread making UPDATE_ELEM and
  DELETE_ELEM calls; kernel: a BPF program run with BPF_PROG_TEST_RUN) and each --rates
  target (operations per second, or max; default 0,1e4,1e5,max), inserts and deletes
  --transient keys (default 1,000, never a stable one) while it dumps the map by each of
  --methods (default normal,batch,parallel,iter,snapshot,hybrid; the snapshot's methods are
  left out of per-CPU maps), --rounds times each (default 3). Prints
  per writer, rate and method: median seconds, stable keys missed, stable keys the kernel
  returned twice (dropped), restarts, transient keys seen, dumps that gave up, and the
  rate the writer achieved; --json prints one object per line, --svg draws the times.`;

/** Every method but the study's loop, which reports keys it never saw as seen. */
const METHODS: readonly DumpMethod[] = DUMP_METHODS.filter((m) => m !== "seed-compat");
const TYPES: readonly MapTypeName[] = ["hash", "lru_hash", "percpu_hash"];
const WRITERS = ["user", "kernel"] as const;
type Writer = typeof WRITERS[number];

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
  method: DumpMethod;
  seconds: number[];
  stableMissed: number[];
  stableRepeated: number[];
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
  return setting.writer === "user" ? startUserChurn(map, options) : startKernelChurn(map, options);
}

/** Marks stable keys seen (one bit each) and counts the rest. */
class StableTally {
  readonly #seen: Uint8Array;
  transient = 0;
  repeated = 0;
  readonly #stable: number;

  constructor(stable: number) {
    this.#stable = stable;
    this.#seen = new Uint8Array(Math.ceil(stable / 8));
  }

  static keyNumber(keys: Uint8Array, at: number): number {
    return (keys[at] | (keys[at + 1] << 8) | (keys[at + 2] << 16) | (keys[at + 3] << 24)) >>> 0;
  }

  see(key: number): void {
    if (key >= this.#stable) this.transient++;
    else this.#seen[key >>> 3] |= 1 << (key & 7);
  }

  repeat(key: number): void {
    if (key < this.#stable) this.repeated++;
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
    json: { type: "boolean" },
    svg: { type: "string" },
  });
  const stable = intFlag(flags.stable, "stable", 1_000_000, { max: 1 << 28 });
  const transient = intFlag(flags.transient, "transient", 1000, { max: 1 << 24 });
  const rates = parseRates(flags.rates ?? "0,1e4,1e5,max");
  const writers = parseList(flags.writers ?? "user,kernel", "writers", WRITERS);
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
  const maxEntries = 2 * (stable + transient);
  say(
    `filling a ${type} map of ${stable} stable keys (max_entries ${maxEntries}${
      type.startsWith("lru") ? ": room to spare, so the LRU map never evicts" : ""
    })`,
  );
  using map = BpfMap.create({ type, keySize: 4, valueSize: 8, maxEntries, name: "churn" });
  await fillMap(map, { entries: stable });
  // What this kernel refuses is a row that says why; the rest runs.
  const refused = new Map<DumpMethod | Writer, string>();
  for (const method of methods) {
    const why = methodUnavailable(method, map.info.type);
    if (why !== null) refused.set(method, why);
  }
  const kernelWriter = unavailableReason(...KERNEL_WRITER_FACILITIES);
  if (kernelWriter !== null) refused.set("kernel", kernelWriter);
  const runs = (method: DumpMethod) => methods.includes(method) && !refused.has(method);
  // The counts of each method's dumps, by a source that is not its own walk.
  const counters = new Map(
    methods.filter(runs).map((m) => [m, MapCounter.open(map, { method: m })]),
  );
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
          stableRepeated: [],
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
            const result = await dumpMap(map, {
              method,
              ranges: method === "parallel" ? ranges : undefined,
              pool: method === "hybrid" ? hybridPool : pool,
              iterator,
              snapshot,
              counter: counters.get(method),
              visit: (batch) => {
                for (let k = 0; k < batch.count; k++) {
                  tally.see(StableTally.keyNumber(batch.keys, k * 4));
                }
              },
              onRepeat: (key) => tally.repeat(StableTally.keyNumber(key, 0)),
            });
            row.seconds.push(result.seconds);
            row.restarts.push(result.restarts);
          } catch (e) {
            row.gaveUp++;
            row.errors.push((e as Error).message);
          }
          row.stableMissed.push(tally.missed());
          row.stableRepeated.push(tally.repeated);
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
    promisesStableKeysOnce(r.method) && Math.max(...r.stableMissed) > 0
  );
  if (broken) {
    throw new RuntimeError(
      `${broken.method} missed stable keys with the ${broken.writer} writer at ${broken.rate}/s`,
    );
  }
});

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
        stableRepeated: r.stableRepeated,
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
      "stable repeated (max)",
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
        most(r.stableRepeated),
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
