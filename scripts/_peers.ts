/**
 * The references that `compare.ts --peers` runs beside our methods, on the same pinned map:
 * programs of this repository in other languages and libraries, built by `make peers` from
 * `bench/peers/`. Each prints one JSON line per dump (entries, distinct keys, seconds of the
 * walk alone, syscalls, peak RSS); this module knows their command lines and reads that line.
 *
 * - C with libbpf (`build/peers/c/peer`): the C reference of every table, the in-kernel
 *   snapshot and the hybrid included (on our own `build/snapshot.bpf.o`);
 * - the Go study with cilium/ebpf 0.9.1 (`build/peers/go/study`), its batch loop as written
 *   (cursor never advanced) and fixed;
 * - npm `bpf` (node_bpf) under Node (`bench/peers/node/peer.mjs`), optional.
 *
 * @module
 */

/** The kind of walk, so that each row is compared with the C reference's walk of its kind. */
export type WalkKind = "per-entry" | "batch" | "parallel" | "iter" | "snapshot" | "hybrid";

/** How a reference is run on one map. */
export interface RunSettings {
  /** The pin of the map. */
  pin: string;
  /** Entries per batch call. */
  chunk: number;
  /** Ranges (threads) of the parallel walk. */
  ranges: number;
  /** The kernel time one snapshot run may take, in milliseconds. */
  kernelBudgetMs: number;
}

/** One reference dump: a program in another language or library. */
export interface Reference {
  /** How tables name it, e.g. `C / batch`. */
  label: string;
  /** The language and library, e.g. `C, libbpf 1.1`. */
  mechanism: string;
  /** What its time is compared with. */
  kind: WalkKind;
  /** Its command line. */
  command: (settings: RunSettings) => string[];
  /** Whether it is meant to be exact: the study's loop as written is not. */
  exact: boolean;
}

/** A reference that could not be run, and why. */
export interface MissingReference {
  /** The reference's label. */
  label: string;
  /** Why it is not there. */
  reason: string;
}

/** What one run of a reference printed. */
export interface ReferenceResult {
  /** Entries it was handed, duplicates included. */
  entries: number;
  /** Distinct keys among them (`null` when the reference does not say). */
  distinct: number | null;
  /** Seconds of its walk alone. */
  seconds: number;
  /** System calls of the walk, when it counts them. */
  syscalls: number | null;
  /** Its peak RSS in bytes, when it says. */
  peakRss: number | null;
}

/** The repository root, where `build/` and `bench/` are. */
const ROOT = new URL("..", import.meta.url).pathname;

const C_PEER = `${ROOT}build/peers/c/peer`;
const GO_STUDY = `${ROOT}build/peers/go/study`;
const NODE_PEER = `${ROOT}bench/peers/node/peer.mjs`;
const NODE_UNAVAILABLE = `${ROOT}build/peers/node/UNAVAILABLE`;

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

function readText(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch {
    return undefined;
  }
}

const C_REFERENCES: readonly Reference[] = [
  {
    label: "C / per-entry",
    mechanism: "C, libbpf",
    kind: "per-entry",
    exact: true,
    command: ({ pin }) => [C_PEER, "normal", pin],
  },
  {
    label: "C / batch",
    mechanism: "C, libbpf",
    kind: "batch",
    exact: true,
    command: ({ pin, chunk }) => [C_PEER, "batch", pin, String(chunk)],
  },
  {
    label: "C / parallel batch",
    mechanism: "C, libbpf, threads",
    kind: "parallel",
    exact: true,
    command: ({ pin, chunk, ranges }) => [C_PEER, "pbatch", pin, String(ranges), String(chunk)],
  },
  {
    label: "C / bpf_iter",
    mechanism: "C, libbpf",
    kind: "iter",
    exact: true,
    command: ({ pin }) => [C_PEER, "iter", pin],
  },
  {
    label: "C / snapshot",
    mechanism: "C, libbpf, our snapshot.bpf.o",
    kind: "snapshot",
    exact: true,
    command: ({ pin, kernelBudgetMs }) => [C_PEER, "snapshot", pin, String(kernelBudgetMs)],
  },
  {
    label: "C / hybrid",
    mechanism: "C, libbpf, our snapshot.bpf.o, 2 threads",
    kind: "hybrid",
    exact: true,
    command: ({ pin, kernelBudgetMs }) => [C_PEER, "hybrid", pin, "0.55", String(kernelBudgetMs)],
  },
];

const GO_REFERENCES: readonly Reference[] = [
  {
    label: "Go study / per-entry",
    mechanism: "Go, cilium/ebpf 0.9.1",
    kind: "per-entry",
    exact: true,
    command: ({ pin }) => [GO_STUDY, "normal", "-pin", pin],
  },
  {
    label: "Go study / batch as written",
    mechanism: "Go, cilium/ebpf 0.9.1",
    kind: "batch",
    exact: false,
    command: ({ pin }) => [GO_STUDY, "batch", "-pin", pin],
  },
  {
    label: "Go study / batch, cursor advanced",
    mechanism: "Go, cilium/ebpf 0.9.1",
    kind: "batch",
    exact: true,
    command: ({ pin, chunk }) => [GO_STUDY, "batch-fixed", "-pin", pin, "-chunk", String(chunk)],
  },
];

const NODE_REFERENCES: readonly Reference[] = [
  {
    label: "node_bpf / per-entry",
    mechanism: "Node, npm bpf 1.3.0",
    kind: "per-entry",
    exact: true,
    command: ({ pin }) => ["node", NODE_PEER, "normal", pin],
  },
  {
    label: "node_bpf / batch",
    mechanism: "Node, npm bpf 1.3.0",
    kind: "batch",
    exact: true,
    command: ({ pin, chunk }) => ["node", NODE_PEER, "batch", pin, String(chunk)],
  },
];

/**
 * The references `make peers` built, and those it did not, with the reason: each table
 * says what is missing rather than leaving it out.
 */
export function builtReferences(): { references: Reference[]; missing: MissingReference[] } {
  const references: Reference[] = [];
  const missing: MissingReference[] = [];
  const add = (group: readonly Reference[], reason: string | undefined) => {
    if (reason === undefined) references.push(...group);
    else missing.push(...group.map(({ label }) => ({ label, reason })));
  };
  add(C_REFERENCES, exists(C_PEER) ? undefined : "not built: run make peers");
  add(GO_REFERENCES, exists(GO_STUDY) ? undefined : "not built: run make peers");
  add(
    NODE_REFERENCES,
    readText(NODE_UNAVAILABLE) ??
      (exists(`${ROOT}bench/peers/node/node_modules/bpf`)
        ? undefined
        : "not built: run make peers"),
  );
  return { references, missing };
}

/**
 * A reference given as a command (`--peer COMMAND`): run as `COMMAND normal PIN` and
 * `COMMAND batch PIN CHUNK`, as the C reference is.
 */
export function commandReferences(command: string): Reference[] {
  const name = command.split("/").at(-1) ?? command;
  return [
    {
      label: `${name} / per-entry`,
      mechanism: command,
      kind: "per-entry",
      exact: true,
      command: ({ pin }) => [command, "normal", pin],
    },
    {
      label: `${name} / batch`,
      mechanism: command,
      kind: "batch",
      exact: true,
      command: ({ pin, chunk }) => [command, "batch", pin, String(chunk)],
    },
  ];
}

/**
 * Reads a reference's result: its last JSON line, or (from references of the older format)
 * `count=N ... seconds=S` words.
 */
export function parseReferenceOutput(text: string): ReferenceResult | undefined {
  const line = text.trim().split("\n").reverse().find((l) => l.startsWith("{"));
  if (line !== undefined) {
    try {
      const json = JSON.parse(line);
      if (typeof json.entries === "number" && typeof json.seconds === "number") {
        return {
          entries: json.entries,
          distinct: typeof json.distinct === "number" ? json.distinct : null,
          seconds: json.seconds,
          syscalls: typeof json.syscalls === "number" ? json.syscalls : null,
          peakRss: typeof json.peakRss === "number" ? json.peakRss : null,
        };
      }
    } catch {
      return undefined;
    }
  }
  const count = text.match(/\bcount=(\d+)/);
  const seconds = text.match(/\bseconds=([\d.]+)/);
  if (!count || !seconds) return undefined;
  const syscalls = text.match(/\bsyscalls=(\d+)/);
  return {
    entries: Number(count[1]),
    distinct: null,
    seconds: Number(seconds[1]),
    syscalls: syscalls ? Number(syscalls[1]) : null,
    peakRss: null,
  };
}

/** Runs one reference on the map; throws with its own words when it fails. */
export async function runReference(
  reference: Reference,
  settings: RunSettings,
): Promise<ReferenceResult> {
  const [program, ...args] = reference.command(settings);
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command(program, {
      args,
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (e) {
    throw new Error(`cannot run "${program}": ${(e as Error).message.split("\n")[0]}`);
  }
  const text = new TextDecoder().decode(output.stdout);
  const result = output.success ? parseReferenceOutput(text) : undefined;
  if (result === undefined) {
    const said = new TextDecoder().decode(output.stderr).trim() || text.trim();
    throw new Error(`"${[program, ...args].join(" ")}" failed: ${said.split("\n").at(-1)}`);
  }
  return result;
}
