/**
 * `dump` while the map is written where its walk is weakest: the ends of the ranges that its
 * Workers read at once. A range's last LOOKUP_BATCH call reads past its end into the next
 * range; the next range's first key is where the two meet. A writer that deletes and
 * re-inserts that key (and the few after it), flat out, while the range before it reads, is
 * what once made `dump` print keys twice. Through the command itself, in every format, by its default method and
 * by `--method parallel`: no key twice, no stable key missing.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type BatchView,
  BPFFS_ROOT,
  BpfMap,
  forEachBatchParallel,
  MapType,
  methodFacilities,
  ParallelPool,
  rangeBounds,
  startKernelChurn,
  startUserChurn,
} from "../mod.ts";
import { KERNEL_WRITER_FACILITIES } from "../ffi/map/churn.ts";
import { bpfTest, facilityTest, runScript, u32At, u32Bytes } from "./_helpers.ts";

/** Keys are numbers `0 .. KEYS - 1`; all but those the writer aims at stay, untouched. */
const KEYS = 20_000;
/** Big enough for `dump` to walk it with Workers, over three ranges in order. */
const MAX_ENTRIES = 1_000_000;
/** The writer aims at this many keys from the start of every range but the first. */
const AIMED_PER_RANGE = 4;
/** Dumps per format and method. */
const ROUNDS = 5;

/** The first `count` keys a LOOKUP_BATCH walk from bucket `start` returns. */
function keysFrom(map: BpfMap, start: number, count: number): number[] {
  const keys: number[] = [];
  map.forEachBatch((batch) => {
    for (let i = 0; i < batch.count && keys.length < count; i++) keys.push(u32At(batch.keys, i));
  }, { chunk: 64, range: { start, end: start + 1, array: false } });
  return keys;
}

/**
 * The keys where the ranges `bounds` meet: the first few of every range but the first, which
 * a range's last call reads past its end.
 */
function meetingKeys(map: BpfMap, bounds: [number, number][]): number[] {
  assert.ok(bounds.length >= 3, `${bounds.length} ranges: the test needs several`);
  return bounds.slice(1).flatMap(([start]) => keysFrom(map, start, AIMED_PER_RANGE));
}

/** A map of the keys `0 .. keys - 1`, pinned at `pin` if given. */
function filledMap(keys: number, maxEntries: number): BpfMap {
  const map = BpfMap.create({ type: "hash", keySize: 4, valueSize: 8, maxEntries });
  const value = new Uint8Array(8);
  for (let key = 0; key < keys; key++) map.update(u32Bytes(key), value);
  return map;
}

/** How many keys came twice, and how many of `stable` keys never came. */
function tally(keys: Iterable<number>, count: number, stable: (key: number) => boolean) {
  const seen = new Map<number, number>();
  for (const key of keys) seen.set(key, (seen.get(key) ?? 0) + 1);
  const twice = [...seen].filter(([, n]) => n > 1).length;
  let missing = 0;
  for (let key = 0; key < count; key++) if (stable(key) && !seen.has(key)) missing++;
  return { twice, missing };
}

/** The keys of the batches, as u32 numbers. */
function* batchKeys(batches: BatchView[]): Generator<number> {
  for (const batch of batches) for (let i = 0; i < batch.count; i++) yield u32At(batch.keys, i);
}

/** The keys of `dump`'s output, in each format, as u32 numbers. */
function printedKeys(format: string, stdout: string): number[] {
  const bytes = (hex: string[]) => u32At(new Uint8Array(hex.map((h) => parseInt(h, 16))));
  switch (format) {
    case "plain":
      return [...stdout.matchAll(/^key: ((?:[0-9a-f]{2} ?){4}) /gm)].map(([, hex]) =>
        bytes(hex.trim().split(" "))
      );
    case "--json":
      return (JSON.parse(stdout) as { key: string[] }[]).map((entry) => bytes(entry.key));
    default:
      return stdout.trim().split("\n").map((line) => JSON.parse(line).key as number);
  }
}

bpfTest(
  "dump: keys where ranges meet come once while a writer deletes and re-inserts the next range's first key",
  async () => {
    using map = filledMap(KEYS, MAX_ENTRIES);
    const aim = meetingKeys(
      map,
      rangeBounds(map, { atLeast: navigator.hardwareConcurrency, inOrder: true }),
    );
    const stable = (key: number) => !aim.includes(key);
    const pin = `${BPFFS_ROOT}/deno-bpf-batch-live-dump-${Deno.pid}`;
    map.pin(pin);
    try {
      await using _writer = await startUserChurn(map, {
        first: 0,
        count: KEYS,
        rate: "max",
        aim,
      });
      const failures: string[] = [];
      for (
        const [method, format] of [
          ["auto", "plain"],
          ["auto", "--json"],
          ["auto", "--jsonl"],
          ["parallel", "--jsonl"],
        ]
      ) {
        for (let round = 0; round < ROUNDS; round++) {
          const args = ["--pin", pin, "--method", method, ...(format === "plain" ? [] : [format])];
          const run = await runScript("dump.ts", ...args);
          assert.equal(run.code, 0, run.stderr);
          const seen = new Map<number, number>();
          for (const key of printedKeys(format, run.stdout)) {
            seen.set(key, (seen.get(key) ?? 0) + 1);
          }
          const twice = [...seen].filter(([, n]) => n > 1).length;
          let missing = 0;
          for (let key = 0; key < KEYS; key++) if (stable(key) && !seen.has(key)) missing++;
          if (twice || missing) {
            failures.push(
              `${method} ${format}: ${twice} keys twice, ${missing} stable keys missing`,
            );
          }
        }
      }
      assert.deepEqual(failures, []);
    } finally {
      Deno.removeSync(pin);
    }
  },
);

/**
 * 200 rounds of the library's parallel walk in order and 200 out of order, with `start`'s
 * writer flat out at the first keys of every range.
 */
async function walksAtMeetingKeys(start: typeof startUserChurn): Promise<void> {
  // Many small ranges: each range's last call (chunk 64) reads into the next.
  const keys = 20_000;
  using map = filledMap(keys, 65_536);
  const bounds = rangeBounds(map, { atLeast: 16 });
  const aim = meetingKeys(map, bounds);
  const stable = (key: number) => !aim.includes(key);
  using pool = await ParallelPool.start(2);
  await using _writer = await start(map, { first: 0, count: keys, rate: "max", aim });
  const failures: string[] = [];
  let repeats = 0;
  for (const inOrder of [false, true]) {
    for (let round = 0; round < 200; round++) {
      const batches: BatchView[] = [];
      const stats = await forEachBatchParallel(map, (batch) => batches.push(batch), {
        ranges: 16,
        chunk: 64,
        pool,
        inOrder,
      });
      repeats += stats.repeatsDropped ?? 0;
      const { twice, missing } = tally(batchKeys(batches), keys, stable);
      if (twice || missing) {
        const order = inOrder ? "in order" : "out of order";
        failures.push(`${order}, round ${round}: ${twice} twice, ${missing} missing`);
      }
    }
  }
  assert.deepEqual(failures, []);
  assert.ok(repeats > 0, "no range read into the next: the test did not reach where ranges meet");
}

bpfTest(
  "forEachBatchParallel, in order or not: 200 rounds each with a user writer at every range's first keys, no key twice",
  () => walksAtMeetingKeys(startUserChurn),
);

facilityTest(
  import.meta.url,
  "forEachBatchParallel, in order or not: 200 rounds each with the kernel writer at every range's first keys, no key twice",
  KERNEL_WRITER_FACILITIES,
  () => walksAtMeetingKeys(startKernelChurn),
);

facilityTest(
  import.meta.url,
  "dump: a method that does not promise keys present throughout once says so on stderr when the map was written, naming batch",
  methodFacilities("snapshot", MapType.hash),
  async () => {
    const keys = 20_000;
    using map = filledMap(keys, 65_536);
    const pin = `${BPFFS_ROOT}/deno-bpf-batch-live-warn-${Deno.pid}`;
    map.pin(pin);
    try {
      const still = await runScript("dump.ts", "--pin", pin, "--method", "snapshot", "--jsonl");
      assert.equal(still.code, 0, still.stderr);
      assert.equal(still.stderr, "", "a still map was said to be written");
      // Transient keys come and go (about half present at once): the count moves.
      await using _writer = await startUserChurn(map, {
        first: keys,
        count: 40_000,
        rate: "max",
      });
      let warned = "";
      for (let round = 0; round < 10 && !warned; round++) {
        const run = await runScript("dump.ts", "--pin", pin, "--method", "snapshot", "--jsonl");
        assert.equal(run.code, 0, run.stderr);
        warned = run.stderr;
      }
      assert.match(
        warned,
        new RegExp(
          `^dump: warning: map \\d+ was written during the dump \\(\\d+ -> \\d+ entries\\): --method snapshot .* --method batch prints each of them once\\n$`,
        ),
      );
    } finally {
      Deno.removeSync(pin);
    }
  },
);
