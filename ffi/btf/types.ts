/**
 * The BTF type graph: one interface per kind behind the `BtfType` union, with every type id
 * already resolved to the object it names (as cilium/ebpf's `btf` package does). `parseBtf`
 * builds it and checks it once; nothing downstream handles raw ids.
 *
 * Each type keeps its `id` (for messages and for the kernel, which names map keys and values
 * by id) and its `name` ("" when anonymous). Sized kinds carry their `size` in bytes, so that
 * `sizeof()` never has to walk more than a chain of typedefs and qualifiers.
 *
 * @module
 */

/** The kind names, one per `BTF_KIND_*` (`void` is type id 0). */
export type BtfKindName = BtfType["kind"];

/** What every type has. */
interface BtfTypeBase {
  /** The type id: 0 for void, else its position in the BTF (after the base's, for split BTF). */
  readonly id: number;
  /** The name, "" when anonymous. For `DECL_TAG` and `TYPE_TAG`, the tag's value. */
  readonly name: string;
}

/** Type id 0: `void`, what pointers to nothing and functions returning nothing refer to. */
export interface Void extends BtfTypeBase {
  /** Discriminant. */
  readonly kind: "void";
}

/** How an `INT`'s bits are read (`BTF_INT_ENCODING`). */
export type IntEncoding = "unsigned" | "signed" | "char" | "bool";

/** `BTF_KIND_INT`: an integer of `size` bytes, of which `bits` bits from bit `offset` count. */
export interface Int extends BtfTypeBase {
  /** Discriminant. */
  readonly kind: "int";
  /** Bytes of storage: 1, 2, 4, 8 or 16. */
  readonly size: number;
  /** Signedness, or `char`/`bool` (which say nothing of sign). */
  readonly encoding: IntEncoding;
  /** Bit offset of the value inside the storage (`BTF_INT_OFFSET`, 0 but for bitfields). */
  readonly offset: number;
  /** Bits of the value (`BTF_INT_BITS`, `size * 8` but for bitfields). */
  readonly bits: number;
}

/** `BTF_KIND_PTR`. */
export interface Pointer extends BtfTypeBase {
  /** Discriminant. */
  readonly kind: "ptr";
  /** What it points to (`void` for `void *`). */
  readonly target: BtfType;
  /** Bytes of a pointer on the BTF's machine (8 on 64-bit kernels). */
  readonly size: number;
}

/** `BTF_KIND_ARRAY`: `nelems` elements of `element`, indexed by `index`. */
export interface ArrayType extends BtfTypeBase {
  /** Discriminant. */
  readonly kind: "array";
  /** The element type. */
  readonly element: BtfType;
  /** The index type (an integer, by convention). */
  readonly index: BtfType;
  /** Elements (0 for a flexible array member). */
  readonly nelems: number;
  /** Bytes: `nelems * sizeof(element)`, checked to fit in 32 bits. */
  readonly size: number;
}

/** One member of a struct or union. */
export interface Member {
  /** The member name, "" for an anonymous struct or union member (or an unnamed bitfield). */
  readonly name: string;
  /** Its type. */
  readonly type: BtfType;
  /** Bit offset from the start of the struct (0 in unions). */
  readonly bitOffset: number;
  /** Bits of a bitfield declared through kind_flag; 0 for a whole member. */
  readonly bitfieldSize: number;
}

/** `BTF_KIND_STRUCT`. */
export interface Struct extends BtfTypeBase {
  /** Discriminant. */
  readonly kind: "struct";
  /** Bytes, padding included. */
  readonly size: number;
  /** The members, in declaration (and offset) order. */
  readonly members: readonly Member[];
}

/** `BTF_KIND_UNION`. */
export interface Union extends BtfTypeBase {
  /** Discriminant. */
  readonly kind: "union";
  /** Bytes: the largest member's, padded. */
  readonly size: number;
  /** The members, all at bit offset 0 in well-formed BTF. */
  readonly members: readonly Member[];
}

/** One enumerator of a 32-bit `ENUM`. */
export interface EnumValue {
  /** The enumerator's name. */
  readonly name: string;
  /** Its value, read as signed when the enum is signed, else unsigned. */
  readonly value: number;
}

/** `BTF_KIND_ENUM`: enumerators of up to 32 bits, stored in `size` bytes. */
export interface Enum extends BtfTypeBase {
  /** Discriminant. */
  readonly kind: "enum";
  /** Bytes of storage: 1, 2, 4 or 8. */
  readonly size: number;
  /** Whether values are signed (kind_flag). */
  readonly signed: boolean;
  /** The enumerators, in declaration order. */
  readonly values: readonly EnumValue[];
}

/** One enumerator of an `ENUM64`. */
export interface Enum64Value {
  /** The enumerator's name. */
  readonly name: string;
  /** Its value, read as signed when the enum is signed, else unsigned. */
  readonly value: bigint;
}

/** `BTF_KIND_ENUM64`: enumerators of up to 64 bits. */
export interface Enum64 extends BtfTypeBase {
  /** Discriminant. */
  readonly kind: "enum64";
  /** Bytes of storage: 1, 2, 4 or 8. */
  readonly size: number;
  /** Whether values are signed (kind_flag). */
  readonly signed: boolean;
  /** The enumerators, in declaration order. */
  readonly values: readonly Enum64Value[];
}

/** `BTF_KIND_FWD`: a struct or union declared but not defined here. */
export interface Fwd extends BtfTypeBase {
  /** Discriminant. */
  readonly kind: "fwd";
  /** Which it would be (kind_flag: union). */
  readonly fwdKind: "struct" | "union";
}

/** `BTF_KIND_TYPEDEF`. */
export interface Typedef extends BtfTypeBase {
  /** Discriminant. */
  readonly kind: "typedef";
  /** The type it names. */
  readonly target: BtfType;
}

/** `BTF_KIND_VOLATILE`. */
export interface Volatile extends BtfTypeBase {
  /** Discriminant. */
  readonly kind: "volatile";
  /** The qualified type. */
  readonly target: BtfType;
}

/** `BTF_KIND_CONST`. */
export interface Const extends BtfTypeBase {
  /** Discriminant. */
  readonly kind: "const";
  /** The qualified type. */
  readonly target: BtfType;
}

/** `BTF_KIND_RESTRICT`. */
export interface Restrict extends BtfTypeBase {
  /** Discriminant. */
  readonly kind: "restrict";
  /** The qualified type. */
  readonly target: BtfType;
}

/** Linkage of a function or variable. */
export type Linkage = "static" | "global" | "extern";

/** `BTF_KIND_FUNC`: a function, named, with its prototype. */
export interface Func extends BtfTypeBase {
  /** Discriminant. */
  readonly kind: "func";
  /** Its prototype. */
  readonly proto: FuncProto;
  /** Its linkage (`vlen`). */
  readonly linkage: Linkage;
}

/** One parameter of a function prototype. */
export interface Param {
  /** The parameter name, often "" (prototypes of pointers carry none). */
  readonly name: string;
  /** Its type. */
  readonly type: BtfType;
}

/** `BTF_KIND_FUNC_PROTO`. */
export interface FuncProto extends BtfTypeBase {
  /** Discriminant. */
  readonly kind: "func_proto";
  /** The return type (`void` for none). */
  readonly returns: BtfType;
  /** The parameters, without the trailing `...` marker. */
  readonly params: readonly Param[];
  /** Whether the prototype ends with `...` (a last parameter of type 0 and no name). */
  readonly variadic: boolean;
}

/** `BTF_KIND_VAR`: a global or static variable. */
export interface Var extends BtfTypeBase {
  /** Discriminant. */
  readonly kind: "var";
  /** Its type. */
  readonly type: BtfType;
  /** Its linkage (`btf_var.linkage`). */
  readonly linkage: Linkage;
}

/** One variable of a data section. */
export interface VarSecinfo {
  /** The variable (or, in `.ksyms`, the function). */
  readonly type: Var | Func;
  /** Byte offset in the section. */
  readonly offset: number;
  /** Bytes of the variable. */
  readonly size: number;
}

/** `BTF_KIND_DATASEC`: an ELF section of variables, e.g. `.bss`, a global-data map's value. */
export interface Datasec extends BtfTypeBase {
  /** Discriminant. */
  readonly kind: "datasec";
  /** Bytes of the section. */
  readonly size: number;
  /** The variables, in offset order. */
  readonly vars: readonly VarSecinfo[];
}

/** `BTF_KIND_FLOAT`. */
export interface Float extends BtfTypeBase {
  /** Discriminant. */
  readonly kind: "float";
  /** Bytes: 2, 4, 8, 12 or 16. */
  readonly size: number;
}

/** `BTF_KIND_DECL_TAG`: `__attribute__((btf_decl_tag(name)))` on a type, member or parameter. */
export interface DeclTag extends BtfTypeBase {
  /** Discriminant. */
  readonly kind: "decl_tag";
  /** What carries the tag (a struct, union, variable, function or typedef). */
  readonly target: BtfType;
  /** The member or parameter index carrying it, or -1 for the target itself. */
  readonly componentIdx: number;
}

/** `BTF_KIND_TYPE_TAG`: `__attribute__((btf_type_tag(name)))` on a pointee. */
export interface TypeTag extends BtfTypeBase {
  /** Discriminant. */
  readonly kind: "type_tag";
  /** The tagged type. */
  readonly target: BtfType;
}

/** Any BTF type; switch on `kind`. */
export type BtfType =
  | Void
  | Int
  | Pointer
  | ArrayType
  | Struct
  | Union
  | Enum
  | Enum64
  | Fwd
  | Typedef
  | Volatile
  | Const
  | Restrict
  | Func
  | FuncProto
  | Var
  | Datasec
  | Float
  | DeclTag
  | TypeTag;

/** The kinds that only qualify or rename another type: `sizeof` and decoders look through them. */
export type Qualifier = Typedef | Volatile | Const | Restrict | TypeTag;

/** The one `void` (type id 0), shared by every BTF. */
export const VOID: Void = Object.freeze({ kind: "void", id: 0, name: "" });

/**
 * Whether `type` is a typedef or qualifier (`const`, `volatile`, `restrict`, type tag).
 *
 * @example
 * ```ts
 * import { isQualifier, kernelBtf } from "./mod.ts";
 * console.log(isQualifier(kernelBtf().find("typedef", "u32")!)); // true
 * ```
 */
export function isQualifier(type: BtfType): type is Qualifier {
  switch (type.kind) {
    case "typedef":
    case "volatile":
    case "const":
    case "restrict":
    case "type_tag":
      return true;
    default:
      return false;
  }
}

/**
 * Follows typedefs and qualifiers to the type they stand for, e.g. `const u32` to
 * `unsigned int`. Parsed graphs have no cycles of qualifiers, and their chains are short.
 *
 * @example
 * ```ts
 * import { kernelBtf, underlying } from "./mod.ts";
 * const pid = kernelBtf().find("typedef", "pid_t");
 * console.log(pid && underlying(pid).kind); // "int"
 * ```
 */
export function underlying(type: BtfType): BtfType {
  let t = type;
  while (isQualifier(t)) t = t.target;
  return t;
}
