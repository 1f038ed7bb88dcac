/**
 * Bitfields in data of either byte order, for the compiled decoders and encoders: where a
 * field of some bits lies, and the bytes it spans read as one word. On little-endian data a
 * field's bits count from the least significant end of its bytes, as C lays bitfields out;
 * on big-endian data from the most significant end, as bpftool reads them there.
 *
 * @module
 */

/** Where a bitfield lies. */
export interface BitSpan {
  /** The byte holding its first bit. */
  readonly first: number;
  /** How many bytes, from `first`, it spans. */
  readonly n: number;
  /** The position of its lowest bit in the word those bytes make (see `readWord`). */
  readonly shift: number;
}

/** Where `bits` bits from bit `bitPos` lie (bytes from the start, then bits inside the byte). */
export function bitSpan(bitPos: number, bits: number, le: boolean): BitSpan {
  const first = Math.floor(bitPos / 8);
  const bit = bitPos % 8;
  const n = Math.ceil((bit + bits) / 8);
  return { first, n, shift: le ? bit : n * 8 - bit - bits };
}

/** The `n` bytes at `p` as one unsigned number in the data's byte order (exact up to 6 bytes). */
export function readWord(v: DataView, p: number, n: number, le: boolean): number {
  let x = 0;
  if (le) { for (let i = n - 1; i >= 0; i--) x = x * 256 + v.getUint8(p + i); }
  else for (let i = 0; i < n; i++) x = x * 256 + v.getUint8(p + i);
  return x;
}

/** The `n` bytes at `p` as one unsigned `bigint` in the data's byte order. */
export function readBigWord(v: DataView, p: number, n: number, le: boolean): bigint {
  let x = 0n;
  if (le) { for (let i = n - 1; i >= 0; i--) x = (x << 8n) | BigInt(v.getUint8(p + i)); }
  else for (let i = 0; i < n; i++) x = (x << 8n) | BigInt(v.getUint8(p + i));
  return x;
}

/** Writes `word` (a `readWord` of the same bytes, changed) back over the `n` bytes at `p`. */
export function writeWord(v: DataView, p: number, n: number, le: boolean, word: number): void {
  for (let k = 0; k < n; k++) {
    v.setUint8(le ? p + k : p + n - 1 - k, word % 256);
    word = Math.floor(word / 256);
  }
}

/** Writes `word` (a `readBigWord` of the same bytes, changed) back over the `n` bytes at `p`. */
export function writeBigWord(v: DataView, p: number, n: number, le: boolean, word: bigint): void {
  for (let k = 0; k < n; k++) {
    v.setUint8(le ? p + k : p + n - 1 - k, Number(word & 0xffn));
    word >>= 8n;
  }
}
