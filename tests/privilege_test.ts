/**
 * The scripts as an unprivileged user (`nobody`, through `setpriv`): opening a map by pin or
 * by id fails with exit code 1 and one line naming the errno the kernel gave (EACCES by pin,
 * EPERM by id) and the fix, no stack trace.
 *
 * @module
 */

import assert from "node:assert/strict";
import { bpfTest, ROOT } from "./_helpers.ts";

const DROP_PRIVILEGES = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"];

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function output(
  program: string,
  args: string[],
  env: Record<string, string> = {},
  clearEnv = false,
): Promise<Run> {
  const result = await new Deno.Command(program, {
    args,
    cwd: ROOT,
    env,
    clearEnv,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: result.code,
    stdout: decoder.decode(result.stdout),
    stderr: decoder.decode(result.stderr),
  };
}

/**
 * Runs `deno run --allow-ffi scripts/<script>` as nobody with the given `DENO_DIR`;
 * `--cached-only` for probes, so that a cache nobody cannot read costs no download.
 */
function runAsNobody(
  denoDir: string,
  script: string,
  args: string[],
  { cachedOnly = false } = {},
): Promise<Run> {
  return output("setpriv", [
    ...DROP_PRIVILEGES,
    Deno.execPath(),
    "run",
    ...(cachedOnly ? ["--cached-only"] : []),
    "--allow-ffi",
    `scripts/${script}`,
    ...args,
  ], {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: "/tmp",
    DENO_DIR: denoDir,
    DENO_NO_UPDATE_CHECK: "1",
    NO_COLOR: "1",
  }, true);
}

/**
 * A `DENO_DIR` that nobody can read, holding what the scripts import: root's own when it is
 * readable, else a copy of its npm packages completed by `deno cache` as root. Returns the
 * directory and, when it made one, the temporary folder to remove.
 */
async function nobodysDenoDir(): Promise<{ denoDir: string; temporary?: string }> {
  const info = await output(Deno.execPath(), ["info", "--json"]);
  assert.equal(info.code, 0, info.stderr);
  const rootDir = JSON.parse(info.stdout).denoDir as string;
  const probe = await runAsNobody(rootDir, "normal.ts", ["--help"], { cachedOnly: true });
  if (probe.code === 0) return { denoDir: rootDir };

  const temporary = await Deno.makeTempDir({ prefix: "privilege_test_deno_dir_" });
  try {
    const copied = await output("cp", ["-a", `${rootDir}/npm`, `${temporary}/npm`]);
    assert.equal(copied.code, 0, `copying root's npm cache: ${copied.stderr}`);
    const cached = await output(
      Deno.execPath(),
      ["cache", "scripts/normal.ts", "scripts/batch.ts"],
      { DENO_DIR: temporary },
    );
    assert.equal(cached.code, 0, `deno cache into ${temporary}: ${cached.stderr}`);
    const opened = await output("chmod", ["-R", "a+rX", temporary]);
    assert.equal(opened.code, 0, opened.stderr);
    const again = await runAsNobody(temporary, "normal.ts", ["--help"], { cachedOnly: true });
    assert.equal(again.code, 0, `deno still cannot run as nobody:\n${again.stderr}`);
    return { denoDir: temporary, temporary };
  } catch (e) {
    await Deno.remove(temporary, { recursive: true });
    throw e;
  }
}

function removePin(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

bpfTest(
  "an unprivileged user gets one error line with EACCES (pin) or EPERM (id) and the fix",
  async () => {
    const pin = `/sys/fs/bpf/privilege_test_${crypto.randomUUID().slice(0, 8)}`;
    let temporary: string | undefined;
    try {
      const loaded = await output(Deno.execPath(), [
        "run",
        "--allow-ffi",
        "scripts/load.ts",
        "--entries",
        "1000",
        "--pin",
        pin,
        "--json",
      ]);
      assert.equal(loaded.code, 0, loaded.stderr);
      const { id } = JSON.parse(loaded.stdout);

      const dir = await nobodysDenoDir();
      temporary = dir.temporary;
      const cases: [string, string[]][] = [
        ["normal.ts", ["--pin", pin]],
        ["normal.ts", ["--id", String(id)]],
        ["batch.ts", ["--pin", pin]],
        ["batch.ts", ["--id", String(id)]],
      ];
      await Promise.all(cases.map(async ([script, args]) => {
        const what = `${script} ${args.join(" ")} as nobody`;
        const result = await runAsNobody(dir.denoDir, script, args);
        assert.equal(result.code, 1, `${what} exited ${result.code}:\n${result.stderr}`);
        assert.doesNotMatch(result.stderr, /^ {4}at /m, `${what}: stack trace`);
        assert.doesNotMatch(result.stderr, /Uncaught/, `${what}: uncaught error`);
        const lines = result.stderr.trimEnd().split("\n");
        assert.equal(lines.length, 1, `${what}: expected one line:\n${result.stderr}`);
        assert.match(lines[0], /^error: /, what);
        // By pin, the path lookup in bpffs (mode 0700, root's) refuses first: EACCES. By id,
        // BPF_MAP_GET_FD_BY_ID itself needs CAP_SYS_ADMIN: EPERM.
        const expected = args[0] === "--pin"
          ? "BPF_OBJ_GET on .* failed: EACCES \\(permission denied\\)"
          : "BPF_MAP_GET_FD_BY_ID on map id \\d+ failed: EPERM \\(operation not permitted\\)";
        assert.match(lines[0], new RegExp(`^error: ${expected}: `), `${what}: ${lines[0]}`);
        assert.ok(lines[0].includes("run as root or grant CAP_BPF"), `${what}: ${lines[0]}`);
        assert.equal(result.stdout, "", `${what} printed on stdout`);
      }));
    } finally {
      removePin(pin);
      if (temporary !== undefined) await Deno.remove(temporary, { recursive: true });
    }
  },
);
