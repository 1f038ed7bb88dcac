/**
 * `BtfError`: BTF that cannot be trusted (malformed, out of range, cyclic), or a type that
 * cannot be used the way it was asked (the size of a function, the decoder of a forward
 * declaration). Every problem the reader finds is one of these, never a `RangeError`.
 *
 * @module
 */

/** Where in the BTF a problem lies, as far as it is known. */
export interface BtfErrorOptions {
  /** The type id of the record at fault. */
  typeId?: number;
  /** The byte offset of the problem from the start of the BTF blob. */
  offset?: number;
  /** The underlying error, if any. */
  cause?: unknown;
}

/**
 * BTF is malformed, or a type cannot be used as asked. The message says what and where;
 * `typeId` and `offset` say it for programs.
 *
 * @example
 * ```ts
 * import { BtfError, parseBtf } from "./mod.ts";
 * try {
 *   parseBtf(new Uint8Array(8));
 * } catch (e) {
 *   if (e instanceof BtfError) console.log(e.message, e.offset);
 * }
 * ```
 */
export class BtfError extends Error {
  override name = "BtfError";
  /** The type id of the record at fault, when there is one. */
  readonly typeId: number | undefined;
  /** The byte offset from the start of the blob, when known. */
  readonly offset: number | undefined;

  constructor(message: string, options: BtfErrorOptions = {}) {
    const where = [
      options.typeId !== undefined ? `type ${options.typeId}` : "",
      options.offset !== undefined ? `byte ${options.offset}` : "",
    ].filter(Boolean).join(", ");
    super(where ? `${message} (${where})` : message, { cause: options.cause });
    this.typeId = options.typeId;
    this.offset = options.offset;
  }
}
