/**
 * BTF in TypeScript: parse and check raw BTF into a graph of typed objects, print and size
 * its types, compile decoders and encoders of map keys and values, and fetch the BTF of
 * maps and of the running kernel.
 *
 * @example
 * ```ts
 * import { BpfMap } from "../../mod.ts";
 * import { btfCodec, loadMapBtf } from "./mod.ts";
 * using map = BpfMap.fromId(42);
 * const btf = loadMapBtf(map);
 * if (btf) {
 *   const value = btfCodec(btf.valueType);
 *   for (const [, bytes] of map.entries()) console.log(value.decode(bytes));
 * }
 * ```
 *
 * @module
 */

export { BtfError, type BtfErrorOptions } from "./errors.ts";
export {
  BPF_BTF_INFO,
  BTF_ARRAY,
  BTF_DECL_TAG,
  BTF_ENUM,
  BTF_ENUM64,
  BTF_GET_FD_BY_ID_ATTR,
  BTF_HEADER,
  BTF_LAYOUTS,
  BTF_LOAD_ATTR,
  BTF_MAGIC,
  BTF_MAX_NAME_OFFSET,
  BTF_MAX_TYPE,
  BTF_MAX_VLEN,
  BTF_MEMBER,
  BTF_PARAM,
  BTF_RECORD_SIZE,
  BTF_TYPE,
  BTF_VAR,
  BTF_VAR_SECINFO,
  BTF_VERSION,
  BtfIntEncoding,
  BtfKind,
  btfKindName,
  BtfLinkage,
} from "./layout.ts";
export type {
  ArrayType,
  BtfKindName,
  BtfType,
  Const,
  Datasec,
  DeclTag,
  Enum,
  Enum64,
  Enum64Value,
  EnumValue,
  Float,
  Func,
  FuncProto,
  Fwd,
  Int,
  IntEncoding,
  Linkage,
  Member,
  Param,
  Pointer,
  Qualifier,
  Restrict,
  Struct,
  Typedef,
  TypeTag,
  Union,
  Var,
  VarSecinfo,
  Void,
  Volatile,
} from "./types.ts";
export { isQualifier, underlying, VOID } from "./types.ts";
export { Btf, parseBtf, type ParseOptions, type TypeOfKind } from "./parse.ts";
export { MAX_NESTING } from "./_graph.ts";
export { isSized, sizeof } from "./size.ts";
export { typeName } from "./name.ts";
export { type BtfValue, type CodecOptions, compileDecoder, type DecodeFn } from "./decode.ts";
export { BtfValueError, compileEncoder, type EncodeFn } from "./encode.ts";
export { type BtfCodec, btfCodec, charsToString, isCharArray, stringToChars } from "./codec.ts";
export { BtfBuilder, type BuilderOptions, type TypeSpec } from "./builder.ts";
export {
  encodeJson,
  encodeRawJson,
  fromPrinted,
  looksLikeJson,
  parseJsonExact,
} from "./json_input.ts";
export { JsonMap, type JsonUpdateFlag, JsonValueError } from "./json_map.ts";
export {
  type BtfInfo,
  type BtfMapSpec,
  createMapWithBtf,
  kernelBtf,
  loadBtf,
  loadBtfById,
  LoadedBtf,
  loadMapBtf,
  type MapBtf,
  readBtfById,
  VMLINUX_BTF_PATH,
} from "./kernel.ts";
