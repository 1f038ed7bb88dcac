/**
 * The end of a run: the tests it skipped for a facility this kernel refuses, and why, as a
 * short list. Named to run last (`deno test` runs test modules in path order); the other
 * modules record their skips in `SKIP_LOG` as they register their tests.
 *
 * @module
 */

import { SKIP_LOG } from "./_helpers.ts";
import { formatSkips, readSkips } from "./_skips.ts";

Deno.test("skipped in this run for what the kernel refuses, and why", () => {
  console.log(formatSkips(readSkips(SKIP_LOG)));
  // A log of this process's own (not CI's, which reads it after the run) is done with.
  if (Deno.env.get("BPF_SKIP_LOG")) return;
  try {
    Deno.removeSync(SKIP_LOG);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
});
