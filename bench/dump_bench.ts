/**
 * `deno task bench`: the hot paths, as `Deno.bench` groups. Needs root (real maps).
 *
 * - `encode`: bpf_attr encoding, pure TypeScript;
 * - `lookup`: one LOOKUP_ELEM on each backend;
 * - `batch call`: one LOOKUP_BATCH call of 4096 entries on each backend;
 * - `dump 100k`: a full, verified dump of a 100,000-entry hash map by every method, with
 *   the per-entry method as the baseline (the iterator and the workers are set up once).
 *
 * @module
 */

import { BpfMap, dumpMap, MapIterator, methodUnavailable, ParallelPool } from "../mod.ts";
import { BATCH_ATTR, encodeBatch, encodeElem, layoutSize } from "../ffi/sys/layout.ts";
import { BatchWalker } from "../ffi/map/walk.ts";
import { backend as backendOf } from "../ffi/sys/backends.ts";
import { createFilledMap, type Variant, VARIANTS } from "../scripts/_measure.ts";

const ENTRIES = 100_000;
const map = await createFilledMap("hash", ENTRIES);
const maps = { syscall: map, libbpf: BpfMap.fromId(map.info.id, { backend: "libbpf" }) };
// A method this kernel refuses is left out, and said so.
const refused = (v: Variant) => v.method === "auto" ? null : methodUnavailable(v.method);
const runs = VARIANTS.filter((v) => refused(v) === null);
for (const v of VARIANTS.filter((v) => refused(v) !== null)) {
  console.error(`dump 100k: ${v.label}: unavailable: ${refused(v)}`);
}
const iterator = runs.some((v) => v.method === "iter") ? MapIterator.attach(map) : undefined;
// Started once, like the iterator: a dump that starts its own workers pays ~25 ms for them.
const pool = await ParallelPool.start();

const attr = new DataView(new ArrayBuffer(layoutSize(BATCH_ATTR)));
Deno.bench("encode BATCH attr", { group: "encode", baseline: true }, () => {
  encodeBatch(attr, {
    inBatch: 0x1000n,
    outBatch: 0x2000n,
    keys: 0x3000n,
    values: 0x4000n,
    count: 4096,
    mapFd: 3,
    elemFlags: 0n,
  });
});
Deno.bench("encode ELEM attr", { group: "encode" }, () => {
  encodeElem(attr, { mapFd: 3, key: 0x1000n, value: 0x2000n, flags: 0n });
});

const key = new Uint8Array(new Uint32Array([4242]).buffer);
const value = new Uint8Array(4);
for (const [backend, m] of Object.entries(maps)) {
  Deno.bench(`lookup (${backend})`, { group: "lookup", baseline: backend === "syscall" }, () => {
    m.lookup(key, value);
  });
  Deno.bench(`one batch call of 4096 (${backend})`, {
    group: "batch call",
    baseline: backend === "syscall",
  }, () => {
    const target = {
      backend: backendOf(m.backend),
      fd: m.fd,
      keySize: 4,
      valueBytes: 4,
      maxEntries: ENTRIES,
      subject: m.subject,
    };
    new BatchWalker(target, { chunk: 4096 }).next();
  });
}

for (const variant of runs) {
  Deno.bench(`dump 100k: ${variant.label}`, {
    group: "dump 100k",
    baseline: variant.label === "per-entry / syscall",
  }, async () => {
    const result = await dumpMap(maps[variant.backend], {
      method: variant.method,
      iterator: variant.method === "iter" ? iterator : undefined,
      pool: variant.method === "parallel" ? pool : undefined,
      expected: ENTRIES,
    });
    if (!result.verified) throw new Error(`${variant.label}: ${result.problem}`);
  });
}

globalThis.addEventListener("unload", () => {
  iterator?.close();
  pool.close();
  maps.libbpf.close();
  map.close();
});
