/**
 * What tests need from the machine: the gate for tests that need something it may lack (a
 * compiler, a kernel file, a built object), and the C probes of the layout tests. A probe is a
 * program generated from layout tables (and any other expressions), compiled with `cc`
 * against the system headers; it prints `offsetof()`/`sizeof()` of every field, which the
 * tests compare with the tables.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Layout, layoutSize } from "../ffi/sys/layout.ts";

/** Whether CI requires every test to run (`REQUIRE_BPF=1`): one that cannot run fails instead of being ignored. */
const REQUIRED = Deno.env.get("REQUIRE_BPF") === "1";

/**
 * Registers a test that needs what this machine may lack: `missing` says what, or is
 * `undefined` when nothing is. Without it the test is ignored, unless `REQUIRE_BPF=1` (then
 * it fails, naming what is missing).
 */
export function requiredTest(
  name: string,
  missing: string | undefined,
  fn: () => void | Promise<void>,
): void {
  Deno.test({
    name,
    ignore: missing !== undefined && !REQUIRED,
    fn: missing === undefined ? fn : () => assert.fail(`REQUIRE_BPF=1 but ${missing}`),
  });
}

/** Runs `cc` with `args` (and `stdin`); `undefined` when there is no `cc` at all. */
async function runCc(
  args: string[],
  stdin?: string,
): Promise<Deno.CommandOutput | undefined> {
  try {
    const child = new Deno.Command("cc", {
      args,
      stdin: stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    if (stdin !== undefined) {
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(stdin));
      await writer.close();
    }
    return await child.output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/**
 * Why a probe including `headers` cannot be built here (no `cc`, or the headers are missing:
 * the fix is to install `packages`), or `undefined`. A probe that fails to compile once the
 * headers are there is a test failure, not this.
 */
async function toolchainProblem(
  headers: readonly string[],
  packages: string,
): Promise<string | undefined> {
  const output = await runCc(
    ["-fsyntax-only", "-x", "c", "-"],
    probeSource(headers, []),
  );
  if (output === undefined) {
    return `the C probe cannot be built: "cc" is not installed: install gcc or clang`;
  }
  if (!output.success) {
    const detail = new TextDecoder().decode(output.stderr).trim();
    return `the C probe cannot be built: the headers ${
      headers.map((h) => `<${h}>`).join(", ")
    } do not compile: install ${packages}: ${detail}`;
  }
  return undefined;
}

/** A probe program: `headers` included, `statements` in `main()`. */
function probeSource(headers: readonly string[], statements: readonly string[]): string {
  return [
    ...headers.map((h) => `#include <${h}>`),
    "",
    "int main(void) {",
    ...statements,
    "  return 0;",
    "}",
    "",
  ].join("\n");
}

/** The statements that print the `SIZEOF` and `FIELD` lines of `layouts` (see `LayoutProbe.source`). */
function layoutStatements(layouts: Readonly<Record<string, Layout>>): string[] {
  const lines: string[] = [];
  for (const [name, layout] of Object.entries(layouts)) {
    lines.push(`  printf("SIZEOF ${name} %zu\\n", sizeof(${layout.type}));`);
    for (const [fieldName, f] of Object.entries(layout.fields)) {
      lines.push(
        `  printf("FIELD ${name} ${fieldName} %zu %zu\\n", offsetof(${layout.type}, ${f.c}), ` +
          `sizeof(((${layout.type} *)0)->${f.c}));`,
      );
    }
  }
  return lines;
}

/** Compiles and runs `source` (the probe of module `tables`); see `LayoutProbe.run`. */
async function runProbe(source: string, tables: string): Promise<Map<string, number[]>> {
  const dir = await Deno.makeTempDir({ prefix: "layout_probe_" });
  try {
    const binary = `${dir}/probe`;
    await Deno.writeTextFile(`${binary}.c`, source);
    const compiled = await runCc(["-std=gnu11", "-Wall", "-Werror", "-o", binary, `${binary}.c`]);
    assert.ok(compiled, `"cc" disappeared while the test ran`);
    assert.ok(
      compiled.success,
      `The probe of ${tables} does not compile against the system headers (a field path there no longer exists?): ${
        new TextDecoder().decode(compiled.stderr)
      }`,
    );
    const ran = await new Deno.Command(binary, { stdout: "piped", stderr: "piped" }).output();
    assert.ok(
      ran.success,
      `The probe of ${tables} failed: ${new TextDecoder().decode(ran.stderr)}`,
    );
    const result = new Map<string, number[]>();
    for (const line of new TextDecoder().decode(ran.stdout).split("\n")) {
      if (line === "") continue;
      const words = line.split(" ");
      const numbers = words.filter((w) => /^-?\d+$/.test(w)).map(Number);
      const key = words.slice(0, words.length - numbers.length).join(" ");
      assert.ok(numbers.length > 0 && !result.has(key), `Unexpected probe output line: "${line}"`);
      result.set(key, numbers);
    }
    return result;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A C probe of layout tables, built against the system headers. */
export interface LayoutProbe {
  /**
   * The program: a line `SIZEOF <layout> <size>` per layout of `layouts`, `FIELD <layout>
   * <field> <offset> <size>` per field (`offsetof()` and `sizeof()` of its C member path),
   * then the `extra` statements.
   */
  source(layouts: Readonly<Record<string, Layout>>, extra?: readonly string[]): string;
  /**
   * Compiles and runs the program in a temporary folder. Returns what it printed: each line's
   * numbers, keyed by the words before them (`FIELD BATCH_ATTR keys` -> `[16, 8]`).
   */
  run(
    layouts: Readonly<Record<string, Layout>>,
    extra?: readonly string[],
  ): Promise<Map<string, number[]>>;
  /** Registers a test that runs the probe: ignored when it cannot be built, unless `REQUIRE_BPF=1`. */
  test(name: string, fn: () => Promise<void>): void;
}

/**
 * The probe of the layout tables of module `tables`, including `headers`; `packages` are
 * what to install when the headers are missing.
 */
export async function layoutProbe(
  options: { headers: readonly string[]; packages: string; tables: string },
): Promise<LayoutProbe> {
  const { headers, packages, tables } = options;
  const problem = await toolchainProblem(headers, packages);
  const source = (layouts: Readonly<Record<string, Layout>>, extra: readonly string[] = []) =>
    probeSource(headers, [...layoutStatements(layouts), ...extra]);
  return {
    source,
    run: (layouts, extra) => runProbe(source(layouts, extra), tables),
    test: (name, fn) => requiredTest(name, problem, fn),
  };
}

/** The end of a layout's last field (`layoutSize` without the rounding up to 8). */
export function fieldsEnd(layout: Layout): number {
  return Math.max(0, ...Object.values(layout.fields).map((f) => f.offset + f.size));
}

/**
 * Compares every field of `layouts` with what the probe printed, and checks that `span` of
 * each layout (what the toolkit reads or writes of it: by default `layoutSize`) fits in the
 * C type. Returns the differences, and how many fields were checked.
 */
export function layoutMismatches(
  probe: Map<string, number[]>,
  layouts: Readonly<Record<string, Layout>>,
  span: (layout: Layout) => number = layoutSize,
): { mismatches: string[]; fields: number } {
  const mismatches: string[] = [];
  let fields = 0;
  for (const [name, layout] of Object.entries(layouts)) {
    const [typeSize] = probe.get(`SIZEOF ${name}`) ?? [];
    assert.ok(typeSize !== undefined, `No sizeof(${layout.type}) printed`);
    for (const [fieldName, f] of Object.entries(layout.fields)) {
      const [offset, size] = probe.get(`FIELD ${name} ${fieldName}`) ?? [];
      assert.ok(offset !== undefined, `No line printed for "${name}.${fieldName}"`);
      fields++;
      if (offset !== f.offset || size !== f.size) {
        mismatches.push(
          `${name}.${fieldName} ("${layout.type}" member "${f.c}"): table says offset ${f.offset} size ${f.size}, header says offset ${offset} size ${size}`,
        );
      }
    }
    if (span(layout) > typeSize) {
      mismatches.push(
        `${name}: ${span(layout)} bytes used, past sizeof(${layout.type}) ${typeSize}`,
      );
    }
  }
  return { mismatches, fields };
}
