/**
 * `map save MAP FILE` and `map restore FILE [MAP] [--drop PATH]...`: the verbs of
 * `scripts/map.ts` over `ffi/save/` (the file format is documented in `ffi/save/format.ts`).
 *
 * On success the plain mode prints one line on stderr (what was saved or restored) and
 * nothing on stdout; `-j`/`-p` print one JSON object on stdout instead (compact or indented
 * as bpftool indents), nothing on stderr. FILE `-` is standard output for `save` (plain mode
 * only) and standard input for `restore`. Failures are `BpftoolError`s: one line, exit 255.
 *
 * @module
 */

import {
  BpfArgumentError,
  BpfError,
  BpfMap,
  BPFTOOL_MAP_TYPE_NAMES,
  BpfUnavailableError,
  BtfError,
  MapSaveError,
  readRestoreFile,
  restoreMap,
  type RestoreResult,
  type RestoreSource,
  type RestoreTarget,
  saveMap,
} from "../mod.ts";
import { pathExists } from "../ffi/sys/system.ts";
import { BpftoolError, type MapSelector, openSelected, parseMapSelector } from "./_map_args.ts";

/** What `scripts/map.ts` hands its own verbs: the output mode, and every word after the verb. */
export interface VerbContext {
  /** `-j`: JSON on stdout. */
  json: boolean;
  /** `-p`: JSON, indented. */
  pretty: boolean;
  /** The words after the verb. */
  words: string[];
}

const SAVE_USAGE = "usage: map save MAP FILE, MAP := { id MAP_ID | pinned FILE | name MAP_NAME }";
const RESTORE_USAGE = "usage: map restore FILE [MAP] [--drop PATH]...";

/** Prints the verb's summary: `line` on stderr, or `record` as JSON on stdout. */
function report(ctx: VerbContext, line: string, record: Record<string, unknown>): void {
  const text = ctx.json ? JSON.stringify(record, null, ctx.pretty ? 4 : undefined) : line;
  const file = ctx.json ? Deno.stdout : Deno.stderr;
  let bytes = new TextEncoder().encode(`${text}\n`);
  while (bytes.length > 0) bytes = bytes.subarray(file.writeSync(bytes));
}

/** The library's refusals, which the verbs print as bpftool prints its errors. */
const REFUSALS = [MapSaveError, BpfError, BpfArgumentError, BtfError, BpfUnavailableError];

/** Runs `body`, turning the library's refusals into one-line `BpftoolError`s. */
async function asVerb(body: () => number | Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (e) {
    if (REFUSALS.some((kind) => e instanceof kind)) throw new BpftoolError((e as Error).message);
    throw e;
  }
}

/** Reads a restore's FILE, or says in one line why it cannot be read. */
function readSource(file: string): RestoreSource {
  try {
    return readRestoreFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.PermissionDenied) {
      throw new BpftoolError(
        `can't read ${file}: ${e.message.replace(/ \(os error \d+\).*$/, "")}`,
      );
    }
    throw e;
  }
}

/** bpftool's name of the map's type (`lpm_trie`, where `BpfMap.typeName` says `type 11`). */
function typeOf(map: BpfMap): string {
  return BPFTOOL_MAP_TYPE_NAMES[map.info.type] ?? map.typeName;
}

function mapRecord(map: BpfMap): Record<string, unknown> {
  return { id: map.info.id, name: map.info.name, type: typeOf(map) };
}

/**
 * `map save MAP FILE`: writes the map's definition, BTF and every entry to FILE (see
 * `saveMap`). A map named by `pinned PATH` records that path in the file: `map restore FILE`
 * alone puts it back there.
 *
 * @example
 * ```ts
 * import { saveVerb } from "./_map_save.ts";
 * const status = await saveVerb({ json: false, pretty: false, words: ["pinned", "/sys/fs/bpf/counts", "/tmp/counts.save"] });
 * console.log(status); // 0
 * ```
 */
export function saveVerb(ctx: VerbContext): Promise<number> {
  return asVerb(() => {
    const { selector, rest } = parseMapSelector(ctx.words);
    if (rest.length !== 1) {
      throw new BpftoolError(
        rest.length === 0
          ? `expected a FILE after the map: ${SAVE_USAGE}`
          : `unexpected '${rest[1]}': ${SAVE_USAGE}`,
      );
    }
    const [file] = rest;
    if (file === "-" && ctx.json) {
      throw new BpftoolError("-j prints its summary on stdout: give a FILE, not -, to save to");
    }
    using map = openSelected(selector);
    const pinned = selector.by === "pinned" ? absolute(selector.path) : undefined;
    const saved = saveMap(map, file === "-" ? Deno.stdout : file, { pinned });
    report(
      ctx,
      `saved ${saved.entries} entries of ${map.subject} (${typeOf(map)}${
        saved.btf ? ", with BTF" : ""
      }) to ${file === "-" ? "stdout" : file}: ${saved.bytes} bytes`,
      {
        file,
        map: mapRecord(map),
        entries: saved.entries,
        bytes: saved.bytes,
        btf: saved.btf,
        walk: saved.walk,
        ...(pinned ? { pinned } : {}),
      },
    );
    return 0;
  });
}

function absolute(path: string): string {
  return path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
}

/** The `--drop PATH` options (also `--drop=PATH`), and the other words in order. */
function takeDrops(words: string[]): { drops: string[]; rest: string[] } {
  const drops: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < words.length; i++) {
    const word = words[i];
    if (word === "--drop") {
      if (i + 1 >= words.length) {
        throw new BpftoolError("--drop needs a member path, e.g. --drop value.stats[2].bytes");
      }
      drops.push(words[++i]);
    } else if (word.startsWith("--drop=")) {
      drops.push(word.slice("--drop=".length));
    } else if (word.startsWith("--")) {
      throw new BpftoolError(`unknown option '${word}': ${RESTORE_USAGE}`);
    } else {
      rest.push(word);
    }
  }
  return { drops, rest };
}

/**
 * The map a restore writes: an existing map opened as bpftool opens it (its messages), or a
 * pinned path where nothing is pinned, for a new map. A name no map has is refused: a map
 * made for it would go when this command exits.
 */
function targetOf(selector: MapSelector): RestoreTarget {
  if (selector.by === "pinned" && !pathExists(selector.path)) return { pinned: selector.path };
  try {
    return openSelected(selector);
  } catch (e) {
    if (e instanceof BpftoolError && e.message === "" && selector.by === "name") {
      throw new BpftoolError(
        `no map is named "${selector.name}": a map made by restore would go when this command exits, restore into pinned PATH to create one`,
      );
    }
    throw e;
  }
}

function restoredLine(result: RestoreResult): string {
  const where = result.created
    ? ` (created${result.pinned ? `, pinned at ${result.pinned}` : ""})`
    : "";
  const dropped = Object.entries(result.dropped).map(([path, n]) =>
    `${path} (non-zero in ${n} value${n === 1 ? "" : "s"})`
  );
  return `restored ${result.entries} entries into ${result.map.subject}${where} from ${
    { save: "a save", bpftool: "a bpftool dump", jsonl: "typed JSON lines" }[result.source]
  }${result.carried ? ", carried by member name" : ""}${
    dropped.length ? `, dropped ${dropped.join(", ")}` : ""
  }`;
}

/**
 * `map restore FILE [MAP] [--drop PATH]...`: writes a save, or a dump (`bpftool -j map dump`,
 * `dump --json`, `dump --jsonl`), into MAP, or, for a save without MAP, where it was pinned
 * when saved (see `restoreMap`). `pinned PATH` where nothing is pinned creates the map from
 * the save and pins it there.
 *
 * @example
 * ```ts
 * import { restoreVerb } from "./_map_save.ts";
 * const status = await restoreVerb({ json: true, pretty: false, words: ["/tmp/counts.save", "pinned", "/sys/fs/bpf/copy"] });
 * console.log(status); // 0
 * ```
 */
export function restoreVerb(ctx: VerbContext): Promise<number> {
  return asVerb(async () => {
    const { drops, rest } = takeDrops(ctx.words);
    const [file, ...mapWords] = rest;
    if (file === undefined) throw new BpftoolError(`expected a FILE: ${RESTORE_USAGE}`);
    let selector: MapSelector | undefined;
    if (mapWords.length > 0) {
      const parsed = parseMapSelector(mapWords);
      if (parsed.rest.length > 0) {
        throw new BpftoolError(`unexpected '${parsed.rest[0]}': ${RESTORE_USAGE}`);
      }
      selector = parsed.selector;
    }
    const source = readSource(file);
    if (!selector && !(source.kind === "save" && source.save.origin.pinned)) {
      throw new BpftoolError(
        `${file} records no pinned path to restore to: give the map (${RESTORE_USAGE})`,
      );
    }
    const target = selector && targetOf(selector);
    let result: RestoreResult;
    try {
      result = await restoreMap(source, target, { drop: drops });
    } catch (e) {
      if (target instanceof BpfMap) target.close();
      throw e;
    }
    using map = result.map;
    report(ctx, restoredLine(result), {
      entries: result.entries,
      map: mapRecord(map),
      created: result.created,
      pinned: result.pinned ?? null,
      source: result.source,
      carried: result.carried,
      dropped: result.dropped,
      parts: result.parts,
    });
    return 0;
  });
}
