/**
 * What this kernel lets this process do, as `bpftool feature probe` says it: each facility
 * the toolkit uses (available, or the reason it is not), then what follows for each dump
 * method, for the count a dump is checked against, and for each command.
 *
 * @module
 */

import {
  BpfMap,
  COUNT_SOURCES,
  DUMP_METHODS,
  FACILITIES,
  type Facility,
  kernelRelease,
  MapCounter,
  MapType,
  methodFacilities,
  probeAll,
  processPrivileges,
  unavailableReason,
} from "../mod.ts";
import { KERNEL_WRITER_FACILITIES } from "../ffi/map/churn.ts";
import { paint, parseFlags, runMain } from "./_cli.ts";

const USAGE = `usage: features.ts [--json]
  Probes what this kernel lets this process do, loading the smallest program or map that
  shows each facility (never the toolkit's own programs), and prints each facility as
  available or why not, then each dump method, the count dumps are checked against, and
  each command, with what this kernel lets it do. --json prints one JSON object.
  BPF_DENY=name,... denies facilities to the process, as a refusing kernel would.`;

/** One line of the report: a name, whether it runs, and why not (or what it leaves out). */
interface Line {
  name: string;
  status: "available" | "unavailable" | "unknown" | "partly";
  reason: string | null;
}

/** What each command needs to run at all, and what it leaves out when a facility is refused. */
const COMMANDS: readonly { name: string; needs: Facility[]; rows?: string }[] = [
  { name: "load", needs: ["maps"] },
  { name: "normal", needs: ["maps"] },
  { name: "batch", needs: ["lookup_batch_hash"] },
  { name: "iter", needs: methodFacilities("iter", MapType.hash) },
  { name: "dump", needs: ["maps"] },
  { name: "maps", needs: ["maps"] },
  { name: "demo", needs: ["maps"], rows: "methods" },
  { name: "compare", needs: ["maps"], rows: "methods" },
  { name: "sweep", needs: ["maps"], rows: "methods" },
  { name: "churn", needs: ["maps"], rows: "methods and the kernel writer" },
];

function line(name: string, reason: string | null): Line {
  return { name, status: reason === null ? "available" : "unavailable", reason };
}

/** Each dump method on hash maps, and the count its dumps are checked against. */
function methodLines(): { methods: Line[]; counts: Line[] } {
  const methods = DUMP_METHODS.map((method) =>
    line(method, unavailableReason(...methodFacilities(method, MapType.hash)))
  );
  // A map of one entry shows which count each method gets here (a larger map may move the
  // bpf_for_each_map_elem pass, bounded in kernel time, to the next source).
  using map = BpfMap.create({ type: "hash", keySize: 4, valueSize: 4, maxEntries: 1 });
  const counts = DUMP_METHODS.map((method) => {
    using counter = MapCounter.open(map, { method });
    const counted = counter.count();
    return counted.source
      ? { name: method, status: "available" as const, reason: COUNT_SOURCES[counted.source] }
      : line(method, counted.unavailable);
  });
  return { methods, counts };
}

function commandLines(methods: Line[]): Line[] {
  const refusedMethods = methods.filter((m) => m.status === "unavailable").map((m) => m.name);
  const kernelWriter = unavailableReason(...KERNEL_WRITER_FACILITIES);
  return COMMANDS.map(({ name, needs, rows }) => {
    const refused = unavailableReason(...needs);
    if (refused !== null || !rows) return line(name, refused);
    const left = [...refusedMethods];
    if (rows.includes("writer") && kernelWriter !== null) left.push("the kernel writer");
    return left.length
      ? { name, status: "partly", reason: `rows unavailable: ${left.join(", ")}` }
      : line(name, null);
  });
}

function printSection(title: string, lines: Line[], show: (l: Line) => string = (l) => l.status) {
  console.log(title);
  const width = Math.max(...lines.map((l) => l.name.length)) + 2;
  for (const l of lines) {
    const status = show(l);
    const colour = l.status === "available" ? "green" : l.status === "partly" ? "yellow" : "red";
    const reason = l.reason && l.status !== "available" ? `: ${l.reason}` : "";
    console.log(`  ${l.name.padEnd(width)}${paint(colour, status)}${reason}`);
  }
}

await runMain(USAGE, () => {
  const flags = parseFlags({ json: { type: "boolean" } });
  const privileges = processPrivileges();
  const facilities = probeAll();
  const { methods, counts } = methodLines();
  const commands = commandLines(methods);
  const kernel = { release: kernelRelease(), machine: Deno.build.arch };
  if (flags.json) {
    console.log(JSON.stringify({
      kernel,
      process: privileges,
      facilities: facilities.map((f) => ({
        name: f.facility,
        title: f.title,
        status: f.status,
        reason: f.reason,
      })),
      methods,
      counts,
      commands,
    }));
    return;
  }
  console.log(`kernel: Linux ${kernel.release} (${kernel.machine})`);
  console.log(
    `process: ${privileges.uid === 0 ? "root" : `uid ${privileges.uid ?? "?"}`}, holding ${
      privileges.held.join(", ") || "none of CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN"
    }; lockdown: ${privileges.lockdown ?? "unknown"}`,
  );
  printSection(
    "facilities",
    facilities.map((f) => ({ name: f.facility, status: f.status, reason: f.reason })),
    (l) => `${l.status}${l.status === "available" ? ` (${FACILITIES[l.name as Facility]})` : ""}`,
  );
  printSection("dump methods (hash maps)", methods);
  printSection("dumps are checked against", counts, (l) => l.reason ?? l.status);
  printSection("commands (deno task NAME)", commands);
});
