/**
 * Saving a map and putting it back: `saveMap` writes a map's definition, its BTF and every
 * entry into one file (`format.ts` documents the layout), and `restoreMap` reads that file,
 * or a bpftool or `dump` JSON dump, into a map: created when it does not exist, written with
 * `UPDATE_BATCH` when it does, entries carried member by member when the target's BTF is not
 * the saved one.
 *
 * @example
 * ```ts
 * import { BpfMap, restoreMap, saveMap } from "../../mod.ts";
 * using map = BpfMap.fromPin("/sys/fs/bpf/counts");
 * saveMap(map, "/tmp/counts.save", { pinned: "/sys/fs/bpf/counts" });
 * using copy = (await restoreMap("/tmp/counts.save", { pinned: "/sys/fs/bpf/counts_copy" })).map;
 * ```
 *
 * @module
 */

export { MapSaveError, type RestoreStop } from "./errors.ts";
export {
  isSaveFile,
  type MapDefinition,
  parseSaveFile,
  SAVE_FORMAT,
  SAVE_VERSION,
  type SaveContents,
  type SavedBtf,
  type SaveOrigin,
} from "./format.ts";
export { encodeSave, readMapForSave, saveMap, type SaveOptions, type SaveResult } from "./save.ts";
export {
  type JsonlEntry,
  type PackedEntries,
  readRestoreSource,
  type RestoreSource,
  type SourceKind,
} from "./sources.ts";
export {
  readRestoreFile,
  restoreMap,
  type RestoreOptions,
  type RestoreResult,
  type RestoreTarget,
} from "./restore.ts";
export { layoutSignature } from "./carry.ts";
