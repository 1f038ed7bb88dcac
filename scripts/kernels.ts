/**
 * The kernel matrix (`make kernels`): what each dump method and command does on this
 * machine's kernel and on Debian 12's own, Linux 6.1, booted under QEMU (TCG) by
 * `scripts/kernels/`, printed as one table: method or command × kernel, works or refused
 * with the reason.
 *
 * `--run DIR` runs the checks on the running kernel and writes `DIR/report.json`: the probes
 * (`deno task features --json`), the demo at `--entries` (default 100,000), `load`, `dump` and
 * `maps` on a pinned map, and the smoke part of the test suite. Without it, the checks run
 * here and inside the guest, and the matrix is printed (and written as Markdown to
 * `build/kernels/matrix.md`, the README's "Kernels" table).
 *
 * @module
 */

import { DEMO_METHODS } from "../ffi/dump/dump.ts";
import { intFlag, parseFlags, runMain, RuntimeError } from "./_cli.ts";
import { printTable } from "./_report.ts";

const USAGE = `usage: kernels.ts [--run DIR] [--entries N] [--no-guest]
  The kernel matrix. Runs the probes, the demo at --entries (default 100,000), load, dump
  and maps on a pinned map, and the smoke part of the test suite on this machine's kernel and
  on Debian 12's own (6.1, under QEMU: scripts/kernels/prepare.sh and run.sh), then prints
  one table of what works and what each kernel refuses, and why. --run DIR runs the checks
  on the running kernel only and writes DIR/report.json (what the guest runs); --no-guest
  skips the guest.`;

/** The test files of the smoke part: the core of the toolkit, quick enough under TCG. */
const SMOKE = [
  "map_test",
  "walk_test",
  "iter_test",
  "snapshot_test",
  "verify_test",
  "dump_test",
  "features_test",
  "fallback_test",
].map((name) => `tests/${name}.ts`);

const ROOT = new URL("..", import.meta.url).pathname;

/** How one command ended. */
interface Ran {
  code: number;
  seconds: number;
  stdout: string;
  /** The last line of stderr that says something (an error's line), if any. */
  said: string | null;
}

/** What `--run` writes: everything the matrix needs of one kernel. */
interface Report {
  kernel: string;
  features: {
    facilities: { name: string; status: string; reason: string | null }[];
    methods: { name: string; status: string; reason: string | null }[];
    counts: { name: string; status: string; reason: string | null }[];
  };
  demo: { code: number; seconds: number; said: string | null; rows: DemoRow[] };
  commands: { name: string; code: number; seconds: number; said: string | null }[];
  smoke: {
    files: string[];
    code: number;
    seconds: number;
    summary: string | null;
    skips: { test: string; facility: string; reason: string }[];
    /** Facilities tests were skipped for that the probe finds available (must be none). */
    wrongSkips: string[];
  };
}

/** A row of `demo --json`: a dump's result, or why the method is unavailable. */
interface DemoRow {
  row: string;
  unavailable?: string;
  verified?: boolean;
  problem?: string | null;
  countSource?: string | null;
  distinct?: number;
  entries?: number;
}

/** Runs a command from the repository root; stdout kept, stderr's last line kept. */
async function run(command: string, args: string[], env: Record<string, string> = {}) {
  const started = performance.now();
  const output = await new Deno.Command(command, {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(output.stderr).split("\n")
    .filter((line) => line.trim() && !line.startsWith("Task "));
  return {
    code: output.code,
    seconds: (performance.now() - started) / 1000,
    stdout: new TextDecoder().decode(output.stdout),
    said: stderr.findLast((line) => /^error: /.test(line)) ?? stderr.at(-1) ?? null,
  } satisfies Ran;
}

const task = (name: string, ...args: string[]) => run("deno", ["task", "-q", name, ...args]);

/** The checks on the running kernel, into `dir/report.json`. */
async function runChecks(dir: string, entries: number): Promise<Report> {
  Deno.mkdirSync(dir, { recursive: true });
  const features = await task("features", "--json");
  if (features.code !== 0) throw new RuntimeError(`features failed: ${features.said}`);
  const demo = await task("demo", "--entries", String(entries), "--json");
  const pin = `/sys/fs/bpf/kernels_${Deno.pid}`;
  const commands: Report["commands"] = [];
  const load = await task("load", "--entries", String(entries), "--pin", pin, "--replace");
  commands.push({ name: "load", ...load });
  try {
    const dump = await task("dump", "--pin", pin, "--json");
    const dumped = dump.code === 0 ? JSON.parse(dump.stdout).length : null;
    commands.push({
      name: "dump",
      ...dump,
      said: dumped === entries ? dump.said : `${dumped} entries of ${entries}: ${dump.said}`,
      code: dumped === entries ? dump.code : dump.code || 1,
    });
    commands.push({ name: "maps", ...await task("maps", "--pin", pin, "--json") });
  } finally {
    await run("rm", ["-f", pin]);
  }
  const skipLog = `${dir}/skips.jsonl`;
  Deno.writeTextFileSync(skipLog, "");
  const smoke = await run("deno", ["test", "--allow-all", ...SMOKE], {
    REQUIRE_BPF: "1",
    BPF_SKIP_LOG: skipLog,
  });
  Deno.writeTextFileSync(`${dir}/smoke.txt`, smoke.stdout);
  const skips: Report["smoke"]["skips"] = Deno.readTextFileSync(skipLog).split("\n")
    .filter(Boolean).map((line) => JSON.parse(line));
  const probed: Report["features"] = JSON.parse(features.stdout);
  const available = new Set(
    probed.facilities.filter((f) => f.status === "available").map((f) => f.name),
  );
  const report: Report = {
    kernel: Deno.readTextFileSync("/proc/sys/kernel/osrelease").trim(),
    features: probed,
    demo: {
      code: demo.code,
      seconds: demo.seconds,
      said: demo.said,
      rows: demo.stdout.split("\n").filter(Boolean).map((line) => JSON.parse(line)),
    },
    commands,
    smoke: {
      files: SMOKE,
      code: smoke.code,
      seconds: smoke.seconds,
      summary: smoke.stdout.match(/^(?:ok|FAILED) \| (\d+ passed.*?)(?=\s*\(|$)/m)?.[1]
        .replaceAll(" | ", ", ") ?? null,
      skips,
      wrongSkips: [...new Set(skips.map((s) => s.facility).filter((f) => available.has(f)))],
    },
  };
  Deno.writeTextFileSync(`${dir}/report.json`, JSON.stringify(report, null, 2));
  return report;
}

/** One cell: what a method's demo row says on a kernel. */
function methodCell(report: Report, method: string): string {
  const row = report.demo.rows.find((r) => r.row === method || r.row.startsWith(`${method}: `));
  if (!row) return `no row (demo exit ${report.demo.code}: ${report.demo.said})`;
  if (row.unavailable) return `refused: ${row.unavailable}`;
  const chose = row.row.startsWith("auto: ") ? `chose ${row.row.slice(6)}, ` : "";
  if (method === "seed-compat") {
    return `runs; its flaw caught (${row.distinct} distinct of ${row.entries} reported)`;
  }
  if (row.verified) return `works: ${chose}verified against ${SOURCE_NAMES[row.countSource!]}`;
  return row.problem ? `FAILED: ${row.problem}` : `works: ${chose}keys only, no count`;
}

const SOURCE_NAMES: Record<string, string> = {
  kernel: "the kernel's count",
  for_each: "a for_each pass",
  iter: "a bpf_iter pass",
  batch: "a LOOKUP_BATCH pass",
  keys: "a GET_NEXT_KEY pass",
  array: "max_entries",
};

function commandCell(ran: { code: number; seconds: number; said: string | null }): string {
  return ran.code === 0
    ? `works (${ran.seconds.toFixed(1)} s)`
    : `FAILED (exit ${ran.code}): ${ran.said}`;
}

function smokeCell(report: Report): string {
  const { smoke } = report;
  if (smoke.wrongSkips.length) {
    return `FAILS: tests skipped for ${
      smoke.wrongSkips.join(", ")
    }, which the probe finds available`;
  }
  const skipped = [...new Set(smoke.skips.map((s) => s.facility))];
  const why = skipped.length ? `; ${smoke.skips.length} skipped for ${skipped.join(", ")}` : "";
  return `${smoke.code === 0 ? "passes" : "FAILS"}: ${smoke.summary} in ${
    Math.round(smoke.seconds)
  } s${why}`;
}

/** The matrix: rows of what runs, a column per kernel. */
function matrix(reports: Report[]): string[][] {
  const rows: string[][] = [];
  for (const method of DEMO_METHODS) {
    rows.push([
      method,
      ...reports.map((r) => methodCell(r, method)),
    ]);
  }
  rows.push([
    "demo",
    ...reports.map((r) => commandCell({ ...r.demo, said: r.demo.said })),
  ]);
  for (const name of ["load", "dump", "maps"]) {
    rows.push([
      name,
      ...reports.map((r) => {
        const ran = r.commands.find((c) => c.name === name);
        return ran ? commandCell(ran) : "not run";
      }),
    ]);
  }
  rows.push([
    "features: refused",
    ...reports.map((r) =>
      r.features.facilities.filter((f) => f.status !== "available")
        .map((f) => `${f.name}: ${f.reason}`).join("; ") || "nothing"
    ),
  ]);
  rows.push(["smoke tests", ...reports.map(smokeCell)]);
  return rows;
}

function markdown(head: string[], rows: string[][]): string {
  const cell = (text: string) => text.replaceAll("|", "\\|");
  return [
    `| ${head.map(cell).join(" | ")} |`,
    `| ${head.map(() => "---").join(" | ")} |`,
    ...rows.map((row) => `| ${row.map(cell).join(" | ")} |`),
  ].join("\n") + "\n";
}

/** Boots the 6.1 kernel and runs the checks there; returns its report. */
async function guestReport(entries: number): Promise<Report> {
  const prepared = await run("scripts/kernels/prepare.sh", []);
  if (prepared.code !== 0) throw new RuntimeError(`prepare.sh failed: ${prepared.said}`);
  const release = prepared.stdout.trim().split("\n").at(-1)!;
  const dir = `build/kernels/results/${release}`;
  // The guest sees this machine's files as they are: type-check here, so it need not.
  await run("deno", [
    "check",
    "scripts/kernels.ts",
    "scripts/features.ts",
    "scripts/demo.ts",
    ...SMOKE,
  ]);
  console.error(`booting ${release} under QEMU (TCG): the checks take minutes there`);
  const guest = await run("scripts/kernels/run.sh", [
    release,
    dir,
    "--",
    "deno",
    "run",
    "--allow-all",
    "scripts/kernels.ts",
    "--run",
    "/results",
    "--entries",
    String(entries),
  ]);
  if (guest.code !== 0) {
    throw new RuntimeError(
      `the checks under ${release} failed (exit ${guest.code}): ${guest.said}`,
    );
  }
  return JSON.parse(Deno.readTextFileSync(`${ROOT}${dir}/report.json`));
}

await runMain(USAGE, async () => {
  const flags = parseFlags({
    run: { type: "string" },
    entries: { type: "string" },
    "no-guest": { type: "boolean" },
  });
  const entries = intFlag(flags.entries, "entries", 100_000, { max: 10_000_000 });
  if (flags.run !== undefined) {
    await runChecks(flags.run, entries);
    return;
  }
  const started = performance.now();
  const here = Deno.readTextFileSync("/proc/sys/kernel/osrelease").trim();
  console.error(`checks on this machine's kernel, ${here}`);
  const reports = [await runChecks(`${ROOT}build/kernels/results/${here}`, entries)];
  if (!flags["no-guest"]) reports.push(await guestReport(entries));
  const head = ["", ...reports.map((r) => `Linux ${r.kernel}`)];
  const rows = matrix(reports);
  printTable(head, rows);
  Deno.writeTextFileSync(`${ROOT}build/kernels/matrix.md`, markdown(head, rows));
  console.log(
    `written to build/kernels/matrix.md; make kernels took ${
      Math.round((performance.now() - started) / 1000)
    } s`,
  );
  const failed = rows.filter((row) =>
    row.slice(1).some((cell) => /^(FAILED|FAILS|no row)/.test(cell))
  );
  if (failed.length) {
    throw new RuntimeError(
      `the kernel matrix found failures: ${failed.map((r) => r[0]).join(", ")}`,
    );
  }
});
