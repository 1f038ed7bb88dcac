/**
 * What the toolkit does where the kernel refuses it something, run for real on every kernel:
 * `BPF_DENY` makes the probe refuse a facility, and every place that would use it refuses as
 * on a kernel that refuses it (tests of the library run in a child with `BPF_DENY` set; the
 * scripts get it in their environment). Each count source counts a still map exactly, a
 * dump is never checked against its own walk, a written map is noticed without the kernel's
 * count, `auto` never picks what is refused, and a method asked for by name is refused in one
 * line naming what to use instead, before anything is loaded.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  BpfMap,
  BpfObject,
  BpfUnavailableError,
  builtObjectPath,
  type CountSource,
  dumpMap,
  type DumpMethod,
  fillMap,
  MapCounter,
  MapIterator,
  MapSnapshot,
  type MapTypeName,
  methodUnavailable,
  startKernelChurn,
  verdict,
} from "../mod.ts";
import { bpfTest, deniedTest, runScriptWith, u32Bytes } from "./_helpers.ts";

const ENTRIES = 3000;

/** A `type` map of `ENTRIES` u32 keys and 8-byte values, with room for as many again. */
async function filledMap(type: MapTypeName = "hash"): Promise<BpfMap> {
  const map = BpfMap.create({ type, keySize: 4, valueSize: 8, maxEntries: 2 * ENTRIES });
  await fillMap(map, { entries: ENTRIES });
  return map;
}

/** The count sources a map of any hash type can be counted by, and the facilities each needs. */
const SOURCES: readonly Exclude<CountSource, "array" | "given">[] = [
  "kernel",
  "for_each",
  "iter",
  "batch",
  "keys",
];

for (const type of ["hash", "lru_hash", "percpu_hash"] as const) {
  bpfTest(
    `every count source this kernel allows counts a still map exactly [${type}]`,
    async () => {
      using map = await filledMap(type);
      for (const source of SOURCES) {
        using counter = MapCounter.open(map, { sources: [source] });
        const counted = counter.count();
        if (counter.source === null) {
          // Refused here: the reason is the probe's, or the object is not built.
          assert.match(counted.unavailable ?? "", /refuses|lacks|need|missing|denied/, source);
          continue;
        }
        assert.deepEqual(counted, { count: ENTRIES, source }, source);
        // A pass of a walk counts afresh: a key added is counted.
        map.update(u32Bytes(ENTRIES + 1), new Uint8Array(map.valueBytes));
        assert.equal(counter.count().count, ENTRIES + 1, source);
        map.delete(u32Bytes(ENTRIES + 1));
      }
    },
  );
}

bpfTest("a dump is never checked against a pass of its own walk", async () => {
  using map = await filledMap();
  const own: Record<string, (typeof SOURCES)[number][]> = {
    normal: ["keys"],
    batch: ["batch"],
    parallel: ["batch"],
    iter: ["iter"],
    snapshot: ["for_each", "batch"],
    hybrid: ["for_each", "batch"],
  };
  for (const [method, walks] of Object.entries(own)) {
    for (const source of walks) {
      using counter = MapCounter.open(map, { method, sources: [source] });
      assert.equal(counter.source, null, `${method} counted by ${source}`);
      assert.match(counter.count().unavailable!, new RegExp(`the ${method} dump's own walk`));
    }
  }
});

const NO_KFUNC = ["elem_count_kfunc"] as const;

deniedTest(
  import.meta.url,
  "without the kernel's count, each method's dump is verified against another count it names",
  NO_KFUNC,
  async () => {
    using map = await filledMap();
    for (const method of ["normal", "batch", "parallel", "iter", "snapshot", "hybrid"] as const) {
      if (methodUnavailable(method) !== null) continue;
      const result = await dumpMap(map, { method });
      assert.equal(result.verified, true, `${method}: ${verdict(result)}`);
      assert.ok(result.countSource !== null && result.countSource !== "kernel", method);
      assert.match(verdict(result), new RegExp(`\\(count ${ENTRIES} by a [\\w ]+ pass\\)$`));
    }
  },
);

deniedTest(
  import.meta.url,
  "without the kernel's count, a batch dump still notices a map written meanwhile",
  NO_KFUNC,
  async () => {
    using map = await filledMap();
    let added = 0;
    const result = await dumpMap(map, {
      method: "batch",
      chunk: 256,
      // A key added at each batch while the walk goes on: the counts before and after differ.
      visit: () => map.update(u32Bytes(100_000 + added++), new Uint8Array(8)),
    });
    assert.equal(result.changed, true, verdict(result));
    assert.equal(result.verified, false);
    assert.equal(result.countBefore, ENTRIES);
    assert.ok(added > 0);
    assert.equal(result.expected, ENTRIES + added);
    assert.match(
      verdict(result),
      new RegExp(`^Map written during the dump \\(count ${ENTRIES} -> ${ENTRIES + added} by a `),
    );
  },
);

deniedTest(
  import.meta.url,
  "auto never picks the snapshot where the kernel refuses it, and says why",
  ["for_each_map_elem"],
  async () => {
    using map = await filledMap();
    const result = await dumpMap(map, { method: "auto" });
    assert.ok(!["snapshot", "hybrid"].includes(result.method), result.method);
    assert.equal(result.plan?.estimatesMs.snapshot, undefined);
    assert.match(
      result.plan!.reason,
      /no snapshot: the snapshot cannot run here: bpf_for_each_map_elem in syscall programs: denied to this process/,
    );
    assert.equal(result.verified, true, verdict(result));
  },
);

deniedTest(
  import.meta.url,
  "auto reads per entry where LOOKUP_BATCH is refused, and says why",
  ["lookup_batch_hash"],
  async () => {
    using map = await filledMap();
    const result = await dumpMap(map, { method: "auto" });
    assert.equal(result.method, "normal");
    assert.match(result.plan!.reason, /LOOKUP_BATCH on hash maps: denied .*read one at a time/);
    assert.equal(result.verified, true, verdict(result));
  },
);

/** Asserts that `fn` is refused in one line naming `what` and `instead`, before any load. */
async function assertRefused(fn: () => unknown, what: RegExp): Promise<void> {
  await assert.rejects(
    async () => await fn(),
    (e: unknown) => {
      assert.ok(e instanceof BpfUnavailableError, String(e));
      assert.equal(e.message.split("\n").length, 1);
      assert.match(e.message, what);
      return true;
    },
  );
}

deniedTest(
  import.meta.url,
  "a method the kernel refuses is refused in one line, naming what to use instead",
  ["iter_map_elem", "for_each_map_elem", "loop"],
  async () => {
    using map = await filledMap();
    const cases: [DumpMethod, string][] = [
      ["iter", "batch"],
      ["snapshot", "batch"],
      ["hybrid", "parallel"],
    ];
    for (const [method, instead] of cases) {
      await assertRefused(
        () => dumpMap(map, { method }),
        new RegExp(
          `^the ${method} method cannot run here: .* denied to this process .*: use the ${instead} method instead \\(--method ${instead}\\)$`,
        ),
      );
    }
    await assertRefused(() => MapIterator.attach(map), /^the bpf_iter dump cannot run here: /);
    await assertRefused(() => MapSnapshot.open(map), /^the snapshot cannot run here: /);
    await assertRefused(
      () => startKernelChurn(map, { first: 10_000, count: 10, rate: 100 }),
      /^the kernel churn writer cannot run here: bpf_loop in syscall programs: denied .*: write from user space instead/,
    );
    // The one place objects are loaded refuses a program of a kind the kernel refuses.
    using object = BpfObject.open(builtObjectPath("dump_iter.bpf.o"));
    await assertRefused(
      () => object.load(),
      /^the program "dump_map" of ".*dump_iter\.bpf\.o" cannot run here: iter\/bpf_map_elem programs: denied/,
    );
  },
);

/** `BPF_DENY` for the scripts below: no bpf_iter, no kernel count, no kernel writer. */
const DENY = "iter_map_elem,elem_count_kfunc,loop";

bpfTest("demo: a refused method is a row that says why; the rest verified; exit 0", async () => {
  const demo = await runScriptWith({ env: { BPF_DENY: DENY } }, "demo.ts", "--entries", "20000");
  assert.equal(demo.code, 0, `${demo.stdout}\n${demo.stderr}`);
  const rows = demo.stdout.split("\n").filter((line) => line.startsWith("│ "));
  const iter = rows.find((row) => row.startsWith("│ iter "));
  assert.match(iter ?? "", /│ unavailable +│/, demo.stdout);
  assert.match(
    demo.stdout,
    /^iter: unavailable: iter\/bpf_map_elem programs: denied to this process \(BPF_DENY=iter_map_elem,elem_count_kfunc,loop\)$/m,
  );
  for (const method of ["normal", "batch", "parallel", "snapshot", "hybrid", "auto"]) {
    const row = rows.find((r) => r.startsWith(`│ ${method}`));
    assert.ok(row, `no ${method} row:\n${demo.stdout}`);
    // Verified, against a count that is not the kernel's: it keeps none here.
    assert.match(row, /│ yes +│ (for_each|iter|batch|keys) +│/, row);
  }
  assert.match(demo.stdout, /^counts checked against: .*pass/m);
});

bpfTest("churn: the kernel writer refused is a row that says why; exit 0", async () => {
  const churn = await runScriptWith(
    { env: { BPF_DENY: DENY } },
    "churn.ts",
    ...["--stable", "2000", "--transient", "100", "--rates", "max"],
    ...["--methods", "batch,iter", "--rounds", "1", "--json"],
  );
  assert.equal(churn.code, 0, `${churn.stdout}\n${churn.stderr}`);
  const rows = churn.stdout.trim().split("\n").map((line) => JSON.parse(line));
  const of = (writer: string, method: string) =>
    rows.find((r) => r.writer === writer && r.method === method);
  assert.equal(of("user", "batch").unavailable, null);
  assert.equal(of("user", "batch").stableMissed[0], 0);
  assert.match(of("user", "iter").unavailable, /^iter\/bpf_map_elem programs: denied/);
  for (const method of ["batch", "iter"]) {
    assert.match(
      of("kernel", method).unavailable,
      /^the kernel writer: bpf_loop in syscall programs: denied/,
    );
  }
});

bpfTest("iter.ts where bpf_iter is refused: one line, exit 1, naming deno task batch", async () => {
  using map = await filledMap();
  const iter = await runScriptWith(
    { env: { BPF_DENY: DENY } },
    "iter.ts",
    "--id",
    String(map.info.id),
  );
  assert.equal(iter.code, 1);
  assert.equal(iter.stdout, "");
  assert.equal(
    iter.stderr,
    `error: the iter method cannot run here: iter/bpf_map_elem programs: denied to this process (BPF_DENY=${DENY}): use the batch method instead (deno task batch)\n`,
  );
});
