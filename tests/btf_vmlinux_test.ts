/**
 * The running kernel's BTF (`/sys/kernel/btf/vmlinux`): parsed whole within a time bound,
 * every type compared with what `bpftool btf dump file ... format raw` prints of it (kind,
 * name, sizes, ids, members, enumerators, parameters, variables), and every struct and
 * union decoded and encoded back. Needs the file and bpftool, not root.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type Btf,
  BtfBuilder,
  btfCodec,
  type BtfType,
  compileDecoder,
  kernelBtf,
  parseBtf,
  sizeof,
  typeName,
  VMLINUX_BTF_PATH,
} from "../ffi/btf/mod.ts";
import { requiredTest } from "./_probe.ts";

function missing(): string | undefined {
  try {
    Deno.statSync(VMLINUX_BTF_PATH);
  } catch {
    return `${VMLINUX_BTF_PATH} is absent: the kernel was built without BTF`;
  }
  try {
    new Deno.Command("bpftool", { args: ["version"], stdout: "null", stderr: "null" })
      .outputSync();
  } catch {
    return `"bpftool" is not installed`;
  }
  return undefined;
}

const MISSING = missing();

/** A test that needs the kernel's BTF file and bpftool. */
function vmlinuxTest(name: string, fn: () => void | Promise<void>): void {
  requiredTest(name, MISSING, fn);
}

/** One type as bpftool prints it in `format raw`. */
interface RawType {
  id: number;
  kind: string;
  name: string;
  attrs: Map<string, string>;
  items: string[];
}

/** Parses `bpftool btf dump file ... format raw`. */
function parseRaw(text: string): RawType[] {
  const types: RawType[] = [];
  for (const line of text.split("\n")) {
    if (line.startsWith("\t")) {
      types[types.length - 1].items.push(line.slice(1));
      continue;
    }
    const head = /^\[(\d+)\] (\w+) '([^']*)'(.*)$/.exec(line);
    if (!head) continue;
    const attrs = new Map<string, string>();
    for (const m of head[4].matchAll(/(\w+)=([^\s,]+)/g)) attrs.set(m[1], m[2]);
    types.push({
      id: Number(head[1]),
      kind: head[2],
      name: head[3] === "(anon)" ? "" : head[3],
      attrs,
      items: [],
    });
  }
  return types;
}

const ENCODING: Record<string, string> = {
  "(none)": "unsigned",
  SIGNED: "signed",
  CHAR: "char",
  BOOL: "bool",
};

/** The differences between one parsed type and bpftool's view of it. */
function compare(t: BtfType, raw: RawType): string[] {
  const problems: string[] = [];
  const expect = (what: string, ours: unknown, theirs: unknown) => {
    if (String(ours) !== String(theirs)) {
      problems.push(`[${raw.id}] ${raw.kind} ${what}: ours ${ours}, bpftool ${theirs}`);
    }
  };
  const a = (key: string) => raw.attrs.get(key);
  expect("kind", t.kind, raw.kind.toLowerCase());
  expect("name", t.name, raw.name);
  switch (t.kind) {
    case "int":
      expect("size", t.size, a("size"));
      expect("bits", t.bits, a("nr_bits"));
      expect("offset", t.offset, a("bits_offset"));
      expect("encoding", t.encoding, ENCODING[a("encoding")!]);
      break;
    case "ptr":
    case "typedef":
    case "volatile":
    case "const":
    case "restrict":
    case "type_tag":
      expect("target", t.target.id, a("type_id"));
      break;
    case "array":
      expect("element", t.element.id, a("type_id"));
      expect("index", t.index.id, a("index_type_id"));
      expect("nelems", t.nelems, a("nr_elems"));
      break;
    case "struct":
    case "union":
      expect("size", t.size, a("size"));
      expect("vlen", t.members.length, a("vlen"));
      t.members.forEach((m, i) => {
        const bitfield = m.bitfieldSize ? ` bitfield_size=${m.bitfieldSize}` : "";
        expect(
          `member ${i}`,
          `'${m.name || "(anon)"}' type_id=${m.type.id} bits_offset=${m.bitOffset}${bitfield}`,
          raw.items[i],
        );
      });
      break;
    case "enum":
    case "enum64":
      expect("size", t.size, a("size"));
      expect("vlen", t.values.length, a("vlen"));
      expect("signed", t.signed ? "SIGNED" : "UNSIGNED", a("encoding"));
      // bpftool suffixes 64-bit values as C literals.
      t.values.forEach((v, i) =>
        expect(
          `value ${i}`,
          `'${v.name}' val=${v.value}${t.kind === "enum64" ? (t.signed ? "LL" : "ULL") : ""}`,
          raw.items[i],
        )
      );
      break;
    case "fwd":
      expect("fwd kind", t.fwdKind, a("fwd_kind"));
      break;
    case "func":
      expect("proto", t.proto.id, a("type_id"));
      expect("linkage", t.linkage, a("linkage"));
      break;
    case "func_proto":
      expect("returns", t.returns.id, a("ret_type_id"));
      expect("vlen", t.params.length + (t.variadic ? 1 : 0), a("vlen"));
      t.params.forEach((p, i) =>
        expect(`param ${i}`, `'${p.name || "(anon)"}' type_id=${p.type.id}`, raw.items[i])
      );
      break;
    case "var":
      expect("type", t.type.id, a("type_id"));
      expect("linkage", t.linkage === "global" ? "global" : t.linkage, a("linkage"));
      break;
    case "datasec":
      expect("size", t.size, a("size"));
      expect("vlen", t.vars.length, a("vlen"));
      t.vars.forEach((v, i) =>
        expect(
          `var ${i}`,
          `type_id=${v.type.id} offset=${v.offset} size=${v.size} (${v.type.kind.toUpperCase()} '${v.type.name}')`,
          raw.items[i],
        )
      );
      break;
    case "float":
      expect("size", t.size, a("size"));
      break;
    case "decl_tag":
      expect("target", t.target.id, a("type_id"));
      expect("component", t.componentIdx, a("component_idx"));
      break;
  }
  return problems;
}

let parsed: Btf | undefined;

vmlinuxTest("btf vmlinux: the kernel's BTF parses whole in well under a few seconds", () => {
  const bytes = Deno.readFileSync(VMLINUX_BTF_PATH);
  const times: number[] = [];
  for (let i = 0; i < 3; i++) {
    const started = performance.now();
    parsed = parseBtf(bytes);
    times.push(performance.now() - started);
  }
  console.log(
    `parsed ${bytes.length} bytes, ${parsed!.typeCount} types: first ${
      times[0].toFixed(0)
    } ms, then ${times.slice(1).map((t) => t.toFixed(0)).join(", ")} ms`,
  );
  assert.ok(times[0] < 3000, `the first parse took ${times[0]} ms`);
  // kernelBtf() reads the file through libc and gives the same graph.
  const kernel = kernelBtf();
  assert.equal(kernel.typeCount, parsed!.typeCount);
  assert.equal(kernel, kernelBtf());
  for (const [kind, name] of [["struct", "task_struct"], ["struct", "bpf_map"]] as const) {
    const ours = parsed!.find(kind, name)!;
    assert.ok(ours, `${kind} ${name}`);
    assert.equal(typeName(ours), `${kind} ${name}`);
  }
});

vmlinuxTest("btf vmlinux: every type is what bpftool btf dump ... format raw says", () => {
  const btf = parsed ?? parseBtf(Deno.readFileSync(VMLINUX_BTF_PATH));
  const out = new Deno.Command("bpftool", {
    args: ["btf", "dump", "file", VMLINUX_BTF_PATH, "format", "raw"],
    stdout: "piped",
    stderr: "piped",
  }).outputSync();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const raw = parseRaw(new TextDecoder().decode(out.stdout));
  assert.equal(raw.length, btf.typeCount - 1, "bpftool and parseBtf count types alike");
  const problems: string[] = [];
  for (const r of raw) problems.push(...compare(btf.typeById(r.id), r));
  assert.deepEqual(problems.slice(0, 20), [], `${problems.length} differences`);
  // A few sizes by name, as a reader would check them.
  const sizes = Object.fromEntries(
    raw.filter((r) => ["task_struct", "bpf_map", "sk_buff", "list_head"].includes(r.name))
      .filter((r) => r.kind === "STRUCT")
      .map((r) => [r.name, Number(r.attrs.get("size"))]),
  );
  for (const [name, size] of Object.entries(sizes)) {
    assert.equal(sizeof(btf.find("struct", name)!), size, name);
  }
  assert.equal(Object.keys(sizes).length, 4);
});

vmlinuxTest("btf vmlinux: every struct and union decodes, and encodes back to a fixpoint", () => {
  const btf = parsed ?? kernelBtf();
  let seed = 0x5eed;
  const random = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 24;
  let count = 0;
  let bytesDone = 0;
  const started = performance.now();
  for (const t of btf.types) {
    if (t.kind !== "struct" && t.kind !== "union") continue;
    const codec = btfCodec(t);
    const zero = new Uint8Array(t.size);
    const decodedZero = codec.decode(zero);
    const again = new Uint8Array(t.size).fill(0xff);
    codec.encode(decodedZero, again);
    assert.deepEqual(again, zero, `${typeName(t)}: zero does not encode back to zero`);
    const bytes = Uint8Array.from({ length: t.size }, random);
    const y = codec.decode(bytes);
    const once = new Uint8Array(t.size);
    codec.encode(y, once);
    const z = codec.decode(once);
    const twice = new Uint8Array(t.size);
    codec.encode(z, twice);
    assert.deepEqual(codec.decode(twice), z, `${typeName(t)} (type ${t.id})`);
    count++;
    bytesDone += t.size;
  }
  console.log(
    `${count} structs and unions (${bytesDone} bytes) decoded and encoded in ${
      (performance.now() - started).toFixed(0)
    } ms`,
  );
  assert.ok(count > 10_000);
  assert.equal(typeof compileDecoder(btf.find("struct", "task_struct")!), "function");
});

vmlinuxTest(
  "btf vmlinux: split BTF on the kernel's: base ids, base strings, base types by value",
  () => {
    const base = parsed ?? kernelBtf();
    const listHead = base.find("struct", "list_head")!;
    const u32 = base.find("typedef", "u32")!;
    const b = new BtfBuilder({ base });
    const ptr = b.add({ kind: "ptr", target: base.find("struct", "task_struct")!.id });
    const entry = b.add({
      kind: "struct",
      name: "my_entry",
      size: 32,
      members: [
        { name: "list", type: listHead.id, bitOffset: 0 },
        { name: "task", type: ptr, bitOffset: 128 },
        { name: "flags", type: u32.id, bitOffset: 192, bitfieldSize: 5 },
      ],
    });
    const bytes = b.build();
    const split = parseBtf(bytes, { base });
    assert.equal(split.firstId, base.typeCount);
    assert.equal(split.types.length, 2);
    const s = split.typeById(entry);
    assert.ok(s.kind === "struct");
    assert.equal(s.members[0].type, listHead);
    assert.equal(typeName(s.members[1].type), "struct task_struct *");
    assert.equal(split.find("struct", "list_head"), listHead);
    // "list" and "flags" are the base's strings: the split string section holds only "my_entry".
    assert.equal(split.stringsLength - base.stringsLength, "my_entry\0".length);
    const codec = btfCodec(s);
    const value = {
      next: 0xffff_8880_0000_0010n,
      prev: 0xffff_8880_0000_0020n,
      task: 0xffff_8880_0000_0030n,
      flags: 31,
    };
    const encoded = new Uint8Array(32);
    codec.encode(
      { list: { next: value.next, prev: value.prev }, task: value.task, flags: 31 },
      encoded,
    );
    assert.deepEqual(codec.decode(encoded), {
      list: { next: value.next, prev: value.prev },
      task: value.task,
      flags: 31,
    });
    // Ids past the split's own are refused, as are base ids past the base.
    const bad = new BtfBuilder({ base });
    bad.add({ kind: "ptr", target: base.typeCount + 5 });
    assert.throws(() => parseBtf(bad.build(), { base }), /Invalid type id/);
  },
);
