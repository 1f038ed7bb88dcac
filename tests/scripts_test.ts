/**
 * End-to-end tests of the scripts, run as the deno tasks run them (`deno run --allow-ffi`)
 * on small maps: output, `--json`, `--runs`, `--seed-compat`, `--mem`, other map types,
 * exit codes and one-line errors for bad input, Ctrl-C during a fill, `--hold`, the demo.
 *
 * @module
 */

import assert from "node:assert/strict";
import { BpfMap, methodUnavailable, unavailableReason } from "../mod.ts";
import {
  ALL_BACKENDS,
  bpfTest,
  countOf,
  ROOT,
  runScript as run,
  runScriptWith,
  scriptCommand as command,
  type ScriptRun as Run,
  taskFlags,
} from "./_helpers.ts";

const ENTRIES = 100_000;
const BIG_ENTRIES = 20_000_000;

/** A running script whose stdout is read as it comes. */
class Running {
  readonly child: Deno.ChildProcess;
  #stdout = "";
  #stdoutDone: Promise<void>;
  #stderr: Promise<string>;
  #ended = false;

  constructor(script: string, args: string[]) {
    const child = this.child = command(script, args).spawn();
    this.#stdoutDone = (async () => {
      for await (const text of child.stdout.pipeThrough(new TextDecoderStream())) {
        this.#stdout += text;
      }
      this.#ended = true;
    })();
    this.#stderr = new Response(child.stderr).text();
  }

  /** Waits until stdout contains `marker`; kills the script and throws after `ms`. */
  async waitFor(marker: string, ms = 30_000): Promise<string> {
    const deadline = Date.now() + ms;
    while (!this.#stdout.includes(marker)) {
      if (this.#ended || Date.now() > deadline) {
        const end = await this.stop();
        assert.fail(
          `no "${marker}" on stdout (exit ${end.code}):\n${end.stdout}\n${end.stderr}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return this.#stdout;
  }

  /** Kills the script if it still runs, and waits for it. */
  async stop(): Promise<Run> {
    if (!this.#ended) {
      try {
        this.child.kill("SIGKILL");
      } catch {
        // It exited in between.
      }
    }
    return await this.finish();
  }

  /** Waits for the exit and every byte of output. */
  async finish(): Promise<Run> {
    const [status, , stderr] = await Promise.all([
      this.child.status,
      this.#stdoutDone,
      this.#stderr,
    ]);
    return { code: status.code, stdout: this.#stdout, stderr };
  }
}

/** A fresh pin path under bpffs. */
function pinPath(): string {
  return `/sys/fs/bpf/scripts_test_${crypto.randomUUID().slice(0, 8)}`;
}

function removePin(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** Parses every stdout line as JSON. */
function jsonLines(stdout: string): Record<string, unknown>[] {
  const lines = stdout.trim().split("\n");
  return lines.map((line) => {
    try {
      return JSON.parse(line);
    } catch {
      assert.fail(`stdout line is not JSON: ${line}`);
    }
  });
}

function assertOk(result: Run, what: string): void {
  assert.equal(
    result.code,
    0,
    `${what} exited ${result.code}:\n${result.stdout}\n${result.stderr}`,
  );
}

function assertNoStack(stderr: string): void {
  assert.doesNotMatch(stderr, /^ {4}at /m, `stack trace on stderr:\n${stderr}`);
  assert.doesNotMatch(stderr, /Uncaught/, `uncaught error on stderr:\n${stderr}`);
}

/** Exit 2, `error: ...` naming `mention`, then the usage line, and nothing else. */
function assertUsageError(result: Run, mention: string | RegExp): void {
  assert.equal(result.code, 2, `expected exit 2:\n${result.stdout}\n${result.stderr}`);
  assertNoStack(result.stderr);
  const lines = result.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 2, `expected an error and the usage line:\n${result.stderr}`);
  assert.match(lines[0], /^error: /);
  if (typeof mention === "string") assert.ok(lines[0].includes(mention), lines[0]);
  else assert.match(lines[0], mention);
  assert.match(lines[1], /^usage: \w+\.ts /);
}

/** Exit 1 and one `error: ...` line naming `mention`. */
function assertRuntimeError(result: Run, mention: string | RegExp): string {
  assert.equal(result.code, 1, `expected exit 1:\n${result.stdout}\n${result.stderr}`);
  assertNoStack(result.stderr);
  const lines = result.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `expected one error line:\n${result.stderr}`);
  assert.match(lines[0], /^error: /);
  if (typeof mention === "string") assert.ok(lines[0].includes(mention), lines[0]);
  else assert.match(lines[0], mention);
  return lines[0];
}

/** Loads a map with `load.ts --json` at a fresh pin, runs `fn`, and removes the pin. */
async function withMap(
  args: string[],
  fn: (map: { pin: string; id: number }) => Promise<void>,
): Promise<void> {
  const pin = pinPath();
  try {
    const loaded = await run("load.ts", ...args, "--pin", pin, "--json");
    assertOk(loaded, "load.ts");
    const [report] = jsonLines(loaded.stdout);
    await fn({ pin, id: report.id as number });
  } finally {
    removePin(pin);
  }
}

bpfTest(
  "load.ts fills and pins; normal.ts and batch.ts dump it by pin and id on both backends",
  async () => {
    const pin = pinPath();
    try {
      const loaded = await run("load.ts", "--entries", String(ENTRIES), "--pin", pin);
      assertOk(loaded, "load.ts");
      const id = loaded.stdout.match(/map id is (\d+)/)?.[1];
      assert.ok(id, `no map id in:\n${loaded.stdout}`);
      assert.ok(loaded.stdout.includes(pin), loaded.stdout);
      assert.match(loaded.stdout, new RegExp(`filled ${ENTRIES} entries`));
      assert.match(loaded.stdout, /memlock/);
      assert.ok(exists(pin), "the pin does not exist");

      const runs = ALL_BACKENDS.flatMap((backend) =>
        [["--pin", pin], ["--id", id]].flatMap((by) =>
          ["normal.ts", "batch.ts"].map(async (script) => {
            const what = `${script} ${by.join(" ")} --backend ${backend}`;
            const result = await run(script, ...by, "--backend", backend);
            assertOk(result, what);
            assert.match(result.stdout, new RegExp(`get from id: ${id} `), what);
            assert.ok(result.stdout.includes(`Count ${ENTRIES} entries`), what);
            assert.ok(result.stdout.includes("Verified"), what);
            if (script === "batch.ts") {
              assert.ok(result.stdout.includes("Batch Count is 25"), `${what}:\n${result.stdout}`);
            }
            assert.equal(result.stderr, "", `${what} wrote on stderr`);
          })
        )
      );
      await Promise.all(runs);
    } finally {
      removePin(pin);
    }
  },
);

bpfTest("--json prints one JSON object per line with the figures", async () => {
  const pin = pinPath();
  try {
    const loaded = await run("load.ts", "--entries", String(ENTRIES), "--pin", pin, "--json");
    assertOk(loaded, "load.ts --json");
    const loadLines = jsonLines(loaded.stdout);
    assert.equal(loadLines.length, 1);
    const report = loadLines[0];
    for (const field of ["id", "pin", "entries", "seconds", "memlock"]) {
      assert.ok(field in report, `load.ts --json has no "${field}": ${loaded.stdout}`);
    }
    assert.equal(report.pin, pin);
    assert.equal(report.entries, ENTRIES);
    assert.equal(typeof report.id, "number");
    assert.equal(typeof report.memlock, "number");

    const fields = [
      "method",
      "backend",
      "entries",
      "distinct",
      "seconds",
      "user",
      "sys",
      "syscalls",
      "chunk",
      "batches",
      "memory",
    ];
    await Promise.all(
      ALL_BACKENDS.flatMap((backend) =>
        (["normal", "batch"] as const).map(async (method) => {
          const what = `${method}.ts --json --backend ${backend}`;
          const result = await run(
            `${method}.ts`,
            "--id",
            String(report.id),
            "--backend",
            backend,
            "--runs",
            "2",
            "--json",
          );
          assertOk(result, what);
          const lines = jsonLines(result.stdout);
          assert.equal(lines.length, 2, `${what}: one line per run`);
          for (const line of lines) {
            for (const field of fields) {
              assert.ok(field in line, `${what} has no "${field}": ${JSON.stringify(line)}`);
            }
            assert.equal(line.method, method);
            assert.equal(line.backend, backend);
            assert.equal(line.entries, ENTRIES);
            assert.equal(line.distinct, ENTRIES);
            assert.equal(line.verified, true);
            assert.equal(typeof line.seconds, "number");
            if (method === "batch") {
              assert.equal(line.chunk, 4096);
              assert.equal(line.batches, 25);
            }
          }
        })
      ),
    );
  } finally {
    removePin(pin);
  }
});

/** Mean, population standard deviation, min, median and max, computed here for the check. */
function statistics(samples: number[]): number[] {
  const sorted = [...samples].sort((a, b) => a - b);
  const n = sorted.length;
  const mean = sorted.reduce((a, b) => a + b, 0) / n;
  const sd = Math.sqrt(sorted.reduce((a, b) => a + (b - mean) ** 2, 0) / n);
  const median = n % 2 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  return [mean, sd, sorted[0], median, sorted[n - 1]];
}

bpfTest("--runs prints mean, std. dev., min, median and max of each run's figures", async () => {
  await withMap(["--entries", String(ENTRIES)], async ({ pin }) => {
    await Promise.all(["normal.ts", "batch.ts"].map(async (script) => {
      const runs = 4; // an even count: the median is the mean of the middle two
      const result = await run(script, "--pin", pin, "--runs", String(runs), "--mem");
      assertOk(result, `${script} --runs ${runs}`);
      assert.equal(result.stdout.split(`Count ${ENTRIES} entries`).length - 1, runs);
      // Each run's own figures, as printed (3 decimals).
      const real = [...result.stdout.matchAll(/^Elapsed (\d+\.\d+) s/gm)].map((m) => Number(m[1]));
      const cpu = [...result.stdout.matchAll(/^cpu user = (\d+\.\d+) s, sys = (\d+\.\d+) s/gm)];
      assert.equal(real.length, runs, result.stdout);
      assert.equal(cpu.length, runs, result.stdout);
      const samples = {
        real,
        user: cpu.map((m) => Number(m[1])),
        sys: cpu.map((m) => Number(m[2])),
      };
      const lines = result.stdout.split("\n");
      const head = lines.find((line) => line.includes("Mean"));
      assert.ok(head, `no table in:\n${result.stdout}`);
      assert.deepEqual(head.split("│").map((cell) => cell.trim()).filter(Boolean), [
        "Mean",
        "Std.Dev.",
        "Min",
        "Median",
        "Max",
      ]);
      for (const [name, values] of Object.entries(samples)) {
        const row = lines.find((line) => new RegExp(`^\\W*${name}\\W`).test(line));
        assert.ok(row, `no ${name} row in:\n${result.stdout}`);
        const cells = row.split("│").map((cell) => cell.trim()).filter(Boolean).slice(1);
        const expected = statistics(values);
        cells.forEach((cell, i) => {
          // Each run's figure and each cell are rounded to 3 decimals.
          assert.ok(
            Math.abs(Number(cell) - expected[i]) <= 0.0011,
            `${script} ${name}: column ${i + 1} is ${cell}, expected ${expected[i].toFixed(4)}`,
          );
        });
      }
    }));
  });
});

/** A copy of the repository's code and built objects, without `build/map_count.bpf.o`. */
function copyWithoutCounter(): string {
  const copy = Deno.makeTempDirSync({ prefix: "scripts_test_no_counter_" });
  for (const path of ["ffi", "scripts", "mod.ts", "deno.json", "deno.lock", "build"]) {
    const copied = new Deno.Command("cp", { args: ["-a", `${ROOT}${path}`, copy] }).outputSync();
    assert.ok(copied.success, new TextDecoder().decode(copied.stderr));
  }
  Deno.removeSync(`${copy}/build/map_count.bpf.o`);
  return copy;
}

/** The dump scripts that run on this kernel (iter.ts only where bpf_iter programs load). */
function dumpScripts(): string[] {
  return ["normal.ts", "batch.ts", ...(methodUnavailable("iter") === null ? ["iter.ts"] : [])];
}

bpfTest(
  "without the kernel's count a dump is checked against another count, and names it",
  async () => {
    const copy = copyWithoutCounter();
    try {
      await withMap(["--entries", "5000"], async ({ pin }) => {
        for (const script of dumpScripts()) {
          const human = await runScriptWith({ root: copy }, script, "--pin", pin);
          assertOk(human, `${script} without build/map_count.bpf.o`);
          assert.match(
            human.stdout,
            /^Verified: every key once, 5000 distinct \(count 5000 by a (bpf_for_each_map_elem|bpf_iter|LOOKUP_BATCH|GET_NEXT_KEY) pass\)$/m,
            `${script}:\n${human.stdout}`,
          );
          const json = await runScriptWith({ root: copy }, script, "--pin", pin, "--json");
          assertOk(json, `${script} --json without build/map_count.bpf.o`);
          const [result] = jsonLines(json.stdout);
          assert.equal(result.verified, true);
          assert.equal(result.expected, 5000);
          assert.notEqual(result.countSource, "kernel");
          // Never the dump's own walk: a walk that is wrong would agree with itself.
          const own = { "normal.ts": "keys", "batch.ts": "batch", "iter.ts": "iter" }[script];
          assert.notEqual(result.countSource, own, script);
        }
        // With the kernel's count (where the kernel keeps one), the dump is checked against it.
        const verified = await run("batch.ts", "--pin", pin, "--json");
        assertOk(verified, "batch.ts");
        const [result] = jsonLines(verified.stdout);
        assert.equal(
          result.countSource,
          unavailableReason("elem_count_kfunc") ? "for_each" : "kernel",
        );
      });
    } finally {
      Deno.removeSync(copy, { recursive: true });
    }
  },
);

bpfTest(
  "with no count to check against, a dump says so and claims every key once, no more",
  async () => {
    // Every count but the per-entry walk's own denied: nothing is left to check it against.
    const BPF_DENY = "elem_count_kfunc,for_each_map_elem,iter_map_elem,lookup_batch_hash";
    await withMap(["--entries", "5000"], async ({ pin }) => {
      const human = await runScriptWith({ env: { BPF_DENY } }, "normal.ts", "--pin", pin);
      assertOk(human, `BPF_DENY=${BPF_DENY} normal.ts`);
      assert.doesNotMatch(human.stdout, /Verified/, "normal.ts claimed more than it checked");
      assert.match(
        human.stdout,
        /^Every key once, 5000 distinct; kernel count unavailable: the kernel's count: .*denied to this process.*; a GET_NEXT_KEY pass: it is the normal dump's own walk$/m,
        human.stdout,
      );
      const json = await runScriptWith({ env: { BPF_DENY } }, "normal.ts", "--pin", pin, "--json");
      assertOk(json, `BPF_DENY=${BPF_DENY} normal.ts --json`);
      const [result] = jsonLines(json.stdout);
      assert.equal(result.verified, false);
      assert.equal(result.problem, null);
      assert.equal(result.expected, null);
      assert.equal(result.countSource, null);
      // LOOKUP_BATCH denied: batch.ts refuses in one line, naming what to use instead.
      const batch = await runScriptWith({ env: { BPF_DENY } }, "batch.ts", "--pin", pin);
      const line = assertRuntimeError(batch, "use the normal method instead (--method normal)");
      assert.match(
        line,
        /^error: the batch method cannot run here: BPF_MAP_LOOKUP_BATCH on hash maps: denied/,
      );
    });
  },
);

/** The environment variables the README documents, and the flag every task grants for them. */
const ENV_FLAG = "--allow-env=DEBUG,BPF_BACKEND,LIBBPF_PATH,BPF_DENY";

bpfTest("DEBUG, BPF_BACKEND and LIBBPF_PATH work through the deno tasks", async () => {
  for (const script of ["load.ts", "normal.ts", "batch.ts", "iter.ts", "demo.ts", "compare.ts"]) {
    assert.ok(taskFlags(script).includes(ENV_FLAG), `the ${script} task lacks ${ENV_FLAG}`);
  }
  await withMap(["--entries", "1000"], async ({ pin }) => {
    for (const script of ["normal.ts", "batch.ts"]) {
      const libbpf = await runScriptWith({ env: { BPF_BACKEND: "libbpf" } }, script, "--pin", pin);
      assertOk(libbpf, `BPF_BACKEND=libbpf ${script}`);
      assert.match(libbpf.stdout, /^get from id: \d+ \(hash, 1000 max entries, libbpf\)$/m);

      const missing = "/nonexistent/libbpf.so.1";
      const wrongPath = await runScriptWith(
        { env: { BPF_BACKEND: "libbpf", LIBBPF_PATH: missing } },
        script,
        "--pin",
        pin,
      );
      assert.equal(wrongPath.code, 1, `LIBBPF_PATH=${missing}: ${wrongPath.stdout}`);
      assert.match(
        wrongPath.stderr,
        /^error: Cannot open libbpf: tried "\/nonexistent\/libbpf\.so\.1"/,
      );
      assert.match(wrongPath.stderr, /check LIBBPF_PATH$/m);
    }
  });
  const gone = "/sys/fs/bpf/scripts_test_no_such_pin";
  const plain = await run("batch.ts", "--pin", gone);
  assert.equal(plain.code, 1);
  assert.equal(plain.stderr.trimEnd().split("\n").length, 1, plain.stderr);
  const debug = await runScriptWith({ env: { DEBUG: "1" } }, "batch.ts", "--pin", gone);
  assert.equal(debug.code, 1);
  assert.match(debug.stderr, /^error: BPF_OBJ_GET on /);
  assert.match(
    debug.stderr,
    /^ {4}at .*ffi\/map\/map\.ts/m,
    `DEBUG=1 printed no stack:\n${debug.stderr}`,
  );
});

bpfTest("--seed-compat reports far fewer distinct keys than entries", async () => {
  await withMap(["--entries", String(ENTRIES)], async ({ pin }) => {
    const [json, human] = await Promise.all([
      run("batch.ts", "--pin", pin, "--seed-compat", "--chunk", "4096", "--json"),
      run("batch.ts", "--pin", pin, "--seed-compat", "--chunk", "4096"),
    ]);
    assertOk(json, "batch.ts --seed-compat --json");
    const [result] = jsonLines(json.stdout);
    assert.equal(result.method, "seed-compat");
    assert.equal(result.verified, false);
    const entries = result.entries as number;
    const distinct = result.distinct as number;
    assert.ok(entries > 0);
    assert.ok(distinct < entries / 4, `distinct ${distinct} of ${entries} entries`);
    assertOk(human, "batch.ts --seed-compat");
    assert.match(human.stdout, /Seed-compat: \d+ entries reported but only \d+ distinct/);
  });
});

bpfTest("--mem prints the memory at the start and end of the walk", async () => {
  await withMap(["--entries", String(ENTRIES)], async ({ pin }) => {
    await Promise.all(["normal.ts", "batch.ts"].map(async (script) => {
      const result = await run(script, "--pin", pin, "--mem");
      assertOk(result, `${script} --mem`);
      const init = result.stdout.indexOf("----- init -----");
      const last = result.stdout.indexOf("----- last -----");
      assert.ok(init >= 0 && last > init, result.stdout);
      // What the README promises: Deno.memoryUsage() at init and at the end, peak RSS, CPU time.
      for (const section of [result.stdout.slice(init, last), result.stdout.slice(last)]) {
        for (const figure of ["rss", "heapTotal", "heapUsed", "external"]) {
          assert.match(section, new RegExp(`^${figure} = [1-9]\\d* \\(\\d`, "m"), figure);
        }
      }
      const peak = Number(result.stdout.match(/^peakRss = (\d+)$/m)?.[1]);
      const lastRss = Number(result.stdout.slice(last).match(/^rss = (\d+)/m)?.[1]);
      assert.ok(peak >= lastRss && lastRss > 0, `peakRss ${peak} below the last rss ${lastRss}`);
      assert.match(result.stdout, /^cpu user = \d+\.\d{3} s, sys = \d+\.\d{3} s$/m);
      assert.ok(result.stdout.includes(`Count ${ENTRIES} entries`));
    }));
  });
});

bpfTest("load.ts creates other map types that batch.ts and normal.ts verify", async () => {
  const cases = [
    {
      load: ["--type", "percpu_hash", "--key-size", "4", "--value-size", "8"],
      dump: ["--key-size", "4", "--value-size", "8"],
    },
    { load: ["--type", "array"], dump: [] },
    { load: ["--type", "percpu_array", "--value-size", "8"], dump: ["--value-size", "8"] },
  ];
  await Promise.all(
    cases.map(({ load, dump }) =>
      withMap([...load, "--entries", "1000"], async ({ pin }) => {
        for (const script of ["batch.ts", "normal.ts"]) {
          const what = `${script} on load.ts ${load.join(" ")}`;
          const result = await run(script, "--pin", pin, ...dump);
          assertOk(result, what);
          assert.ok(result.stdout.includes("Count 1000 entries"), `${what}:\n${result.stdout}`);
          assert.ok(result.stdout.includes("Verified"), `${what}:\n${result.stdout}`);
        }
      })
    ),
  );
});

bpfTest("bad usage exits 2 with one error line and the usage line", async () => {
  const pin = pinPath();
  try {
    const cases: [string, string[], string | RegExp][] = [
      ["normal.ts", ["--bogus"], "--bogus"],
      ["batch.ts", ["--bogus"], "--bogus"],
      ["load.ts", ["--bogus", "--pin", pin], "--bogus"],
      ["normal.ts", ["--pin"], "--pin"],
      ["batch.ts", ["--pin", pin, "--chunk", "abc"], /--chunk .*"abc"/],
      ["batch.ts", ["--pin", pin, "--chunk", "0"], /--chunk must be at least 1/],
      ["load.ts", ["--entries", "-5", "--pin", pin], /--entries .*-5/],
      ["load.ts", ["--entries=-5", "--pin", pin], /--entries .*-5/],
      ["batch.ts", ["--pin", pin, "--chunk", "4294967296"], /--chunk must be at most 4294967295/],
      ["normal.ts", ["--pin", pin, "--chunk", "16"], "--chunk"],
      ["normal.ts", ["--pin", pin, "--id", "1"], /--id or --pin/],
      ["normal.ts", ["--pin", pin, "--backend", "bogus"], "bogus"],
      ["load.ts", ["--hold", "--pin", pin], "--hold"],
    ];
    await Promise.all(cases.map(async ([script, args, mention]) => {
      const result = await run(script, ...args);
      try {
        assertUsageError(result, mention);
      } catch (e) {
        throw new Error(`${script} ${args.join(" ")}: ${(e as Error).message}`, { cause: e });
      }
    }));
    assert.ok(!exists(pin), "a usage error left a pin behind");
  } finally {
    removePin(pin);
  }
});

bpfTest("runtime failures exit 1 with one error line", async () => {
  const missing = pinPath();
  const file = Deno.makeTempFileSync({ prefix: "scripts_test_" });
  try {
    const [byId, batchById, noPin, notBpffs] = await Promise.all([
      run("normal.ts", "--id", "2147483000"),
      run("batch.ts", "--id", "2147483000"),
      run("normal.ts", "--pin", missing),
      run("normal.ts", "--pin", file),
    ]);
    assertRuntimeError(byId, "no map with that id");
    assertRuntimeError(batchById, "no map with that id");
    assertRuntimeError(noPin, /nothing is pinned/);
    const line = assertRuntimeError(notBpffs, file);
    assert.match(line, /not on a bpf file system/);
    assert.doesNotMatch(line, /run as root/, "root is told to run as root");
  } finally {
    Deno.removeSync(file);
  }
});

bpfTest(
  "the dump scripts take the map's own key and value sizes; given sizes are checked",
  async () => {
    await withMap(
      ["--type", "hash", "--key-size", "8", "--value-size", "12", "--entries", "1000"],
      async ({ pin }) => {
        const [normal, batch, iter, right, wrong] = await Promise.all([
          run("normal.ts", "--pin", pin),
          run("batch.ts", "--pin", pin),
          run("iter.ts", "--pin", pin),
          run("batch.ts", "--pin", pin, "--key-size", "8", "--value-size", "12"),
          run("batch.ts", "--pin", pin, "--key-size", "4"),
        ]);
        const runs = [[normal, "normal"], [batch, "batch"], [
          right,
          "batch --key-size 8 --value-size 12",
        ]] as [Run, string][];
        // Where this kernel refuses bpf_iter programs, iter.ts says so in one line.
        const noIter = methodUnavailable("iter");
        if (noIter === null) runs.push([iter, "iter"]);
        else assertRuntimeError(iter, `${noIter}: use the batch method instead (deno task batch)`);
        for (const [result, what] of runs) {
          assertOk(result, what);
          assert.ok(result.stdout.includes("Count 1000 entries"), `${what}:\n${result.stdout}`);
          assert.match(result.stdout, /^Verified: every key once, 1000 distinct/m, what);
        }
        const line = assertRuntimeError(
          wrong,
          "drop --key-size/--value-size, or give the map's own",
        );
        assert.match(line, /8-byte keys and 12-byte values, not 4 and 12/);
      },
    );
  },
);

Deno.test("batch.ts --help names every flag it takes", async () => {
  const help = await run("batch.ts", "--help");
  assertOk(help, "batch.ts --help");
  // The usage line, continued on indented lines that start with a flag.
  const lines = help.stdout.split("\n");
  const usage = [lines[0], ...lines.slice(1).filter((line) => /^\s+\[--/.test(line))].join(" ");
  for (
    const flag of [
      "--pin",
      "--id",
      "--chunk",
      "--parallel",
      "--seed-compat",
      "--backend",
      "--method",
      "--kernel-budget",
    ]
  ) {
    assert.ok(usage.includes(flag), `${flag} missing from: ${usage}`);
  }
  for (const flag of ["--runs", "--mem", "--json", "--key-size", "--value-size"]) {
    assert.ok(usage.includes(flag), `${flag} missing from: ${usage}`);
  }
});

Deno.test("load.ts checks every flag before it prints or does anything", async () => {
  for (
    const args of [
      ["--type", "lpm_trie", "--entries", "10"],
      ["--key-size", "2", "--entries", "10"],
      ["--type", "hash", "--value-size", "0"],
      ["--object", "x.o", "--type", "hash"],
    ]
  ) {
    const result = await run("load.ts", ...args, "--pin", "/sys/fs/bpf/scripts_test_never");
    assertUsageError(result, /^error: /);
    assert.equal(result.stdout, "", `load.ts ${args.join(" ")} printed:\n${result.stdout}`);
  }
});

bpfTest("load.ts refuses an existing pin unless --replace", async () => {
  await withMap(["--entries", "1000"], async ({ pin, id }) => {
    const refused = await run("load.ts", "--entries", "1000", "--pin", pin);
    assertRuntimeError(refused, "--replace");
    const replaced = await run("load.ts", "--entries", "2000", "--pin", pin, "--replace", "--json");
    assertOk(replaced, "load.ts --replace");
    const [report] = jsonLines(replaced.stdout);
    assert.notEqual(report.id, id, "--replace kept the old map");
    const dump = await run("batch.ts", "--pin", pin, "--json");
    assertOk(dump, "batch.ts on the replaced pin");
    const [result] = jsonLines(dump.stdout);
    assert.equal(result.entries, 2000);
  });
});

bpfTest("Ctrl-C during a fill pins nothing, or a partial map with --keep-partial", async () => {
  const dropped = pinPath();
  const kept = pinPath();
  const interrupt = async (pin: string, ...extra: string[]): Promise<Run> => {
    const load = new Running("load.ts", [
      "--entries",
      String(BIG_ENTRIES),
      "--per-entry",
      "--pin",
      pin,
      ...extra,
    ]);
    try {
      await load.waitFor("Prepare test data");
      load.child.kill("SIGINT");
      return await load.finish();
    } finally {
      await load.stop();
    }
  };
  try {
    const settled = await Promise.allSettled([
      interrupt(dropped),
      interrupt(kept, "--keep-partial"),
    ]);
    const [plain, partial] = settled.map((s) => {
      if (s.status === "rejected") throw s.reason;
      return s.value;
    });

    assert.equal(plain.code, 130, `expected exit 130:\n${plain.stdout}\n${plain.stderr}`);
    assert.match(plain.stderr, /interrupted/);
    assertNoStack(plain.stderr);
    assert.ok(!exists(dropped), "an interrupted fill left a pin");

    assertOk(partial, "load.ts --keep-partial");
    assert.ok(exists(kept), "--keep-partial pinned nothing");
    assert.match(partial.stdout, /kept a partial map/);
    const dump = await run("batch.ts", "--pin", kept, "--json");
    assertOk(dump, "batch.ts on the partial map");
    const [result] = jsonLines(dump.stdout);
    const count = result.entries as number;
    assert.ok(count > 0 && count < BIG_ENTRIES, `partial map of ${count} entries`);
    assert.equal(result.verified, true);
  } finally {
    removePin(dropped);
    removePin(kept);
  }
});

bpfTest("--hold keeps the map open until Ctrl-C", async () => {
  const load = new Running("load.ts", ["--entries", "1000", "--hold"]);
  try {
    const stdout = await load.waitFor("holding");
    const id = stdout.match(/map id is (\d+): holding/)?.[1];
    assert.ok(id, `no map id in:\n${stdout}`);
    const dump = await run("normal.ts", "--id", id);
    assertOk(dump, "normal.ts --id on a held map");
    assert.ok(dump.stdout.includes("Count 1000 entries"), dump.stdout);
    load.child.kill("SIGINT");
    const end = await load.finish();
    assertOk(end, "load.ts --hold after SIGINT");
    assert.match(end.stdout, /released/);
  } finally {
    await load.stop();
  }
});

bpfTest(
  "a map released or emptied during a dump: the dump ends, with a clear verdict",
  async () => {
    // The dump holds its own fd: ending `load --hold` mid-walk cannot free the map under it.
    const held = new Running("load.ts", ["--entries", "300000", "--hold"]);
    const pin = pinPath();
    try {
      const id = (await held.waitFor("holding")).match(/map id is (\d+): holding/)?.[1];
      assert.ok(id, "no map id from load.ts --hold");
      const dump = new Running("normal.ts", ["--id", id]);
      await dump.waitFor("Start to iterate");
      held.child.kill("SIGINT");
      assertOk(await held.finish(), "load.ts --hold after SIGINT");
      const walked = await dump.finish();
      assertOk(walked, "normal.ts while its map's holder exits");
      assert.match(walked.stdout, /Count 300000 entries/);

      // Entries deleted mid-walk: the walk ends, and its verdict says the map was written
      // meanwhile, with the kernel's count before and after, not "verified".
      assertOk(await run("load.ts", "--entries", "300000", "--pin", pin), "load.ts");
      const emptied = new Running("normal.ts", ["--pin", pin]);
      await emptied.waitFor("Start to iterate");
      using map = BpfMap.fromPin(pin);
      map.forEachBatchAndDelete(() => {});
      const verdict = await emptied.finish();
      assertOk(verdict, "normal.ts on a map emptied during the walk");
      assertNoStack(verdict.stderr);
      assert.doesNotMatch(verdict.stdout, /Verified/);
      assert.match(
        verdict.stdout,
        new RegExp(
          `^Map written during the dump \\(${
            countOf("300000 -> \\d+")
          }\\): each key once, \\d+ keys`,
          "m",
        ),
      );
    } finally {
      await held.stop();
      removePin(pin);
    }
  },
);

bpfTest("demo.ts compares normal, batch and seed-compat", async () => {
  const result = await run("demo.ts", "--entries", "50000");
  assertOk(result, "demo.ts");
  for (const method of ["normal", "batch", "seed-compat"]) {
    assert.match(
      result.stdout,
      new RegExp(`^\\W*${method}\\W+\\d+\\W`, "m"),
      `no ${method} row in:\n${result.stdout}`,
    );
  }
  assert.match(result.stdout, /faster than per-entry/);
});
