/**
 * Who this process is, as the kernel judges its BPF calls: its uid, the capabilities that
 * matter to BPF held by this thread (capabilities are per thread), and the kernel's lockdown
 * mode. Read from /proc and /sys through libc, so that no `--allow-read` is needed.
 *
 * @module
 */

import { readSmallFile } from "./libc.ts";

/** Capability numbers (`linux/capability.h`) that BPF calls need. */
export const Capability = {
  CAP_SYS_ADMIN: 21,
  CAP_PERFMON: 38,
  CAP_BPF: 39,
} as const;
/** A capability's name. */
export type CapabilityName = keyof typeof Capability;

/** Who this process is, as the kernel judges BPF calls. */
export interface ProcessPrivileges {
  /** The effective uid, when readable. */
  uid: number | null;
  /** The capabilities of `Capability` this thread holds in its effective set. */
  held: CapabilityName[];
  /** The kernel's lockdown mode (`none`, `integrity`, `confidentiality`), when readable. */
  lockdown: string | null;
}

/**
 * This thread's uid and capabilities, and the kernel's lockdown mode.
 *
 * @example
 * ```ts
 * import { processPrivileges } from "./privileges.ts";
 * const { uid, held } = processPrivileges();
 * console.log(uid, held.join(" "));
 * ```
 */
export function processPrivileges(): ProcessPrivileges {
  const status = readSmallFile("/proc/thread-self/status") ?? readSmallFile("/proc/self/status");
  const capEff = status?.match(/^CapEff:\s*([0-9a-f]+)/m)?.[1];
  const uid = status?.match(/^Uid:\s*\d+\s+(\d+)/m)?.[1];
  const held = capabilitiesIn(capEff ?? "0");
  const lockdown = readSmallFile("/sys/kernel/security/lockdown")?.match(/\[(\w+)\]/)?.[1] ??
    null;
  return { uid: uid === undefined ? null : Number(uid), held, lockdown };
}

/** The capabilities of `Capability` in an effective set (`CapEff:` of /proc, hexadecimal). */
export function capabilitiesIn(capEff: string): CapabilityName[] {
  const caps = BigInt(`0x${capEff.trim() || "0"}`);
  return (Object.keys(Capability) as CapabilityName[]).filter((name) =>
    (caps >> BigInt(Capability[name]) & 1n) === 1n
  );
}

/**
 * The capabilities of `needed` that `held` (default: this thread's) lacks; CAP_SYS_ADMIN
 * stands in for each.
 */
export function missingCapabilities(
  needed: readonly CapabilityName[],
  held: readonly CapabilityName[] = processPrivileges().held,
): CapabilityName[] {
  if (held.includes("CAP_SYS_ADMIN")) return [];
  return needed.filter((cap) => !held.includes(cap));
}

/** `as root with CAP_BPF and CAP_PERFMON`: who made a call, for a refusal's reason. */
export function asWhom(needed: readonly CapabilityName[]): string {
  const { uid, held } = processPrivileges();
  const who = uid === 0 ? "as root" : uid === null ? "as this process" : `as uid ${uid}`;
  const holding = needed.filter((cap) => held.includes(cap));
  const through = holding.length < needed.length && held.includes("CAP_SYS_ADMIN")
    ? ["CAP_SYS_ADMIN"]
    : holding;
  return through.length ? `${who} with ${through.join(" and ")}` : who;
}

/**
 * The hint for an `EPERM` or `EACCES` from the kernel: how to get the capabilities when this
 * thread lacks them; when it holds them, that the kernel itself refuses.
 */
export function privilegeHint(needed: readonly CapabilityName[] = ["CAP_BPF"]): string {
  const missing = missingCapabilities(needed);
  if (missing.length) return `run as root or grant ${missing.join(" and ")}`;
  return `refused ${
    asWhom(needed)
  }: the kernel's configuration, lockdown or an LSM forbids it (deno task features lists what this kernel allows)`;
}
