/**
 * `map watch` (issue 18, item 4) as a user meets it: `scripts/map.ts watch` in a real
 * terminal (a detached tmux session of a known size, on a tmux server of this run's own),
 * read back with `tmux capture-pane` while the test writes the map: the keys, their values
 * and rates in order, per-CPU sums and `--cpus` rows, typed keys and values through BTF, the
 * footer, and `q` and Ctrl-C giving the terminal back (alternate screen left, cursor shown,
 * exit 0). `--jsonl` is read from a pipe: exactly the keys changed, with exact deltas (64-bit
 * ones as strings), new and gone keys, per-CPU sums and per-CPU deltas. Bad options exit 255
 * with one line. No timing is asserted; waits poll the screen or the lines.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  BpfMap,
  type BtfCodec,
  btfCodec,
  type BtfValue,
  loadMapBtf,
  possibleCpus,
  stringToChars,
  watchFields,
  WatchSnapshot,
} from "../mod.ts";
import { backend } from "../ffi/sys/backends.ts";
import { loadObject, objectTest } from "./_btf_helpers.ts";
import { bpfTest, ROOT, taskFlags } from "./_helpers.ts";

const TMUX = "/usr/bin/tmux";
/** This run's tmux server, apart from any other. */
const SOCKET = `map-watch-test-${Deno.pid}`;
/** How long a wait may take before the test fails, with what it saw. */
const WAIT_MS = 15_000;
const MAP_SCRIPT = `${ROOT}scripts/map.ts`;
const decoder = new TextDecoder();

/** Runs tmux on this run's server; returns its stdout. */
async function tmux(...args: string[]): Promise<string> {
  const { code, stdout, stderr } = await new Deno.Command(TMUX, {
    args: ["-L", SOCKET, "-f", "/dev/null", ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (code !== 0) throw new Error(`tmux ${args.join(" ")}: ${decoder.decode(stderr)}`);
  return decoder.decode(stdout);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Quotes a word for the shell tmux runs the command with. */
function quote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** A map watch running in a tmux session of `width` x `height`. */
class Session implements AsyncDisposable {
  static #count = 0;
  readonly name = `w${Session.#count++}`;

  private constructor() {}

  /** Starts `map.ts watch <args>` after a marker line; its exit status is printed after it. */
  static async start(args: string[], width = 100, height = 16): Promise<Session> {
    const session = new Session();
    const command = [Deno.execPath(), "run", ...taskFlags("map.ts"), MAP_SCRIPT, "watch", ...args]
      .map(quote).join(" ");
    await tmux(
      "new-session",
      "-d",
      "-s",
      session.name,
      "-x",
      String(width),
      "-y",
      String(height),
      `echo BEFORE-WATCH; ${command}; echo EXIT=$?; sleep 600`,
    );
    return session;
  }

  /** The pane's lines, as shown. */
  async screen(): Promise<string[]> {
    return (await tmux("capture-pane", "-p", "-t", this.name)).replace(/\n$/, "").split("\n");
  }

  /** A tmux format of the pane (`#{alternate_on}`). */
  async format(format: string): Promise<string> {
    return (await tmux("display-message", "-p", "-t", this.name, format)).trim();
  }

  /** Polls the screen until `ready` holds (returns that screen), or fails with the last one. */
  async waitFor(what: string, ready: (lines: string[]) => boolean): Promise<string[]> {
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      const lines = await this.screen();
      if (ready(lines)) return lines;
      if (Date.now() > deadline) {
        assert.fail(`waited ${WAIT_MS} ms for ${what}; the screen:\n${lines.join("\n")}`);
      }
      await sleep(40);
    }
  }

  /** Sends keys (`q`, `C-c`). */
  async keys(...keys: string[]): Promise<void> {
    await tmux("send-keys", "-t", this.name, ...keys);
  }

  /** Waits for the watch to end; asserts exit 0 and the terminal given back as it was. */
  async assertRestored(): Promise<void> {
    const lines = await this.waitFor("the exit status", (l) => l.some((s) => /^EXIT=/.test(s)));
    assert.ok(lines.includes("EXIT=0"), lines.join("\n"));
    assert.equal(await this.format("#{alternate_on}"), "0", "the alternate screen is left");
    assert.equal(await this.format("#{cursor_flag}"), "1", "the cursor is shown");
    assert.equal(lines[0], "BEFORE-WATCH", "what was on the screen before is back");
    assert.ok(!lines.some((l) => l.startsWith("KEY")), lines.join("\n"));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await tmux("kill-session", "-t", this.name).catch(() => {});
  }
}

/** The rows of a frame: the lines between the column headers and the first blank line. */
function rows(lines: string[]): string[][] {
  const header = lines.findIndex((l) => l.startsWith("KEY "));
  if (header < 0) return [];
  const end = lines.findIndex((l, i) => i > header && l.trim() === "");
  return lines.slice(header + 1, end < 0 ? undefined : end).map((l) => l.trim().split(/\s{2,}/));
}

/** The footer: the last line that starts with `walk `. */
function footer(lines: string[]): string {
  return lines.findLast((l) => l.startsWith("walk ")) ?? "";
}

/** A frame after the first read, with no change. */
function steady(lines: string[]): boolean {
  return / 0 changed, 0 new, 0 gone/.test(footer(lines));
}

/** A map pinned under bpffs for one test, unpinned after. */
function pinned(map: BpfMap, tag: string): { path: string } & Disposable {
  const path = `/sys/fs/bpf/map_watch_test_${Deno.pid}_${tag}`;
  map.pin(path);
  return { path, [Symbol.dispose]: () => Deno.removeSync(path) };
}

function u32Key(k: number): Uint8Array {
  return new Uint8Array(new Uint32Array([k]).buffer);
}

function u64Value(v: bigint): Uint8Array {
  return new Uint8Array(new BigUint64Array([v]).buffer);
}

/** The key's hex as the screen shows a 4-byte key without BTF. */
function hexKey(k: number): string {
  return Array.from(u32Key(k), (b) => b.toString(16).padStart(2, "0")).join(" ");
}

bpfTest(
  "map watch: keys by rate, largest first, redrawn in place; q gives the terminal back",
  async () => {
    using map = BpfMap.create({
      type: "hash",
      keySize: 4,
      valueSize: 8,
      maxEntries: 64,
      name: "watch_t1",
    });
    const values = new Map([1, 2, 3, 4, 5].map((k) => [k, BigInt(k) * 1000n]));
    const write = () => {
      for (const [k, v] of values) map.update(u32Key(k), u64Value(v));
    };
    write();
    using pin = pinned(map, "t1");
    await using session = await Session.start(["pinned", pin.path, "--interval", "0.2"]);
    await session.waitFor("a frame after the first read", steady);

    // Keys 3, 1 and 5 grow at 50, 20 and 10 per step: rates in that order, then 4 and 2 (no
    // change, ranked by their values).
    const steps = setInterval(() => {
      values.set(3, values.get(3)! + 50n);
      values.set(1, values.get(1)! + 20n);
      values.set(5, values.get(5)! + 10n);
      write();
    }, 20);
    let moving: string[];
    try {
      // A frame whose read fell between two steps of one key and not another may rank them
      // otherwise: such a frame is passed over, and the wait fails with the last one seen.
      moving = await session.waitFor("keys 3, 1, 5 ranked by rate, then 4 and 2", (lines) => {
        const r = rows(lines);
        return r.map((cells) => cells[0]).join() === [3, 1, 5, 4, 2].map(hexKey).join() &&
          r.slice(0, 3).every((cells) => Number(cells[2]) > 0) &&
          r.slice(3).every((cells) => cells[2] === "0");
      });
    } finally {
      clearInterval(steps);
    }
    const rates = rows(moving).slice(0, 3).map((cells) => Number(cells[2]));
    assert.ok(rates[0] > rates[1] && rates[1] > rates[2], moving.join("\n"));
    assert.match(footer(moving), / 3 changed, 0 new, 0 gone/);

    // Once the writes stop: every value as the map holds it, every rate 0, largest value first.
    const still = await session.waitFor("the values the map holds, unchanged", (lines) => {
      const r = rows(lines);
      return steady(lines) && r.length === 5 &&
        r.every((cells) => cells[1] === String(values.get(Number(`0x${cells[0].slice(0, 2)}`))));
    });
    // No key changes: ranked by value.
    const byValue = [...values].sort(([, a], [, b]) => Number(b - a)).map(([k]) => hexKey(k));
    assert.deepEqual(rows(still).map((cells) => cells[0]), byValue);
    assert.deepEqual(rows(still).map((cells) => cells[2]), ["0", "0", "0", "0", "0"]);
    assert.match(
      still[0],
      /^map id \d+ 'watch_t1' \(hash\): 5 keys, every 0\.2 s, by value\/s +\d\d:\d\d:\d\d$/,
    );
    assert.match(still[1], /^KEY +value +value\/s$/);
    assert.equal(still.length, 16);
    assert.match(
      still[15],
      /^walk \d+\.\d ms by LOOKUP_BATCH \(1 call\), diff \d+\.\d ms; 0 changed, 0 new, 0 gone {2}\(q quits\)$/,
    );

    await session.keys("q");
    await session.assertRestored();
  },
);

bpfTest(
  "map watch --cpus: each key's sum, then one row per CPU; Ctrl-C gives the terminal back",
  async () => {
    const cpus = possibleCpus();
    using map = BpfMap.create({ type: "percpu_hash", keySize: 4, valueSize: 4, maxEntries: 8 });
    const perCpu = (k: number) => Array.from({ length: cpus }, (_, c) => k * 10 + c);
    for (const k of [1, 2]) {
      const value = new Uint8Array(map.valueBytes);
      const view = new DataView(value.buffer);
      perCpu(k).forEach((v, c) => view.setUint32(c * map.valueStride, v, true));
      map.update(u32Key(k), value);
    }
    using pin = pinned(map, "t2");
    const height = 3 + 2 * (cpus + 1) + 2;
    await using session = await Session.start(
      ["pinned", pin.path, "--interval", "0.2", "--cpus"],
      100,
      height,
    );
    const lines = await session.waitFor("a steady frame", steady);
    assert.match(lines[1], /^KEY +CPU +value +value\/s$/);
    const expected = [2, 1].flatMap((k) => [
      [hexKey(k), "all", String(perCpu(k).reduce((a, b) => a + b)), "0"],
      ...perCpu(k).map((v, c) => [String(c), String(v), "0"]),
    ]);
    assert.deepEqual(rows(lines), expected, lines.join("\n"));
    await session.keys("C-c");
    await session.assertRestored();
  },
);

objectTest(
  "map watch types keys and values through BTF: char-array keys, struct members",
  async () => {
    using object = loadObject();
    using map = object.map("bt_names");
    const btf = loadMapBtf(map)!;
    const key = btfCodec(btf.keyType);
    const value = btfCodec(btf.valueType);
    const flags = (after: number) => ({
      low: 1,
      signed5: -2,
      wide: 5n,
      color: "BT_GREEN",
      on: true,
      after,
    });
    for (const [name, after] of [["eth0", 300], ["lo", 100], ["wlan0", 200]] as const) {
      const k = new Uint8Array(map.keySize);
      const v = new Uint8Array(map.valueSize);
      key.encode(stringToChars(name, btf.keyType), k);
      value.encode(flags(after), v);
      map.update(k, v);
    }
    await using session = await Session.start(
      ["id", String(map.info.id), "--interval", "0.2", "--sort", "value.after"],
      120,
    );
    const lines = await session.waitFor("a steady frame", steady);
    assert.match(lines[0], /'bt_names' \(hash\): 3 keys, every 0\.2 s, by after\/s/);
    assert.match(lines[1], /^KEY +after +after\/s +OTHER$/);
    const rest = "{low:1,signed5:-2,wide:5,color:BT_GREEN,on:true}";
    assert.deepEqual(rows(lines), [
      ['"eth0"', "300", "0", rest],
      ['"wlan0"', "200", "0", rest],
      ['"lo"', "100", "0", rest],
    ]);
    await session.keys("q");
    await session.assertRestored();
  },
);

/** A JSON line of `--jsonl`. */
type Line = {
  t: number;
  key: BtfValue;
  value?: BtfValue;
  values?: BtfValue[];
  delta?: BtfValue;
  rate?: BtfValue;
  new?: true;
  gone?: true;
};

/** `map.ts watch <args> --jsonl` in a pipe, its lines parsed as they come. */
class JsonlRun implements AsyncDisposable {
  readonly lines: Line[] = [];
  readonly #child: Deno.ChildProcess;
  readonly #reading: Promise<void>;

  constructor(args: string[]) {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", ...taskFlags("map.ts"), MAP_SCRIPT, "watch", ...args, "--jsonl"],
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#child = child;
    this.#reading = (async () => {
      let pending = "";
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        pending += chunk;
        const lines = pending.split("\n");
        pending = lines.pop()!;
        for (const line of lines) this.lines.push(JSON.parse(line));
      }
      assert.equal(pending, "", "every line ends with a newline");
    })();
  }

  /** Polls the lines until one passes `match`, calling `poke` between polls; returns its index. */
  async waitFor(what: string, match: (line: Line) => boolean, poke = () => {}): Promise<number> {
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      const at = this.lines.findIndex(match);
      if (at >= 0) return at;
      if (Date.now() > deadline) {
        assert.fail(
          `waited ${WAIT_MS} ms for ${what}; lines:\n${
            this.lines.map((l) => JSON.stringify(l)).join("\n")
          }`,
        );
      }
      poke();
      await sleep(50);
    }
  }

  /** Ends the watch with SIGINT; returns its exit status. */
  async stop(): Promise<number> {
    this.#child.kill("SIGINT");
    const { code } = await this.#child.status;
    await this.#reading;
    return code;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // already ended
    }
    await this.#child.status;
    await this.#reading.catch(() => {});
  }
}

/** Values of the sentinel and marker keys: each write another. */
let markerValue = 0n;

/**
 * Makes `changes` while `run` watches: first a sentinel key is written until a line shows
 * it (the watch is past its baseline), then `changes` runs, then two markers in turn, each
 * written once the line of the one before is out, so that the read that shows the second
 * began after every change was made. Returns the lines between the sentinel's and the
 * second marker's, without the sentinel's and the markers'.
 */
async function linesOf(
  run: JsonlRun,
  write: (key: number, value: bigint) => void,
  changes: () => void,
  isMarker: (line: Line) => boolean,
  markerKey: (n: number) => Line["key"],
): Promise<Line[]> {
  let bump = ++markerValue * 1000n;
  const sentinel = await run.waitFor(
    "the sentinel's line",
    (l) => isMarker(l) && l.key === markerKey(0),
    () => write(100, ++bump),
  );
  changes();
  write(101, ++markerValue);
  await run.waitFor("the first marker", (l) => isMarker(l) && l.key === markerKey(1));
  write(102, ++markerValue);
  const end = await run.waitFor("the second marker", (l) => isMarker(l) && l.key === markerKey(2));
  return run.lines.slice(sentinel + 1, end).filter((l) => !isMarker(l));
}

/** Sums the deltas of `lines` per key (as JSON text), with the last line of each. */
function byKey(lines: Line[]): Map<string, { delta: bigint; last: Line; count: number }> {
  const keys = new Map<string, { delta: bigint; last: Line; count: number }>();
  for (const line of lines) {
    const id = JSON.stringify(line.key);
    const seen = keys.get(id) ?? { delta: 0n, last: line, count: 0 };
    seen.delta += line.delta === undefined ? 0n : BigInt(line.delta as string);
    keys.set(id, { delta: seen.delta, last: line, count: seen.count + 1 });
  }
  return keys;
}

bpfTest(
  "map watch --jsonl: exactly the keys changed, with exact deltas; new and gone keys",
  async () => {
    using map = BpfMap.create({ type: "hash", keySize: 4, valueSize: 8, maxEntries: 64 });
    const write = (k: number, v: bigint) => map.update(u32Key(k), u64Value(v));
    for (let k = 1; k <= 6; k++) write(k, BigInt(k) * 1000n);
    using pin = pinned(map, "t4");
    await using run = new JsonlRun(["pinned", pin.path, "--interval", "0.1"]);
    const lines = await linesOf(
      run,
      write,
      () => {
        write(1, 1005n);
        write(2, 2000n + 1_000_000_000_000n);
        write(3, 2998n);
        map.delete(u32Key(4));
        write(7, 70n);
      },
      (l) => typeof l.key === "number" && l.key >= 100,
      (n) => 100 + n,
    );
    const keys = byKey(lines);
    assert.deepEqual([...keys.keys()].sort(), ["1", "2", "3", "4", "7"], JSON.stringify(lines));
    assert.equal(keys.get("1")!.delta, 5n);
    assert.equal(keys.get("2")!.delta, 1_000_000_000_000n);
    assert.equal(keys.get("3")!.delta, -2n);
    for (const k of ["1", "2", "3"]) {
      const last = keys.get(k)!.last;
      assert.equal(typeof last.delta, "string", "64-bit deltas are strings");
      assert.equal(Math.sign(last.rate as number), Math.sign(Number(last.delta)));
      assert.equal(
        last.value,
        String(map.lookup(u32Key(Number(k)))!.reduce(
          (sum, b, i) => sum + (BigInt(b) << BigInt(8 * i)),
          0n,
        )),
      );
    }
    assert.deepEqual(keys.get("4")!.last, {
      t: keys.get("4")!.last.t,
      key: 4,
      value: "4000",
      gone: true,
    });
    assert.deepEqual(keys.get("7")!.last, {
      t: keys.get("7")!.last.t,
      key: 7,
      value: "70",
      new: true,
    });
    assert.ok(lines.every((l) => typeof l.t === "number" && l.t > 1.5e9));
    assert.equal(await run.stop(), 0);
  },
);

objectTest(
  "map watch --jsonl on a per-CPU map with BTF: typed keys, sums, and --cpus deltas",
  async () => {
    const cpus = possibleCpus();
    using object = loadObject();
    using map = object.map("bt_percpu");
    const codec: BtfCodec = btfCodec(loadMapBtf(map)!.valueType);
    const value = new Uint8Array(map.valueBytes);
    /** Writes key `k` with CPU c's packets `packets + c * step`. */
    const put = (k: number, packets: bigint, step = 1n) => {
      for (let c = 0; c < cpus; c++) {
        codec.encode(
          { packets: packets + BigInt(c) * step, delta: -1, last: 7 },
          value.subarray(c * map.valueStride),
        );
      }
      map.update(new Uint8Array(new BigUint64Array([BigInt(k)]).buffer), value);
    };
    put(1, 100n);
    const isMarker = (l: Line) => Number(l.key) >= 100;
    const marker = (n: number) => String(100 + n);
    for (const perCpu of [false, true]) {
      put(1, 100n);
      await using run = new JsonlRun([
        "id",
        String(map.info.id),
        "--interval",
        "0.1",
        ...(perCpu ? ["--cpus"] : []),
      ]);
      // CPU c's packets grow by 5 + 2c.
      const lines = await linesOf(
        run,
        (k, v) => put(k, v),
        () => put(1, 105n, 3n),
        isMarker,
        marker,
      );
      assert.equal(lines.length, 1, JSON.stringify(lines));
      const [line] = lines;
      assert.equal(line.key, "1", "a __u64 key is a string");
      assert.deepEqual(
        line.values,
        Array.from(
          { length: cpus },
          (_, c) => ({ packets: String(105 + 3 * c), delta: -1, last: 7 }),
        ),
      );
      const grown = Array.from({ length: cpus }, (_, c) => 5 + 2 * c);
      const one = (packets: number) => ({ packets: String(packets), delta: 0, last: 0 });
      assert.deepEqual(
        line.delta,
        perCpu ? grown.map(one) : one(grown.reduce((a, b) => a + b)),
      );
      assert.equal(await run.stop(), 0);
    }
  },
);

/** Runs `map.ts [-j] watch <args>` to its end. */
async function watchRun(args: string[], json = false) {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...taskFlags("map.ts"), MAP_SCRIPT, ...(json ? ["-j"] : []), "watch", ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

bpfTest("map watch refuses bad options and keyless maps in one line, exit 255", async () => {
  using map = BpfMap.create({ type: "hash", keySize: 4, valueSize: 8, maxEntries: 4 });
  using pin = pinned(map, "t6");
  const fd = backend().createMap({
    mapType: 22, // BPF_MAP_TYPE_QUEUE
    keySize: 0,
    valueSize: 4,
    maxEntries: 4,
    mapFlags: 0,
    name: "watch_q",
  });
  assert.ok(fd >= 0, `queue map: errno ${-fd}`);
  using queue = BpfMap.fromFd(fd);
  using queuePin = pinned(queue, "t6q");
  const cases: [string[], RegExp][] = [
    [["--top", "0"], /^--top takes a positive whole number, not '0'$/],
    [["--top", "x"], /^--top takes a positive whole number, not 'x'$/],
    [["--top"], /^--top needs a value$/],
    [["--interval", "0"], /^--interval takes seconds, at least 0\.01, not '0'$/],
    [["--interval=abc"], /^--interval takes seconds, at least 0\.01, not 'abc'$/],
    [["--cpus=yes"], /^--cpus takes no value, not 'yes'$/],
    [["--bogus"], /^unknown option '--bogus' for map watch: expected /],
    [
      ["--sort", "packets"],
      /^--sort 'packets': the values of map id \d+ \(hash\) have no numeric member of that name: use value$/,
    ],
  ];
  for (const [args, message] of cases) {
    const run = await watchRun(["pinned", pin.path, ...args]);
    assert.equal(run.code, 255, `${args}: ${run.stderr}`);
    assert.equal(run.stdout, "");
    assert.match(run.stderr, /^Error: [^\n]+\n$/, args.join(" "));
    assert.match(run.stderr.slice("Error: ".length, -1), message);
    // -j: the same message, in one line of JSON on stdout.
    const json = await watchRun(["pinned", pin.path, ...args], true);
    assert.equal(json.code, 255);
    assert.deepEqual(JSON.parse(json.stdout), { error: run.stderr.slice("Error: ".length, -1) });
  }
  const keyless = await watchRun(["pinned", queuePin.path]);
  assert.equal(keyless.code, 255);
  assert.match(
    keyless.stderr,
    /^Error: map watch: map id \d+ 'watch_q' \(queue\) has no keys to watch\n$/,
  );
});

bpfTest("WatchSnapshot pairs keys by position and through its index as a brute force does", () => {
  const entries = 20_000;
  using map = BpfMap.create({ type: "hash", keySize: 12, valueSize: 8, maxEntries: entries * 2 });
  const key = (k: number) => {
    const bytes = new Uint8Array(12);
    new DataView(bytes.buffer).setUint32(4, k, true);
    return bytes;
  };
  const model = new Map<number, bigint>();
  const put = (k: number, v: bigint) => {
    map.update(key(k), u64Value(v));
    model.set(k, v);
  };
  for (let k = 0; k < entries; k++) put(k, BigInt(k));
  const snapshot = new WatchSnapshot(map, watchFields(null, map.valueSize), { capacity: 16 });
  const first = snapshot.read(map);
  assert.equal(first.added, entries);

  // The same keys, in the same order: paired by position.
  const same = snapshot.read(map);
  assert.deepEqual([same.positional, same.changed, same.added, same.gone], [true, 0, 0, 0]);

  // Values rewritten (each moves to the head of its bucket), keys deleted and added.
  const before = new Map(model);
  for (let k = 0; k < entries; k += 7) put(k, BigInt(k) + BigInt(k % 1000));
  const gone = [];
  for (let k = 3; k < entries; k += 101) {
    map.delete(key(k));
    model.delete(k);
    gone.push(k);
  }
  for (let k = entries; k < entries + 500; k++) put(k, BigInt(k));
  const stats = snapshot.read(map);
  assert.equal(stats.positional, false);
  assert.equal(stats.entries, model.size);
  assert.equal(stats.added, 500);
  assert.equal(stats.gone, gone.length);
  const keyOf = (bytes: Uint8Array, at: number) =>
    new DataView(bytes.buffer, bytes.byteOffset).getUint32(at * 12 + 4, true);
  assert.deepEqual(
    Array.from(snapshot.gone(), (j) => keyOf(snapshot.previousKeys, j)).sort((a, b) => a - b),
    gone,
  );
  let changed = 0;
  for (let i = 0; i < snapshot.count; i++) {
    const k = keyOf(snapshot.keys, i);
    const was = before.get(k);
    assert.equal(snapshot.value(i, 0), model.get(k));
    assert.equal(snapshot.delta(i, 0), was === undefined ? undefined : model.get(k)! - was);
    if (was !== undefined && was !== model.get(k)) changed++;
  }
  assert.equal(stats.changed, changed);

  // The top 50 by delta (ties by value, new keys last), as a full sort has them.
  const ranked = [...model.keys()].sort((a, b) => {
    const da = before.has(a) ? Number(model.get(a)! - before.get(a)!) : -Infinity;
    const db = before.has(b) ? Number(model.get(b)! - before.get(b)!) : -Infinity;
    return db - da || Number(model.get(b)! - model.get(a)!);
  });
  assert.deepEqual(
    Array.from(snapshot.top(50), (i) => keyOf(snapshot.keys, i)),
    ranked.slice(0, 50),
  );
});

bpfTest(
  "map watch into a pipe: plain frames, no control sequences; per entry where batch is denied",
  async () => {
    using map = BpfMap.create({ type: "hash", keySize: 4, valueSize: 3, maxEntries: 8 });
    map.update(u32Key(7), Uint8Array.of(1, 2, 3));
    using pin = pinned(map, "t8");
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...taskFlags("map.ts"),
        MAP_SCRIPT,
        "watch",
        "pinned",
        pin.path,
        "--interval",
        "0.1",
      ],
      env: { BPF_DENY: "lookup_batch_hash" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!/ 0 changed, 0 new, 0 gone\n/.test(text)) {
      const { done, value } = await reader.read();
      if (done) break;
      text += value;
    }
    child.kill("SIGINT");
    for (let r = await reader.read(); !r.done; r = await reader.read()) text += r.value;
    const { code } = await child.status;
    await child.stderr.cancel();
    assert.equal(code, 0);
    assert.ok(!text.includes("\x1b"), "no control sequence in a pipe");
    const frames = text.trimEnd().split("\n\n");
    assert.ok(frames.length >= 2, text);
    // A 3-byte value has no rate without BTF: its bytes, and whether they changed.
    assert.deepEqual(frames[1].split("\n").slice(1), [
      "KEY          CHANGE  VALUE",
      "07 00 00 00          01 02 03",
      frames[1].split("\n")[3],
    ]);
    assert.match(
      frames[1].split("\n")[3],
      /^walk \d+\.\d ms by GET_NEXT_KEY \+ LOOKUP_ELEM \(3 calls\), diff \d+\.\d ms; 0 changed, 0 new, 0 gone$/,
    );
  },
);
