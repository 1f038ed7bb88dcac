/**
 * `JsonMap`, the library's typed lookup, update and delete: keys and values as JSON values
 * (or JSON text), encoded through the map's BTF, or as bytes and integers without BTF; a
 * value that does not fit is refused before the write, naming the member.
 *
 * @module
 */

import assert from "node:assert/strict";
import { BpfMap, JsonMap, JsonValueError } from "../mod.ts";
import { bpfTest } from "./_helpers.ts";
import { loadObject, objectTest } from "./_btf_helpers.ts";

bpfTest("JsonMap without BTF: integers, byte arrays and hex strings in, bytes out", () => {
  using map = BpfMap.create({ type: "hash", keySize: 4, valueSize: 8, maxEntries: 8 });
  const json = JsonMap.of(map);
  assert.equal(json.keyType, undefined);
  json.update(1, 2n ** 64n - 1n);
  json.update("[2,0,0,0]", "0x0102030405060708", "noexist");
  assert.deepEqual(json.lookup(1), Array(8).fill(255));
  assert.deepEqual(json.lookup(2), [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual(map.lookup(Uint8Array.of(2, 0, 0, 0)), Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8));
  assert.throws(() => json.update(2, 1, "noexist"), /EEXIST|exists/);
  assert.throws(() => json.update(3, 2n ** 64n), (e: unknown) => {
    assert.ok(e instanceof JsonValueError);
    assert.equal(e.message, "value: 18446744073709551616 does not fit 8 bytes");
    return true;
  });
  assert.equal(json.lookup(3), undefined, "nothing written");
  assert.equal(json.delete(1), true);
  assert.equal(json.delete(1), false);
});

objectTest("JsonMap with BTF: struct keys and values by member, per-CPU values per CPU", () => {
  using object = loadObject();
  using hash = object.map("bt_hash");
  const json = JsonMap.of(hash);
  const key = { id: 7, name: "seven", delta: -1, total: 2n ** 63n };
  const value = {
    neg: -5n,
    big: 2n ** 64n - 1n,
    color: "BT_BLUE",
    small: "BT_S_BIG",
    wide: "BT_W_HIGH",
    flags: { low: 5, signed5: -3, wide: 2n ** 40n - 1n, color: "BT_GREEN", on: true, after: 9 },
    word: { word: 0x01020304 },
    matrix: [[1, 2, 3], [4, 5, 6]],
    label: "label",
    ptr: 0,
    ok: true,
    tiny: -2,
    cv: 3,
    x: -1,
    y: 1,
  };
  json.update(key, value);
  const read = json.lookup(JSON.stringify({ ...key, total: "9223372036854775808" })) as Record<
    string,
    unknown
  >;
  assert.equal(read.big, 2n ** 64n - 1n);
  assert.equal(read.color, "BT_BLUE");
  assert.deepEqual(read.matrix, [[1, 2, 3], [4, 5, 6]]);
  assert.deepEqual((read.flags as Record<string, unknown>).signed5, -3);
  assert.throws(
    () => json.update(key, { ...value, flags: { ...value.flags, low: 8 } }),
    /^JsonValueError: value\.flags\.low: 8 does not fit a 3-bit unsigned integer \(0 to 7\)$/,
  );
  assert.throws(() => json.update({ ...key, nope: 1 }, value), /key: unknown member "nope"/);
  assert.equal(json.delete(key), true);

  using percpu = object.map("bt_percpu");
  const counters = JsonMap.of(percpu);
  counters.update("42", { packets: "12345678901234567890", delta: -4, last: 9 });
  const slots = counters.lookup(42n) as unknown[];
  assert.equal(slots.length, percpu.cpus);
  for (const slot of slots) {
    assert.deepEqual(slot, { packets: 12345678901234567890n, delta: -4, last: 9 });
  }
});
