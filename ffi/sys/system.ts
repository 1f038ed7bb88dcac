/**
 * Facts of the running system the toolkit depends on: possible CPUs (per-CPU value layout),
 * bpffs (pinning), a file descriptor's kernel memory. Read through libc, so that
 * `--allow-ffi` is the only permission needed.
 *
 * @module
 */

import { BpfError, Errno } from "./errors.ts";
import { fileSystemType, mountFileSystem, readSmallFile, writeSmallFile } from "./libc.ts";

/** Where bpffs is mounted by convention. */
export const BPFFS_ROOT = "/sys/fs/bpf";
/** `BPF_FS_MAGIC` from `linux/magic.h`. */
const BPF_FS_MAGIC = 0xcafe4a11;

/** Counts the CPUs of a kernel CPU list such as `0-3,5`. */
export function countCpuList(list: string): number {
  let count = 0;
  for (const part of list.trim().split(",")) {
    if (!part) continue;
    const [first, last = first] = part.split("-").map(Number);
    if (!Number.isInteger(first) || !Number.isInteger(last) || last < first) {
      throw new Error(`Cannot parse CPU list "${list.trim()}"`);
    }
    count += last - first + 1;
  }
  return count;
}

let possible: number | undefined;

/** The number of possible CPUs (`/sys/devices/system/cpu/possible`): the slots of a per-CPU value. */
export function possibleCpus(): number {
  if (possible !== undefined) return possible;
  const list = readSmallFile("/sys/devices/system/cpu/possible");
  if (list === undefined) {
    throw new Error("Cannot read /sys/devices/system/cpu/possible");
  }
  return possible = countCpuList(list);
}

function parentOf(path: string): string {
  const cut = path.replace(/\/+$/, "").lastIndexOf("/");
  return cut <= 0 ? "/" : path.slice(0, cut);
}

/**
 * Makes sure the folder of `path` is on a bpf file system: mounts bpffs at /sys/fs/bpf when
 * the path is below it and nothing is mounted there; throws a clear error otherwise.
 */
export function ensureBpffs(path: string): void {
  const folder = parentOf(path);
  let type = fileSystemType(folder);
  if (type === BPF_FS_MAGIC) return;
  const underRoot = folder === BPFFS_ROOT ||
    folder.startsWith(`${BPFFS_ROOT}/`);
  if (underRoot && fileSystemType(BPFFS_ROOT) !== BPF_FS_MAGIC) {
    const mounted = mountFileSystem("bpf", BPFFS_ROOT, "bpf");
    if (mounted < 0) {
      throw new BpfError({
        errno: -mounted,
        command: "mount",
        subject: `bpffs at "${BPFFS_ROOT}"`,
        hint: `run as root, or mount it yourself: mount -t bpf bpf ${BPFFS_ROOT}`,
      });
    }
    type = fileSystemType(folder);
    if (type === BPF_FS_MAGIC) return;
  }
  if (type === -Errno.ENOENT) {
    throw new BpfError({
      errno: Errno.ENOENT,
      command: "BPF_OBJ_PIN",
      subject: `"${path}"`,
      hint: `the folder "${folder}" does not exist: create it first (mkdir -p ${folder})`,
    });
  }
  throw new BpfError({
    errno: Errno.EINVAL,
    command: "BPF_OBJ_PIN",
    subject: `"${path}"`,
    hint: `"${folder}" is not on a bpf file system: pin under ${BPFFS_ROOT}`,
  });
}

/** Whether `path` exists and is not on a bpf file system (so it cannot be a pin). */
export function outsideBpffs(path: string): boolean {
  const type = fileSystemType(path);
  return type >= 0 && type !== BPF_FS_MAGIC;
}

/** Whether something exists at `path` (a pin, a file), without needing `--allow-read`. */
export function pathExists(path: string): boolean {
  return fileSystemType(path) >= 0;
}

/** The kernel memory a BPF map fd accounts for (`memlock` in `/proc/self/fdinfo/FD`), in bytes. */
export function fdMemlock(fd: number): number | undefined {
  const text = readSmallFile(`/proc/self/fdinfo/${fd}`);
  const match = text?.match(/^memlock:\s+(\d+)/m);
  return match ? Number(match[1]) : undefined;
}

/** Resets this process's peak RSS to its current RSS (`echo 5 > /proc/self/clear_refs`); false when refused. */
export function resetPeakRss(): boolean {
  return writeSmallFile("/proc/self/clear_refs", "5") === 0;
}

/** Peak resident set size of this process (`VmHWM` in `/proc/self/status`), in bytes. */
export function peakRss(): number | undefined {
  const text = readSmallFile("/proc/self/status");
  const match = text?.match(/^VmHWM:\s+(\d+)\s+kB/m);
  return match ? Number(match[1]) * 1024 : undefined;
}

/**
 * The folder of a Worker's module at `url` when this process may not read it (Deno loads a
 * Worker's module at run time, which needs read access), or `undefined` when it may.
 */
export function unreadableWorkerFolder(url: URL): string | undefined {
  if (url.protocol !== "file:") return undefined;
  const folder = new URL(".", url).pathname.replace(/\/$/, "");
  return Deno.permissions.querySync({ name: "read", path: folder }).state === "granted"
    ? undefined
    : folder;
}
