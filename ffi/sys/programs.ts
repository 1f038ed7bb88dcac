/**
 * Small BPF programs written as instructions, loaded and run with raw `bpf(2)` commands: what
 * the kernel probes (`features.ts`) and the counting pass (`dump/count.ts`) need, without a
 * compiler or an object file. The programs are a handful of instructions each; the encoders
 * below cover exactly those.
 *
 * @module
 */

import { addressOf, keepAlive, ownedBytes } from "./buffers.ts";
import { BpfCommand } from "./constants.ts";
import { errnoName } from "./errors.ts";
import {
  BTF_LOAD_ATTR,
  ITER_CREATE_ATTR,
  layoutSize,
  LINK_CREATE_ATTR,
  PROG_LOAD_ATTR,
  readU32,
  TEST_RUN_ATTR,
  writeField,
  writeName,
} from "./layout.ts";
import { closeFd, cString, readFd } from "./libc.ts";
import { bpfCommand, objInfo } from "./syscall_backend.ts";

/** `enum bpf_prog_type` values the toolkit loads. */
export const ProgramType = {
  /** `BPF_PROG_TYPE_TRACING`: with `BPF_TRACE_ITER`, a BPF iterator. */
  tracing: 26,
  /** `BPF_PROG_TYPE_SYSCALL`: run by `BPF_PROG_TEST_RUN`, sleepable. */
  syscall: 31,
} as const;
/** A program type number. */
export type ProgramType = typeof ProgramType[keyof typeof ProgramType];

/** `BPF_TRACE_ITER` (`enum bpf_attach_type`). */
const BPF_TRACE_ITER = 28;
/** `BPF_F_SLEEPABLE` (`prog_flags`): syscall programs must be sleepable. */
const BPF_F_SLEEPABLE = 1 << 4;

/** Helper ids (`enum bpf_func_id`) the probes call. */
export const Helper = {
  probeReadKernel: 113,
  seqWrite: 127,
  forEachMapElem: 164,
  loop: 181,
} as const;

/** One instruction: opcode, destination and source registers, offset, immediate. */
export type Insn = readonly [code: number, dst: number, src: number, off: number, imm: number];

/** `BPF_PSEUDO_MAP_FD`, `BPF_PSEUDO_FUNC` and `BPF_PSEUDO_KFUNC_CALL` (source register marks). */
const PSEUDO = { mapFd: 1, func: 4, kfuncCall: 2 } as const;

/** The instructions the toolkit's programs use (eBPF encoding, `linux/bpf_common.h`). */
export const asm = {
  /** `dst = imm` (64-bit). */
  movImm: (dst: number, imm: number): Insn => [0xb7, dst, 0, 0, imm],
  /** `dst = src` (64-bit). */
  mov: (dst: number, src: number): Insn => [0xbf, dst, src, 0, 0],
  /** `dst += imm` (64-bit). */
  addImm: (dst: number, imm: number): Insn => [0x07, dst, 0, 0, imm],
  /** `dst = *(u64 *)(src + off)`. */
  loadU64: (dst: number, src: number, off: number): Insn => [0x79, dst, src, off, 0],
  /** `*(u64 *)(dst + off) = src`. */
  storeU64: (dst: number, off: number, src: number): Insn => [0x7b, dst, src, off, 0],
  /** `if dst == imm goto +off`. */
  jumpIfEqual: (dst: number, imm: number, off: number): Insn => [0x15, dst, 0, off, imm],
  /** Calls a helper by id. */
  call: (helper: number): Insn => [0x85, 0, 0, 0, helper],
  /** Calls a kernel function by its BTF id in vmlinux. */
  callKfunc: (btfId: number): Insn => [0x85, 0, PSEUDO.kfuncCall, 0, btfId],
  /** `return r0`. */
  exit: (): Insn => [0x95, 0, 0, 0, 0],
  /** `dst = map` (two instructions: a 64-bit immediate naming a map fd). */
  loadMap: (dst: number, fd: number): Insn[] => [[0x18, dst, PSEUDO.mapFd, 0, fd], [0, 0, 0, 0, 0]],
  /**
   * `dst = &function` (two instructions), the function starting `skip` instructions after
   * the second one.
   */
  loadFunction: (dst: number, skip: number): Insn[] => [
    [0x18, dst, PSEUDO.func, 0, skip + 1],
    [0, 0, 0, 0, 0],
  ],
} as const;

/** `return 0`. */
export const RETURN_ZERO: readonly Insn[] = [asm.movImm(0, 0), asm.exit()];

/**
 * `return helper(r1, &callback, NULL, 0)` after `setup` (which loads `r1`: a map, a count),
 * with a callback that returns 0 (go on): `bpf_for_each_map_elem` then returns the elements
 * it walked, `bpf_loop` the iterations it made.
 */
export function callWithCallback(
  helper: number,
  setup: readonly Insn[],
): { insns: Insn[]; callbacks: number[] } {
  const main = [
    ...setup,
    ...asm.loadFunction(2, 4),
    asm.movImm(3, 0),
    asm.movImm(4, 0),
    asm.call(helper),
    asm.exit(),
  ];
  return { insns: [...main, ...RETURN_ZERO], callbacks: [main.length] };
}

/** Encodes instructions as the kernel reads them (8 bytes each, little-endian). */
export function encodeInsns(insns: readonly Insn[]): Uint8Array<ArrayBuffer> {
  const bytes = ownedBytes(insns.length * 8);
  const view = new DataView(bytes.buffer);
  insns.forEach(([code, dst, src, off, imm], i) => {
    view.setUint8(i * 8, code);
    view.setUint8(i * 8 + 1, (src << 4) | dst);
    view.setInt16(i * 8 + 2, off, true);
    view.setInt32(i * 8 + 4, imm, true);
  });
  return bytes;
}

/** What `loadProgram` loads. */
export interface ProgramSpec {
  /** The program's name (at most 15 characters). */
  name: string;
  /** `syscall` (sleepable, run by `BPF_PROG_TEST_RUN`) or an `iter` of the given BTF id. */
  kind: "syscall" | { iterTarget: number };
  /** The instructions. */
  insns: readonly Insn[];
  /**
   * Where the callback functions start (instruction indexes), for programs that pass one to a
   * helper: the kernel then needs BTF naming each function (`PROBE_BTF`).
   */
  callbacks?: readonly number[];
}

/**
 * The BTF of a program with callbacks: `int`, a prototype `int (void)`, and two functions of
 * it: `main` (global) and `cb` (static), ids 1 to 4. Hand-encoded (`linux/btf.h`): the
 * toolkit's BTF builder lives a layer up (`btf/builder.ts`), and these few words never change.
 */
export const PROBE_BTF: Uint8Array<ArrayBuffer> = (() => {
  const strings = new TextEncoder().encode("\0int\0main\0cb\0");
  const [INT, PROTO, FUNC] = [1, 13, 12];
  const types = [
    ...[1, INT << 24, 4, (1 << 24) | 32], // [1] int: signed, 32 bits
    ...[0, PROTO << 24, 1], // [2] int (void)
    ...[5, (FUNC << 24) | 1, 2], // [3] main: global
    ...[10, FUNC << 24, 2], // [4] cb: static
  ];
  const header = 24;
  const bytes = ownedBytes(header + types.length * 4 + strings.length);
  const view = new DataView(bytes.buffer);
  view.setUint16(0, 0xeb9f, true); // magic
  view.setUint8(2, 1); // version
  view.setUint32(4, header, true); // hdr_len
  view.setUint32(12, types.length * 4, true); // type_len (type_off is 0)
  view.setUint32(16, types.length * 4, true); // str_off
  view.setUint32(20, strings.length, true); // str_len
  types.forEach((word, i) => view.setUint32(header + i * 4, word, true));
  bytes.set(strings, header + types.length * 4);
  return bytes;
})();

/** The type ids of `main` and `cb` in `PROBE_BTF`. */
const BTF_MAIN = 3;
const BTF_CALLBACK = 4;

/** `BPF_BTF_LOAD` of `PROBE_BTF`: its fd, or `-errno`. */
function loadProbeBtf(): number {
  const attr = ownedBytes(layoutSize(BTF_LOAD_ATTR));
  const view = new DataView(attr.buffer);
  writeField(view, BTF_LOAD_ATTR.fields.btf, addressOf(PROBE_BTF));
  writeField(view, BTF_LOAD_ATTR.fields.btfSize, PROBE_BTF.byteLength);
  return bpfCommand(BpfCommand.BTF_LOAD, attr);
}

/** A failed load: the errno, and the verifier's last line when it said something. */
export interface LoadFailure {
  /** The positive errno. */
  errno: number;
  /** The last line of the verifier's log, if it wrote one. */
  log?: string;
}

const LOG_SIZE = 64 * 1024;

/** Encodes and issues `BPF_PROG_LOAD` (with `btfFd` for callbacks); returns the fd or `-errno`. */
function issueLoad(spec: ProgramSpec, log: Uint8Array | null, btfFd: number): number {
  const insns = encodeInsns(spec.insns);
  const callbacks = spec.callbacks ?? [];
  const funcInfo = new Uint32Array([0, BTF_MAIN, ...callbacks.flatMap((at) => [at, BTF_CALLBACK])]);
  const license = cString("GPL");
  const attr = ownedBytes(layoutSize(PROG_LOAD_ATTR));
  const view = new DataView(attr.buffer);
  const f = PROG_LOAD_ATTR.fields;
  const iter = typeof spec.kind === "object";
  writeField(view, f.progType, iter ? ProgramType.tracing : ProgramType.syscall);
  writeField(view, f.insnCnt, spec.insns.length);
  writeField(view, f.insns, addressOf(insns));
  writeField(view, f.license, addressOf(license));
  if (log) {
    writeField(view, f.logLevel, 1);
    writeField(view, f.logSize, log.byteLength);
    writeField(view, f.logBuf, addressOf(log));
  }
  writeName(view, f.progName, spec.name);
  if (typeof spec.kind === "object") {
    writeField(view, f.expectedAttachType, BPF_TRACE_ITER);
    writeField(view, f.attachBtfId, spec.kind.iterTarget);
  } else {
    writeField(view, f.progFlags, BPF_F_SLEEPABLE);
  }
  if (callbacks.length) {
    writeField(view, f.progBtfFd, btfFd);
    writeField(view, f.funcInfoRecSize, 8);
    writeField(view, f.funcInfo, addressOf(funcInfo));
    writeField(view, f.funcInfoCnt, callbacks.length + 1);
  }
  const fd = bpfCommand(BpfCommand.PROG_LOAD, attr);
  keepAlive(new Uint8Array(funcInfo.buffer));
  keepAlive(insns);
  keepAlive(license);
  keepAlive(log);
  return fd;
}

/**
 * Loads a program with `BPF_PROG_LOAD`: its fd, or why the kernel refused it (when the
 * verifier was reached, its last line, from a second load with the log on).
 *
 * @example
 * ```ts
 * import { asm, loadProgram } from "./programs.ts";
 * const loaded = loadProgram({ name: "ret0", kind: "syscall", insns: [asm.movImm(0, 0), asm.exit()] });
 * console.log(typeof loaded === "number" ? `fd ${loaded}` : `refused: errno ${loaded.errno}`);
 * ```
 */
export function loadProgram(spec: ProgramSpec): number | LoadFailure {
  const btfFd = spec.callbacks?.length ? loadProbeBtf() : -1;
  if (spec.callbacks?.length && btfFd < 0) {
    return { errno: -btfFd, log: "BPF_BTF_LOAD of the program's BTF failed" };
  }
  try {
    return loadWithLog(spec, btfFd);
  } finally {
    closeAll(btfFd);
  }
}

/** Loads once; when refused, again with the verifier's log on, to say why. */
function loadWithLog(spec: ProgramSpec, btfFd: number): number | LoadFailure {
  const fd = issueLoad(spec, null, btfFd);
  if (fd >= 0) return fd;
  const log = ownedBytes(LOG_SIZE);
  const again = issueLoad(spec, log, btfFd);
  if (again >= 0) return again;
  const end = log.indexOf(0);
  const lines = new TextDecoder().decode(log.subarray(0, end < 0 ? log.length : end))
    .split("\n").map((line) => line.trim()).filter((line) =>
      line !== "" && !/^processed /.test(line)
    );
  return { errno: -fd, log: lines.at(-1) };
}

/**
 * Runs a loaded syscall program once with `BPF_PROG_TEST_RUN` and no context: its return
 * value, or `-errno`.
 */
export function runProgram(programFd: number): number {
  const attr = ownedBytes(layoutSize(TEST_RUN_ATTR));
  const view = new DataView(attr.buffer);
  writeField(view, TEST_RUN_ATTR.fields.progFd, programFd);
  const result = bpfCommand(BpfCommand.PROG_TEST_RUN, attr);
  return result < 0 ? result : readU32(view, TEST_RUN_ATTR.fields.retval);
}

/**
 * Attaches a loaded iterator program (`BPF_LINK_CREATE`), on `mapFd` for iterators over one
 * map's elements: the link fd, or `-errno`.
 */
export function attachIterator(programFd: number, mapFd?: number): number {
  const info = ownedBytes(8);
  const attr = ownedBytes(layoutSize(LINK_CREATE_ATTR));
  const view = new DataView(attr.buffer);
  const f = LINK_CREATE_ATTR.fields;
  writeField(view, f.progFd, programFd);
  writeField(view, f.attachType, BPF_TRACE_ITER);
  if (mapFd !== undefined) {
    new DataView(info.buffer).setUint32(0, mapFd, true); // union bpf_iter_link_info .map.map_fd
    writeField(view, f.iterInfo, addressOf(info));
    writeField(view, f.iterInfoLen, info.byteLength);
  }
  const fd = bpfCommand(BpfCommand.LINK_CREATE, attr);
  keepAlive(info);
  return fd;
}

/**
 * Opens an iterator on a link (`BPF_ITER_CREATE`) and reads it to the end: the bytes read,
 * or `-errno`.
 */
export function readIterator(linkFd: number): number {
  const attr = ownedBytes(layoutSize(ITER_CREATE_ATTR));
  writeField(new DataView(attr.buffer), ITER_CREATE_ATTR.fields.linkFd, linkFd);
  const fd = bpfCommand(BpfCommand.ITER_CREATE, attr);
  if (fd < 0) return fd;
  try {
    const buffer = new Uint8Array(4096);
    let total = 0;
    for (;;) {
      const n = readFd(fd, buffer);
      if (n <= 0) return n < 0 ? n : total;
      total += n;
    }
  } finally {
    closeFd(fd);
  }
}

/** Closes fds that may be `-errno` (never opened), in order. */
export function closeAll(...fds: number[]): void {
  for (const fd of fds) if (fd >= 0) closeFd(fd);
}

/** `EPERM at load (the verifier said: ...)`: a refusal in a few words, for reasons. */
export function describeFailure(failure: LoadFailure | number, stage: string): string {
  const errno = typeof failure === "number" ? -failure : failure.errno;
  const log = typeof failure === "number" || !failure.log
    ? ""
    : ` (the verifier said: ${failure.log})`;
  return `${errnoName(errno)} at ${stage}${log}`;
}

/** What `BPF_OBJ_GET_INFO_BY_FD` tells of a program that `bpftool`'s selectors match on. */
export interface ProgramIdentity {
  /** The program's id. */
  id: number;
  /** Its tag, as 16 lowercase hex digits. */
  tag: string;
  /** Its name (at most 15 characters). */
  name: string;
}

/** `struct bpf_prog_info` up to its name: `tag` at 8, `name` at 64. */
const PROG_INFO_BYTES = 80;

/** `BPF_PROG_GET_FD_BY_ID`: an fd of program `id`, or `-errno`. */
export function programFdById(id: number): number {
  const attr = ownedBytes(16);
  new DataView(attr.buffer).setUint32(0, id, true);
  return bpfCommand(BpfCommand.PROG_GET_FD_BY_ID, attr);
}

/** `BPF_PROG_GET_NEXT_ID`: the next program id after `startId`, or `-errno` (`-ENOENT` at the end). */
export function nextProgramId(startId: number): number {
  const attr = ownedBytes(16);
  const view = new DataView(attr.buffer);
  view.setUint32(0, startId, true);
  const result = bpfCommand(BpfCommand.PROG_GET_NEXT_ID, attr);
  return result < 0 ? result : view.getUint32(4, true);
}

/** The id, tag and name of the program behind `fd`, or `-errno`. */
export function programIdentity(fd: number): ProgramIdentity | number {
  const info = ownedBytes(PROG_INFO_BYTES);
  const result = objInfo(fd, info);
  if (result < 0) return result;
  const view = new DataView(info.buffer);
  const tag = [...info.subarray(8, 16)].map((b) => b.toString(16).padStart(2, "0")).join("");
  const nameBytes = info.subarray(64, 80);
  const end = nameBytes.indexOf(0);
  const name = new TextDecoder().decode(nameBytes.subarray(0, end < 0 ? 16 : end));
  return { id: view.getUint32(4, true), tag, name };
}
