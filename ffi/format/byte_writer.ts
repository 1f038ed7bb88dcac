/**
 * Text output written as bytes: ASCII digits, hex and literals go straight into one buffer
 * that is written to a file in large chunks. No strings are built per value, so a dump of
 * hundreds of megabytes costs byte stores, not garbage collection.
 *
 * @module
 */

/** Where a `ByteWriter` sends full chunks (a `Deno.FsFile`, `Deno.stdout`). */
export interface ByteSink {
  /** Writes some of `p`; returns how many bytes. */
  writeSync(p: Uint8Array): number;
}

const ENCODER = new TextEncoder();

/** `"0x00"` to `"0xff"`: the lowercase hex digits of each byte, two per byte. */
const HEX = ENCODER.encode(
  Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0")).join(""),
);

/** "00" to "99": two decimal digits for each number below 100. */
const PAIRS = ENCODER.encode(
  Array.from({ length: 100 }, (_, i) => String(i).padStart(2, "0")).join(""),
);

/** The decimal digits of numbers below 2^53 need at most this many bytes, sign included. */
export const MAX_NUMBER_BYTES = 17;

/**
 * A byte buffer over a sink: writers `reserve()` the most bytes they may write, then store
 * them at `pos`. `flush()` hands the buffer to the sink; `reserve()` does when it is full.
 *
 * @example
 * ```ts
 * import { ByteWriter } from "./byte_writer.ts";
 * const w = new ByteWriter(Deno.stdout);
 * w.reserve(32);
 * w.ascii("id ");
 * w.uint(42);
 * w.byte(0x0a);
 * w.flush(); // id 42
 * ```
 */
export class ByteWriter {
  /** The buffer; bytes `[0, pos)` are waiting for the sink. */
  buf: Uint8Array;
  /** A view of `buf`, for stores of several bytes at once (little-endian). */
  view: DataView;
  /** Where the next byte goes. */
  pos = 0;
  readonly #sink: ByteSink;
  readonly #chunk: number;

  /** A writer to `sink` that hands it chunks of about `chunk` bytes (default 256 KiB). */
  constructor(sink: ByteSink, chunk = 1 << 18) {
    this.#sink = sink;
    this.#chunk = chunk;
    this.buf = new Uint8Array(chunk * 2);
    this.view = new DataView(this.buf.buffer);
  }

  /**
   * Makes room for `bytes` more bytes: flushes once a chunk is gathered, and grows the
   * buffer for a single write larger than it.
   */
  reserve(bytes: number): void {
    if (this.pos + bytes <= this.buf.length && this.pos < this.#chunk) return;
    this.flush();
    if (bytes > this.buf.length) {
      this.buf = new Uint8Array(bytes + this.#chunk);
      this.view = new DataView(this.buf.buffer);
    }
  }

  /** Writes everything gathered to the sink. */
  flush(): void {
    let done = 0;
    while (done < this.pos) done += this.#sink.writeSync(this.buf.subarray(done, this.pos));
    this.pos = 0;
  }

  /** One byte. */
  byte(c: number): void {
    this.buf[this.pos++] = c;
  }

  /** Bytes as they are. */
  bytes(src: Uint8Array): void {
    const n = src.length;
    const buf = this.buf;
    let p = this.pos;
    if (n > 16) buf.set(src, p);
    else for (let i = 0; i < n; i++) buf[p + i] = src[i];
    p += n;
    this.pos = p;
  }

  /** Any text, as UTF-8 (reserves room itself). */
  text(text: string): void {
    this.reserve(text.length * 3);
    this.pos += ENCODER.encodeInto(text, this.buf.subarray(this.pos)).written;
  }

  /** A string of ASCII characters (each code unit stored as one byte). */
  ascii(text: string): void {
    const buf = this.buf;
    let p = this.pos;
    for (let i = 0; i < text.length; i++) buf[p++] = text.charCodeAt(i);
    this.pos = p;
  }

  /** Two lowercase hex digits of a byte. */
  hex2(c: number): void {
    const buf = this.buf;
    buf[this.pos] = HEX[c * 2];
    buf[this.pos + 1] = HEX[c * 2 + 1];
    this.pos += 2;
  }

  /** An unsigned integer below 2^53, in decimal. */
  uint(x: number): void {
    if (x >= 0x8000_0000) {
      // Eight digits at a time in 32-bit arithmetic: doubles divide ten times slower.
      const high = Math.floor(x / 1e8);
      this.uint(high);
      this.#eightDigits(x - high * 1e8);
      return;
    }
    const digits = x < 1e5
      ? (x < 10 ? 1 : x < 100 ? 2 : x < 1000 ? 3 : x < 1e4 ? 4 : 5)
      : (x < 1e6 ? 6 : x < 1e7 ? 7 : x < 1e8 ? 8 : x < 1e9 ? 9 : 10);
    this.pos += digits;
    this.#digitsBefore(this.pos, x | 0, digits);
  }

  /** `x` (below 10^8) in exactly eight digits, zeros first. */
  #eightDigits(x: number): void {
    this.pos += 8;
    this.#digitsBefore(this.pos, x | 0, 8);
  }

  /** Writes the `digits` last decimal digits of `x` (an int32) to end before `end`. */
  #digitsBefore(end: number, x: number, digits: number): void {
    const buf = this.buf;
    let p = end;
    for (; digits >= 2; digits -= 2) {
      const q = (x / 100) | 0;
      const r = (x - q * 100) * 2;
      buf[--p] = PAIRS[r + 1];
      buf[--p] = PAIRS[r];
      x = q;
    }
    if (digits) buf[--p] = 48 + x % 10;
  }

  /** A signed integer of magnitude below 2^53, in decimal. */
  int(x: number): void {
    if (x < 0) {
      this.buf[this.pos++] = 45;
      this.uint(-x);
    } else {
      this.uint(x);
    }
  }

  /**
   * The 64-bit integer stored little-endian at `bytes[offset..offset+8]`, in decimal, signed
   * or not; numbers beyond 2^53 take the BigInt way.
   */
  int64(bytes: Uint8Array, offset: number, signed: boolean): void {
    const lo = (bytes[offset] | bytes[offset + 1] << 8 | bytes[offset + 2] << 16 |
      bytes[offset + 3] << 24) >>> 0;
    const hi = (bytes[offset + 4] | bytes[offset + 5] << 8 | bytes[offset + 6] << 16 |
      bytes[offset + 7] << 24) >>> 0;
    if (hi < 0x20_0000) {
      this.uint(hi * 0x1_0000_0000 + lo);
    } else if (signed && hi >= 0xffe0_0000) {
      // -2^53 < x < 0: the two's complement fits a double exactly.
      this.buf[this.pos++] = 45;
      this.uint((0xffff_ffff - hi) * 0x1_0000_0000 + (0x1_0000_0000 - lo));
    } else {
      const x = BigInt(hi) << 32n | BigInt(lo);
      this.ascii((signed ? BigInt.asIntN(64, x) : x).toString());
    }
  }
}
