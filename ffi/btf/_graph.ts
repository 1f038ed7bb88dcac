/**
 * Whole-graph checks, run once the objects are linked (the kernel's `btf_resolve()` pass):
 * no reference cycle that never terminates, no nesting deeper than `MAX_NESTING`, and the
 * checks that need sizes (array sizes that overflow 32 bits, members outside their struct,
 * bitfields on what is not an integer or enum, variables larger than their section slot).
 *
 * Legitimate cycles pass through a pointer to a struct or union (`struct list_head { struct
 * list_head *next; }`): a pointer whose target is, through typedefs and qualifiers, a struct,
 * union or forward declaration ends a path here, as it ends C's need to know the pointee.
 * Every other cycle (typedefs, qualifiers, array elements, members by value, pointers to
 * pointers to themselves) is rejected.
 *
 * @module
 */

import { BtfError } from "./errors.ts";
import type { BtfType } from "./types.ts";
import { isQualifier } from "./types.ts";

/**
 * The deepest chain of types one type may lean on (members by value, array elements,
 * typedefs, qualifiers, pointers to non-struct types, prototype parameters). The kernel
 * resolves at most 32 levels of what needs a size; this counts every hop, with room to spare.
 * It bounds the recursion of everything that walks a type (names, decoders).
 */
export const MAX_NESTING = 128;

/** What a whole-graph check learns: how deep each type nests. */
export interface GraphFacts {
  /** Nesting depth of each own type (index: id - firstId); void and leaves are 1. */
  readonly depth: Uint16Array;
}

/** Bytes of `type`, or -1 when it has none (void, functions, forward declarations, tags). */
export function sizeOrNone(type: BtfType): number {
  const t = strip(type);
  switch (t?.kind) {
    case "int":
    case "ptr":
    case "array":
    case "struct":
    case "union":
    case "enum":
    case "enum64":
    case "datasec":
    case "float":
      return t.size;
    default:
      return -1;
  }
}

/** Follows typedefs and qualifiers at most `MAX_NESTING` times; `undefined` if the chain goes on. */
function strip(type: BtfType): BtfType | undefined {
  let t = type;
  for (let i = 0; i <= MAX_NESTING; i++) {
    if (!isQualifier(t)) return t;
    t = t.target;
  }
  return undefined;
}

/**
 * The types `type` refers to directly: targets, elements and index types, members,
 * prototypes, parameters and return types, variables.
 */
export function references(type: BtfType): readonly BtfType[] {
  if (isQualifier(type) || type.kind === "ptr" || type.kind === "decl_tag") return [type.target];
  switch (type.kind) {
    case "array":
      return [type.element, type.index];
    case "struct":
    case "union":
      return type.members.map((m) => m.type);
    case "func":
      return [type.proto];
    case "func_proto":
      return [type.returns, ...type.params.map((p) => p.type)];
    case "var":
      return [type.type];
    case "datasec":
      return type.vars.map((v) => v.type);
    default:
      return [];
  }
}

/** The types `type` leans on: its references, but the pointer edges that end a path (see the module doc). */
function edges(type: BtfType): readonly BtfType[] {
  if (type.kind === "ptr") {
    const to = strip(type.target);
    if (to && (to.kind === "struct" || to.kind === "union" || to.kind === "fwd")) return [];
  }
  return references(type);
}

function describe(type: BtfType): string {
  return `${type.id} (${type.kind}${type.name ? ` "${type.name}"` : ""})`;
}

/**
 * Checks the graph of `types` (own types, ids from `firstId`; lower ids belong to the base,
 * whose facts `baseDepth` gives) and sets the size of each array. `offsets` locates each
 * record for messages.
 */
export function checkGraph(
  types: readonly BtfType[],
  firstId: number,
  offsets: Uint32Array,
  baseDepth: (type: BtfType) => number,
): GraphFacts {
  const n = types.length;
  const state = new Uint8Array(n); // 0 new, 1 on the stack, 2 done
  const depth = new Uint16Array(n);
  const stackIds = new Int32Array(n);
  const stackKids: (readonly BtfType[])[] = new Array(n);
  const stackNext = new Int32Array(n);
  const depthOf = (t: BtfType) => t.id < firstId ? baseDepth(t) : depth[t.id - firstId];

  for (let root = 0; root < n; root++) {
    if (state[root] !== 0) continue;
    let sp = 0;
    stackIds[0] = root;
    stackKids[0] = edges(types[root]);
    stackNext[0] = 0;
    state[root] = 1;
    sp = 1;
    while (sp > 0) {
      const top = sp - 1;
      const kids = stackKids[top];
      if (stackNext[top] < kids.length) {
        const child = kids[stackNext[top]++];
        if (child.id < firstId) continue;
        const c = child.id - firstId;
        if (state[c] === 1) {
          const from = stackIds.subarray(0, sp).indexOf(c);
          const path = [...stackIds.subarray(from, sp), c].map((i) => describe(types[i]));
          throw new BtfError(`Reference cycle: ${path.join(" -> ")}`, {
            typeId: child.id,
            offset: offsets[c],
          });
        }
        if (state[c] === 0) {
          state[c] = 1;
          stackIds[sp] = c;
          stackKids[sp] = edges(child);
          stackNext[sp] = 0;
          sp++;
        }
        continue;
      }
      const i = stackIds[top];
      const t = types[i];
      let d = 0;
      for (const k of kids) d = Math.max(d, depthOf(k));
      if (d + 1 > MAX_NESTING) {
        throw new BtfError(`Types nest more than ${MAX_NESTING} levels deep`, {
          typeId: t.id,
          offset: offsets[i],
        });
      }
      depth[i] = d + 1;
      checkSized(t, offsets[i]);
      state[i] = 2;
      stackKids[top] = [];
      sp--;
    }
  }
  return { depth };
}

/** The checks that need the sizes of what `type` leans on (all known by now). */
function checkSized(type: BtfType, at: number): void {
  const fail = (message: string): never => {
    throw new BtfError(message, { typeId: type.id, offset: at });
  };
  switch (type.kind) {
    case "array": {
      const elem = sizeOrNone(type.element);
      if (elem < 0) fail(`Invalid array element: type ${describe(type.element)} has no size`);
      const size = elem * type.nelems;
      if (size > 0xffff_ffff) {
        fail(`Array of ${type.nelems} elements of ${elem} bytes overflows 32 bits`);
      }
      // deno-lint-ignore no-explicit-any
      (type as any).size = size;
      break;
    }
    case "struct":
    case "union":
      type.members.forEach((m, j) => {
        const size = sizeOrNone(m.type);
        if (size < 0) fail(`Invalid member ${j} "${m.name}": type ${describe(m.type)} has no size`);
        const byte = Math.floor(m.bitOffset / 8);
        const bit = m.bitOffset % 8;
        let end: number;
        if (m.bitfieldSize > 0) {
          const base = strip(m.type);
          if (
            !base || (base.kind !== "int" && base.kind !== "enum" && base.kind !== "enum64")
          ) {
            return fail(
              `Invalid bitfield member ${j} "${m.name}": type ${
                describe(m.type)
              } is not an integer or enum`,
            );
          }
          if (m.bitfieldSize > base.size * 8) {
            fail(
              `Invalid bitfield member ${j} "${m.name}": ${m.bitfieldSize} bits in a ${base.size}-byte type`,
            );
          }
          end = byte + Math.ceil((bit + m.bitfieldSize) / 8);
        } else if (bit !== 0) {
          // A bitfield the old way: an INT of fewer bits, at a bit offset.
          const base = strip(m.type);
          if (!base || base.kind !== "int") {
            return fail(
              `Invalid member ${j} "${m.name}": bit offset ${m.bitOffset} is not byte aligned`,
            );
          }
          end = byte + Math.ceil((bit + base.offset + base.bits) / 8);
        } else {
          end = byte + size;
        }
        if (end > type.size) {
          fail(
            `Invalid member ${j} "${m.name}": it ends at byte ${end}, past the ${type.kind}'s ${type.size} bytes`,
          );
        }
      });
      break;
    case "var":
      if (sizeOrNone(type.type) < 0) {
        fail(`Invalid variable "${type.name}": type ${describe(type.type)} has no size`);
      }
      break;
    case "datasec":
      type.vars.forEach((v, j) => {
        if (v.type.kind !== "var") return;
        const size = sizeOrNone(v.type.type);
        if (size > v.size) {
          fail(
            `Invalid section variable ${j} "${v.type.name}": ${size} bytes in a ${v.size}-byte slot`,
          );
        }
      });
      break;
  }
}
