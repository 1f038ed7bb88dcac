/**
 * The worker of `KeySetInBackground`: counts the keys of a dump on a thread of its own, so
 * that the walk's thread only copies each batch's keys and goes on. Buffers come in
 * transferred and go back the same way, for reuse.
 *
 * @module
 */

import { KeySet } from "./verify.ts";

/** What the main thread sends. */
export type KeySetRequest =
  | { kind: "start"; keySize: number; expected: number }
  | { kind: "keys"; buffer: ArrayBuffer; count: number }
  | { kind: "end" };

/** What the worker sends back. */
export type KeySetReply =
  | { kind: "free"; buffer: ArrayBuffer }
  | { kind: "counts"; added: number; duplicates: number };

const scope = self as unknown as Worker;
let keys: KeySet | undefined;

scope.onmessage = (event: MessageEvent<KeySetRequest>) => {
  const request = event.data;
  if (request.kind === "start") {
    keys = new KeySet(request.keySize, request.expected);
  } else if (request.kind === "keys") {
    keys!.addPacked(new Uint8Array(request.buffer), request.count);
    scope.postMessage({ kind: "free", buffer: request.buffer } satisfies KeySetReply, [
      request.buffer,
    ]);
  } else {
    scope.postMessage(
      { kind: "counts", added: keys!.added, duplicates: keys!.duplicates } satisfies KeySetReply,
    );
    keys = undefined;
  }
};
