/**
 * `deno task dump` against `bpftool map dump`, whole processes, on the same pinned maps: a
 * u32 hash map without BTF and a map with a 16-byte struct key and a 32-byte struct value
 * carrying BTF, each of `--entries` entries. Rounds alternate the two programs; every output
 * is compared byte for byte (`--json` with `-j`, `--pretty` with `-p`, plain text with plain).
 *
 * Each process writes straight to a file (the shell redirects its stdout), as
 * `deno task dump --pin P --json > file` would.
 *
 * Run as root: `deno run --allow-all bench/bpftool_dump.ts [--entries N] [--rounds R]`.
 *
 * @module
 */

import { BpfMap, BtfBuilder, createMapWithBtf, fillMap, loadBtf } from "../mod.ts";
import { intFlag, parseFlags, runMain, RuntimeError } from "../scripts/_cli.ts";
import { printTable } from "../scripts/_report.ts";
import { summary } from "../scripts/_cli.ts";
import { firstDifference, timeToFile } from "../scripts/_processes.ts";

const USAGE = `usage: bpftool_dump.ts [--entries N] [--rounds R]
  Times deno task dump against bpftool map dump (whole processes, output to a file) on a
  u32 hash map and on a map with a 16-byte struct key and a 32-byte struct value with BTF,
  --entries each (default 1,000,000), --rounds alternating rounds (default 3), and checks
  every output byte for byte (--jsonl, typed lines, against -j's time: one line per entry).`;

const ROOT = new URL("..", import.meta.url).pathname;
/** Our flag and bpftool's; `--jsonl` (typed lines, no bpftool twin) is timed against `-j`. */
const FORMATS = [["--json", "-j"], ["--pretty", "-p"], ["", ""], ["--jsonl", "-j"]] as const;

/** A hash map whose key is `struct flow { u32 saddr, daddr; u16 sport, dport; u32 proto; }` and value `struct stats { u64 packets, bytes; s64 delta; u32 flags, pad; }`. */
export function structMap(entries: number): BpfMap {
  const b = new BtfBuilder();
  const u16 = b.add({ kind: "int", name: "u16", size: 2 });
  const u32 = b.add({ kind: "int", name: "u32", size: 4 });
  const u64 = b.add({ kind: "int", name: "u64", size: 8 });
  const s64 = b.add({ kind: "int", name: "s64", size: 8, encoding: "signed" });
  const key = b.add({
    kind: "struct",
    name: "flow",
    size: 16,
    members: [
      { name: "saddr", type: u32, bitOffset: 0 },
      { name: "daddr", type: u32, bitOffset: 32 },
      { name: "sport", type: u16, bitOffset: 64 },
      { name: "dport", type: u16, bitOffset: 80 },
      { name: "proto", type: u32, bitOffset: 96 },
    ],
  });
  const value = b.add({
    kind: "struct",
    name: "stats",
    size: 32,
    members: [
      { name: "packets", type: u64, bitOffset: 0 },
      { name: "bytes", type: u64, bitOffset: 64 },
      { name: "delta", type: s64, bitOffset: 128 },
      { name: "flags", type: u32, bitOffset: 192 },
      { name: "pad", type: u32, bitOffset: 224 },
    ],
  });
  using btf = loadBtf(b.build());
  const map = createMapWithBtf({
    type: "hash",
    keySize: 16,
    valueSize: 32,
    maxEntries: entries,
    name: "bench_flows",
    btf,
    keyTypeId: key,
    valueTypeId: value,
  });
  const chunk = 65_536;
  const keys = new Uint8Array(chunk * 16);
  const values = new Uint8Array(chunk * 32);
  const k = new DataView(keys.buffer);
  const v = new DataView(values.buffer);
  for (let first = 0; first < entries; first += chunk) {
    const n = Math.min(chunk, entries - first);
    for (let i = 0; i < n; i++) {
      const id = first + i;
      k.setUint32(i * 16, 0x0a000000 + id, true);
      k.setUint32(i * 16 + 4, 0xc0a80001, true);
      k.setUint16(i * 16 + 8, id & 0xffff, true);
      k.setUint16(i * 16 + 10, 443, true);
      k.setUint32(i * 16 + 12, 6, true);
      v.setBigUint64(i * 32, BigInt(id) * 7n, true);
      v.setBigUint64(i * 32 + 8, BigInt(id) * 1500n, true);
      v.setBigInt64(i * 32 + 16, BigInt(id % 2 ? -id : id), true);
      v.setUint32(i * 32 + 24, id >>> 3, true);
    }
    map.updateBatch(keys.subarray(0, n * 16), values.subarray(0, n * 32));
  }
  return map;
}

/** The number of lines of a file, read in chunks. */
async function lineCount(path: string): Promise<number> {
  using file = await Deno.open(path);
  let lines = 0;
  for await (const chunk of file.readable) for (const byte of chunk) if (byte === 0x0a) lines++;
  return lines;
}

if (import.meta.main) {
  await runMain(USAGE, async () => {
    const flags = parseFlags({ entries: { type: "string" }, rounds: { type: "string" } });
    const entries = intFlag(flags.entries, "entries", 1_000_000, { max: 1 << 26 });
    const rounds = intFlag(flags.rounds, "rounds", 3, { max: 100 });
    using plain = BpfMap.create({ type: "hash", keySize: 4, valueSize: 4, maxEntries: entries });
    await fillMap(plain, { entries });
    using typed = structMap(entries);
    const pins: [string, BpfMap][] = [
      [`/sys/fs/bpf/bpftool_dump_u32_${Deno.pid}`, plain],
      [`/sys/fs/bpf/bpftool_dump_flows_${Deno.pid}`, typed],
    ];
    const rows: string[][] = [];
    try {
      for (const [pin, map] of pins) map.pin(pin);
      for (const [pin, map] of pins) {
        for (const [ours, theirs] of FORMATS) {
          const deno = ["deno", "task", "--cwd", ROOT, "-q", "dump", "--pin", pin];
          const bpftool = ["bpftool", ...(theirs ? [theirs] : []), "map", "dump", "pinned", pin];
          const dir = await Deno.makeTempDir({ dir: "/var/tmp" });
          const times = { ours: [] as number[], bpftool: [] as number[] };
          try {
            for (let round = 0; round < rounds; round++) {
              times.ours.push(await timeToFile([...deno, ...(ours ? [ours] : [])], `${dir}/a`));
              times.bpftool.push(await timeToFile(bpftool, `${dir}/b`));
              if (ours === "--jsonl") {
                const lines = await lineCount(`${dir}/a`);
                if (lines !== entries) {
                  throw new RuntimeError(
                    `--jsonl on ${pin}: ${lines} lines for ${entries} entries`,
                  );
                }
                continue;
              }
              const differ = await firstDifference(dir, "a", "b");
              if (differ) throw new RuntimeError(`${ours || "plain"} on ${pin}: ${differ}`);
            }
          } finally {
            await Deno.remove(dir, { recursive: true });
          }
          const o = summary(times.ours).median;
          const t = summary(times.bpftool).median;
          rows.push([
            `${map.keySize}/${map.valueSize}${map.info.btfId ? " BTF" : ""}`,
            ours || "(plain)",
            o.toFixed(3),
            t.toFixed(3),
            `${(t / o).toFixed(2)}x`,
            ours === "--jsonl" ? "(typed lines)" : "yes",
          ]);
        }
      }
    } finally {
      for (const [pin] of pins) {
        try {
          Deno.removeSync(pin);
        } catch { /* not pinned */ }
      }
    }
    console.log(`${entries} entries, ${rounds} alternating rounds, whole processes, medians`);
    printTable(["key/value", "format", "dump s", "bpftool s", "bpftool / dump", "identical"], rows);
  });
}
