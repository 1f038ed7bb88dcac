/**
 * The bindings and the ABI: libc and libbpf symbol tables, the `bpf(2)` layouts as field
 * tables, the kernel's constants, errors with errno names, off-heap buffers, the two backends
 * (libc `syscall()` and libbpf), facts of the running system, and what its kernel allows
 * (the probes, and the small programs they load).
 *
 * @module
 */

export { BpfArgumentError, BpfError, BpfUnavailableError, errnoName } from "./errors.ts";
export {
  deniedFacilities,
  FACILITIES,
  type Facility,
  type FacilityProbe,
  type FacilityStatus,
  kernelRelease,
  probeAll,
  probeFacility,
  requireFacilities,
  unavailableReason,
} from "./features.ts";
export {
  type CapabilityName,
  missingCapabilities,
  type ProcessPrivileges,
  processPrivileges,
} from "./privileges.ts";
export {
  BpfCommand,
  isPerCpu,
  MapFlag,
  MapType,
  type MapTypeName,
  mapTypeName,
  parseMapType,
  UpdateFlag,
} from "./constants.ts";
export { type BackendName, BACKENDS } from "./backend.ts";
export { parseBackendName } from "./backends.ts";
export { type MapInfo } from "./layout.ts";
export { BPFFS_ROOT, ensureBpffs, fdMemlock, peakRss, possibleCpus } from "./system.ts";
