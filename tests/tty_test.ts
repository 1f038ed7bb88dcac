/**
 * Every deno task run from a real terminal. The other tests run the scripts in pipes, where
 * colour and progress bars stay off, so they never reach the code that only runs when stdout
 * or stderr is a terminal. Here each task runs under a pseudo-terminal (`script` from
 * util-linux, its own stdin /dev/null), with the flags its deno task grants (read from
 * `deno.json`), on small sizes: it must print no permission prompt and no permission error,
 * and exit as the same command does in a pipe (some tasks fail on some kernels for reasons
 * of their own). Issue 16, item 6: `normal` stopped at a prompt for env access to
 * `NODE_DISABLE_COLORS` once it had printed its figures.
 *
 * @module
 */

import assert from "node:assert/strict";
import { bpfTest, ROOT, runScript, taskFlags } from "./_helpers.ts";

/** Where one case runs: a pinned map, a bpffs folder for new pins, a folder for files. */
interface Places {
  /** A 5,000-entry hash map made by `load.ts`. */
  map: string;
  /** A folder of bpffs for pins the task makes. */
  pins: string;
  /** An ordinary folder for the logs and the files the task writes. */
  files: string;
}

/** How a task is run here. */
interface Case {
  /** Its arguments: small sizes, pins and files in the case's folders. */
  args: (at: Places) => string[];
  /** Whether it needs the pinned map. */
  map?: true;
  /** Whether it paints its verdict: colour on a terminal, none in a pipe. */
  paints?: true;
}

/** Every task of `deno.json` that runs a script, by name: the script is `scripts/<name>.ts`. */
const CASES: Record<string, Case> = {
  load: { args: (at) => ["--entries", "5000", "--pin", `${at.pins}/loaded`, "--replace"] },
  normal: { args: (at) => ["--pin", at.map, "--runs", "2"], map: true, paints: true },
  batch: { args: (at) => ["--pin", at.map], map: true, paints: true },
  demo: { args: () => ["--entries", "5000"] },
  iter: { args: (at) => ["--pin", at.map], map: true },
  compare: {
    args: (at) => ["--entries", "3000", "--rounds", "1", "--svg", `${at.files}/compare.svg`],
  },
  sweep: {
    args: (at) => [
      ...["--min", "1000", "--max", "1000", "--rounds", "1"],
      ...["--chunk-entries", "2000", "--type-entries", "1000", "--out", `${at.files}/sweep`],
    ],
  },
  churn: {
    args: (at) => [
      ...["--stable", "2000", "--transient", "200", "--rates", "0,max", "--writers", "user"],
      ...["--methods", "normal,batch", "--rounds", "1", "--svg", `${at.files}/churn.svg`],
    ],
  },
  maps: { args: (at) => ["--pin", at.map] },
  dump: { args: (at) => ["--pin", at.map], map: true },
  features: { args: () => [] },
  map: { args: (at) => ["dump", "pinned", at.map], map: true },
};

/**
 * The tasks not run here. `test` runs this whole suite (already `--allow-all`, so no prompt
 * can come up, and it takes minutes); `bench` runs `deno bench` at benchmark sizes, with no
 * flag to make them small, and its output is Deno's bench report. Neither runs a script.
 */
const EXCLUDED = ["test", "bench"];

/** A prompt, or a permission the task was not granted. */
const PERMISSION = /Deno requests|Requires \w+ access|NotCapable|PermissionDenied/;

/** How long one run may take: a prompt that is not noticed fails the test at this point. */
const TIMEOUT_MS = 60_000;

/**
 * The environment of a run: this one's, with colour allowed and prompts not disabled, and
 * `extra` added.
 */
function environment(extra: Record<string, string> = {}): Record<string, string> {
  const env = Deno.env.toObject();
  delete env.NO_COLOR;
  delete env.DENO_NO_PROMPT;
  return { ...env, ...extra };
}

/** `deno run`'s arguments for the task `name`, as `deno task <name> <args>` runs it. */
function taskArgs(name: string, args: string[]): string[] {
  const script = `${name}.ts`;
  return ["run", ...taskFlags(script), `scripts/${script}`, ...args];
}

/** Quotes a word for the shell `script -c` runs the command with. */
function quote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** What a run printed and how it ended. */
interface Run {
  code: number;
  /** stdout and stderr, interleaved as a terminal shows them. */
  output: string;
}

/** Runs `deno <args>` in a pipe, stdin /dev/null. */
async function inPipe(args: string[]): Promise<Run & { stdout: string }> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: environment(),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(TIMEOUT_MS),
  }).output();
  const decoder = new TextDecoder();
  const out = decoder.decode(stdout);
  return { code, stdout: out, output: out + decoder.decode(stderr) };
}

/**
 * Runs `deno <args>` under a pseudo-terminal with `script -qfec CMD LOG`, its stdin /dev/null:
 * stdin, stdout and stderr of the task are the terminal. A permission prompt waits for an
 * answer that never comes, so the run is stopped as soon as one shows (or at `TIMEOUT_MS`).
 */
async function inTerminal(
  args: string[],
  log: string,
  env: Record<string, string> = {},
): Promise<Run> {
  const command = [Deno.execPath(), ...args].map(quote).join(" ");
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("script", {
      args: ["-qfec", command, log],
      cwd: ROOT,
      env: environment(env),
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    throw new Error("script (util-linux) is needed to run the tasks under a terminal", {
      cause: e,
    });
  }
  const stop = () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // Already ended.
    }
  };
  const timer = setTimeout(stop, TIMEOUT_MS);
  let seen = "";
  try {
    for await (const text of child.stdout.pipeThrough(new TextDecoderStream())) {
      seen += text;
      if (/Deno requests/.test(seen)) stop();
    }
    const { code } = await child.status;
    return { code, output: Deno.readTextFileSync(log) };
  } finally {
    clearTimeout(timer);
  }
}

for (const [name, task] of Object.entries(CASES)) {
  bpfTest(
    `deno task ${name} under a terminal: no permission prompt or error, exits as in a pipe`,
    async () => {
      const pins = Deno.makeTempDirSync({ dir: "/sys/fs/bpf", prefix: "tty_test_" });
      const files = Deno.makeTempDirSync({ prefix: "tty_test_" });
      const at: Places = { map: `${pins}/map`, pins, files };
      try {
        if (task.map) {
          const loaded = await runScript("load.ts", "--entries", "5000", "--pin", at.map);
          assert.equal(loaded.code, 0, `load.ts failed:\n${loaded.stdout}${loaded.stderr}`);
        }
        const args = taskArgs(name, task.args(at));
        const pipe = await inPipe(args);
        const tty = await inTerminal(args, `${files}/terminal.log`);
        const shown = `\n--- under a terminal (exit ${tty.code}):\n${tty.output}` +
          `\n--- in a pipe (exit ${pipe.code}):\n${pipe.output}`;
        assert.doesNotMatch(tty.output, PERMISSION, `a permission prompt or error:${shown}`);
        assert.equal(tty.code, pipe.code, `exit codes differ:${shown}`);
        if (task.paints) {
          assert.ok(tty.output.includes("\x1b["), `no colour on a terminal:${shown}`);
          assert.ok(!pipe.stdout.includes("\x1b["), `colour in a pipe:${shown}`);
        }
      } finally {
        Deno.removeSync(pins, { recursive: true });
        Deno.removeSync(files, { recursive: true });
      }
    },
  );
}

bpfTest("under a terminal, NO_COLOR turns the colour off", async () => {
  const pins = Deno.makeTempDirSync({ dir: "/sys/fs/bpf", prefix: "tty_test_" });
  const files = Deno.makeTempDirSync({ prefix: "tty_test_" });
  try {
    const loaded = await runScript("load.ts", "--entries", "5000", "--pin", `${pins}/map`);
    assert.equal(loaded.code, 0, `load.ts failed:\n${loaded.stdout}${loaded.stderr}`);
    const args = taskArgs("batch", ["--pin", `${pins}/map`]);
    const { code, output } = await inTerminal(args, `${files}/terminal.log`, { NO_COLOR: "1" });
    assert.equal(code, 0, output);
    assert.match(output, /Verified/);
    assert.ok(!output.includes("\x1b["), `colour despite NO_COLOR:\n${output}`);
  } finally {
    Deno.removeSync(pins, { recursive: true });
    Deno.removeSync(files, { recursive: true });
  }
});

Deno.test("every deno task is run under a terminal here, or excluded with its reason", () => {
  const config = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));
  const tasks = config.tasks as Record<string, string>;
  assert.deepEqual(Object.keys(tasks).sort(), [...Object.keys(CASES), ...EXCLUDED].sort());
  for (const name of Object.keys(CASES)) {
    assert.ok(tasks[name].endsWith(` scripts/${name}.ts`), `task ${name} runs: ${tasks[name]}`);
  }
});
