/**
 * `BpfMap` against the real kernel, on both backends: element commands, typed views, batch
 * writes, pinning and reopening from another process, map info, freezing, and the errors a
 * user sees for bad arguments and kernel refusals.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type BackendName,
  BpfArgumentError,
  BpfError,
  BpfMap,
  type Codec,
  MapFlag,
  MapType,
  type MapTypeName,
  u32,
  u64,
  UpdateFlag,
} from "../mod.ts";
import { ALL_BACKENDS, bpfTest, ROOT, u32At, u32Bytes } from "./_helpers.ts";

/** Asserts that `fn` throws a `BpfError` with errno name `code` and a message matching `message`. */
function throwsBpfError(
  fn: () => unknown,
  code: string,
  message?: RegExp,
): BpfError {
  let error: unknown;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof BpfError, `expected a BpfError, got ${error}`);
  assert.equal(error.code, code, error.message);
  if (message) assert.match(error.message, message);
  return error;
}

/** Asserts that `fn` throws a `BpfArgumentError` whose message matches `message`. */
function throwsArgumentError(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof BpfArgumentError, `expected BpfArgumentError: ${e}`);
    assert.match(e.message, message);
    return true;
  });
}

function hashMap(
  backend: BackendName,
  spec: { valueSize?: number; maxEntries?: number; name?: string } = {},
): BpfMap {
  return BpfMap.create({
    type: "hash",
    keySize: 4,
    valueSize: spec.valueSize ?? 4,
    maxEntries: spec.maxEntries ?? 16,
    name: spec.name,
  }, { backend });
}

/** A test name's tail: `[<type>, <backend>]`, or `[<backend>]` for no map type in particular. */
function label(type: MapTypeName | undefined, backend: BackendName): string {
  return type ? `[${type}, ${backend}]` : `[${backend}]`;
}

/** A fresh pin path on bpffs, unique to this run. */
function pinPath(): string {
  return `/sys/fs/bpf/deno-bpf-batch-test-${crypto.randomUUID()}`;
}

function removePin(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/** Packed values for `keys`: CPU `c`'s slot of key `k` holds the u32 `k * 100 + c + 1`. */
function packedValues(map: BpfMap, keys: number[]): Uint8Array {
  const values = new Uint8Array(keys.length * map.valueBytes);
  keys.forEach((key, i) => {
    const value = values.subarray(i * map.valueBytes, (i + 1) * map.valueBytes);
    map.cpuValues(value).forEach((slot, cpu) => slot.set(u32Bytes(key * 100 + cpu + 1)));
  });
  return values;
}

/** Every CPU's u32 of `key`, or `undefined` when absent. */
function slotsOf(map: BpfMap, key: number): number[] | undefined {
  const value = map.lookup(u32Bytes(key));
  return value && map.cpuValues(value).map((slot) => u32At(slot));
}

/** Adds a walk's entry to `into`, failing on a key seen twice (so a stuck walk fails, not hangs). */
function addOnce<K, V>(into: Map<K, V>, key: K, value: V): void {
  if (into.has(key)) assert.fail(`key ${key} seen twice`);
  into.set(key, value);
}

/** The keys in the map, sorted. */
function keysOf(map: BpfMap): number[] {
  const keys = new Map<number, true>();
  map.forEachEntry((key) => addOnce(keys, u32At(key), true));
  return [...keys.keys()].sort((a, b) => a - b);
}

// --- Element commands -----------------------------------------------------------------

for (const backend of ALL_BACKENDS) {
  bpfTest(`lookup, update, delete and nextKey [hash, ${backend}]`, () => {
    using map = hashMap(backend, { maxEntries: 4 });
    assert.equal(map.lookup(u32Bytes(1)), undefined);
    assert.equal(map.delete(u32Bytes(1)), false);
    assert.equal(map.nextKey(null), undefined);

    map.update(u32Bytes(1), u32Bytes(10));
    assert.deepEqual(map.lookup(u32Bytes(1)), u32Bytes(10));
    const out = new Uint8Array(4);
    assert.equal(map.lookup(u32Bytes(1), out), out);
    assert.deepEqual(out, u32Bytes(10));
    map.update(u32Bytes(1), u32Bytes(11));
    assert.deepEqual(map.lookup(u32Bytes(1)), u32Bytes(11));

    throwsBpfError(
      () => map.update(u32Bytes(1), u32Bytes(12), UpdateFlag.NOEXIST),
      "EEXIST",
      /BPF_MAP_UPDATE_ELEM .* NOEXIST/,
    );
    throwsBpfError(
      () => map.update(u32Bytes(2), u32Bytes(20), UpdateFlag.EXIST),
      "ENOENT",
      /BPF_MAP_UPDATE_ELEM .* EXIST/,
    );
    assert.deepEqual(map.lookup(u32Bytes(1)), u32Bytes(11));
    assert.equal(map.lookup(u32Bytes(2)), undefined);
    map.update(u32Bytes(2), u32Bytes(20), UpdateFlag.NOEXIST);
    map.update(u32Bytes(2), u32Bytes(21), UpdateFlag.EXIST);
    assert.deepEqual(map.lookup(u32Bytes(2)), u32Bytes(21));

    map.update(u32Bytes(3), u32Bytes(30));
    map.update(u32Bytes(4), u32Bytes(40));
    throwsBpfError(
      () => map.update(u32Bytes(5), u32Bytes(50)),
      "E2BIG",
      /the map is full \(maxEntries 4\)/,
    );
    map.update(u32Bytes(4), u32Bytes(41)); // a full map still takes existing keys

    // nextKey visits every key once, then ends; from a missing key it starts over.
    const keys: number[] = [];
    for (let key = map.nextKey(null); key; key = map.nextKey(key)) {
      keys.push(u32At(key));
    }
    assert.deepEqual(keys.toSorted((a, b) => a - b), [1, 2, 3, 4]);
    assert.equal(map.nextKey(u32Bytes(keys[3])), undefined);
    assert.deepEqual(map.nextKey(u32Bytes(99)), u32Bytes(keys[0]));
    const next = new Uint8Array(4);
    assert.equal(map.nextKey(u32Bytes(keys[0]), next), next);
    assert.equal(u32At(next), keys[1]);

    assert.equal(map.delete(u32Bytes(3)), true);
    assert.equal(map.delete(u32Bytes(3)), false);
    assert.equal(map.lookup(u32Bytes(3)), undefined);
    assert.deepEqual(keysOf(map), [1, 2, 4]);
  });
}

// --- Typed views ----------------------------------------------------------------------

interface ValueCase<V> {
  name: string;
  codec: Codec<V>;
  /** The i-th sample value. */
  of(i: number): V;
}

function registerTyped<V>(c: ValueCase<V>): void {
  for (const backend of ALL_BACKENDS) {
    for (const type of ["hash", "percpu_hash"] as const) {
      bpfTest(`typed(u32, ${c.name}) [${type}, ${backend}]`, () => {
        using map = BpfMap.create(
          { type, keySize: 4, valueSize: c.codec.size, maxEntries: 16 },
          { backend },
        );
        const typed = map.typed(u32, c.codec);
        const keys = [0, 1, 7, 42, 0xffff_ffff];
        keys.forEach((key, i) => typed.set(key, c.of(i)));
        keys.forEach((key, i) => {
          assert.equal(typed.get(key), c.of(i));
          assert.deepEqual(typed.getPerCpu(key), Array(map.cpus).fill(c.of(i)));
        });
        assert.equal(typed.get(5), undefined);
        assert.equal(typed.getPerCpu(5), undefined);

        const expected = new Map(keys.map((key, i) => [key, c.of(i)]));
        for (const chunk of [undefined, 1]) {
          const generated = new Map<number, V>();
          for (const [k, v] of typed.entries(chunk)) addOnce(generated, k, v);
          assert.deepEqual(generated, expected);
          const visited = new Map<number, V>();
          const stats = typed.forEach((k, v) => addOnce(visited, k, v), chunk);
          assert.deepEqual(visited, expected);
          assert.equal(stats.entries, keys.length);
        }

        typed.set(7, c.of(9), UpdateFlag.EXIST);
        assert.equal(typed.get(7), c.of(9));
        throwsBpfError(() => typed.set(8, c.of(9), UpdateFlag.EXIST), "ENOENT");
        throwsBpfError(() => typed.set(7, c.of(9), UpdateFlag.NOEXIST), "EEXIST");
        assert.equal(typed.delete(7), true);
        assert.equal(typed.delete(7), false);
        assert.equal(typed.get(7), undefined);
        assert.deepEqual(keysOf(map), keys.filter((key) => key !== 7).sort((a, b) => a - b));
      });
    }
  }
}

registerTyped<number>({ name: "u32", codec: u32, of: (i) => 0xfedc_0000 + i });
// Past 2^53, so a lossy number conversion would show.
registerTyped<bigint>({
  name: "u64",
  codec: u64,
  of: (i) => 0xffff_ffff_ffff_ff00n + BigInt(i),
});

// --- Batch writes ---------------------------------------------------------------------

for (const backend of ALL_BACKENDS) {
  for (const type of ["hash", "percpu_hash", "lru_hash"] as const) {
    bpfTest(`updateBatch and deleteBatch [${type}, ${backend}]`, () => {
      using map = BpfMap.create(
        { type, keySize: 4, valueSize: 4, maxEntries: 512 },
        { backend },
      );
      const keys = Array.from({ length: 100 }, (_, i) => i * 3);
      assert.equal(
        map.updateBatch(u32Bytes(...keys), packedValues(map, keys)),
        100,
      );
      assert.deepEqual(keysOf(map), keys);
      for (const key of keys) {
        assert.deepEqual(
          slotsOf(map, key),
          Array.from({ length: map.cpus }, (_, cpu) => key * 100 + cpu + 1),
        );
      }
      assert.equal(map.updateBatch(new Uint8Array(0), new Uint8Array(0)), 0);

      const even = keys.filter((key) => key % 2 === 0);
      const odd = keys.filter((key) => key % 2 === 1);
      assert.equal(map.deleteBatch(u32Bytes(...even)), even.length);
      assert.deepEqual(keysOf(map), odd);

      // A missing key stops the batch there, and the error says how far it got.
      throwsBpfError(
        () => map.deleteBatch(u32Bytes(odd[0], 1_000_000, odd[1])),
        "ENOENT",
        /BPF_MAP_DELETE_BATCH .*\(1 of 3 done\)/,
      );
      assert.deepEqual(keysOf(map), odd.slice(1));

      // UPDATE_BATCH takes no NOEXIST/EXIST: refused before any element is written.
      throwsBpfError(
        () =>
          map.updateBatch(
            u32Bytes(1),
            packedValues(map, [1]),
            UpdateFlag.NOEXIST,
          ),
        "EINVAL",
        /\(0 of 1 done\).*use update\(\) per key/,
      );
      assert.equal(map.lookup(u32Bytes(1)), undefined);
    });
  }
}

// --- Pinning, reopening, info ---------------------------------------------------------

for (const backend of ALL_BACKENDS) {
  bpfTest(`pin, and reopen by pin and id in another process [hash, ${backend}]`, async () => {
    using map = hashMap(backend, { name: "pin_test" });
    const typed = map.typed(u32, u32);
    for (const key of [1, 2, 3]) typed.set(key, key * 10);
    const path = pinPath();
    try {
      map.pin(path);
      throwsBpfError(() => map.pin(path), "EEXIST", /already pinned/);
      {
        using again = BpfMap.fromPin(path, { backend });
        assert.deepEqual(again.info, map.info);
      }

      const script = `
        import { BpfMap, u32 } from "file://${ROOT}mod.ts";
        const [path, id, backend] = ${JSON.stringify([path, map.info.id, backend])};
        const read = (map) => ({
          info: map.info,
          backend: map.backend,
          values: [1, 2, 3, 4].map((key) => map.typed(u32, u32).get(key) ?? null),
        });
        using byPin = BpfMap.fromPin(path, { backend });
        using byId = BpfMap.fromId(id, { backend });
        byPin.typed(u32, u32).set(100, 4242);
        console.log(JSON.stringify({ byPin: read(byPin), byId: read(byId) }));
      `;
      const child = await new Deno.Command(Deno.execPath(), {
        args: ["eval", "--ext=ts", script],
        cwd: ROOT,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(child.stderr);
      assert.equal(child.code, 0, stderr);
      const lines = new TextDecoder().decode(child.stdout).trim().split("\n");
      const seen = JSON.parse(lines.at(-1)!);
      const expected = {
        info: map.info,
        backend,
        values: [10, 20, 30, null],
      };
      assert.deepEqual(seen, { byPin: expected, byId: expected });
      // The child wrote through its own fd: the same map.
      assert.equal(typed.get(100), 4242);
    } finally {
      removePin(path);
    }
  });
}

for (const backend of ALL_BACKENDS) {
  for (const flags of [0, MapFlag.NO_PREALLOC]) {
    bpfTest(`info round trip, flags ${flags} [hash, ${backend}]`, () => {
      using map = BpfMap.create({
        type: "hash",
        keySize: 4,
        valueSize: 24,
        maxEntries: 100,
        flags,
        name: "abc_1.x",
      }, { backend });
      const { id, ...rest } = map.info;
      assert.ok(Number.isInteger(id) && id > 0, `id ${id}`);
      assert.deepEqual(rest, {
        type: MapType.hash,
        keySize: 4,
        valueSize: 24,
        maxEntries: 100,
        flags,
        name: "abc_1.x",
        btfId: 0,
        btfKeyTypeId: 0,
        btfValueTypeId: 0,
        btfVmlinuxValueTypeId: 0,
      });
      assert.equal(map.typeName, "hash");
      assert.equal(map.backend, backend);
      assert.equal(map.perCpu, false);
      assert.equal(map.valueBytes, 24);
      assert.ok(BpfMap.ids({ backend }).includes(id));
      using byId = BpfMap.fromId(id, { backend });
      assert.deepEqual(byId.info, map.info);
    });
  }
}

for (const backend of ALL_BACKENDS) {
  bpfTest(`freeze makes the map read-only [hash, ${backend}]`, () => {
    using map = hashMap(backend);
    map.update(u32Bytes(1), u32Bytes(10));
    map.freeze();
    throwsBpfError(
      () => map.update(u32Bytes(1), u32Bytes(11)),
      "EPERM",
      /frozen/,
    );
    throwsBpfError(
      () => map.update(u32Bytes(2), u32Bytes(20)),
      "EPERM",
      /frozen/,
    );
    throwsBpfError(() => map.delete(u32Bytes(1)), "EPERM", /frozen/);
    throwsBpfError(
      () => map.updateBatch(u32Bytes(2), u32Bytes(20)),
      "EPERM",
      /\(0 of 1 done\).*frozen/,
    );
    assert.deepEqual(map.lookup(u32Bytes(1)), u32Bytes(10));
    assert.deepEqual(keysOf(map), [1]);
    assert.equal(map.forEachBatch(() => {}).entries, 1);
  });
}

// --- Bad arguments and refusals -------------------------------------------------------

/** Arguments refused before any system call, each on an open 4-byte u32 -> u32 hash map. */
const BAD_ARGUMENTS: {
  what: string;
  /** The map type the case is about, when there is one (the name's `[<type>, <backend>]`). */
  type?: MapTypeName;
  message: RegExp;
  run: (map: BpfMap, backend: BackendName) => unknown;
}[] = [
  {
    what: "a short key to lookup",
    type: "hash",
    message: /^Key of 3 bytes for map \d+: its keys are 4 bytes$/,
    run: (map) => map.lookup(new Uint8Array(3)),
  },
  {
    what: "a long key to update",
    type: "hash",
    message: /Key of 5 bytes .*its keys are 4 bytes/,
    run: (map) => map.update(new Uint8Array(5), u32Bytes(1)),
  },
  {
    what: "a long key to delete",
    type: "hash",
    message: /Key of 8 bytes .*its keys are 4 bytes/,
    run: (map) => map.delete(new Uint8Array(8)),
  },
  {
    what: "an empty key to nextKey",
    type: "hash",
    message: /Key of 0 bytes .*its keys are 4 bytes/,
    run: (map) => map.nextKey(new Uint8Array(0)),
  },
  {
    what: "a value of the wrong length",
    type: "hash",
    message: /Value of 8 bytes .*its values are 4 bytes$/,
    run: (map) => map.update(u32Bytes(1), new Uint8Array(8)),
  },
  {
    what: "a per-CPU value of one CPU's length",
    type: "percpu_hash",
    message: /Value of 8 bytes .*its values are \d+ bytes \(\d+ CPUs x 8 bytes\)/,
    run: (_, backend) => {
      using map = BpfMap.create(
        { type: "percpu_hash", keySize: 4, valueSize: 8, maxEntries: 4 },
        { backend },
      );
      map.update(u32Bytes(1), new Uint8Array(8));
    },
  },
  {
    what: "chunk 0",
    type: "hash",
    message: /^Invalid chunk "0": expected a whole number from 1 to/,
    run: (map) => map.forEachBatch(() => {}, { chunk: 0 }),
  },
  {
    what: "chunk 1.5",
    type: "hash",
    message: /^Invalid chunk "1.5": expected a whole number from 1 to/,
    run: (map) => [...map.batches({ chunk: 1.5 })],
  },
  {
    what: "a negative chunk to forEachBatchAndDelete",
    type: "hash",
    message: /^Invalid chunk "-1"/,
    run: (map) => map.forEachBatchAndDelete(() => {}, { chunk: -1 }),
  },
  {
    what: "packed keys that are not whole keys",
    type: "hash",
    message: /Keys of 6 bytes .*not a whole number of 4-byte keys/,
    run: (map) => map.updateBatch(new Uint8Array(6), new Uint8Array(4)),
  },
  {
    what: "packed values that do not match the keys",
    type: "hash",
    message: /Values of 4 bytes for 2 keys .*expected 8/,
    run: (map) => map.updateBatch(u32Bytes(1, 2), u32Bytes(1)),
  },
  {
    what: "codecs of the wrong size",
    type: "hash",
    message: /Codecs of 4\/8 bytes .*its keys and values are 4\/4 bytes/,
    run: (map) => map.typed(u32, u64),
  },
  {
    what: "map id 0",
    message: /^Invalid map id "0": expected a whole number from 1 to/,
    run: (_, backend) => BpfMap.fromId(0, { backend }),
  },
  {
    what: "a negative map id",
    message: /^Invalid map id "-3"/,
    run: (_, backend) => BpfMap.fromId(-3, { backend }),
  },
  {
    what: "an unknown map type",
    message: /^Unknown map type "hashh": use one of hash, array, /,
    run: (_, backend) =>
      BpfMap.create({
        type: "hashh" as MapTypeName,
        keySize: 4,
        valueSize: 4,
        maxEntries: 1,
      }, { backend }),
  },
  {
    what: "keySize 0",
    type: "hash",
    message: /^Invalid keySize "0": expected a whole number from 1 to/,
    run: (_, backend) =>
      BpfMap.create(
        { type: "hash", keySize: 0, valueSize: 4, maxEntries: 1 },
        { backend },
      ),
  },
  {
    what: "maxEntries 0",
    type: "hash",
    message: /^Invalid maxEntries "0"/,
    run: (_, backend) =>
      BpfMap.create(
        { type: "hash", keySize: 4, valueSize: 4, maxEntries: 0 },
        { backend },
      ),
  },
  {
    what: "an array with 8-byte keys",
    type: "array",
    message: /^Invalid keySize "8": array maps take 4-byte keys$/,
    run: (_, backend) =>
      BpfMap.create(
        { type: "array", keySize: 8, valueSize: 4, maxEntries: 1 },
        { backend },
      ),
  },
  {
    what: "a map name of 16 characters",
    type: "hash",
    message: /^Invalid map name "sixteen_chars_xx": at most 15 characters/,
    run: (_, backend) =>
      BpfMap.create({
        type: "hash",
        keySize: 4,
        valueSize: 4,
        maxEntries: 1,
        name: "sixteen_chars_xx",
      }, { backend }),
  },
  {
    what: "a map name with a dash",
    type: "hash",
    message: /^Invalid map name "my-map"/,
    run: (_, backend) =>
      BpfMap.create({
        type: "hash",
        keySize: 4,
        valueSize: 4,
        maxEntries: 1,
        name: "my-map",
      }, { backend }),
  },
  {
    what: "an empty pin path",
    type: "hash",
    message: /^Empty pin path/,
    run: (map) => map.pin(""),
  },
];

for (const backend of ALL_BACKENDS) {
  for (const { what, type, message, run } of BAD_ARGUMENTS) {
    bpfTest(`rejects ${what} ${label(type, backend)}`, () => {
      using map = hashMap(backend);
      throwsArgumentError(() => run(map, backend), message);
    });
  }
}

/** What the kernel refuses, and the message that must explain it. */
const REFUSALS: {
  what: string;
  type?: MapTypeName;
  code: string;
  message: RegExp;
  run: (map: BpfMap, backend: BackendName) => unknown;
}[] = [
  {
    what: "fromId of a map id nobody has",
    code: "ENOENT",
    message: /^BPF_MAP_GET_FD_BY_ID on map id 2147483632 .*no map with that id$/,
    run: (_, backend) => BpfMap.fromId(0x7fff_fff0, { backend }),
  },
  {
    what: "fromPin of a path where nothing is pinned",
    code: "ENOENT",
    message: /^BPF_OBJ_GET on ".*deno-bpf-batch-test-.*" .*nothing is pinned/,
    run: (_, backend) => BpfMap.fromPin(pinPath(), { backend }),
  },
  {
    what: "a pin outside bpffs",
    type: "hash",
    code: "EINVAL",
    message: /"\/tmp" is not on a bpf file system: pin under \/sys\/fs\/bpf/,
    run: (map) => {
      const path = `/tmp/deno-bpf-batch-test-${crypto.randomUUID()}`;
      try {
        map.pin(path);
      } finally {
        removePin(path);
      }
    },
  },
  {
    // Keys of up to 512 bytes before Linux 5.11; since, key plus value under ~4 MiB.
    what: "keys of 1 GiB",
    type: "hash",
    code: "E2BIG",
    message: /^BPF_MAP_CREATE on a hash map .*: keySize 1073741824, /,
    run: (_, backend) =>
      BpfMap.create(
        { type: "hash", keySize: 2 ** 30, valueSize: 4, maxEntries: 4 },
        { backend },
      ),
  },
  {
    what: "deleting from an array",
    type: "array",
    code: "EINVAL",
    message: /^BPF_MAP_DELETE_ELEM on map \d+ /,
    run: (_, backend) => {
      using map = BpfMap.create(
        { type: "array", keySize: 4, valueSize: 4, maxEntries: 4 },
        { backend },
      );
      map.delete(u32Bytes(1));
    },
  },
];

for (const backend of ALL_BACKENDS) {
  for (const { what, type, code, message, run } of REFUSALS) {
    bpfTest(`refuses ${what} ${label(type, backend)}`, () => {
      using map = hashMap(backend);
      throwsBpfError(() => run(map, backend), code, message);
    });
  }
}

for (const backend of ALL_BACKENDS) {
  bpfTest(`close twice, then every use throws [hash, ${backend}]`, () => {
    using map = hashMap(backend, { name: "closed" });
    map.update(u32Bytes(1), u32Bytes(10));
    map.close();
    map.close();
    assert.equal(map.fd, -1);
    const typed = map.typed(u32, u32);
    const uses: (() => unknown)[] = [
      () => map.lookup(u32Bytes(1)),
      () => map.update(u32Bytes(1), u32Bytes(1)),
      () => map.delete(u32Bytes(1)),
      () => map.nextKey(null),
      () => map.forEachEntry(() => {}),
      () => [...map.entries()],
      () => map.forEachBatch(() => {}),
      () => [...map.batches()],
      () => map.forEachBatchAndDelete(() => {}),
      () => map.updateBatch(u32Bytes(1), u32Bytes(1)),
      () => map.deleteBatch(u32Bytes(1)),
      () => map.freeze(),
      () => map.pin(pinPath()),
      () => typed.get(1),
    ];
    for (const use of uses) {
      throwsArgumentError(use, /^The map \d+ "closed" is closed$/);
    }
  });
}
