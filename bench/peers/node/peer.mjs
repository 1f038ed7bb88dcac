#!/usr/bin/env node
// JavaScript reference peer: dump a pinned eBPF map with npm `bpf` (node_bpf,
// mildsunrise; native N-API addon bundling libbpf 0.9.0), run under Node.
//
//   node peer.mjs normal PIN          per-entry: RawMap.entries() = keys() (BPF_MAP_GET_NEXT_KEY) + get() (BPF_MAP_LOOKUP_ELEM)
//   node peer.mjs batch PIN [CHUNK]   RawMap.getBatch(CHUNK) (BPF_MAP_LOOKUP_BATCH), default chunk 4096
//
// Prints one JSON line on stdout:
//   {"impl":"node_bpf","method":...,"entries":N,"distinct":N,"seconds":S,"syscalls":N,"peakRss":BYTES}
// entries: entries returned by the walk (duplicates included); distinct: distinct keys, counted after
// the timer from keys copied into a preallocated Buffer during the walk; seconds: the walk alone
// (performance.now()); syscalls: exact count of the library's native map-op calls made during the walk
// (each is one bpf(2) syscall); peakRss: VmHWM of /proc/self/status (not maxRSS, which
// execve carries over from the process that started this one).
// Errors: one line on stderr, exit 1; usage errors exit 2.
//
// Opening the pin uses the library's own API: bpf.objGet(PIN) (BPF_OBJ_GET) returns a raw fd, and
// bpf.createMapRef(fd, { transfer: true }) wraps it (BPF_OBJ_GET_INFO_BY_FD for key/value sizes).
// Syscall counting: the library calls its addon through the shared `native` object exported by
// bpf/dist/util.js (RawMap looks the function up on that object at every call), so we wrap the three
// functions the walk uses with counters before starting the timer. The wrapper costs a few ns per call
// against ~1 us per syscall.
import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";
import { readFileSync } from "node:fs";

const require = createRequire(import.meta.url);
const IMPL = "node_bpf";

/** VmHWM of /proc/self/status in bytes: this process's own peak RSS. */
function peakRssBytes() {
  const kb = readFileSync("/proc/self/status", "utf8").match(/^VmHWM:\s+(\d+) kB/m);
  return kb ? Number(kb[1]) * 1024 : null;
}
function usage(msg) {
  const u = "usage: node peer.mjs normal PIN | node peer.mjs batch PIN [CHUNK]";
  process.stderr.write(`peer.mjs: ${msg ? `${msg}; ` : ""}${u}\n`);
  process.exit(2);
}

function fail(err) {
  let msg = err && err.message ? err.message : String(err);
  // the library's BPFError carries the libbpf call name and errno code (message is just the code)
  if (err && err.name === "BPFError") {
    msg = `${err.operation}: ${err.code}${err.message !== err.code ? ` (${err.message})` : ""}`;
  }
  process.stderr.write(`peer.mjs: ${msg.replace(/\s*\n\s*/g, " ")}\n`);
  process.exit(1);
}

// Growable key store: preallocated for maxEntries keys, doubled if the walk returns more (duplicates).
class KeyStore {
  constructor(keySize, capacity) {
    this.keySize = keySize;
    this.buf = Buffer.allocUnsafe(Math.max(1, capacity) * keySize);
    this.n = 0;
  }
  push(key) {
    const off = this.n * this.keySize;
    if (off + this.keySize > this.buf.length) {
      const bigger = Buffer.allocUnsafe(this.buf.length * 2);
      this.buf.copy(bigger, 0, 0, off);
      this.buf = bigger;
    }
    key.copy(this.buf, off);
    this.n++;
  }
  distinct() {
    const { n, keySize, buf } = this;
    if (n === 0) return 0;
    let arr;
    if (keySize === 4) {
      arr = new Uint32Array(n);
      for (let i = 0; i < n; i++) arr[i] = buf.readUInt32LE(i * 4);
    } else if (keySize === 8) {
      arr = new BigUint64Array(n);
      for (let i = 0; i < n; i++) arr[i] = buf.readBigUInt64LE(i * 8);
    }
    if (arr) {
      arr.sort();
      let d = 1;
      for (let i = 1; i < n; i++) if (arr[i] !== arr[i - 1]) d++;
      return d;
    }
    const seen = new Set();
    for (let i = 0; i < n; i++) seen.add(buf.toString("latin1", i * keySize, (i + 1) * keySize));
    return seen.size;
  }
}

function main(argv) {
  const [method, pin, chunkArg, ...rest] = argv;
  if (method !== "normal" && method !== "batch") usage(method ? `unknown method: ${method}` : "");
  if (!pin) usage("missing PIN");
  if (rest.length || (method === "normal" && chunkArg !== undefined)) usage("too many arguments");
  let chunk = 4096;
  if (method === "batch" && chunkArg !== undefined) {
    if (!/^[0-9]+$/.test(chunkArg) || Number(chunkArg) < 1 || Number(chunkArg) > 0xffffffff) {
      usage(`bad CHUNK: ${chunkArg}`);
    }
    chunk = Number(chunkArg);
  }

  let bpf, native;
  try {
    bpf = require("bpf");
    native = require("bpf/dist/util.js").native;
  } catch (e) {
    fail(new Error(`cannot load npm bpf (run make -C bench/peers/node): ${e.message}`));
  }

  let fd;
  try {
    fd = bpf.objGet(pin);
  } catch (e) {
    fail(new Error(`${pin}: ${e.operation || "bpf_obj_get"}: ${e.code || e.message}`));
  }
  const ref = bpf.createMapRef(fd, { transfer: true });
  const map = new bpf.RawMap(ref);
  const keys = new KeyStore(ref.keySize, ref.maxEntries);

  let syscalls = 0;
  for (const name of ["mapGetNextKey", "mapLookupElem", "mapLookupBatch"]) {
    const f = native[name];
    native[name] = function (...args) {
      syscalls++;
      return f.apply(this, args);
    };
  }

  let entries = 0;
  const t0 = performance.now();
  if (method === "normal") {
    for (const [k] of map.entries()) {
      keys.push(k);
      entries++;
    }
  } else {
    for (const batch of map.getBatch(chunk)) {
      for (let i = 0; i < batch.length; i++) keys.push(batch[i][0]);
      entries += batch.length;
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  const calls = syscalls;

  const distinct = keys.distinct();
  ref.close();
  const peakRss = peakRssBytes();
  process.stdout.write(
    JSON.stringify({
      impl: IMPL,
      method,
      entries,
      distinct,
      seconds: Number(seconds.toFixed(6)),
      syscalls: calls,
      peakRss,
    }) + "\n",
  );
}

try {
  main(process.argv.slice(2));
} catch (e) {
  fail(e);
}
