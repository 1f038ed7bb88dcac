/**
 * What a dump claims: the problem and the verdict line of `dumpMap`, and the table cell the
 * demo prints. A dump that saw keys twice on a still map (the study's loop) is "NOT
 * VERIFIED" whatever the count; "yes" is said only when the kernel's count was checked.
 *
 * @module
 */

import assert from "node:assert/strict";
import { stripVTControlCharacters } from "node:util";
import { BpfMap, dumpMap, type DumpResult, verdict } from "../mod.ts";
import { verifiedCell } from "../scripts/_dump.ts";
import { ALL_BACKENDS, bpfTest, u32Bytes } from "./_helpers.ts";

const N = 1024;
const CHUNK = 64;

function filledHash(backend: (typeof ALL_BACKENDS)[number]): BpfMap {
  const map = BpfMap.create({ type: "hash", keySize: 4, valueSize: 4, maxEntries: N }, {
    backend,
  });
  const keys = u32Bytes(...Array.from({ length: N }, (_, i) => i));
  map.updateBatch(keys, keys);
  return map;
}

for (const backend of ALL_BACKENDS) {
  bpfTest(
    `a dump seeing keys twice is NOT VERIFIED without the kernel's count [${backend}]`,
    async () => {
      using map = filledHash(backend);
      const result = await dumpMap(map, {
        method: "seed-compat",
        chunk: CHUNK,
        expected: { unavailable: "withheld by the test" },
      });
      assert.ok(result.entries > result.distinct, JSON.stringify(result));
      assert.match(result.problem ?? "", /reported more than once/);
      assert.equal(result.verified, false);
      assert.match(verdict(result), /^NOT VERIFIED: /);
    },
  );

  bpfTest(`duplicates are named as such, before any count mismatch [${backend}]`, async () => {
    using map = filledHash(backend);
    const result = await dumpMap(map, { method: "seed-compat", chunk: CHUNK, expected: N });
    assert.match(result.problem ?? "", /^\d+ of \d+ keys were reported more than once/);
  });
}

const plain = stripVTControlCharacters;

/** A still map's whole, checked dump, with `overrides`. */
function result(overrides: Partial<DumpResult>): DumpResult {
  const figures = { rss: 0, heapTotal: 0, heapUsed: 0, external: 0 };
  return {
    method: "batch",
    plan: null,
    kernelWalk: null,
    backend: "syscall",
    entries: 10,
    distinct: 10,
    duplicates: 0,
    restarts: 0,
    expected: 10,
    countBefore: 10,
    countUnavailable: null,
    countSource: "kernel",
    changed: false,
    stableOnce: true,
    seconds: 0,
    setupSeconds: 0,
    user: 0,
    sys: 0,
    syscalls: 1,
    chunk: 4096,
    batches: 1,
    memory: { start: figures, end: figures, peakRss: null },
    verified: true,
    problem: null,
    ...overrides,
  };
}

Deno.test("verifiedCell: yes only with the kernel's count, keys only without it, NO on a problem", () => {
  assert.equal(plain(verifiedCell(result({}))), "yes");
  assert.equal(
    plain(verifiedCell(result({ expected: null, countUnavailable: "no kfunc", verified: false }))),
    "keys only",
  );
  assert.equal(
    plain(verifiedCell(result({ distinct: 9, verified: false, problem: "1 of 10 keys twice" }))),
    "NO",
  );
});

Deno.test("verdict: one line that claims what was checked and no more", () => {
  assert.equal(verdict(result({})), "Verified: every key once, 10 distinct (kernel count 10)");
  assert.equal(
    verdict(
      result({ expected: null, countBefore: null, countUnavailable: "why", verified: false }),
    ),
    "Every key once, 10 distinct; kernel count unavailable: why",
  );
  assert.equal(
    verdict(
      result({ changed: true, verified: false, countBefore: 12, duplicates: 2, restarts: 1 }),
    ),
    "Map written during the dump (kernel count 12 -> 10): each key once, 10 keys; 2 repeated keys dropped, 1 restarts followed; keys present and unchanged throughout were reported once",
  );
  assert.match(
    verdict(result({ method: "iter", stableOnce: false, changed: true, verified: false })),
    /; iter does not promise keys present throughout once: they may have been skipped or repeated$/,
  );
  assert.equal(verdict(result({ problem: "bad", verified: false })), "NOT VERIFIED: bad");
});
