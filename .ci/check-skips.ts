/**
 * CI's check of a run's skips: prints the tests skipped for what this kernel refuses, and
 * fails (exit 1) if one was skipped for a facility that the probe, asked again here, finds
 * available: a skip may stand only on a reason a probe gave on this kernel.
 *
 * Usage: deno run --allow-all .ci/check-skips.ts SKIP_LOG
 *
 * @module
 */

import { probeFacility } from "../mod.ts";
import { formatSkips, readSkips } from "../tests/_skips.ts";

const [path] = Deno.args;
if (!path) {
  console.error("usage: check-skips.ts SKIP_LOG");
  Deno.exit(2);
}
const records = readSkips(path);
console.log(formatSkips(records));
const wrong = records.filter((r) => probeFacility(r.facility).status === "available");
for (const r of wrong) {
  console.error(
    `error: "${r.test}" (${r.file}) was skipped for ${r.facility}, which the probe finds available`,
  );
}
Deno.exit(wrong.length ? 1 : 0);
