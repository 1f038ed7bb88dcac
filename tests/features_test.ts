/**
 * The probes of `ffi/sys/features.ts`, themselves tested (as aya tests its probes): each
 * answer against the real thing it stands for on this kernel (a facility said available is
 * used for real; one said refused is refused to the toolkit's real program too, by bpftool
 * or the kernel's BTF, which do not share the probe's code), their reasons, `BPF_DENY`,
 * `deno task features`, and the pure parts: capability sets, the probes' BTF and encoding.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  BpfMap,
  builtObjectPath,
  FACILITIES,
  type Facility,
  fillMap,
  kernelBtf,
  KernelCounter,
  MapCounter,
  MapIterator,
  MapSnapshot,
  MapType,
  type MapTypeName,
  parseBtf,
  probeAll,
  probeFacility,
  startKernelChurn,
} from "../mod.ts";
import { capabilitiesIn, missingCapabilities } from "../ffi/sys/privileges.ts";
import {
  asm,
  callWithCallback,
  closeAll,
  encodeInsns,
  Helper,
  loadProgram,
  PROBE_BTF,
  runProgram,
} from "../ffi/sys/programs.ts";
import { fdMemlock } from "../ffi/sys/system.ts";
import { bpfTest, gcTest, runScript, runScriptWith, u32Bytes } from "./_helpers.ts";

Deno.test("capability sets: CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON", () => {
  const needed = ["CAP_BPF", "CAP_PERFMON"] as const;
  assert.deepEqual(missingCapabilities(needed, capabilitiesIn("000001ffffffffff")), []);
  // CAP_SYS_ADMIN alone.
  assert.deepEqual(missingCapabilities(needed, capabilitiesIn("0000000000200000")), []);
  // CAP_BPF alone.
  assert.deepEqual(missingCapabilities(needed, capabilitiesIn("0000008000000000")), [
    "CAP_PERFMON",
  ]);
  assert.deepEqual(missingCapabilities(needed, capabilitiesIn("0")), ["CAP_BPF", "CAP_PERFMON"]);
  assert.deepEqual(capabilitiesIn("000000c000200000"), ["CAP_SYS_ADMIN", "CAP_PERFMON", "CAP_BPF"]);
});

Deno.test("the probes' BTF is what the toolkit's own BTF parser reads: int, int (void), main, cb", () => {
  const btf = parseBtf(PROBE_BTF);
  assert.equal(btf.typeCount, 5);
  const [int, proto, main, cb] = [1, 2, 3, 4].map((id) => btf.typeById(id));
  assert.equal(int.kind, "int");
  assert.equal(proto.kind, "func_proto");
  assert.ok(main.kind === "func" && main.name === "main" && main.linkage === "global");
  assert.ok(cb.kind === "func" && cb.name === "cb" && cb.linkage === "static");
});

Deno.test("instructions encode as the kernel reads them (linux/bpf_common.h)", () => {
  const bytes = encodeInsns([asm.movImm(0, 7), asm.loadU64(2, 1, 16), ...asm.loadMap(1, 5)]);
  assert.deepEqual([...bytes.subarray(0, 8)], [0xb7, 0x00, 0, 0, 7, 0, 0, 0]);
  assert.deepEqual([...bytes.subarray(8, 16)], [0x79, 0x12, 16, 0, 0, 0, 0, 0]);
  // BPF_LD | BPF_DW | BPF_IMM, src BPF_PSEUDO_MAP_FD (1), then an empty second half.
  assert.deepEqual([...bytes.subarray(16, 32)], [
    0x18,
    0x11,
    0,
    0,
    5,
    0,
    0,
    0,
    ...Array(8).fill(0),
  ]);
});

bpfTest("every facility gets an answer, once per process, with a reason unless available", () => {
  const answers = probeAll();
  assert.deepEqual(answers.map((a) => a.facility), Object.keys(FACILITIES));
  for (const answer of answers) {
    assert.ok(["available", "unavailable", "unknown"].includes(answer.status), answer.facility);
    assert.equal(answer.title, FACILITIES[answer.facility]);
    if (answer.status === "available") assert.equal(answer.reason, null, answer.facility);
    else assert.match(answer.reason ?? "", /\S/, answer.facility);
    // Asked again: the same answer, not a second probe.
    assert.equal(probeFacility(answer.facility), answer);
  }
  // The kernel's refusals say what was refused, how, and as whom.
  for (const answer of answers.filter((a) => a.status === "unavailable")) {
    assert.match(
      answer.reason!,
      /^this kernel (refuses .*: E[A-Z0-9]+ at .*, as (root|uid \d+)( with CAP_\w+( and CAP_\w+)?)?|lacks |has no |reports )|: CAP_\w+( and CAP_\w+)? needed|: built on /,
      answer.reason!,
    );
  }
});

/** Runs `fn` on a fresh hash map of `entries` entries of `type`. */
async function withMap<T>(type: MapTypeName, entries: number, fn: (map: BpfMap) => T | Promise<T>) {
  using map = BpfMap.create({ type, keySize: 4, valueSize: 8, maxEntries: 2 * entries });
  await fillMap(map, { entries });
  return await fn(map);
}

/** Whether bpftool loads the toolkit's object `name` (pinned under a folder removed after). */
function bpftoolLoads(name: string): boolean {
  const dir = `/sys/fs/bpf/features_test_${Deno.pid}`;
  const out = new Deno.Command("bpftool", {
    args: ["prog", "loadall", builtObjectPath(name), dir],
    stdout: "null",
    stderr: "null",
  }).outputSync();
  if (out.success) Deno.removeSync(dir, { recursive: true });
  return out.success;
}

/** For each facility: what it must mean on this kernel, checked without the probe's code. */
const AGREEMENT: Partial<Record<Facility, (available: boolean) => void | Promise<void>>> = {
  iter_map_elem: async (available) => {
    if (!available) {
      // The toolkit's real iterator is refused too (bpftool loads it by itself).
      assert.equal(bpftoolLoads("dump_iter.bpf.o"), false);
      return;
    }
    await withMap("hash", 3000, (map) => {
      using iterator = MapIterator.attach(map);
      assert.equal(iterator.forEachBatch(() => {}).entries, 3000);
    });
  },
  elem_count_kfunc: async (available) => {
    if (!available && probeFacility("iter_map").status === "available") {
      // Where the kernel lacks the kfunc, its BTF (read by the toolkit's parser) has none.
      if (/lacks/.test(probeFacility("elem_count_kfunc").reason!)) {
        assert.deepEqual(
          kernelBtf().findAll("bpf_map_sum_elem_count").filter((t) => t.kind === "func"),
          [],
        );
      }
      return;
    }
    if (!available) return;
    await withMap("hash", 2500, (map) => {
      const counter = KernelCounter.open();
      assert.ok(typeof counter !== "string", String(counter));
      using _ = counter;
      assert.deepEqual(counter.count(map), { count: 2500, source: "kernel" });
    });
  },
  for_each_map_elem: async (available) => {
    if (!available) return;
    await withMap("hash", 4000, (map) => {
      using snapshot = MapSnapshot.open(map);
      assert.equal(snapshot.forEachBatch(() => {}).entries, 4000);
    });
  },
  loop: async (available) => {
    if (!available) return;
    await withMap("hash", 100, async (map) => {
      const churner = await startKernelChurn(map, { first: 1000, count: 50, rate: 1000 });
      assert.ok((await churner.stop()).operations > 0);
    });
  },
  map_memory: (available) => {
    using map = BpfMap.create({ type: "hash", keySize: 4, valueSize: 4, maxEntries: 1024 });
    const memlock = fdMemlock(map.fd)!;
    // The estimate of kernels before 6.4 is exactly 8 KiB here; the real figure is larger.
    if (available) assert.ok(memlock > 8192, `${memlock}`);
    else assert.equal(memlock, 8192);
  },
  ...Object.fromEntries(
    (Object.keys(MapType) as MapTypeName[]).map((type) => [
      `lookup_batch_${type}`,
      (available: boolean) => {
        using map = BpfMap.create({ type, keySize: 4, valueSize: 4, maxEntries: 64 });
        if (available) map.forEachBatch(() => {}, { chunk: 8 });
        else assert.throws(() => map.forEachBatch(() => {}, { chunk: 8 }));
      },
    ]),
  ),
};

for (const [facility, check] of Object.entries(AGREEMENT)) {
  bpfTest(`the probe of ${facility} agrees with the real thing on this kernel`, async () => {
    const answer = probeFacility(facility as Facility);
    if (answer.status === "unknown") return;
    await check!(answer.status === "available");
  });
}

bpfTest("BPF_DENY denies facilities for real; an unknown name is refused in one line", async () => {
  const denied = await runScriptWith(
    { env: { BPF_DENY: "iter_map,loop" } },
    "features.ts",
    "--json",
  );
  assert.equal(denied.code, 0, denied.stderr);
  const report = JSON.parse(denied.stdout);
  const answer = (name: string) => report.facilities.find((f: { name: string }) => f.name === name);
  for (const name of ["iter_map", "loop"]) {
    assert.equal(answer(name).status, "unavailable");
    assert.match(answer(name).reason, /: denied to this process \(BPF_DENY=iter_map,loop\)$/);
  }
  // What builds on a denied facility is refused with it.
  assert.equal(answer("elem_count_kfunc").status, "unavailable");
  assert.match(answer("elem_count_kfunc").reason, /: built on iter\/bpf_map programs: .*denied/);
  const wrong = await runScriptWith({ env: { BPF_DENY: "iter,bogus" } }, "features.ts");
  assert.equal(wrong.code, 2);
  assert.match(wrong.stderr, /^error: Unknown facility "iter" in BPF_DENY: choose from maps, /);
});

bpfTest(
  "deno task features prints every facility, method and command, plain and --json",
  async () => {
    const [plain, json] = await Promise.all([
      runScript("features.ts"),
      runScript("features.ts", "--json"),
    ]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(json.code, 0, json.stderr);
    const report = JSON.parse(json.stdout);
    assert.match(report.kernel.release, /^\d+\.\d+/);
    for (const answer of probeAll()) {
      const line = report.facilities.find((f: { name: string }) => f.name === answer.facility);
      assert.deepEqual(
        { status: line.status, reason: line.reason },
        { status: answer.status, reason: answer.reason },
        answer.facility,
      );
      const shown = plain.stdout.split("\n").find((l) =>
        l.trim().startsWith(`${answer.facility} `)
      );
      assert.ok(shown?.includes(answer.status), `${answer.facility}: ${shown}`);
      if (answer.reason && answer.status !== "available") assert.ok(shown!.includes(answer.reason));
    }
    const names = (list: { name: string }[]) => list.map((l) => l.name);
    assert.deepEqual(names(report.methods), [
      "normal",
      "batch",
      "parallel",
      "iter",
      "snapshot",
      "hybrid",
      "seed-compat",
    ]);
    assert.deepEqual(names(report.counts), names(report.methods));
    for (const count of report.counts) {
      // Every method's dumps are checked against a count that is not its own walk.
      if (count.status === "available") assert.match(count.reason, /kernel's count|pass/);
    }
    assert.deepEqual(names(report.commands), [
      "load",
      "normal",
      "batch",
      "iter",
      "dump",
      "maps",
      "demo",
      "compare",
      "sweep",
      "churn",
    ]);
    for (const section of ["facilities", "dump methods", "dumps are checked against", "commands"]) {
      assert.match(plain.stdout, new RegExp(`^${section}`, "m"));
    }
  },
);

gcTest(
  import.meta.url,
  "gc: the probes' programs and the counting passes, loaded and run with forced GCs",
  (gc) => {
    using map = BpfMap.create({ type: "hash", keySize: 4, valueSize: 8, maxEntries: 512 });
    for (let key = 0; key < 300; key++) map.update(u32Bytes(key), new Uint8Array(8));
    for (let round = 0; round < 150; round++) {
      // A program with a callback: its instructions, license, BTF and func_info all pointed
      // to from the attr; garbage and a collection between building and loading.
      const program = callWithCallback(Helper.forEachMapElem, asm.loadMap(1, map.fd));
      const junk = Array.from({ length: 64 }, (_, i) => new Uint8Array(16 + i));
      gc({ type: round % 10 === 0 ? "major" : "minor" });
      const fd = loadProgram({ name: "gc_count", kind: "syscall", ...program });
      assert.equal(typeof fd, "number", `round ${round}: ${JSON.stringify(fd)}`);
      assert.equal(runProgram(fd as number), 300, `round ${round}`);
      closeAll(fd as number);
      assert.equal(junk.length, 64);
      // The counting pass of dumps, kept between counts.
      using counter = MapCounter.open(map, { sources: ["for_each", "batch"] });
      gc({ type: "minor" });
      assert.equal(counter.count().count, 300);
    }
  },
  ["for_each_map_elem"],
);
