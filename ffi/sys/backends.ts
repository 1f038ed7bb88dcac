/**
 * Picks a backend by name. Backends are stateless apart from the loaded library, so one
 * instance of each serves every map.
 *
 * @module
 */

import { type Backend, type BackendName, BACKENDS } from "./backend.ts";
import { BpfArgumentError } from "./errors.ts";
import { LibbpfBackend } from "./libbpf_backend.ts";
import { SyscallBackend } from "./syscall_backend.ts";
import { readEnv } from "./env.ts";

const instances: Partial<Record<BackendName, Backend>> = {};

/** The backend used when none is named: `syscall`, or `BPF_BACKEND` from the environment. */
export function defaultBackendName(): BackendName {
  const fromEnv = readEnv("BPF_BACKEND");
  return fromEnv ? parseBackendName(fromEnv) : "syscall";
}

/** Checks a backend name; throws `BpfArgumentError` naming the choices when it is not one. */
export function parseBackendName(name: string): BackendName {
  if ((BACKENDS as readonly string[]).includes(name)) {
    return name as BackendName;
  }
  throw new BpfArgumentError(
    `Unknown backend "${name}": use one of ${BACKENDS.join(", ")}`,
  );
}

/** Returns the backend of that name (default: `defaultBackendName()`), creating it on first use. */
export function backend(name: BackendName = defaultBackendName()): Backend {
  return instances[name] ??= name === "libbpf" ? new LibbpfBackend() : new SyscallBackend();
}
