/**
 * Dumps a map with a bpf_iter program: the kernel writes every entry into a seq_file that
 * is read with `read()` in 64 KiB buffers.
 *
 * @module
 */

import { runMain } from "./_cli.ts";
import { dumpScript } from "./_dump.ts";

const USAGE =
  `usage: iter.ts [--pin PATH | --id N] [--runs N] [--mem] [--json] [--key-size N] [--value-size N]
  Dumps the map (default: the pin load.ts makes, /sys/fs/bpf/test_map) through the
  iter/bpf_map_elem program of build/dump_iter.bpf.o, verifies every key was seen once, and
  prints the count and the time (loading and attaching the program is timed apart). Key and
  value sizes are the map's own; --key-size/--value-size only check them.`;

await runMain(USAGE, () => dumpScript({ method: "iter", verb: "to read the iterator of" }));
