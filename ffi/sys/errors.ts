/**
 * The toolkit's errors: `BpfError` for what the kernel or libbpf refused, `BpfArgumentError`
 * for arguments rejected before any system call, and the one helper that turns a negative
 * return into a `BpfError`.
 *
 * @module
 */

import { commandName } from "./constants.ts";
import { privilegeHint } from "./privileges.ts";

/** Linux errno numbers the toolkit names (x86_64 and aarch64 share them). */
export const ERRNO_NAMES: Readonly<Record<number, string>> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  5: "EIO",
  7: "E2BIG",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV",
  20: "ENOTDIR",
  22: "EINVAL",
  24: "EMFILE",
  28: "ENOSPC",
  34: "ERANGE",
  38: "ENOSYS",
  95: "EOPNOTSUPP",
  524: "ENOTSUPP",
};

/** errno values the toolkit branches on. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENOSPC: 28,
  EOPNOTSUPP: 95,
  ENOTSUPP: 524,
} as const;

/** Returns the symbolic name of an errno value (`ENOENT`), or `errno N`. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `errno ${errno}`;
}

const STRERROR: Readonly<Record<number, string>> = {
  1: "operation not permitted",
  2: "no such file or directory",
  7: "argument list too long",
  9: "bad file descriptor",
  12: "cannot allocate memory",
  13: "permission denied",
  14: "bad address",
  16: "device or resource busy",
  17: "file exists",
  22: "invalid argument",
  28: "no space left on device",
  95: "operation not supported",
  524: "operation not supported",
};

/** Hints for errno values whose fix is the same whatever the command. */
const GENERIC_HINTS: Readonly<Record<number, () => string>> = {
  // Only when this thread lacks CAP_BPF is the fix to grant it.
  [Errno.EPERM]: () => privilegeHint(),
  [Errno.EACCES]: () => privilegeHint(),
  [Errno.EOPNOTSUPP]: () => "this map type does not support the operation",
  [Errno.ENOTSUPP]: () => "this map type does not support the operation",
};

/** What a `BpfError` is built from. */
export interface BpfErrorOptions {
  /** The positive errno value. */
  errno: number;
  /** The `bpf(2)` command number, or a libbpf function name. */
  command: number | string;
  /** What the call was about, e.g. `map "test_map"` or `pin "/sys/fs/bpf/x"`. */
  subject?: string;
  /** How to fix it, where known; defaults to a hint for the errno. */
  hint?: string;
  /** The underlying error, if any. */
  cause?: unknown;
}

/**
 * A `bpf(2)` command or libbpf call failed.
 *
 * @example
 * ```ts
 * import { BpfError, BpfMap } from "../../mod.ts";
 * try {
 *   BpfMap.fromId(999_999);
 * } catch (e) {
 *   if (e instanceof BpfError && e.code === "ENOENT") console.log(e.message);
 * }
 * ```
 */
export class BpfError extends Error {
  override name = "BpfError";
  /** The positive errno value, e.g. `1`. */
  readonly errno: number;
  /** The errno name, e.g. `EPERM`. */
  readonly code: string;
  /** The command, e.g. `BPF_MAP_LOOKUP_BATCH`, or the libbpf function. */
  readonly command: string;
  /** How to fix it, when known. */
  readonly hint: string | undefined;

  constructor(options: BpfErrorOptions) {
    const command = typeof options.command === "number"
      ? commandName(options.command)
      : options.command;
    const code = errnoName(options.errno);
    const hint = options.hint ?? GENERIC_HINTS[options.errno]?.();
    const what = options.subject ? ` on ${options.subject}` : "";
    const reason = STRERROR[options.errno];
    super(
      `${command}${what} failed: ${code}${reason ? ` (${reason})` : ""}${hint ? `: ${hint}` : ""}`,
      { cause: options.cause },
    );
    this.errno = options.errno;
    this.code = code;
    this.command = command;
    this.hint = hint;
  }
}

/**
 * The kernel (or `BPF_DENY`) refuses this process a facility that an operation needs, as the
 * probe of `features.ts` found: said in one line, before anything is loaded.
 */
export class BpfUnavailableError extends Error {
  override name = "BpfUnavailableError";
  /** The facility refused, e.g. `iter_map_elem`. */
  readonly facility: string;

  constructor(message: string, facility: string) {
    super(message);
    this.facility = facility;
  }
}

/** An argument was rejected before any system call was made. */
export class BpfArgumentError extends TypeError {
  override name = "BpfArgumentError";
}

/**
 * Returns `result` when it is not negative; otherwise throws the `BpfError` for errno `-result`.
 * Every backend returns `-errno` on failure, so this is the one place failures become errors.
 */
export function check(
  result: number,
  command: number | string,
  context: Omit<BpfErrorOptions, "errno" | "command"> = {},
): number {
  if (result >= 0) return result;
  throw new BpfError({ errno: -result, command, ...context });
}
