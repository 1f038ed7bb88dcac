/**
 * `parseBtf` on BTF made by `BtfBuilder`: every kind to its object, ids resolved, split BTF
 * on a base, big-endian BTF, `sizeof` and `typeName`; and each check of the header, the
 * strings, the records and the graph, one malformed input each, failing as a `BtfError`
 * that says what and where. No kernel needed.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  BTF_HEADER,
  BTF_MAX_VLEN,
  BtfBuilder,
  BtfError,
  BtfKind,
  isSized,
  MAX_NESTING,
  parseBtf,
  sizeof,
  type Struct,
  typeName,
  underlying,
  VOID,
} from "../ffi/btf/mod.ts";
import { makeInfo } from "../ffi/btf/layout.ts";
import { addInts, assertBtfError } from "./_btf_helpers.ts";

/** A builder with the usual integer types; returns it and their ids. */
function basics(options: { littleEndian?: boolean } = {}) {
  const b = new BtfBuilder(options);
  const { s32: int, u32, char, u64 } = addInts(b, "s32", "u32", "char", "u64");
  return { b, int, u32, char, u64 };
}

function setU32(bytes: Uint8Array, offset: number, value: number, le = true): Uint8Array {
  const copy = bytes.slice();
  new DataView(copy.buffer).setUint32(offset, value >>> 0, le);
  return copy;
}

function u32At(bytes: Uint8Array, offset: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset).getUint32(offset, true);
}

const H = BTF_HEADER.fields;
const HDR = 24;

Deno.test("btf parse: every kind becomes its object, with ids resolved", () => {
  const { b, int, u32, char, u64 } = basics();
  const bool = b.add({ kind: "int", name: "_Bool", size: 1, encoding: "bool" });
  const uchar = b.add({ kind: "int", name: "uchar", size: 1, encoding: "char" });
  const ptr = b.add({ kind: "ptr", target: char });
  const voidPtr = b.add({ kind: "ptr", target: 0 });
  const arr = b.add({ kind: "array", element: u32, index: int, nelems: 3 });
  const fwd = b.add({ kind: "fwd", name: "later", fwdKind: "union" });
  const point = b.add({
    kind: "struct",
    name: "point",
    size: 16,
    members: [
      { name: "x", type: int, bitOffset: 0 },
      { name: "flags", type: u32, bitOffset: 32, bitfieldSize: 3 },
      { name: "next", type: ptr, bitOffset: 64 },
    ],
  });
  const un = b.add({
    kind: "union",
    name: "either",
    size: 8,
    members: [{ name: "a", type: u32, bitOffset: 0 }, { name: "b", type: u64, bitOffset: 0 }],
  });
  const color = b.add({
    kind: "enum",
    name: "color",
    size: 4,
    signed: true,
    values: [{ name: "RED", value: -1 }, { name: "GREEN", value: 7 }],
  });
  const ucolor = b.add({
    kind: "enum",
    name: "ucolor",
    size: 1,
    values: [{ name: "HIGH", value: 200 }],
  });
  const e64 = b.add({
    kind: "enum64",
    name: "wide",
    values: [{ name: "BIG", value: 0xffff_ffff_ffff_fff0n }],
  });
  const se64 = b.add({
    kind: "enum64",
    name: "swide",
    signed: true,
    values: [{ name: "NEG", value: -5_000_000_000n }],
  });
  const td = b.add({ kind: "typedef", name: "point_t", target: point });
  const vol = b.add({ kind: "volatile", target: int });
  const cnst = b.add({ kind: "const", target: vol });
  const restr = b.add({ kind: "restrict", target: ptr });
  const proto = b.add({
    kind: "func_proto",
    returns: int,
    params: [{ name: "p", type: ptr }, { name: "n", type: u32 }],
    variadic: true,
  });
  const func = b.add({ kind: "func", name: "printish", proto, linkage: "global" });
  const v = b.add({ kind: "var", name: "counter", type: u64, linkage: "static" });
  const sec = b.add({
    kind: "datasec",
    name: ".data",
    size: 16,
    vars: [{ type: v, offset: 8, size: 8 }],
  });
  const dbl = b.add({ kind: "float", name: "double", size: 8 });
  const tag = b.add({ kind: "decl_tag", name: "kfunc", target: func, componentIdx: 1 });
  const ttag = b.add({ kind: "type_tag", name: "user", target: char });
  const btf = parseBtf(b.build());

  assert.equal(btf.firstId, 1);
  assert.equal(btf.typeCount, ttag + 1);
  assert.equal(btf.types.length, ttag);
  assert.equal(btf.typeById(0), VOID);
  assert.deepEqual(btf.typeById(int), {
    kind: "int",
    id: int,
    name: "int",
    size: 4,
    encoding: "signed",
    offset: 0,
    bits: 32,
  });
  assert.equal(btf.typeById(bool).kind === "int" && btf.typeById(bool), btf.typeById(bool));
  assert.equal((btf.typeById(bool) as { encoding: string }).encoding, "bool");
  assert.equal((btf.typeById(uchar) as { encoding: string }).encoding, "char");
  const p = btf.typeById(ptr);
  assert.ok(p.kind === "ptr" && p.target === btf.typeById(char) && p.size === 8);
  const vp = btf.typeById(voidPtr);
  assert.ok(vp.kind === "ptr" && vp.target === VOID);
  const a = btf.typeById(arr);
  assert.ok(a.kind === "array" && a.element === btf.typeById(u32) && a.nelems === 3);
  assert.equal(a.size, 12);
  assert.equal(a.index, btf.typeById(int));
  assert.deepEqual(btf.typeById(fwd), { kind: "fwd", id: fwd, name: "later", fwdKind: "union" });
  const s = btf.typeById(point) as Struct;
  assert.equal(s.kind, "struct");
  assert.deepEqual(
    s.members.map((m) => [m.name, m.type.id, m.bitOffset, m.bitfieldSize]),
    [["x", int, 0, 0], ["flags", u32, 32, 3], ["next", ptr, 64, 0]],
  );
  const u = btf.typeById(un);
  assert.ok(u.kind === "union" && u.members.length === 2 && u.size === 8);
  assert.deepEqual(btf.typeById(color), {
    kind: "enum",
    id: color,
    name: "color",
    size: 4,
    signed: true,
    values: [{ name: "RED", value: -1 }, { name: "GREEN", value: 7 }],
  });
  const uc = btf.typeById(ucolor);
  assert.ok(uc.kind === "enum" && !uc.signed && uc.values[0].value === 200 && uc.size === 1);
  const w = btf.typeById(e64);
  assert.ok(w.kind === "enum64" && w.values[0].value === 0xffff_ffff_ffff_fff0n);
  const sw = btf.typeById(se64);
  assert.ok(sw.kind === "enum64" && sw.signed && sw.values[0].value === -5_000_000_000n);
  const t = btf.typeById(td);
  assert.ok(t.kind === "typedef" && t.target === s);
  const c = btf.typeById(cnst);
  assert.ok(c.kind === "const" && c.target === btf.typeById(vol));
  assert.equal(underlying(c), btf.typeById(int));
  assert.equal(btf.typeById(restr).kind, "restrict");
  const fp = btf.typeById(proto);
  assert.ok(fp.kind === "func_proto" && fp.variadic && fp.params.length === 2);
  assert.deepEqual(fp.params.map((x) => x.name), ["p", "n"]);
  const f = btf.typeById(func);
  assert.ok(f.kind === "func" && f.proto === fp && f.linkage === "global");
  const vv = btf.typeById(v);
  assert.ok(vv.kind === "var" && vv.linkage === "static" && vv.type === btf.typeById(u64));
  const ds = btf.typeById(sec);
  assert.ok(ds.kind === "datasec" && ds.vars[0].type === vv && ds.vars[0].offset === 8);
  assert.deepEqual(btf.typeById(dbl), { kind: "float", id: dbl, name: "double", size: 8 });
  const dt = btf.typeById(tag);
  assert.ok(dt.kind === "decl_tag" && dt.target === f && dt.componentIdx === 1);
  const tt = btf.typeById(ttag);
  assert.ok(tt.kind === "type_tag" && tt.name === "user");

  // Names, lookups.
  assert.equal(btf.find("struct", "point"), s);
  assert.equal(btf.find("union", "point"), undefined);
  assert.deepEqual(btf.findAll("point_t"), [t]);
  assert.equal(btf.string(0), "");
  assert.throws(() => btf.typeById(btf.typeCount), BtfError);
  assert.throws(() => btf.typeById(-1), BtfError);
  assert.throws(() => btf.typeById(1.5), BtfError);
});

Deno.test("btf parse: sizeof follows typedefs and qualifiers; unsized kinds throw", () => {
  const { b, int, char } = basics();
  const arr = b.add({ kind: "array", element: char, index: int, nelems: 10 });
  const arr2 = b.add({ kind: "array", element: arr, index: int, nelems: 3 });
  const td = b.add({ kind: "typedef", name: "name_t", target: arr2 });
  const c = b.add({ kind: "const", target: td });
  const fwd = b.add({ kind: "fwd", name: "x" });
  const proto = b.add({ kind: "func_proto", returns: 0, params: [] });
  const flex = b.add({ kind: "array", element: int, index: int, nelems: 0 });
  const btf = parseBtf(b.build());
  assert.equal(sizeof(btf.typeById(c)), 30);
  assert.equal(sizeof(btf.typeById(flex)), 0);
  assert.equal(isSized(btf.typeById(fwd)), false);
  for (const id of [0, fwd, proto]) {
    assertBtfError(() => sizeof(btf.typeById(id)), /has no size/);
  }
});

Deno.test("btf parse: typeName prints C declarations", () => {
  const { b, int, u32, char } = basics();
  const cchar = b.add({ kind: "const", target: char });
  const str = b.add({ kind: "ptr", target: cchar });
  const constPtr = b.add({ kind: "const", target: b.add({ kind: "ptr", target: char }) });
  const arr = b.add({ kind: "array", element: int, index: int, nelems: 2 });
  const arr2 = b.add({ kind: "array", element: arr, index: int, nelems: 4 });
  const ptrArr = b.add({ kind: "ptr", target: arr });
  const proto = b.add({
    kind: "func_proto",
    returns: int,
    params: [{ name: "a", type: str }, { name: "b", type: u32 }],
    variadic: true,
  });
  const fptr = b.add({ kind: "ptr", target: proto });
  const noArgs = b.add({
    kind: "ptr",
    target: b.add({ kind: "func_proto", returns: 0, params: [] }),
  });
  const anon = b.add({ kind: "struct", size: 0, members: [] });
  const named = b.add({ kind: "union", name: "u", size: 0, members: [] });
  const e = b.add({ kind: "enum", name: "e", values: [] });
  const func = b.add({ kind: "func", name: "do_it", proto });
  const tagged = b.add({
    kind: "ptr",
    target: b.add({ kind: "type_tag", name: "user", target: char }),
  });
  const v = b.add({ kind: "var", name: "count", type: u32 });
  const btf = parseBtf(b.build());
  const name = (id: number) => typeName(btf.typeById(id));
  assert.equal(name(0), "void");
  assert.equal(name(str), "const char *");
  assert.equal(name(constPtr), "char *const");
  assert.equal(name(arr2), "int[4][2]");
  assert.equal(name(ptrArr), "int (*)[2]");
  assert.equal(name(fptr), "int (*)(const char *, unsigned int, ...)");
  assert.equal(name(noArgs), "void (*)(void)");
  assert.equal(name(anon), "struct (anon)");
  assert.equal(name(named), "union u");
  assert.equal(name(e), "enum e");
  assert.equal(name(func), "int do_it(const char *, unsigned int, ...)");
  assert.equal(name(tagged), '__attribute__((btf_type_tag("user"))) char *');
  assert.equal(name(v), "unsigned int count");
  assert.equal(typeName(btf.typeById(u32), "x"), "unsigned int x");
});

Deno.test("btf parse: typeName stays short on graphs that would expand exponentially", () => {
  // p0 = int (*)(void); p(k+1) = int (*)(pk, pk): a name of 2^40 parts, unless bounded.
  const { b, int } = basics();
  let ptr = b.add({ kind: "ptr", target: b.add({ kind: "func_proto", returns: int, params: [] }) });
  for (let i = 0; i < 40; i++) {
    const proto = b.add({
      kind: "func_proto",
      returns: int,
      params: [{ type: ptr }, { type: ptr }],
    });
    ptr = b.add({ kind: "ptr", target: proto });
  }
  const btf = parseBtf(b.build());
  const started = performance.now();
  const name = typeName(btf.typeById(ptr));
  assert.ok(performance.now() - started < 100);
  assert.ok(name.length < 5000, `${name.length} characters`);
  assert.match(name, /\.\.\./);
});

Deno.test("btf parse: legitimate cycles through pointers to structs parse", () => {
  const { b, int } = basics();
  // struct node { int v; struct node *next; node_t *prev; void (*cb)(struct node *); }
  // with typedef const struct node node_t;
  const node = b.nextId;
  const [next, td, prev, cnst, proto, cb] = [1, 2, 3, 4, 5, 6].map((i) => node + i);
  b.add({
    kind: "struct",
    name: "node",
    size: 32,
    members: [
      { name: "v", type: int, bitOffset: 0 },
      { name: "next", type: next, bitOffset: 64 },
      { name: "prev", type: prev, bitOffset: 128 },
      { name: "cb", type: cb, bitOffset: 192 },
    ],
  });
  assert.equal(b.add({ kind: "ptr", target: node }), next);
  assert.equal(b.add({ kind: "typedef", name: "node_t", target: cnst }), td);
  assert.equal(b.add({ kind: "ptr", target: td }), prev);
  assert.equal(b.add({ kind: "const", target: node }), cnst);
  assert.equal(b.add({ kind: "func_proto", returns: 0, params: [{ type: next }] }), proto);
  assert.equal(b.add({ kind: "ptr", target: proto }), cb);
  const btf = parseBtf(b.build());
  const s = btf.find("struct", "node")!;
  const n = s.members[1].type;
  assert.ok(n.kind === "ptr" && n.target === s);
  assert.equal(typeName(s.members[2].type), "node_t *");
  const typedef = btf.typeById(td);
  assert.ok(typedef.kind === "typedef" && typeName(typedef.target) === "const struct node");
  assert.equal(typeName(s.members[3].type), "void (*)(struct node *)");
});

Deno.test("btf parse: split BTF continues the base's ids and strings", () => {
  const { b, int, char } = basics();
  const baseStruct = b.add({
    kind: "struct",
    name: "base_s",
    size: 4,
    members: [{ name: "i", type: int, bitOffset: 0 }],
  });
  const base = parseBtf(b.build());
  const s = new BtfBuilder({ base });
  assert.equal(s.nextId, base.typeCount);
  const ptr = s.add({ kind: "ptr", target: baseStruct });
  const own = s.add({
    kind: "struct",
    name: "split_s",
    size: 16,
    members: [
      { name: "i", type: int, bitOffset: 0 }, // "i" is reused from the base's strings
      { name: "p", type: ptr, bitOffset: 64 },
    ],
  });
  const tdChar = s.add({ kind: "typedef", name: "char", target: char });
  const raw = s.build();
  const split = parseBtf(raw, { base });
  assert.equal(split.firstId, base.typeCount);
  assert.equal(split.types.length, 3);
  assert.equal(split.typeById(int), base.typeById(int));
  const o = split.typeById(own);
  assert.ok(o.kind === "struct" && o.name === "split_s");
  assert.equal(o.members[0].name, "i");
  assert.equal(o.members[0].type, base.typeById(int));
  const p = o.members[1].type;
  assert.ok(p.kind === "ptr" && p.target === base.typeById(baseStruct));
  assert.equal(split.find("struct", "base_s"), base.typeById(baseStruct));
  assert.deepEqual(split.findAll("char").map((t) => t.id), [tdChar, char]);
  assert.equal(split.stringsLength > base.stringsLength, true);
  // Without its base, split BTF does not parse: its strings and ids lean on the base's.
  assertBtfError(() => parseBtf(raw), /string section|out of range|name offset|type id/);
  // Nor on a base of the other byte order.
  const beBase = parseBtf(basics({ littleEndian: false }).b.build());
  assertBtfError(() => parseBtf(raw, { base: beBase }), /byte order/);
});

Deno.test("btf parse: big-endian BTF parses to the same graph", () => {
  const make = (littleEndian: boolean) => {
    const { b, int, u64 } = basics({ littleEndian });
    b.add({
      kind: "struct",
      name: "s",
      size: 16,
      members: [
        { name: "a", type: int, bitOffset: 0, bitfieldSize: 7 },
        { name: "b", type: u64, bitOffset: 64 },
      ],
    });
    b.add({ kind: "enum64", name: "e", values: [{ name: "X", value: 0x1_0000_0002n }] });
    return b.build();
  };
  const le = parseBtf(make(true));
  const be = parseBtf(make(false));
  assert.equal(le.littleEndian, true);
  assert.equal(be.littleEndian, false);
  assert.notDeepEqual(make(true), make(false));
  assert.deepEqual(be.types, le.types);
});

Deno.test("btf parse: pointer size comes from the long type when there is one", () => {
  const b = new BtfBuilder();
  b.add({ kind: "int", name: "long int", size: 4, encoding: "signed" });
  const ptr = b.add({ kind: "ptr", target: 0 });
  const btf = parseBtf(b.build());
  assert.equal(btf.pointerSize, 4);
  assert.equal(sizeof(btf.typeById(ptr)), 4);
  assert.equal(sizeof(parseBtf(b.build(), { pointerSize: 8 }).typeById(ptr)), 8);
});

Deno.test("btf parse: header problems are BtfErrors at the header field", () => {
  const good = basics().b.build();
  parseBtf(good);
  assertBtfError(() => parseBtf(good.subarray(0, 23)), /shorter than its 24-byte header/, {
    offset: 0,
  });
  assertBtfError(() => parseBtf(new Uint8Array(0)), /shorter/);
  const badMagic = good.slice();
  badMagic[0] = 0x9e;
  assertBtfError(() => parseBtf(badMagic), /Bad BTF magic/, { offset: 0 });
  const version = good.slice();
  version[H.version.offset] = 2;
  assertBtfError(() => parseBtf(version), /Unsupported BTF version "2"/, { offset: 2 });
  const flags = good.slice();
  flags[H.flags.offset] = 1;
  assertBtfError(() => parseBtf(flags), /header flags/, { offset: 3 });
  assertBtfError(() => parseBtf(setU32(good, H.hdrLen.offset, 16)), /hdr_len "16"/, { offset: 4 });
  assertBtfError(
    () => parseBtf(setU32(good, H.hdrLen.offset, good.length + 1)),
    /hdr_len/,
    { offset: 4 },
  );
  // A longer header is fine while its extra bytes are zero.
  const longer = new Uint8Array(good.length + 8);
  longer.set(good.subarray(0, HDR));
  longer.set(good.subarray(HDR), HDR + 8);
  const longHeader = setU32(longer, H.hdrLen.offset, HDR + 8);
  assert.equal(parseBtf(longHeader).types.length, 4);
  const dirty = longHeader.slice();
  dirty[HDR + 3] = 1;
  assertBtfError(() => parseBtf(dirty), /unknown non-zero fields/, { offset: HDR + 3 });
  assertBtfError(() => parseBtf(setU32(good, H.typeOff.offset, 2)), /Unaligned BTF type_off/);
  assertBtfError(() => parseBtf(setU32(good, H.typeLen.offset, 6)), /type_len "6"/);
  assertBtfError(
    () => parseBtf(setU32(good, H.typeLen.offset, 0xffff_fffc)),
    /type section .* ends past/,
  );
  assertBtfError(
    () => parseBtf(setU32(good, H.strOff.offset, 0xffff_ff00)),
    /string section .* ends past/,
  );
  assertBtfError(() => parseBtf(setU32(good, H.strOff.offset, 8)), /overlaps/);
});

Deno.test("btf parse: string section problems are BtfErrors", () => {
  const { b } = basics();
  const good = b.build();
  const typeLen = u32At(good, H.typeLen.offset);
  const strStart = HDR + u32At(good, H.strOff.offset);
  assertBtfError(() => parseBtf(setU32(good, H.strLen.offset, 0)), /Empty BTF string section/);
  const noLeadingNul = good.slice();
  noLeadingNul[strStart] = 0x41;
  assertBtfError(() => parseBtf(noLeadingNul), /does not start with the empty string/, {
    offset: strStart,
  });
  const noTrailingNul = good.slice();
  noTrailingNul[good.length - 1] = 0x41;
  assertBtfError(() => parseBtf(noTrailingNul), /does not end with a NUL/, {
    offset: good.length - 1,
  });
  // A name offset past the strings: type 1's name_off.
  assertBtfError(
    () => parseBtf(setU32(good, HDR, 0x7fff)),
    /Invalid INT name offset "32767"/,
    { typeId: 1, offset: HDR },
  );
  assert.ok(typeLen > 0);
  // Non-ASCII names decode as UTF-8.
  const u = new BtfBuilder();
  u.add({ kind: "int", name: "größe", size: 4 });
  assert.equal(parseBtf(u.build()).typeById(1).name, "größe");
});

Deno.test("btf parse: record problems are BtfErrors naming the type and byte", () => {
  const at = (id: number) => HDR + (id - 1) * 16; // basics(): four INT records of 16 bytes
  const base = basics();
  const first = base.b.nextId;
  const good = base.b.build();
  const info = (id: number) => at(id) + 4;
  assertBtfError(
    () => parseBtf(setU32(good, info(2), makeInfo(0, 0, false))),
    /Unknown BTF kind "0"/,
    {
      typeId: 2,
      offset: info(2),
    },
  );
  assertBtfError(() => parseBtf(setU32(good, info(2), 20 << 24)), /Unknown BTF kind "20"/);
  assertBtfError(() => parseBtf(setU32(good, info(2), 0x0110_0000)), /unused bits/, {
    typeId: 2,
  });
  assertBtfError(
    () => parseBtf(setU32(good, info(3), makeInfo(BtfKind.INT, 1, false))),
    /Invalid vlen "1" for a INT/,
    { typeId: 3, offset: info(3) },
  );
  assertBtfError(
    () => parseBtf(setU32(good, info(3), makeInfo(BtfKind.INT, 0, true))),
    /kind_flag for a INT/,
  );
  assertBtfError(() => parseBtf(setU32(good, at(1) + 8, 3)), /Invalid INT size "3"/, {
    typeId: 1,
    offset: at(1) + 8,
  });
  assertBtfError(() => parseBtf(setU32(good, at(1) + 12, 33)), /Invalid INT bits "33"/);
  assertBtfError(() => parseBtf(setU32(good, at(1) + 12, 0x0300_0020)), /INT encoding word/);
  assertBtfError(() => parseBtf(setU32(good, at(1) + 12, 0x1000_0020)), /INT encoding word/);
  assertBtfError(
    () => parseBtf(setU32(good, at(1) + 12, 0x0001_0020)),
    /INT bits "32" at bit offset 1/,
  );
  // A record cut short by type_len: the fourth INT loses its data word.
  assertBtfError(
    () => parseBtf(setU32(good, H.typeLen.offset, 60)),
    /Truncated BTF INT record/,
    { typeId: 4, offset: at(4) },
  );
  assertBtfError(() => parseBtf(setU32(good, H.typeLen.offset, 56)), /Truncated BTF type record/);
  assert.equal(first, 5);
});

Deno.test("btf parse: reference and kind checks are BtfErrors", () => {
  const cases: [string, (b: BtfBuilder, t: ReturnType<typeof basics>) => void, RegExp][] = [
    ["id out of range", (b) => b.add({ kind: "ptr", target: 99 }), /type id "99".*types 0 to/],
    [
      "void member",
      (b) => b.add({ kind: "struct", size: 4, members: [{ name: "m", type: 0, bitOffset: 0 }] }),
      /member 0.*cannot be void/,
    ],
    [
      "array of void",
      (b, t) => b.add({ kind: "array", element: 0, index: t.int, nelems: 1 }),
      /array element.*void/,
    ],
    [
      "array size field",
      (b, t) => b.raw([0, makeInfo(BtfKind.ARRAY, 0, false), 4, t.int, t.int, 1]),
      /ARRAY size field "4"/,
    ],
    [
      "func of a non-proto",
      (b, t) => b.add({ kind: "func", name: "f", proto: t.int }),
      /not a func_proto/,
    ],
    [
      "func linkage",
      (b, t) => b.raw([0, makeInfo(BtfKind.FUNC, 3, false), t.int]),
      /FUNC linkage "3"/,
    ],
    [
      "var linkage",
      (b, t) => b.raw([0, makeInfo(BtfKind.VAR, 0, false), t.int, 7]),
      /VAR linkage "7"/,
    ],
    ["var of void", (b) => b.add({ kind: "var", name: "v", type: 0 }), /variable.*void/],
    [
      "void parameter",
      (b, t) =>
        b.add({ kind: "func_proto", returns: t.int, params: [{ type: 0 }, { type: t.int }] }),
      /parameter 0.*void/,
    ],
    ["enum size", (b) => b.add({ kind: "enum", name: "e", size: 3, values: [] }), /ENUM size "3"/],
    [
      "enum64 size",
      (b) => b.add({ kind: "enum64", name: "e", size: 16, values: [] }),
      /ENUM64 size "16"/,
    ],
    ["float size", (b) => b.add({ kind: "float", name: "f", size: 3 }), /FLOAT size "3"/],
    ["decl tag index", (b, t) => {
      const s = b.add({
        kind: "struct",
        size: 4,
        members: [{ name: "m", type: t.int, bitOffset: 0 }],
      });
      b.add({ kind: "decl_tag", name: "tag", target: s, componentIdx: 1 });
    }, /component_idx 1 but type/],
    [
      "decl tag target",
      (b, t) => b.add({ kind: "decl_tag", name: "tag", target: t.int }),
      /tags a int/,
    ],
    [
      "decl tag idx",
      (b, t) => b.raw([b.string("x"), makeInfo(BtfKind.DECL_TAG, 0, false), t.int, -2]),
      /component_idx "-2"/,
    ],
    [
      "datasec entry kind",
      (b, t) =>
        b.add({
          kind: "datasec",
          name: ".d",
          size: 4,
          vars: [{ type: t.int, offset: 0, size: 4 }],
        }),
      /not a var/,
    ],
    ["datasec entry outside", (b, t) => {
      const v = b.add({ kind: "var", name: "v", type: t.int });
      b.add({ kind: "datasec", name: ".d", size: 4, vars: [{ type: v, offset: 2, size: 4 }] });
    }, /outside the section/],
    ["datasec entries overlap", (b, t) => {
      const v = b.add({ kind: "var", name: "v", type: t.int });
      b.add({
        kind: "datasec",
        name: ".d",
        size: 8,
        vars: [{ type: v, offset: 0, size: 4 }, { type: v, offset: 2, size: 4 }],
      });
    }, /before the previous variable/],
    ["datasec slot too small", (b, t) => {
      const v = b.add({ kind: "var", name: "v", type: t.u64 });
      b.add({ kind: "datasec", name: ".d", size: 8, vars: [{ type: v, offset: 0, size: 4 }] });
    }, /8 bytes in a 4-byte slot/],
    [
      "member past the end",
      (b, t) =>
        b.add({ kind: "struct", size: 4, members: [{ name: "m", type: t.u64, bitOffset: 0 }] }),
      /ends at byte 8, past the struct's 4 bytes/,
    ],
    ["members out of order", (b, t) =>
      b.add({
        kind: "struct",
        size: 8,
        members: [{ name: "a", type: t.int, bitOffset: 32 }, {
          name: "b",
          type: t.int,
          bitOffset: 0,
        }],
      }), /before the previous member/],
    ["bitfield on a struct", (b, t) => {
      const inner = b.add({
        kind: "struct",
        size: 4,
        members: [{ name: "m", type: t.int, bitOffset: 0 }],
      });
      b.add({
        kind: "struct",
        size: 4,
        members: [{ name: "m", type: inner, bitOffset: 0, bitfieldSize: 3 }],
      });
    }, /not an integer or enum/],
    [
      "bitfield wider than its type",
      (b, t) =>
        b.add({
          kind: "struct",
          size: 8,
          members: [{ name: "m", type: t.char, bitOffset: 0, bitfieldSize: 9 }],
        }),
      /9 bits in a 1-byte type/,
    ],
    [
      "bitfield size over 128",
      (b, t) =>
        b.raw([0, makeInfo(BtfKind.STRUCT, 1, true), 64, b.string("m"), t.int, 200 * 2 ** 24]),
      /bitfield size "200"/,
    ],
    [
      "bitfield past the end",
      (b, t) =>
        b.add({
          kind: "struct",
          size: 4,
          members: [{ name: "m", type: t.int, bitOffset: 30, bitfieldSize: 3 }],
        }),
      /ends at byte 5/,
    ],
    ["unaligned struct member", (b, t) => {
      const inner = b.add({
        kind: "struct",
        size: 4,
        members: [{ name: "m", type: t.int, bitOffset: 0 }],
      });
      b.add({ kind: "struct", size: 8, members: [{ name: "m", type: inner, bitOffset: 4 }] });
    }, /not byte aligned/],
    ["member of a function type", (b, t) => {
      const proto = b.add({ kind: "func_proto", returns: t.int, params: [] });
      b.add({ kind: "struct", size: 8, members: [{ name: "m", type: proto, bitOffset: 0 }] });
    }, /has no size/],
    ["array of forward declarations", (b, t) => {
      const fwd = b.add({ kind: "fwd", name: "f" });
      b.add({ kind: "array", element: fwd, index: t.int, nelems: 2 });
    }, /has no size/],
    ["array size overflow", (b, t) => {
      const big = b.add({ kind: "array", element: t.u64, index: t.int, nelems: 0x2000_0000 });
      b.add({ kind: "array", element: big, index: t.int, nelems: 2 });
    }, /overflows 32 bits/],
  ];
  for (const [name, make, pattern] of cases) {
    const t = basics();
    make(t.b, t);
    const e = assertBtfError(() => parseBtf(t.b.build()), pattern);
    assert.ok(e.typeId !== undefined && e.offset !== undefined, `${name}: ${e.message}`);
  }
});

Deno.test("btf parse: cycles that never terminate are BtfErrors", () => {
  const cycles: [string, (b: BtfBuilder, t: ReturnType<typeof basics>) => void][] = [
    ["typedef to itself", (b) => b.add({ kind: "typedef", name: "t", target: b.nextId })],
    ["const/volatile loop", (b) => {
      b.add({ kind: "const", target: b.nextId + 1 });
      b.add({ kind: "volatile", target: b.nextId - 1 });
    }],
    [
      "array of itself",
      (b, t) => b.add({ kind: "array", element: b.nextId, index: t.int, nelems: 1 }),
    ],
    [
      "struct containing itself",
      (b) =>
        b.add({
          kind: "struct",
          name: "s",
          size: 8,
          members: [{ name: "m", type: b.nextId, bitOffset: 0 }],
        }),
    ],
    ["struct through a typedef", (b) => {
      b.add({
        kind: "struct",
        name: "s",
        size: 8,
        members: [{ name: "m", type: b.nextId + 1, bitOffset: 0 }],
      });
      b.add({ kind: "typedef", name: "s_t", target: b.nextId - 1 });
    }],
    ["pointer to itself", (b) => b.add({ kind: "ptr", target: b.nextId })],
    ["pointer to a prototype taking it", (b, t) => {
      b.add({ kind: "ptr", target: b.nextId + 1 });
      b.add({ kind: "func_proto", returns: t.int, params: [{ type: b.nextId - 1 }] });
    }],
    ["typedef of a pointer to it", (b) => {
      b.add({ kind: "typedef", name: "t", target: b.nextId + 1 });
      b.add({ kind: "ptr", target: b.nextId - 1 });
    }],
    ["type tag loop", (b) => b.add({ kind: "type_tag", name: "x", target: b.nextId })],
  ];
  for (const [name, make] of cycles) {
    const t = basics();
    make(t.b, t);
    const e = assertBtfError(() => parseBtf(t.b.build()), /Reference cycle: /);
    assert.ok(e.typeId !== undefined, name);
  }
});

Deno.test("btf parse: nesting deeper than MAX_NESTING is a BtfError, not a stack overflow", () => {
  const { b, int } = basics();
  let last = int;
  for (let i = 0; i < MAX_NESTING + 10; i++) {
    last = b.add({ kind: "typedef", name: `t${i}`, target: last });
  }
  assertBtfError(() => parseBtf(b.build()), /nest more than/);
  // Long but legal: arrays of arrays of MAX_NESTING / 2 levels.
  const ok = basics();
  let arr = ok.char;
  for (let i = 0; i < MAX_NESTING / 2; i++) {
    arr = ok.b.add({ kind: "array", element: arr, index: ok.int, nelems: 1 });
  }
  assert.equal(sizeof(parseBtf(ok.b.build()).typeById(arr)), 1);
  // Many types in one long chain of pointers to structs is fine: no recursion on the stack.
  const wide = basics();
  let prev = 0;
  for (let i = 0; i < 50_000; i++) {
    const ptr = wide.b.add({ kind: "ptr", target: wide.b.nextId + 1 });
    wide.b.add({
      kind: "struct",
      size: 8,
      members: [{ name: "p", type: prev || ptr, bitOffset: 0 }],
    });
    prev = ptr;
  }
  assert.equal(parseBtf(wide.b.build()).types.length, 4 + 100_000);
});

Deno.test("btf parse: the builder refuses what BTF cannot hold", () => {
  const b = new BtfBuilder();
  const int = b.add({ kind: "int", name: "int", size: 4 });
  assert.throws(
    () =>
      b.add({
        kind: "struct",
        size: 4,
        members: Array.from({ length: BTF_MAX_VLEN + 1 }, () => ({ type: int, bitOffset: 0 })),
      }),
    /at most 65535/,
  );
});
