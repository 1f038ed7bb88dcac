/**
 * `scripts/dump.ts` against bpftool 7.1 itself (root): for the maps of
 * `build/btf_types.bpf.o` filled with seeded random entries and edge values, and for maps
 * without BTF (hash, array, percpu_hash, lru_hash, wide keys and values), `--json`,
 * `--pretty` and the plain text must be the bytes `bpftool -j`, `bpftool -p` and
 * `bpftool map dump` print. Also: `--jsonl` parses with 64-bit integers as strings, a closed
 * pipe ends the dump with exit 0, bad selectors exit 2 with one error line.
 *
 * The BTF quirks checked this way (see `ffi/format/bpftool_dump.ts`): unsigned hex
 * bitfields (enum and bool ones too), signed enums matched against 32-bit values, hex
 * `__int128`, anonymous members under "", strings only for NUL-terminated printable char
 * arrays, DATASEC values and a .data map without a key type, and the broken JSON of FLOAT
 * ("(unsupported-kind").
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  BPFFS_ROOT,
  BpfMap,
  BtfBuilder,
  btfCodec,
  builtObjectPath,
  ByteWriter,
  createMapWithBtf,
  ensureBpffs,
  FALLBACK_METHOD,
  fillMap,
  JsonlDump,
  loadBtf,
  loadMapBtf,
  methodUnavailable,
  stringToChars,
  type Struct,
} from "../mod.ts";
import { addInts, fillRandom, loadObject, objectTest, prng, SEED } from "./_btf_helpers.ts";
import { bpfTest, facilityTest, runScript, scriptCommand } from "./_helpers.ts";
import { structMap } from "../bench/bpftool_dump.ts";

/** `bpftool [flag] map dump id N`, stdout as text. */
function bpftool(flag: string | undefined, id: number): string {
  const out = new Deno.Command("bpftool", {
    args: [...(flag ? [flag] : []), "map", "dump", "id", String(id)],
    stdout: "piped",
    stderr: "piped",
  }).outputSync();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout);
}

/** Asserts dump.ts prints what bpftool prints for `map` in each of `formats`. */
async function assertLikeBpftool(
  map: BpfMap,
  formats: ("plain" | "json" | "pretty")[] = ["plain", "json", "pretty"],
  method?: string,
): Promise<void> {
  for (const format of formats) {
    const flag = { plain: undefined, json: "-j", pretty: "-p" }[format];
    const expected = bpftool(flag, map.info.id);
    const args = ["--id", String(map.info.id), ...(format === "plain" ? [] : [`--${format}`])];
    if (method) args.push("--method", method);
    const run = await runScript("dump.ts", ...args);
    assert.equal(run.stderr, "", `${map.subject} ${format}`);
    assert.equal(run.code, 0);
    assert.equal(run.stdout, expected, `${map.subject} ${format}${method ? ` ${method}` : ""}`);
  }
}

const u32Key = (value: number, key: Uint8Array) =>
  new DataView(key.buffer).setUint32(0, value, true);

objectTest("dump: BTF maps of btf_types.bpf.o print as bpftool prints them", async () => {
  using object = loadObject();
  const random = prng(SEED ^ 0xd0);
  const enumKeys = [0, 1, 2, 0xffff_fffd, 7, 0x8000_0000];
  const plan: [string, number, ((i: number, key: Uint8Array) => void)?][] = [
    ["bt_hash", 12],
    ["bt_percpu", 8],
    ["bt_array", 3, (i, key) => u32Key(i, key)],
    // Printable strings, strings with a quote and a backslash, and random bytes.
    ["bt_names", 10, (i, key) => {
      if (i % 2 === 0) {
        key.fill(0);
        key.set(new TextEncoder().encode(`n'"\\-${i}-${"x".repeat(i)}`.slice(0, 15)));
      }
    }],
    ["bt_enums", enumKeys.length, (i, key) => u32Key(enumKeys[i], key)],
    ["bt_ints", 10],
    ["bt_floats", 2, (i, key) => u32Key(i, key)],
    ["btf_type.data", 1, (_, key) => key.fill(0)],
  ];
  for (const [name, count, makeKey] of plan) {
    using map = object.map(name);
    fillRandom(map, count, random, makeKey);
    await assertLikeBpftool(map);
  }
  // Edge values through the codec: extremes, negative bitfields, enum names bpftool misses.
  using hash = object.map("bt_hash");
  const btf = loadMapBtf(hash)!;
  const typed = hash.typed(btfCodec(btf.keyType), btfCodec(btf.valueType));
  const keyName = (btf.keyType as Struct).members.find((m) => m.name === "name")!.type;
  const label = (btf.valueType as Struct).members.find((m) => m.name === "label")!.type;
  typed.set({ id: 0xffff_ffff, name: stringToChars("", keyName), delta: -32768, total: 0n }, {
    neg: -(2n ** 63n),
    big: 2n ** 64n - 1n,
    color: "BT_NEG",
    small: "BT_S_BIG",
    wide: "BT_W_HIGH",
    flags: { low: 7, signed5: -16, wide: 2n ** 40n - 1n, color: 15, on: true, after: 0 },
    word: { word: 0xffff_ffff },
    matrix: [[0, 65535, 1], [2, 3, 4]],
    label: stringToChars("1234567", label),
    ptr: 0n,
    ok: false,
    tiny: -128,
    cv: 0,
    x: -(2 ** 31),
    y: 2 ** 31 - 1,
  });
  await assertLikeBpftool(hash);
  await assertLikeBpftool(hash, ["json"], "normal");
});

bpfTest("dump: ENUM64, signed enums, char INTs and pointers from BTF built here", async () => {
  const b = new BtfBuilder();
  const { u8, u32, s64, u64, cchar } = addInts(b, "u8", "u32", "s64", "u64", "cchar");
  const wide = b.add({
    kind: "enum64",
    name: "d_wide",
    values: [{ name: "D_LOW", value: 1n }, { name: "D_TOP", value: 0xffff_ffff_ffff_fffen }],
  });
  const swide = b.add({
    kind: "enum64",
    name: "d_swide",
    signed: true,
    values: [{ name: "D_MIN", value: -5_000_000_000n }, { name: "D_ONE", value: 1n }],
  });
  const s32e = b.add({
    kind: "enum",
    name: "d_signed",
    signed: true,
    values: [{ name: "D_NEG", value: -3 }, { name: "D_POS", value: 3 }],
  });
  const ptr = b.add({ kind: "ptr", target: u8 });
  const chars = b.add({ kind: "array", element: cchar, index: u32, nelems: 4 });
  const value = b.add({
    kind: "struct",
    name: "d_value",
    size: 48,
    members: [
      { name: "a", type: wide, bitOffset: 0 },
      { name: "b", type: swide, bitOffset: 64 },
      { name: "c", type: s32e, bitOffset: 128 },
      { name: "ch", type: cchar, bitOffset: 160 },
      { name: "chars", type: chars, bitOffset: 168 },
      { name: "p", type: ptr, bitOffset: 256 },
      { name: "big", type: u64, bitOffset: 320, bitfieldSize: 60 },
      { name: "neg", type: s64, bitOffset: 380, bitfieldSize: 4 },
    ],
  });
  using loaded = loadBtf(b.build());
  using map = createMapWithBtf({
    type: "hash",
    keySize: 8,
    valueSize: 48,
    maxEntries: 64,
    name: "dump_enum64",
    btf: loaded,
    keyTypeId: swide,
    valueTypeId: value,
  });
  const random = prng(SEED ^ 0x64);
  fillRandom(map, 20, random);
  // Printable chars, a quote, NUL-terminated and not, a null pointer.
  const bytes = new Uint8Array(48);
  for (const [i, text] of ['"', "'", "\\"].entries()) {
    bytes.fill(0);
    bytes[20] = text.charCodeAt(0);
    bytes.set(new TextEncoder().encode(["ab\\", 'x"y', "\x01"][i]), 21);
    map.update(new Uint8Array(BigUint64Array.of(BigInt(i)).buffer), bytes);
  }
  await assertLikeBpftool(map);
});

/** A map without BTF, filled with `count` entries of keys 0.. and values derived from them. */
function plainMap(type: "hash" | "array" | "percpu_hash" | "lru_hash", options: {
  keySize?: number;
  valueSize?: number;
  count?: number;
} = {}): BpfMap {
  const { keySize = 4, valueSize = 4, count = 50 } = options;
  const map = BpfMap.create({ type, keySize, valueSize, maxEntries: 256 });
  const key = new Uint8Array(keySize);
  const value = new Uint8Array(map.valueBytes);
  for (let i = 0; i < count; i++) {
    key.fill(0);
    new DataView(key.buffer).setUint32(0, type === "array" ? i : i * 2654435761 >>> 0, true);
    for (let j = 0; j < value.length; j++) value[j] = (i * 31 + j * 7) & 0xff;
    map.update(key, value);
  }
  return map;
}

bpfTest("dump: maps without BTF print as bpftool prints them", async () => {
  for (const type of ["hash", "array", "percpu_hash", "lru_hash"] as const) {
    using map = plainMap(type);
    await assertLikeBpftool(map);
  }
  // Wide keys and values break lines (plain text) and per-CPU values over 16 bytes.
  using wide = plainMap("hash", { keySize: 20, valueSize: 40 });
  await assertLikeBpftool(wide);
  using mid = plainMap("hash", { keySize: 12, valueSize: 16 });
  await assertLikeBpftool(mid);
  using percpuWide = plainMap("percpu_hash", { keySize: 8, valueSize: 20 });
  await assertLikeBpftool(percpuWide);
  using empty = plainMap("hash", { count: 0 });
  await assertLikeBpftool(empty);
  // Every order-preserving method this kernel runs gives the same bytes.
  using big = plainMap("hash", { count: 200 });
  for (const method of ["normal", "batch", "parallel", "iter", "snapshot"] as const) {
    if (methodUnavailable(method) === null) await assertLikeBpftool(big, ["json"], method);
  }
});

bpfTest(
  "dump: a method this kernel refuses is refused in one line, naming what to use",
  async () => {
    using map = plainMap("hash", { count: 10 });
    for (const method of ["iter", "snapshot", "hybrid"] as const) {
      const refused = methodUnavailable(method);
      if (refused === null) continue;
      const run = await runScript(
        "dump.ts",
        "--id",
        String(map.info.id),
        "--jsonl",
        "--method",
        method,
      );
      assert.equal(run.code, 1, run.stderr);
      assert.equal(run.stdout, "");
      assert.equal(
        run.stderr,
        `error: the ${method} method cannot run here: ${refused}: use the ${
          FALLBACK_METHOD[method]
        } method instead (--method ${FALLBACK_METHOD[method]})\n`,
      );
    }
  },
);

/** `JSON.stringify` with BigInts as strings: what a line of `--jsonl` must say of a value. */
function jsonOf(value: unknown): string {
  return JSON.stringify(value, (_, v) => typeof v === "bigint" ? v.toString() : v);
}

objectTest(
  "dump: --jsonl lines are the decoders' values as JSON, on every map of the object",
  () => {
    // JsonlDump writes typed values straight from the bytes (struct members, arrays, integers,
    // enums) and through the decoders for the rest (bitfields, floats, pointers, unions with
    // anonymous members): every line must equal JSON.stringify of what the decoders give.
    using object = loadObject();
    const random = prng(SEED ^ 0x71);
    for (const name of ["bt_hash", "bt_percpu", "bt_array", "bt_names", "bt_enums", "bt_ints"]) {
      using map = object.map(name);
      fillRandom(
        map,
        16,
        random,
        map.typeName.endsWith("array") ? (i, k) => u32Key(i % 3, k) : undefined,
      );
      const btf = loadMapBtf(map)!;
      const key = btfCodec(btf.keyType);
      const value = btfCodec(btf.valueType);
      const chunks: Uint8Array[] = [];
      const out = new ByteWriter({ writeSync: (p) => (chunks.push(p.slice()), p.length) }, 64);
      const dump = new JsonlDump({
        keySize: map.keySize,
        valueSize: map.valueSize,
        perCpu: map.perCpu ? map.cpus : 0,
        btf: { keyType: btf.keyType, valueType: btf.valueType },
      }, out);
      const expected: string[] = [];
      for (const [k, v] of map.entries()) {
        dump.entry(k, 0, v, 0);
        const values = map.perCpu ? map.cpuValues(v).map((c) => value.decode(c)) : undefined;
        expected.push(
          `{"key":${jsonOf(key.decode(k))},${
            values ? `"values":${jsonOf(values)}` : `"value":${jsonOf(value.decode(v))}`
          }}`,
        );
      }
      out.flush();
      const lines = new TextDecoder().decode(concat(chunks)).trimEnd().split("\n");
      assert.deepEqual(lines, expected, name);
    }
  },
);

/** The bytes of `chunks` in one array. */
function concat(chunks: Uint8Array[]): Uint8Array {
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return all;
}

objectTest("dump: --jsonl is typed, one object per line, 64-bit integers as strings", async () => {
  using object = loadObject();
  using map = object.map("bt_percpu");
  const typed = map.typed(btfCodec(loadMapBtf(map)!.keyType), btfCodec(loadMapBtf(map)!.valueType));
  typed.set(2n ** 64n - 1n, { packets: 2n ** 63n, delta: -1, last: 255 });
  typed.set(5n, { packets: 1n, delta: 2, last: 3 });
  const run = await runScript("dump.ts", "--id", String(map.info.id), "--jsonl");
  assert.equal(run.code, 0, run.stderr);
  const lines = run.stdout.trimEnd().split("\n").map((line) => JSON.parse(line));
  assert.equal(lines.length, 2);
  const top = lines.find((l) => l.key === "18446744073709551615");
  assert.ok(top, run.stdout);
  assert.equal(top.values.length, map.cpus);
  assert.deepEqual(top.values[0], { packets: "9223372036854775808", delta: -1, last: 255 });
  // Without BTF: u32 numbers, u64 strings.
  using plain = BpfMap.create({ type: "hash", keySize: 4, valueSize: 8, maxEntries: 4 });
  plain.update(Uint8Array.of(1, 0, 0, 0), Uint8Array.of(255, 255, 255, 255, 255, 255, 255, 255));
  const raw = await runScript("dump.ts", "--id", String(plain.info.id), "--jsonl");
  assert.equal(raw.stdout, `{"key":1,"value":"18446744073709551615"}\n`);
});

bpfTest("dump: large maps, walked in order by Workers, print as bpftool prints them", async () => {
  // From 65,536 entries of max_entries the walk runs on Workers over many ranges in order
  // while this thread prints: the bytes must still be bpftool's, in every format.
  using u32 = BpfMap.create({ type: "hash", keySize: 4, valueSize: 4, maxEntries: 100_000 });
  await fillMap(u32, { entries: 100_000 });
  await assertLikeBpftool(u32);
  // 16-byte struct keys and 32-byte struct values with BTF (the benchmark's map).
  using flows = structMap(70_000);
  await assertLikeBpftool(flows);
  // --jsonl walks the same way: the lines of one walk, in its order.
  for (const map of [u32, flows]) {
    const [auto, batch] = await Promise.all([
      runScript("dump.ts", "--id", String(map.info.id), "--jsonl"),
      runScript("dump.ts", "--id", String(map.info.id), "--jsonl", "--method", "batch"),
    ]);
    assert.equal(auto.code, 0, auto.stderr);
    assert.equal(auto.stdout.split("\n").length - 1, map === u32 ? 100_000 : 70_000);
    assert.ok(auto.stdout === batch.stdout, `${map.subject}: --jsonl differs from one walk's`);
  }
});

/** Runs `bpftool` with the words of `command`; fails the test when it fails. */
function bpftoolRun(command: string): void {
  const args = command.split(/\s+/);
  const out = new Deno.Command("bpftool", { args, stdout: "null", stderr: "piped" }).outputSync();
  assert.ok(out.success, `bpftool ${command}: ${new TextDecoder().decode(out.stderr)}`);
}

// The prog array holds map_count.bpf.o's program, an iter/bpf_map one.
facilityTest(
  import.meta.url,
  "dump: maps without LOOKUP_BATCH print as bpftool prints them; keyless ones are refused",
  ["iter_map"],
  async () => {
    // An LPM trie (no batch lookup: read per entry), a prog array holding a program, and a
    // hash of maps, made and filled by bpftool itself, pinned under a folder of this test.
    const dir = `${BPFFS_ROOT}/dump_test_${Deno.pid}`;
    ensureBpffs(dir);
    Deno.mkdirSync(dir);
    try {
      const lpm = `${dir}/lpm`;
      bpftoolRun(`map create ${lpm} type lpm_trie key 8 value 4 entries 16 name dt_lpm flags 1`);
      bpftoolRun(`map update pinned ${lpm} key 24 0 0 0 10 0 0 0 value 1 0 0 0`);
      bpftoolRun(`map update pinned ${lpm} key 16 0 0 0 192 168 0 0 value 2 0 0 0`);
      const progs = `${dir}/progs`;
      bpftoolRun(`map create ${progs} type prog_array key 4 value 4 entries 4 name dt_progs`);
      bpftoolRun(`prog loadall ${builtObjectPath("map_count.bpf.o")} ${dir}/prog`);
      const [prog] = [...Deno.readDirSync(`${dir}/prog`)];
      bpftoolRun(`map update pinned ${progs} key 1 0 0 0 value pinned ${dir}/prog/${prog.name}`);
      const [inner, outer] = [`${dir}/inner`, `${dir}/outer`];
      bpftoolRun(`map create ${inner} type array key 4 value 4 entries 1 name dt_inner`);
      bpftoolRun(
        `map create ${outer} type hash_of_maps inner_map pinned ${inner} key 4 value 4 entries 4 name dt_outer`,
      );
      bpftoolRun(`map update pinned ${outer} key 1 0 0 0 value pinned ${inner}`);
      for (const pin of [lpm, progs, outer]) {
        using map = BpfMap.fromPin(pin);
        await assertLikeBpftool(map, ["plain", "json"]);
      }
      const queue = `${dir}/queue`;
      bpftoolRun(`map create ${queue} type queue key 0 value 4 entries 4 name dt_queue`);
      const refused = await runScript("dump.ts", "--pin", queue, "--json");
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /^error: map \d+ .*is a queue map: it has no keys to walk\n$/);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
);

bpfTest("dump: a closed pipe ends the dump quietly, with exit 0", async () => {
  using map = plainMap("hash", { count: 0 });
  using big = BpfMap.create({ type: "hash", keySize: 4, valueSize: 4, maxEntries: 20_000 });
  const keys = new Uint8Array(4 * 20_000);
  const dv = new DataView(keys.buffer);
  for (let i = 0; i < 20_000; i++) dv.setUint32(i * 4, i, true);
  big.updateBatch(keys, keys.slice());
  map.close();
  const child = scriptCommand("dump.ts", ["--id", String(big.info.id), "--pretty"]).spawn();
  const reader = child.stdout.getReader();
  const first = await reader.read();
  assert.ok(first.value && first.value.length > 0);
  await reader.cancel();
  const [status, stderr] = await Promise.all([child.status, new Response(child.stderr).text()]);
  assert.equal(stderr, "");
  assert.equal(status.code, 0);
});

bpfTest("dump: bad selectors exit 2 with one error line; a missing map exits 1", async () => {
  for (
    const args of [[], ["--id", "1", "--pin", "/x"], ["--id", "x"], [
      "--pin",
      "/x",
      "--json",
      "--pretty",
    ], [
      "--pin",
      "/x",
      "--json",
      "--method",
      "hybrid",
    ]]
  ) {
    const run = await runScript("dump.ts", ...args);
    assert.equal(run.code, 2, `${args}: ${run.stderr}`);
    assert.equal(run.stdout, "");
    assert.equal(run.stderr.split("\n").filter((l) => l.startsWith("error:")).length, 1);
  }
  const missing = await runScript("dump.ts", "--pin", "/sys/fs/bpf/no-such-dump-pin", "--json");
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr.trimEnd().split("\n").length, 1, missing.stderr);
});
