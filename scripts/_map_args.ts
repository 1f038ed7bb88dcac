/**
 * The words of `bpftool map` (bpftool 7.1, `map.c` and `common.c`), parsed as bpftool parses
 * them: keywords by prefix, numbers by C's `strtoul`, `MAP := id N | pinned PATH | name
 * NAME`, `PROG := id N | pinned PATH | tag TAG | name NAME`, and the errors bpftool prints
 * for each, with its exit statuses (`BpftoolError`). What each verb does with them is in
 * `_map_verbs.ts`; `docs/research/bpftool-map-7.1.md` records the bytes bpftool prints.
 *
 * @module
 */

import { BpfMap } from "../mod.ts";
import { backend as pickBackend } from "../ffi/sys/backends.ts";
import { Errno } from "../ffi/sys/errors.ts";
import { closeFd, errnoText, fileSystemType } from "../ffi/sys/libc.ts";
import { nextProgramId, programFdById, programIdentity } from "../ffi/sys/programs.ts";
import { fdObjectKind } from "../ffi/format/map_show.ts";

/**
 * A failure bpftool reports: `Error: <message>` (or `{"error":...}` in JSON), then exit
 * `status` (bpftool's return value & 0xff: 255 for its own errors, 256 - errno for the
 * kernel's). `usage` adds the map help after it; an empty message prints nothing at all
 * (bpftool's `name` selector that matches no map).
 */
export class BpftoolError extends Error {
  override name = "BpftoolError";

  /**
   * A failure printed as bpftool prints `message`, exiting with `status`. bpftool puts its
   * messages in JSON unescaped (a `"` in a word it quotes breaks the JSON); messages of this
   * toolkit's own (`escaped`: typed input, `save`, `restore`, `watch`) are escaped.
   */
  constructor(
    message: string,
    readonly status = 255,
    readonly usage = false,
    readonly escaped = false,
  ) {
    super(message);
  }

  /** The message as a JSON string, as bpftool's `jsonw_vprintf_enquote` or escaped. */
  get jsonString(): string {
    return this.escaped ? JSON.stringify(this.message) : `"${this.message}"`;
  }
}

/** The status bpftool exits with when a libbpf call returns `-errno`. */
export function kernelStatus(errno: number): number {
  return (256 - errno) & 0xff;
}

/** bpftool's `is_prefix(word, keyword)`: `word` starts `keyword` (the empty word starts all). */
export function isPrefix(word: string | undefined, keyword: string): boolean {
  return word !== undefined && keyword.startsWith(word);
}

const SPACE = " \t\n\v\f\r";
const ULONG_MAX = (1n << 64n) - 1n;

function digitOf(c: string | undefined): number {
  if (c === undefined) return -1;
  const code = c.charCodeAt(0);
  if (code >= 48 && code <= 57) return code - 48;
  if (code >= 97 && code <= 122) return code - 87;
  if (code >= 65 && code <= 90) return code - 55;
  return -1;
}

/**
 * C's `strtoul(word, &end, base)` on a 64-bit system, where bpftool takes the word only if
 * `*end == 0`: leading spaces and a sign are taken, `0x` and a leading `0` pick the base when
 * `base` is 0, an overflow gives `ULONG_MAX`, a negative number wraps. Returns the value, or
 * `undefined` when characters are left over (the empty word is 0).
 */
export function strtoul(word: string, base: 0 | 16): bigint | undefined {
  let i = 0;
  while (i < word.length && SPACE.includes(word[i])) i++;
  let negative = false;
  if (word[i] === "+" || word[i] === "-") negative = word[i++] === "-";
  let radix: number = base;
  if (word[i] === "0" && (word[i + 1] === "x" || word[i + 1] === "X")) {
    const d = digitOf(word[i + 2]);
    if (d >= 0 && d < 16) {
      i += 2;
      radix = 16;
    }
  }
  if (radix === 0) radix = word[i] === "0" ? 8 : 10;
  const start = i;
  let value = 0n;
  let overflow = false;
  const big = BigInt(radix);
  for (; i < word.length; i++) {
    const d = digitOf(word[i]);
    if (d < 0 || d >= radix) break;
    value = value * big + BigInt(d);
    if (value > ULONG_MAX) overflow = true;
  }
  if (i === start) return word === "" ? 0n : undefined;
  if (i !== word.length) return undefined;
  if (overflow) return ULONG_MAX;
  return negative ? (ULONG_MAX + 1n - value) & ULONG_MAX : value;
}

/** A cursor over the words of a verb: bpftool's `argc`/`argv` and its `NEXT_ARG`. */
export class Words {
  #at = 0;

  /** The words, and the word before them (`argv[-1]`, which some errors name). */
  constructor(readonly words: readonly string[], readonly before: string) {}

  /** Words left (`argc`). */
  get left(): number {
    return this.words.length - this.#at;
  }

  /** The current word (`*argv`), `undefined` past the end. */
  get word(): string | undefined {
    return this.words[this.#at];
  }

  /** The word `offset` words on. */
  peek(offset: number): string | undefined {
    return this.words[this.#at + offset];
  }

  /** The word before the current one. */
  get previous(): string {
    return this.#at === 0 ? this.before : this.words[this.#at - 1];
  }

  /** Takes the current word. */
  next(): string {
    return this.words[this.#at++];
  }

  /** The words from here on. */
  rest(): string[] {
    return this.words.slice(this.#at);
  }

  /** bpftool's `REQ_ARGS(n)`: at least `n` words left, else its error. */
  require(n: number, status = 255): void {
    if (this.left < n) {
      throw new BpftoolError(
        `'${this.previous}' needs at least ${n} arguments, ${this.left} found`,
        status,
      );
    }
  }
}

/** Which map a command names: `id N`, `pinned PATH` or `name NAME`. */
export type MapSelector =
  | { by: "id"; id: number }
  | { by: "pinned"; path: string }
  | { by: "name"; name: string };

/** `BPF_OBJ_NAME_LEN - 1`: the longest name a selector takes. */
const MAX_NAME = 15;

/** `id N`'s number (its keyword already taken): a C integer cut to 32 bits. */
function takeId(words: Words): number {
  const text = words.next() ?? "";
  const id = strtoul(text, 0);
  if (id === undefined) throw new BpftoolError(`can't parse ${text} as ID`);
  return Number(id & 0xffff_ffffn);
}

/** `name NAME`'s name (its keyword already taken): at most 15 characters. */
function takeName(words: Words): string {
  const name = words.next() ?? "";
  if (name.length > MAX_NAME) throw new BpftoolError("can't parse name");
  return name;
}

/** Reads `id N`, `name NAME` or `pinned PATH` at the cursor (`map_parse_fds`'s words). */
export function takeMapSelector(words: Words): MapSelector {
  const keyword = words.word;
  if (isPrefix(keyword, "id")) {
    words.next();
    return { by: "id", id: takeId(words) };
  }
  if (isPrefix(keyword, "name")) {
    words.next();
    return { by: "name", name: takeName(words) };
  }
  if (isPrefix(keyword, "pinned")) {
    words.next();
    return { by: "pinned", path: words.next() ?? "" };
  }
  throw new BpftoolError(`expected 'id', 'name' or 'pinned', got: '${keyword}'?`);
}

/**
 * The selector at the start of `words` and the words after it, for verbs that parse the
 * rest themselves (`save`, `restore`, `watch`).
 */
export function parseMapSelector(words: string[]): { selector: MapSelector; rest: string[] } {
  if (words.length < 2) throw new BpftoolError("expected a map: id N, pinned PATH or name NAME");
  const cursor = new Words(words, "");
  const selector = takeMapSelector(cursor);
  return { selector, rest: cursor.rest() };
}

/** `BPF_FS_MAGIC`. */
const BPF_FS_MAGIC = 0xcafe4a11;

/** C's `dirname()`. */
export function dirname(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  if (trimmed === "") return path.startsWith("/") ? "/" : ".";
  const slash = trimmed.lastIndexOf("/");
  if (slash < 0) return ".";
  return trimmed.slice(0, slash).replace(/\/+$/, "") || "/";
}

/** Whether `dir` is on a bpffs (bpftool's `is_bpffs`). */
export function isBpffs(dir: string): boolean {
  return fileSystemType(dir) === BPF_FS_MAGIC;
}

/**
 * bpftool's `open_obj_pinned_any`: an fd of the object pinned at `path` if it is a `kind`,
 * else its error (an EACCES names the path's folder, as bpftool's `dirname()` leaves it).
 */
export function openPinnedObject(path: string, kind: "map" | "prog"): number {
  const fd = pickBackend().objGet(path);
  if (fd < 0) {
    const errno = -fd;
    if (errno === Errno.EACCES) {
      const dir = dirname(path);
      const why = isBpffs(dir) ? errnoText(errno) : "directory not in bpf file system (bpffs)";
      throw new BpftoolError(`bpf obj get (${dir}): ${why}`);
    }
    throw new BpftoolError(`bpf obj get (${path}): ${errnoText(errno)}`);
  }
  const found = fdObjectKind(fd);
  if (found !== kind) {
    closeFd(fd);
    throw new BpftoolError(`incorrect object type: ${found}`);
  }
  return fd;
}

/** Every map named `name`, in id order (bpftool's `map_fd_by_name`). */
function mapsNamed(name: string): BpfMap[] {
  const maps: BpfMap[] = [];
  for (const id of BpfMap.ids()) {
    let map: BpfMap;
    try {
      map = BpfMap.fromId(id);
    } catch {
      continue; // gone meanwhile
    }
    if (map.info.name === name) maps.push(map);
    else map.close();
  }
  return maps;
}

/**
 * Opens every map `selector` picks (bpftool's `map_parse_fds`): one for `id` and `pinned`,
 * all those of that name for `name` (none: an empty list).
 */
export function openAllSelected(selector: MapSelector): BpfMap[] {
  switch (selector.by) {
    case "id": {
      const fd = pickBackend().mapFdById(selector.id);
      if (fd < 0) throw new BpftoolError(`get map by id (${selector.id}): ${errnoText(-fd)}`);
      return [BpfMap.fromFd(fd)];
    }
    case "pinned":
      return [BpfMap.fromFd(openPinnedObject(selector.path, "map"))];
    case "name":
      return mapsNamed(selector.name);
  }
}

/**
 * Opens the one map `selector` picks (bpftool's `map_parse_fd`): a name that matches no map
 * fails silently, one that matches several fails with bpftool's message.
 */
export function openSelected(selector: MapSelector): BpfMap {
  const maps = openAllSelected(selector);
  if (maps.length === 1) return maps[0];
  for (const map of maps) map.close();
  throw new BpftoolError(maps.length === 0 ? "" : "several maps match this handle");
}

/**
 * Reads `PROG := id N | pinned PATH | tag TAG | name NAME` and opens the one program it picks
 * (bpftool's `prog_parse_fd`); returns its fd.
 */
export function takeProgram(words: Words): number {
  const keyword = words.word;
  if (isPrefix(keyword, "id")) {
    words.next();
    const id = takeId(words);
    const fd = programFdById(id);
    if (fd < 0) throw new BpftoolError(`get by id (${id}): ${errnoText(-fd)}`);
    return fd;
  }
  if (isPrefix(keyword, "tag")) {
    words.next();
    const text = words.next() ?? "";
    if (!/^([0-9a-fA-F]{2}){8}$/.test(text)) throw new BpftoolError("can't parse tag");
    return oneProgram((p) => p.tag === text.toLowerCase());
  }
  if (isPrefix(keyword, "name")) {
    words.next();
    const name = takeName(words);
    return oneProgram((p) => p.name === name);
  }
  if (isPrefix(keyword, "pinned")) {
    words.next();
    return openPinnedObject(words.next() ?? "", "prog");
  }
  throw new BpftoolError(`expected 'id', 'tag', 'name' or 'pinned', got: '${keyword}'?`);
}

/** The fd of the one loaded program that `matches`; silent when none does, as bpftool is. */
function oneProgram(matches: (p: { tag: string; name: string }) => boolean): number {
  const found: number[] = [];
  for (let id = nextProgramId(0); id > 0; id = nextProgramId(id)) {
    const fd = programFdById(id);
    if (fd < 0) continue;
    const identity = programIdentity(fd);
    if (typeof identity !== "number" && matches(identity)) found.push(fd);
    else closeFd(fd);
  }
  if (found.length === 1) return found[0];
  for (const fd of found) closeFd(fd);
  throw new BpftoolError(found.length === 0 ? "" : "several programs match this handle");
}

/**
 * bpftool's `parse_bytes`: `[hex] BYTE...` for exactly `size` bytes into `into`, each byte a
 * C integer truncated to 8 bits.
 */
export function takeBytes(words: Words, what: string, into: Uint8Array): void {
  const base = isPrefix(words.word, "hex") ? 16 : 0;
  if (base) words.next();
  let i = 0;
  while (i < into.length && words.word !== undefined) {
    const byte = strtoul(words.word, base);
    if (byte === undefined) throw new BpftoolError(`error parsing byte: ${words.word}`);
    into[i++] = Number(byte & 0xffn);
    words.next();
  }
  if (i !== into.length) {
    throw new BpftoolError(`${what} expected ${into.length} bytes got ${i}`);
  }
}
