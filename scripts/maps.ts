/**
 * Lists the system's maps as `bpftool map show` does, byte for byte: plain text, `--json`
 * (`bpftool -j`) or `--pretty` (`bpftool -p`), all maps or those one selector picks.
 *
 * @module
 */

import { BpfError, BpfMap } from "../mod.ts";
import { Errno } from "../ffi/sys/errors.ts";
import { backend as pickBackend } from "../ffi/sys/backends.ts";
import { BpfCommand } from "../ffi/sys/constants.ts";
import { JsonWriter } from "../ffi/format/json_writer.ts";
import { fdObjectKind, pinnedMapPaths } from "../ffi/format/map_show.ts";
import { allMaps, showMaps } from "./_map_show.ts";
import { closeFd } from "../ffi/sys/libc.ts";
import { backendFlag, intFlag, parseFlags, runMain, RuntimeError, UsageError } from "./_cli.ts";

const USAGE =
  `usage: maps.ts [--id N | --pin PATH | --name NAME] [--json | --pretty] [--bpffs] [--backend syscall|libbpf]
  Shows the system's maps as \`bpftool map show\` does (bpftool 7.1): all of them, or the one
  with --id, the one pinned at --pin, or every map named --name. --json prints what
  \`bpftool -j map show\` prints, --pretty what \`bpftool -p map show\` prints; --bpffs (-f) adds
  each map's pin paths, as \`bpftool -f\`. Errors are one line on stderr, in JSON mode too.`;

const FLAGS = {
  id: { type: "string" },
  pin: { type: "string" },
  name: { type: "string" },
  json: { type: "boolean", short: "j" },
  pretty: { type: "boolean", short: "p" },
  bpffs: { type: "boolean", short: "f" },
  backend: { type: "string" },
} as const;

/** `BPF_OBJ_NAME_LEN - 1`: bpftool refuses longer names. */
const MAX_NAME = 15;
/** Output is written in chunks of about this many bytes. */
const FLUSH_BYTES = 64 * 1024;

/** Buffered stdout that stops the process quietly when the reader goes away. */
class Output {
  #pending = "";
  readonly #encoder = new TextEncoder();

  write(text: string): void {
    this.#pending += text;
    if (this.#pending.length >= FLUSH_BYTES) this.flush();
  }

  flush(): void {
    let bytes = this.#encoder.encode(this.#pending);
    this.#pending = "";
    try {
      while (bytes.length > 0) bytes = bytes.subarray(Deno.stdout.writeSync(bytes));
    } catch (e) {
      if (e instanceof Deno.errors.BrokenPipe) Deno.exit(0);
      throw e;
    }
  }
}

/** Opens the map pinned at `path`, refusing other objects as bpftool does. */
function openPinned(path: string, backend: ReturnType<typeof backendFlag>): BpfMap {
  const fd = pickBackend(backend).objGet(path);
  if (fd < 0) {
    throw new BpfError({
      errno: -fd,
      command: BpfCommand.OBJ_GET,
      subject: `"${path}"`,
      hint: -fd === Errno.ENOENT ? "nothing is pinned at that path" : undefined,
    });
  }
  const kind = fdObjectKind(fd);
  if (kind !== "map") {
    closeFd(fd);
    throw new RuntimeError(`"${path}" holds a ${kind}, not a map: incorrect object type`);
  }
  return BpfMap.fromFd(fd, { backend });
}

await runMain(USAGE, () => {
  const flags = parseFlags(FLAGS);
  const backend = backendFlag(flags.backend);
  const selectors = [flags.id, flags.pin, flags.name].filter((s) => s !== undefined);
  if (selectors.length > 1) throw new UsageError("give at most one of --id, --pin and --name");
  if (flags.json && flags.pretty) throw new UsageError("give --json or --pretty, not both");
  const id = flags.id === undefined ? undefined : intFlag(flags.id, "id", 0, { max: 0xffff_ffff });
  if (flags.pin === "") throw new UsageError("--pin takes the path of a pinned map");
  if (flags.name !== undefined && (flags.name === "" || flags.name.length > MAX_NAME)) {
    throw new UsageError(`--name takes a map name of 1 to ${MAX_NAME} characters`);
  }
  const json = flags.json || flags.pretty
    ? new JsonWriter({ pretty: flags.pretty ?? false })
    : undefined;
  const pins = flags.bpffs ? pinnedMapPaths() : undefined;

  // Open what the selector picks first, so that an error prints no partial output.
  let maps: Iterable<BpfMap>;
  let single = false;
  if (id !== undefined) {
    maps = [BpfMap.fromId(id, { backend })];
    single = true;
  } else if (flags.pin !== undefined) {
    maps = [openPinned(flags.pin, backend)];
    single = true;
  } else if (flags.name !== undefined) {
    const named: BpfMap[] = [];
    for (const map of allMaps(backend)) {
      if (map.info.name === flags.name) named.push(map);
      else map.close();
    }
    if (named.length === 0) throw new RuntimeError(`No map named "${flags.name}"`);
    maps = named;
    single = named.length === 1;
  } else {
    maps = allMaps(backend);
  }

  const out = new Output();
  showMaps(maps, single, { json, pins }, (text) => out.write(text));
  if (json) out.write(json.end());
  out.flush();
});
