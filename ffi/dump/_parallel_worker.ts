/**
 * The worker of the parallel dump: walks one range of a map with synchronous batch calls
 * (errno stays on this thread) and posts every batch to the main thread, transferring its
 * buffers, so nothing is copied. One job at a time; the map fd is the parent's (workers
 * share the process's fd table).
 *
 * @module
 */

import { backend } from "../sys/backends.ts";
import type { BackendName } from "../sys/backend.ts";
import { BpfError } from "../sys/errors.ts";
import { type BatchRange, BatchWalker } from "../map/walk.ts";

/** A range walk the main thread asks for. */
export interface RangeJob {
  /** Which dump this job belongs to. */
  job: number;
  /** Which range of the dump. */
  index: number;
  /** The map's fd (valid here: workers share the fd table). */
  fd: number;
  /** The backend to call through. */
  backend: BackendName;
  /** Key size in bytes. */
  keySize: number;
  /** Bytes of one whole value. */
  valueBytes: number;
  /** The map's `max_entries`. */
  maxEntries: number;
  /** How errors name the map. */
  subject: string;
  /** Entries per call. */
  chunk: number;
  /** The range to walk. */
  range: BatchRange;
}

/** What a worker posts back. */
export type RangeMessage =
  | {
    kind: "batch";
    job: number;
    index: number;
    keys: ArrayBuffer;
    values: ArrayBuffer;
    count: number;
    /** The bucket (hash maps) the call began at: its entries are of buckets `[from, to)`. */
    from: number;
    /** The bucket after the last one the call read (`END_OF_MAP`: the end of the map). */
    to: number;
  }
  | { kind: "done"; job: number; index: number; syscalls: number }
  | {
    kind: "error";
    job: number;
    index: number;
    message: string;
    errno?: number;
    command?: string;
  };

const scope = self as unknown as Worker;

function walk(job: RangeJob): void {
  const walker = new BatchWalker({
    backend: backend(job.backend),
    fd: job.fd,
    keySize: job.keySize,
    valueBytes: job.valueBytes,
    maxEntries: job.maxEntries,
    subject: job.subject,
  }, { chunk: job.chunk, range: job.range, handOff: true });
  while (walker.next()) {
    const message: RangeMessage = {
      kind: "batch",
      job: job.job,
      index: job.index,
      keys: walker.keys.buffer as ArrayBuffer,
      values: walker.values.buffer as ArrayBuffer,
      count: walker.count,
      from: walker.from,
      to: walker.to,
    };
    scope.postMessage(message, [message.keys, message.values]);
  }
  scope.postMessage(
    {
      kind: "done",
      job: job.job,
      index: job.index,
      syscalls: walker.syscalls,
    } satisfies RangeMessage,
  );
}

scope.onmessage = (event: MessageEvent<RangeJob>) => {
  const job = event.data;
  try {
    walk(job);
  } catch (e) {
    scope.postMessage(
      {
        kind: "error",
        job: job.job,
        index: job.index,
        message: e instanceof Error ? e.message : String(e),
        errno: e instanceof BpfError ? e.errno : undefined,
        command: e instanceof BpfError ? e.command : undefined,
      } satisfies RangeMessage,
    );
  }
};

scope.postMessage({ kind: "ready" });
