/**
 * Compiled decoders and encoders on BTF made by `BtfBuilder` (no kernel): every kind to its
 * JavaScript value and back, bitfields against a bit-by-bit oracle on random layouts,
 * big-endian data, anonymous members, unions, data sections, the helpers for `char` arrays,
 * the errors an encoder gives for values that do not fit, and the bound on hostile types.
 *
 * @module
 */

import assert from "node:assert/strict";
import { BpfArgumentError } from "../ffi/sys/errors.ts";
import {
  BtfBuilder,
  btfCodec,
  BtfError,
  type BtfType,
  type BtfValue,
  charsToString,
  compileDecoder,
  compileEncoder,
  isCharArray,
  parseBtf,
  sizeof,
  stringToChars,
  type Struct,
} from "../ffi/btf/mod.ts";
import { assertBtfError, ints, prng } from "./_btf_helpers.ts";

/** Encodes then decodes `value` as `type`; returns the bytes and the value read back. */
function roundTrip(type: BtfType, value: BtfValue, littleEndian = true) {
  const size = sizeof(type);
  const view = new DataView(new ArrayBuffer(size + 8));
  compileEncoder(type, { littleEndian })(value, view, 4);
  const bytes = new Uint8Array(view.buffer, 4, size);
  return { bytes: [...bytes], value: compileDecoder(type, { littleEndian })(view, 4) };
}

Deno.test("btf decode: integers of every size, signedness and encoding", () => {
  const b = new BtfBuilder();
  const t = ints(b);
  const btf = parseBtf(b.build());
  const type = (id: number) => btf.typeById(id);
  const cases: [number, BtfValue, number[]][] = [
    [t.s8, -128, [0x80]],
    [t.s8, 127, [0x7f]],
    [t.u8, 255, [0xff]],
    [t.s16, -2, [0xfe, 0xff]],
    [t.u16, 0xbeef, [0xef, 0xbe]],
    [t.s32, -2147483648, [0, 0, 0, 0x80]],
    [t.u32, 0xdeadbeef, [0xef, 0xbe, 0xad, 0xde]],
    [t.s64, -1n, [255, 255, 255, 255, 255, 255, 255, 255]],
    [t.s64, -(2n ** 63n), [0, 0, 0, 0, 0, 0, 0, 0x80]],
    [t.u64, 2n ** 64n - 2n, [0xfe, 255, 255, 255, 255, 255, 255, 255]],
    [t.s128, -(2n ** 127n), [...new Array(15).fill(0), 0x80]],
    [t.u128, 2n ** 128n - 1n, new Array(16).fill(255)],
    [t.u128, 0x0102n << 64n, [0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0]],
    [t.bool, true, [1]],
    [t.bool, false, [0]],
    [t.char, -1, [0xff]],
    [t.cchar, 200, [200]],
  ];
  for (const [id, value, bytes] of cases) {
    const got = roundTrip(type(id), value);
    assert.deepEqual(got.bytes, bytes, `${type(id).name} ${value}`);
    assert.deepEqual(got.value, value, `${type(id).name} ${value}`);
  }
  // A bool byte other than 0 and 1 reads as true.
  const view = new DataView(Uint8Array.of(0x40).buffer);
  assert.equal(compileDecoder(type(t.bool))(view, 0), true);
  // Numbers are accepted for 64-bit integers, bigints for narrow ones.
  assert.deepEqual(roundTrip(type(t.u64), 5).value, 5n);
  assert.deepEqual(roundTrip(type(t.s16), -3n).value, -3);
  assert.deepEqual(roundTrip(type(t.bool), 1).value, true);
});

Deno.test("btf decode: encoders refuse values that do not fit, naming where", () => {
  const b = new BtfBuilder();
  const t = ints(b);
  const arr = b.add({ kind: "array", element: t.u8, index: t.s32, nelems: 3 });
  const inner = b.add({
    kind: "struct",
    name: "inner",
    size: 8,
    members: [{ name: "bytes", type: arr, bitOffset: 0 }, {
      name: "n",
      type: t.s16,
      bitOffset: 32,
    }],
  });
  const outer = b.add({
    kind: "struct",
    name: "outer",
    size: 16,
    members: [
      { name: "in", type: inner, bitOffset: 0 },
      { name: "flag", type: t.u32, bitOffset: 64, bitfieldSize: 3 },
    ],
  });
  const btf = parseBtf(b.build());
  const encode = compileEncoder(btf.typeById(outer));
  const view = new DataView(new ArrayBuffer(16));
  const ok = { in: { bytes: [1, 2, 3], n: -5 }, flag: 7 };
  encode(ok, view, 0);
  const cases: [BtfValue, RegExp][] = [
    [
      { in: { bytes: [1, 2, 256], n: 0 }, flag: 0 },
      /at "in\.bytes\[2\]".*256 does not fit unsigned char \(0 to 255\)/,
    ],
    [{ in: { bytes: [1, 2], n: 0 }, flag: 0 }, /at "in\.bytes".*expected 3 elements, got 2/],
    [{ in: { bytes: "abc", n: 0 }, flag: 0 }, /at "in\.bytes".*expected 3 elements/],
    [{ in: { bytes: [1, 2, 3], n: 40000 }, flag: 0 }, /at "in\.n".*-32768 to 32767/],
    [{ in: { bytes: [1, 2, 3], n: 1.5 }, flag: 0 }, /at "in\.n"/],
    [
      { in: { bytes: [1, 2, 3], n: 0 }, flag: 8 },
      /at "flag".*8 does not fit a 3-bit unsigned integer \(0 to 7\)/,
    ],
    [{ in: { bytes: [1, 2, 3] }, flag: 0 }, /at "in".*missing member "n"/],
    [{ in: { bytes: [1, 2, 3], n: 0, extra: 1 }, flag: 0 }, /unknown member "extra"/],
    [{ in: [1], flag: 0 }, /at "in".*expected an object/],
    [5, /for "struct outer".*expected an object/],
    [{ in: { bytes: [1, 2, 3], n: 0 }, flag: "x" }, /at "flag".*got "x"/],
  ];
  for (const [value, pattern] of cases) {
    assert.throws(() => encode(value, view, 0), (e: unknown) => {
      assert.ok(e instanceof BpfArgumentError, String(e));
      assert.match(e.message, pattern);
      return true;
    });
  }
  assert.throws(() => encode(ok, view, 10), /No room for "struct outer"/);
  const u64 = compileEncoder(btf.typeById(t.u64));
  assert.throws(() => u64(-1n, view, 0), /-1 does not fit .* \(0 to 18446744073709551615\)/);
  assert.throws(() => u64(2 ** 60, view, 0), /expected a bigint/);
  assert.throws(() => compileEncoder(btf.typeById(t.bool))(2, view, 0), /expected a boolean/);
});

Deno.test("btf decode: enums give names when a value matches, else numbers", () => {
  const b = new BtfBuilder();
  const u8e = b.add({
    kind: "enum",
    name: "small",
    size: 1,
    values: [{ name: "ONE", value: 1 }, { name: "BIG", value: 200 }],
  });
  const s16e = b.add({
    kind: "enum",
    name: "half",
    size: 2,
    signed: true,
    values: [{ name: "NEG", value: -3 }, { name: "ALSO_NEG", value: -3 }],
  });
  const u32e = b.add({
    kind: "enum",
    name: "color",
    values: [{ name: "RED", value: 0 }, { name: "TOP", value: 0xffff_fffd }],
  });
  const wide = b.add({
    kind: "enum",
    name: "wide32",
    size: 8,
    values: [{ name: "W", value: 0xffff_fffd }],
  });
  const e64 = b.add({
    kind: "enum64",
    name: "big",
    values: [{ name: "HUGE", value: 0xffff_0000_0000_0001n }],
  });
  const se64 = b.add({
    kind: "enum64",
    name: "sbig",
    signed: true,
    values: [{ name: "MIN", value: -(2n ** 63n) }],
  });
  const e64small = b.add({
    kind: "enum64",
    name: "narrow64",
    size: 4,
    values: [{ name: "N", value: 7n }],
  });
  const btf = parseBtf(b.build());
  const t = (id: number) => btf.typeById(id);
  assert.deepEqual(roundTrip(t(u8e), "BIG"), { bytes: [200], value: "BIG" });
  assert.deepEqual(roundTrip(t(u8e), 7), { bytes: [7], value: 7 });
  assert.deepEqual(roundTrip(t(s16e), "ALSO_NEG"), { bytes: [0xfd, 0xff], value: "NEG" });
  assert.deepEqual(roundTrip(t(s16e), -9), { bytes: [0xf7, 0xff], value: -9 });
  assert.deepEqual(roundTrip(t(u32e), "TOP").value, "TOP");
  assert.deepEqual(roundTrip(t(u32e), 0xffff_fffe).value, 0xffff_fffe);
  assert.deepEqual(roundTrip(t(wide), "W").value, "W");
  assert.deepEqual(roundTrip(t(wide), 9n).value, 9n);
  assert.deepEqual(roundTrip(t(e64), "HUGE").bytes, [1, 0, 0, 0, 0, 0, 0xff, 0xff]);
  assert.deepEqual(roundTrip(t(e64), 3n).value, 3n);
  assert.deepEqual(roundTrip(t(se64), "MIN").value, "MIN");
  assert.deepEqual(roundTrip(t(se64), -2n).value, -2n);
  assert.deepEqual(roundTrip(t(e64small), "N"), { bytes: [7, 0, 0, 0], value: "N" });
  assert.throws(() => roundTrip(t(u8e), "NOPE"), /unknown enumerator "NOPE" of "enum small"/);
  assert.throws(() => roundTrip(t(u8e), 256), /\(0 to 255\)/);
});

Deno.test("btf decode: floats, pointers, arrays and typedefs", () => {
  const b = new BtfBuilder();
  const t = ints(b);
  const f32 = b.add({ kind: "float", name: "float", size: 4 });
  const f64 = b.add({ kind: "float", name: "double", size: 8 });
  const f16 = b.add({ kind: "float", name: "_Float16", size: 2 });
  const f128 = b.add({ kind: "float", name: "long double", size: 16 });
  const ptr = b.add({ kind: "ptr", target: t.u32 });
  const row = b.add({ kind: "array", element: t.s16, index: t.u32, nelems: 3 });
  const grid = b.add({ kind: "array", element: row, index: t.u32, nelems: 2 });
  const td = b.add({ kind: "typedef", name: "grid_t", target: grid });
  const cv = b.add({ kind: "const", target: b.add({ kind: "volatile", target: td }) });
  const empty = b.add({ kind: "array", element: t.u32, index: t.u32, nelems: 0 });
  const btf = parseBtf(b.build());
  const type = (id: number) => btf.typeById(id);
  assert.deepEqual(roundTrip(type(f32), 1.5), { bytes: [0, 0, 0xc0, 0x3f], value: 1.5 });
  assert.deepEqual(roundTrip(type(f64), -0.25).value, -0.25);
  assert.ok(Number.isNaN(roundTrip(type(f64), NaN).value));
  assert.deepEqual(roundTrip(type(f16), Uint8Array.of(1, 2)).value, Uint8Array.of(1, 2));
  assert.deepEqual(roundTrip(type(f128), new Uint8Array(16).fill(9)).bytes, new Array(16).fill(9));
  assert.throws(() => roundTrip(type(f16), 1.5), /Uint8Array of 2 bytes/);
  assert.throws(() => roundTrip(type(f32), 1n), /expected a number/);
  assert.deepEqual(roundTrip(type(ptr), 0xffff_8000_1234_5678n).value, 0xffff_8000_1234_5678n);
  const g = [[1, -2, 3], [-4, 5, -32768]];
  const got = roundTrip(type(cv), g);
  assert.deepEqual(got.value, g);
  assert.deepEqual(got.bytes.slice(0, 4), [1, 0, 0xfe, 0xff]);
  assert.deepEqual(roundTrip(type(empty), []).value, []);
  // Typed arrays are array-likes too.
  const typed = Int16Array.of(7, 8, 9) as unknown as BtfValue;
  assert.deepEqual(roundTrip(type(row), typed).value, [7, 8, 9]);
});

Deno.test("btf decode: char arrays stay numbers; the helpers turn them into strings", () => {
  const b = new BtfBuilder();
  const t = ints(b);
  const name = b.add({ kind: "array", element: t.char, index: t.u32, nelems: 8 });
  const bytes = b.add({ kind: "array", element: t.u8, index: t.u32, nelems: 4 });
  const xchars = b.add({ kind: "array", element: t.cchar, index: t.u32, nelems: 4 });
  const tdChar = b.add({ kind: "typedef", name: "mychar", target: t.char });
  const viaTypedef = b.add({ kind: "array", element: tdChar, index: t.u32, nelems: 4 });
  const btf = parseBtf(b.build());
  const nameType = btf.typeById(name);
  const chars = stringToChars("héllo", nameType);
  assert.deepEqual(chars, [104, -61, -87, 108, 108, 111, 0, 0]);
  const got = roundTrip(nameType, chars);
  assert.deepEqual(got.value, chars);
  assert.equal(charsToString(got.value as number[]), "héllo");
  assert.equal(charsToString([65, 66, 0, 67]), "AB");
  assert.equal(charsToString([65, 66]), "AB");
  assert.deepEqual(stringToChars("ab", btf.typeById(bytes)), [97, 98, 0, 0]);
  assert.throws(() => stringToChars("12345678", nameType), /does not fit/);
  assert.throws(() => stringToChars("x", btf.typeById(t.u32)), /not an array/);
  assert.equal(isCharArray(nameType), true);
  assert.equal(isCharArray(btf.typeById(xchars)), true);
  assert.equal(isCharArray(btf.typeById(bytes)), false);
  // bpftool does not look through typedefs of char: neither does isCharArray.
  assert.equal(isCharArray(btf.typeById(viaTypedef)), false);
});

Deno.test("btf decode: anonymous members merge into their parent; unions take any member", () => {
  const b = new BtfBuilder();
  const t = ints(b);
  const pair = b.add({
    kind: "struct",
    size: 4,
    members: [{ name: "lo", type: t.u16, bitOffset: 0 }, {
      name: "hi",
      type: t.u16,
      bitOffset: 16,
    }],
  });
  const word = b.add({
    kind: "union",
    name: "word",
    size: 4,
    members: [
      { name: "w", type: t.u32, bitOffset: 0 },
      { type: pair, bitOffset: 0 },
    ],
  });
  const anonUnion = b.add({
    kind: "union",
    size: 8,
    members: [{ name: "as_u64", type: t.u64, bitOffset: 0 }, {
      name: "as_word",
      type: word,
      bitOffset: 0,
    }],
  });
  const outer = b.add({
    kind: "struct",
    name: "outer",
    size: 16,
    members: [
      { name: "kind", type: t.u8, bitOffset: 0 },
      { type: t.u8, bitOffset: 8, bitfieldSize: 3 }, // unnamed padding bits
      { type: anonUnion, bitOffset: 64 },
    ],
  });
  const clash = b.add({
    kind: "struct",
    name: "clash",
    size: 8,
    members: [{ name: "lo", type: t.u32, bitOffset: 0 }, { type: pair, bitOffset: 32 }],
  });
  const btf = parseBtf(b.build());
  const w = btf.typeById(word);
  assert.deepEqual(roundTrip(w, { w: 0x11223344 }).value, {
    w: 0x11223344,
    lo: 0x3344,
    hi: 0x1122,
  });
  // Several members given: all are written in declaration order, the later ones win.
  assert.deepEqual(roundTrip(w, { w: 0xffffffff, hi: 0 }).value, { w: 0xffff, lo: 0xffff, hi: 0 });
  assert.deepEqual(roundTrip(w, { lo: 1 }).value, { w: 1, lo: 1, hi: 0 });
  assert.throws(() => roundTrip(w, {}), /expected an object with one of "w", "lo", "hi"/);
  const o = btf.typeById(outer);
  // Members of anonymous unions are optional in the parent; the others are not.
  const got = roundTrip(o, { kind: 3, as_u64: 0x0102_0304_0506_0708n });
  assert.deepEqual(got.value, {
    kind: 3,
    as_u64: 0x0102_0304_0506_0708n,
    as_word: { w: 0x05060708, lo: 0x0708, hi: 0x0506 },
  });
  assert.deepEqual(got.bytes.slice(0, 8), [3, 0, 0, 0, 0, 0, 0, 0]);
  assert.throws(() => roundTrip(o, { as_u64: 1n }), /missing member "kind"/);
  assertBtfError(() => compileDecoder(btf.typeById(clash)), /two members named "lo"/, {
    typeId: clash,
  });
});

Deno.test("btf decode: data sections decode by variable name", () => {
  const b = new BtfBuilder();
  const t = ints(b);
  const count = b.add({ kind: "var", name: "count", type: t.u32 });
  const total = b.add({ kind: "var", name: "total", type: t.s64 });
  const proto = b.add({ kind: "func_proto", returns: 0, params: [] });
  const ksym = b.add({ kind: "func", name: "ksym", proto, linkage: "extern" });
  const sec = b.add({
    kind: "datasec",
    name: ".data",
    size: 16,
    vars: [
      { type: count, offset: 0, size: 4 },
      { type: ksym, offset: 4, size: 0 },
      { type: total, offset: 8, size: 8 },
    ],
  });
  const btf = parseBtf(b.build());
  const got = roundTrip(btf.typeById(sec), { count: 7, total: -1n });
  assert.deepEqual(got.value, { count: 7, total: -1n });
  assert.deepEqual(got.bytes, [7, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255]);
  assert.equal(roundTrip(btf.typeById(count), 9).value, 9);
});

Deno.test("btf decode: padding and holes are zeroed by the encoder", () => {
  const b = new BtfBuilder();
  const t = ints(b);
  const s = b.add({
    kind: "struct",
    name: "holes",
    size: 16,
    members: [{ name: "a", type: t.u8, bitOffset: 0 }, { name: "b", type: t.u32, bitOffset: 32 }],
  });
  const btf = parseBtf(b.build());
  const bytes = new Uint8Array(20).fill(0xee);
  btfCodec(btf.typeById(s)).encode({ a: 1, b: 2 }, bytes.subarray(2));
  assert.deepEqual([...bytes], [
    0xee,
    0xee,
    1,
    0,
    0,
    0,
    2,
    0,
    0,
    0,
    ...new Array(8).fill(0),
    0xee,
    0xee,
  ]);
});

Deno.test("btf decode: big-endian data reads as big-endian, bitfields from the top bit", () => {
  const make = (littleEndian: boolean) => {
    const b = new BtfBuilder({ littleEndian });
    const t = ints(b);
    const s = b.add({
      kind: "struct",
      name: "be",
      size: 16,
      members: [
        { name: "a", type: t.u32, bitOffset: 0, bitfieldSize: 4 },
        { name: "b", type: t.s32, bitOffset: 4, bitfieldSize: 12 },
        { name: "c", type: t.u16, bitOffset: 32 },
        { name: "d", type: t.u64, bitOffset: 64 },
      ],
    });
    return parseBtf(b.build()).typeById(s);
  };
  const value = { a: 0xa, b: -2, c: 0x1234, d: 0x0102_0304_0506_0708n };
  const be = roundTrip(make(false), value, false);
  assert.deepEqual(be.value, value);
  // a: the top 4 bits of byte 0; b: the next 12 bits (0xffe).
  assert.deepEqual(be.bytes.slice(0, 2), [0xaf, 0xfe]);
  assert.deepEqual(be.bytes.slice(4, 6), [0x12, 0x34]);
  assert.deepEqual(be.bytes.slice(8), [1, 2, 3, 4, 5, 6, 7, 8]);
  const le = roundTrip(make(true), value);
  assert.deepEqual(le.value, value);
  // a: the low 4 bits of byte 0; b from bit 4: 0xffe << 4.
  assert.deepEqual(le.bytes.slice(0, 2), [0xea, 0xff]);
});

/** What a bitfield of `bits` bits at `bitOffset` holds in `bytes` (little-endian), bit by bit. */
function oracle(bytes: Uint8Array, bitOffset: number, bits: number, signed: boolean): bigint {
  let x = 0n;
  for (let i = bits - 1; i >= 0; i--) {
    const bit = bitOffset + i;
    x = (x << 1n) | BigInt((bytes[bit >> 3] >> (bit & 7)) & 1);
  }
  return signed ? BigInt.asIntN(bits, x) : x;
}

Deno.test("btf decode: bitfields match a bit-by-bit oracle on 500 random layouts", () => {
  const random = prng(0xb17f);
  const pick = <T>(items: readonly T[]) => items[Math.floor(random() * items.length)];
  for (let layout = 0; layout < 500; layout++) {
    const b = new BtfBuilder();
    const t = ints(b);
    const e = b.add({
      kind: "enum",
      name: "e",
      size: 4,
      signed: true,
      values: [{ name: "A", value: 1 }, { name: "M", value: -1 }],
    });
    const legacy = b.add({ kind: "int", name: "bits5", size: 2, bits: 5, offset: 3 });
    const bases = [
      [t.u8, 8, false],
      [t.s8, 8, true],
      [t.u16, 16, false],
      [t.s32, 32, true],
      [t.u32, 32, false],
      [t.u64, 64, false],
      [t.s64, 64, true],
      [t.u128, 128, false],
      [e, 32, true],
      [t.bool, 8, false],
    ] as const;
    const members: { name: string; type: number; bitOffset: number; bitfieldSize?: number }[] = [];
    const expected: { name: string; bit: number; bits: number; signed: boolean; kind: string }[] =
      [];
    let bit = 0;
    const count = 1 + Math.floor(random() * 8);
    for (let i = 0; i < count; i++) {
      const [type, width, signed] = pick(bases);
      const bits = type === t.bool ? 1 : 1 + Math.floor(random() * width);
      bit += Math.floor(random() * 9);
      members.push({ name: `m${i}`, type, bitOffset: bit, bitfieldSize: bits });
      const kind = type === e ? "enum" : type === t.bool ? "bool" : width > 32 ? "big" : "number";
      expected.push({ name: `m${i}`, bit, bits, signed, kind });
      bit += bits;
    }
    if (random() < 0.5) {
      // A whole member of an INT type of 5 bits at bit 3 of its 2 bytes.
      bit = Math.ceil(bit / 8) * 8;
      members.push({ name: "legacy", type: legacy, bitOffset: bit });
      expected.push({ name: "legacy", bit: bit + 3, bits: 5, signed: false, kind: "number" });
      bit += 16;
    }
    const size = Math.ceil(bit / 8) + Math.floor(random() * 3);
    const s = b.add({ kind: "struct", name: "s", size, members, kflag: true });
    let btf;
    try {
      btf = parseBtf(b.build());
    } catch (error) {
      assert.fail(`layout ${layout}: ${error}`);
    }
    const codec = btfCodec(btf.typeById(s));
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i++) bytes[i] = Math.floor(random() * 256);
    const value = codec.decode(bytes) as Record<string, BtfValue>;
    for (const x of expected) {
      const want = oracle(bytes, x.bit, x.bits, x.signed);
      const got = value[x.name];
      switch (x.kind) {
        case "bool":
          assert.equal(got, want !== 0n, `${layout} ${x.name}`);
          break;
        case "enum":
          assert.equal(got, want === 1n ? "A" : want === -1n ? "M" : Number(want), `${x.name}`);
          break;
        case "big":
          assert.equal(got, want, `${layout} ${x.name}`);
          break;
        default:
          assert.equal(got, Number(want), `${layout} ${x.name} ${JSON.stringify(x)}`);
      }
    }
    // Encoding the decoded value gives back every bit the members cover, and zeros elsewhere.
    const again = new Uint8Array(size);
    codec.encode(value, again);
    for (const x of expected) {
      const want = oracle(bytes, x.bit, x.bits, false);
      const got = oracle(again, x.bit, x.bits, false);
      if (x.kind === "bool") assert.equal(got, want !== 0n ? 1n : 0n);
      else assert.equal(got, want, `layout ${layout} member ${x.name}`);
    }
    assert.deepEqual(codec.decode(again), value);
  }
});

Deno.test("btf decode: old-style bitfields (no kind_flag, an INT of few bits at a bit offset)", () => {
  const b = new BtfBuilder();
  const t = ints(b);
  const three = b.add({ kind: "int", name: "int", size: 4, encoding: "signed", bits: 3 });
  const nine = b.add({ kind: "int", name: "unsigned int", size: 4, bits: 9, offset: 2 });
  const s = b.add({
    kind: "struct",
    name: "old",
    size: 8,
    kflag: false,
    members: [
      { name: "a", type: t.u8, bitOffset: 0 },
      { name: "b", type: three, bitOffset: 13 },
      { name: "c", type: nine, bitOffset: 16 },
    ],
  });
  const type = parseBtf(b.build()).typeById(s);
  const bytes = Uint8Array.of(0x5a, 0b1100_0000, 0b1111_1100, 0b0000_0111, 0, 0, 0, 0);
  // b: bits 13..15 = 0b110 = -2 signed; c: bits 18..26 = 0b1_1111_1111 = 511.
  const value = btfCodec(type).decode(bytes);
  assert.deepEqual(value, { a: 0x5a, b: -2, c: 511 });
  assert.equal(oracle(bytes, 13, 3, true), -2n);
  assert.equal(oracle(bytes, 18, 9, false), 511n);
  const again = new Uint8Array(8);
  btfCodec(type).encode(value, again);
  assert.deepEqual(again, bytes);
});

Deno.test("btf decode: types without values and hostile types fail at compile time", () => {
  const b = new BtfBuilder();
  const t = ints(b);
  const fwd = b.add({ kind: "fwd", name: "f" });
  const proto = b.add({ kind: "func_proto", returns: 0, params: [] });
  const func = b.add({ kind: "func", name: "fn", proto });
  const empty = b.add({ kind: "struct", name: "empty", size: 0, members: [] });
  const huge = b.add({ kind: "array", element: empty, index: t.u32, nelems: 0xffff_ffff });
  const wide = b.add({ kind: "array", element: t.u8, index: t.u32, nelems: 1 << 20 });
  const btf = parseBtf(b.build());
  for (const id of [0, fwd, proto, func]) {
    assert.throws(() => compileDecoder(btf.typeById(id)), BtfError);
    assert.throws(() => compileEncoder(btf.typeById(id)), BtfError);
  }
  const started = performance.now();
  assert.throws(() => compileDecoder(btf.typeById(huge)), /steps to decode, more than/);
  assert.ok(performance.now() - started < 100);
  assert.equal(typeof compileDecoder(btf.typeById(wide)), "function");
  assert.throws(() => compileDecoder(btf.typeById(wide), { maxSteps: 1000 }), /more than the 1000/);
  // A struct of structs of ... (fan-out 64, depth 4: 16M leaves) is refused, not expanded.
  const b2 = new BtfBuilder();
  let inner = b2.add({ kind: "int", name: "char", size: 1 });
  for (let depth = 0; depth < 4; depth++) {
    inner = b2.add({
      kind: "union",
      size: 1,
      members: Array.from({ length: 64 }, (_, i) => ({ name: `m${i}`, type: inner, bitOffset: 0 })),
    });
  }
  const fan = parseBtf(b2.build()).typeById(inner);
  assert.throws(() => compileDecoder(fan, { maxSteps: 1 << 20 }), /steps to decode/);
});

Deno.test("btf decode: codecs read views at any offset and refuse short ones", () => {
  const b = new BtfBuilder();
  const t = ints(b);
  const s = b.add({
    kind: "struct",
    name: "kv",
    size: 8,
    members: [{ name: "k", type: t.u32, bitOffset: 0 }, { name: "v", type: t.s32, bitOffset: 32 }],
  });
  const btf = parseBtf(b.build());
  const codec = btfCodec(btf.typeById(s));
  assert.equal(codec.size, 8);
  assert.equal(codec.type, btf.typeById(s));
  const batch = new Uint8Array(8 * 4);
  for (let i = 0; i < 4; i++) codec.encode({ k: i, v: -i + 0 }, batch.subarray(i * 8, i * 8 + 8));
  for (let i = 0; i < 4; i++) {
    assert.deepEqual(codec.decode(batch.subarray(i * 8)), { k: i, v: -i + 0 });
  }
  assert.deepEqual(codec.decodeAt(new DataView(batch.buffer), 16), { k: 2, v: -2 });
  assert.throws(() => codec.decode(new Uint8Array(7)), BpfArgumentError);
  assert.throws(() => codec.encode({ k: 1, v: 1 }, new Uint8Array(4)), BpfArgumentError);
  // Memoized per type.
  assert.equal(compileDecoder(btf.typeById(s)), compileDecoder(btf.typeById(s)));
  assert.notEqual(
    compileDecoder(btf.typeById(s)),
    compileDecoder(btf.typeById(s), { littleEndian: false }),
  );
});

Deno.test("btf decode: a compiled decoder reads a million 32-byte entries quickly", () => {
  const b = new BtfBuilder();
  const t = ints(b);
  const name = b.add({ kind: "array", element: t.char, index: t.u32, nelems: 8 });
  const s = b.add({
    kind: "struct",
    name: "entry",
    size: 32,
    members: [
      { name: "id", type: t.u32, bitOffset: 0 },
      { name: "flags", type: t.u32, bitOffset: 32, bitfieldSize: 5 },
      { name: "name", type: name, bitOffset: 64 },
      { name: "bytes", type: t.u64, bitOffset: 128 },
      { name: "delta", type: t.s32, bitOffset: 192 },
    ],
  });
  const type = parseBtf(b.build()).typeById(s) as Struct;
  const decode = compileDecoder(type);
  const n = 1_000_000;
  const data = new Uint8Array(n * 32);
  const view = new DataView(data.buffer);
  let sink = 0;
  const started = performance.now();
  for (let i = 0; i < n; i++) {
    const v = decode(view, i * 32) as { id: number };
    sink += v.id;
  }
  const ms = performance.now() - started;
  console.log(`decoded ${n} entries in ${ms.toFixed(0)} ms (${(n / ms * 1000).toFixed(0)}/s)`);
  assert.equal(sink, 0);
  assert.ok(ms < 10_000);
});
