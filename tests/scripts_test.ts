/**
 * End-to-end tests of the scripts, run as the deno tasks run them (`deno run --allow-ffi`)
 * on small maps: output, `--json`, `--runs`, `--seed-compat`, `--mem`, other map types,
 * exit codes and one-line errors for bad input, Ctrl-C during a fill, `--hold`, the demo.
 *
 * @module
 */

import assert from "node:assert/strict";
import { BpfMap } from "../mod.ts";
import {
  ALL_BACKENDS,
  bpfTest,
  runScript as run,
  scriptCommand as command,
  type ScriptRun as Run,
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

bpfTest("--runs 3 prints a summary table of real, user and sys", async () => {
  await withMap(["--entries", String(ENTRIES)], async ({ pin }) => {
    await Promise.all(["normal.ts", "batch.ts"].map(async (script) => {
      const result = await run(script, "--pin", pin, "--runs", "3");
      assertOk(result, `${script} --runs 3`);
      assert.equal(result.stdout.split(`Count ${ENTRIES} entries`).length - 1, 3);
      const lines = result.stdout.split("\n");
      const head = lines.find((line) => line.includes("Mean"));
      assert.ok(head, `no table in:\n${result.stdout}`);
      for (const column of ["Mean", "Std.Dev.", "Min", "Median", "Max"]) {
        assert.ok(head.includes(column), `no ${column} column: ${head}`);
      }
      for (const row of ["real", "user", "sys"]) {
        assert.ok(
          lines.some((line) => new RegExp(`^\\W*${row}\\W+(\\d+\\.\\d+\\W+){5}$`).test(line)),
          `no ${row} row in:\n${result.stdout}`,
        );
      }
    }));
  });
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
      for (const section of [result.stdout.slice(init, last), result.stdout.slice(last)]) {
        assert.match(section, /^rss = \d+ \(/m);
        assert.match(section, /^heapUsed = \d+ \(/m);
      }
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

bpfTest("a map with other key and value sizes names the flags to pass", async () => {
  await withMap(
    ["--type", "hash", "--key-size", "8", "--value-size", "4", "--entries", "1000"],
    async ({ pin }) => {
      const [normal, batch, right] = await Promise.all([
        run("normal.ts", "--pin", pin),
        run("batch.ts", "--pin", pin),
        run("batch.ts", "--pin", pin, "--key-size", "8", "--value-size", "4"),
      ]);
      for (const result of [normal, batch]) {
        const line = assertRuntimeError(result, "--key-size 8 --value-size 4");
        assert.match(line, /8-byte keys and 4-byte values/);
      }
      assertOk(right, "batch.ts --key-size 8 --value-size 4");
      assert.ok(right.stdout.includes("Count 1000 entries"));
    },
  );
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

      // Entries deleted mid-walk: the walk ends and says it cannot vouch for what it read.
      assertOk(await run("load.ts", "--entries", "300000", "--pin", pin), "load.ts");
      const emptied = new Running("normal.ts", ["--pin", pin]);
      await emptied.waitFor("Start to iterate");
      using map = BpfMap.fromPin(pin);
      map.forEachBatchAndDelete(() => {});
      const verdict = await emptied.finish();
      assert.equal(verdict.code, 1, `expected exit 1:\n${verdict.stdout}\n${verdict.stderr}`);
      assertNoStack(verdict.stderr);
      assert.match(verdict.stderr, /^error: dump not verified: /m);
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
