/**
 * `scripts/maps.ts` against `bpftool map show` (bpftool 7.1), byte for byte: plain, `-j` and
 * `-p`, by id, pin and name, the full listing (the blocks of the maps made here: other
 * processes' maps come and go) and `-f` pins; then the formatting quirks without the kernel.
 *
 * @module
 */

import assert from "node:assert/strict";
import { BpfMap, BtfBuilder, createMapWithBtf, loadBtf, MapFlag } from "../mod.ts";
import { JsonWriter } from "../ffi/format/json_writer.ts";
import {
  bpfMounts,
  fdinfoValue,
  formatMapPlain,
  hashmapPinOrder,
  type MapShowRecord,
  writeMapJson,
} from "../ffi/format/map_show.ts";
import type { MapInfo } from "../ffi/sys/layout.ts";
import { BPF_UNAVAILABLE, runScript } from "./_helpers.ts";

const BPFTOOL = "/usr/sbin/bpftool";

function hasBpftool(): boolean {
  try {
    return Deno.statSync(BPFTOOL).isFile;
  } catch {
    return false;
  }
}

const LIVE_IGNORED = BPF_UNAVAILABLE !== undefined || !hasBpftool();

async function bpftool(...args: string[]): Promise<{ code: number; stdout: string }> {
  const { code, stdout } = await new Deno.Command(BPFTOOL, {
    args,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code, stdout: new TextDecoder().decode(stdout) };
}

/** The output modes: our flag, bpftool's. */
const MODES = [
  { ours: [], theirs: [] },
  { ours: ["--json"], theirs: ["-j"] },
  { ours: ["--pretty"], theirs: ["-p"] },
] as const;

/** The block of map `id` in a full listing, in the format of `mode` (plain, -j or -p). */
function blockOf(listing: string, id: number, mode: number): string | undefined {
  const pattern = mode === 0
    ? new RegExp(`^${id}: [^\\n]*\\n(\\t[^\\n]*\\n)*`, "m")
    : mode === 1
    ? new RegExp(`\\{"id":${id},[^{}]*\\}`)
    : new RegExp(`\\{\\n        "id": ${id},[^{}]*\\n    \\}`);
  return listing.match(pattern)?.[0];
}

/** Makes the maps the live test compares; closes them and removes the pins at the end. */
function makeMaps(dir: string) {
  const maps: BpfMap[] = [];
  const add = (map: BpfMap) => (maps.push(map), map);
  add(BpfMap.create({ type: "hash", keySize: 4, valueSize: 4, maxEntries: 16, name: "mt_hash" }));
  add(BpfMap.create({ type: "array", keySize: 4, valueSize: 8, maxEntries: 4, name: "mt_array" }))
    .freeze();
  add(BpfMap.create({
    type: "percpu_hash",
    keySize: 8,
    valueSize: 16,
    maxEntries: 64,
    flags: MapFlag.NO_PREALLOC,
    name: "mt_pcpu",
  }));
  add(BpfMap.create({ type: "lru_hash", keySize: 4, valueSize: 4, maxEntries: 32 }));
  add(BpfMap.create({
    type: "lru_percpu_hash",
    keySize: 4,
    valueSize: 12,
    maxEntries: 32,
    name: "mt_same",
  }));
  add(
    BpfMap.create({
      type: "percpu_array",
      keySize: 4,
      valueSize: 4,
      maxEntries: 8,
      name: "mt_same",
    }),
  );
  const b = new BtfBuilder();
  const int = b.add({ kind: "int", name: "int", size: 4 });
  const btf = loadBtf(b.build());
  const withBtf = add(createMapWithBtf({
    type: "hash",
    keySize: 4,
    valueSize: 4,
    maxEntries: 8,
    name: "mt_btf",
    btf,
    keyTypeId: int,
    valueTypeId: int,
  }));
  withBtf.freeze();
  // bpftool never clears its bpf_map_info between maps, and Linux 6.18 copies it in before
  // filling it: a map without BTF listed after one with BTF shows the other's btf_id.
  add(createMapWithBtf({
    type: "hash",
    keySize: 4,
    valueSize: 4,
    maxEntries: 8,
    name: "mt_twin",
    btf,
    keyTypeId: int,
    valueTypeId: int,
  }));
  add(BpfMap.create({ type: "hash", keySize: 4, valueSize: 4, maxEntries: 8, name: "mt_twin" }));
  btf.close();
  Deno.mkdirSync(`${dir}/sub`, { recursive: true });
  // Four pins of one map: bpftool's hashmap grows once, which reverses their order.
  const pinned = maps[0];
  for (const path of [`${dir}/p1`, `${dir}/sub/p2`, `${dir}/p3`, `${dir}/p4`]) pinned.pin(path);
  maps[2].pin(`${dir}/pcpu`);
  return {
    maps,
    [Symbol.dispose]() {
      for (const map of maps) map.close();
      Deno.removeSync(dir, { recursive: true });
    },
  };
}

Deno.test({
  name: "maps: byte-identical to bpftool map show (id, pin, name, listing, -f)",
  ignore: LIVE_IGNORED,
  async fn() {
    using made = makeMaps(`/sys/fs/bpf/maps_test_${Deno.pid}`);
    const ids = made.maps.map((m) => m.info.id);
    const dir = `/sys/fs/bpf/maps_test_${Deno.pid}`;
    for (const [m, mode] of MODES.entries()) {
      const what = mode.theirs.join(" ") || "plain";
      for (const id of ids) {
        const ours = await runScript("maps.ts", ...mode.ours, "--id", String(id));
        const theirs = await bpftool(...mode.theirs, "map", "show", "id", String(id));
        assert.equal(ours.code, 0, ours.stderr);
        assert.equal(ours.stdout, theirs.stdout, `id ${id} ${what}`);
      }
      for (
        const [ours, theirs] of [
          [["--pin", `${dir}/pcpu`], ["pinned", `${dir}/pcpu`]],
          [["--name", "mt_same"], ["name", "mt_same"]], // two maps: a JSON array
          [["--name", "mt_btf"], ["name", "mt_btf"]], // one map: a JSON object
          [["--name", "mt_twin"], ["name", "mt_twin"]], // the second shows the first's btf_id
        ]
      ) {
        const run = await runScript("maps.ts", ...mode.ours, ...ours);
        assert.equal(run.code, 0, run.stderr);
        const expected = await bpftool(...mode.theirs, "map", "show", ...theirs);
        assert.equal(run.stdout, expected.stdout, `${theirs.join(" ")} ${what}`);
      }
      for (const pins of [false, true]) {
        const ours = await runScript("maps.ts", ...mode.ours, ...(pins ? ["--bpffs"] : []));
        const theirs = await bpftool(...mode.theirs, ...(pins ? ["-f"] : []), "map", "show");
        assert.equal(ours.code, 0, ours.stderr);
        for (const id of ids) {
          const block = blockOf(theirs.stdout, id, m);
          assert.ok(block, `map ${id} missing from bpftool ${what}`);
          assert.equal(blockOf(ours.stdout, id, m), block, `listing ${what} ${pins ? "-f" : ""}`);
        }
        if (pins && m === 0) {
          const block = blockOf(ours.stdout, ids[0], m) ?? "";
          assert.equal(block.match(/\tpinned /g)?.length, 4, block);
        }
      }
    }
    // The quirk the shared info buffer reproduces (Linux 6.18; older kernels clear the struct).
    const twins = await runScript("maps.ts", "--name", "mt_twin");
    const carried = twins.stdout.match(/btf_id/g)?.length;
    assert.ok(carried === 2 || carried === 1, twins.stdout);
  },
});

Deno.test({
  name: "maps: selector errors are one line, exit 2 for usage and 1 for what does not exist",
  ignore: LIVE_IGNORED,
  async fn() {
    const unknown = await runScript("maps.ts", "--json", "--id", "4294967295");
    assert.equal(unknown.code, 1);
    assert.equal(unknown.stdout, "");
    assert.match(
      unknown.stderr,
      /^error: BPF_MAP_GET_FD_BY_ID on map id 4294967295 failed: ENOENT/,
    );
    assert.equal(unknown.stderr.trimEnd().split("\n").length, 1);
    const pin = await runScript("maps.ts", "--pin", "/sys/fs/bpf/maps_test_nothing_here");
    assert.equal(pin.code, 1);
    assert.equal(pin.stderr.trimEnd().split("\n").length, 1);
    const name = await runScript("maps.ts", "--name", "mt_no_such_map");
    assert.equal(name.code, 1);
    assert.equal(name.stderr, 'error: No map named "mt_no_such_map"\n');
    for (
      const args of [
        ["--id", "abc"],
        ["--id", "1", "--name", "x"],
        ["--name", "sixteen_chars_xx"],
        ["--json", "--pretty"],
      ]
    ) {
      const run = await runScript("maps.ts", ...args);
      assert.equal(run.code, 2, args.join(" "));
      assert.equal(run.stdout, "");
      const [error, usage, more] = run.stderr.split("\n");
      assert.match(error, /^error: /);
      assert.match(usage, /^usage: maps\.ts/);
      assert.equal(more, "");
    }
  },
});

const INFO: MapInfo = {
  id: 7,
  type: 1,
  keySize: 4,
  valueSize: 4,
  maxEntries: 16,
  flags: 0,
  name: "foo",
  btfId: 0,
  btfKeyTypeId: 0,
  btfValueTypeId: 0,
  btfVmlinuxValueTypeId: 0,
};

function both(record: MapShowRecord, pretty = false): [string, string] {
  const w = new JsonWriter({ pretty });
  writeMapJson(w, record);
  return [formatMapPlain(record), w.end()];
}

Deno.test("maps: fdinfo values are the first line containing the key, as get_fdinfo reads", () => {
  const fdinfo = "map_type:\t1\nmemlock:\t2320\nmap_id:\t7\nfrozen:\t1\n";
  assert.equal(fdinfoValue(fdinfo, "memlock"), "2320");
  assert.equal(fdinfoValue(fdinfo, "frozen"), "1");
  assert.equal(fdinfoValue(fdinfo, "map"), "1"); // a substring: map_type comes first
  assert.equal(fdinfoValue("memlock:\t\n", "memlock"), ""); // value[1] is the newline
  assert.equal(fdinfoValue("memlock:\t", "memlock"), undefined);
  assert.equal(fdinfoValue("memlock:\t12", "memlock"), "1"); // no newline: the last byte goes
  assert.equal(fdinfoValue(fdinfo, "owner_jited"), undefined);
});

Deno.test("maps: plain and JSON lines of bpftool 7.1, unknown types, btf_id, frozen, owner", () => {
  assert.deepEqual(both({ info: INFO, fdinfo: "memlock:\t2320\nfrozen:\t0\n" }), [
    "7: hash  name foo  flags 0x0\n\tkey 4B  value 4B  max_entries 16  memlock 2320B\n",
    '{"id":7,"type":"hash","name":"foo","flags":0,"bytes_key":4,"bytes_value":4,"max_entries":16,"bytes_memlock":2320,"frozen":0}\n',
  ]);
  const arena = { ...INFO, type: 33, name: "", flags: 0x400, btfId: 12 };
  assert.deepEqual(both({ info: arena, fdinfo: "frozen:\t1\n", pinned: [] }), [
    "7: type 33  flags 0x400\n\tkey 4B  value 4B  max_entries 16\n\tbtf_id 12  frozen\n",
    '{"id":7,"type":33,"flags":1024,"bytes_key":4,"bytes_value":4,"max_entries":16,"frozen":1,"btf_id":12,"pinned":[]}\n',
  ]);
  const progArray = { ...INFO, type: 3, name: "jumps" };
  const owned = "memlock:\t4\nowner_prog_type:\t6\nowner_jited:\t1\n";
  assert.deepEqual(both({ info: progArray, fdinfo: owned, pinned: ["/sys/fs/bpf/j"] }), [
    "7: prog_array  name jumps  flags 0x0\n\tkey 4B  value 4B  max_entries 16  memlock 4B\n\towner_prog_type xdp  owner jited\n\tpinned /sys/fs/bpf/j\n",
    '{"id":7,"type":"prog_array","name":"jumps","flags":0,"bytes_key":4,"bytes_value":4,"max_entries":16,"bytes_memlock":4,"owner_prog_type":"xdp","owner_jited":true,"frozen":0,"pinned":["/sys/fs/bpf/j"]}\n',
  ]);
  assert.equal(
    both({ info: INFO, fdinfo: "", pinned: ["/a", "/b"] }, true)[1],
    '{\n    "id": 7,\n    "type": "hash",\n    "name": "foo",\n    "flags": 0,\n    "bytes_key": 4,\n    "bytes_value": 4,\n    "max_entries": 16,\n    "frozen": 0,\n    "pinned": ["/a","/b"\n    ]\n}\n',
  );
});

Deno.test("maps: the JSON writer keeps bpftool's escapes, backslash bug included", () => {
  const w = new JsonWriter({ pretty: false });
  w.startArray();
  w.string("a\\b'c\"d\te\u0001é");
  w.endArray();
  assert.equal(w.end(), '["a\\nb\\\'c\\"d\\te\u0001é"]\n');
  const empty = new JsonWriter({ pretty: true });
  empty.startArray();
  empty.endArray();
  assert.equal(empty.end(), "[]\n");
});

Deno.test("maps: pins come in libbpf hashmap order (head insertion, reversed on growth)", () => {
  assert.deepEqual(hashmapPinOrder([[1, "/a"], [1, "/b"]]).get(1), ["/b", "/a"]);
  // Capacity 4 until the fourth entry, then 8: the growth reverses what was there.
  const four = hashmapPinOrder([[1, "/a"], [2, "/x"], [1, "/b"], [1, "/c"]]);
  assert.deepEqual(four.get(1), ["/c", "/a", "/b"]);
  assert.deepEqual(four.get(2), ["/x"]);
  assert.equal(hashmapPinOrder([]).size, 0);
});

Deno.test("maps: bpf mounts from /proc/mounts, octal escapes undone", () => {
  const mounts =
    "proc /proc proc rw 0 0\nbpf /sys/fs/bpf bpf rw 0 0\nnone /my\\040pins bpf rw 0 0\n";
  assert.deepEqual(bpfMounts(mounts), ["/sys/fs/bpf", "/my pins"]);
});
