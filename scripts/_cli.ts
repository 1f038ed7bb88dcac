/**
 * What every script shares: flag parsing with one-line usage errors (exit 2), the top-level
 * runner that turns failures into one-line messages (exit 1), opening the map a script
 * works on, colour and statistics. Tables, progress bars and memory reports are in
 * `_report.ts` (their npm packages take a script 20 ms to load: `dump` and `maps` need none).
 *
 * @module
 */

import { parseArgs, styleText } from "node:util";
import { readEnv } from "../ffi/sys/env.ts";
import { type BackendName, BpfArgumentError, BpfError, BpfMap, parseBackendName } from "../mod.ts";

/** The pin `load.ts` makes and the other scripts open by default. */
export const DEFAULT_PIN = "/sys/fs/bpf/test_map";

/** A command-line mistake: printed with the usage line, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** A runtime failure that is already explained in its message: exit code 1. */
export class RuntimeError extends Error {
  override name = "RuntimeError";
}

type FlagSpec = Record<
  string,
  { type: "string" | "boolean"; short?: string; multiple?: false }
>;

/** Parses `Deno.args` strictly; unknown flags and missing values become `UsageError`s. */
export function parseFlags<const T extends FlagSpec>(
  spec: T,
  args: string[] = Deno.args,
) {
  try {
    return parseArgs({
      args: joinNegativeValues(spec, args),
      options: { ...spec, help: { type: "boolean", short: "h" } },
      strict: true,
      allowPositionals: false,
    })
      .values;
  } catch (e) {
    throw new UsageError(
      e instanceof Error
        ? e.message.replace(/\.?\s*To specify.*$/s, "").replace(/\s*\n\s*/g, " ")
        : String(e),
    );
  }
}

/** Turns `--flag -5` into `--flag=-5` for string flags, so a negative number gets its range error. */
function joinNegativeValues(spec: FlagSpec, args: string[]): string[] {
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const name = args[i].startsWith("--") ? args[i].slice(2) : "";
    if (spec[name]?.type === "string" && /^-\d/.test(args[i + 1] ?? "")) {
      joined.push(`${args[i]}=${args[++i]}`);
    } else {
      joined.push(args[i]);
    }
  }
  return joined;
}

/** Parses a whole number flag within bounds, or throws a `UsageError` naming the flag. */
export function intFlag(
  value: string | boolean | undefined,
  flag: string,
  fallback: number,
  { min = 1, max = Number.MAX_SAFE_INTEGER, maxReason = "" }: {
    min?: number;
    max?: number;
    maxReason?: string;
  } = {},
): number {
  if (value === undefined) return fallback;
  const text = String(value).replaceAll("_", "");
  const number = /^-?\d+$/.test(text)
    ? Number(text)
    : /^0x[0-9a-f]+$/i.test(text)
    ? Number(text)
    : NaN;
  if (!Number.isSafeInteger(number)) {
    throw new UsageError(`--${flag} takes a whole number, not "${value}"`);
  }
  if (number < min) {
    throw new UsageError(`--${flag} must be at least ${min}, not ${number}`);
  }
  if (number > max) {
    throw new UsageError(
      `--${flag} must be at most ${max}${maxReason}, not ${number}`,
    );
  }
  return number;
}

/** Parses `--backend`. */
export function backendFlag(
  value: string | undefined,
): BackendName | undefined {
  if (value === undefined) return undefined;
  try {
    return parseBackendName(value);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Opens the map named by `--id` or `--pin` (default `DEFAULT_PIN`). */
export function openMap(
  flags: { id?: string; pin?: string },
  backend: BackendName | undefined,
): BpfMap {
  if (flags.id !== undefined && flags.pin !== undefined) {
    throw new UsageError("give --id or --pin, not both");
  }
  if (flags.id !== undefined) {
    return BpfMap.fromId(intFlag(flags.id, "id", 0, { max: 0xffff_ffff }), {
      backend,
    });
  }
  return BpfMap.fromPin(flags.pin ?? DEFAULT_PIN, { backend });
}

/** Checks that a map has the key and value sizes given on the command line, if any were. */
export function expectSizes(
  map: BpfMap,
  { keySize, valueSize }: { keySize?: number; valueSize?: number },
): void {
  const wrong = (keySize !== undefined && map.keySize !== keySize) ||
    (valueSize !== undefined && map.valueSize !== valueSize);
  if (wrong) {
    throw new RuntimeError(
      `${map.subject} has ${map.keySize}-byte keys and ${map.valueSize}-byte values, not ${
        keySize ?? map.keySize
      } and ${valueSize ?? map.valueSize}: drop --key-size/--value-size, or give the map's own`,
    );
  }
}

/** Whether stdout gets colour: a terminal, and NO_COLOR unset. */
export const COLOR = !Deno.noColor && Deno.stdout.isTerminal();

/**
 * Styles text when colour is on. `validateStream: false`: `COLOR` has decided, and node's own
 * check reads `NODE_DISABLE_COLORS`, `FORCE_COLOR` and the like when stdout is a terminal,
 * which asks for env access no task grants (a prompt, or an error with stdin closed).
 */
export function paint(
  format: Parameters<typeof styleText>[0],
  text: string,
): string {
  return COLOR ? styleText(format, text, { validateStream: false }) : text;
}

/** Mean, standard deviation, min, median and max of samples. */
export function summary(
  samples: number[],
): { mean: number; sd: number; min: number; median: number; max: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  const n = sorted.length;
  const mean = sorted.reduce((a, b) => a + b, 0) / n;
  const sd = Math.sqrt(sorted.reduce((a, b) => a + (b - mean) ** 2, 0) / n);
  const median = n % 2 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  return { mean, sd, min: sorted[0], median, max: sorted[n - 1] };
}

/**
 * Runs a script's main function: exit 0 on success, 2 with the usage line for a
 * `UsageError`, 1 with a one-line message for any other failure. Never a stack trace,
 * unless `DEBUG=1`.
 */
export async function runMain(
  usage: string,
  main: () => Promise<void> | void,
): Promise<never> {
  try {
    if (Deno.args.includes("--help") || Deno.args.includes("-h")) {
      console.log(usage);
      Deno.exit(0);
    }
    await main();
    Deno.exit(0);
  } catch (e) {
    if (e instanceof UsageError || e instanceof BpfArgumentError) {
      console.error(`error: ${e.message}`);
      console.error(usage.split("\n")[0]);
      Deno.exit(2);
    }
    const message = e instanceof Deno.errors.NotCapable ||
        e instanceof Deno.errors.PermissionDenied
      ? `${
        (e as Error).message.split("\n")[0]
      }: run the script through its deno task, or add the permission`
      : e instanceof BpfError || e instanceof RuntimeError ||
          e instanceof Error
      ? e.message
      : String(e);
    console.error(`error: ${message}`);
    if (readEnv("DEBUG") === "1" && e instanceof Error) {
      console.error(e.stack);
    }
    Deno.exit(1);
  }
}
