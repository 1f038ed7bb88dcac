/**
 * `deno task map VERB ...`: `bpftool map` in Deno, in bpftool 7.1's grammar and bytes (its
 * options anywhere until `--`, verbs and keywords by prefix, its messages and exit
 * statuses), with keys and values taken as JSON through the map's BTF where bpftool takes
 * bytes, and three verbs of its own: `save`, `restore` and `watch`.
 *
 * @module
 */

import { ByteWriter } from "../ffi/format/byte_writer.ts";
import { JsonWriter } from "../ffi/format/json_writer.ts";
import { pinnedMapPaths } from "../ffi/format/map_show.ts";
import { readWholeFile } from "../ffi/sys/libc.ts";
import { BpftoolError, isPrefix, openAllSelected, takeMapSelector, Words } from "./_map_args.ts";
import {
  create,
  freeze,
  getnext,
  lookup,
  pin,
  pop,
  remove,
  type Run,
  update,
  type Verb,
} from "./_map_verbs.ts";
import { allMaps, showMaps } from "./_map_show.ts";
import { dumpOne, dumpSeveral } from "./_map_dump.ts";
import { RuntimeError } from "./_cli.ts";

/** bpftool's `map help`, with the object word as typed (here always `map`). */
const MAP_HELP = `Usage: bpftool map { show | list }   [MAP]
       bpftool map create     FILE type TYPE key KEY_SIZE value VALUE_SIZE \\
                                  entries MAX_ENTRIES name NAME [flags FLAGS] \\
                                  [inner_map MAP] [dev NAME]
       bpftool map dump       MAP
       bpftool map update     MAP [key DATA] [value VALUE] [UPDATE_FLAGS]
       bpftool map lookup     MAP [key DATA]
       bpftool map getnext    MAP [key DATA]
       bpftool map delete     MAP  key DATA
       bpftool map pin        MAP  FILE
       bpftool map event_pipe MAP [cpu N index M]
       bpftool map peek       MAP
       bpftool map push       MAP value VALUE
       bpftool map pop        MAP
       bpftool map enqueue    MAP value VALUE
       bpftool map dequeue    MAP
       bpftool map freeze     MAP
       bpftool map help

       MAP := { id MAP_ID | pinned FILE | name MAP_NAME }
       DATA := { [hex] BYTES }
       PROG := { id PROG_ID | pinned FILE | tag PROG_TAG | name PROG_NAME }
       VALUE := { DATA | MAP | PROG }
       UPDATE_FLAGS := { any | exist | noexist }
       TYPE := { hash | array | prog_array | perf_event_array | percpu_hash |
                 percpu_array | stack_trace | cgroup_array | lru_hash |
                 lru_percpu_hash | lpm_trie | array_of_maps | hash_of_maps |
                 devmap | devmap_hash | sockmap | cpumap | xskmap | sockhash |
                 cgroup_storage | reuseport_sockarray | percpu_cgroup_storage |
                 queue | stack | sk_storage | struct_ops | ringbuf | inode_storage |
                 task_storage | bloom_filter | user_ringbuf }
       OPTIONS := { {-j|--json} [{-p|--pretty}] | {-d|--debug} | {-l|--legacy} |
                    {-f|--bpffs} | {-n|--nomount} }
`;

/** bpftool's top-level usage (`-h`, and after an unknown option). */
const MAIN_HELP = `Usage: bpftool [OPTIONS] OBJECT { COMMAND | help }
       bpftool batch file FILE
       bpftool version

       OBJECT := { prog | map | link | cgroup | perf | net | feature | btf | gen | struct_ops | iter }
       OPTIONS := { {-j|--json} [{-p|--pretty}] | {-d|--debug} | {-l|--legacy} |
                    {-V|--version} }
`;

/** `-V`: this program's version; it speaks bpftool 7.1's `map` grammar. */
const VERSION = "deno-bpf-batch map 0.1.0 (bpftool v7.1.0's map grammar)\n";

/** bpftool's long options (prefixes of them are taken, as `getopt_long` takes them). */
const LONG_OPTIONS: Record<string, string> = {
  json: "j",
  pretty: "p",
  debug: "d",
  bpffs: "f",
  mapcompat: "m",
  nomount: "n",
  "use-loader": "L",
  "base-btf": "B",
  legacy: "l",
  version: "V",
  help: "h",
};
const SHORT_OPTIONS = "VhpjfLmndBl";

/** What this program's own verbs take: the options' modes, and every word after the verb. */
interface VerbContext {
  json: boolean;
  pretty: boolean;
  words: string[];
}

/**
 * The verbs of this program that bpftool does not have (their words are their own), loaded
 * when named, so that bpftool's verbs start without them.
 */
const OWN_VERBS: Record<string, () => Promise<(ctx: VerbContext) => Promise<number>>> = {
  save: async () => (await import("./_map_save.ts")).saveVerb,
  restore: async () => (await import("./_map_save.ts")).restoreVerb,
  watch: async () => (await import("./_map_watch.ts")).watchVerb,
};

/** What the options say. */
interface Options {
  json: boolean;
  pretty: boolean;
  nomount: boolean;
  bpffs: boolean;
  /** The words that are not options, in order. */
  words: string[];
}

/** An early end of the run, as bpftool's `main` returns before its verb. */
class EarlyExit {
  constructor(readonly status: number, readonly stdout = "", readonly stderr = "") {}
}

/** The error bpftool prints for an unknown option, by mode. */
function optionError(word: string, json: boolean): EarlyExit {
  const message = `unrecognized option '${word}'`;
  return json
    ? new EarlyExit(255, `{"error":"${message}"}\n`)
    : new EarlyExit(255, "", `Error: ${message}\n${MAIN_HELP}`);
}

/**
 * bpftool's option loop (`getopt_long` with permutation): options anywhere until `--`,
 * short ones clustered, long ones by unambiguous prefix. `argv` is what follows `map`.
 */
function parseOptions(argv: readonly string[]): Options | EarlyExit {
  const all = ["bpftool", "map", ...argv];
  const options: Options = { json: false, pretty: false, nomount: false, bpffs: false, words: [] };
  const apply = (letter: string, argument?: string): EarlyExit | undefined => {
    switch (letter) {
      case "h":
        return options.json ? new EarlyExit(0, "null") : new EarlyExit(0, "", MAIN_HELP);
      case "V":
        return new EarlyExit(
          0,
          options.json ? JSON.stringify({ version: VERSION.trim() }) : VERSION,
        );
      case "p":
        options.pretty = true;
        options.json = true;
        return;
      case "j":
        options.json = true;
        return;
      case "n":
        options.nomount = true;
        return;
      case "f":
        options.bpffs = true;
        return;
      case "B": {
        const file = argument ?? "";
        const bytes = readWholeFile(file);
        if (typeof bytes !== "number") return;
        const message = `failed to parse base BTF at '${file}': ${bytes}\n`;
        return options.json
          ? new EarlyExit(255, `{"error":"${message}"}`)
          : new EarlyExit(255, "", `Error: ${message}\n`);
      }
    }
  };
  for (let i = 2; i < all.length; i++) {
    const word = all[i];
    if (word === "--") {
      options.words.push(...all.slice(i + 1));
      break;
    }
    if (word.startsWith("--")) {
      const [name, inline] = word.slice(2).split(/=(.*)/s, 2);
      const exact = Object.hasOwn(LONG_OPTIONS, name) ? [name] : [];
      const matches = exact.length
        ? exact
        : Object.keys(LONG_OPTIONS).filter((o) => o.startsWith(name));
      if (matches.length !== 1) return optionError(word, options.json);
      const letter = LONG_OPTIONS[matches[0]];
      if (letter === "B") {
        const argument = inline ?? all[++i];
        if (argument === undefined) return optionError(word, options.json);
        const exit = apply(letter, argument);
        if (exit) return exit;
        continue;
      }
      if (inline !== undefined) return optionError(word, options.json);
      const exit = apply(letter);
      if (exit) return exit;
      continue;
    }
    if (word.startsWith("-") && word.length > 1) {
      for (let k = 1; k < word.length; k++) {
        const letter = word[k];
        const last = k === word.length - 1;
        if (!SHORT_OPTIONS.includes(letter)) {
          return optionError(last ? word : all[i - 1], options.json);
        }
        if (letter === "B") {
          const argument = last ? all[++i] : word.slice(k + 1);
          if (argument === undefined) return optionError(word, options.json);
          const exit = apply(letter, argument);
          if (exit) return exit;
          break;
        }
        const exit = apply(letter);
        if (exit) return exit;
      }
      continue;
    }
    options.words.push(word);
  }
  return options;
}

/** `show|list [MAP]`: every map, or those MAP picks. */
const show: Verb = (words, run) => {
  const pins = run.bpffs ? pinnedMapPaths() : undefined;
  const write = (text: string) => run.out.text(text);
  if (words.left === 2) {
    const maps = openAllSelected(takeMapSelector(words));
    if (maps.length === 0) throw new BpftoolError("");
    showMaps(maps, maps.length === 1, { json: run.json, pins }, write);
  } else if (words.left) {
    throw new BpftoolError(`what is '${words.word}'?`);
  } else {
    showMaps(allMaps(), false, { json: run.json, pins }, write);
  }
  return 0;
};

/** `dump MAP`: every entry, as bpftool prints them, walked in batches (by Workers on large maps). */
async function dump(words: Words, run: Run & { pretty: boolean }): Promise<number> {
  if (words.left !== 2) throw new BpftoolError("", 255, true);
  const maps = openAllSelected(takeMapSelector(words));
  if (maps.length === 0) throw new BpftoolError("");
  const format = run.json ? (run.pretty ? "pretty" : "json") : "plain";
  try {
    if (maps.length > 1) await dumpSeveral(maps, format, "auto", 4096, run.out, run.json);
    else {
      const [map] = maps;
      await dumpOne(
        map,
        format,
        "auto",
        4096,
        run.out,
        run.json ? { info: map.info, json: run.json } : undefined,
      );
    }
  } catch (e) {
    if (e instanceof RuntimeError) throw new BpftoolError(e.message);
    throw e;
  } finally {
    for (const map of maps) map.close();
  }
  return 0;
}

/** `event_pipe MAP`: perf event arrays are not read here yet; said, never faked. */
const eventPipe: Verb = (words) => {
  if (words.left < 2) throw new BpftoolError("", 255, true);
  using map = openAllSelected(takeMapSelector(words))[0];
  if (!map) throw new BpftoolError("");
  if (map.info.type !== 4) throw new BpftoolError("map is not a perf event array");
  throw new BpftoolError(
    "event_pipe is not implemented by this toolkit yet: use bpftool map event_pipe",
  );
};

/** `help`: the map help on stderr, or `null`. */
const help: Verb = (_words, run) => {
  if (run.json) run.json.raw("null");
  else writeAll(Deno.stderr, MAP_HELP);
  return 0;
};

/** bpftool's verbs, in the order their prefixes are matched. */
const VERBS: [string, Verb | "dump"][] = [
  ["show", show],
  ["list", show],
  ["help", help],
  ["dump", "dump"],
  ["update", update],
  ["lookup", lookup],
  ["getnext", getnext],
  ["delete", remove],
  ["pin", pin],
  ["event_pipe", eventPipe],
  ["create", create],
  ["peek", lookup],
  ["push", update],
  ["enqueue", update],
  ["pop", pop],
  ["dequeue", pop],
  ["freeze", freeze],
];

/** Writes `text` to `file` whole (nothing is lost in a pipe). */
function writeAll(file: typeof Deno.stdout | typeof Deno.stderr, text: string): void {
  let bytes = new TextEncoder().encode(text);
  while (bytes.length > 0) bytes = bytes.subarray(file.writeSync(bytes));
}

/** Runs one bpftool verb; returns the exit status. */
async function runVerb(options: Options, out: ByteWriter): Promise<number> {
  const json = options.json ? new JsonWriter({ pretty: options.pretty }) : undefined;
  const run = { json, out, nomount: options.nomount, bpffs: options.bpffs, pretty: options.pretty };
  const [verbWord, ...rest] = options.words;
  let status: number;
  try {
    const entry = verbWord === undefined
      ? VERBS[0]
      : VERBS.find(([name]) => isPrefix(verbWord, name));
    const words = new Words(rest, verbWord ?? "map");
    if (!entry) {
      help(words, run);
      status = 255;
    } else if (entry[1] === "dump") status = await dump(words, run);
    else status = entry[1](words, run);
  } catch (e) {
    if (!(e instanceof BpftoolError)) throw e;
    if (e.message) {
      if (json) {
        json.startObject();
        json.name("error");
        json.raw(e.jsonString);
        json.endObject();
      } else {
        out.flush();
        writeAll(Deno.stderr, `Error: ${e.message}\n`);
      }
    }
    if (e.usage) help(new Words([], ""), run);
    status = e.status;
  }
  if (json) out.text(json.end());
  out.flush();
  return status;
}

/** The run: options, then the verb; exits with bpftool's status. */
async function main(): Promise<number> {
  const own = ownVerb(Deno.args);
  const options = parseOptions(own ? Deno.args.slice(0, own.at) : Deno.args);
  if (options instanceof EarlyExit) {
    writeAll(Deno.stdout, options.stdout);
    writeAll(Deno.stderr, options.stderr);
    return options.status;
  }
  if (own) {
    const words = Deno.args.slice(own.at + 1);
    const pretty = options.pretty || words.some((w) => w === "-p" || w === "--pretty");
    const json = pretty || options.json || words.some((w) => w === "-j" || w === "--json");
    const ownWords = words.filter((w) => !["-j", "--json", "-p", "--pretty"].includes(w));
    try {
      const verb = await OWN_VERBS[own.verb]();
      return await verb({ json, pretty, words: ownWords });
    } catch (e) {
      if (!(e instanceof BpftoolError)) throw e;
      if (e.message) {
        if (json) writeAll(Deno.stdout, `{"error":${JSON.stringify(e.message)}}\n`);
        else writeAll(Deno.stderr, `Error: ${e.message}\n`);
      }
      return e.status;
    }
  }
  return await runVerb(options, new ByteWriter(Deno.stdout));
}

/** Where this program's own verb (`save`, `restore`, `watch`) is, if the first word names one. */
function ownVerb(args: readonly string[]): { verb: string; at: number } | undefined {
  for (let i = 0; i < args.length; i++) {
    const word = args[i];
    if (word === "--") return undefined;
    if (word === "-B" || word === "--base-btf") {
      i++;
      continue;
    }
    if (word.startsWith("-") && word.length > 1) continue;
    return Object.hasOwn(OWN_VERBS, word) ? { verb: word, at: i } : undefined;
  }
  return undefined;
}

try {
  Deno.exit(await main());
} catch (e) {
  if (e instanceof Deno.errors.BrokenPipe) Deno.exit(0);
  console.error(`Error: ${e instanceof Error ? e.message : String(e)}`);
  Deno.exit(1);
}
