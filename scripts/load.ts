/**
 * Loads the study's object (or creates a map of another type), fills the map with key `i`
 * -> `0xdeadbeef`, pins it, and reports; `--hold` keeps it unpinned until Ctrl-C instead.
 *
 * @module
 */

import { BpfMap, fdMemlock, type MapSpec, MapType, parseMapType, probeFacility } from "../mod.ts";
import { fillMap } from "../ffi/map/fill.ts";
import { BpfObject, builtObjectPath } from "../ffi/map/object.ts";
import { unlinkPath } from "../ffi/sys/libc.ts";
import { ensureBpffs, pathExists } from "../ffi/sys/system.ts";
import { check } from "../ffi/sys/errors.ts";
import {
  backendFlag,
  DEFAULT_PIN,
  intFlag,
  parseFlags,
  runMain,
  RuntimeError,
  UsageError,
} from "./_cli.ts";
import { bytes, memlockNote, progressBar } from "./_report.ts";

const USAGE =
  `usage: load.ts [--entries N] [--pin PATH | --hold] [--replace] [--keep-partial] [--per-entry] [--chunk N]
               [--type TYPE --key-size N --value-size N] [--object FILE] [--backend syscall|libbpf] [--json]
  Loads build/test_map.bpf.o (map test_map, 104,857,600 entries unless --entries), fills it
  with key i -> 0xdeadbeef by UPDATE_BATCH (--per-entry: one UPDATE_ELEM each, as the study
  did), and pins it at ${DEFAULT_PIN} (or --pin). --hold pins nothing and keeps the map until
  Ctrl-C. --type/--key-size/--value-size create the map with MAP_CREATE instead (types: hash,
  lru_hash, percpu_hash, lru_percpu_hash, array, percpu_array).`;

const MAP_NAME = "test_map";

const STUDY_ENTRIES = 104_857_600;

/** Where the map comes from: a map spec for MAP_CREATE, or the object file to load. */
type MapSource = { spec: MapSpec } | { objectPath: string };

/** Checks the map flags, before anything is done or printed. */
function mapSource(
  flags: { object?: string; type?: string; "key-size"?: string; "value-size"?: string },
  entries: number | undefined,
): MapSource {
  const custom = flags.type !== undefined || flags["key-size"] !== undefined ||
    flags["value-size"] !== undefined;
  if (!custom) return { objectPath: flags.object ?? builtObjectPath("test_map.bpf.o") };
  if (flags.object !== undefined) {
    throw new UsageError("--object and --type/--key-size/--value-size exclude each other");
  }
  const type = parseMapType(flags.type ?? "hash");
  if (type === undefined) {
    throw new UsageError(
      `unknown --type "${flags.type}": use one of ${Object.keys(MapType).join(", ")}`,
    );
  }
  return {
    spec: {
      type,
      keySize: intFlag(flags["key-size"], "key-size", 4, { min: 4, max: 512 }),
      valueSize: intFlag(flags["value-size"], "value-size", 4, { max: 65_536 }),
      maxEntries: entries ?? STUDY_ENTRIES,
      name: MAP_NAME,
    },
  };
}

/** Creates the map, or loads the object with `entries` as its map's size. */
function openMap(
  source: MapSource,
  entries: number | undefined,
  backend: ReturnType<typeof backendFlag>,
): { map: BpfMap; object?: BpfObject } {
  if ("spec" in source) return { map: BpfMap.create(source.spec, { backend }) };
  // The map alone: the study's XDP program is not needed to fill and pin it.
  const object = BpfObject.open(source.objectPath, { programs: [] });
  try {
    if (entries !== undefined) object.setMaxEntries(MAP_NAME, entries);
    object.load();
    return { map: object.map(MAP_NAME, { backend }), object };
  } catch (e) {
    object.close();
    throw e;
  }
}

function waitForSignal(): Promise<void> {
  return new Promise((resolve) => Deno.addSignalListener("SIGINT", () => resolve()));
}

await runMain(USAGE, async () => {
  const flags = parseFlags({
    entries: { type: "string" },
    pin: { type: "string" },
    hold: { type: "boolean" },
    replace: { type: "boolean" },
    "keep-partial": { type: "boolean" },
    "per-entry": { type: "boolean" },
    chunk: { type: "string" },
    type: { type: "string" },
    "key-size": { type: "string" },
    "value-size": { type: "string" },
    object: { type: "string" },
    backend: { type: "string" },
    json: { type: "boolean" },
  });
  const entries = flags.entries === undefined
    ? undefined
    : intFlag(flags.entries, "entries", 0, { max: 0xffff_ffff });
  const chunk = intFlag(flags.chunk, "chunk", 65_536, { max: 1 << 24 });
  const backend = backendFlag(flags.backend);
  if (flags.hold && flags.pin !== undefined) {
    throw new UsageError("--hold keeps the map unpinned: drop --pin");
  }
  const source = mapSource(flags, entries);
  const say = flags.json ? () => {} : console.log;
  const pin = flags.hold ? undefined : flags.pin ?? DEFAULT_PIN;
  if (pin !== undefined) {
    ensureBpffs(pin);
    if (pathExists(pin) && !flags.replace) {
      throw new RuntimeError(
        `"${pin}" already exists: pass --replace to replace it, or --pin another path`,
      );
    }
  }

  say("Load test program and map");
  const { map, object } = openMap(source, entries, backend);
  using _map = map;
  using _object = object;
  const total = entries ?? map.info.maxEntries;
  say(
    `map id is ${map.info.id} (${map.typeName}, ${map.info.maxEntries} max entries, ${map.backend} backend)`,
  );

  const interrupt = new AbortController();
  const onSignal = () => interrupt.abort();
  Deno.addSignalListener("SIGINT", onSignal);
  say("Prepare test data...");
  const bar = flags.json ? undefined : progressBar(total, "fill");
  const fill = await fillMap(map, {
    entries: total,
    perEntry: flags["per-entry"],
    chunk,
    signal: interrupt.signal,
    onProgress: (done) => bar?.update(done),
  });
  bar?.stop();
  Deno.removeSignalListener("SIGINT", onSignal);

  if (fill.aborted && !flags["keep-partial"]) {
    console.error(
      `interrupted: ${fill.written} of ${total} entries written; nothing pinned (pass --keep-partial to keep a partial map)`,
    );
    Deno.exit(130);
  }
  if (pin !== undefined) {
    if (pathExists(pin)) {
      check(unlinkPath(pin), "unlink", { subject: `"${pin}"` });
    }
    map.pin(pin);
  }
  const memlock = fdMemlock(map.fd);
  const report = {
    id: map.info.id,
    pin: pin ?? null,
    type: map.typeName,
    entries: fill.written,
    complete: !fill.aborted,
    seconds: fill.seconds,
    syscalls: fill.syscalls,
    memlock: memlock ?? null,
    memlockEstimate: probeFacility("map_memory").status === "unavailable",
  };
  if (flags.json) console.log(JSON.stringify(report));
  say(
    fill.aborted
      ? `Interrupted: kept a partial map of ${fill.written} of ${total} entries`
      : "Finish preparing test data",
  );
  say(
    `filled ${fill.written} entries in ${fill.seconds.toFixed(3)} s (${fill.syscalls} syscalls)`,
  );
  if (memlock !== undefined) {
    say(`kernel memory (memlock) ${memlock} (${bytes(memlock)})${memlockNote()}`);
  }
  if (pin !== undefined) {
    say(`pinned at ${pin}`);
    return;
  }
  say(`map id is ${map.info.id}: holding it until Ctrl-C`);
  await waitForSignal();
  say("released");
});
