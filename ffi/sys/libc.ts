/**
 * Bindings to the C library: the raw `syscall()` entry for `bpf(2)`, errno, and the few
 * file calls the toolkit needs. Loaded on first use, so importing the toolkit needs no
 * `--allow-ffi` until a map is touched.
 *
 * @module
 */

/** The libc symbols the toolkit calls. */
const LIBC_SYMBOLS = {
  syscall: {
    parameters: [
      "i64", // long number
      "i64", // long (vararg, promoted): int cmd
      "pointer", // union bpf_attr *attr (a pointer, not a buffer: ~30 ns less per call on the hot path)
      "i64", // long (vararg, promoted): unsigned int size
    ],
    result: "i64", // long
  },
  __errno_location: { parameters: [], result: "pointer" }, // int *__errno_location(void)
  read: {
    parameters: [
      "i32", // int fd
      "buffer", // void *buf
      "usize", // size_t count
    ],
    result: "isize", // ssize_t
  },
  close: { parameters: ["i32"], result: "i32" }, // int close(int fd)
  dup: { parameters: ["i32"], result: "i32" }, // int dup(int oldfd)
  open: {
    parameters: [
      "buffer", // const char *pathname
      "i32", // int flags
      "u32", // mode_t mode (vararg)
    ],
    result: "i32", // int
  },
  unlink: { parameters: ["buffer"], result: "i32" }, // int unlink(const char *pathname)
  mmap: {
    parameters: [
      "pointer", // void *addr
      "usize", // size_t length
      "i32", // int prot
      "i32", // int flags
      "i32", // int fd
      "i64", // off_t offset
    ],
    result: "pointer", // void *: MAP_FAILED ((void *) -1) and errno on failure
  },
  munmap: {
    parameters: [
      "pointer", // void *addr
      "usize", // size_t length
    ],
    result: "i32", // int
  },
  write: {
    parameters: [
      "i32", // int fd
      "buffer", // const void *buf
      "usize", // size_t count
    ],
    result: "isize", // ssize_t
  },
  getrusage: {
    parameters: [
      "i32", // int who
      "buffer", // struct rusage *usage
    ],
    result: "i32", // int
  },
  statfs: {
    parameters: [
      "buffer", // const char *path
      "buffer", // struct statfs *buf
    ],
    result: "i32", // int
  },
  mount: {
    parameters: [
      "buffer", // const char *source
      "buffer", // const char *target
      "buffer", // const char *filesystemtype
      "u64", // unsigned long mountflags
      "buffer", // const void *data
    ],
    result: "i32", // int
  },
  strerror: { parameters: ["i32"], result: "pointer" }, // char *strerror(int errnum)
  opendir: { parameters: ["buffer"], result: "pointer" }, // DIR *opendir(const char *name)
  readdir: { parameters: ["pointer"], result: "pointer" }, // struct dirent *readdir(DIR *dirp)
  closedir: { parameters: ["pointer"], result: "i32" }, // int closedir(DIR *dirp)
} as const satisfies Deno.ForeignLibraryInterface;

/** The loaded libc symbols. */
export type LibcSymbols = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"];

const LIBC_PATHS = ["libc.so.6", "libc.so"];

let libc: LibcSymbols | undefined;
let errnoView: Int32Array | undefined;

/** Returns the libc symbols, opening the library on first use. */
export function libcSymbols(): LibcSymbols {
  if (libc) return libc;
  const errors: string[] = [];
  for (const path of LIBC_PATHS) {
    try {
      libc = Deno.dlopen(path, LIBC_SYMBOLS).symbols;
      return libc;
    } catch (e) {
      errors.push(`"${path}": ${e instanceof Error ? e.message : e}`);
    }
  }
  throw new Error(`Cannot open the C library: tried ${errors.join(", ")}`);
}

/**
 * Returns this thread's errno. Call it right after the synchronous call whose failure it
 * explains: any later FFI call may overwrite it.
 */
export function errno(): number {
  if (!errnoView) {
    const pointer = libcSymbols().__errno_location();
    if (pointer === null) throw new Error("__errno_location returned NULL");
    errnoView = new Int32Array(
      Deno.UnsafePointerView.getArrayBuffer(pointer, 4),
    );
  }
  return errnoView[0];
}

/** Turns a libc-style result (`-1` and errno) into the toolkit's convention (`-errno`). */
export function negativeErrno(result: number): number {
  return result < 0 ? -errno() : result;
}

/** `strerror(errnum)`: libc's text for an errno ("No such file or directory"), as C tools print it. */
export function errnoText(errnum: number): string {
  const text = libcSymbols().strerror(errnum);
  return text ? Deno.UnsafePointerView.getCString(text) : `Unknown error ${errnum}`;
}

/** Closes a file descriptor; returns 0 or `-errno`. */
export function closeFd(fd: number): number {
  return negativeErrno(libcSymbols().close(fd));
}

/** Duplicates a file descriptor; returns the new fd or `-errno`. */
export function dupFd(fd: number): number {
  return negativeErrno(libcSymbols().dup(fd));
}

/** Reads into `buffer`; returns the bytes read (0 at the end) or `-errno`. */
export function readFd(fd: number, buffer: Uint8Array): number {
  return negativeErrno(
    Number(libcSymbols().read(fd, buffer, BigInt(buffer.byteLength))),
  );
}

/** `mmap` protection flags. */
export const Prot = { READ: 1, WRITE: 2 } as const;

/**
 * Maps `length` bytes of `fd` from offset 0, shared (`MAP_SHARED`); returns the address, or
 * `-errno`. The caller unmaps it with `unmapRegion` and must not read it after that.
 */
export function mapShared(fd: number, length: number, prot: number): Deno.PointerObject | number {
  const MAP_SHARED = 0x01;
  const address = libcSymbols().mmap(null, BigInt(length), prot, MAP_SHARED, fd, 0n);
  const value = address === null ? 0n : Deno.UnsafePointer.value(address);
  // MAP_FAILED is (void *) -1: Deno reads the pointer as an unsigned or a signed value.
  if (address === null || value === -1n || value === 0xffff_ffff_ffff_ffffn) return -errno();
  return address;
}

/** Unmaps a region `mapShared` returned; returns 0 or `-errno`. */
export function unmapRegion(address: Deno.PointerObject, length: number): number {
  return negativeErrno(libcSymbols().munmap(address, BigInt(length)));
}

/** Opens a file read-only (`O_RDONLY | O_CLOEXEC`); returns the fd or `-errno`. */
export function openReadOnly(path: string): number {
  const O_RDONLY_CLOEXEC = 0o2000000;
  return negativeErrno(libcSymbols().open(cString(path), O_RDONLY_CLOEXEC, 0));
}

/** Writes a short text to a file (under /proc); returns 0 or `-errno`. */
export function writeSmallFile(path: string, text: string): number {
  const O_WRONLY_CLOEXEC = 0o2000001;
  const fd = negativeErrno(libcSymbols().open(cString(path), O_WRONLY_CLOEXEC, 0));
  if (fd < 0) return fd;
  try {
    const bytes = new TextEncoder().encode(text);
    const written = negativeErrno(Number(libcSymbols().write(fd, bytes, BigInt(bytes.length))));
    return written < 0 ? written : 0;
  } finally {
    closeFd(fd);
  }
}

/** Removes a file (a pin); returns 0 or `-errno`. */
export function unlinkPath(path: string): number {
  return negativeErrno(libcSymbols().unlink(cString(path)));
}

/** `statfs(2)`'s `f_type` of the file system holding `path`, or `-errno`. */
export function fileSystemType(path: string): number {
  const buffer = new BigInt64Array(16); // struct statfs is 120 bytes on 64-bit Linux
  const result = negativeErrno(
    libcSymbols().statfs(cString(path), new Uint8Array(buffer.buffer)),
  );
  return result < 0 ? result : Number(buffer[0]);
}

/** CPU time this process has used so far, in seconds (`getrusage(RUSAGE_SELF)`). */
export function cpuTimes(): { user: number; sys: number } {
  const usage = new BigInt64Array(18); // struct rusage is 144 bytes; two timevals first
  libcSymbols().getrusage(0, new Uint8Array(usage.buffer));
  return {
    user: Number(usage[0]) + Number(usage[1]) / 1e6,
    sys: Number(usage[2]) + Number(usage[3]) / 1e6,
  };
}

/** Mounts a file system; returns 0 or `-errno`. */
export function mountFileSystem(
  source: string,
  target: string,
  type: string,
  flags = 0n,
): number {
  return negativeErrno(
    libcSymbols().mount(
      cString(source),
      cString(target),
      cString(type),
      flags,
      null,
    ),
  );
}

/** The first read of `readWholeFile`; later reads take `LATER_CHUNK` bytes. */
const FIRST_CHUNK = 64 * 1024;
const LATER_CHUNK = 1 << 20;

/**
 * Reads a whole file through libc, so that it needs no `--allow-read` (files under /proc
 * and /sys, e.g. `/sys/kernel/btf/vmlinux`); returns its bytes, or `-errno` when it cannot
 * be opened or read.
 *
 * @example
 * ```ts
 * import { readWholeFile } from "./libc.ts";
 * const bytes = readWholeFile("/sys/kernel/btf/vmlinux");
 * console.log(typeof bytes === "number" ? `errno ${-bytes}` : `${bytes.length} bytes`);
 * ```
 */
export function readWholeFile(path: string): Uint8Array | number {
  const fd = openReadOnly(path);
  if (fd < 0) return fd;
  try {
    const chunks: Uint8Array[] = [];
    let total = 0;
    for (let size = FIRST_CHUNK;; size = LATER_CHUNK) {
      const chunk = new Uint8Array(size);
      let filled = 0;
      while (filled < size) {
        const n = readFd(fd, chunk.subarray(filled));
        if (n < 0) return n;
        if (n === 0) break;
        filled += n;
      }
      chunks.push(chunk.subarray(0, filled));
      total += filled;
      if (filled < size) break;
    }
    if (chunks.length === 1) return chunks[0];
    const bytes = new Uint8Array(total);
    let at = 0;
    for (const chunk of chunks) {
      bytes.set(chunk, at);
      at += chunk.length;
    }
    return bytes;
  } finally {
    closeFd(fd);
  }
}

/**
 * Reads a small text file (under /proc or /sys) through libc, so that it needs no
 * `--allow-read`; returns `undefined` when it cannot be opened or read.
 */
export function readSmallFile(path: string): string | undefined {
  const bytes = readWholeFile(path);
  return typeof bytes === "number" ? undefined : new TextDecoder().decode(bytes);
}

/** A NUL-terminated C string in a buffer of its own. */
export function cString(text: string): Uint8Array {
  return new TextEncoder().encode(`${text}\0`);
}

/** glibc's `struct dirent` on x86_64 and aarch64: `d_type` and `d_name` offsets. */
const DIRENT = { type: 18, name: 19, nameSize: 256 } as const;

/** `DT_DIR` and `DT_LNK` from `dirent.h`. */
export const DirentType = { DIR: 4, LNK: 10 } as const;

/** One entry of a folder, as `readdir()` returns it. */
export interface DirEntryRaw {
  /** The entry's name. */
  name: string;
  /** `d_type` (`DT_DIR`, `DT_REG`, `DT_LNK`, ...). */
  type: number;
}

/**
 * Lists a folder through libc, in `readdir()` order, without "." and ".." (so that paths
 * under /sys need no `--allow-all`); returns `-errno` when it cannot be opened.
 *
 * @example
 * ```ts
 * import { readFolder } from "./libc.ts";
 * const entries = readFolder("/sys/fs/bpf");
 * console.log(typeof entries === "number" ? `errno ${-entries}` : entries.map((e) => e.name));
 * ```
 */
export function readFolder(path: string): DirEntryRaw[] | number {
  const symbols = libcSymbols();
  const dir = symbols.opendir(cString(path));
  if (dir === null) return -errno();
  const decoder = new TextDecoder();
  const entries: DirEntryRaw[] = [];
  try {
    for (;;) {
      const entry = symbols.readdir(dir);
      if (entry === null) return entries;
      const view = new Deno.UnsafePointerView(entry);
      const bytes = new Uint8Array(view.getArrayBuffer(DIRENT.nameSize, DIRENT.name));
      const end = bytes.indexOf(0);
      const name = decoder.decode(bytes.subarray(0, end < 0 ? bytes.length : end));
      if (name === "." || name === "..") continue;
      entries.push({ name, type: view.getUint8(DIRENT.type) });
    }
  } finally {
    symbols.closedir(dir);
  }
}
