/**
 * End-to-end tests of `compare.ts`, `sweep.ts`, the parallel `batch.ts` and `iter.ts`, run
 * with exactly the permissions their deno tasks grant (read from `deno.json`) on small maps:
 * `--json` lines and the table, the SVG charts and the CSV, other map types, and one-line
 * errors with the right exit code for bad input.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  bpfTest,
  countOf,
  runScript as run,
  type ScriptRun as Run,
  taskFlags,
} from "./_helpers.ts";
import { MapType, methodUnavailable } from "../mod.ts";
import { bpftoolVersion } from "../scripts/_processes.ts";

/** The rows of `compare.ts`: per-entry and batch on both backends, parallel batch, bpf_iter. */
const METHODS = [
  "per-entry / syscall",
  "per-entry / libbpf",
  "batch / syscall",
  "batch / libbpf",
  "parallel batch / syscall",
  "parallel batch / libbpf",
  "bpf_iter",
  "snapshot",
  "hybrid",
  "auto",
];

/** The rows' methods, `auto: METHOD` (what auto chose) read as `auto`. */
function methodsOf(lines: Record<string, unknown>[]): string[] {
  return lines.map((line) => String(line.method).replace(/^auto: [\w-]+$/, "auto"));
}

function assertOk(result: Run, what: string): void {
  assert.equal(
    result.code,
    0,
    `${what} exited ${result.code}:\n${result.stdout}\n${result.stderr}`,
  );
}

/** Parses every stdout line as JSON. */
function jsonLines(stdout: string): Record<string, unknown>[] {
  return stdout.trim().split("\n").map((line) => {
    try {
      return JSON.parse(line);
    } catch {
      assert.fail(`stdout line is not JSON: ${line}`);
    }
  });
}

/**
 * A failure with one of `codes`: one `error: ...` line naming `mention` (followed by the
 * usage line on exit 2), no stack trace. With `only`, nothing else on stderr: the script
 * stopped before it started any work.
 */
function assertError(
  result: Run,
  codes: readonly number[],
  mention: RegExp,
  { only = true } = {},
): void {
  const output = `exit ${result.code}:\n${result.stdout}\n${result.stderr}`;
  assert.ok(codes.includes(result.code), `expected exit ${codes.join(" or ")}, ${output}`);
  assert.doesNotMatch(result.stderr, /^ {4}at /m, `stack trace on stderr: ${output}`);
  assert.doesNotMatch(result.stderr, /Uncaught|panicked/, `crash on stderr: ${output}`);
  const lines = result.stderr.trimEnd().split("\n");
  assert.equal(lines.filter((line) => line.startsWith("error:")).length, 1, output);
  const usage = result.code === 2;
  if (usage) assert.match(lines.at(-1)!, /^usage: \w+\.ts /, output);
  const error = lines.at(usage ? -2 : -1)!;
  assert.match(error, /^error: /, output);
  assert.match(error, mention, output);
  if (only) assert.equal(lines.length, usage ? 2 : 1, `more than the error on stderr: ${output}`);
}

/** A fresh pin path under bpffs. */
function pinPath(): string {
  return `/sys/fs/bpf/compare_test_${crypto.randomUUID().slice(0, 8)}`;
}

function remove(path: string): void {
  try {
    Deno.removeSync(path, { recursive: true });
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/**
 * Why this kernel cannot run the walk of a row (ours or a reference's), or `null`: the probe's
 * reason, which the row must give.
 */
function rowUnavailable(label: string, type = "hash"): string | null {
  const method = /iter/.test(label)
    ? "iter"
    : /snapshot/.test(label)
    ? "snapshot"
    : /hybrid/.test(label)
    ? "hybrid"
    : null;
  return method && methodUnavailable(method, MapType[type as keyof typeof MapType]);
}

/** The rows this kernel can run, and a check that each of the others says why it cannot. */
function runnable(lines: Record<string, unknown>[], type = "hash"): Record<string, unknown>[] {
  return lines.filter((line) => {
    const refused = rowUnavailable(line.method as string, type);
    if (refused === null) return true;
    assert.equal(line.skipped, refused, JSON.stringify(line));
    assert.equal(line.verified, false, JSON.stringify(line));
    return false;
  });
}

bpfTest("compare.ts prints verified JSON lines, a table of every method and an SVG", async () => {
  const svg = Deno.makeTempFileSync({ prefix: "compare_test_", suffix: ".svg" });
  try {
    const [json, table] = await Promise.all([
      run("compare.ts", "--entries", "20000", "--rounds", "2", "--json", "--svg", svg),
      run("compare.ts", "--entries", "20000", "--rounds", "2"),
    ]);
    const gcExposed = taskFlags("compare.ts").includes("--v8-flags=--expose-gc");
    assertOk(json, "compare.ts --json --svg");
    assert.equal(json.stderr, "", "--json wrote progress on stderr");
    const all = jsonLines(json.stdout);
    assert.deepEqual(methodsOf(all), METHODS);
    const lines = runnable(all);
    const auto = lines.find((line) => String(line.method).startsWith("auto: "))!;
    assert.match(String(auto.plan), /entries in [\d,]+ buckets, \d+ CPUs?: \w+ estimated/);
    for (const line of lines) {
      const what = JSON.stringify(line);
      assert.equal(line.verified, true, what);
      assert.equal(line.problem, null, what);
      assert.equal(line.skipped, null, what);
      assert.equal(line.entries, 20_000, what);
      assert.equal(line.rounds, 2, what);
      for (const field of ["median", "nsPerEntry", "syscalls"]) {
        assert.ok(typeof line[field] === "number" && line[field] > 0, `${field}: ${what}`);
      }
      // Measured after forced collections, so only when the task exposes gc().
      assert.ok("heapGrowth" in line, what);
      assert.equal(typeof line.heapGrowth, gcExposed ? "number" : "object", what);
      if ((line.method as string).startsWith("per-entry")) {
        assert.equal(line.syscalls, 2 * 20_000 + 1, what);
      }
      assert.ok((line.min as number) <= (line.median as number), what);
      assert.ok((line.median as number) <= (line.max as number), what);
    }
    // Ratios are each row's median over the first per-entry row's; ns/entry is the median's.
    const base = lines[0].median as number;
    for (const line of lines) {
      const what = JSON.stringify(line);
      const median = line.median as number;
      assert.ok(Math.abs((line.ratioToPerEntry as number) - median / base) < 1e-9, what);
      assert.ok(Math.abs((line.nsPerEntry as number) - median / 20_000 * 1e9) < 1e-6, what);
    }
    const chart = Deno.readTextFileSync(svg);
    assert.ok(chart.includes("<svg"), `not an SVG: ${chart.slice(0, 200)}`);
    for (const method of methodsOf(lines)) {
      assert.ok(chart.includes(method), `${method} not in the chart`);
    }

    assertOk(table, "compare.ts");
    assert.match(table.stdout, /hash, 20000 entries, 2 rounds each/);
    const rows = table.stdout.split("\n");
    for (const method of METHODS) {
      assert.ok(
        rows.some((row) => new RegExp(`^│ ${method}(: [\\w-]+)? +│`).test(row)),
        `no ${method} row in:\n${table.stdout}`,
      );
      const refused = rowUnavailable(method);
      if (refused !== null) assert.ok(table.stdout.includes(`unavailable: ${refused}`), method);
    }
    assert.doesNotMatch(table.stdout, /NOT VERIFIED|skipped/);
    // Progress goes to stderr: one line per method and round.
    assert.match(table.stderr, /round 2\/2: batch \/ libbpf/);
  } finally {
    remove(svg);
  }
});

/** The references `make peers` builds, as `compare.ts --peers` names them. */
const REFERENCES = [
  "C / per-entry",
  "C / batch",
  "C / parallel batch",
  "C / bpf_iter",
  "C / snapshot",
  "C / hybrid",
  "Go study / per-entry",
  "Go study / batch as written",
  "Go study / batch, cursor advanced",
  "node_bpf / per-entry",
  "node_bpf / batch",
];

bpfTest("compare.ts --peers runs C, the Go study and node_bpf beside our methods", async () => {
  const entries = 50_000;
  const result = await run(
    "compare.ts",
    "--entries",
    String(entries),
    "--rounds",
    "2",
    "--peers",
    "--json",
  );
  assertOk(result, "compare.ts --peers --json");
  const lines = jsonLines(result.stdout);
  assert.deepEqual(methodsOf(lines), [...METHODS, ...REFERENCES]);
  const row = (method: string) => lines.find((line) => line.method === method)!;
  const references = new Set(methodsOf(runnable(lines)));
  for (const method of REFERENCES.filter((m) => references.has(m))) {
    const line = row(method);
    const what = JSON.stringify(line);
    if (method.startsWith("node_bpf") && line.skipped !== null) {
      // Optional: the row says why it is missing.
      assert.match(line.skipped as string, /\S/, what);
      continue;
    }
    assert.equal(line.skipped, null, what);
    assert.equal(line.reference, true, what);
    assert.equal(line.rounds, 2, what);
    assert.equal(line.comparedWith, "C", what);
    if (method === "Go study / batch as written") {
      // The study's loop: max_entries / 4096 calls from the same cursor, the first buckets
      // over and over: about one chunk of distinct keys, far fewer than the entries counted.
      assert.equal(line.syscalls, Math.floor(entries / 4096), what);
      assert.ok((line.distinct as number) <= 4096 && (line.distinct as number) > 3500, what);
      assert.ok((line.entries as number) > 10 * (line.distinct as number), what);
      assert.equal(line.verified, false, what);
      continue;
    }
    assert.equal(line.entries, entries, what);
    assert.equal(line.distinct, entries, what);
    assert.equal(line.verified, true, what);
    assert.ok(typeof line.peakRss === "number" && line.peakRss > 0, what);
  }
  // Each row's ratio is to the C reference's walk of its kind.
  const ratios: [string, string][] = [
    ["per-entry / syscall", "C / per-entry"],
    ["batch / libbpf", "C / batch"],
    ["parallel batch / syscall", "C / parallel batch"],
    ["bpf_iter", "C / bpf_iter"],
    ["Go study / batch, cursor advanced", "C / batch"],
    ["C / batch", "C / batch"],
  ];
  for (const [method, reference] of ratios.filter(([m]) => rowUnavailable(m) === null)) {
    const expected = (row(method).median as number) / (row(reference).median as number);
    assert.ok(
      Math.abs((row(method).ratioToReference as number) - expected) < 1e-9,
      `${method}: ${row(method).ratioToReference}, expected ${expected}`,
    );
  }
  assert.equal(row("C / per-entry").syscalls, 2 * entries + 1);
});

bpfTest("compare.ts --type array dumps an array by every method", async () => {
  const result = await run(
    "compare.ts",
    "--type",
    "array",
    "--entries",
    "5000",
    "--rounds",
    "1",
    "--json",
  );
  assertOk(result, "compare.ts --type array");
  const lines = jsonLines(result.stdout);
  assert.deepEqual(methodsOf(lines), METHODS);
  for (const line of runnable(lines, "array")) {
    assert.equal(line.verified, true, JSON.stringify(line));
    assert.equal(line.entries, 5000, JSON.stringify(line));
  }
});

bpfTest("compare.ts: bad input exits 2 (usage) or 1 (runtime) with one error line", async () => {
  const pin = pinPath();
  const cases: [string[], number[], RegExp, { only?: boolean }?][] = [
    [["--parallel", "0"], [2], /--parallel must be at least 1, not 0/],
    [["--rounds", "0"], [2], /--rounds must be at least 1, not 0/],
    // Before a map is filled or a dump runs: nothing but the error on stderr.
    [["--svg", "/nonexistent-dir/x.svg"], [1], /cannot write --svg "\/nonexistent-dir\/x\.svg"/],
    // More ranges than the 1,024 buckets of a 1,000-entry hash map.
    [
      ["--parallel", "100000", "--entries", "1000", "--rounds", "1", "--json"],
      [1, 2],
      /100000 ranges for .*: it has only 1024 buckets to split/,
    ],
    [["--pin", pin, "--entries", "5"], [2], /--entries and --type make a fresh map/],
    [["--id", "1", "--type", "array"], [2], /--entries and --type make a fresh map/],
    [["--type", "bogus"], [2], /unknown --type "bogus"/],
    [["--methods", "bogus"], [2], /unknown --methods "bogus": choose from .*, dump, bpftool$/],
    [["--bpftool", "/usr/sbin/bpftool"], [2], /--bpftool is for --methods bpftool/],
    [["--methods", "dump", "--bpftool", "x"], [2], /--bpftool is for --methods bpftool/],
  ];
  try {
    await Promise.all(cases.map(async ([args, codes, mention, options]) => {
      const result = await run("compare.ts", ...args);
      try {
        assertError(result, codes, mention, options);
      } catch (e) {
        throw new Error(`compare.ts ${args.join(" ")}: ${(e as Error).message}`, { cause: e });
      }
    }));
  } finally {
    remove(pin);
  }
});

/** The whole-process rows of `--methods dump,bpftool`. */
const PROCESSES = ["dump --json", "bpftool -j map dump"];

bpfTest(
  "compare.ts --methods dump,bpftool times both whole processes, outputs identical",
  async () => {
    const fakes = Deno.makeTempDirSync({ prefix: "compare_test_bpftool_" });
    // A bpftool whose dump is not the map's: the outputs differ, and that is an error.
    const wrong = `${fakes}/bpftool`;
    Deno.writeTextFileSync(
      wrong,
      `#!/bin/sh\ncase "$1" in version) echo "bpftool v7.1.0 (fake)";; *) echo "[]";; esac\n`,
    );
    Deno.chmodSync(wrong, 0o755);
    const small = ["--entries", "3000", "--rounds", "1"];
    try {
      const [json, table, missing, differ] = await Promise.all([
        run("compare.ts", ...small, "--methods", "batch,dump,bpftool", "--json"),
        run("compare.ts", ...small, "--methods", "dump,bpftool"),
        run(
          "compare.ts",
          ...small,
          "--methods",
          "dump,bpftool",
          "--bpftool",
          `${fakes}/none`,
          "--json",
        ),
        run("compare.ts", ...small, "--methods", "dump,bpftool", "--bpftool", wrong, "--json"),
      ]);
      const installed = "version" in await bpftoolVersion();

      assertOk(json, "compare.ts --methods batch,dump,bpftool --json");
      const lines = jsonLines(json.stdout);
      assert.deepEqual(methodsOf(lines), ["batch / syscall", "batch / libbpf", ...PROCESSES]);
      const [dump, bpftool] = lines.slice(2);
      for (const line of lines.slice(0, 2)) {
        assert.equal(line.wholeProcess, false, JSON.stringify(line));
        assert.equal(line.ratioToBpftool, null, JSON.stringify(line));
      }
      assert.equal(dump.reference, false);
      assert.equal(bpftool.reference, true);
      if (installed) {
        for (const line of [dump, bpftool]) {
          const what = JSON.stringify(line);
          assert.equal(line.wholeProcess, true, what);
          assert.equal(line.kind, "whole process", what);
          assert.equal(line.identical, true, what);
          assert.equal(line.verified, true, what);
          assert.equal(line.skipped, null, what);
          assert.equal(line.rounds, 1, what);
          assert.ok(typeof line.median === "number" && line.median > 0, what);
          // Whole processes are compared with bpftool's, not with the walks.
          assert.equal(line.ratioToPerEntry, null, what);
          assert.equal(line.ratioToReference, null, what);
        }
        assert.equal(bpftool.ratioToBpftool, 1);
        const expected = (dump.median as number) / (bpftool.median as number);
        assert.ok(
          Math.abs((dump.ratioToBpftool as number) - expected) < 1e-9,
          JSON.stringify(dump),
        );
        assert.match(String(bpftool.mechanism), /^bpftool v\d/);
      } else {
        assert.match(String(bpftool.skipped), /not installed/);
      }

      assertOk(table, "compare.ts --methods dump,bpftool");
      assert.match(table.stdout, /hash, 3000 entries, 1 rounds each/);
      for (const method of PROCESSES) {
        assert.match(table.stdout, new RegExp(`^│ ${method} +│`, "m"), table.stdout);
      }
      if (installed) {
        assert.match(table.stdout, /│ vs bpftool │/);
        assert.match(table.stdout, /^│ bpftool -j map dump .*│ 1\.000x +│/m);
        assert.match(table.stdout, /byte-identical every round/);
        assert.match(table.stderr, /round 1\/1: dump --json\nround 1\/1: bpftool -j map dump/);
      }

      // No bpftool: its row says so, and the dump's is timed but not compared.
      assertOk(missing, "compare.ts --bpftool NONE");
      const [alone, none] = jsonLines(missing.stdout);
      assert.deepEqual(methodsOf([alone, none]), PROCESSES);
      assert.match(String(none.skipped), /^not installed: no ".*\/none"/);
      assert.equal(none.rounds, 0);
      assert.equal(alone.skipped, null);
      assert.equal(alone.rounds, 1);
      assert.equal(alone.identical, null);
      assert.equal(alone.verified, false);
      assert.match(String(alone.countUnavailable), /not compared: bpftool -j map dump skipped/);

      // Outputs that differ: one error line, exit 1, no rows.
      assertError(
        differ,
        [1],
        /dump --json and bpftool -j map dump differ on \/sys\/fs\/bpf\/\S+ \(round 1\): dump bpftool differ: byte \d+, line 1 \(outputs kept in \S+\)$/,
      );
      assert.equal(differ.stdout, "");
      const kept = differ.stderr.match(/outputs kept in (\S+)\)/)![1];
      assert.equal(Deno.readTextFileSync(`${kept}/bpftool`), "[]\n");
      remove(kept);
    } finally {
      remove(fakes);
    }
  },
);

bpfTest("batch.ts --parallel and iter.ts verify a pinned map", async () => {
  const pin = pinPath();
  try {
    const loaded = await run("load.ts", "--entries", "50000", "--pin", pin);
    assertOk(loaded, "load.ts");
    const cases: [string, string[], RegExp][] = [
      ["batch.ts", ["--parallel", "3", "--pin", pin], /syscall in workers/],
      // Without a number: one range per CPU, whether more flags follow or not.
      ["batch.ts", ["--parallel", "--pin", pin], /syscall in workers/],
      ["batch.ts", ["--pin", pin, "--parallel", "--backend", "libbpf"], /libbpf in workers/],
      ["batch.ts", ["--pin", pin, "--parallel"], /syscall in workers/],
    ];
    const noIter = methodUnavailable("iter");
    if (noIter === null) cases.push(["iter.ts", ["--pin", pin], /bpf_iter \+ read/]);
    else {
      const iter = await run("iter.ts", "--pin", pin);
      assertError(iter, [1], new RegExp(`the iter method cannot run here: .*deno task batch\\)$`));
    }
    await Promise.all(cases.map(async ([script, args, mechanism]) => {
      const what = `${script} ${args.join(" ")}`;
      const result = await run(script, ...args);
      assertOk(result, what);
      assert.match(result.stdout, mechanism, `${what}:\n${result.stdout}`);
      assert.ok(result.stdout.includes("Count 50000 entries"), `${what}:\n${result.stdout}`);
      assert.match(
        result.stdout,
        new RegExp(`Verified: every key once, 50000 distinct \\(${countOf(50000)}\\)`),
        `${what}:\n${result.stdout}`,
      );
      assert.equal(result.stderr, "", `${what} wrote on stderr`);
    }));
    const bad = await run("batch.ts", "--pin", pin, "--parallel", "0");
    assertError(bad, [2], /--parallel must be at least 1, not 0/);
  } finally {
    remove(pin);
  }
});

bpfTest("sweep.ts writes a verified CSV and five charts; --parts bogus exits 2", async () => {
  const out = Deno.makeTempDirSync({ prefix: "compare_test_sweep_" });
  try {
    const [result, bogus] = await Promise.all([
      run(
        "sweep.ts",
        ...["--min", "1000", "--max", "10000", "--rounds", "1"],
        ...["--chunk-entries", "20000", "--type-entries", "5000", "--out", out],
      ),
      run("sweep.ts", "--parts", "bogus", "--out", `${out}/bogus`),
    ]);
    assertOk(result, "sweep.ts");
    const [head, ...rows] = Deno.readTextFileSync(`${out}/sweep.csv`).trimEnd().split("\n");
    assert.equal(
      head,
      "part,type,entries,fill,chunk,ranges,method,chose,median_s,min_s,max_s,ns_per_entry,verified",
    );
    assert.ok(rows.length > 0, "no rows");
    for (const row of rows) assert.match(row, /,true$/, `not verified: ${row}`);
    for (const part of ["sizes", "chunks", "types", "parallel", "fill"]) {
      assert.ok(rows.some((row) => row.startsWith(`${part},`)), `no ${part} rows`);
      const chart = Deno.readTextFileSync(`${out}/${part}.svg`);
      assert.ok(chart.includes("<svg"), `${part}.svg is not an SVG`);
    }
    // Two sizes by ten methods; nine chunks by three; six types by ten, less snapshot and
    // hybrid on the three per-CPU types (skipped: they see one CPU's values); seven range
    // counts by two; seven fill ratios by four (batch, snapshot, hybrid, auto). Less the
    // methods this kernel refuses, which the output names with the probe's reason.
    const noIter = methodUnavailable("iter") === null ? 0 : 1;
    const noKernelWalk = methodUnavailable("snapshot") === null ? 0 : 2;
    assert.equal(
      rows.filter((row) => row.startsWith("sizes,")).length,
      2 * (10 - noIter - noKernelWalk),
    );
    assert.equal(rows.filter((row) => row.startsWith("chunks,")).length, 9 * 3);
    assert.equal(
      rows.filter((row) => row.startsWith("types,")).length,
      6 * (10 - noIter) - 3 * 2 - 3 * noKernelWalk,
    );
    assert.equal(rows.filter((row) => row.startsWith("parallel,")).length, 7 * 2);
    assert.equal(rows.filter((row) => row.startsWith("fill,")).length, 7 * (4 - noKernelWalk));
    for (const method of ["iter", "snapshot"] as const) {
      const refused = methodUnavailable(method);
      if (refused !== null) {
        assert.ok(result.stdout.includes(refused), `${method}: ${result.stdout}`);
      }
    }
    // auto names what it chose; the others name themselves.
    for (const row of rows.filter((row) => row.includes(',"auto",'))) {
      assert.match(row, /,"auto",(normal|batch|parallel|snapshot|hybrid),/, row);
    }

    assertError(bogus, [2], /unknown part "bogus" in --parts/);
    assert.throws(() => Deno.lstatSync(`${out}/bogus`), Deno.errors.NotFound);
  } finally {
    remove(out);
  }
});
