/**
 * The BTF layout tables and constants of `ffi/btf/layout.ts` against the system headers
 * (`linux/btf.h`, `linux/bpf.h`), as `layout_test.ts` checks `ffi/sys/layout.ts`: a C probe
 * generated from the tables prints `offsetof()`/`sizeof()` of every field, `sizeof()` of
 * every record, and the value of every constant.
 *
 * @module
 */

import assert from "node:assert/strict";
import { BpfCommand } from "../ffi/sys/constants.ts";
import type { Layout } from "../ffi/sys/layout.ts";
import {
  BTF_INFO_MASK,
  BTF_INT_MASK,
  BTF_KIND_MAX,
  BTF_LAYOUTS,
  BTF_MAGIC,
  BTF_MAX_NAME_OFFSET,
  BTF_MAX_TYPE,
  BTF_MAX_VLEN,
  BTF_RECORD_C_TYPE,
  BTF_RECORD_SIZE,
  BTF_VERSION,
  BtfIntEncoding,
  BtfKind,
  btfKindName,
  BtfLinkage,
  infoKflag,
  infoKind,
  infoVlen,
  intBits,
  intEncoding,
  intOffset,
  makeInfo,
  makeIntData,
  memberBitfieldSize,
  memberBitOffset,
} from "../ffi/btf/layout.ts";
import { fieldsEnd, layoutMismatches, layoutProbe } from "./_probe.ts";

const HEADERS = ["stddef.h", "stdio.h", "linux/btf.h", "linux/bpf.h"];

/** Every constant the tables define, by its C name. */
const CONSTANTS: Record<string, number> = {
  BTF_MAGIC,
  BTF_VERSION,
  BTF_MAX_TYPE,
  BTF_MAX_NAME_OFFSET,
  BTF_MAX_VLEN,
  BTF_KIND_MAX,
  NR_BTF_KINDS: BTF_KIND_MAX + 1,
  BTF_INT_SIGNED: BtfIntEncoding.SIGNED,
  BTF_INT_CHAR: BtfIntEncoding.CHAR,
  BTF_INT_BOOL: BtfIntEncoding.BOOL,
  BTF_VAR_STATIC: BtfLinkage.STATIC,
  BTF_VAR_GLOBAL_ALLOCATED: BtfLinkage.GLOBAL,
  BTF_VAR_GLOBAL_EXTERN: BtfLinkage.EXTERN,
  BTF_FUNC_STATIC: BtfLinkage.STATIC,
  BTF_FUNC_GLOBAL: BtfLinkage.GLOBAL,
  BTF_FUNC_EXTERN: BtfLinkage.EXTERN,
  BPF_BTF_LOAD: BpfCommand.BTF_LOAD,
  BPF_BTF_GET_FD_BY_ID: BpfCommand.BTF_GET_FD_BY_ID,
  ...Object.fromEntries(Object.entries(BtfKind).map(([k, v]) => [`BTF_KIND_${k}`, v])),
};

const PROBE = await layoutProbe({
  headers: HEADERS,
  packages: "linux-libc-dev",
  tables: "ffi/btf/layout.ts",
});

/** What the probe prints besides the tables: `RECORD` and `CONST` lines. */
const EXTRA = [
  ...Object.entries(BTF_RECORD_C_TYPE).map(([name, c]) =>
    `  printf("RECORD ${name} %zu\\n", sizeof(${c}));`
  ),
  ...Object.keys(CONSTANTS).map((name) =>
    `  printf("CONST ${name} %lld\\n", (long long)(${name}));`
  ),
];

PROBE.test("btf layout: every field, record size and constant matches the system headers", async () => {
  const probe = await PROBE.run(BTF_LAYOUTS, EXTRA);
  // Records are read in place: their fields, not `layoutSize`, must fit in the C type.
  const { mismatches, fields } = layoutMismatches(probe, BTF_LAYOUTS, fieldsEnd);
  for (const [name, size] of Object.entries(BTF_RECORD_SIZE)) {
    const [actual] = probe.get(`RECORD ${name}`) ?? [];
    if (actual !== size) mismatches.push(`BTF_RECORD_SIZE.${name}: ${size}, header ${actual}`);
  }
  for (const [name, value] of Object.entries(CONSTANTS)) {
    const [actual] = probe.get(`CONST ${name}`) ?? [];
    if (actual !== value) mismatches.push(`${name}: ${value}, header ${actual}`);
  }
  assert.deepEqual(mismatches, [], mismatches.join("\n"));
  assert.ok(fields >= 40, `only ${fields} fields checked`);
});

Deno.test("btf layout: the records of a BTF_RECORD_SIZE sum to what the tables span", () => {
  // The per-kind tables tile their records exactly (no padding the kernel would not have).
  const spans: Record<string, Layout> = {
    header: BTF_LAYOUTS.BTF_HEADER,
    array: BTF_LAYOUTS.BTF_ARRAY,
    member: BTF_LAYOUTS.BTF_MEMBER,
    param: BTF_LAYOUTS.BTF_PARAM,
    enum: BTF_LAYOUTS.BTF_ENUM,
    enum64: BTF_LAYOUTS.BTF_ENUM64,
    var: BTF_LAYOUTS.BTF_VAR,
    varSecinfo: BTF_LAYOUTS.BTF_VAR_SECINFO,
    declTag: BTF_LAYOUTS.BTF_DECL_TAG,
  };
  for (const [name, layout] of Object.entries(spans)) {
    const total = Object.values(layout.fields).reduce((n, f) => n + f.size, 0);
    assert.equal(total, BTF_RECORD_SIZE[name as keyof typeof BTF_RECORD_SIZE], name);
  }
  // btf_type's size and type share a slot.
  assert.equal(BTF_LAYOUTS.BTF_TYPE.fields.size.offset, BTF_LAYOUTS.BTF_TYPE.fields.type.offset);
});

Deno.test("btf layout: info and INT words pack and unpack as the header macros do", () => {
  for (const kind of Object.values(BtfKind)) {
    for (const vlen of [0, 1, 0x1234, 0xffff]) {
      for (const kflag of [false, true]) {
        const info = makeInfo(kind, vlen, kflag);
        assert.equal(infoKind(info), kind);
        assert.equal(infoVlen(info), vlen);
        assert.equal(infoKflag(info), kflag);
        assert.equal(info & ~BTF_INFO_MASK, 0);
      }
    }
  }
  const data = makeIntData(BtfIntEncoding.SIGNED, 5, 27);
  assert.equal(data, 0x0105_001b);
  assert.deepEqual([intEncoding(data), intOffset(data), intBits(data)], [1, 5, 27]);
  assert.equal(data & ~BTF_INT_MASK, 0);
  assert.equal(memberBitfieldSize(0x0300_0021), 3);
  assert.equal(memberBitOffset(0x0300_0021), 33);
  assert.equal(btfKindName(4), "STRUCT");
  assert.equal(btfKindName(31), "kind 31");
});
