/**
 * What the running kernel lets this process do, probed once per process: for each kernel
 * facility the toolkit uses, "available", "unavailable" with the reason (what was refused,
 * how, and as whom), or "unknown" when the probe failed for an unrelated reason (a probe that
 * could not tell is never read as "no"). Each probe loads the smallest program or map that
 * shows its facility, never the toolkit's real programs (cilium/ebpf `features/`, bpftool
 * `feature probe`).
 *
 * `BPF_DENY=name,name` denies facilities to the process: the probe then reports them
 * unavailable, and every place that would use them refuses as it does on a kernel that
 * refuses them (tests use it to run the fallback paths on every kernel).
 *
 * @module
 */

import type { BatchBuffers } from "./backend.ts";
import { backend } from "./backends.ts";
import { ownedBytes, roundUp8 } from "./buffers.ts";
import { isPerCpu, MapType, type MapTypeName, mapTypeName } from "./constants.ts";
import { BpfArgumentError, BpfUnavailableError, Errno, errnoName } from "./errors.ts";
import { readEnv } from "./env.ts";
import { cString, errno, mapShared, Prot, readSmallFile, unmapRegion } from "./libc.ts";
import { libbpfSymbols } from "./libbpf.ts";
import {
  asm,
  attachIterator,
  callWithCallback,
  closeAll,
  describeFailure,
  Helper,
  type Insn,
  type LoadFailure,
  loadProgram,
  readIterator,
  RETURN_ZERO,
  runProgram,
} from "./programs.ts";
import { asWhom, type CapabilityName, missingCapabilities } from "./privileges.ts";
import { fdMemlock, pathExists, possibleCpus } from "./system.ts";

const BATCH_TITLES = Object.fromEntries(
  (Object.keys(MapType) as MapTypeName[]).map((type) => [
    `lookup_batch_${type}`,
    `BPF_MAP_LOOKUP_BATCH on ${type} maps`,
  ]),
) as Record<`lookup_batch_${MapTypeName}`, string>;

/** The facilities probed, by the name `BPF_DENY` and `--json` use, with what each is. */
export const FACILITIES = {
  maps: "BPF maps (BPF_MAP_CREATE)",
  kernel_btf: "kernel BTF (/sys/kernel/btf/vmlinux)",
  iter_map_elem: "iter/bpf_map_elem programs",
  iter_map: "iter/bpf_map programs",
  elem_count_kfunc: "the bpf_map_sum_elem_count kfunc",
  syscall_programs: "syscall programs run by BPF_PROG_TEST_RUN",
  for_each_map_elem: "bpf_for_each_map_elem in syscall programs",
  loop: "bpf_loop in syscall programs",
  probe_read_kernel: "bpf_probe_read_kernel in syscall programs",
  mmapable_arrays: "BPF_F_MMAPABLE arrays mapped by this process",
  ...BATCH_TITLES,
  map_memory: "per-map kernel memory figures (memlock)",
} as const;
/** A facility's name, e.g. `iter_map_elem`. */
export type Facility = keyof typeof FACILITIES;

/** What a probe found. */
export type FacilityStatus = "available" | "unavailable" | "unknown";

/** One facility's answer. */
export interface FacilityProbe {
  /** The facility's name. */
  facility: Facility;
  /** What it is, in words. */
  title: string;
  /** `available`, `unavailable` (the reason says why) or `unknown` (the probe could not tell). */
  status: FacilityStatus;
  /** Why it is unavailable or unknown; `null` when available. */
  reason: string | null;
}

type Outcome = { status: FacilityStatus; reason: string | null };
const AVAILABLE: Outcome = { status: "available", reason: null };

function unavailable(reason: string): Outcome {
  return { status: "unavailable", reason };
}

function unknown(reason: string): Outcome {
  return { status: "unknown", reason: `could not tell: ${reason}` };
}

/** What to say when the process lacks capabilities the facility needs, or `null`. */
function lacking(title: string, needed: readonly CapabilityName[]): Outcome | null {
  const missing = missingCapabilities(needed);
  if (missing.length === 0) return null;
  const caps = missing.join(" and ");
  return unavailable(
    `${title}: ${caps} needed, which this process lacks: run as root or grant ${caps}`,
  );
}

function refusedBy(
  title: string,
  failure: LoadFailure | number,
  stage: string,
  caps: CapabilityName[],
) {
  return unavailable(
    `this kernel refuses ${title}: ${describeFailure(failure, stage)}, ${asWhom(caps)}`,
  );
}

// --- The kernel's BTF: ids of iterator targets and kfuncs ---------------------------------

/** The vmlinux BTF functions the probes and the counting programs look up. */
const VMLINUX_FUNCS = [
  "bpf_iter_bpf_map_elem",
  "bpf_iter_bpf_map",
  "bpf_map_sum_elem_count",
] as const;
/** A function of vmlinux whose BTF id the toolkit needs. */
export type VmlinuxFunc = typeof VMLINUX_FUNCS[number];
const BTF_KIND_FUNC = 12;

let vmlinuxIds: Map<VmlinuxFunc, number> | string | undefined;

/**
 * The BTF id of a function of vmlinux (an iterator target, a kfunc), `0` when the kernel has
 * none, or why its BTF could not be read. Read once per process (libbpf parses vmlinux).
 */
export function vmlinuxFuncId(name: VmlinuxFunc): number | string {
  if (vmlinuxIds === undefined) {
    try {
      const lib = libbpfSymbols();
      const load = lib.btf__load_vmlinux_btf;
      if (!load) throw new Error("the loaded libbpf lacks btf__load_vmlinux_btf (libbpf 0.5+)");
      const btf = load();
      if (btf === null) throw new Error(`btf__load_vmlinux_btf failed: ${errnoName(errno())}`);
      try {
        vmlinuxIds = new Map(VMLINUX_FUNCS.map((func) => {
          const id = lib.btf__find_by_name_kind(btf, cString(func), BTF_KIND_FUNC);
          return [func, Math.max(id, 0)];
        }));
      } finally {
        lib.btf__free(btf);
      }
    } catch (e) {
      vmlinuxIds = `the kernel's BTF could not be read: ${e instanceof Error ? e.message : e}`;
    }
  }
  return typeof vmlinuxIds === "string" ? vmlinuxIds : vmlinuxIds.get(name)!;
}

/** `Linux 6.1.0-57-amd64`: the running kernel, for reasons. */
export function kernelRelease(): string {
  return readSmallFile("/proc/sys/kernel/osrelease")?.trim() ?? "unknown";
}

// --- Probe maps ---------------------------------------------------------------------------

/** Creates a small map for a probe: its fd, or `-errno`. */
function probeMap(type: number, maxEntries = 1, valueSize = 4, flags = 0): number {
  return backend("syscall").createMap({
    mapType: type,
    keySize: 4,
    valueSize,
    maxEntries,
    mapFlags: flags,
    name: "probe",
  });
}

/** Writes key 0 into a probe map: 0 or `-errno`. */
function putKeyZero(fd: number, valueBytes: number): number {
  const key = ownedBytes(4);
  const value = ownedBytes(valueBytes);
  return backend("syscall").elem("update", fd, key, value)();
}

// --- The probes ---------------------------------------------------------------------------

function probeMaps(): Outcome {
  const fd = probeMap(MapType.hash);
  if (fd >= 0) {
    closeAll(fd);
    return AVAILABLE;
  }
  return lacking(FACILITIES.maps, ["CAP_BPF"]) ??
    refusedBy(FACILITIES.maps, fd, "BPF_MAP_CREATE", ["CAP_BPF"]);
}

function probeKernelBtf(): Outcome {
  return pathExists("/sys/kernel/btf/vmlinux") ? AVAILABLE : unavailable(
    `this kernel has no BTF of its own (/sys/kernel/btf/vmlinux): it was built without CONFIG_DEBUG_INFO_BTF`,
  );
}

const ITER_CAPS: CapabilityName[] = ["CAP_BPF", "CAP_PERFMON"];

/** Loads `insns` as an iterator of `target`, attaches it (to a probe map for elements) and reads it. */
function tryIterator(facility: Facility, target: VmlinuxFunc, insns: readonly Insn[]): Outcome {
  const title = FACILITIES[facility];
  const prior = lacking(title, ITER_CAPS) ?? needs(facility, "kernel_btf");
  if (prior) return prior;
  const id = vmlinuxFuncId(target);
  if (typeof id === "string") return unknown(id);
  if (id === 0) return unavailable(`this kernel has no ${title}: its BTF has no ${target}`);
  const map = facility === "iter_map_elem" ? probeMap(MapType.hash) : -1;
  const loaded = loadProgram({ name: "probe_iter", kind: { iterTarget: id }, insns });
  let link = -1;
  try {
    if (facility === "iter_map_elem" && map < 0) return unknown(`a probe map: ${errnoName(-map)}`);
    if (typeof loaded !== "number") return refusedBy(title, loaded, "load", ITER_CAPS);
    link = attachIterator(loaded, map >= 0 ? map : undefined);
    if (link < 0) return refusedBy(title, link, "attach", ITER_CAPS);
    const read = readIterator(link);
    return read < 0 ? refusedBy(title, read, "read", ITER_CAPS) : AVAILABLE;
  } finally {
    closeAll(link, typeof loaded === "number" ? loaded : -1, map);
  }
}

function probeElemCount(): Outcome {
  const title = FACILITIES.elem_count_kfunc;
  const prior = needs("elem_count_kfunc", "iter_map");
  if (prior) return prior;
  const id = vmlinuxFuncId("bpf_map_sum_elem_count");
  if (typeof id === "string") return unknown(id);
  if (id === 0) {
    return unavailable(
      `this kernel lacks ${title} (it came in Linux 6.6; this kernel is ${kernelRelease()})`,
    );
  }
  // r1 = ctx->map; if (r1) bpf_map_sum_elem_count(r1); return 0
  return tryIterator("elem_count_kfunc", "bpf_iter_bpf_map", [
    asm.loadU64(1, 1, 8),
    asm.jumpIfEqual(1, 0, 1),
    asm.callKfunc(id),
    ...RETURN_ZERO,
  ]);
}

/** Loads `insns` as a syscall program and runs it once: the outcome, given its return value. */
function trySyscallProgram(
  facility: Facility,
  insns: (mapFd: number) => { insns: readonly Insn[]; callbacks?: number[] },
  expect: number,
  caps: CapabilityName[] = ["CAP_BPF"],
): Outcome {
  const title = FACILITIES[facility];
  const prior = lacking(title, caps) ??
    (facility === "syscall_programs" ? null : needs(facility, "syscall_programs"));
  if (prior) return prior;
  const map = probeMap(MapType.hash);
  let loaded: number | LoadFailure = -1;
  try {
    if (map < 0) return unknown(`a probe map: ${errnoName(-map)}`);
    const put = putKeyZero(map, 4);
    if (put < 0) return unknown(`a probe map's update: ${errnoName(-put)}`);
    loaded = loadProgram({ name: "probe_syscall", kind: "syscall", ...insns(map) });
    if (typeof loaded !== "number") return refusedBy(title, loaded, "load", caps);
    const result = runProgram(loaded);
    if (result < 0) return refusedBy(title, result, "BPF_PROG_TEST_RUN", caps);
    return result === expect
      ? AVAILABLE
      : unknown(`the probe program returned ${result}, not ${expect}`);
  } finally {
    closeAll(typeof loaded === "number" ? loaded : -1, map);
  }
}

function probeMmapable(): Outcome {
  const BPF_F_MMAPABLE = 1 << 10;
  const fd = probeMap(MapType.array, 1, 8, BPF_F_MMAPABLE);
  if (fd < 0) {
    return lacking(FACILITIES.mmapable_arrays, ["CAP_BPF"]) ??
      refusedBy(FACILITIES.mmapable_arrays, fd, "BPF_MAP_CREATE", ["CAP_BPF"]);
  }
  try {
    const address = mapShared(fd, 4096, Prot.READ);
    if (typeof address === "number") {
      return refusedBy(FACILITIES.mmapable_arrays, address, "mmap", ["CAP_BPF"]);
    }
    unmapRegion(address, 4096);
    return AVAILABLE;
  } finally {
    closeAll(fd);
  }
}

function probeLookupBatch(type: MapTypeName): Outcome {
  const facility: Facility = `lookup_batch_${type}`;
  const title = FACILITIES[facility];
  const entries = 4;
  const fd = probeMap(MapType[type], entries);
  if (fd < 0) {
    return fd === -Errno.EINVAL
      ? unavailable(`this kernel has no ${type} maps: EINVAL at BPF_MAP_CREATE`)
      : unknown(`a probe map: ${errnoName(-fd)}`);
  }
  try {
    const valueBytes = isPerCpu(MapType[type]) ? roundUp8(4) * possibleCpus() : 4;
    const put = putKeyZero(fd, valueBytes);
    if (put < 0) return unknown(`a probe map's update: ${errnoName(-put)}`);
    const buffers: BatchBuffers = {
      inBatch: ownedBytes(4),
      outBatch: ownedBytes(4),
      keys: ownedBytes(entries * 4),
      values: ownedBytes(entries * valueBytes),
    };
    const call = backend("syscall").batch("lookup", fd, buffers);
    const result = call.run(entries, true, 0n);
    if (result < 0 && result !== -Errno.ENOENT) {
      return refusedBy(title, result, "the call", ["CAP_BPF"]);
    }
    return call.done() >= 1
      ? AVAILABLE
      : unknown("LOOKUP_BATCH returned no entry of a map that holds one");
  } finally {
    closeAll(fd);
  }
}

/**
 * Kernels before 6.4 report a map's `memlock` as an estimate: `round_up(key_size +
 * value_size, 8) * max_entries`, rounded up to a page. A hash map of 1,024 u32 pairs then
 * shows exactly 8 KiB; real accounting shows its buckets and elements too.
 */
function probeMapMemory(): Outcome {
  const entries = 1024;
  const fd = probeMap(MapType.hash, entries);
  if (fd < 0) return unknown(`a probe map: ${errnoName(-fd)}`);
  try {
    const memlock = fdMemlock(fd);
    if (memlock === undefined) return unknown("no memlock line in /proc/self/fdinfo");
    const estimate = Math.ceil(entries * roundUp8(8) / 4096) * 4096;
    return memlock === estimate
      ? unavailable(
        `this kernel reports a map's memory as an estimate (sizes x max_entries); it accounts per map from Linux 6.4 (this kernel is ${kernelRelease()})`,
      )
      : AVAILABLE;
  } finally {
    closeAll(fd);
  }
}

const PROBES: Record<Facility, () => Outcome> = {
  maps: probeMaps,
  kernel_btf: probeKernelBtf,
  iter_map_elem: () => tryIterator("iter_map_elem", "bpf_iter_bpf_map_elem", RETURN_ZERO),
  iter_map: () => tryIterator("iter_map", "bpf_iter_bpf_map", RETURN_ZERO),
  elem_count_kfunc: probeElemCount,
  syscall_programs: () => trySyscallProgram("syscall_programs", () => ({ insns: RETURN_ZERO }), 0),
  // Returns the number of elements walked: the probe map holds one.
  for_each_map_elem: () =>
    trySyscallProgram(
      "for_each_map_elem",
      (map) => callWithCallback(Helper.forEachMapElem, asm.loadMap(1, map)),
      1,
    ),
  // Returns the number of iterations: one.
  loop: () => trySyscallProgram("loop", () => callWithCallback(Helper.loop, [asm.movImm(1, 1)]), 1),
  // Reads 8 bytes from address 0: refused at run time (-EFAULT), allowed at load.
  probe_read_kernel: () =>
    trySyscallProgram(
      "probe_read_kernel",
      () => ({
        insns: [
          asm.mov(1, 10),
          asm.addImm(1, -8),
          asm.movImm(2, 8),
          asm.movImm(3, 0),
          asm.call(Helper.probeReadKernel),
          ...RETURN_ZERO,
        ],
      }),
      0,
      ["CAP_BPF", "CAP_PERFMON"],
    ),
  mmapable_arrays: probeMmapable,
  ...Object.fromEntries(
    (Object.keys(MapType) as MapTypeName[]).map((type) => [
      `lookup_batch_${type}`,
      () => probeLookupBatch(type),
    ]),
  ) as Record<`lookup_batch_${MapTypeName}`, () => Outcome>,
  map_memory: probeMapMemory,
};

// --- Answers, cached ----------------------------------------------------------------------

const answers = new Map<Facility, FacilityProbe>();
let denied: ReadonlySet<Facility> | undefined;

/** Whether `name` is a facility's name. */
export function isFacility(name: string): name is Facility {
  return Object.hasOwn(FACILITIES, name);
}

/** The facilities `BPF_DENY` denies to this process (a comma-separated list of names). */
export function deniedFacilities(): ReadonlySet<Facility> {
  if (denied) return denied;
  const names = (readEnv("BPF_DENY") ?? "").split(",").map((name) => name.trim()).filter(Boolean);
  const wrong = names.filter((name) => !isFacility(name));
  if (wrong.length) {
    throw new BpfArgumentError(
      `Unknown facility "${wrong[0]}" in BPF_DENY: choose from ${
        Object.keys(FACILITIES).join(", ")
      }`,
    );
  }
  return denied = new Set(names as Facility[]);
}

/** The answer of a facility that `facility` builds on, when it is not available. */
function needs(facility: Facility, on: Facility): Outcome | null {
  const answer = probeFacility(on);
  if (answer.status === "available") return null;
  return {
    status: answer.status,
    reason: `${FACILITIES[facility]}: built on ${answer.title}: ${answer.reason}`,
  };
}

/**
 * Whether the running kernel lets this process use `facility`, probed on first ask and
 * remembered for the life of the process.
 *
 * @example
 * ```ts
 * import { probeFacility } from "./features.ts";
 * const iter = probeFacility("iter_map_elem");
 * console.log(iter.status === "available" ? "bpf_iter dumps work" : iter.reason);
 * ```
 */
export function probeFacility(facility: Facility): FacilityProbe {
  const known = answers.get(facility);
  if (known) return known;
  const title = FACILITIES[facility];
  let outcome: Outcome;
  if (deniedFacilities().has(facility)) {
    outcome = unavailable(
      `${title}: denied to this process (BPF_DENY=${[...deniedFacilities()].join(",")})`,
    );
  } else {
    try {
      outcome = PROBES[facility]();
    } catch (e) {
      outcome = unknown(e instanceof Error ? e.message.split("\n")[0] : String(e));
    }
  }
  const answer = { facility, title, ...outcome };
  answers.set(facility, answer);
  return answer;
}

/** Every facility's answer, in the order of `FACILITIES`. */
export function probeAll(): FacilityProbe[] {
  return (Object.keys(FACILITIES) as Facility[]).map(probeFacility);
}

/**
 * The reason the first of `facilities` that this kernel refuses is unavailable, or `null`
 * when none is (a facility the probe could not tell about counts as available: its use
 * will say).
 */
export function unavailableReason(...facilities: Facility[]): string | null {
  for (const facility of facilities) {
    const answer = probeFacility(facility);
    if (answer.status === "unavailable") return answer.reason;
  }
  return null;
}

/**
 * Throws a `BpfUnavailableError` when the kernel refuses one of `facilities` to this process:
 * `"<user> cannot run here: <reason>"`, then `instead` (what to use instead) when given.
 */
export function requireFacilities(
  facilities: readonly Facility[],
  user: string,
  instead?: string,
): void {
  for (const facility of facilities) {
    const reason = unavailableReason(facility);
    if (reason !== null) {
      throw new BpfUnavailableError(
        `${user} cannot run here: ${reason}${instead ? `: ${instead}` : ""}`,
        facility,
      );
    }
  }
}

/** The facility of `LOOKUP_BATCH` on a map type, or `undefined` for a type the toolkit does not walk in batches. */
export function lookupBatchFacility(type: number): Facility | undefined {
  const name = mapTypeName(type);
  return Object.hasOwn(MapType, name) ? `lookup_batch_${name as MapTypeName}` : undefined;
}
