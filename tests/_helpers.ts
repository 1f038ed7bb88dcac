/**
 * Shared test helpers: the BPF availability gate (a skipped BPF test is an error when
 * `REQUIRE_BPF=1`, as in CI) and small fill/collect helpers over real maps.
 *
 * @module
 */

import { type BackendName, BACKENDS, BpfMap, MapType, type MapTypeName } from "../mod.ts";

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

/** Both backends, for tests that run every behaviour on each. */
export const ALL_BACKENDS: readonly BackendName[] = BACKENDS;

/** Every map type the toolkit supports. */
export const MAP_TYPES: readonly MapTypeName[] = Object.keys(MapType) as MapTypeName[];

/** The hash-family types (their batch cursor is a bucket index; keys may be any size). */
export const HASH_TYPES: readonly MapTypeName[] = MAP_TYPES.filter((type) =>
  !type.endsWith("array")
);

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
 * exposed, and fails with its output unless exactly that test passed there.
 */
async function inChildWithGc(fileUrl: string, name: string): Promise<void> {
  const escaped = name.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "test",
      "--allow-all",
      "--v8-flags=--expose-gc",
      `--filter=/^${escaped}$/`,
      new URL(fileUrl).pathname,
    ],
    env: { NO_COLOR: "1" },
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
export function gcTest(fileUrl: string, name: string, fn: (gc: Collect) => void): void {
  const gc = EXPOSED_GC;
  bpfTest(name, gc ? () => fn(gc) : () => inChildWithGc(fileUrl, name));
}
