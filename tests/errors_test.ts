/**
 * Errno names and messages checked against independent sources: the kernel's own errno
 * headers (`asm-generic/errno-base.h`, `errno.h`, as installed by linux-libc-dev) and glibc's
 * `strerror`. A name or number that drifted from them would mislead every error message.
 *
 * @module
 */

import assert from "node:assert/strict";
import { BpfError, errnoName, missingCapabilities } from "../mod.ts";
import { ERRNO_NAMES } from "../ffi/sys/errors.ts";

/** `ENOTSUPP` (524) is kernel-internal (`include/linux/errno.h`): no uapi header names it. */
const KERNEL_INTERNAL = new Set([524]);

/** Every `#define E... N` of the uapi errno headers, as number -> names. */
function headerErrnos(): Map<number, string[]> {
  const names = new Map<number, string[]>();
  for (const file of ["errno-base.h", "errno.h"]) {
    const text = Deno.readTextFileSync(`/usr/include/asm-generic/${file}`);
    for (const [, name, value] of text.matchAll(/^#define\s+(E[A-Z0-9]+)\s+(\d+)\b/gm)) {
      names.set(Number(value), [...names.get(Number(value)) ?? [], name]);
    }
  }
  return names;
}

Deno.test("every errno name matches the kernel's errno headers", () => {
  const headers = headerErrnos();
  assert.ok(headers.size > 100, "the errno headers were not read");
  for (const [errno, name] of Object.entries(ERRNO_NAMES)) {
    if (KERNEL_INTERNAL.has(Number(errno))) continue;
    const defined = headers.get(Number(errno)) ?? [];
    assert.ok(defined.includes(name), `errno ${errno} is ${defined.join("/")}, not ${name}`);
    assert.equal(errnoName(Number(errno)), name);
  }
  assert.equal(errnoName(524), "ENOTSUPP");
  assert.equal(errnoName(4095), "errno 4095");
});

Deno.test("BpfError messages carry glibc's strerror text for the errno", () => {
  const libc = Deno.dlopen("libc.so.6", {
    strerror: { parameters: ["i32"], result: "pointer" },
  });
  try {
    for (const errno of Object.keys(ERRNO_NAMES).map(Number)) {
      if (KERNEL_INTERNAL.has(errno)) continue;
      const text = Deno.UnsafePointerView.getCString(libc.symbols.strerror(errno)!).toLowerCase();
      const error = new BpfError({ errno, command: 1 });
      assert.equal(error.errno, errno);
      assert.equal(error.code, ERRNO_NAMES[errno]);
      assert.ok(
        error.message.startsWith(`BPF_MAP_LOOKUP_ELEM failed: ${ERRNO_NAMES[errno]}`),
        error.message,
      );
      // Where the toolkit adds a reason in parentheses, it is glibc's.
      const reason = error.message.match(/\(([^)]+)\)/)?.[1];
      if (reason !== undefined) assert.equal(reason, text, `errno ${errno}`);
    }
  } finally {
    libc.close();
  }
});

Deno.test("EPERM and EACCES keep their own names and hint at what is true of this process", () => {
  const eperm = new BpfError({ errno: 1, command: 0 });
  const eacces = new BpfError({ errno: 13, command: 0 });
  assert.equal(eperm.code, "EPERM");
  assert.equal(eacces.code, "EACCES");
  // "Grant CAP_BPF" only to a process that lacks it; else the kernel itself refuses.
  const hint = missingCapabilities(["CAP_BPF"]).length
    ? "run as root or grant CAP_BPF"
    : "the kernel's configuration, lockdown or an LSM forbids it";
  assert.ok(eperm.message.startsWith("BPF_MAP_CREATE failed: EPERM (operation not permitted): "));
  assert.ok(eperm.message.includes(hint), eperm.message);
  assert.ok(eacces.message.startsWith("BPF_MAP_CREATE failed: EACCES (permission denied): "));
  assert.ok(eacces.message.includes(hint), eacces.message);
});
