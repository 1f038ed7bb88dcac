/**
 * Buffers whose memory the kernel may write into: always off the V8 heap, never moved.
 *
 * A small `new Uint8Array(n)` may live inside the V8 heap, where the garbage collector moves
 * it; a `new ArrayBuffer(n)` has a backing store of its own, which stays put while the buffer
 * is referenced. Whoever writes a buffer's address into a `bpf_attr` must keep that buffer
 * referenced (a `#private` field of the object that owns the attr) for as long as the attr
 * may be used.
 *
 * @module
 */

/** A zeroed byte buffer with a backing store of its own (at least one byte, so it has an address). */
export function ownedBytes(size: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new ArrayBuffer(Math.max(size, 1)), 0, size);
}

/** The address of a buffer's first byte, for writing into a `bpf_attr`. The caller keeps `buffer` alive. */
export function addressOf(buffer: Uint8Array | Uint32Array): bigint {
  return Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer));
}

/** Rounds `size` up to a multiple of 8, as the kernel lays out per-CPU values. */
export function roundUp8(size: number): number {
  return (size + 7) & ~7;
}

/** The buffer `keepAlive` saw last: a store the optimiser cannot drop. */
let _lastKept: unknown = null;

/**
 * Marks a buffer as used after the call whose attr held its address, so that the optimiser
 * cannot end its life before the call returns (it stays referenced until the next call).
 */
export function keepAlive(buffer: Uint8Array | null): void {
  _lastKept = buffer;
}
