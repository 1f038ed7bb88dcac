/**
 * `map watch MAP [--interval S] [--top N] [--sort FIELD] [--cpus] [--jsonl]`: a live view of
 * a map. Every S seconds (default 1) the map is read whole, by the fastest exact method it
 * allows (`watchMethod`: LOOKUP_BATCH, else GET_NEXT_KEY + LOOKUP_ELEM), and diffed against
 * the read before (`WatchSnapshot`); the screen is redrawn in place with the keys whose
 * sort field grew most per second first, each with its numeric fields (summed over CPUs,
 * or one row per CPU with `--cpus`), their rates and the rest of the value, typed through
 * the map's BTF; the footer gives the walk's time and method. `q` or Ctrl-C quits and gives
 * the terminal back (exit 0). `--jsonl` (and `-j`/`-p`, which mean it here) prints one JSON
 * line per changed key per read instead, without screen control (`_watch_jsonl.ts`).
 *
 * @module
 */

import { BpftoolError, openSelected, parseMapSelector } from "./_map_args.ts";
import { loadMapBtf } from "../ffi/btf/mod.ts";
import { watchFields, watchMethod, WatchSnapshot } from "../ffi/dump/watch.ts";
import { ByteWriter } from "../ffi/format/byte_writer.ts";
import { BPFTOOL_MAP_TYPE_NAMES } from "../ffi/format/map_show.ts";
import type { BpfMap } from "../ffi/map/map.ts";
import { cellFormat, fieldLabel, sortIndex } from "./_watch_cells.ts";
import { WatchJsonl } from "./_watch_jsonl.ts";
import { parseWatchOptions, type WatchRequest } from "./_watch_options.ts";
import { Quit, Screen } from "./_watch_terminal.ts";
import { keysShown, renderFrame } from "./_watch_view.ts";

/** What the `map` dispatcher hands a verb. */
export interface WatchVerbContext {
  /** `-j`/`--json` was given (here: `--jsonl`). */
  json: boolean;
  /** `-p`/`--pretty` was given (here: `--jsonl` too; lines stay compact). */
  pretty: boolean;
  /** The words after `watch`: MAP, then the options. */
  words: string[];
}

/** Keys a frame shows when stdout is not a terminal and `--top` is not given. */
const PLAIN_TOP = 20;

/** Entries the buffers hold at first, at most (they grow as the map does). */
const FIRST_CAPACITY = 1 << 16;

/**
 * Runs `map watch` until `q`, Ctrl-C, SIGINT or SIGTERM (or a closed pipe with `--jsonl`);
 * returns the exit status (0). Bad options and maps without keys throw a `BpftoolError`.
 *
 * @example
 * ```ts
 * import { watchVerb } from "./_map_watch.ts";
 * Deno.exit(await watchVerb({ json: false, pretty: false, words: ["pinned", "/sys/fs/bpf/m"] }));
 * ```
 */
export async function watchVerb(ctx: WatchVerbContext): Promise<number> {
  const { selector, rest } = parseMapSelector(ctx.words);
  const request = parseWatchOptions(rest, ctx.json || ctx.pretty);
  using map = openSelected(selector);
  if (map.keySize === 0) {
    throw new BpftoolError(`map watch: ${describe(map)} has no keys to watch`);
  }
  const btf = loadMapBtf(map);
  const fields = watchFields(btf?.valueType ?? null, map.valueSize);
  const sort = sortIndex(fields, request.sort);
  if (sort === undefined) {
    const known = fields.map(fieldLabel);
    throw new BpftoolError(
      `--sort '${request.sort}': the values of ${describe(map)} have ${
        known.length
          ? `no numeric member of that name: use ${known.join(", ")}`
          : "no numeric member"
      }`,
    );
  }
  const snapshot = new WatchSnapshot(map, fields, {
    sort,
    capacity: Math.min(map.info.maxEntries, FIRST_CAPACITY),
  });
  const method = watchMethod(map);
  await using quit = Quit.listen({ keys: !request.jsonl });
  if (request.jsonl) {
    const shape = {
      keySize: map.keySize,
      valueSize: map.valueSize,
      perCpu: map.perCpu ? map.cpus : 0,
      btf: btf &&
        {
          keyType: btf.keyType.kind === "void" ? undefined : btf.keyType,
          valueType: btf.valueType,
        },
    };
    const out = new ByteWriter(Deno.stdout);
    const lines = new WatchJsonl(snapshot, shape, out, request.cpus);
    await every(request, quit, () => {
      const unixMs = Date.now();
      snapshot.read(map, { method });
      lines.write(unixMs);
      out.flush();
    });
    return 0;
  }
  using screen = new Screen();
  const spec = {
    subject: describe(map),
    interval: request.interval,
    sort,
    perCpu: request.cpus && map.perCpu,
    cpus: map.cpus,
    cells: cellFormat(map, btf, fields),
    // Frames into a pipe have no height to fill: 20 keys unless --top says.
    top: request.top ?? (screen.terminal ? undefined : PLAIN_TOP),
    hint: screen.terminal && Deno.stdin.isTerminal() ? "(q quits)" : "",
    fill: screen.terminal,
  };
  await every(request, quit, () => {
    const stats = snapshot.read(map, { method });
    const { columns, rows } = screen.size();
    const frame = { ...spec, width: columns, height: rows };
    screen.draw(renderFrame(snapshot, stats, snapshot.top(keysShown(frame)), frame));
  });
  return 0;
}

/**
 * `map id 12 'name' (hash)`: as titles and errors name the map (no double quote, which
 * bpftool's JSON errors would print unescaped).
 */
function describe(map: BpfMap): string {
  const type = BPFTOOL_MAP_TYPE_NAMES[map.info.type] ?? `type ${map.info.type}`;
  return `map id ${map.info.id}${map.info.name ? ` '${map.info.name}'` : ""} (${type})`;
}

/**
 * Runs `tick` every `request.interval` seconds (from the start of one to the start of the
 * next; at once when a tick took longer) until `quit`. A closed stdout ends it quietly.
 */
async function every(request: WatchRequest, quit: Quit, tick: () => void): Promise<void> {
  while (!quit.stopped) {
    const start = performance.now();
    try {
      tick();
    } catch (e) {
      if (e instanceof Deno.errors.BrokenPipe) return;
      throw e;
    }
    await quit.sleep(request.interval * 1000 - (performance.now() - start));
  }
}
