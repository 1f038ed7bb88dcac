/**
 * Fixtures shared by the BTF tests: a seeded PRNG, the usual integer types added to a
 * builder, the assertion that a call fails with a `BtfError`, and `btf_types.bpf.o` loaded
 * with its maps filled with seeded random entries.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type BtfBuilder, BtfError, type TypeSpec } from "../ffi/btf/mod.ts";
import type { BpfMap } from "../ffi/map/map.ts";
import { BpfObject, builtObjectPath } from "../ffi/map/object.ts";
import { BPF_UNAVAILABLE } from "./_helpers.ts";
import { requiredTest } from "./_probe.ts";

/** A seeded PRNG (mulberry32): the same numbers on every run of a seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The integer types the tests build on, by short name, as clang names them in BTF. */
export const INTS = {
  s8: { kind: "int", name: "signed char", size: 1, encoding: "signed" },
  u8: { kind: "int", name: "unsigned char", size: 1 },
  s16: { kind: "int", name: "short", size: 2, encoding: "signed" },
  u16: { kind: "int", name: "unsigned short", size: 2 },
  s32: { kind: "int", name: "int", size: 4, encoding: "signed" },
  u32: { kind: "int", name: "unsigned int", size: 4 },
  s64: { kind: "int", name: "long long", size: 8, encoding: "signed" },
  u64: { kind: "int", name: "unsigned long long", size: 8 },
  s128: { kind: "int", name: "__int128", size: 16, encoding: "signed" },
  u128: { kind: "int", name: "unsigned __int128", size: 16 },
  bool: { kind: "int", name: "_Bool", size: 1, encoding: "bool" },
  char: { kind: "int", name: "char", size: 1, encoding: "signed" },
  /** A one-byte integer with the `char` encoding. */
  cchar: { kind: "int", name: "xchar", size: 1, encoding: "char" },
} as const satisfies Record<string, TypeSpec>;

/** The short name of an integer of `INTS`. */
export type IntName = keyof typeof INTS;

/** Adds the integers `names` to `b`, in that order; returns their ids by name. */
export function addInts<K extends IntName>(b: BtfBuilder, ...names: K[]): Record<K, number> {
  const ids = {} as Record<K, number>;
  for (const name of names) ids[name] = b.add(INTS[name]);
  return ids;
}

/** Adds every integer of `INTS` to `b`; returns their ids by name. */
export function ints(b: BtfBuilder): Record<IntName, number> {
  return addInts(b, ...Object.keys(INTS) as IntName[]);
}

/** Asserts `fn` throws a `BtfError` matching `pattern` (and at `where`, when given); returns it. */
export function assertBtfError(
  fn: () => unknown,
  pattern: RegExp,
  where: { typeId?: number; offset?: number } = {},
): BtfError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof BtfError, `expected a BtfError, got ${caught}`);
  assert.match(caught.message, pattern);
  assert.equal(caught.name, "BtfError");
  if ("typeId" in where) assert.equal(caught.typeId, where.typeId, caught.message);
  if ("offset" in where) assert.equal(caught.offset, where.offset, caught.message);
  return caught;
}

/** The seed of the random entries (`BTF_KERNEL_SEED`): the same entries on every run of a seed. */
export const SEED = Number(Deno.env.get("BTF_KERNEL_SEED") ?? 0x5eed_b7f);

/** The object whose maps carry BTF of every shape (`bpf/btf_types.bpf.c`). */
export const OBJECT = builtObjectPath("btf_types.bpf.o");

function objectMissing(): string | undefined {
  try {
    Deno.statSync(OBJECT);
    return undefined;
  } catch {
    return `${OBJECT} is missing: build it with "make build/btf_types.bpf.o" (add it to BPF_OBJS in bpf.mk)`;
  }
}
const OBJECT_MISSING = objectMissing();

/** A BPF test that needs the built object too. */
export function objectTest(name: string, fn: () => void | Promise<void>): void {
  requiredTest(name, OBJECT_MISSING ?? BPF_UNAVAILABLE, fn);
}

/** `btf_types.bpf.o`, opened and loaded. */
export function loadObject(): BpfObject {
  const object = BpfObject.open(OBJECT);
  try {
    object.load();
    return object;
  } catch (e) {
    object.close();
    throw e;
  }
}

/** Writes `count` entries of seeded random bytes (keys made by `makeKey` when given). */
export function fillRandom(
  map: BpfMap,
  count: number,
  random: () => number,
  makeKey?: (i: number, bytes: Uint8Array) => void,
): void {
  const key = new Uint8Array(map.keySize);
  const value = new Uint8Array(map.valueBytes);
  for (let i = 0; i < count; i++) {
    for (let j = 0; j < key.length; j++) key[j] = Math.floor(random() * 256);
    for (let j = 0; j < value.length; j++) value[j] = Math.floor(random() * 256);
    makeKey?.(i, key);
    map.update(key, value);
  }
}
