/**
 * The whole processes `compare.ts --methods dump,bpftool` times beside its other rows:
 * `deno task -q dump --pin P --json` and `bpftool -j map dump pinned P`, each with its stdout
 * redirected to a file by the shell (`sh -c 'exec COMMAND > FILE'`: the output goes straight to
 * the file, never through a pipe to this process), and their outputs compared byte for byte.
 *
 * @module
 */

/** The repository root, where `deno task dump` is defined. */
const ROOT = new URL("..", import.meta.url).pathname;

/** The `--methods` names of the whole-process rows. */
export const PROCESS_METHODS = ["dump", "bpftool"] as const;

/** One of `PROCESS_METHODS`. */
export type ProcessMethod = typeof PROCESS_METHODS[number];

/** A whole process to time on a pinned map. */
export interface WholeProcess {
  /** Its `--methods` name. */
  method: ProcessMethod;
  /** How tables name it. */
  label: string;
  /** Its command line for the map pinned at `pin`. */
  command: (pin: string) => string[];
}

/** `deno task -q dump --pin P --json`, run by this Deno. */
export const DUMP_PROCESS: WholeProcess = {
  method: "dump",
  label: "dump --json",
  command: (pin) => [Deno.execPath(), "task", "-q", "dump", "--pin", pin, "--json"],
};

/** `bpftool -j map dump pinned P`, with `bpftool` found on PATH unless a path is given. */
export function bpftoolProcess(bpftool = "bpftool"): WholeProcess {
  return {
    method: "bpftool",
    label: "bpftool -j map dump",
    command: (pin) => [bpftool, "-j", "map", "dump", "pinned", pin],
  };
}

/**
 * bpftool's version line (e.g. `bpftool v7.1.0`), or why it cannot be run: `not installed`
 * when there is no such program.
 */
export async function bpftoolVersion(
  bpftool = "bpftool",
): Promise<{ version: string } | { missing: string }> {
  try {
    const output = await new Deno.Command(bpftool, {
      args: ["version"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const said = new TextDecoder().decode(output.success ? output.stdout : output.stderr).trim();
    if (!output.success) {
      return { missing: `"${bpftool} version" failed: ${said.split("\n").at(-1) ?? ""}` };
    }
    // bpftool names itself as it was called (`/usr/sbin/bpftool v7.1.0`): the name will do.
    return { version: said.split("\n")[0].replace(/^\S*\//, "") || bpftool };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      return {
        missing: `not installed: no "${bpftool}" (install bpftool, or give --bpftool PATH)`,
      };
    }
    return { missing: `cannot run "${bpftool}": ${(e as Error).message.split("\n")[0]}` };
  }
}

/**
 * Runs `command` as a whole process with stdout redirected to `file`, and returns its
 * wall-clock seconds, from spawn to exit. The shell `exec`s the command, so the time includes
 * only a shell's start on top of the process's own. Before the clock starts, the last round's
 * file is removed and the page cache written back (`sync`), so that no run pays for the one
 * before it. Throws with the command's last line on stderr when it fails.
 */
export async function timeToFile(command: string[], file: string): Promise<number> {
  await Deno.remove(file).catch(() => {});
  await new Deno.Command("sync", { stdin: "null", stdout: "null", stderr: "null" }).output()
    .catch(() => {});
  const started = performance.now();
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command("sh", {
      args: ["-c", 'out=$1; shift; exec "$@" > "$out"', "sh", file, ...command],
      cwd: ROOT,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
  } catch (e) {
    throw new Error(`cannot run sh: ${(e as Error).message.split("\n")[0]}`);
  }
  const seconds = (performance.now() - started) / 1000;
  if (!output.success) {
    const said = new TextDecoder().decode(output.stderr).trim().split("\n").at(-1);
    throw new Error(`"${command.join(" ")}" failed: ${said || `exit ${output.code}`}`);
  }
  return seconds;
}

/**
 * Where two files in `dir` first differ, in `cmp`'s words (e.g. `a b differ: byte 7, line
 * 1`), or `null` when they are byte-identical. `cmp` streams them, so neither is read into
 * memory here.
 */
export async function firstDifference(dir: string, a: string, b: string): Promise<string | null> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command("cmp", {
      args: ["--", a, b],
      cwd: dir,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (e) {
    throw new Error(`cannot compare the outputs: cmp: ${(e as Error).message.split("\n")[0]}`);
  }
  const said = new TextDecoder().decode(output.stdout).trim() ||
    new TextDecoder().decode(output.stderr).trim().replace(/^cmp: /, "");
  if (output.code === 0) return null;
  if (output.code === 1) return said.split("\n")[0];
  throw new Error(`cannot compare the outputs: cmp: ${said.split("\n")[0]}`);
}
