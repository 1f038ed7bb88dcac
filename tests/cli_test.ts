/**
 * The scripts' shared helpers that compute figures, checked against numbers worked out by
 * hand: the `--runs` statistics and whole-number flags.
 *
 * @module
 */

import assert from "node:assert/strict";
import { intFlag, summary, UsageError } from "../scripts/_cli.ts";

Deno.test("summary: mean, population std. dev., min, median and max", () => {
  // Mean 4, median 2.5 (even count: the middle two averaged), sd sqrt(((-3)² + (-2)² + (-1)² + 6²) / 4).
  assert.deepEqual(summary([10, 1, 3, 2]), {
    mean: 4,
    sd: Math.sqrt(50 / 4),
    min: 1,
    median: 2.5,
    max: 10,
  });
  // Odd count: the middle one, whatever the order given.
  assert.deepEqual(summary([9, 0.5, 2]), {
    mean: 11.5 / 3,
    sd: Math.sqrt(((9 - 11.5 / 3) ** 2 + (0.5 - 11.5 / 3) ** 2 + (2 - 11.5 / 3) ** 2) / 3),
    min: 0.5,
    median: 2,
    max: 9,
  });
  assert.deepEqual(summary([7]), { mean: 7, sd: 0, min: 7, median: 7, max: 7 });
});

Deno.test("intFlag takes decimal, hex and underscores, and names the flag when it refuses", () => {
  assert.equal(intFlag(undefined, "runs", 5), 5);
  assert.equal(intFlag("1_000", "runs", 5), 1000);
  assert.equal(intFlag("0x10", "chunk", 5), 16);
  assert.throws(() => intFlag("0", "runs", 5), new UsageError("--runs must be at least 1, not 0"));
  assert.throws(
    () => intFlag("9", "chunk", 5, { max: 8, maxReason: " (why)" }),
    new UsageError("--chunk must be at most 8 (why), not 9"),
  );
  assert.throws(
    () => intFlag("1.5", "runs", 5),
    new UsageError('--runs takes a whole number, not "1.5"'),
  );
});
