/**
 * `deno task map` against bpftool 7.1 itself: every verb, run by both on the same pinned
 * maps (or on two identical sets of them, for verbs that write), must print the same bytes
 * on stdout and stderr and exit with the same status: plain, `-j` and `-p`, the user's
 * mistakes included (`docs/research/bpftool-map-7.1.md` lists what bpftool prints). Maps
 * without BTF of every layout bpftool prints, queues and stacks, maps of maps, and the BTF
 * maps of `bpf/btf_types.bpf.c`; then what bpftool cannot do: keys and values as JSON,
 * encoded through BTF, refused before any write with the member's path.
 *
 * @module
 */

import assert from "node:assert/strict";
import { BpfMap, type MapTypeName } from "../mod.ts";
import { bpfTest, scriptCommand } from "./_helpers.ts";
import { asm, loadProgram, programIdentity } from "../ffi/sys/programs.ts";
import { backend } from "../ffi/sys/backends.ts";
import { closeFd } from "../ffi/sys/libc.ts";
import { BPFTOOL_MAP_TYPE_NAMES } from "../ffi/format/map_show.ts";
import { fillRandom, loadObject, objectTest, prng, SEED } from "./_btf_helpers.ts";

const decoder = new TextDecoder();

/** One run's bytes and status. */
interface Outcome {
  status: number;
  stdout: string;
  stderr: string;
}

async function outcome(command: Deno.Command): Promise<Outcome> {
  const { code, stdout, stderr } = await command.output();
  return { status: code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

/**
 * bpftool's outcome for `map ARGS`. Its usage texts name the program as it was started
 * (`argv[0]`): as typed in a shell, `bpftool`.
 */
async function bpftool(args: string[]): Promise<Outcome> {
  const run = await outcome(
    new Deno.Command("bpftool", { args: ["map", ...args], stdout: "piped", stderr: "piped" }),
  );
  return { ...run, stderr: run.stderr.replace(/\S*\/bpftool /g, "bpftool ") };
}

function ours(args: string[]): Promise<Outcome> {
  return outcome(scriptCommand("map.ts", args));
}

/** Where one side's maps are pinned, and the text that names them in its output. */
interface Side {
  dir: string;
}

/**
 * Runs `args` (with `$D` standing for a side's folder) through bpftool on `theirs` and
 * through `deno task map` on `mine` (the same folder for read-only cases), and asserts the
 * same bytes and status, `mine`'s folder read as `theirs`'.
 */
async function same(args: string[], theirs: Side, mine: Side = theirs): Promise<Outcome> {
  const expected = await bpftool(args.map((a) => a.replaceAll("$D", theirs.dir)));
  const actual = await ours(args.map((a) => a.replaceAll("$D", mine.dir)));
  const back = (text: string) => text.replaceAll(mine.dir, theirs.dir);
  const shown = `map ${args.join(" ")}`;
  assert.deepEqual(
    { status: actual.status, stdout: back(actual.stdout), stderr: back(actual.stderr) },
    expected,
    shown,
  );
  return expected;
}

/** A folder on bpffs for one set of maps. */
function pinFolder(prefix: string): string {
  return Deno.makeTempDirSync({ dir: "/sys/fs/bpf", prefix });
}

/** Pins `map` at `dir/name` and closes it. */
function pinned(dir: string, name: string, map: BpfMap): void {
  map.pin(`${dir}/${name}`);
  map.close();
}

function bytes(...values: number[]): Uint8Array {
  return Uint8Array.from(values);
}

/**
 * The maps the cases use, pinned in `dir` (names unique to `tag`, for the `name` selector):
 * those of the research notes' table.
 */
function makeFixtures(dir: string, tag: string): void {
  const make = (
    name: string,
    type: MapTypeName | 3 | 22 | 23,
    keySize: number,
    valueSize: number,
    maxEntries: number,
    fill: [Uint8Array, Uint8Array][] = [],
  ) => {
    if (typeof type === "number") {
      // Queues, stacks and program arrays: made by bpftool (BpfMap creates the types it reads).
      const path = `${dir}/${name}`;
      const args = ["map", "create", path, "type", BPFTOOL_MAP_TYPE_NAMES[type]];
      args.push("key", String(keySize), "value", String(valueSize));
      args.push("entries", String(maxEntries));
      const made = new Deno.Command("bpftool", { args: [...args, "name", `${tag}${name}`] })
        .outputSync();
      assert.equal(made.code, 0, decoder.decode(made.stderr));
      return;
    }
    const map = BpfMap.create({ type, keySize, valueSize, maxEntries, name: `${tag}${name}` });
    for (const [key, value] of fill) {
      map.update(key, value.length === map.valueBytes ? value : perCpu(map, value));
    }
    pinned(dir, name, map);
  };
  make("h", "hash", 4, 8, 4, [
    [bytes(1, 0, 0, 0), bytes(1, 2, 3, 4, 5, 6, 7, 8)],
    [bytes(2, 0, 0, 0), bytes(0xff, 0, 0, 0, 0, 0, 0, 0x41)],
  ]);
  make("a", "array", 4, 4, 3, [[bytes(1, 0, 0, 0), bytes(7, 0, 0, 0)]]);
  make("ph", "percpu_hash", 4, 4, 4, [[bytes(1, 0, 0, 0), bytes(0xaa, 0xbb, 0xcc, 0xdd)]]);
  make("pa", "percpu_array", 4, 4, 2);
  make("pbig", "percpu_hash", 4, 20, 2, [[bytes(1, 0, 0, 0), range(1, 20)]]);
  make("lru", "lru_hash", 4, 4, 16, [[bytes(1, 0, 0, 0), bytes(1, 0, 0, 0)]]);
  make("q", 22, 0, 4, 3);
  make("parr", 3, 4, 4, 2);
  make("s", 23, 0, 4, 3);
  make("empty", "hash", 4, 4, 2);
  make("f12", "hash", 12, 12, 2, [[range(1, 12), range(1, 12)]]);
  make("f1216", "hash", 12, 16, 2, [[range(1, 12), range(1, 16)]]);
  make("f820", "hash", 8, 20, 2, [[range(1, 8), range(1, 20)]]);
  make("f20", "hash", 20, 40, 2, [[range(1, 20), range(1, 40)]]);
  make("inner", "array", 4, 4, 2);
  make("h2", "hash", 4, 4, 2);
}

/** Bytes `from`, `from + 1`, … `to`. */
function range(from: number, to: number): Uint8Array {
  return Uint8Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/** A per-CPU value: `one` on every CPU. */
function perCpu(map: BpfMap, one: Uint8Array): Uint8Array {
  const all = new Uint8Array(map.valueBytes);
  const stride = (map.valueSize + 7) & ~7;
  for (let cpu = 0; cpu < map.cpus; cpu++) all.set(one, cpu * stride);
  return all;
}

/** A map of maps pinned at `dir/name`, whose inner template is `dir/inner` (made by bpftool). */
function makeMapOfMaps(dir: string, name: string, type: "array_of_maps" | "hash_of_maps") {
  const args = ["map", "create", `${dir}/${name}`, "type", type, "key", "4", "value", "4"];
  args.push("entries", "2", "name", `mc_${name}`, "inner_map", "pinned", `${dir}/inner`);
  const made = new Deno.Command("bpftool", { args }).outputSync();
  assert.equal(made.code, 0, decoder.decode(made.stderr));
}

/** Removes a pin folder and everything in it. */
function unpin(dir: string): void {
  Deno.removeSync(dir, { recursive: true });
}

// --- Read-only verbs, on one set of maps ------------------------------------------------

/** A case's words: a string of words split at spaces, or the words (empty or spaced ones). */
type Case = string | string[];

function wordsOf(c: Case): string[] {
  return typeof c === "string" ? c.split(" ") : c;
}

/** Cases that write nothing: run by both on the same maps. */
const READ_ONLY: Case[] = [
  // lookup: layouts, modes, not found, the DATA grammar
  "lookup pinned $D/h key 1 0 0 0",
  "-j lookup pinned $D/h key 1 0 0 0",
  "-p lookup pinned $D/h key 1 0 0 0",
  "lookup pinned $D/h key 9 0 0 0",
  "-j lookup pinned $D/h key 9 0 0 0",
  "lookup pinned $D/h key 1 0 0",
  "-p lookup pinned $D/h key 1 0 0",
  "lookup pinned $D/h key 1 0 0 0 0",
  "lookup pinned $D/h key",
  "lookup pinned $D/h key 257 0 0 0",
  "lookup pinned $D/h key zz 0 0 0",
  ["-j", "lookup", "pinned", "$D/h", "key", '"', "0", "0", "0"],
  "lookup pinned $D/h 1 0 0 0",
  "lookup pinned $D/h",
  "lookup pinned",
  "-j lookup pinned",
  "lookup",
  "lookup pinned $D/h key 1 0 0 0 extra",
  "lookup pinned $D/h key 1 0 0 0 value 1",
  "lookup pinned $D/h key 1 0 0 0 key 1 0 0 0",
  "lookup pinned $D/h key 1 0 0 0 any",
  "lookup pinned $D/h k 1 0 0 0",
  ["lookup", "pinned", "$D/h", "", "1", "0", "0", "0"],
  "lookup pinned $D/h key hex 01 00 00 00",
  "lookup pinned $D/h key 0x1 0 0 0",
  "lookup pinned $D/h key h 1 0 0 0",
  "lookup pinned $D/h key HEX 1 0 0 0",
  "lookup pinned $D/h key 010 0 0 0",
  "lookup pinned $D/h key 08 0 0 0",
  "lookup pinned $D/h key hex ff FF 0xAb 7",
  "lookup pinned $D/h key 0x 0 0 0",
  "lookup pinned $D/h key 0X1 0 0 0",
  ["lookup", "pinned", "$D/h", "key", " 1", "0", "0", "0"],
  ["lookup", "pinned", "$D/h", "key", "1 ", "0", "0", "0"],
  "lookup pinned $D/h key +1 0 0 0",
  "lookup pinned $D/h key 1.0 0 0 0",
  "lookup pinned $D/h key hex hex 1 0 0 0",
  "lookup pinned $D/h key 99999999999999999999999 0 0 0",
  "lookup pinned $D/h key -1 0 0 0",
  "-j lookup pinned $D/h key -1 0 0 0",
  "lookup pinned $D/h key -- -1 0 0 0",
  "-- lookup pinned $D/h key -1 -2 0 0",
  "lookup pinned $D/h key -- -0x2 0 0 0",
  "lookup pinned $D/h key -- -1 0 0 0 --",
  "lookup pinned $D/a key 1 0 0 0",
  "lookup pinned $D/a key 0 0 0 0",
  "lookup pinned $D/a key 3 0 0 0",
  "lookup pinned $D/lru key 1 0 0 0",
  "lookup pinned $D/ph key 1 0 0 0",
  "-j lookup pinned $D/ph key 1 0 0 0",
  "-p lookup pinned $D/ph key 1 0 0 0",
  "lookup pinned $D/ph key 2 0 0 0",
  "lookup pinned $D/pa key 1 0 0 0",
  "lookup pinned $D/pbig key 1 0 0 0",
  ["lookup", "pinned", "$D/f12", "key", ...[...range(1, 12)].map(String)],
  ["lookup", "pinned", "$D/f1216", "key", ...[...range(1, 12)].map(String)],
  ["lookup", "pinned", "$D/f820", "key", ...[...range(1, 8)].map(String)],
  ["lookup", "pinned", "$D/f20", "key", ...[...range(1, 20)].map(String)],
  ["-j", "lookup", "pinned", "$D/f20", "key", ...[...range(1, 20)].map(String)],
  ["lookup", "pinned", "$D/f20", "key", "9", ...[...range(2, 20)].map(String)],
  "peek pinned $D/q",
  "-j peek pinned $D/q",
  "peek pinned $D/q key",
  "peek pinned $D/q extra",
  "peek pinned $D/q value 1 0 0 0",
  "peek pinned $D/h",
  "peek pinned $D/h key 1 0 0 0",
  // getnext
  "getnext pinned $D/h key 9 0 0 0",
  "getnext pinned $D/empty",
  "-j getnext pinned $D/empty",
  "-p getnext pinned $D/empty key 1 0 0 0",
  "getnext pinned $D/a",
  "-j getnext pinned $D/a",
  "-p getnext pinned $D/a key 1 0 0 0",
  "getnext pinned $D/a key 2 0 0 0",
  "getnext pinned $D/a key 7 0 0 0",
  "getnext pinned $D/f20",
  "getnext pinned $D/h key 1 0",
  "getnext pinned $D/h value 1 0 0 0",
  "getnext pinned $D/q",
  "getnext pinned $D/pa",
  "getnext id",
  // dump and show
  "dump pinned $D/h",
  "-j dump pinned $D/ph",
  "-p dump pinned $D/f20",
  "dump pinned $D/pbig",
  "dump pinned $D/parr",
  "lookup pinned $D/parr key 0 0 0 0",
  "dump pinned",
  "show pinned $D/a",
  "-j show pinned $D/h",
  "list pinned $D/lru",
  "show id",
  // selectors
  "lookup i 4294967296 key 1 0 0 0",
  "lookup id abc key 1 0 0 0",
  ["-j", "lookup", "id", "", "key", "1", "0", "0", "0"],
  "lookup pinned $D/nonexist key 1 0 0 0",
  "-j lookup pinned $D/nonexist key 1 0 0 0",
  "lookup pinned /sys/fs/bpf key 1 0 0 0",
  "lookup p $D/h key 1 0 0 0",
  "lookup name mcno_such_map key 1 0 0 0",
  "-j lookup name mcno_such_map key 1 0 0 0",
  "lookup name 0123456789abcdef key 1 0 0 0",
  "lookup foo 1 key 1 0 0 0",
  "-j lookup tag 0123456789abcdef key 1 0 0 0",
  // verbs, help and options
  "help",
  "-j help",
  "help extra words",
  "foo",
  "-p foo",
  "LOOKUP pinned $D/h key 1 0 0 0",
  "lo pinned $D/h key 1 0 0 0",
  "g pinned $D/a",
  "e pinned $D/q",
  "f",
  "c",
  "p pinned $D/h",
  "update pinned",
  "-j pop pinned",
  "-h",
  "lookup --help",
  "-j lookup -h",
  "lookup pinned $D/h key 1 0 0 0 -j",
  "lookup -j pinned $D/h key -p 1 0 0 0",
  "lookup pinned $D/h key 1 0 0 0 --js",
  "-jp lookup pinned $D/h key 1 0 0 0",
  "lookup pinned $D/h key 1 0 0 0 -- -j",
  "lookup pinned $D/h key 1 0 0 0 -f -n -m -d -l",
  "lookup pinned $D/h key 1 0 0 0 -x",
  "-j lookup pinned $D/h key 1 0 0 0 -x",
  "lookup pinned $D/h key 1 0 0 0 -x -j",
  "-jx lookup pinned $D/h key 1 0 0 0",
  "lookup -xj pinned $D/h key 1 0 0 0",
  "--foo",
  "-j --foo",
  "--base-btf /nonexistent help",
  "-j --base-btf /nonexistent help",
  "pop pinned $D/a",
  "pop pinned $D/h key 1 0 0 0",
  "-j pop pinned $D/h",
  "freeze",
  "freeze pinned",
  "-j freeze pinned",
  "freeze pinned $D/h extra",
  "freeze pinned $D/nonexist",
  "pin pinned $D/h",
  "-j pin",
];

bpfTest("map: verbs that write nothing print what bpftool prints, byte for byte", async () => {
  const dir = pinFolder("mc_ro_");
  try {
    makeFixtures(dir, "mc");
    for (const args of READ_ONLY) {
      await same(wordsOf(args), { dir });
    }
  } finally {
    unpin(dir);
  }
});

// --- Verbs that write: two identical sets of maps, one per tool ------------------------

/** Sequences run in order on each side; after them, both sides' maps must hold the same. */
const WRITING: Record<string, Case[]> = {
  update: [
    "update pinned $D/h key 3 0 0 0 value 3 0 0 0 0 0 0 0",
    "-j update pinned $D/h key 3 0 0 0 value 3 0 0 0 0 0 0 0 exist",
    "update pinned $D/h key 4 0 0 0 value 4 0 0 0 0 0 0 0 exist",
    "-p update pinned $D/h key 3 0 0 0 value 3 0 0 0 0 0 0 0 noexist",
    "update pinned $D/h noexist key 4 0 0 0 value 4 0 0 0 0 0 0 0",
    "update pinned $D/h key 5 0 0 0 value 5 0 0 0 0 0 0 0",
    "update pinned $D/h key 3 0 0 0 e value 3 0 0 0 0 0 0 0",
    "update pinned $D/h value 9 0 0 0 0 0 0 0 key 3 0 0 0",
    "update pinned $D/h key 3 0 0 0 value 3 0 0 0 0 0 0 0 any exist",
    "update pinned $D/h key 3 0 0 0 value 3 0 0 0 0 0 0 0 whatever",
    "update pinned $D/h key 3 0 0 0 value 3 0 0 0",
    "update pinned $D/h key 3 0 0 0",
    "update pinned $D/h value 3 0 0 0 0 0 0 0",
    "update pinned $D/h key 3 0 0 0 value 3 0 0 0 0 0 0 0 value 1",
    "update pinned $D/h",
    "update pinned $D/h -- key -1 0 0 0 value -2 0 0 0 0 0 0 0",
    "update pinned $D/a key 2 0 0 0 value 2 0 0 0",
    "update pinned $D/a key 3 0 0 0 value 3 0 0 0",
    "update pinned $D/a key 2 0 0 0 value 2 0 0 0 noexist",
    "update pinned $D/ph key 2 0 0 0 value 1 2 3 4",
    "update pinned $D/ph key 2 0 0 0 value 1 2 3 4 5",
    "update pinned $D/pa key 1 0 0 0 value 9 9 9 9",
    "lookup pinned $D/pa key 1 0 0 0",
    "update pinned $D/lru key 2 0 0 0 value 2 0 0 0 noexist",
    "update pinned $D/aom key 1 0 0 0 value pinned $D/inner",
    "update pinned $D/aom key 1 0 0 0 value 1 0 0 0",
    "update pinned $D/aom key 1 0 0 0 value id",
    "update pinned $D/aom key 1 0 0 0 value pinned $D/h2",
    "update pinned $D/aom key 5 0 0 0 value pinned $D/inner",
    "update pinned $D/hom key 7 0 0 0 value pinned $D/inner noexist",
    "update pinned $D/hom key 7 0 0 0 value pinned $D/inner noexist",
  ],
  delete: [
    "delete pinned $D/h key 2 0 0 0",
    "delete pinned $D/h key 2 0 0 0",
    "-j delete pinned $D/h key 2 0 0 0",
    "-j delete pinned $D/h key 1 0 0 0",
    "delete pinned $D/a key 0 0 0 0",
    "-p delete pinned $D/pa key 0 0 0 0",
    "delete pinned $D/h",
    "delete pinned $D/h key 1 0",
    "delete pinned $D/h key 3 0 0 0 value 1",
    "delete pinned $D/h key 3 0 0 0 any",
    "delete pinned $D/q",
    "delete pinned $D/q key",
  ],
  queue: [
    "pop pinned $D/q",
    "-j dequeue pinned $D/q",
    "push pinned $D/q value 1 0 0 0",
    "-j enqueue pinned $D/q value 2 0 0 0",
    "update pinned $D/q value 3 0 0 0",
    "push pinned $D/q value 4 0 0 0",
    "push pinned $D/q value 4 0 0 0 noexist",
    "push pinned $D/q value 4 0 0 0 exist",
    "peek pinned $D/q",
    "-p peek pinned $D/q",
    "pop pinned $D/q",
    "-j dequeue pinned $D/q",
    "-p pop pinned $D/q extra words",
    "push pinned $D/q",
    "push pinned $D/q value 1 0 0",
    "push pinned $D/q key 1 value 1 0 0 0",
    "push pinned $D/s value 1 0 0 0",
    "push pinned $D/s value 2 0 0 0",
    "peek pinned $D/s",
    "pop pinned $D/s",
    "dequeue pinned $D/s",
    "pop pinned $D/s",
    "push pinned $D/h value 1 0 0 0 0 0 0 0",
    "enqueue pinned $D/h key 3 0 0 0 value 9 0 0 0 0 0 0 0",
  ],
  freeze: [
    "freeze pinned $D/a",
    "update pinned $D/a key 0 0 0 0 value 6 0 0 0",
    "-j update pinned $D/a key 0 0 0 0 value 6 0 0 0",
    "lookup pinned $D/a key 1 0 0 0",
    "delete pinned $D/a key 0 0 0 0",
    "freeze pinned $D/a",
    "-j freeze pinned $D/a",
    "-j freeze pinned $D/inner",
  ],
  pin: [
    "pin pinned $D/h $D/pin1",
    "-j pin pinned $D/a $D/pin2",
    "lookup pinned $D/pin1 key 2 0 0 0",
    "pin pinned $D/h $D/pin1",
    "-j pin pinned $D/h $D/pin1",
    "pin pinned $D/h $D/pin3 extra words",
    "pin pinned $D/h $D/nodir/x",
    "-n pin pinned $D/h /tmp/x",
  ],
  progs: [
    "update pinned $D/parr key 0 0 0 0 value pinned $D/prog",
    "-j update pinned $D/parr key 1 0 0 0 value pinned $D/prog",
    "lookup pinned $D/parr key 0 0 0 0",
    "update pinned $D/parr key 1 0 0 0 value id $PROG_ID",
    "-j update pinned $D/parr key 1 0 0 0 value id $PROG_ID",
    "update pinned $D/parr key 0 0 0 0 value tag $PROG_TAG",
    "update pinned $D/parr key 0 0 0 0 value name mc_prog",
    "update pinned $D/parr key 0 0 0 0 value name mc_no_such_prog",
    "update pinned $D/parr key 1 0 0 0 value 1 0 0 0",
    "update pinned $D/parr key 1 0 0 0 value id",
    "update pinned $D/parr key 1 0 0 0 value pinned $D/h",
    "update pinned $D/parr key 2 0 0 0 value pinned $D/prog",
    "delete pinned $D/parr key 0 0 0 0",
    "delete pinned $D/parr key 0 0 0 0",
    "-p getnext pinned $D/parr",
  ],
  create: [
    "create $D/c1 type hash key 4 value 4 entries 2 name mc_c1",
    "-j create $D/c2 type hash key 4 value 4 entries 2 name mc_c2 flags 1",
    "create $D/c4 name mc_c4 entries 0x10 value 010 key 4 type hash",
    "create $D/c5 ty array k 4 v 4 e 2 n mc_c5",
    "create $D/c6 type hash key 4 value 4 entries 2 name this_name_is_longer_than_16",
    "create $D/c1 type hash key 4 value 4 entries 2 name mc_c1",
    "-j create $D/c1 type hash key 4 value 4 entries 2 name mc_c1",
    "create $D/x type foo key 4 value 4 entries 2 name mc_x",
    "create $D/x type HASH key 4 value 4 entries 2 name mc_x",
    "create $D/x type hash type array key 4 value 4 entries 2 name mc_x",
    "create $D/x type hash key 4 key 4 value 4 entries 2 name mc_x",
    "create $D/x type hash key abc value 4 entries 2 name mc_x",
    "create $D/x type hash key 4 value 4 entries 2",
    "-j create $D/x type hash key 4 value 4 entries 2 name",
    "create $D/x type hash key 4 value 4 entries 2 name mc_x bogus 1",
    "create $D/x type hash",
    "create $D/x type hash key 0 value 4 entries 2 name mc_x",
    "create $D/x key 4 value 4 entries 2 name mc_x",
    "create $D/x type queue key 4 value 4 entries 2 name mc_x",
    "create $D/x type hash key 4 value 4 entries 2 name mc_x dev nosuchdev0",
    "-j create $D/x type array_of_maps key 4 value 4 entries 2 name mc_x inner_map id",
    "create $D/x type array_of_maps key 4 value 4 entries 2 name mc_x inner_map pinned $D/nonexist",
    "create $D/mom type array_of_maps key 4 value 4 entries 2 name mc_mom2 inner_map pinned $D/inner",
    "create $D/x type hash key 4 value 4 entries 2 name bad-name!",
    "create $D/nodir/x type hash key 4 value 4 entries 2 name mc_x",
    "-n create /tmp/x type hash key 4 value 4 entries 2 name mc_x",
  ],
};

/** A loaded program (a `syscall` one returning 42), to be pinned as program arrays' values. */
function loadReturnProgram(): { id: number; tag: string; pin(path: string): void } & Disposable {
  const fd = loadProgram({
    name: "mc_prog",
    kind: "syscall",
    insns: [asm.movImm(0, 42), asm.exit()],
  });
  if (typeof fd !== "number") throw new Error(`the program was refused: errno ${fd.errno}`);
  const identity = programIdentity(fd);
  if (typeof identity === "number") throw new Error(`no program info: errno ${-identity}`);
  return {
    id: identity.id,
    tag: identity.tag,
    pin: (path) => assert.equal(backend().pin(fd, path), 0, `pin ${path}`),
    [Symbol.dispose]: () => closeFd(fd),
  };
}

/**
 * Every pin under `dir` (not in sub-folders) and its map's entries as `bpftool -j map dump`
 * prints them, sorted (two hash maps order the same keys differently: their seeds differ).
 */
async function contents(dir: string): Promise<Record<string, string[]>> {
  const held: Record<string, string[]> = {};
  for (const entry of Deno.readDirSync(dir)) {
    if (!entry.isFile) continue;
    const dump = await bpftool(["-j", "dump", "pinned", `${dir}/${entry.name}`]);
    const entries = dump.status === 0 ? JSON.parse(dump.stdout) as unknown[] : [dump.stdout];
    held[entry.name] = entries.map((e) => JSON.stringify(e)).sort();
  }
  return held;
}

for (const [name, steps] of Object.entries(WRITING)) {
  bpfTest(
    `map ${name}: each step prints what bpftool prints, and leaves the maps as bpftool does`,
    async () => {
      const theirs = pinFolder(`mc_${name}_t_`);
      const mine = pinFolder(`mc_${name}_m_`);
      try {
        // One program, pinned on both sides: its id and tag are the same in both outputs.
        using program = loadReturnProgram();
        for (const [dir, tag] of [[theirs, "mt"], [mine, "mm"]]) {
          makeFixtures(dir, tag);
          makeMapOfMaps(dir, "aom", "array_of_maps");
          makeMapOfMaps(dir, "hom", "hash_of_maps");
          program.pin(`${dir}/prog`);
        }
        for (const step of steps) {
          const words = wordsOf(step).map((w) =>
            w.replace("$PROG_ID", String(program.id)).replace("$PROG_TAG", program.tag)
          );
          await same(words, { dir: theirs }, { dir: mine });
        }
        // Maps of maps hold the inner map's id, which differs between the sides.
        const held = async (dir: string) => {
          const all = await contents(dir);
          delete all.aom;
          delete all.hom;
          return all;
        };
        assert.deepEqual(await held(mine), await held(theirs), "the maps after the steps");
      } finally {
        unpin(theirs);
        unpin(mine);
      }
    },
  );
}

// --- Maps with BTF: every kind of bpf/btf_types.bpf.c ----------------------------------

/** The object's maps; `bt_floats` prints values bpftool's JSON cannot hold (floats). */
const BTF_MAPS = [
  "bt_hash",
  "bt_percpu",
  "bt_array",
  "bt_names",
  "bt_enums",
  "bt_ints",
  "bt_floats",
];
const ENTRIES = 4;

/**
 * Loads the object, fills its maps with seeded random entries (per-CPU values the same on
 * every CPU, as bpftool writes them) and pins them in `dir`; returns the map names pinned.
 */
function pinnedBtfMaps(dir: string, fill: boolean): { names: string[]; close(): void } {
  const object = loadObject();
  const random = prng(SEED ^ 0x3a9);
  const names: string[] = [];
  for (const name of BTF_MAPS) {
    using map = object.map(name);
    if (fill) {
      const array = map.typeName.endsWith("array");
      fillRandom(map, array ? map.info.maxEntries : ENTRIES, random, (i, key) => {
        if (array) new DataView(key.buffer).setUint32(0, i, true);
      });
      if (map.perCpu) sameOnEveryCpu(map);
    }
    map.pin(`${dir}/${name}`);
    names.push(name);
  }
  return { names, close: () => object.close() };
}

/** Rewrites each entry of a per-CPU map with CPU 0's value on every CPU. */
function sameOnEveryCpu(map: BpfMap): void {
  const entries: Uint8Array[][] = [];
  for (const [key, value] of map.entries()) entries.push([key.slice(), value.slice()]);
  for (const [key, value] of entries) map.update(key, perCpu(map, value.slice(0, map.valueSize)));
}

/** The raw key bytes of each entry of the map pinned at `path`, as hex words for bpftool. */
function keyWords(path: string): string[][] {
  using map = BpfMap.fromPin(path);
  const keys: string[][] = [];
  for (const [key] of map.entries()) keys.push(["hex", ...[...key].map((b) => b.toString(16))]);
  return keys;
}

objectTest("map: lookup, getnext and dump of BTF maps print what bpftool prints", async () => {
  const dir = pinFolder("mc_btf_");
  const maps = pinnedBtfMaps(dir, true);
  try {
    for (const name of maps.names) {
      const path = `$D/${name}`;
      for (const mode of [[], ["-j"], ["-p"]]) {
        await same([...mode, "dump", "pinned", path], { dir });
        await same([...mode, "getnext", "pinned", path], { dir });
        for (const key of keyWords(`${dir}/${name}`).slice(0, 2)) {
          await same([...mode, "lookup", "pinned", path, "key", ...key], { dir });
          await same([...mode, "getnext", "pinned", path, "key", ...key], { dir });
        }
      }
    }
  } finally {
    maps.close();
    unpin(dir);
  }
});

/** A JSON text of `value` with bigints as plain numbers, as bpftool writes 64-bit values. */
function jsonText(value: unknown): string {
  return JSON.stringify(value, (_, v) => typeof v === "bigint" ? `@@${v}@@` : v)
    .replace(/"@@(-?\d+)@@"/g, "$1");
}

/** Parses bpftool's JSON keeping 64-bit integers exact. */
function parseExact(text: string): unknown {
  return JSON.parse(
    text,
    (_k, v, context?: { source?: string }) =>
      typeof v === "number" && !Number.isSafeInteger(v) && context?.source
        ? BigInt(context.source)
        : v,
  );
}

/** Every entry's `"formatted"` key and value (CPU 0's for per-CPU maps) in `bpftool -j`'s dump. */
async function formattedEntries(path: string): Promise<[string, string][]> {
  const dump = await bpftool(["-j", "dump", "pinned", path]);
  type Entry = { formatted: { key: unknown; value?: unknown; values?: { value: unknown }[] } };
  return (parseExact(dump.stdout) as Entry[]).map(({ formatted }) => [
    jsonText(formatted.key),
    jsonText(formatted.values ? formatted.values[0].value : formatted.value),
  ]);
}

/**
 * The typed entries of the map at `path` (`dump --jsonl`), sorted: what JSON input can
 * write (a struct's holes are zero when written by members, whatever bytes they held).
 */
async function typedDump(path: string): Promise<string[]> {
  const dump = await outcome(scriptCommand("dump.ts", ["--pin", path, "--jsonl"]));
  assert.equal(dump.status, 0, dump.stderr);
  return dump.stdout.trimEnd().split("\n").sort();
}

objectTest(
  "map update: bpftool's own formatted JSON of every BTF kind, fed back as key and value, writes the same values",
  async () => {
    const source = pinFolder("mc_src_");
    const target = pinFolder("mc_dst_");
    const filled = pinnedBtfMaps(source, true);
    const empty = pinnedBtfMaps(target, false);
    try {
      // bpftool prints floats as "(unsupported-kind": its JSON of bt_floats cannot be read.
      for (const name of filled.names.filter((n) => n !== "bt_floats")) {
        for (const [key, value] of await formattedEntries(`${source}/${name}`)) {
          // `--`: a negative number is an option to bpftool's getopt, so it is to this one.
          const run = await ours([
            "update",
            "pinned",
            `${target}/${name}`,
            "--",
            "key",
            key,
            "value",
            value,
          ]);
          assert.deepEqual(run, { status: 0, stdout: "", stderr: "" }, `${name}: ${key} ${value}`);
        }
        assert.deepEqual(
          await typedDump(`${target}/${name}`),
          await typedDump(`${source}/${name}`),
          name,
        );
      }
    } finally {
      filled.close();
      empty.close();
      unpin(source);
      unpin(target);
    }
  },
);

objectTest(
  "map update: lines of dump --jsonl fed back as key and value write the same values, floats included",
  async () => {
    const source = pinFolder("mc_jsrc_");
    const target = pinFolder("mc_jdst_");
    const filled = pinnedBtfMaps(source, true);
    const empty = pinnedBtfMaps(target, false);
    try {
      for (const name of filled.names) {
        for (const line of await typedDump(`${source}/${name}`)) {
          const entry = JSON.parse(line);
          const value = entry.values ? entry.values[0] : entry.value;
          const run = await ours([
            "update",
            "pinned",
            `${target}/${name}`,
            "--",
            "key",
            JSON.stringify(entry.key),
            "value",
            JSON.stringify(value),
          ]);
          assert.deepEqual(run, { status: 0, stdout: "", stderr: "" }, `${name}: ${line}`);
        }
        assert.deepEqual(
          await typedDump(`${target}/${name}`),
          await typedDump(`${source}/${name}`),
          name,
        );
      }
    } finally {
      filled.close();
      empty.close();
      unpin(source);
      unpin(target);
    }
  },
);

bpfTest(
  "map update: keys and values as JSON without BTF: bytes, integers, hex strings",
  async () => {
    const dir = pinFolder("mc_json_");
    try {
      const path = `${dir}/h`;
      pinned(dir, "h", BpfMap.create({ type: "hash", keySize: 4, valueSize: 8, maxEntries: 16 }));
      for (
        const [key, value] of [
          ["3", "[1,2,3,4,5,6,7,8]"],
          ["[4,0,0,0]", "0x0807060504030201"],
          ['"0x05000000"', '"0x0102030405060708"'],
          ["6", "578437695752307201"],
        ]
      ) {
        const run = await ours(["update", "pinned", path, "key", key, "value", value]);
        assert.deepEqual(run, { status: 0, stdout: "", stderr: "" }, `key ${key} value ${value}`);
      }
      for (const key of [3, 4, 6]) {
        const found = await bpftool(["lookup", "pinned", path, "key", String(key), "0", "0", "0"]);
        assert.equal(found.stdout, `key: 0${key} 00 00 00  value: 01 02 03 04 05 06 07 08\n`);
      }
      const five = await ours(["lookup", "pinned", path, "key", "5"]);
      assert.equal(five.stdout, "key: 05 00 00 00  value: 01 02 03 04 05 06 07 08\n");
      const before = await bpftool(["-j", "dump", "pinned", path]);
      for (
        const [args, message] of [
          [["key", "4294967296", "value", "1"], "key: 4294967296 does not fit 4 bytes"],
          [["key", "7", "value", "[1,2]"], "value: expected 8 bytes, got an array of 2"],
          [["key", "7", "value", "[1,2,3,4,5,6,7,256]"], "value[7]: 256 is not a byte"],
          [["key", "7", "value", '{"a":1}'], "value: expected an integer, an array of 8 bytes"],
          [["key", "[7", "value", "1"], "key: "],
        ] as const
      ) {
        const run = await ours(["update", "pinned", path, ...args]);
        assert.equal(run.status, 255, run.stderr);
        assert.match(run.stderr, new RegExp(`^Error: ${escape(message)}.*\n$`), args.join(" "));
        const json = await ours(["-j", "update", "pinned", path, ...args]);
        assert.match(json.stdout, new RegExp(`^\\{"error":"${escape(message)}`));
      }
      assert.deepEqual(await bpftool(["-j", "dump", "pinned", path]), before, "nothing written");
    } finally {
      unpin(dir);
    }
  },
);

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

objectTest(
  "map update: a typed value that does not fit is refused before any write, naming the member",
  async () => {
    const dir = pinFolder("mc_bad_");
    const maps = pinnedBtfMaps(dir, true);
    try {
      const path = `${dir}/bt_hash`;
      const [[key, value]] = await formattedEntries(path);
      const good = JSON.parse(value);
      const before = await bpftool(["-j", "dump", "pinned", path]);
      const cases: [unknown, string][] = [
        [
          { ...good, flags: { ...good.flags, low: 9 } },
          "value.flags.low: 9 does not fit a 3-bit unsigned integer (0 to 7)",
        ],
        [
          { ...good, matrix: [[1, 2, 3], [4, 5, 65536]] },
          "value.matrix[1][2]: 65536 does not fit unsigned short (0 to 65535)",
        ],
        [
          { ...good, color: "BT_PURPLE" },
          'value.color: unknown enumerator "BT_PURPLE" of "enum bt_color"',
        ],
        [{ ...good, nope: 1 }, 'value: unknown member "nope"'],
        [(({ tiny: _, ...rest }) => rest)(good), 'value: missing member "tiny"'],
        [{ ...good, label: "much too long a label" }, "value.label: expected 8 elements"],
      ];
      for (const [bad, message] of cases) {
        const text = jsonText(bad);
        const run = await ours(["update", "pinned", path, "--", "key", key, "value", text]);
        assert.equal(run.status, 255, message);
        assert.equal(run.stderr.split("\n").length, 2, `one line: ${run.stderr}`);
        assert.ok(
          run.stderr.startsWith(`Error: ${message}`),
          `${run.stderr} (expected ${message})`,
        );
        const json = await ours(["-p", "update", "pinned", path, "--", "key", key, "value", text]);
        // JSON that parses: the toolkit's own messages are escaped (bpftool's are not).
        assert.ok(json.stdout.startsWith('{\n    "error": "'), json.stdout);
        assert.ok(JSON.parse(json.stdout).error.startsWith(message), json.stdout);
      }
      assert.deepEqual(await bpftool(["-j", "dump", "pinned", path]), before, "nothing written");
    } finally {
      maps.close();
      unpin(dir);
    }
  },
);

/** Every entry of the map pinned at `path`, as hex `key=value` lines, sorted. */
function rawContents(path: string): string[] {
  using map = BpfMap.fromPin(path);
  const hex = (bytes: Uint8Array) =>
    [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  const lines: string[] = [];
  for (const [key, value] of map.entries()) lines.push(`${hex(key)}=${hex(value)}`);
  return lines.sort();
}

objectTest(
  "map: update, delete, pin and freeze of BTF maps, in bytes, do what bpftool does",
  async () => {
    const theirs = pinFolder("mc_bw_t_");
    const mine = pinFolder("mc_bw_m_");
    const sides = [pinnedBtfMaps(theirs, true), pinnedBtfMaps(mine, true)];
    try {
      for (const name of sides[0].names) {
        using map = BpfMap.fromPin(`${theirs}/${name}`);
        const [first] = map.entries();
        const key = ["hex", ...[...first[0]].map((b) => b.toString(16))];
        const value = [
          "hex",
          ...[...first[1].subarray(0, map.valueSize)].map((b) => b.toString(16)),
        ];
        const path = `$D/${name}`;
        const steps = [
          ["delete", "pinned", path, "key", ...key],
          ["-j", "delete", "pinned", path, "key", ...key],
          ["lookup", "pinned", path, "key", ...key],
          ["update", "pinned", path, "key", ...key, "value", ...value, "noexist"],
          ["-p", "update", "pinned", path, "key", ...key, "value", ...value, "noexist"],
          ["lookup", "pinned", path, "key", ...key],
          ["update", "pinned", path, "key", ...key, "value", ...value.slice(0, -1)],
          ["pin", "pinned", path, `${path}_pin`],
          ["freeze", "pinned", `${path}_pin`],
          ["update", "pinned", path, "key", ...key, "value", ...value],
          ["-j", "delete", "pinned", path, "key", ...key],
        ];
        for (const step of steps) await same(step, { dir: theirs }, { dir: mine });
        assert.deepEqual(rawContents(`${mine}/${name}`), rawContents(`${theirs}/${name}`), name);
      }
    } finally {
      for (const side of sides) side.close();
      unpin(theirs);
      unpin(mine);
    }
  },
);
