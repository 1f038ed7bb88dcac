/**
 * `map save` and `map restore` (`scripts/map.ts`, `ffi/save/`) through the command, as a user
 * runs them (with the `map` task's permissions), on real maps, checked with bpftool:
 *
 * - a save, a delete of every key and a restore give the `bpftool -j map dump` of before,
 *   byte for byte, on maps without BTF and on every BTF map of `btf_types.bpf.o`;
 * - a restore into a pinned path where nothing is pinned creates the map with the same BTF
 *   (`map show` has a `btf_id`, `bpftool btf dump` prints the same types, `map dump` prints
 *   formatted values), and a save by its pin goes back there with no map named;
 * - `dump --json`, `dump --jsonl` and `bpftool -j`/`-p` dumps restore too;
 * - a target whose BTF reorders, adds and removes members gets its members by name; a
 *   narrowed member, or a removed one that held data, is refused before any write, naming
 *   it, unless `--drop` names it;
 * - refusals leave the target as it was: another shape, a corrupt or truncated file, no such
 *   map; a kernel refusal midway says how many entries were written and which was not;
 * - a large restore is written in parts at once (one per CPU), and still gives the dump of
 *   before, round after round (parts into a map that exists split only at the bucket
 *   boundaries the save recorded); refused midway, it tells what the map then holds.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  BpfMap,
  BtfBuilder,
  btfCodec,
  type BtfValue,
  createMapWithBtf,
  encodeSave,
  loadBtf,
  loadMapBtf,
  MapSaveError,
  parseSaveFile,
  restoreMap,
  saveMap,
} from "../mod.ts";
import { addInts, fillRandom, loadObject, objectTest, prng, SEED } from "./_btf_helpers.ts";
import { bpfTest, runScript, type ScriptRun } from "./_helpers.ts";

const DIR = Deno.makeTempDirSync({ prefix: "map_save_test_" });
let pins = 0;

/** A bpffs path of this run where nothing is pinned (removed by `unpin`). */
function freshPin(): string {
  return `/sys/fs/bpf/map_save_test_${Deno.pid}_${pins++}`;
}

function unpin(path: string): void {
  try {
    Deno.removeSync(path);
  } catch { /* never pinned */ }
}

/** `bpftool ARGS...`, stdout as text (it must succeed). */
function bpftool(...args: string[]): string {
  const out = new Deno.Command("bpftool", { args, stdout: "piped", stderr: "piped" })
    .outputSync();
  assert.ok(out.success, `bpftool ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout);
}

/** `bpftool -j map dump id N`: the bytes a user compares. */
function dumpOf(map: BpfMap): string {
  return bpftool("-j", "map", "dump", "id", String(map.info.id));
}

/** `deno task map ARGS...`. */
function mapCommand(...args: string[]): Promise<ScriptRun> {
  return runScript("map.ts", ...args);
}

/** Runs `map ARGS...` and asserts it succeeded, printing one summary line on stderr only. */
async function succeeds(...args: string[]): Promise<string> {
  const run = await mapCommand(...args);
  assert.equal(run.code, 0, `map ${args.join(" ")}: ${run.stderr}`);
  assert.equal(run.stdout, "");
  assert.match(run.stderr, /^(saved|restored) \d+ entries [^\n]*\n$/);
  return run.stderr;
}

/** Runs `map ARGS...` and asserts it failed with exit 255 and one error line; returns it. */
async function fails(...args: string[]): Promise<string> {
  const run = await mapCommand(...args);
  assert.equal(run.code, 255, `map ${args.join(" ")} should fail: ${run.stderr}`);
  assert.equal(run.stdout, "");
  assert.match(run.stderr, /^Error: [^\n]+\n$/);
  return run.stderr;
}

/** Deletes every key of a hash map; zeroes every value of an array. */
function clear(map: BpfMap): void {
  const keys: Uint8Array[] = [];
  for (const [key] of map.entries()) keys.push(key.slice());
  const zero = new Uint8Array(map.valueBytes);
  for (const key of keys) {
    if (map.typeName.endsWith("array")) map.update(key, zero);
    else map.delete(key);
  }
}

const u32Key = (i: number, key: Uint8Array) => new DataView(key.buffer).setUint32(0, i, true);

/** A map without BTF holding `count` entries, keys spread over the buckets. */
function plainMap(
  type: "hash" | "array" | "percpu_hash" | "lru_hash",
  count = 60,
  valueSize = 4,
): BpfMap {
  const map = BpfMap.create({ type, keySize: 4, valueSize, maxEntries: 128, name: "save_test" });
  const key = new Uint8Array(4);
  const value = new Uint8Array(map.valueBytes);
  for (let i = 0; i < count; i++) {
    u32Key(type === "array" ? i : Math.imul(i + 1, 2654435761) >>> 0, key);
    for (let j = 0; j < value.length; j++) value[j] = (i * 31 + j * 7 + 1) & 0xff;
    map.update(key, value);
  }
  return map;
}

/** Saves `map` by id, clears it, restores it by id: asserts bpftool dumps what it did before. */
async function roundTrip(map: BpfMap, label: string): Promise<void> {
  const file = `${DIR}/${label}.save`;
  const before = dumpOf(map);
  const id = String(map.info.id);
  await succeeds("save", "id", id, file);
  clear(map);
  if (before !== "[]\n") assert.notEqual(dumpOf(map), before, `${label}: cleared`);
  await succeeds("restore", file, "id", id);
  assert.equal(dumpOf(map), before, label);
}

bpfTest(
  "map save/restore: a save, a delete of every key and a restore give the dump of before, maps without BTF",
  async () => {
    for (const type of ["hash", "array", "percpu_hash", "lru_hash"] as const) {
      using map = plainMap(type, 60, type === "percpu_hash" ? 12 : 4);
      await roundTrip(map, type);
    }
    // A save of an empty map restores nothing, and says so.
    using empty = plainMap("hash", 0);
    await roundTrip(empty, "empty");
    // An LPM trie has no LOOKUP_BATCH: read per entry, written into the trie that exists.
    const pin = freshPin();
    try {
      const create = ["create", pin, "type", "lpm_trie", "key", "8", "value", "4", "entries"];
      bpftool("map", ...create, "16", "name", "trie", "flags", "1");
      for (const [bits, last, value] of [[24, 1, 7], [16, 0, 9]]) {
        const key = [bits, 0, 0, 0, 10, 0, last, 0].map(String);
        bpftool(
          "map",
          "update",
          "pinned",
          pin,
          "key",
          ...key,
          "value",
          String(value),
          "0",
          "0",
          "0",
        );
      }
      using trie = BpfMap.fromPin(pin);
      await roundTrip(trie, "lpm_trie");
    } finally {
      unpin(pin);
    }
  },
);

/** Each BTF map of `btf_types.bpf.o`, and how its keys are made (arrays: indices). */
const BTF_MAPS: [string, number, ((i: number, key: Uint8Array) => void)?][] = [
  ["bt_hash", 12],
  ["bt_percpu", 8],
  ["bt_array", 3, u32Key],
  ["bt_names", 10],
  ["bt_enums", 6, (i, key) => u32Key([0, 1, 2, 0xffff_fffd, 7, 0x8000_0000][i], key)],
  ["bt_ints", 10],
  ["bt_floats", 2, u32Key],
  ["btf_type.data", 1, (_, key) => key.fill(0)],
];

objectTest("map save/restore: the same on every BTF map of btf_types.bpf.o", async () => {
  using object = loadObject();
  const random = prng(SEED ^ 0x5a7e);
  for (const [name, count, makeKey] of BTF_MAPS) {
    using map = object.map(name);
    fillRandom(map, count, random, makeKey);
    await roundTrip(map, name);
  }
});

objectTest(
  "map restore: a pinned path where nothing is pinned gets the map, with its BTF",
  async () => {
    using object = loadObject();
    using map = object.map("bt_hash");
    fillRandom(map, 12, prng(SEED ^ 0x91));
    const file = `${DIR}/created.save`;
    const pin = freshPin();
    try {
      await succeeds("save", "id", String(map.info.id), file);
      const line = await succeeds("restore", file, "pinned", pin);
      assert.match(line, new RegExp(`\\(created, pinned at ${pin}\\)`));
      const [before, after] = [
        JSON.parse(bpftool("-j", "map", "show", "id", String(map.info.id))),
        JSON.parse(bpftool("-j", "map", "show", "pinned", pin)),
      ];
      for (const field of ["type", "name", "flags", "bytes_key", "bytes_value", "max_entries"]) {
        assert.equal(after[field], before[field], field);
      }
      assert.ok(after.btf_id > 0 && after.btf_id !== before.btf_id, JSON.stringify(after));
      assert.equal(
        bpftool("btf", "dump", "id", String(after.btf_id)),
        bpftool("btf", "dump", "id", String(before.btf_id)),
      );
      // The same entries, printed formatted (a new map hashes keys with its own seed: sorted).
      const entries = (text: string) =>
        JSON.parse(text).map((e: unknown) => JSON.stringify(e)).sort();
      assert.deepEqual(
        entries(bpftool("-j", "map", "dump", "pinned", pin)),
        entries(dumpOf(map)),
      );
      assert.match(bpftool("map", "dump", "pinned", pin), /^\[\{\n\s+"key": \{\n\s+"id": /);
    } finally {
      unpin(pin);
    }
  },
);

bpfTest(
  "map restore: a save by its pin goes back there with no map named; -j prints a summary",
  async () => {
    const pin = freshPin();
    const file = `${DIR}/by_pin.save`;
    try {
      {
        using map = plainMap("percpu_hash", 20);
        map.pin(pin);
      }
      const before = bpftool("-j", "map", "dump", "pinned", pin);
      const saved = await mapCommand("-j", "save", "pinned", pin, file);
      assert.equal(saved.code, 0, saved.stderr);
      assert.equal(saved.stderr, "");
      assert.deepEqual(
        { ...JSON.parse(saved.stdout), map: undefined, bytes: undefined },
        {
          file,
          map: undefined,
          entries: 20,
          bytes: undefined,
          btf: false,
          walk: "LOOKUP_BATCH",
          pinned: pin,
        },
      );
      unpin(pin);
      const restored = await mapCommand("restore", "-j", file);
      assert.equal(restored.code, 0, restored.stderr);
      const summary = JSON.parse(restored.stdout);
      assert.equal(summary.entries, 20);
      assert.equal(summary.created, true);
      assert.equal(summary.pinned, pin);
      assert.equal(summary.source, "save");
      const after = bpftool("-j", "map", "dump", "pinned", pin);
      const entries = (text: string) =>
        JSON.parse(text).map((e: unknown) => JSON.stringify(e)).sort();
      assert.deepEqual(entries(after), entries(before));
    } finally {
      unpin(pin);
    }
  },
);

/** Rewrites every entry through its BTF codecs, so that holes and padding are zero. */
function normalize(map: BpfMap): void {
  const btf = loadMapBtf(map)!;
  const key = btfCodec(btf.keyType);
  const value = btfCodec(btf.valueType);
  const entries: [BtfValue, BtfValue[]][] = [];
  for (const [k, v] of map.entries()) {
    entries.push([key.decode(k), map.cpuValues(v).map((c) => value.decode(c))]);
  }
  clear(map);
  const k = new Uint8Array(map.keySize);
  const v = new Uint8Array(map.valueBytes);
  for (const [typedKey, values] of entries) {
    key.encode(typedKey, k);
    values.forEach((typed, cpu) => value.encode(typed, v.subarray(cpu * map.valueStride)));
    map.update(k, v);
  }
}

objectTest(
  "map restore: dump --json, --jsonl and bpftool -j/-p output go back into a map",
  async () => {
    using object = loadObject();
    const random = prng(SEED ^ 0x7e);
    using plain = plainMap("percpu_hash", 30, 12);
    const maps: BpfMap[] = [plain];
    for (const name of ["bt_hash", "bt_percpu", "bt_names", "bt_enums", "bt_ints"]) {
      const map = object.map(name);
      const [, count, makeKey] = BTF_MAPS.find(([n]) => n === name)!;
      fillRandom(map, count, random, makeKey);
      // Typed lines carry what the types say, not the bytes of holes: make those zero.
      normalize(map);
      maps.push(map);
    }
    try {
      for (const map of maps) {
        const before = dumpOf(map);
        const id = String(map.info.id);
        const dumps: [string, string][] = [
          ["bpftool -j", before],
          ["bpftool -p", bpftool("-p", "map", "dump", "id", id)],
        ];
        for (const flag of ["--json", "--jsonl"]) {
          const run = await runScript("dump.ts", "--id", id, flag);
          assert.equal(run.code, 0, run.stderr);
          dumps.push([`dump ${flag}`, run.stdout]);
        }
        for (const [label, text] of dumps) {
          const file = `${DIR}/${map.info.name}.${label.replace(/\W+/g, "_")}`;
          Deno.writeTextFileSync(file, text);
          clear(map);
          const line = await succeeds("restore", file, "id", id);
          assert.match(line, label.includes("jsonl") ? /typed JSON lines/ : /a bpftool dump/);
          assert.equal(dumpOf(map), before, `${map.info.name} from ${label}`);
        }
      }
    } finally {
      for (const map of maps.slice(1)) map.close();
    }
  },
);

/** A value struct for the carry tests: `members` as [name, type id, bit offset]. */
function struct(b: BtfBuilder, size: number, members: [string, number, number][]): number {
  return b.add({
    kind: "struct",
    name: "carry_value",
    size,
    members: members.map(([name, type, bitOffset]) => ({ name, type, bitOffset })),
  });
}

/** Hash maps u32 -> the value types of the carry tests, pinned at fresh paths. */
function carryMaps() {
  const b = new BtfBuilder();
  const { u8, u16, u32, u64 } = addInts(b, "u8", "u16", "u32", "u64");
  const types = {
    // The saved value: a, gone, b, c.
    old: struct(b, 24, [["a", u32, 0], ["gone", u32, 32], ["b", u64, 64], ["c", u16, 128]]),
    // Reordered, "gone" removed, "added" added, larger.
    reordered: struct(b, 32, [["c", u16, 0], ["b", u64, 64], ["added", u64, 128], ["a", u32, 192]]),
    // "c" narrowed to one byte.
    narrowed: struct(b, 24, [["a", u32, 0], ["gone", u32, 32], ["b", u64, 64], ["c", u8, 128]]),
  };
  using btf = loadBtf(b.build());
  const make = (valueTypeId: number, size: number) =>
    createMapWithBtf({
      type: "hash",
      keySize: 4,
      valueSize: size,
      maxEntries: 64,
      name: "carry",
      btf,
      keyTypeId: u32,
      valueTypeId,
    });
  return {
    old: make(types.old, 24),
    reordered: make(types.reordered, 32),
    narrowed: make(types.narrowed, 24),
  };
}

/** The entries of a map with BTF, decoded, sorted by key. */
function typedEntries(map: BpfMap): [BtfValue, BtfValue][] {
  const btf = loadMapBtf(map)!;
  const typed = map.typed(btfCodec(btf.keyType), btfCodec(btf.valueType));
  return [...typed.entries()].sort((x, y) => Number(x[0]) - Number(y[0]));
}

bpfTest(
  "map restore: members carried by name into reordered, added, removed and narrowed BTF",
  async () => {
    const maps = carryMaps();
    using old = maps.old;
    using reordered = maps.reordered;
    using narrowed = maps.narrowed;
    const typed = old.typed(
      btfCodec(loadMapBtf(old)!.keyType),
      btfCodec(loadMapBtf(old)!.valueType),
    );
    for (let i = 0; i < 5; i++) {
      typed.set(i, {
        a: i + 1,
        gone: 0,
        b: BigInt(i) << 40n,
        c: i * 100,
      });
    }
    const zeroGone = `${DIR}/carry.save`;
    await succeeds("save", "id", String(old.info.id), zeroGone);

    // Reordered, "added" zero, "gone" held zeros only: carried.
    const line = await succeeds("restore", zeroGone, "id", String(reordered.info.id));
    assert.match(line, /carried by member name/);
    assert.deepEqual(
      typedEntries(reordered),
      [0, 1, 2, 3, 4].map((i) => [i, { c: i * 100, b: BigInt(i) << 40n, added: 0n, a: i + 1 }]),
    );

    // "c" narrowed to u8: 300 and 400 do not fit. Refused before any write, naming it.
    const narrowedId = String(narrowed.info.id);
    const error = await fails("restore", zeroGone, "id", narrowedId);
    assert.match(error, /value\.c\b.*does not fit.*--drop value\.c/);
    assert.equal(dumpOf(narrowed), "[]\n");
    await succeeds("restore", zeroGone, "id", narrowedId, "--drop", "value.c");
    assert.deepEqual(
      typedEntries(narrowed),
      [0, 1, 2, 3, 4].map((i) => [i, { a: i + 1, gone: 0, b: BigInt(i) << 40n, c: 0 }]),
    );

    // "gone" holding data in one entry: refused, naming it, unless dropped.
    clear(reordered);
    typed.set(3, { a: 4, gone: 7, b: 3n << 40n, c: 300 });
    const dataGone = `${DIR}/carry_gone.save`;
    await succeeds("save", "id", String(old.info.id), dataGone);
    const gone = await fails("restore", dataGone, "id", String(reordered.info.id));
    assert.match(gone, /value\.gone\b.*has no member "gone".*--drop value\.gone/);
    assert.equal(dumpOf(reordered), "[]\n");
    const dropped = await succeeds(
      "restore",
      dataGone,
      "id",
      String(reordered.info.id),
      "--drop",
      "value.gone",
    );
    assert.match(dropped, /dropped value\.gone \(non-zero in 1 value\)/);
    assert.equal(typedEntries(reordered).length, 5);
    // A drop path that names nothing is refused.
    assert.match(
      await fails("restore", dataGone, "id", String(reordered.info.id), "--drop", "value.nope"),
      /--drop value\.nope names no member/,
    );
  },
);

bpfTest(
  "map restore: another shape, a corrupt or truncated file, no such map: refused, the map untouched",
  async () => {
    using source = plainMap("hash", 30);
    const file = `${DIR}/shape.save`;
    await succeeds("save", "id", String(source.info.id), file);

    using wide = plainMap("hash", 5, 8);
    const wideBefore = dumpOf(wide);
    assert.match(
      await fails("restore", file, "id", String(wide.info.id)),
      /4-byte values, map \d+ "save_test" takes 8-byte ones/,
    );
    using array = plainMap("array", 5);
    assert.match(
      await fails("restore", file, "id", String(array.info.id)),
      /^Error: Map \d+ "save_test" is an array map, the save holds a hash map/,
    );
    assert.equal(dumpOf(wide), wideBefore);

    // Corrupt: one byte of the payload flipped; truncated: the last 16 bytes gone.
    const bytes = Deno.readFileSync(file);
    const flipped = bytes.slice();
    flipped[flipped.length - 20] ^= 0x01;
    Deno.writeFileSync(`${DIR}/flipped.save`, flipped);
    Deno.writeFileSync(`${DIR}/short.save`, bytes.subarray(0, bytes.length - 16));
    Deno.writeTextFileSync(`${DIR}/text.save`, "key 1 value 2\n");
    using target = plainMap("hash", 10);
    const before = dumpOf(target);
    const id = String(target.info.id);
    assert.match(await fails("restore", `${DIR}/flipped.save`, "id", id), /CRC-32/);
    assert.match(await fails("restore", `${DIR}/short.save`, "id", id), /truncated/);
    assert.match(await fails("restore", `${DIR}/text.save`, "id", id), /not a save file/);
    assert.equal(dumpOf(target), before);

    // No map of that id; no map of that name (a new one would go when the command ends).
    assert.match(await fails("restore", file, "id", "4000000000"), /get map by id/);
    assert.match(await fails("restore", file, "name", "no_such_map"), /no map is named/);
    // A dump has no definition to create a map from.
    Deno.writeTextFileSync(`${DIR}/dump.json`, dumpOf(source));
    const pin = freshPin();
    assert.match(await fails("restore", `${DIR}/dump.json`, "pinned", pin), /no map definition/);
  },
);

bpfTest(
  "map restore: a write the kernel refuses midway says how many were written and which was not",
  async () => {
    using source = plainMap("hash", 50);
    const file = `${DIR}/full.save`;
    await succeeds("save", "id", String(source.info.id), file);
    // Room for 60: 40 other keys already there, so 20 of the 50 fit.
    using target = BpfMap.create({ type: "hash", keySize: 4, valueSize: 4, maxEntries: 60 });
    for (let i = 0; i < 40; i++) {
      target.update(new Uint8Array(Uint32Array.of(i + 1).buffer), new Uint8Array(4));
    }
    const error = await fails("restore", file, "id", String(target.info.id));
    const m =
      /stopped after (\d+) of 50 entries: the kernel refused the next, key ([0-9a-f ]+) \(entry (\d+) of the save\): .*E2BIG.*the map is full \(max_entries 60\).*the \1 written stay in the map/
        .exec(error);
    assert.ok(m, error);
    assert.equal(Number(m[1]), 20);
    // What the map holds says the same: 40 + 20 entries, and not the key named.
    const held = JSON.parse(dumpOf(target)) as { key: string[] }[];
    assert.equal(held.length, 60);
    const named = m[2].split(" ").map((b) => `0x${b}`);
    assert.ok(!held.some((e) => e.key.join(" ") === named.join(" ")), m[2]);
  },
);

bpfTest("restoreMap: a name no map has gets a new map; saveMap writes to a sink", async () => {
  using source = plainMap("lru_hash", 40);
  const chunks: Uint8Array[] = [];
  const saved = saveMap(source, { writeSync: (p) => (chunks.push(p.slice()), p.length) });
  const bytes = new Uint8Array(saved.bytes);
  let at = 0;
  for (const chunk of chunks) at += (bytes.set(chunk, at), chunk.length);
  assert.equal(at, saved.bytes);
  const name = `save_${Deno.pid % 100_000}`;
  const result = await restoreMap(bytes, { name });
  using copy = result.map;
  assert.equal(result.created, true);
  assert.equal(copy.info.name, name);
  assert.equal(copy.typeName, "lru_hash");
  const sorted = (map: BpfMap) =>
    JSON.parse(dumpOf(map)).map((e: unknown) => JSON.stringify(e)).sort();
  assert.deepEqual(sorted(copy), sorted(source));
  // Now that one map has the name, a restore by name writes into it.
  clear(copy);
  const again = await restoreMap(bytes, { name });
  again.map.close();
  assert.equal(again.created, false);
  assert.deepEqual(sorted(copy), sorted(source));
});

bpfTest(
  "restoreMap: per-CPU values saved on more CPUs fit when those CPUs hold zeros",
  async () => {
    using map = BpfMap.create({ type: "percpu_hash", keySize: 4, valueSize: 4, maxEntries: 8 });
    const cpus = map.cpus + 2;
    const values = new Uint8Array(2 * 8 * cpus);
    for (let cpu = 0; cpu < map.cpus; cpu++) values[8 * cpu] = cpu + 1; // entry 0
    values[8 * cpus] = 9; // entry 1, CPU 0
    const contents = {
      definition: {
        type: 5,
        typeName: "percpu_hash",
        keySize: 4,
        valueSize: 4,
        maxEntries: 8,
        flags: 0,
        name: "",
        mapExtra: 0n,
      },
      btf: null,
      cpus,
      valueStride: 8,
      entries: 2,
      keys: Uint8Array.of(1, 0, 0, 0, 2, 0, 0, 0),
      values,
      origin: {},
    };
    const file = () => {
      const [header, payload] = encodeSave(contents);
      const bytes = new Uint8Array(header.length + payload.length);
      bytes.set(header);
      bytes.set(payload, header.length);
      return bytes;
    };
    await restoreMap(file(), map);
    assert.deepEqual(
      map.cpuValues(map.lookup(Uint8Array.of(1, 0, 0, 0))!).map((v) => v[0]),
      Array.from({ length: map.cpus }, (_, cpu) => cpu + 1),
    );
    values[8 * (cpus - 1)] = 5; // entry 0, the last CPU: no slot for it here
    await assert.rejects(
      () => restoreMap(file(), map),
      new RegExp(`hold ${cpus} CPUs' values, .* ${map.cpus}: CPU ${cpus - 1} holds data`),
    );
  },
);

/** Entries of the parallel restore tests: enough for a restore to be written in parts. */
const MANY = 200_000;
/** Parts a restore of `MANY` entries writes at once here (one per CPU, 100,000 each at least). */
const MANY_PARTS = Math.min(navigator.hardwareConcurrency, 2);

/**
 * Writes `count` entries into a u32 -> u64 map with one `UPDATE_BATCH`, keys spread over the
 * buckets: the `from`th to the `from + count - 1`th of a sequence without repeats.
 */
function fillSpread(map: BpfMap, from: number, count: number): void {
  const keys = new Uint32Array(count).map((_, i) => Math.imul(from + i + 1, 2654435761) >>> 0);
  const values = new BigUint64Array(count).map((_, i) => BigInt(from + i) * 0x1_0000_0001n);
  map.updateBatch(new Uint8Array(keys.buffer), new Uint8Array(values.buffer));
}

/** A u32 -> u64 hash map holding `MANY` entries, full. */
function manyEntries(): BpfMap {
  const map = BpfMap.create({
    type: "hash",
    keySize: 4,
    valueSize: 8,
    maxEntries: MANY,
    name: "save_many",
  });
  fillSpread(map, 0, MANY);
  return map;
}

/** Every key of `map`, packed. */
function keysOf(map: BpfMap): Uint8Array {
  const keys: Uint8Array[] = [];
  map.forEachBatch((batch) => keys.push(batch.keys.slice()));
  const all = new Uint8Array(keys.reduce((n, k) => n + k.length, 0));
  keys.reduce((at, k) => (all.set(k, at), at + k.length), 0);
  return all;
}

/** Asserts `actual` is `expected`, naming the first line that differs (not a diff of MBs). */
function assertSameText(actual: string, expected: string, label: string): void {
  if (actual === expected) return;
  const [a, e] = [actual.split("\n"), expected.split("\n")];
  const line = a.findIndex((text, i) => text !== e[i]);
  assert.fail(
    `${label}: line ${line + 1} is ${JSON.stringify(a[line])}, was ${JSON.stringify(e[line])}`,
  );
}

/** Runs `map -j ARGS...` (a restore) and returns its JSON summary. */
async function restoredJson(...args: string[]): Promise<Record<string, unknown>> {
  const run = await mapCommand("-j", ...args);
  assert.equal(run.code, 0, `map ${args.join(" ")}: ${run.stderr}`);
  return JSON.parse(run.stdout);
}

bpfTest(
  "map restore: written in parts at once, a save, a delete of every key and a restore give the dump of before, 5 rounds",
  async () => {
    using source = manyEntries();
    const file = `${DIR}/many.save`;
    saveMap(source, file);
    const sorted = (text: string) => JSON.parse(text).map((e: unknown) => JSON.stringify(e)).sort();
    const entries = sorted(dumpOf(source));
    for (let round = 0; round < 5; round++) {
      const pin = freshPin();
      try {
        // Into a new map (a hash seed of its own each round): parts split anywhere.
        assert.equal((await restoredJson("restore", file, "pinned", pin)).parts, MANY_PARTS);
        using map = BpfMap.fromPin(pin);
        if (round === 0) assert.deepEqual(sorted(dumpOf(map)), entries);
        // Its save records bucket boundaries; parts into the map that exists split there only.
        const again = `${DIR}/many_${round}.save`;
        await succeeds("save", "pinned", pin, again);
        const { bucketBoundaries } = parseSaveFile(Deno.readFileSync(again));
        assert.ok(bucketBoundaries && bucketBoundaries.length > 0, "no bucket boundaries saved");
        const before = dumpOf(map);
        map.deleteBatch(keysOf(map));
        assert.equal(dumpOf(map), "[]\n");
        const restored = await restoredJson("restore", again, "pinned", pin);
        assert.equal(restored.parts, MANY_PARTS);
        assertSameText(dumpOf(map), before, `round ${round}`);
      } finally {
        unpin(pin);
      }
    }
  },
);

bpfTest(
  "restoreMap: written in parts at once and refused midway, it says what the map then holds",
  async () => {
    using source = manyEntries();
    const file = `${DIR}/many_full.save`;
    saveMap(source, file);
    const saved = parseSaveFile(Deno.readFileSync(file));
    const savedKey = (i: number) => saved.keys.subarray(i * 4, i * 4 + 4);
    // The default chunk (one call a part), then calls of 10,000 entries.
    for (const chunk of [undefined, 10_000]) {
      // Room for 250,000, 100,000 other keys there: 150,000 of the 200,000 fit, and the
      // kernel refuses a part, or both, midway.
      using target = BpfMap.create({ type: "hash", keySize: 4, valueSize: 8, maxEntries: 250_000 });
      fillSpread(target, MANY, 100_000);
      const error = await restoreMap(file, target, { chunk }).then(
        () => assert.fail("the restore should have been refused"),
        (e) => e,
      );
      assert.ok(error instanceof MapSaveError && error.stop, String(error));
      const { written, total, index, key, ranges } = error.stop;
      assert.match(
        error.message,
        new RegExp(
          `stopped after ${written} of ${MANY} entries: ${MANY_PARTS} parts were written at once; .*E2BIG.*the map is full`,
        ),
      );
      assert.equal(total, MANY);
      // The count written is what the map holds, and the ranges say which: each key there.
      assert.equal(keysOf(target).length / 4 - 100_000, written, `chunk ${chunk}`);
      assert.equal(ranges.reduce((n, [start, end]) => n + end - start, 0), written);
      for (const [start, end] of ranges) {
        for (let i = start; i < end; i++) assert.ok(target.lookup(savedKey(i)), `entry ${i}`);
      }
      // The first entry not written: every one before it was, and it is absent from the map.
      const before = ranges.reduce(
        (n, [start, end]) => n + Math.max(0, Math.min(end, index) - start),
        0,
      );
      assert.equal(before, index, `entries before ${index} not all written`);
      assert.deepEqual(key, savedKey(index));
      assert.equal(target.lookup(key), undefined);
    }
  },
);

bpfTest(
  "restoreMap: a part the kernel refuses halts the others before their next call",
  async () => {
    if (MANY_PARTS < 2) return; // one CPU: no parts at once
    using source = manyEntries();
    const file = `${DIR}/many_halt.save`;
    saveMap(source, file);
    const saved = parseSaveFile(Deno.readFileSync(file));
    const split = saved.bucketBoundaries!.reduce((a, b) =>
      Math.abs(b - MANY / 2) < Math.abs(a - MANY / 2) ? b : a
    );
    // The first part's keys are there already (rewriting them takes no room); room for 1,000
    // more: the second part is refused, and the first stops before its next call.
    using target = BpfMap.create({ type: "hash", keySize: 4, valueSize: 8, maxEntries: MANY });
    target.updateBatch(saved.keys.slice(0, split * 4), new Uint8Array(split * 8));
    fillSpread(target, MANY, MANY - split - 1_000);
    const chunk = 1_000;
    const error = await restoreMap(file, target, { chunk }).then(
      () => assert.fail("the restore should have been refused"),
      (e) => e,
    );
    assert.ok(error instanceof MapSaveError && error.stop, String(error));
    assert.match(
      error.message,
      /the first entry not written is key [0-9a-f ]+ \(entry (\d+) of the save\), where its part stopped because the kernel refused key [0-9a-f ]+ \(entry (\d+) of the save\) in another: .*E2BIG/,
    );
    const { written, index, ranges } = error.stop;
    assert.deepEqual(ranges, [[0, index], [split, split + 1_000]]);
    assert.ok(index < split && index % chunk === 0, `the first part stopped at ${index}`);
    assert.equal(written, index + 1_000);
  },
);

Deno.test("map save/restore: temporary files removed", () => {
  Deno.removeSync(DIR, { recursive: true });
});
