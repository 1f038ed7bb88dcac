/**
 * `scripts/dump.ts --name NAME` against `bpftool map dump name NAME` (bpftool 7.1, root) when
 * several maps share the name: plain text, `--json` and `--pretty` must be bpftool's bytes,
 * a header per map (`ffi/format/bpftool_header.ts`), maps in id order. The maps get a name of
 * their own (the pid in it) and a map with a longer name that bpftool must not pick sits
 * between them. One map of the name still prints as a single-map dump.
 *
 * The cases: maps without BTF (one of them empty, one per-CPU, an array), maps with BTF (plain
 * text is then bpftool's BTF writer, JSON with headers), and both mixes: a map without BTF
 * first keeps plain text in hex for all; a map without BTF *after* one with BTF is dumped
 * through that map's types on kernels that copy `bpf_map_info` in (bpftool never clears it),
 * so its key and value sizes are kept equal to the BTF map's here.
 *
 * @module
 */

import assert from "node:assert/strict";
import { BpfMap } from "../ffi/map/map.ts";
import { BtfBuilder } from "../ffi/btf/builder.ts";
import { createMapWithBtf, loadBtf, type LoadedBtf } from "../ffi/btf/kernel.ts";
import { bpfTest, runScript } from "./_helpers.ts";

type Format = "plain" | "json" | "pretty";
const FORMATS: readonly Format[] = ["plain", "json", "pretty"];
const BPFTOOL_FLAG = { plain: [], json: ["-j"], pretty: ["-p"] } as const;

/** A map name of this process: `dn<pid>_<tag>`, at most 15 characters. */
function uniqueName(tag: string): string {
  const name = `dn${Deno.pid}_${tag}`;
  assert.ok(name.length <= 13, name); // room for the decoy's "_x"
  return name;
}

/** `bpftool [flag] map dump name NAME`, stdout as text. */
function bpftoolByName(format: Format, name: string): string {
  const out = new Deno.Command("bpftool", {
    args: [...BPFTOOL_FLAG[format], "map", "dump", "name", name],
    stdout: "piped",
    stderr: "piped",
  }).outputSync();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout);
}

/**
 * Asserts `dump.ts --name NAME` prints what bpftool prints in each format, after checking that
 * bpftool's JSON lists `ids` (or, for one map, is a bare array of entries).
 */
async function assertLikeBpftool(name: string, ids: number[]): Promise<void> {
  const parsed = JSON.parse(bpftoolByName("json", name));
  if (ids.length > 1) {
    assert.deepEqual(parsed.map((m: { id: number }) => m.id), ids, "bpftool's maps, by id");
  } else {
    assert.ok(Array.isArray(parsed) && (parsed.length === 0 || !("id" in parsed[0])));
  }
  for (const format of FORMATS) {
    const expected = bpftoolByName(format, name);
    const run = await runScript(
      "dump.ts",
      "--name",
      name,
      ...(format === "plain" ? [] : [`--${format}`]),
    );
    assert.equal(run.stderr, "", `${name} ${format}`);
    assert.equal(run.code, 0, `${name} ${format}`);
    assert.equal(run.stdout, expected, `${name} ${format}`);
  }
}

/** Writes `count` entries: u32 keys `1..count` (zero-padded), values of counting bytes. */
function fill(map: BpfMap, count: number, first = 1): void {
  for (let i = 0; i < count; i++) {
    const key = new Uint8Array(map.keySize);
    new DataView(key.buffer).setUint32(0, first + i, true);
    const value = new Uint8Array(map.valueBytes);
    for (let j = 0; j < value.length; j++) value[j] = (i * 37 + j * 11 + first) & 0xff;
    map.update(key, value);
  }
}

/** Maps of one name, the decoy (`NAME_x`) made after the first, all closed at the end. */
class MapSet {
  readonly maps: BpfMap[] = [];
  readonly #decoys: BpfMap[] = [];
  constructor(readonly name: string) {}

  add(map: BpfMap, entries: number, first?: number): this {
    fill(map, entries, first);
    this.maps.push(map);
    if (this.#decoys.length === 0) {
      const decoy = BpfMap.create({
        type: "hash",
        keySize: 4,
        valueSize: 4,
        maxEntries: 4,
        name: `${this.name}_x`,
      });
      fill(decoy, 1);
      this.#decoys.push(decoy);
    }
    return this;
  }

  get ids(): number[] {
    return this.maps.map((m) => m.info.id);
  }

  [Symbol.dispose](): void {
    for (const map of [...this.maps, ...this.#decoys]) map.close();
  }
}

/** BTF for the maps below: `u32`, `u64`, `struct pair { u32 a; u32 b; }`, `struct flow`. */
function testBtf(): { btf: LoadedBtf; u32: number; u64: number; pair: number; flow: number } {
  const b = new BtfBuilder();
  const u16 = b.add({ kind: "int", name: "u16", size: 2 });
  const u32 = b.add({ kind: "int", name: "u32", size: 4 });
  const u64 = b.add({ kind: "int", name: "u64", size: 8 });
  const s32 = b.add({ kind: "int", name: "s32", size: 4, encoding: "signed" });
  const pair = b.add({
    kind: "struct",
    name: "pair",
    size: 8,
    members: [{ name: "a", type: u32, bitOffset: 0 }, { name: "b", type: s32, bitOffset: 32 }],
  });
  const flow = b.add({
    kind: "struct",
    name: "flow",
    size: 8,
    members: [
      { name: "port", type: u16, bitOffset: 0 },
      { name: "proto", type: u16, bitOffset: 16 },
      { name: "addr", type: u32, bitOffset: 32 },
    ],
  });
  return { btf: loadBtf(b.build()), u32, u64, pair, flow };
}

/** A 4-entry map named `name` with BTF key and value types of `t` (default u32 -> pair). */
function btfMap(
  name: string,
  t: ReturnType<typeof testBtf>,
  { type = "hash", key = t.u32, value = t.pair, valueSize = 8 }: {
    type?: "hash" | "percpu_hash";
    key?: number;
    value?: number;
    valueSize?: number;
  } = {},
): BpfMap {
  return createMapWithBtf({
    type,
    keySize: 4,
    valueSize,
    maxEntries: 4,
    name,
    btf: t.btf,
    keyTypeId: key,
    valueTypeId: value,
  });
}

function plainMap(
  name: string,
  type: "hash" | "array" | "percpu_hash",
  key: number,
  value: number,
) {
  return BpfMap.create({ type, keySize: key, valueSize: value, maxEntries: 4, name });
}

bpfTest(
  "dump --name: several maps without BTF, one empty, print as bpftool prints them",
  async () => {
    const name = uniqueName("n");
    using set = new MapSet(name)
      .add(plainMap(name, "hash", 4, 4), 2)
      .add(plainMap(name, "hash", 4, 8), 0)
      .add(plainMap(name, "percpu_hash", 4, 4), 2)
      .add(plainMap(name, "array", 4, 20), 1, 0);
    await assertLikeBpftool(name, set.ids);
  },
);

bpfTest("dump --name: several maps with BTF print as bpftool prints them", async () => {
  const name = uniqueName("b");
  const t = testBtf();
  using _btf = t.btf;
  using set = new MapSet(name)
    .add(btfMap(name, t), 2)
    .add(btfMap(name, t, { value: t.u64 }), 0)
    .add(btfMap(name, t, { type: "percpu_hash", value: t.u32, valueSize: 4 }), 1)
    .add(btfMap(name, t, { value: t.flow }), 1);
  await assertLikeBpftool(name, set.ids);
});

bpfTest("dump --name: a map without BTF, then maps with BTF (plain text stays hex)", async () => {
  // The first map has no BTF: plain text is hex for all (the BTF map too). In JSON the last
  // map, without BTF, still gets the BTF map's "formatted" on kernels that copy the info in.
  const name = uniqueName("m");
  const t = testBtf();
  using _btf = t.btf;
  using set = new MapSet(name)
    .add(plainMap(name, "percpu_hash", 4, 8), 1)
    .add(btfMap(name, t), 2)
    .add(plainMap(name, "hash", 4, 8), 1);
  await assertLikeBpftool(name, set.ids);
});

bpfTest(
  "dump --name: a map without BTF after one with BTF, as bpftool's reused info has it",
  async () => {
    const name = uniqueName("s");
    const t = testBtf();
    using _btf = t.btf;
    // Same key and value sizes as the BTF map: bpftool may read this map through its types.
    using set = new MapSet(name)
      .add(btfMap(name, t), 1)
      .add(plainMap(name, "hash", 4, 8), 2, 5);
    await assertLikeBpftool(name, set.ids);
  },
);

bpfTest("dump --name: one map of the name prints as a single-map dump", async () => {
  const t = testBtf();
  using _btf = t.btf;
  const plainName = uniqueName("1");
  using plain = new MapSet(plainName).add(plainMap(plainName, "hash", 4, 4), 2);
  await assertLikeBpftool(plainName, plain.ids);
  const btfName = uniqueName("2");
  using typed = new MapSet(btfName).add(btfMap(btfName, t), 1);
  await assertLikeBpftool(btfName, typed.ids);
});
