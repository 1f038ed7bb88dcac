/**
 * `sizeof()` of a parsed type: sized kinds carry their size, typedefs and qualifiers lean on
 * their target (chains the parser checked to be short and acyclic).
 *
 * @module
 */

import { sizeOrNone } from "./_graph.ts";
import { BtfError } from "./errors.ts";
import { typeName } from "./name.ts";
import type { BtfType } from "./types.ts";

/**
 * Bytes of a value of `type`, as C's `sizeof` (of a variable: of its type). Throws a
 * `BtfError` for what has no size: void, functions, prototypes, forward declarations, tags.
 *
 * @example
 * ```ts
 * import { kernelBtf, sizeof } from "./mod.ts";
 * const btf = kernelBtf();
 * console.log(sizeof(btf.find("struct", "task_struct")!));
 * ```
 */
export function sizeof(type: BtfType): number {
  // A variable is as large as its type (a DATASEC's variables are decoded through them).
  const size = sizeOrNone(type.kind === "var" ? type.type : type);
  if (size < 0) {
    throw new BtfError(`Type "${typeName(type)}" has no size`, { typeId: type.id });
  }
  return size;
}

/**
 * Whether `type` has a size (`sizeof` would not throw).
 *
 * @example
 * ```ts
 * import { isSized, kernelBtf } from "./mod.ts";
 * console.log(isSized(kernelBtf().find("fwd", "bpf_prog_aux") ?? kernelBtf().typeById(0))); // false
 * ```
 */
export function isSized(type: BtfType): boolean {
  return sizeOrNone(type.kind === "var" ? type.type : type) >= 0;
}
