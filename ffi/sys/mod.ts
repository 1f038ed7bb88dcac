/**
 * The bindings and the ABI: libc and libbpf symbol tables, the `bpf(2)` layouts as field
 * tables, the kernel's constants, errors with errno names, off-heap buffers, the two backends
 * (libc `syscall()` and libbpf) and facts of the running system.
 *
 * @module
 */

export { BpfArgumentError, BpfError, errnoName } from "./errors.ts";
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
