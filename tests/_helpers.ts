/**
 * Shared test helpers: the BPF availability gate (a skipped BPF test is an error when
 * `REQUIRE_BPF=1`, as in CI), the gate of tests that need a kernel facility (skipped only when
 * the probe says this kernel refuses it, and recorded with the probe's reason), tests run in
 * a child with facilities denied, and small fill/collect helpers over real maps.
 *
 * @module
 */

import {
  type BackendName,
  BACKENDS,
  BpfMap,
  deniedFacilities,
  type Facility,
  MapType,
  type MapTypeName,
  possibleCpus,
  probeFacility,
} from "../mod.ts";

function probeBpf(): string | undefined {
  try {
    BpfMap.create({ type: "hash", keySize: 4, valueSize: 4, maxEntries: 1 }).close();
    return undefined;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

/** Why BPF tests cannot run here, or `undefined` when they can. */
export const BPF_UNAVAILABLE: string | undefined = probeBpf();

if (BPF_UNAVAILABLE !== undefined && Deno.env.get("REQUIRE_BPF") === "1") {
  throw new Error(`REQUIRE_BPF=1 but BPF maps cannot be created: ${BPF_UNAVAILABLE}`);
}

/** Registers a test that needs the kernel's BPF; ignored (never silently passed) without it. */
export function bpfTest(name: string, fn: (t: Deno.TestContext) => void | Promise<void>): void {
  Deno.test({ name, ignore: BPF_UNAVAILABLE !== undefined, fn });
}

/** A test skipped for a facility this kernel refuses, as the skip log records it. */
export interface SkipRecord {
  /** The test's name. */
  test: string;
  /** The test file. */
  file: string;
  /** The facility the probe found unavailable. */
  facility: Facility;
  /** The probe's reason. */
  reason: string;
}

/**
 * Where this run records its skips, a JSON line each: `BPF_SKIP_LOG` (CI sets it and checks
 * each skip against the probe), else a file of this `deno test` process under `build/`.
 */
export const SKIP_LOG: string = Deno.env.get("BPF_SKIP_LOG") ??
  `${new URL("../build/test-skips", import.meta.url).pathname}/${Deno.pid}.jsonl`;

/**
 * The first of `facilities` that this kernel refuses, as the probe found it (a facility the
 * probe could not tell about is tried: the test says what happens).
 */
function refusedFacility(facilities: readonly Facility[]) {
  return facilities.map(probeFacility).find((answer) => answer.status === "unavailable");
}

/** Appends a skip to `SKIP_LOG` (not for a facility denied by `BPF_DENY`: that is a test's own doing). */
function recordSkip(test: string, file: string, facility: Facility, reason: string): void {
  if (deniedFacilities().has(facility)) return;
  const record: SkipRecord = { test, file: file.replace(ROOT, ""), facility, reason };
  Deno.mkdirSync(SKIP_LOG.slice(0, SKIP_LOG.lastIndexOf("/")), { recursive: true });
  Deno.writeTextFileSync(SKIP_LOG, `${JSON.stringify(record)}\n`, { append: true });
}

/**
 * Registers a BPF test that needs `facilities` of the kernel (from `fileUrl`, the test file's
 * `import.meta.url`). Where the probe says this kernel refuses one, the test is ignored and
 * the probe's reason recorded: listed at the end of the run (`zz_skips_test.ts`), and checked
 * by CI, which fails a skip whose facility the probe finds available.
 */
export function facilityTest(
  fileUrl: string,
  name: string,
  facilities: readonly Facility[],
  fn: (t: Deno.TestContext) => void | Promise<void>,
): void {
  const refused = BPF_UNAVAILABLE === undefined ? refusedFacility(facilities) : undefined;
  if (refused) recordSkip(name, new URL(fileUrl).pathname, refused.facility, refused.reason!);
  Deno.test({ name, ignore: BPF_UNAVAILABLE !== undefined || refused !== undefined, fn });
}

/** Both backends, for tests that run every behaviour on each. */
export const ALL_BACKENDS: readonly BackendName[] = BACKENDS;

/** Every map type the toolkit supports. */
export const MAP_TYPES: readonly MapTypeName[] = Object.keys(MapType) as MapTypeName[];

/** The hash-family types (their batch cursor is a bucket index; keys may be any size). */
export const HASH_TYPES: readonly MapTypeName[] = MAP_TYPES.filter((type) =>
  !type.endsWith("array")
);

/**
 * The `max_entries` a map of `type` needs to hold `entries` keys with none evicted. An LRU map
 * evicts before it is full: each CPU that inserts takes up to 128 free elements to its own
 * list first (the kernel's `LOCAL_FREE_TARGET`), so a writer that moves between CPUs can find
 * the shared list empty and evict while other CPUs hold free elements. LRU maps get room for
 * every CPU's list on top of `entries`; other types get `entries`.
 */
export function roomFor(type: MapTypeName, entries: number): number {
  return type.startsWith("lru") ? entries + possibleCpus() * 128 : entries;
}

const libc = Deno.dlopen("libc.so.6", {
  sched_getaffinity: { parameters: ["i32", "usize", "buffer"], result: "i32" },
  sched_setaffinity: { parameters: ["i32", "usize", "buffer"], result: "i32" },
});

/**
 * Runs `fn` with the calling thread held on CPU `cpu`, then lets it run where it ran before.
 * Tests use it to move a writer between CPUs where per-CPU kernel state makes that matter.
 */
export function onCpu<T>(cpu: number, fn: () => T): T {
  const before = new Uint8Array(128);
  if (libc.symbols.sched_getaffinity(0, BigInt(before.length), before) !== 0) {
    throw new Error("sched_getaffinity failed");
  }
  const only = new Uint8Array(128);
  only[cpu >> 3] = 1 << (cpu & 7);
  if (libc.symbols.sched_setaffinity(0, BigInt(only.length), only) !== 0) {
    throw new Error(`cannot hold this thread on CPU ${cpu}`);
  }
  try {
    return fn();
  } finally {
    libc.symbols.sched_setaffinity(0, BigInt(before.length), before);
  }
}

/** Registers one BPF test per backend and type, named `<what> [<type>, <backend>]`. */
export function eachTypeAndBackend(
  types: readonly MapTypeName[],
  what: string,
  fn: (type: MapTypeName, backend: BackendName) => void | Promise<void>,
): void {
  for (const backend of ALL_BACKENDS) {
    for (const type of types) bpfTest(`${what} [${type}, ${backend}]`, () => fn(type, backend));
  }
}

/**
 * How a verdict names a count of `n` entries (a regular expression's source): `kernel count
 * n`, or, where the kernel keeps no count, `count n by a bpf_for_each_map_elem pass` and the
 * like. `n` may be a pattern itself (`\\d+ -> \\d+`).
 */
export function countOf(n: number | string): string {
  return `(?:kernel count ${n}|count ${n} by [^)]+)`;
}

/** Packs u32 values into little-endian bytes. */
export function u32Bytes(...values: number[]): Uint8Array {
  const bytes = new Uint8Array(values.length * 4);
  const view = new DataView(bytes.buffer);
  values.forEach((v, i) => view.setUint32(i * 4, v, true));
  return bytes;
}

/** Reads the `index`-th little-endian u32 of `bytes`. */
export function u32At(bytes: Uint8Array, index = 0): number {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(index * 4, true);
}

/** The path of the repository root (for `Deno.Command` tests). */
export const ROOT = new URL("..", import.meta.url).pathname;

/** What a finished script run left behind. */
export interface ScriptRun {
  /** Exit code. */
  code: number;
  /** Everything printed on stdout. */
  stdout: string;
  /** Everything printed on stderr. */
  stderr: string;
}

/** The `deno run` flags of the task that runs `scripts/<script>`, as `deno.json` defines it. */
export function taskFlags(script: string): string[] {
  const config = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));
  const tasks = Object.values(config.tasks as Record<string, string>);
  const task = tasks.find((command) => command.endsWith(` scripts/${script}`));
  if (!task) throw new Error(`no deno task runs scripts/${script}`);
  const words = task.split(/\s+/);
  if (words[0] !== "deno" || words[1] !== "run") throw new Error(`not a deno run task: ${task}`);
  return words.slice(2, -1);
}

/**
 * `scripts/<script>` as its deno task runs it (same permissions), from the repository root
 * (or from `root`, a copy of it), with `env` added to the environment.
 */
export function scriptCommand(
  script: string,
  args: string[],
  { root = ROOT, env = {} }: { root?: string; env?: Record<string, string> } = {},
): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", ...taskFlags(script), `scripts/${script}`, ...args],
    cwd: root,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/** Runs `scripts/<script>` to the end, as its deno task runs it. */
export function runScript(script: string, ...args: string[]): Promise<ScriptRun> {
  return runScriptWith({}, script, ...args);
}

/** `runScript` from another root, or with environment variables added. */
export async function runScriptWith(
  options: { root?: string; env?: Record<string, string> },
  script: string,
  ...args: string[]
): Promise<ScriptRun> {
  const { code, stdout, stderr } = await scriptCommand(script, args, options).output();
  const decoder = new TextDecoder();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

/** V8's `gc()`, as `--v8-flags=--expose-gc` exposes it. */
export type Collect = (options?: { type: "major" | "minor" }) => void;

const EXPOSED_GC = (globalThis as { gc?: Collect }).gc;

/**
 * Runs the test named `name` of the test file `fileUrl` in a child `deno test` with `gc()`
 * exposed and `env` added, and fails with its output unless exactly that test passed there.
 */
async function inChild(
  fileUrl: string,
  name: string,
  env: Record<string, string> = {},
): Promise<void> {
  const escaped = name.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "test",
      "--allow-all",
      "--v8-flags=--expose-gc",
      `--filter=/^${escaped}$/`,
      new URL(fileUrl).pathname,
    ],
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const output = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  if (code !== 0) throw new Error(`the child deno test failed:\n${output}`);
  if (!/\| 1 passed \| 0 failed/.test(output)) {
    throw new Error(`the test did not run in the child:\n${output}`);
  }
}

/**
 * A BPF test of the file `fileUrl` (its `import.meta.url`) that needs `gc()`. Without
 * `--v8-flags=--expose-gc` (a plain `deno test --allow-all`), its body runs in a child
 * `deno test` that has it.
 */
export function gcTest(
  fileUrl: string,
  name: string,
  fn: (gc: Collect) => void | Promise<void>,
  facilities: readonly Facility[] = [],
): void {
  const gc = EXPOSED_GC;
  facilityTest(fileUrl, name, facilities, gc ? () => fn(gc) : () => inChild(fileUrl, name));
}

/**
 * A BPF test of the file `fileUrl` run with `deny` denied to the process (`BPF_DENY`), so
 * that the fallbacks of a refusing kernel run for real on any kernel: in a child `deno test`
 * that has `BPF_DENY` set (the probes are per process), unless this process already denies
 * exactly those.
 */
export function deniedTest(
  fileUrl: string,
  name: string,
  deny: readonly Facility[],
  fn: () => void | Promise<void>,
): void {
  const here = [...deniedFacilities()].sort().join(",") === [...deny].sort().join(",");
  bpfTest(name, here ? fn : () => inChild(fileUrl, name, { BPF_DENY: deny.join(",") }));
}
