/**
 * Integers read from bytes as the formatters need them: little-endian, into JS numbers.
 *
 * @module
 */

/** An integer of 1, 2 or 4 bytes at `b[o..]`, little-endian, as a JS number. */
export function readSmall(b: Uint8Array, o: number, bytes: number, signed: boolean): number {
  if (bytes === 1) return signed ? (b[o] << 24) >> 24 : b[o];
  if (bytes === 2) {
    const x = b[o] | b[o + 1] << 8;
    return signed ? (x << 16) >> 16 : x;
  }
  const x = b[o] | b[o + 1] << 8 | b[o + 2] << 16 | b[o + 3] << 24;
  return signed ? x : x >>> 0;
}
