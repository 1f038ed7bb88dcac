/**
 * The layout tables of `ffi/sys/layout.ts` against the system headers, and the pure encoders
 * and decoders built on them (no kernel, no root).
 *
 * The probe is a C program generated from the tables: for every field it prints
 * `offsetof()` and `sizeof()` of the member path, for every type its `sizeof()`, and it is
 * compiled against `linux/bpf.h`, `bpf/bpf.h` and `bpf/libbpf.h`. A header that moves,
 * widens or removes a field fails the test (a removed field fails the compilation).
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  BATCH_ATTR,
  decodeMapInfo,
  ELEM_ATTR,
  encodeBatch,
  encodeElem,
  encodeMapCreate,
  type Field,
  FREEZE_ATTR,
  GET_ID_ATTR,
  INFO_ATTR,
  type Layout,
  LAYOUTS,
  layoutSize,
  LIBBPF_BATCH_OPTS,
  LIBBPF_ITER_ATTACH_OPTS,
  LIBBPF_LAYOUTS,
  LIBBPF_MAP_CREATE_OPTS,
  LIBBPF_OPTS_SIZE,
  MAP_CREATE_ATTR,
  MAP_INFO,
  OBJ_ATTR,
  readName,
  readU32,
  readU64,
  writeField,
  writeName,
} from "../ffi/sys/layout.ts";
import { countCpuList } from "../ffi/sys/system.ts";
import { layoutMismatches, layoutProbe } from "./_probe.ts";

/** The headers the probe includes, in this order. */
const HEADERS = [
  "stddef.h",
  "stdio.h",
  "linux/bpf.h",
  "bpf/bpf.h",
  "bpf/libbpf.h",
];

/** The C type of each entry of `LIBBPF_OPTS_SIZE`. */
const OPTS_TYPES: Record<keyof typeof LIBBPF_OPTS_SIZE, Layout> = {
  mapCreate: LIBBPF_MAP_CREATE_OPTS,
  batch: LIBBPF_BATCH_OPTS,
  iterAttach: LIBBPF_ITER_ATTACH_OPTS,
};

const ALL_LAYOUTS: Readonly<Record<string, Layout>> = {
  ...LAYOUTS,
  ...LIBBPF_LAYOUTS,
};

const PROBE = await layoutProbe({
  headers: HEADERS,
  packages: "linux-libc-dev and libbpf-dev",
  tables: "ffi/sys/layout.ts",
});

PROBE.test("layout: every field matches offsetof/sizeof from the system headers", async () => {
  const probe = await PROBE.run(ALL_LAYOUTS);
  // What the toolkit hands the kernel or libbpf (`layoutSize` bytes) must fit inside the real type.
  const { mismatches, fields } = layoutMismatches(probe, ALL_LAYOUTS);
  assert.deepEqual(mismatches, [], mismatches.join("\n"));
  assert.equal([...probe.keys()].filter((k) => k.startsWith("FIELD ")).length, fields);
});

PROBE.test("layout: LIBBPF_OPTS_SIZE matches sizeof() of the libbpf option structs", async () => {
  const probe = await PROBE.run(OPTS_TYPES);
  for (const [key, layout] of Object.entries(OPTS_TYPES)) {
    const size = LIBBPF_OPTS_SIZE[key as keyof typeof LIBBPF_OPTS_SIZE];
    const [actual] = probe.get(`SIZEOF ${key}`) ?? [];
    assert.equal(
      actual,
      size,
      `LIBBPF_OPTS_SIZE.${key} is ${size} but sizeof(${layout.type}) is ${actual}`,
    );
    // Every field the toolkit writes lies inside the `sz` it declares.
    assert.ok(layoutSize(layout) <= size, `${layout.type} fields past sz`);
  }
});

Deno.test("layout: the probe source names every field of every table", () => {
  const source = PROBE.source(ALL_LAYOUTS);
  for (const h of HEADERS) assert.ok(source.includes(`#include <${h}>`));
  assert.ok(
    source.includes(
      "offsetof(union bpf_attr, batch.in_batch), sizeof(((union bpf_attr *)0)->batch.in_batch)",
    ),
  );
  assert.ok(source.includes("sizeof(struct bpf_map_batch_opts)"));
  const lines = source.split("\n").filter((l) => l.includes("FIELD "));
  const fields = Object.values(ALL_LAYOUTS).reduce(
    (n, l) => n + Object.keys(l.fields).length,
    0,
  );
  assert.equal(lines.length, fields);
});

Deno.test("layout: layoutSize is the last field's end rounded up to 8", () => {
  assert.equal(layoutSize(MAP_CREATE_ATTR), 72);
  assert.equal(layoutSize(ELEM_ATTR), 32);
  assert.equal(layoutSize(BATCH_ATTR), 56);
  assert.equal(layoutSize(OBJ_ATTR), 16);
  assert.equal(layoutSize(GET_ID_ATTR), 16);
  assert.equal(layoutSize(INFO_ATTR), 16);
  assert.equal(layoutSize(FREEZE_ATTR), 8);
  assert.equal(layoutSize(MAP_INFO), 88);
  assert.equal(layoutSize({ type: "struct empty", fields: {} }), 0);
  const odd = { offset: 9, size: 4, c: "x" };
  assert.equal(layoutSize({ type: "struct odd", fields: { odd } }), 16);
  const exact = { offset: 8, size: 8, c: "y" };
  assert.equal(layoutSize({ type: "struct exact", fields: { exact } }), 16);
});

Deno.test("layout: no two fields of a table overlap, except union members", () => {
  // Fields sharing a slot on purpose: `value`/`next_key` and `start_id`/`map_id`.
  const shared = new Set(["ELEM_ATTR.value", "GET_ID_ATTR.startId"]);
  for (const [name, layout] of Object.entries(ALL_LAYOUTS)) {
    const fields = Object.entries(layout.fields).sort((a, b) => a[1].offset - b[1].offset);
    for (let i = 1; i < fields.length; i++) {
      const [prevName, prev] = fields[i - 1];
      const [, f] = fields[i];
      if (shared.has(`${name}.${prevName}`)) continue;
      assert.ok(
        prev.offset + prev.size <= f.offset,
        `${name}: "${prev.c}" overlaps "${f.c}"`,
      );
    }
  }
});

/** A view over `size` bytes set to `fill`, placed at byte 8 of a larger buffer (so a view's `byteOffset` is honoured). */
function viewOf(size: number, fill = 0): DataView {
  const backing = new Uint8Array(size + 16).fill(0xee);
  backing.fill(fill, 8, 8 + size);
  return new DataView(backing.buffer, 8, size);
}

/** The bytes of a view as an array, for comparisons. */
function bytesOf(view: DataView, f?: Field): number[] {
  const start = view.byteOffset + (f?.offset ?? 0);
  return [
    ...new Uint8Array(view.buffer, start, f?.size ?? view.byteLength),
  ];
}

/** Asserts every byte of `view` outside the given fields is `expected`. */
function assertUntouched(view: DataView, fields: Field[], expected = 0): void {
  const covered = new Set<number>();
  for (const f of fields) {
    for (let i = f.offset; i < f.offset + f.size; i++) covered.add(i);
  }
  for (let i = 0; i < view.byteLength; i++) {
    if (!covered.has(i)) {
      assert.equal(view.getUint8(i), expected, `byte ${i} was written`);
    }
  }
  // The bytes around the view stay as they were.
  const all = new Uint8Array(view.buffer);
  for (let i = 0; i < view.byteOffset; i++) assert.equal(all[i], 0xee);
  for (let i = view.byteOffset + view.byteLength; i < all.length; i++) {
    assert.equal(all[i], 0xee);
  }
}

function le32(value: number): number[] {
  return [
    value & 0xff,
    (value >>> 8) & 0xff,
    (value >>> 16) & 0xff,
    value >>> 24,
  ];
}

function le64(value: bigint): number[] {
  return Array.from(
    { length: 8 },
    (_, i) => Number((value >> BigInt(8 * i)) & 0xffn),
  );
}

Deno.test("layout: encodeMapCreate writes each field at its table offset", () => {
  const view = viewOf(layoutSize(MAP_CREATE_ATTR));
  encodeMapCreate(view, {
    mapType: 5,
    keySize: 0x0403,
    valueSize: 0x01020304,
    maxEntries: 0xfffffffe,
    mapFlags: 0x81,
    name: "stress_map",
  });
  const f = MAP_CREATE_ATTR.fields;
  assert.deepEqual(bytesOf(view, f.mapType), le32(5));
  assert.deepEqual(bytesOf(view, f.keySize), le32(0x0403));
  assert.deepEqual(bytesOf(view, f.valueSize), le32(0x01020304));
  assert.deepEqual(bytesOf(view, f.maxEntries), le32(0xfffffffe));
  assert.deepEqual(bytesOf(view, f.mapFlags), le32(0x81));
  assert.deepEqual(
    bytesOf(view, f.mapName),
    [...new TextEncoder().encode("stress_map"), 0, 0, 0, 0, 0, 0],
  );
  assert.equal(readName(view, f.mapName), "stress_map");
  // inner_map_fd, numa_node, ifindex, BTF ids and map_extra stay zero.
  assertUntouched(view, [
    f.mapType,
    f.keySize,
    f.valueSize,
    f.maxEntries,
    f.mapFlags,
    f.mapName,
  ]);
});

Deno.test("layout: encodeMapCreate keeps 15 bytes of a long name and a NUL", () => {
  const view = viewOf(layoutSize(MAP_CREATE_ATTR));
  encodeMapCreate(view, {
    mapType: 1,
    keySize: 4,
    valueSize: 4,
    maxEntries: 1,
    mapFlags: 0,
    name: "abcdefghijklmnopqrstuvwxyz",
  });
  const name = bytesOf(view, MAP_CREATE_ATTR.fields.mapName);
  assert.deepEqual(name, [...new TextEncoder().encode("abcdefghijklmno"), 0]);
  assert.equal(
    readName(view, MAP_CREATE_ATTR.fields.mapName),
    "abcdefghijklmno",
  );
});

Deno.test("layout: encodeElem writes fd, pointers and flags little-endian", () => {
  const view = viewOf(layoutSize(ELEM_ATTR));
  encodeElem(view, {
    mapFd: 0x12345678,
    key: 0x1122334455667788n,
    value: 0x7fff_0000_dead_beefn,
    flags: 4n,
  });
  const f = ELEM_ATTR.fields;
  assert.deepEqual(bytesOf(view, f.mapFd), le32(0x12345678));
  assert.deepEqual(bytesOf(view, f.key), le64(0x1122334455667788n));
  assert.deepEqual(bytesOf(view, f.value), le64(0x7fff_0000_dead_beefn));
  assert.deepEqual(bytesOf(view, f.nextKey), le64(0x7fff_0000_dead_beefn));
  assert.deepEqual(bytesOf(view, f.flags), le64(4n));
  assert.equal(readU64(view, f.key), 0x1122334455667788n);
  assert.equal(readU32(view, f.mapFd), 0x12345678);
  // The padding after map_fd stays zero.
  assertUntouched(view, [f.mapFd, f.key, f.value, f.flags]);
});

Deno.test("layout: encodeBatch writes every batch field and clears flags", () => {
  const view = viewOf(layoutSize(BATCH_ATTR), 0xff);
  encodeBatch(view, {
    inBatch: 0x1000n,
    outBatch: 0x2000n,
    keys: 0xaaaa_bbbb_cccc_0001n,
    values: 0xaaaa_bbbb_cccc_0002n,
    count: 4096,
    mapFd: 7,
    elemFlags: 4n,
  });
  const f = BATCH_ATTR.fields;
  assert.deepEqual(bytesOf(view, f.inBatch), le64(0x1000n));
  assert.deepEqual(bytesOf(view, f.outBatch), le64(0x2000n));
  assert.deepEqual(bytesOf(view, f.keys), le64(0xaaaa_bbbb_cccc_0001n));
  assert.deepEqual(bytesOf(view, f.values), le64(0xaaaa_bbbb_cccc_0002n));
  assert.deepEqual(bytesOf(view, f.count), le32(4096));
  assert.deepEqual(bytesOf(view, f.mapFd), le32(7));
  assert.deepEqual(bytesOf(view, f.elemFlags), le64(4n));
  // `flags` must be zero whatever the buffer held: the kernel rejects other values.
  assert.deepEqual(bytesOf(view, f.flags), le64(0n));
  // The fields tile the whole attr.
  assert.equal(
    Object.values(f).reduce((n, x) => n + x.size, 0),
    layoutSize(BATCH_ATTR),
  );
});

Deno.test("layout: decodeMapInfo reads every field from its table offset", () => {
  const view = viewOf(layoutSize(MAP_INFO), 0);
  const f = MAP_INFO.fields;
  writeField(view, f.type, 6);
  writeField(view, f.id, 4242);
  writeField(view, f.keySize, 4);
  writeField(view, f.valueSize, 16);
  writeField(view, f.maxEntries, 100_000);
  writeField(view, f.mapFlags, 0x1);
  writeName(view, f.name, "info_name");
  writeField(view, f.btfId, 99);
  writeField(view, f.btfKeyTypeId, 0x0102_0304);
  writeField(view, f.btfValueTypeId, 0x0506_0708);
  writeField(view, f.btfVmlinuxValueTypeId, 0x090a_0b0c);
  // Fields decodeMapInfo does not return must not bleed into those it does.
  writeField(view, f.ifindex, 0xffffffff);
  writeField(view, f.netnsDev, 0xffff_ffff_ffff_ffffn);
  writeField(view, f.netnsIno, 0xffff_ffff_ffff_ffffn);
  writeField(view, f.mapExtra, 0xffff_ffff_ffff_ffffn);
  assert.deepEqual(decodeMapInfo(view), {
    id: 4242,
    type: 6,
    keySize: 4,
    valueSize: 16,
    maxEntries: 100_000,
    flags: 1,
    name: "info_name",
    btfId: 99,
    btfKeyTypeId: 0x0102_0304,
    btfValueTypeId: 0x0506_0708,
    btfVmlinuxValueTypeId: 0x090a_0b0c,
  });
});

Deno.test("layout: writeName/readName truncate to 15 bytes and clear what was there", () => {
  const f = MAP_INFO.fields.name;
  const view = viewOf(layoutSize(MAP_INFO), 0x41);
  writeName(view, f, "0123456789abcdefXYZ");
  assert.equal(readName(view, f), "0123456789abcde");
  assert.equal(view.getUint8(f.offset + 15), 0);
  writeName(view, f, "short");
  assert.equal(readName(view, f), "short");
  assert.deepEqual(bytesOf(view, f), [
    ...new TextEncoder().encode("short"),
    ...new Array(11).fill(0),
  ]);
  writeName(view, f, "");
  assert.equal(readName(view, f), "");
  writeName(view, f, "exactly15_chars");
  assert.equal(readName(view, f), "exactly15_chars");
  // Bytes next to the field are left alone.
  assert.equal(view.getUint8(f.offset - 1), 0x41);
  assert.equal(view.getUint8(f.offset + f.size), 0x41);
  // A kernel-written name without NUL reads as the whole array.
  new Uint8Array(view.buffer, view.byteOffset + f.offset, f.size).fill(0x7a);
  assert.equal(readName(view, f), "z".repeat(16));
});

Deno.test("layout: writeField takes numbers and bigints and refuses other widths", () => {
  const view = viewOf(16);
  const wide = { offset: 0, size: 8, c: "wide" };
  const narrow = { offset: 8, size: 4, c: "narrow" };
  writeField(view, wide, 5);
  writeField(view, narrow, 7n);
  assert.equal(readU64(view, wide), 5n);
  assert.equal(readU32(view, narrow), 7);
  assert.throws(
    () => writeField(view, { offset: 0, size: 16, c: "name" }, 1),
    RangeError,
  );
});

Deno.test("system: countCpuList counts kernel CPU lists", () => {
  assert.equal(countCpuList("0-1"), 2);
  assert.equal(countCpuList("0-3,5"), 5);
  assert.equal(countCpuList("0"), 1);
  assert.equal(countCpuList("0-1\n"), 2);
  assert.equal(countCpuList("0-3,8-11\n"), 8);
  assert.equal(countCpuList("2,4,6"), 3);
  assert.throws(() => countCpuList("3-1"), /Cannot parse CPU list "3-1"/);
  assert.throws(() => countCpuList("a-b"), /Cannot parse CPU list/);
});
