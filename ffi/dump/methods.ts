/**
 * What each dump method needs of the kernel, and whether this kernel gives it: the one place
 * that ties the methods to the probes of `sys/features.ts`, for `dumpMap` (a method asked
 * for by name), `auto` (which never picks one the kernel refuses), the scripts' rows and
 * `deno task features`.
 *
 * @module
 */

import { MapType } from "../sys/constants.ts";
import {
  type Facility,
  lookupBatchFacility,
  requireFacilities,
  unavailableReason,
} from "../sys/features.ts";
import type { DumpMethod } from "./dump.ts";
import { SNAPSHOT_FACILITIES } from "./snapshot.ts";

/** The facilities `method` needs to dump a map of `type` (a `MapType` number). */
export function methodFacilities(method: DumpMethod, type: number): Facility[] {
  const batch = lookupBatchFacility(type) ?? "maps";
  switch (method) {
    case "normal":
      return ["maps"];
    case "batch":
    case "parallel":
    case "seed-compat":
      return [batch];
    case "iter":
      return ["kernel_btf", "iter_map_elem"];
    case "snapshot":
      return [...SNAPSHOT_FACILITIES];
    case "hybrid":
      return [...SNAPSHOT_FACILITIES, batch];
  }
}

/** The method to use where `method` cannot run. */
export const FALLBACK_METHOD: Readonly<Record<DumpMethod, DumpMethod>> = {
  normal: "normal",
  batch: "normal",
  parallel: "normal",
  "seed-compat": "normal",
  iter: "batch",
  snapshot: "batch",
  hybrid: "parallel",
};

/**
 * Why this kernel cannot run `method` on maps of `type` (default: hash maps), in one line,
 * or `null` when it can.
 *
 * @example
 * ```ts
 * import { methodUnavailable } from "./methods.ts";
 * console.log(methodUnavailable("iter") ?? "the bpf_iter dump runs here");
 * ```
 */
export function methodUnavailable(method: DumpMethod, type: number = MapType.hash): string | null {
  return unavailableReason(...methodFacilities(method, type));
}

/**
 * Throws a `BpfUnavailableError` when this kernel cannot run `method` on maps of `type`:
 * `the iter method cannot run here: <reason>: use the batch method instead (--method batch)`;
 * `how` replaces the parenthesis (how to ask for the method instead).
 */
export function requireMethod(
  method: DumpMethod,
  type: number = MapType.hash,
  how?: (instead: DumpMethod) => string,
): void {
  const instead = FALLBACK_METHOD[method];
  requireFacilities(
    methodFacilities(method, type),
    `the ${method} method`,
    `use the ${instead} method instead (${how?.(instead) ?? `--method ${instead}`})`,
  );
}
