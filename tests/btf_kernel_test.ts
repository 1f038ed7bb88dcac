/**
 * The BTF reader against the real kernel and bpftool (root): the maps of
 * `build/btf_types.bpf.o` loaded through libbpf, each map's BTF fetched by its `btf_id`,
 * entries written as known bytes (seeded random, and typed values through `btfCodec`), and
 * every decoded key and value compared with the "formatted" field of `bpftool -j map dump`.
 * ENUM64 and signed enums, which clang 14 cannot emit, come from BTF built in TypeScript,
 * loaded with `BPF_BTF_LOAD`, with a map created on it.
 *
 * bpftool's quirks (btf_dumper.c, bpftool 7.1), which `bpftoolView` reproduces:
 * - bitfields (kind_flag ones, and INTs of fewer bits) print as unsigned hex strings, enum
 *   and bool bitfields too, never sign-extended or named;
 * - enums are read as signed integers of their size, so an unsigned 1-byte enumerator of
 *   200 never matches (it prints -56); an unmatched ENUM64 prints as a signed 64-bit number;
 * - `__int128` prints as a hex string; pointers as unsigned numbers;
 * - a `char` array prints as a string only when NUL-terminated and printable before the NUL,
 *   else as numbers (signed: clang's `char` is a signed INT);
 * - anonymous struct and union members print under the key "" (JSON.parse keeps the last);
 * - a DATASEC prints as `{section: [{var: value}, ...]}` and a map without a key type has
 *   no "key" in "formatted";
 * - FLOAT is "(unsupported-kind", which breaks the JSON: float maps are checked against the
 *   raw bytes instead.
 *
 * @module
 */

import assert from "node:assert/strict";
import { BpfMap } from "../mod.ts";
import { BpfError } from "../ffi/sys/errors.ts";
import {
  BtfBuilder,
  btfCodec,
  type BtfType,
  type BtfValue,
  createMapWithBtf,
  isCharArray,
  kernelBtf,
  loadBtf,
  loadBtfById,
  loadMapBtf,
  readBtfById,
  stringToChars,
  type Struct,
  typeName,
  underlying,
  VMLINUX_BTF_PATH,
} from "../ffi/btf/mod.ts";
import { addInts, fillRandom, loadObject, objectTest, prng, SEED } from "./_btf_helpers.ts";
import { bpfTest } from "./_helpers.ts";

/** `map`'s BTF, and the map read and written by value through it. */
function typedByBtf(map: BpfMap) {
  const btf = loadMapBtf(map);
  assert.ok(btf, `${map.subject} has no BTF`);
  return { btf, typed: map.typed(btfCodec(btf.keyType), btfCodec(btf.valueType)) };
}

/** JSON as bpftool prints it, with every integer as a `bigint` (u64 values exceed 2^53). */
type Json = null | boolean | bigint | number | string | Json[] | { [key: string]: Json };

function parseJson(text: string): Json {
  const revive = (_key: string, value: unknown, context?: { source?: string }) =>
    typeof value === "number" && context?.source !== undefined && /^-?\d+$/.test(context.source)
      ? BigInt(context.source)
      : value;
  return JSON.parse(text, revive as (key: string, value: unknown) => unknown);
}

/** `bpftool -j map dump id N`. */
function bpftoolDump(map: BpfMap): { text: string; json?: Json[] } {
  const out = new Deno.Command("bpftool", {
    args: ["-j", "map", "dump", "id", String(map.info.id)],
    stdout: "piped",
    stderr: "piped",
  }).outputSync();
  const text = new TextDecoder().decode(out.stdout);
  assert.ok(out.success, `bpftool failed: ${new TextDecoder().decode(out.stderr)}`);
  try {
    return { text, json: parseJson(text) as Json[] };
  } catch {
    return { text };
  }
}

function hexBytes(list: Json): Uint8Array {
  assert.ok(Array.isArray(list));
  return Uint8Array.from(list.map((x) => parseInt(String(x), 16)));
}

/** The raw unsigned bits of an integer or enum value (names through the enum's values). */
function rawBits(type: BtfType, value: BtfValue, bits: number): bigint {
  const t = underlying(type);
  if (typeof value === "string") {
    assert.ok(t.kind === "enum" || t.kind === "enum64", `name ${value} of ${t.kind}`);
    const e = (t.values as { name: string; value: number | bigint }[]).find((v) =>
      v.name === value
    );
    assert.ok(e, `no enumerator ${value}`);
    return BigInt.asUintN(bits, BigInt(e.value));
  }
  if (typeof value === "boolean") return value ? 1n : 0n;
  return BigInt.asUintN(bits, BigInt(value as number | bigint));
}

function hex(x: bigint): string {
  return `0x${x.toString(16)}`;
}

/** What bpftool prints for `value` of `type` (see the module documentation for the quirks). */
function bpftoolView(type: BtfType, value: BtfValue): Json {
  switch (type.kind) {
    case "typedef":
    case "const":
    case "volatile":
    case "restrict":
      return bpftoolView(type.target, value);
    case "int": {
      if (type.offset !== 0 || type.bits % 8 !== 0) return hex(rawBits(type, value, type.bits));
      if (type.bits === 128) return hex(BigInt.asUintN(128, value as bigint));
      if (type.encoding === "bool") return value as boolean;
      if (type.encoding === "char") return String.fromCharCode(value as number);
      return BigInt(value as number | bigint);
    }
    case "enum": {
      const raw = rawBits(type, value, type.size * 8);
      const signed = BigInt.asIntN(type.size * 8, raw);
      const match = type.values.find((e) => BigInt(e.value | 0) === signed);
      return match ? match.name : signed;
    }
    case "enum64": {
      const raw = rawBits(type, value, 64);
      const match = type.values.find((e) => BigInt.asUintN(64, e.value) === raw);
      return match ? match.name : BigInt.asIntN(64, raw);
    }
    case "ptr":
      return value as bigint;
    case "array": {
      const values = value as number[];
      if (isCharArray(type) && type.nelems > 0) {
        const bytes = values.map((v) => v & 0xff);
        const nul = bytes.indexOf(0);
        if (nul >= 0 && bytes.slice(0, nul).every((c) => c > 0x1f && c < 0x7f)) {
          return String.fromCharCode(...bytes.slice(0, nul));
        }
      }
      return values.map((v) => bpftoolView(type.element, v as BtfValue));
    }
    case "struct":
    case "union": {
      const flat = value as Record<string, BtfValue>;
      const out: { [key: string]: Json } = {};
      for (const m of type.members) {
        const inner = underlying(m.type);
        if (!m.name) {
          assert.ok(inner.kind === "struct" || inner.kind === "union", "unnamed bitfield");
          out[""] = bpftoolView(inner, flat);
        } else if (m.bitfieldSize > 0) {
          out[m.name] = hex(rawBits(m.type, flat[m.name], m.bitfieldSize));
        } else if (m.bitOffset % 8 !== 0 && inner.kind === "int") {
          out[m.name] = hex(rawBits(inner, flat[m.name], inner.bits));
        } else {
          out[m.name] = bpftoolView(m.type, flat[m.name]);
        }
      }
      return out;
    }
    case "datasec": {
      const vars = value as Record<string, BtfValue>;
      return {
        [type.name]: type.vars.filter((v) => v.type.kind === "var").map((v) => ({
          [v.type.name]: bpftoolView(v.type, vars[v.type.name]),
        })),
      };
    }
    case "var":
      return bpftoolView(type.type, value);
    default:
      throw new Error(`bpftool does not print a ${type.kind}`);
  }
}

/** Compares every entry bpftool dumps with what the map's BTF decodes; returns the entries seen. */
function compareWithBpftool(map: BpfMap, seed: number): number {
  const btf = loadMapBtf(map);
  assert.ok(btf, `${map.subject} has no BTF`);
  const key = btf.keyType.kind === "void" ? undefined : btfCodec(btf.keyType);
  const value = btfCodec(btf.valueType);
  const { json, text } = bpftoolDump(map);
  assert.ok(json, `bpftool printed no JSON for ${map.subject}: ${text.slice(0, 500)}`);
  for (const entry of json as { [k: string]: Json }[]) {
    const formatted = entry.formatted as { [k: string]: Json };
    const keyBytes = hexBytes(entry.key);
    const context = `seed ${seed}, ${map.subject}, key ${[...keyBytes]}`;
    if (key) {
      assert.deepEqual(bpftoolView(btf.keyType, key.decode(keyBytes)), formatted.key, context);
    } else {
      assert.equal("key" in formatted, false, "bpftool prints no key without a key type");
    }
    if (map.perCpu) {
      const values = entry.values as { cpu: Json; value: Json }[];
      const shown = formatted.values as { cpu: Json; value: Json }[];
      assert.equal(values.length, map.cpus);
      values.forEach((v, cpu) => {
        const mine = bpftoolView(btf.valueType, value.decode(hexBytes(v.value)));
        assert.deepEqual(mine, shown[cpu].value, `${context}, cpu ${cpu}`);
      });
    } else {
      const mine = bpftoolView(btf.valueType, value.decode(hexBytes(entry.value)));
      assert.deepEqual(mine, formatted.value, context);
    }
  }
  return json.length;
}

objectTest("btf kernel: every map of btf_types.bpf.o has the BTF the C source declares", () => {
  using object = loadObject();
  const expected: Record<string, [string, string]> = {
    bt_hash: ["struct bt_key", "struct bt_value"],
    bt_percpu: ["__u64", "struct bt_counters"],
    bt_array: ["__u32", "struct bt_nested"],
    bt_names: ["bt_name_t", "struct bt_flags"],
    bt_enums: ["enum bt_color", "enum bt_wide"],
    bt_ints: ["__s32", "struct bt_wide_ints"],
    bt_floats: ["__u32", "struct bt_floats"],
    "btf_type.data": ["void", 'SEC(".data")'],
  };
  let btfId = 0;
  for (const [name, [key, value]] of Object.entries(expected)) {
    using map = object.map(name);
    const btf = loadMapBtf(map);
    assert.ok(btf, name);
    assert.equal(typeName(btf.keyType), key, name);
    assert.equal(typeName(btf.valueType), value, name);
    btfId ||= btf.btfId;
    assert.equal(btf.btfId, btfId, "one BTF object for the whole object file");
  }
  // The .data map starts with the C initializers.
  using data = object.map("btf_type.data");
  const btf = loadMapBtf(data)!;
  const value = btfCodec(btf.valueType).decode(data.lookup(new Uint8Array(4))!);
  assert.deepEqual(value, {
    bt_data_count: 7,
    bt_data_key: {
      id: 42,
      name: [100, 97, 116, 97, 0, 0, 0, 0, 0, 0, 0, 0],
      delta: -2,
      total: 1n << 40n,
    },
  });
});

objectTest("btf kernel: decoded entries equal bpftool's formatted dump, map by map", () => {
  using object = loadObject();
  const random = prng(SEED);
  const enumKeys = [0, 1, 2, 0xffff_fffd, 7, 0x8000_0000];
  const u32Key = (value: number, key: Uint8Array) =>
    new DataView(key.buffer).setUint32(0, value, true);
  // Each map, with how many random entries it gets and how their keys are made.
  const plan: [string, number, ((i: number, key: Uint8Array) => void)?][] = [
    ["bt_hash", 12],
    ["bt_percpu", 8],
    ["bt_array", 3, (i, key) => u32Key(i, key)],
    // Half the keys are printable strings (bpftool prints a string), half random bytes.
    ["bt_names", 10, (i, key) => {
      if (i % 2 === 0) {
        key.fill(0);
        key.set(new TextEncoder().encode(`name-${i}-${"x".repeat(i)}`.slice(0, 15)));
      }
    }],
    ["bt_enums", enumKeys.length, (i, key) => u32Key(enumKeys[i], key)],
    ["bt_ints", 10],
    ["btf_type.data", 1, (_, key) => key.fill(0)],
  ];
  for (const [name, count, makeKey] of plan) {
    using map = object.map(name);
    fillRandom(map, count, random, makeKey);
    // Every entry written is dumped, and each decodes as bpftool formats it.
    assert.equal(compareWithBpftool(map, SEED), count, name);
  }
});

objectTest("btf kernel: typed values go in through btfCodec and come back equal", () => {
  using object = loadObject();
  using map = object.map("bt_hash");
  const { btf, typed } = typedByBtf(map);
  const value = btf.valueType as Struct;
  const label = value.members.find((m) => m.name === "label")!.type;
  const keyName = (btf.keyType as Struct).members.find((m) => m.name === "name")!.type;
  const key = { id: 7, name: stringToChars("seven", keyName), delta: -300, total: 2n ** 63n };
  const written = {
    neg: -(2n ** 63n),
    big: 2n ** 64n - 1n,
    color: "BT_NEG",
    small: "BT_S_BIG",
    wide: "BT_W_LOW",
    flags: { low: 5, signed5: -16, wide: 2n ** 40n - 1n, color: "BT_BLUE", on: true, after: 65535 },
    word: { word: 0x01020304 },
    matrix: [[1, 2, 3], [4, 5, 65535]],
    label: stringToChars("label", label),
    ptr: 0xffff_8880_0000_1000n,
    ok: true,
    tiny: -128,
    cv: 0xffff_ffff,
    x: -1,
    y: 0x7fff_ffff,
  };
  typed.set(key, written);
  const read = typed.get(key) as Record<string, BtfValue>;
  assert.deepEqual(read, {
    ...written,
    word: { word: 0x01020304, bytes: [4, 3, 2, 1], lo: 0x0304, hi: 0x0102 },
  });
  // bpftool sees the same entry, with its own quirks (BT_S_BIG is -56 to it).
  const [entry] = bpftoolDump(map).json as { formatted: { value: Record<string, Json> } }[];
  assert.equal(entry.formatted.value.small, -56n);
  assert.equal(entry.formatted.value.color, "BT_NEG");
  assert.deepEqual(entry.formatted.value[""], { x: -1n, y: 0x7fff_ffffn });
  assert.equal(entry.formatted.value.label, "label");
  compareWithBpftool(map, SEED);
  // Per-CPU values: one decoded value per CPU.
  using percpu = object.map("bt_percpu");
  const counters = typedByBtf(percpu).typed;
  counters.set(2n ** 64n - 1n, { packets: 10n, delta: -1, last: 255 });
  assert.deepEqual(
    counters.getPerCpu(2n ** 64n - 1n),
    new Array(percpu.cpus).fill({ packets: 10n, delta: -1, last: 255 }),
  );
  assert.throws(() => typed.set(key, { ...written, tiny: 128 }), /at "tiny"/);
});

objectTest("btf kernel: float maps decode (bpftool cannot print FLOAT)", () => {
  using object = loadObject();
  using map = object.map("bt_floats");
  const { typed } = typedByBtf(map);
  typed.set(1, { f: 1.5, d: -Math.PI });
  assert.deepEqual(typed.get(1), { f: 1.5, d: -Math.PI });
  const raw = map.lookup(Uint8Array.of(1, 0, 0, 0))!;
  const view = new DataView(raw.buffer);
  assert.equal(view.getFloat32(0, true), 1.5);
  assert.equal(view.getFloat64(8, true), -Math.PI);
  // The quirk: bpftool stops at the first FLOAT with "(unsupported-kind", not JSON.
  const dump = bpftoolDump(map);
  assert.equal(dump.json, undefined);
  assert.match(dump.text, /"f":\(unsupported-kind/);
});

bpfTest("btf kernel: ENUM64 and signed enums through BTF built in TypeScript", () => {
  const b = new BtfBuilder();
  const { u8, char, u32, s64, u64 } = addInts(b, "u8", "char", "u32", "s64", "u64");
  const wide = b.add({
    kind: "enum64",
    name: "ts_wide",
    values: [
      { name: "TS_LOW", value: 1n },
      { name: "TS_HIGH", value: 0x1_0000_0001n },
      { name: "TS_TOP", value: 0xffff_ffff_ffff_fffen },
    ],
  });
  const swide = b.add({
    kind: "enum64",
    name: "ts_swide",
    signed: true,
    values: [{ name: "TS_MIN", value: -5_000_000_000n }, { name: "TS_ONE", value: 1n }],
  });
  const s32e = b.add({
    kind: "enum",
    name: "ts_signed",
    signed: true,
    values: [{ name: "TS_NEG", value: -3 }, { name: "TS_POS", value: 3 }],
  });
  const u8e = b.add({
    kind: "enum",
    name: "ts_byte",
    size: 1,
    values: [{ name: "TS_ONE_B", value: 1 }, { name: "TS_BIG_B", value: 200 }],
  });
  const name = b.add({ kind: "array", element: char, index: u32, nelems: 6 });
  const value = b.add({
    kind: "struct",
    name: "ts_value",
    size: 48,
    members: [
      { name: "a", type: wide, bitOffset: 0 },
      { name: "b", type: swide, bitOffset: 64 },
      { name: "c", type: s32e, bitOffset: 128 },
      { name: "d", type: u8e, bitOffset: 160 },
      { name: "name", type: name, bitOffset: 168 },
      { name: "big", type: u64, bitOffset: 256, bitfieldSize: 60 },
      { name: "neg", type: s64, bitOffset: 316, bitfieldSize: 33 },
      { name: "e", type: s32e, bitOffset: 349, bitfieldSize: 3 },
      { name: "tail", type: u8, bitOffset: 376 },
    ],
  });
  using loaded = loadBtf(b.build());
  assert.ok(loaded.id > 0);
  using map = createMapWithBtf({
    type: "hash",
    keySize: 8,
    valueSize: 48,
    maxEntries: 64,
    name: "btf_ts_enum64",
    btf: loaded,
    keyTypeId: swide,
    valueTypeId: value,
  });
  const { btf, typed } = typedByBtf(map);
  assert.equal(btf.btfId, loaded.id);
  assert.equal(typeName(btf.keyType), "enum ts_swide");
  const nameType = btf.btf.typeById(name);
  const entries: [BtfValue, Record<string, BtfValue>][] = [
    ["TS_MIN", {
      a: "TS_HIGH",
      b: "TS_MIN",
      c: "TS_NEG",
      d: "TS_BIG_B",
      name: stringToChars("hello", nameType),
      big: 2n ** 60n - 1n,
      neg: -(2n ** 32n),
      e: -1,
      tail: 255,
    }],
    ["TS_ONE", {
      a: 0xffff_ffff_ffff_ffffn,
      b: -7n,
      c: 1000,
      d: 77,
      name: [1, 2, 3, -1, -2, -3],
      big: 1n,
      neg: 2n ** 32n - 1n,
      e: "TS_POS",
      tail: 0,
    }],
    [-1n, {
      a: "TS_TOP",
      b: "TS_ONE",
      c: "TS_POS",
      d: "TS_ONE_B",
      name: stringToChars("", nameType),
      big: 0n,
      neg: 0n,
      e: 0,
      tail: 1,
    }],
  ];
  for (const [k, v] of entries) typed.set(k, v);
  for (const [k, v] of entries) assert.deepEqual(typed.get(k), v, String(k));
  assert.equal(compareWithBpftool(map, SEED), 3);
  const random = prng(SEED ^ 0x64);
  fillRandom(map, 40, random);
  assert.equal(compareWithBpftool(map, SEED), 43);
});

bpfTest("btf kernel: BTF by id: the kernel's own, and errors", () => {
  const list = new Deno.Command("bpftool", { args: ["-j", "btf", "list"], stdout: "piped" })
    .outputSync();
  const vmlinux = (JSON.parse(new TextDecoder().decode(list.stdout)) as {
    id: number;
    name?: string;
  }[]).find((b) => b.name === "vmlinux");
  assert.ok(vmlinux, "bpftool btf list shows no vmlinux");
  const { info, bytes } = readBtfById(vmlinux.id);
  assert.deepEqual(info, {
    id: vmlinux.id,
    size: bytes.length,
    name: "vmlinux",
    kernelBtf: true,
  });
  assert.deepEqual(bytes, Deno.readFileSync(VMLINUX_BTF_PATH));
  assert.equal(loadBtfById(vmlinux.id).typeCount, kernelBtf().typeCount);
  assert.throws(() => readBtfById(0x7fff_fff0), (e: unknown) => {
    assert.ok(e instanceof BpfError);
    assert.equal(e.code, "ENOENT");
    assert.match(e.message, /BPF_BTF_GET_FD_BY_ID on BTF id 2147483632 failed: ENOENT/);
    return true;
  });
  // A map created without BTF has none.
  using plain = BpfMap.create({ type: "hash", keySize: 4, valueSize: 4, maxEntries: 1 });
  assert.equal(loadMapBtf(plain), null);
  // The kernel's refusal of bad BTF comes with its log.
  const b = new BtfBuilder();
  const int = b.add({ kind: "int", name: "int", size: 4 });
  b.add({
    kind: "struct",
    name: "s",
    size: 4,
    members: [{ name: "bad name", type: int, bitOffset: 0 }],
  });
  assert.throws(() => loadBtf(b.build()), (e: unknown) => {
    assert.ok(e instanceof BpfError);
    assert.match(e.message, /BPF_BTF_LOAD .* failed: EINVAL.*the kernel says: .*Invalid name/);
    return true;
  });
});
