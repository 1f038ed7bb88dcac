/**
 * Dumps a map with GET_NEXT_KEY + LOOKUP_ELEM per entry, as the study's `normal` did.
 *
 * Usage: deno task normal [--pin PATH | --id N] [--backend syscall|libbpf] [--runs N] [--mem] [--json]
 *
 * @module
 */

import { runMain } from "./_cli.ts";
import { dumpScript } from "./_dump.ts";

const USAGE =
  `usage: normal.ts [--pin PATH | --id N] [--backend syscall|libbpf] [--runs N] [--mem] [--json] [--key-size N] [--value-size N]
  Dumps the map (default: the pin load.ts makes, /sys/fs/bpf/test_map) one entry at a time,
  verifies every key was seen once, and prints the count and the time. Key and
  value sizes are the map's own; --key-size/--value-size only check them.`;

await runMain(
  USAGE,
  () => dumpScript({ method: "normal", verb: "to iterate" }),
);
