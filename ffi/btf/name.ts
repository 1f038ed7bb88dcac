/**
 * C-like names of parsed types, for messages: `struct task_struct`, `const char *`,
 * `int (*)(void *, u32)`, `__u8[16]`. Named types (structs, unions, enums, typedefs) print
 * by name and are not expanded; anonymous ones print as `struct (anon)`, as bpftool does.
 *
 * The output is bounded (`MAX_NODES` types, `MAX_NAME` characters a name) whatever the
 * graph: a prototype of prototypes cannot make it grow without end.
 *
 * @module
 */

import type { BtfType } from "./types.ts";

/** The most types one name expands before printing `...`. */
const MAX_NODES = 64;
/** The most characters kept of one identifier. */
const MAX_NAME = 128;

function ident(name: string, anon: string): string {
  if (!name) return anon;
  return name.length > MAX_NAME ? `${name.slice(0, MAX_NAME)}...` : name;
}

/** The name of a type that prints as a word (no declarator), or `undefined`. */
function baseName(t: BtfType): string | undefined {
  switch (t.kind) {
    case "void":
      return "void";
    case "int":
    case "float":
    case "typedef":
      return ident(t.name, `(anon ${t.kind})`);
    case "struct":
    case "union":
      return `${t.kind} ${ident(t.name, "(anon)")}`;
    case "enum":
    case "enum64":
      return `enum ${ident(t.name, "(anon)")}`;
    case "fwd":
      return `${t.fwdKind} ${ident(t.name, "(anon)")}`;
    default:
      return undefined;
  }
}

function join(left: string, inner: string): string {
  if (!inner) return left;
  return inner.startsWith("[") ? `${left}${inner}` : `${left} ${inner}`;
}

function qualifier(t: BtfType): string | undefined {
  switch (t.kind) {
    case "const":
    case "volatile":
    case "restrict":
      return t.kind;
    case "type_tag":
      return `__attribute__((btf_type_tag("${ident(t.name, "")}")))`;
    default:
      return undefined;
  }
}

/**
 * The C-like name of `type`: a declaration without a declarator (with `declarator` as the
 * declared name when given, e.g. a member's).
 *
 * @example
 * ```ts
 * import { kernelBtf, typeName } from "./mod.ts";
 * const btf = kernelBtf();
 * const ops = btf.find("struct", "bpf_map_ops")!;
 * console.log(ops.members.slice(0, 3).map((m) => typeName(m.type, m.name)));
 * ```
 */
export function typeName(type: BtfType, declarator = ""): string {
  let budget = MAX_NODES;
  const decl = (t: BtfType, inner: string): string => {
    if (--budget < 0) return join("...", inner);
    const base = baseName(t);
    if (base !== undefined) return join(base, inner);
    switch (t.kind) {
      case "ptr": {
        const to = t.target;
        const wrap = to.kind === "array" || to.kind === "func_proto";
        return decl(to, wrap ? `(*${inner})` : `*${inner}`);
      }
      case "const":
      case "volatile":
      case "restrict":
      case "type_tag": {
        const q = qualifier(t)!;
        const targetBase = baseName(t.target);
        if (targetBase !== undefined) return join(`${q} ${targetBase}`, inner);
        return decl(t.target, inner ? `${q} ${inner}` : q);
      }
      case "array":
        return decl(t.element, `${inner}[${t.nelems}]`);
      case "func_proto": {
        const params = t.params.map((p) => decl(p.type, ""));
        if (t.variadic) params.push("...");
        return decl(t.returns, `${inner}(${params.length ? params.join(", ") : "void"})`);
      }
      case "func":
        return decl(t.proto, inner || ident(t.name, "(anon)"));
      case "var":
        return decl(t.type, inner || ident(t.name, "(anon)"));
      case "datasec":
        return join(`SEC("${ident(t.name, "")}")`, inner);
      case "decl_tag":
        return `__attribute__((btf_decl_tag("${ident(t.name, "")}"))) ${decl(t.target, inner)}`;
      default:
        return join(t.kind, inner);
    }
  };
  return decl(type, declarator);
}
