/**
 * Dumps a map with LOOKUP_BATCH in chunks, advancing the cursor as the kernel asks; with
 * `--seed-compat`, reproduces the study's loop that never advanced it.
 *
 * @module
 */

import { runMain } from "./_cli.ts";
import { dumpScript } from "./_dump.ts";

const USAGE =
  `usage: batch.ts [--pin PATH | --id N] [--chunk N] [--parallel [N] | --seed-compat] [--backend syscall|libbpf] [--runs N] [--mem] [--json] [--key-size N] [--value-size N]
  Dumps the map (default: the pin load.ts makes, /sys/fs/bpf/test_map) in batches of --chunk
  entries (default 4096), verifies every key was seen once, and prints the count, the batch
  count and the time. --parallel walks N disjoint ranges at once, one Worker each (default:
  one per CPU). --seed-compat repeats the original study's loop (cursor never advanced,
  max_entries / chunk calls) and reports how many distinct keys it really saw. Key and value
  sizes are the map's own; --key-size/--value-size only check them.`;

await runMain(
  USAGE,
  () => dumpScript({ method: "batch", verb: "batch look up" }),
);
