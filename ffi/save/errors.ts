/**
 * `MapSaveError`: why a save or a restore was refused, in one line. A restore that the kernel
 * stopped midway says so in its fields too: how many entries were written, and the first that
 * was not.
 *
 * @module
 */

/** Where a restore stopped, when the kernel refused a write after others had been made. */
export interface RestoreStop {
  /** Entries written before the refusal (they stay in the map). */
  written: number;
  /** Entries the restore was to write. */
  total: number;
  /** Index, in the order written, of the first entry not written. */
  index: number;
  /** That entry's key, as written to the map. */
  key: Uint8Array;
  /**
   * The entries written, as index ranges `[start, end)` in the order written: one per part
   * that wrote any (a restore written from one thread: `[[0, written]]`, or none).
   */
  ranges: [start: number, end: number][];
}

/**
 * A save or restore refused: a file that is not a save or a dump, or is corrupt or truncated;
 * a target of another shape; a member that cannot be carried to the target's BTF; or a write
 * the kernel refused (`stop` then says where). The message is one line and names the fix when
 * it is known.
 *
 * @example
 * ```ts
 * import { MapSaveError, restoreMap } from "../../mod.ts";
 * try {
 *   await restoreMap("/tmp/map.save", { pinned: "/sys/fs/bpf/copy" });
 * } catch (e) {
 *   if (e instanceof MapSaveError && e.stop) console.log(`${e.stop.written} entries were written`);
 *   else throw e;
 * }
 * ```
 */
export class MapSaveError extends Error {
  override name = "MapSaveError";
  /** Set when the kernel refused a write after `stop.written` entries were written. */
  readonly stop: RestoreStop | undefined;

  constructor(message: string, options: { cause?: unknown; stop?: RestoreStop } = {}) {
    super(message, { cause: options.cause });
    this.stop = options.stop;
  }
}

/**
 * `bytes` as bpftool prints keys: two hex digits a byte, a space between (the first 32 bytes).
 *
 * @example
 * ```ts
 * import { hexBytes } from "./errors.ts";
 * console.log(hexBytes(Uint8Array.of(10, 0, 0, 1))); // "0a 00 00 01"
 * ```
 */
export function hexBytes(bytes: Uint8Array): string {
  const shown = Array.from(bytes.subarray(0, 32), (b) => b.toString(16).padStart(2, "0"));
  return shown.join(" ") + (bytes.length > 32 ? ` ... (${bytes.length} bytes)` : "");
}
