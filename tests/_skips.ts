/**
 * The skip log of a test run (`SKIP_LOG` of `_helpers.ts`), read back and said as a short
 * list: by reason, how many tests each refusal skipped, and a few of their names. Shared by
 * the end-of-run list (`zz_skips_test.ts`) and CI's check (`.ci/check-skips.ts`).
 *
 * @module
 */

import type { SkipRecord } from "./_helpers.ts";

/** The records of the skip log at `path` (none when it does not exist). */
export function readSkips(path: string): SkipRecord[] {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  return text.split("\n").filter(Boolean).map((line) => JSON.parse(line) as SkipRecord);
}

/** Names of tests shown per reason; the rest are counted. */
const SHOWN = 3;

/** The skips as a short list, one paragraph per facility and reason. */
export function formatSkips(records: readonly SkipRecord[]): string {
  if (records.length === 0) return "no test was skipped for a facility this kernel refuses";
  const byReason = Map.groupBy(records, (r) => `${r.facility}: ${r.reason}`);
  const lines = [
    `${records.length} test${
      records.length === 1 ? "" : "s"
    } skipped for what this kernel refuses:`,
  ];
  for (const [reason, skipped] of byReason) {
    const names = skipped.slice(0, SHOWN).map((r) => `${r.test} (${r.file})`);
    const more = skipped.length > SHOWN ? [`and ${skipped.length - SHOWN} more`] : [];
    lines.push(`- ${reason}: ${skipped.length} test${skipped.length === 1 ? "" : "s"}`);
    for (const name of [...names, ...more]) lines.push(`    ${name}`);
  }
  return lines.join("\n");
}
