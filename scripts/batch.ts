/**
 * Dumps a map with LOOKUP_BATCH in chunks, advancing the cursor as the kernel asks; with
 * `--seed-compat`, reproduces the study's loop that never advanced it.
 *
 * @module
 */

import { runMain } from "./_cli.ts";
import { dumpScript } from "./_dump.ts";

const USAGE =
  `usage: batch.ts [--pin PATH | --id N] [--chunk N] [--method batch|parallel|snapshot|hybrid|auto] [--parallel [N] | --seed-compat]
                [--kernel-budget MS] [--steady] [--backend syscall|libbpf] [--runs N] [--mem] [--json] [--key-size N] [--value-size N]
  Dumps the map (default: the pin load.ts makes, /sys/fs/bpf/test_map) in batches of --chunk
  entries (default 4096), verifies every key was seen once, and prints the count, the batch
  count and the time. --parallel walks N disjoint ranges at once, one Worker each (default:
  one per CPU). --method snapshot copies the map in one in-kernel walk into shared memory
  (hash, lru_hash and array maps; root or CAP_BPF + CAP_PERFMON), at most --kernel-budget ms
  of kernel time per call (default 1000; LOOKUP_BATCH reads the rest); hybrid runs it over
  the start of the map while Workers read the rest with LOOKUP_BATCH; auto picks the fastest
  for the map and says why (--steady: only among the methods that report keys present
  throughout once while the map is written). --seed-compat repeats the original study's loop (cursor never
  advanced, max_entries / chunk calls) and reports how many distinct keys it really saw. Key
  and value sizes are the map's own; --key-size/--value-size only check them.`;

await runMain(
  USAGE,
  () => dumpScript({ method: "batch", verb: "batch look up" }),
);
