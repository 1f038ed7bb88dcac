/**
 * The options of `map watch` (the words after its MAP), checked before the map is opened:
 * `--interval S`, `--top N`, `--sort FIELD`, `--cpus`, `--jsonl`, each also as `--name=value`.
 * A mistake is a `BpftoolError` (exit 255) in one line.
 *
 * @module
 */

import { BpftoolError } from "./_map_args.ts";

/** What `map watch` was asked for. */
export interface WatchRequest {
  /** Seconds between the starts of two reads (default 1). */
  interval: number;
  /** The most keys shown (default: as many as the terminal has rows for). */
  top: number | undefined;
  /** The member path to rank by (default: the first numeric member, or the value itself). */
  sort: string | undefined;
  /** Per-CPU maps: one row per CPU under each key's sum (no effect on other maps). */
  cpus: boolean;
  /** One JSON line per changed key per read, instead of the screen. */
  jsonl: boolean;
}

/** The options, as the usage line names them. */
export const WATCH_USAGE = "watch MAP [--interval S] [--top N] [--sort FIELD] [--cpus] [--jsonl]";

/** The shortest interval taken, in seconds. */
const MIN_INTERVAL = 0.01;

/** Options that take a value. */
const VALUED = ["--interval", "--top", "--sort"] as const;
/** Options that are on when given. */
const SWITCHES = ["--cpus", "--jsonl"] as const;

/**
 * Parses the words after MAP. `json` (`-j`/`-p` before the verb) asks for `--jsonl`.
 *
 * @example
 * ```ts
 * import { parseWatchOptions } from "./_watch_options.ts";
 * console.log(parseWatchOptions(["--interval", "0.5", "--top=10"], false).top); // 10
 * ```
 */
export function parseWatchOptions(words: readonly string[], json: boolean): WatchRequest {
  const request: WatchRequest = {
    interval: 1,
    top: undefined,
    sort: undefined,
    cpus: false,
    jsonl: json,
  };
  for (let i = 0; i < words.length; i++) {
    const word = words[i];
    const eq = word.indexOf("=");
    const name = eq > 0 ? word.slice(0, eq) : word;
    if ((SWITCHES as readonly string[]).includes(name)) {
      if (eq > 0) throw new BpftoolError(`${name} takes no value, not '${word.slice(eq + 1)}'`);
      if (name === "--cpus") request.cpus = true;
      else request.jsonl = true;
      continue;
    }
    if (!(VALUED as readonly string[]).includes(name)) {
      throw new BpftoolError(
        `unknown option '${word}' for map watch: expected --interval, --top, --sort, --cpus or --jsonl`,
      );
    }
    const value = eq > 0 ? word.slice(eq + 1) : words[++i];
    if (value === undefined) throw new BpftoolError(`${name} needs a value`);
    if (name === "--interval") request.interval = seconds(value);
    else if (name === "--top") request.top = positive(value);
    else request.sort = sortPath(value);
  }
  return request;
}

function seconds(text: string): number {
  const value = /^\d+(\.\d*)?$|^\.\d+$/.test(text) ? Number(text) : NaN;
  if (!(value >= MIN_INTERVAL) || !Number.isFinite(value)) {
    throw new BpftoolError(
      `--interval takes seconds, at least ${MIN_INTERVAL}, not '${text}'`,
    );
  }
  return value;
}

function positive(text: string): number {
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new BpftoolError(`--top takes a positive whole number, not '${text}'`);
  }
  return value;
}

function sortPath(text: string): string {
  if (!text) throw new BpftoolError("--sort needs a member path, e.g. packets or stats.bytes");
  return text;
}
