/**
 * The churn writers against the real kernel: each writer, on hash, lru_hash and percpu_hash
 * maps of several key sizes, reaches roughly its target rate, goes faster flat out, stops
 * promptly, keeps its keys in the transient range and leaves the stable keys (and, unless
 * asked to rewrite them, their values) as they were; maps and options it cannot churn fail
 * with a clear error, and no Worker is left running (the sanitizers are on).
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  BpfArgumentError,
  BpfError,
  BPFFS_ROOT,
  BpfMap,
  MapFlag,
  type MapTypeName,
} from "../mod.ts";
import {
  type Churner,
  type ChurnOptions,
  type ChurnResult,
  startKernelChurn,
  startUserChurn,
} from "../ffi/map/churn.ts";
import { bpfTest, facilityTest, runScript, u32At } from "./_helpers.ts";
import { KERNEL_WRITER_FACILITIES } from "../ffi/map/churn.ts";

/** Stable keys are numbers `0 .. STABLE - 1`; transient keys `FIRST .. FIRST + TRANSIENT - 1`. */
const STABLE = 2000;
const FIRST = 5000;
const TRANSIENT = 500;
/** The paced target: 20,000 operations per second for half a second. */
const PACED_RATE = 20_000;
const PACED_MS = 500;
const FLAT_OUT_MS = 250;
/** stop() must return within this (measured: 1-2 ms). */
const PROMPT_MS = 100;

const WRITERS = { user: startUserChurn, kernel: startKernelChurn } as const;
type WriterName = keyof typeof WRITERS;

/** A test of one writer: the kernel writer's skipped, with the probe's reason, where it cannot run. */
function writerTest(writer: WriterName, name: string, fn: () => void | Promise<void>): void {
  if (writer === "user") bpfTest(name, fn);
  else facilityTest(import.meta.url, name, KERNEL_WRITER_FACILITIES, fn);
}

/** The map types and key sizes the writers are run on (keys of any size from 4 bytes). */
const CASES: readonly { type: MapTypeName; keySize: number; valueSize: number }[] = [
  { type: "hash", keySize: 4, valueSize: 8 },
  { type: "lru_hash", keySize: 12, valueSize: 4 },
  { type: "percpu_hash", keySize: 8, valueSize: 12 },
];

function keyBytes(map: BpfMap, number: number): Uint8Array {
  const key = new Uint8Array(map.keySize);
  new DataView(key.buffer).setUint32(0, number, true);
  return key;
}

/** A stable key's value: a pattern of its number in every byte (every CPU slot alike). */
function stableValue(map: BpfMap, number: number): Uint8Array {
  return new Uint8Array(map.valueBytes).map((_, i) => (number * 7 + i) & 0xff);
}

/** A map holding the stable keys, with room to spare (so an LRU map never evicts). */
function stableMap(type: MapTypeName, keySize: number, valueSize: number): BpfMap {
  const map = BpfMap.create({ type, keySize, valueSize, maxEntries: 4 * (STABLE + TRANSIENT) });
  for (let number = 0; number < STABLE; number++) {
    map.update(keyBytes(map, number), stableValue(map, number));
  }
  return map;
}

/** What a map holds after a writer stopped. */
interface Contents {
  /** Stable key numbers whose value is not the one written before. */
  rewritten: number[];
  /** Transient key numbers present. */
  transient: number[];
}

/**
 * Asserts that every stable key is present, that every other key is a transient number with
 * zero bytes after its first 4, and returns what changed.
 */
function checkContents(map: BpfMap, what: string): Contents {
  const seen = new Set<number>();
  const contents: Contents = { rewritten: [], transient: [] };
  const strays: string[] = [];
  for (const [key, value] of map.entries()) {
    const number = u32At(key);
    if (key.subarray(4).some((byte) => byte !== 0)) strays.push(`key ${number}: tail ${key}`);
    if (number < STABLE) {
      seen.add(number);
      const expected = stableValue(map, number);
      if (!value.every((byte, i) => byte === expected[i])) contents.rewritten.push(number);
    } else if (number >= FIRST && number < FIRST + TRANSIENT) {
      contents.transient.push(number);
    } else {
      strays.push(`key ${number}`);
    }
  }
  assert.deepEqual(strays.slice(0, 5), [], `${what}: keys outside the stable and transient ranges`);
  assert.equal(seen.size, STABLE, `${what}: stable keys missing`);
  return contents;
}

/** Runs a writer for `ms` milliseconds; returns what it did and how long stop() took. */
async function runFor(
  writer: WriterName,
  map: BpfMap | number,
  options: ChurnOptions,
  ms: number,
): Promise<ChurnResult & { stopMs: number }> {
  const churner: Churner = await WRITERS[writer](map, options);
  assert.equal(churner.writer, writer);
  await new Promise((resolve) => setTimeout(resolve, ms));
  const started = performance.now();
  const result = await churner.stop();
  const stopMs = performance.now() - started;
  assert.equal(await churner.stop(), result, "a second stop() gives the same result");
  return { ...result, stopMs };
}

for (const writer of Object.keys(WRITERS) as WriterName[]) {
  for (const { type, keySize, valueSize } of CASES) {
    writerTest(
      writer,
      `${writer} writer: target rate, flat out, stable keys kept [${type}, ${keySize}-byte keys]`,
      async () => {
        using map = stableMap(type, keySize, valueSize);
        const options = { first: FIRST, count: TRANSIENT };
        const paced = await runFor(writer, map, { ...options, rate: PACED_RATE }, PACED_MS);
        const what = `${writer} writer at ${PACED_RATE}/s on ${type}`;
        assert.ok(
          paced.rate >= PACED_RATE / 4 && paced.rate <= PACED_RATE * 4,
          `${what}: achieved ${Math.round(paced.rate)}/s`,
        );
        assert.ok(paced.seconds >= PACED_MS / 1000 * 0.9, `${what}: ran ${paced.seconds} s`);
        assert.equal(paced.failed, 0, `${what}: writes refused`);
        assert.ok(paced.stopMs < PROMPT_MS, `${what}: stop() took ${paced.stopMs} ms`);
        const afterPaced = checkContents(map, what);
        assert.deepEqual(afterPaced.rewritten, [], `${what}: stable values rewritten`);
        assert.ok(afterPaced.transient.length > 0, `${what}: no transient key present`);

        const flat = await runFor(writer, map, { ...options, rate: "max" }, FLAT_OUT_MS);
        const flatWhat = `${writer} writer flat out on ${type}`;
        assert.ok(
          flat.rate > paced.rate,
          `${flatWhat}: ${Math.round(flat.rate)}/s, not above the paced ${
            Math.round(paced.rate)
          }/s`,
        );
        assert.ok(flat.stopMs < PROMPT_MS, `${flatWhat}: stop() took ${flat.stopMs} ms`);
        assert.deepEqual(checkContents(map, flatWhat).rewritten, [], `${flatWhat}: values`);
      },
    );
  }

  writerTest(
    writer,
    `${writer} writer: rewriteStable rewrites those values only, keys stay [hash]`,
    async () => {
      using map = stableMap("hash", 4, 8);
      const rewriteStable = 100;
      const result = await runFor(
        writer,
        map,
        { first: FIRST, count: TRANSIENT, rate: "max", rewriteStable },
        100,
      );
      assert.ok(result.operations > 1000, `only ${result.operations} operations`);
      const { rewritten } = checkContents(map, `${writer} writer with rewriteStable`);
      assert.ok(rewritten.length > 0, "no stable value rewritten");
      assert.ok(
        rewritten.every((number) => number < rewriteStable),
        `values rewritten beyond ${rewriteStable}: ${rewritten.filter((n) => n >= rewriteStable)}`,
      );
    },
  );

  writerTest(
    writer,
    `${writer} writer: aim writes only the aimed keys, map given by id [hash]`,
    async () => {
      using map = stableMap("hash", 8, 8);
      const aim = [FIRST + 3, FIRST + 77, FIRST + 499];
      const result = await runFor(
        writer,
        map.info.id,
        { first: FIRST, count: TRANSIENT, rate: "max", aim },
        100,
      );
      assert.ok(result.operations > 1000, `only ${result.operations} operations`);
      const { transient, rewritten } = checkContents(map, `${writer} writer with aim`);
      assert.deepEqual(transient.filter((number) => !aim.includes(number)), []);
      assert.deepEqual(rewritten, []);
    },
  );

  writerTest(writer, `${writer} writer: await using stops it [hash]`, async () => {
    using map = stableMap("hash", 4, 4);
    {
      await using churner = await WRITERS[writer](map, {
        first: FIRST,
        count: TRANSIENT,
        rate: 1000,
      });
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(churner.writer, writer);
    }
    checkContents(map, `${writer} writer after await using`);
  });

  writerTest(
    writer,
    `${writer} writer: maps and options it cannot churn [hash, array]`,
    async () => {
      const start = WRITERS[writer];
      const options = { first: FIRST, count: TRANSIENT, rate: 1000 };
      {
        using array = BpfMap.create({ type: "array", keySize: 4, valueSize: 8, maxEntries: 16 });
        await assert.rejects(start(array, options), (e) => {
          assert.ok(e instanceof BpfArgumentError);
          assert.match(
            e.message,
            /Cannot churn the map \d+ of type array: the writers delete keys/,
          );
          return true;
        });
      }
      {
        using small = BpfMap.create({ type: "hash", keySize: 2, valueSize: 8, maxEntries: 16 });
        await assert.rejects(start(small, options), (e) => {
          assert.ok(e instanceof BpfArgumentError);
          assert.match(e.message, /its keys are 2 bytes, the writers need at least 4/);
          return true;
        });
      }
      using map = stableMap("hash", 4, 4);
      const bad: [Partial<ChurnOptions>, RegExp][] = [
        [{ count: 0 }, /Invalid count "0"/],
        [{ rate: 0 }, /Invalid rate "0"/],
        [{ rate: Number.NaN }, /Invalid rate "NaN"/],
        [{ rewriteStable: FIRST + 1 }, /Invalid rewriteStable "5001": .* from 0 to 5000/],
        [{ aim: [] }, /Empty aim/],
        [{ aim: [FIRST, STABLE - 1] }, /Invalid aim key "1999": .* from 5000 to 5499/],
        [{ first: 0xffff_ffff, count: 2 }, /Invalid count "2": .* from 1 to 1/],
        [{ pattern: "zigzag" as "window" }, /Invalid pattern "zigzag"/],
        writer === "kernel"
          ? [{ pattern: "window" }, /The window pattern is the user writer's.*not the kernel/]
          : [{ pattern: "window", aim: [FIRST] }, /leave aim and rewriteStable out/],
      ];
      for (const [change, message] of bad) {
        await assert.rejects(start(map, { ...options, ...change }), (e) => {
          assert.ok(e instanceof BpfArgumentError, `${JSON.stringify(change)}: ${e}`);
          assert.match(e.message, message);
          return true;
        });
      }
    },
  );
}

bpfTest("user writer: a frozen map fails at start with EPERM, not a crash [hash]", async () => {
  using map = stableMap("hash", 4, 8);
  map.freeze();
  await assert.rejects(
    startUserChurn(map, { first: FIRST, count: TRANSIENT, rate: "max" }),
    (e) => {
      assert.ok(e instanceof BpfError, String(e));
      assert.equal(e.code, "EPERM");
      assert.match(e.message, /^BPF_MAP_(UPDATE|DELETE)_ELEM on map \d+ failed: EPERM .*frozen/);
      return true;
    },
  );
});

writerTest("kernel", "kernel writer: writes a frozen map (programs still can) [hash]", async () => {
  using map = stableMap("hash", 4, 8);
  map.freeze();
  const result = await runFor("kernel", map, { first: FIRST, count: TRANSIENT, rate: "max" }, 50);
  assert.ok(result.operations > 0);
  assert.ok(checkContents(map, "frozen map").transient.length > 0);
});

writerTest(
  "kernel",
  "kernel writer: a map read-only to programs fails to load with EACCES [hash]",
  async () => {
    using map = BpfMap.create({
      type: "hash",
      keySize: 4,
      valueSize: 8,
      maxEntries: 64,
      flags: MapFlag.RDONLY_PROG,
    });
    await assert.rejects(
      startKernelChurn(map, { first: FIRST, count: TRANSIENT, rate: 1000 }),
      (e) => {
        assert.ok(e instanceof BpfError, String(e));
        assert.equal(e.code, "EACCES");
        assert.match(e.message, /^bpf_object__load on the kernel churn writer of map \d+ failed/);
        assert.match(e.message, /BPF_F_RDONLY_PROG/);
        return true;
      },
    );
  },
);

bpfTest("user writer: a full map counts refused inserts, stable keys stay [hash]", async () => {
  // Room for the stable keys and 10 more: most inserts are refused (E2BIG).
  using map = BpfMap.create({ type: "hash", keySize: 4, valueSize: 8, maxEntries: STABLE + 10 });
  for (let number = 0; number < STABLE; number++) {
    map.update(keyBytes(map, number), stableValue(map, number));
  }
  const result = await runFor("user", map, { first: FIRST, count: TRANSIENT, rate: "max" }, 50);
  assert.ok(result.failed > 0, "no insert refused");
  const { transient } = checkContents(map, "full map");
  assert.ok(transient.length <= 10);
});

writerTest(
  "kernel",
  "kernel writer: the main thread dumps while it writes flat out [hash]",
  async () => {
    using map = stableMap("hash", 4, 8);
    await using churner = await startKernelChurn(map, {
      first: FIRST,
      count: TRANSIENT,
      rate: "max",
    });
    for (let dump = 0; dump < 3; dump++) {
      const stable = new Set<number>();
      map.forEachBatch((batch) => {
        for (let i = 0; i < batch.count; i++) {
          const number = u32At(batch.keys, i);
          if (number < STABLE) stable.add(number);
        }
      }, { chunk: 256 });
      assert.equal(stable.size, STABLE, `dump ${dump}: stable keys missed`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const result = await churner.stop();
    assert.ok(result.operations > 0);
  },
);

bpfTest(
  "user writer, window pattern: inserts the transient keys in turn, deletes each count/2 inserts later [hash]",
  async () => {
    using map = stableMap("hash", 4, 8);
    const result = await runFor(
      "user",
      map,
      { first: FIRST, count: TRANSIENT, rate: "max", pattern: "window" },
      FLAT_OUT_MS,
    );
    assert.ok(result.operations > 10 * TRANSIENT, `${result.operations} operations`);
    const { transient, rewritten } = checkContents(map, "window writer");
    assert.deepEqual(rewritten, []);
    // Half the transient keys, give or take the insert not yet followed by its delete.
    assert.ok(
      Math.abs(transient.length - TRANSIENT / 2) <= 1,
      `${transient.length} transient keys present`,
    );
    // The keys present are the last TRANSIENT / 2 inserted: consecutive, modulo the range.
    const sorted = transient.map((n) => n - FIRST).sort((a, b) => a - b);
    const gaps = sorted.filter((n, i) => i > 0 && n !== sorted[i - 1] + 1).length;
    assert.ok(gaps <= 1, `the window's keys are not consecutive: ${sorted.slice(0, 20)}...`);
  },
);

bpfTest(
  "user writer, window pattern: starts once its window is full, so a study's first round sees the steady state [hash]",
  async () => {
    using map = stableMap("hash", 4, 8);
    // A slow writer: were it ready after its first chunk, the window would hold a few keys.
    await using churner = await startUserChurn(map, {
      first: FIRST,
      count: TRANSIENT,
      rate: 20_000,
      pattern: "window",
    });
    // Read while the writer goes on: keys inserted and deleted meanwhile may be missed.
    const { transient } = checkContents(map, "window writer at start");
    assert.ok(
      transient.length >= 0.8 * TRANSIENT / 2,
      `${transient.length} transient keys present when the writer was ready, of ${TRANSIENT / 2}`,
    );
    await churner.stop();
  },
);

bpfTest(
  "churn.ts: the dump command and the window writer are rows; no stable key missed or reported twice; the pin is gone after",
  async () => {
    const run = await runScript(
      "churn.ts",
      ...["--stable", "3000", "--transient", "20000", "--max-entries", "200000"],
      ...["--rates", "max", "--writers", "window", "--methods", "batch,parallel,dump"],
      ...["--rounds", "3", "--json"],
    );
    assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
    const rows = run.stdout.trim().split("\n").map((line) => JSON.parse(line));
    for (const method of ["batch", "parallel", "dump"]) {
      const row = rows.find((r) => r.writer === "window" && r.method === method);
      assert.ok(row, `no ${method} row: ${run.stdout}`);
      assert.equal(row.unavailable, null);
      assert.equal(row.seconds.length, 3, JSON.stringify(row));
      assert.deepEqual([...row.stableMissed, ...row.stableTwice], [0, 0, 0, 0, 0, 0]);
      assert.deepEqual(row.stableDropped, [0, 0, 0]);
      assert.ok(row.transientSeen.every((n: number) => n > 1000), JSON.stringify(row));
    }
    const left = [...Deno.readDirSync(BPFFS_ROOT)].filter((e) =>
      e.name.startsWith("deno-bpf-batch-churn-")
    );
    assert.deepEqual(left, []);
  },
);

bpfTest("churn.ts: --max-entries too small for the keys: one line, exit 2", async () => {
  const run = await runScript(
    "churn.ts",
    "--stable",
    "100",
    "--transient",
    "100",
    "--max-entries",
    "150",
  );
  assert.equal(run.code, 2);
  assert.match(
    run.stderr,
    /--max-entries 150 leaves no room for 100 stable and 100 transient keys/,
  );
  assert.equal(
    run.stderr.trim().split("\n").filter((l) => !l.startsWith("usage") && !l.startsWith(" "))
      .length,
    1,
    run.stderr,
  );
});
