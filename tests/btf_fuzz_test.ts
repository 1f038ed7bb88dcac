/**
 * Fuzzing `parseBtf` and what runs on its output: real BTF (the kernel's copy of
 * `btf_types.bpf.o`'s BTF, a standalone slice rebuilt from vmlinux, split BTF on vmlinux,
 * and builder-made BTF of every kind in both byte orders) mutated by byte flips,
 * truncations, u32 overwrites of header fields, counts, ids and name offsets, shifted and
 * duplicated records. Every input must parse or throw a `BtfError`; a parsed one then has
 * types named, sized, decoded and encoded, where again only a `BtfError` may come out. Any
 * other exception, an input slower than `BTF_FUZZ_SLOW_MS`, or a hang fails the test.
 *
 * The inputs run in workers (this same module, loaded as a worker), so that a hang is
 * caught by a watchdog and reported instead of stalling the run.
 *
 * Environment: `BTF_FUZZ_COUNT` (inputs; default 250,000, ~15 s on 2 CPUs), `BTF_FUZZ_SEED`
 * (default 1; "random" for a fresh one), `BTF_FUZZ_START` (first input index, to replay one),
 * `BTF_FUZZ_WORKERS` (default: CPUs, at most 4). Input `i` of a seed is the same on every
 * run: replay a failure with `BTF_FUZZ_SEED=<seed> BTF_FUZZ_START=<i> BTF_FUZZ_COUNT=1`.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type Btf,
  BtfBuilder,
  btfCodec,
  BtfError,
  type BtfType,
  isSized,
  loadMapBtf,
  parseBtf,
  readBtfById,
  sizeof,
  typeName,
  type TypeSpec,
  underlying,
  VMLINUX_BTF_PATH,
} from "../ffi/btf/mod.ts";
import { references } from "../ffi/btf/_graph.ts";
import { BTF_HEADER, makeInfo } from "../ffi/btf/layout.ts";
import { addInts, prng } from "./_btf_helpers.ts";

/** One BTF blob to mutate; `split` ones parse on top of vmlinux. */
interface Seed {
  name: string;
  bytes: Uint8Array;
  split: boolean;
}

/** What the main thread asks a worker to run. */
interface Job {
  seed: number;
  start: number;
  count: number;
  corpus: Seed[];
  vmlinux: Uint8Array | undefined;
  slowMs: number;
}

/** What a worker reports. */
type Report =
  | { type: "progress"; done: number }
  | { type: "failure"; index: number; message: string; input: Uint8Array; seedName: string }
  | {
    type: "done";
    done: number;
    parsed: number;
    exercised: number;
    reasons: Record<string, number>;
  };

// ---------------------------------------------------------------------------------------
// Inputs: deterministic per (seed, index).

/** The PRNG of input `index` of run `seed`. */
function inputRandom(seed: number, index: number): () => number {
  return prng(Math.imul(seed ^ 0x9e37_79b9, 0x85eb_ca6b) ^ Math.imul(index + 1, 0xc2b2_ae35));
}

const H = BTF_HEADER.fields;

/** Applies 1 to 4 mutations to a copy of `bytes`. */
function mutate(bytes: Uint8Array, random: () => number): Uint8Array {
  let out = bytes.slice();
  const below = (n: number) => Math.floor(random() * n);
  const view = () => new DataView(out.buffer, out.byteOffset, out.byteLength);
  const le = out.length >= 2 && out[0] === 0x9f;
  const u32 = (at: number) => at + 4 <= out.length ? view().getUint32(at, le) : 0;
  const set32 = (at: number, value: number) => {
    if (at >= 0 && at + 4 <= out.length) view().setUint32(at, value >>> 0, le);
  };
  // The header as it stands (earlier rounds may have changed or cut it).
  let typeStart = 0;
  let typeLen = 0;
  let strLen = 0;
  let typeCount = 1;
  const measure = () => {
    const hdrLen = Math.min(u32(H.hdrLen.offset), out.length);
    typeStart = Math.min(hdrLen + u32(H.typeOff.offset), out.length);
    typeLen = Math.min(u32(H.typeLen.offset), out.length - typeStart);
    strLen = u32(H.strLen.offset);
    typeCount = Math.max(1, Math.floor(typeLen / 16));
  };
  /** A 4-aligned offset in the type section (most records' fields), or anywhere. */
  const typeWord = () =>
    random() < 0.85 && typeLen >= 4
      ? typeStart + 4 * below(Math.floor(typeLen / 4))
      : 4 * below(Math.max(1, Math.floor(out.length / 4)));
  const interesting = (): number => {
    switch (below(12)) {
      case 0:
        return 0;
      case 1:
        return 1;
      case 2:
        return 0xffff_ffff;
      case 3:
        return 0x7fff_ffff + below(3);
      case 4:
        return below(256);
      case 5:
        return typeCount + below(9) - 4; // ids near the end
      case 6:
        return strLen + below(9) - 4; // name offsets near the end
      case 7:
        return makeInfo(below(32), [0, 1, 2, 3, 0xffff][below(5)], random() < 0.3);
      case 8:
        return (below(256) * 2 ** 24) + below(4096); // kind_flag member offsets
      case 9:
        return 0x0100_0000 * below(16) + below(129); // INT encodings and bits
      case 10:
        return out.length + below(64) - 32;
      default:
        return Math.floor(random() * 2 ** 32);
    }
  };
  const rounds = 1 + (random() < 0.5 ? 0 : below(4));
  for (let r = 0; r < rounds && out.length > 0; r++) {
    measure();
    switch (below(11)) {
      case 0: // flip a bit
        out[below(out.length)] ^= 1 << below(8);
        break;
      case 1: // set a byte
        out[below(out.length)] = below(256);
        break;
      case 2: // truncate
        out = out.slice(0, below(out.length));
        break;
      case 3: { // a header field, set or nudged
        const f = [H.hdrLen, H.typeOff, H.typeLen, H.strOff, H.strLen][below(5)].offset;
        if (random() < 0.5) set32(f, interesting());
        else set32(f, u32(f) + [4, -4, 1, -1, 12, -12][below(6)]);
        break;
      }
      case 4: // a type-section word: info, size, type id, member, name offset...
      case 5:
      case 6:
        set32(typeWord(), interesting());
        break;
      case 7: // a type id in range, elsewhere
        set32(typeWord(), below(typeCount + 2));
        break;
      case 8: // a name offset in range, elsewhere
        set32(typeWord(), below(strLen + 2));
        break;
      case 9: { // shift: drop or insert 4 bytes in the type section, fixing the header
        if (typeLen < 8) break;
        const at = typeStart + 4 * below(Math.floor(typeLen / 4)); // at + 4 <= out.length
        const grow = random() < 0.5;
        const next = new Uint8Array(out.length + (grow ? 4 : -4));
        next.set(out.subarray(0, at));
        if (grow) {
          new DataView(next.buffer).setUint32(at, interesting(), le);
          next.set(out.subarray(at), at + 4);
        } else next.set(out.subarray(at + 4), at);
        out = next;
        set32(H.typeLen.offset, u32(H.typeLen.offset) + (grow ? 4 : -4));
        set32(H.strOff.offset, u32(H.strOff.offset) + (grow ? 4 : -4));
        break;
      }
      default: { // duplicate 12 bytes of the type section over another place
        if (typeLen < 24) break;
        const from = typeStart + 4 * below(Math.floor((typeLen - 12) / 4));
        const to = typeStart + 4 * below(Math.floor((typeLen - 12) / 4));
        out.copyWithin(to, from, from + 12);
      }
    }
  }
  return out;
}

/** Names, sizes, decodes and encodes a few types of a parsed BTF: only `BtfError` may escape. */
function exercise(btf: Btf, random: () => number): void {
  const types = btf.types;
  if (types.length === 0) return;
  for (let k = 0; k < Math.min(types.length, 6); k++) {
    const t = types[Math.floor(random() * types.length)];
    try {
      typeName(t);
      if (!isSized(t)) continue;
      const size = sizeof(t);
      if (size > 1 << 16) continue;
      const codec = btfCodec(t, { littleEndian: btf.littleEndian, maxSteps: 4096 });
      const bytes = new Uint8Array(size);
      for (let i = 0; i < size; i++) bytes[i] = Math.floor(random() * 256);
      const value = codec.decode(bytes);
      const again = new Uint8Array(size);
      codec.encode(value, again);
      codec.decode(again);
    } catch (e) {
      if (!(e instanceof BtfError)) throw e;
    }
  }
}

/** The first words of a BtfError message: what kind of rejection it was. */
function reason(e: BtfError): string {
  return e.message.replace(/"[^"]*"/g, "_").replace(/\d+/g, "N").split(":")[0].slice(0, 60);
}

function runJob(job: Job, report: (r: Report) => void): void {
  const base = job.vmlinux ? parseBtf(job.vmlinux) : undefined;
  const reasons: Record<string, number> = {};
  let parsed = 0;
  let exercised = 0;
  for (let n = 0; n < job.count; n++) {
    const index = job.start + n;
    const random = inputRandom(job.seed, index);
    const seed = job.corpus[Math.floor(random() * job.corpus.length)];
    if (seed.split && !base) continue;
    const input = mutate(seed.bytes, random);
    const started = performance.now();
    try {
      const btf = parseBtf(input, seed.split ? { base } : {});
      parsed++;
      exercise(btf, random);
      exercised++;
    } catch (e) {
      if (e instanceof BtfError) {
        const r = reason(e);
        reasons[r] = (reasons[r] ?? 0) + 1;
      } else {
        report({
          type: "failure",
          index,
          message: e instanceof Error ? `${e.name}: ${e.message}\n${e.stack}` : String(e),
          input,
          seedName: seed.name,
        });
        return;
      }
    }
    const ms = performance.now() - started;
    if (ms > job.slowMs) {
      report({
        type: "failure",
        index,
        message: `input took ${ms.toFixed(0)} ms (more than BTF_FUZZ_SLOW_MS=${job.slowMs})`,
        input,
        seedName: seed.name,
      });
      return;
    }
    if ((n + 1) % 2000 === 0) report({ type: "progress", done: n + 1 });
  }
  report({ type: "done", done: job.count, parsed, exercised, reasons });
}

// ---------------------------------------------------------------------------------------
// In a worker: run the job posted, report back.

const IS_WORKER = "WorkerGlobalScope" in globalThis;

if (IS_WORKER) {
  const scope = globalThis as unknown as {
    onmessage: (e: MessageEvent<Job>) => void;
    postMessage: (r: Report) => void;
  };
  scope.onmessage = (e) => runJob(e.data, (r) => scope.postMessage(r));
} else {
  registerTests();
}

// ---------------------------------------------------------------------------------------
// The corpus.

/** BTF of every kind, in either byte order. */
function everyKind(littleEndian: boolean): Uint8Array {
  const b = new BtfBuilder({ littleEndian });
  const { s32: int, u8, u64, bool } = addInts(b, "s32", "u8", "u64", "bool");
  const char = b.add({ kind: "int", name: "char", size: 1, encoding: "char" });
  const odd = b.add({ kind: "int", name: "odd", size: 2, bits: 5, offset: 3 });
  const node = b.nextId;
  const next = node + 1;
  b.add({
    kind: "struct",
    name: "node",
    size: 40,
    members: [
      { name: "next", type: next, bitOffset: 0 },
      { name: "a", type: int, bitOffset: 64, bitfieldSize: 5 },
      { name: "b", type: u64, bitOffset: 69, bitfieldSize: 40 },
      { name: "c", type: bool, bitOffset: 109, bitfieldSize: 1 },
      { name: "name", type: node + 2, bitOffset: 128 },
      { type: node + 3, bitOffset: 256 },
    ],
  });
  b.add({ kind: "ptr", target: node });
  b.add({ kind: "array", element: char, index: int, nelems: 16 });
  b.add({
    kind: "union",
    size: 8,
    members: [{ name: "w", type: u64, bitOffset: 0 }, { name: "o", type: odd, bitOffset: 0 }],
  });
  const color = b.add({
    kind: "enum",
    name: "color",
    size: 1,
    signed: true,
    values: [{ name: "R", value: -1 }, { name: "G", value: 5 }],
  });
  const wide = b.add({
    kind: "enum64",
    name: "wide",
    values: [{ name: "W", value: 1n << 40n }],
  });
  const td = b.add({ kind: "typedef", name: "node_t", target: node });
  const cv = b.add({ kind: "const", target: b.add({ kind: "volatile", target: td }) });
  const restrict = b.add({ kind: "restrict", target: next });
  const tag = b.add({ kind: "type_tag", name: "user", target: u8 });
  const proto = b.add({
    kind: "func_proto",
    returns: int,
    params: [{ name: "n", type: restrict }, {
      name: "t",
      type: b.add({ kind: "ptr", target: tag }),
    }],
    variadic: true,
  });
  const func = b.add({ kind: "func", name: "f", proto, linkage: "global" });
  b.add({ kind: "decl_tag", name: "kfunc", target: func, componentIdx: 0 });
  b.add({ kind: "decl_tag", name: "member", target: node, componentIdx: 1 });
  const fwd = b.add({ kind: "fwd", name: "later", fwdKind: "union" });
  b.add({ kind: "ptr", target: fwd });
  const dbl = b.add({ kind: "float", name: "double", size: 8 });
  const v1 = b.add({ kind: "var", name: "v1", type: cv });
  const v2 = b.add({ kind: "var", name: "v2", type: dbl, linkage: "static" });
  const v3 = b.add({ kind: "var", name: "v3", type: color });
  const v4 = b.add({ kind: "var", name: "v4", type: wide });
  b.add({
    kind: "datasec",
    name: ".data",
    size: 64,
    vars: [
      { type: v1, offset: 0, size: 40 },
      { type: v2, offset: 40, size: 8 },
      { type: v3, offset: 48, size: 1 },
      { type: v4, offset: 56, size: 8 },
    ],
  });
  return b.build();
}

/**
 * A standalone slice of a BTF: the types `roots` lean on, with pointers to structs and
 * unions cut to forward declarations (so that the slice stays small), rebuilt with new ids.
 */
function slice(roots: BtfType[], max: number): Uint8Array {
  const order: BtfType[] = [];
  const ids = new Map<BtfType, number>();
  const fwds = new Map<BtfType, BtfType>();
  const pointee = (t: BtfType & { kind: "ptr" }): BtfType => {
    const to = underlying(t.target);
    if (to.kind !== "struct" && to.kind !== "union") return t.target;
    let fwd = fwds.get(to);
    if (!fwd) {
      fwd = { kind: "fwd", id: -1, name: to.name || "anon", fwdKind: to.kind };
      fwds.set(to, fwd);
    }
    return fwd;
  };
  const children = (t: BtfType) => t.kind === "ptr" ? [pointee(t)] : references(t);
  const visit = (root: BtfType) => {
    const stack = [root];
    while (stack.length) {
      const t = stack.pop()!;
      if (t.kind === "void" || ids.has(t)) continue;
      ids.set(t, order.length + 1);
      order.push(t);
      stack.push(...children(t));
    }
  };
  for (const root of roots) if (order.length < max) visit(root);
  const id = (t: BtfType) => t.kind === "void" ? 0 : ids.get(t)!;
  const b = new BtfBuilder();
  for (const t of order) {
    let spec: TypeSpec;
    switch (t.kind) {
      case "int":
        spec = {
          kind: "int",
          name: t.name,
          size: t.size,
          encoding: t.encoding,
          bits: t.bits,
          offset: t.offset,
        };
        break;
      case "ptr":
        spec = { kind: "ptr", target: id(pointee(t)) };
        break;
      case "array":
        spec = { kind: "array", element: id(t.element), index: id(t.index), nelems: t.nelems };
        break;
      case "struct":
      case "union":
        spec = {
          kind: t.kind,
          name: t.name,
          size: t.size,
          kflag: t.members.some((m) => m.bitfieldSize > 0),
          members: t.members.map((m) => ({
            name: m.name,
            type: id(m.type),
            bitOffset: m.bitOffset,
            bitfieldSize: m.bitfieldSize,
          })),
        };
        break;
      case "enum":
      case "enum64":
        spec = {
          kind: t.kind,
          name: t.name,
          size: t.size,
          signed: t.signed,
          values: [...t.values],
        } as TypeSpec;
        break;
      case "fwd":
        spec = { kind: "fwd", name: t.name, fwdKind: t.fwdKind };
        break;
      case "typedef":
      case "type_tag":
        spec = { kind: t.kind, name: t.name, target: id(t.target) };
        break;
      case "const":
      case "volatile":
      case "restrict":
        spec = { kind: t.kind, target: id(t.target) };
        break;
      case "func_proto":
        spec = {
          kind: "func_proto",
          returns: id(t.returns),
          params: t.params.map((p) => ({ name: p.name, type: id(p.type) })),
          variadic: t.variadic,
        };
        break;
      case "func":
        spec = { kind: "func", name: t.name, proto: id(t.proto), linkage: t.linkage };
        break;
      case "var":
        spec = { kind: "var", name: t.name, type: id(t.type), linkage: t.linkage };
        break;
      case "float":
        spec = { kind: "float", name: t.name, size: t.size };
        break;
      default:
        throw new Error(`slice: no ${t.kind}`);
    }
    b.add(spec);
  }
  return b.build();
}

/** Split BTF on vmlinux: own types leaning on the base's types and strings. */
function splitOn(base: Btf): Uint8Array {
  const b = new BtfBuilder({ base });
  const listHead = base.find("struct", "list_head")!;
  const task = base.find("struct", "task_struct")!;
  const u32 = base.find("typedef", "u32")!;
  const ptr = b.add({ kind: "ptr", target: task.id });
  const mine = b.add({
    kind: "struct",
    name: "split_entry",
    size: 40,
    members: [
      { name: "list", type: listHead.id, bitOffset: 0 }, // "list" is a base string
      { name: "task", type: ptr, bitOffset: 128 },
      { name: "flags", type: u32.id, bitOffset: 192, bitfieldSize: 7 },
      { name: "split_only_name", type: u32.id, bitOffset: 256 },
    ],
  });
  b.add({ kind: "typedef", name: "split_entry_t", target: mine });
  const e = b.add({ kind: "enum", name: "split_enum", values: [{ name: "SPLIT_A", value: 1 }] });
  b.add({ kind: "array", element: e, index: u32.id, nelems: 4 });
  return b.build();
}

/** The kernel's copy of btf_types.bpf.o's BTF, or why it cannot be had. */
async function objectBtf(): Promise<Uint8Array | string> {
  try {
    const { BpfObject, builtObjectPath } = await import("../ffi/map/object.ts");
    using object = BpfObject.open(builtObjectPath("btf_types.bpf.o"));
    object.load();
    using map = object.map("bt_hash");
    const btf = loadMapBtf(map);
    if (!btf) return "bt_hash has no BTF";
    return readBtfById(btf.btfId).bytes;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

// ---------------------------------------------------------------------------------------
// The test.

function envNumber(name: string, fallback: number): number {
  const text = Deno.env.get(name);
  if (text === undefined || text === "") return fallback;
  if (text === "random" && name === "BTF_FUZZ_SEED") return Math.floor(Math.random() * 2 ** 31);
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name}="${text}": expected a whole number`);
  return n;
}

function registerTests(): void {
  Deno.test("btf fuzz: every mutated input parses or throws a BtfError, quickly", async () => {
    const seed = envNumber("BTF_FUZZ_SEED", 1);
    const start = envNumber("BTF_FUZZ_START", 0);
    const count = envNumber("BTF_FUZZ_COUNT", 250_000);
    const slowMs = envNumber("BTF_FUZZ_SLOW_MS", 2000);
    const workers = Math.max(
      1,
      envNumber("BTF_FUZZ_WORKERS", Math.min(4, navigator.hardwareConcurrency || 1)),
    );

    const corpus: Seed[] = [
      { name: "every kind (little-endian)", bytes: everyKind(true), split: false },
      { name: "every kind (big-endian)", bytes: everyKind(false), split: false },
    ];
    let vmlinux: Uint8Array | undefined;
    try {
      vmlinux = Deno.readFileSync(VMLINUX_BTF_PATH);
    } catch {
      console.log(`no ${VMLINUX_BTF_PATH}: no vmlinux slice nor split BTF in the corpus`);
    }
    if (vmlinux) {
      const base = parseBtf(vmlinux);
      const roots = [
        "sk_buff",
        "tcphdr",
        "in6_addr",
        "callback_head",
        "perf_event_attr",
        "file_operations",
      ]
        .map((name) => base.find("struct", name)).filter((t) => t !== undefined);
      corpus.push({ name: "vmlinux slice", bytes: slice(roots, 250), split: false });
      corpus.push({ name: "split on vmlinux", bytes: splitOn(base), split: true });
    }
    const object = await objectBtf();
    if (typeof object === "string") console.log(`no object BTF in the corpus: ${object}`);
    else corpus.push({ name: "btf_types.bpf.o (from the kernel)", bytes: object, split: false });
    for (const s of corpus) {
      // Every seed is valid BTF to begin with.
      parseBtf(s.bytes, s.split ? { base: parseBtf(vmlinux!) } : {});
    }
    console.log(
      `seed ${seed}, inputs ${start} to ${start + count - 1}, ${workers} workers; corpus: ${
        corpus.map((s) => `${s.name} ${s.bytes.length} B`).join(", ")
      }`,
    );

    const started = performance.now();
    const per = Math.ceil(count / workers);
    const results = await Promise.all(
      Array.from({ length: workers }, (_, w) => {
        const job: Job = {
          seed,
          start: start + w * per,
          count: Math.max(0, Math.min(per, count - w * per)),
          corpus,
          vmlinux,
          slowMs,
        };
        return runWorker(job);
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    const done = results.reduce((n, r) => n + r.done, 0);
    const parsed = results.reduce((n, r) => n + r.parsed, 0);
    const reasons: Record<string, number> = {};
    for (const r of results) {
      for (const [k, v] of Object.entries(r.reasons)) reasons[k] = (reasons[k] ?? 0) + v;
    }
    const top = Object.entries(reasons).sort((a, b) => b[1] - a[1]).slice(0, 12);
    console.log(
      `${done} inputs in ${seconds.toFixed(1)} s (${
        (done / seconds).toFixed(0)
      }/s): ${parsed} parsed, ${done - parsed} rejected; most common rejections:\n${
        top.map(([k, v]) => `  ${v}  ${k}`).join("\n")
      }`,
    );
    assert.equal(done, count);
    if (count >= 10_000) {
      assert.ok(parsed > 0 && parsed < done, "the fuzzer explores both accepted and rejected BTF");
    }
  });
}

/** Runs one job in a worker, with a watchdog; rejects with a reproducible description. */
function runWorker(job: Job): Promise<Report & { type: "done" }> {
  const worker = new Worker(import.meta.url, { type: "module" });
  let last = job.start;
  let timer: ReturnType<typeof setTimeout> | undefined;
  return new Promise<Report & { type: "done" }>((resolve, reject) => {
    const replay = (from: number, n: number) =>
      `BTF_FUZZ_SEED=${job.seed} BTF_FUZZ_START=${from} BTF_FUZZ_COUNT=${n}`;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        reject(
          new Error(
            `No progress for 30 s after input ${last}: an input hangs. Replay with ${
              replay(last, 2000)
            }`,
          ),
        );
      }, 30_000);
    };
    worker.onmessage = (e: MessageEvent<Report>) => {
      const r = e.data;
      if (r.type === "progress") {
        last = job.start + r.done;
        arm();
      } else if (r.type === "failure") {
        const file = Deno.makeTempFileSync({
          prefix: `btf-fuzz-${job.seed}-${r.index}-`,
          suffix: ".bin",
        });
        Deno.writeFileSync(file, r.input);
        const b64 = btoa(String.fromCharCode(...r.input));
        reject(
          new Error(
            `Input ${r.index} of seed ${job.seed} (from "${r.seedName}") failed: ${r.message}\n` +
              `replay: ${
                replay(r.index, 1)
              }\ninput (${r.input.length} bytes, also in ${file}):\n${b64}`,
          ),
        );
      } else {
        resolve(r);
      }
    };
    worker.onerror = (e) => {
      e.preventDefault();
      reject(new Error(`The fuzz worker failed: ${e.message}`));
    };
    arm();
    worker.postMessage(job);
  }).finally(() => {
    clearTimeout(timer);
    worker.terminate();
  });
}
