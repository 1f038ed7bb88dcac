/**
 * The Worker of a parallel restore: writes one part of the entries with synchronous
 * `UPDATE_BATCH` calls on its own thread (`writeBatches`), while the restoring thread and the
 * other Workers write theirs, and posts how it went. The part's keys and values are views of
 * a `SharedArrayBuffer` (nothing is copied); the map's fd is the restoring thread's (Workers
 * share the process's fd table). Posts `{ kind: "ready" }` once loaded.
 *
 * @module
 */

import type { BackendName } from "../sys/backend.ts";
import { backend } from "../sys/backends.ts";
import { type BatchPart, type PartOutcome, writeBatches } from "./_batch_write.ts";

/** A part to write, as the restoring thread posts it. */
export interface PartJob extends BatchPart {
  /** Which part (for the reply). */
  index: number;
  /** The map's fd. */
  fd: number;
  /** The backend to call through. */
  backend: BackendName;
  /** Entries per call. */
  chunk: number;
  /** Set by the first part refused: the others stop before their next call. */
  halt: Int32Array;
}

/** What the Worker posts: ready, a part's outcome, or an error that is not the kernel's refusal. */
export type PartMessage =
  | { kind: "ready" }
  | { kind: "done"; index: number; outcome: PartOutcome }
  | { kind: "error"; index: number; message: string };

const scope = self as unknown as Worker;

scope.onmessage = (event: MessageEvent<PartJob>) => {
  const job = event.data;
  let message: PartMessage;
  try {
    const outcome = writeBatches(backend(job.backend), job.fd, job, job.chunk, job.halt);
    message = { kind: "done", index: job.index, outcome };
  } catch (e) {
    Atomics.store(job.halt, 0, 1);
    message = {
      kind: "error",
      index: job.index,
      message: e instanceof Error ? e.message : String(e),
    };
  }
  scope.postMessage(message);
};

scope.postMessage({ kind: "ready" } satisfies PartMessage);
