/**
 * `KeySet` on its own, against counts computed here: every key size the toolkit meets
 * (4 bytes take the bitmap, others the byte-keyed set), keys added one by one and packed,
 * duplicates counted exactly, keys that differ in a single byte kept apart.
 *
 * @module
 */

import assert from "node:assert/strict";
import { KeySet } from "../mod.ts";
import { KeySetInBackground } from "../ffi/dump/verify.ts";

const KEY_SIZES = [1, 2, 4, 8, 12, 16, 40, 64];

/** Key number `n` as `size` bytes: little-endian `n`, then a pattern that depends on `n`. */
function keyBytes(n: number, size: number): Uint8Array {
  const key = new Uint8Array(size);
  for (let i = 0; i < size; i++) key[i] = i < 4 ? (n >>> (8 * i)) & 0xff : (n * 31 + i) & 0xff;
  return key;
}

/** `numbers` as packed keys of `size` bytes, starting `offset` bytes into the buffer. */
function packed(numbers: number[], size: number, offset = 0): Uint8Array {
  const bytes = new Uint8Array(offset + numbers.length * size).subarray(offset);
  numbers.forEach((n, i) => bytes.set(keyBytes(n, size), i * size));
  return bytes;
}

/** How many distinct values `numbers` holds, and how many repeat an earlier one. */
function expectedCounts(numbers: number[]): { distinct: number; duplicates: number } {
  const distinct = new Set(numbers).size;
  return { distinct, duplicates: numbers.length - distinct };
}

/** Key numbers a key of `size` bytes can tell apart (1 and 2 bytes hold only 256 and 65,536). */
function keyRange(size: number): number {
  return size >= 4 ? 0x1_0000_0000 : 2 ** (8 * size);
}

for (const size of KEY_SIZES) {
  Deno.test(`KeySet counts distinct keys and duplicates of ${size}-byte keys`, () => {
    const range = keyRange(size);
    // Spread over the whole range (the bitmap's pages), with repeats near and far apart.
    const numbers: number[] = [];
    for (let i = 0; i < 3000; i++) numbers.push((i * 2_654_435_761) % range);
    numbers.push(...numbers.slice(0, 500), numbers[7], numbers[7], range - 1, 0, range - 1);
    const { distinct, duplicates } = expectedCounts(numbers);
    assert.ok(duplicates >= 503, `the test itself must add duplicates (${duplicates})`);

    const one = new KeySet(size);
    for (const n of numbers) one.add(keyBytes(n, size));
    assert.deepEqual(
      { added: one.added, distinct: one.distinct, duplicates: one.duplicates },
      { added: numbers.length, distinct, duplicates },
      "added one by one",
    );

    for (const offset of [0, 1, 4]) {
      const set = new KeySet(size);
      const bytes = packed(numbers, size, offset);
      // In two batches, so duplicates across batches count too.
      const half = Math.floor(numbers.length / 2);
      set.addPacked(bytes.subarray(0, half * size), half);
      set.addPacked(bytes.subarray(half * size), numbers.length - half);
      assert.deepEqual(
        { added: set.added, distinct: set.distinct, duplicates: set.duplicates },
        { added: numbers.length, distinct, duplicates },
        `packed at byte offset ${offset}`,
      );
    }
  });
}

for (const size of [4, 8, 16, 40]) {
  Deno.test(`KeySet keeps ${size}-byte keys apart that differ in one byte only`, () => {
    const set = new KeySet(size);
    const base = keyBytes(12345, size);
    set.add(base);
    for (let at = 0; at < size; at++) {
      const other = base.slice();
      other[at] ^= 0x80;
      set.add(other);
    }
    assert.equal(set.duplicates, 0);
    assert.equal(set.distinct, size + 1);
    set.add(base.slice());
    assert.equal(set.duplicates, 1, "an equal copy of the first key is a duplicate");
  });
}

Deno.test("KeySet of 4-byte keys: the largest key and keys in far-apart pages", () => {
  const set = new KeySet(4);
  const numbers = [0xffff_ffff, 0, 0x8000_0000, 0xffff, 0x1_0000, 0xffff_ffff, 0x1_0000];
  set.addPacked(packed(numbers, 4), numbers.length);
  assert.equal(set.added, 7);
  assert.equal(set.duplicates, 2);
  assert.equal(set.distinct, 5);
});

Deno.test("KeySet counts nothing for an empty batch", () => {
  for (const size of [4, 16]) {
    const set = new KeySet(size);
    set.addPacked(new Uint8Array(0), 0);
    assert.deepEqual([set.added, set.distinct, set.duplicates], [0, 0, 0]);
  }
});

Deno.test("KeySetInBackground counts what KeySet counts, on another thread", async () => {
  for (const size of [8, 13, 16]) {
    const numbers: number[] = [];
    for (let i = 0; i < 20_000; i++) numbers.push((i * 7919) % 15_000);
    const { distinct, duplicates } = expectedCounts(numbers);
    using keys = KeySetInBackground.start(size, 1000)!;
    assert.ok(keys, "Workers may load their module here");
    const bytes = packed(numbers, size);
    for (let at = 0; at < numbers.length; at += 4096) {
      const count = Math.min(4096, numbers.length - at);
      keys.addPacked(bytes.subarray(at * size), count);
    }
    assert.deepEqual(
      await keys.counts(),
      { added: numbers.length, duplicates },
      `${size}-byte keys`,
    );
    assert.equal(numbers.length - duplicates, distinct);
  }
});
