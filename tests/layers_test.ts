/**
 * The library's layers: a module of `ffi/` imports only from its own folder and from the
 * folders below it (`sys` < `map` < `btf` < `dump`, `format`), never from one above or
 * beside it, so that each layer can be read, and tested, without those on top of it.
 *
 * @module
 */

import assert from "node:assert/strict";

/** Each folder of `ffi/` and its floor: a module may import from lower floors only. */
const FLOORS: Record<string, number> = { sys: 0, map: 1, btf: 2, dump: 3, format: 3, save: 4 };

const FFI = new URL("../ffi/", import.meta.url);

/**
 * The `ffi/` folders that the module `text` imports from, by relative specifier (examples in
 * its JSDoc, which import from the top `mod.ts`, aside).
 */
function importedFolders(text: string, folder: string): string[] {
  const code = text.split("\n").filter((line) => !/^\s*\*/.test(line)).join("\n");
  const folders: string[] = [];
  for (const [, specifier] of code.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)) {
    if (specifier.startsWith("./")) folders.push(folder);
    else {
      const parts = specifier.split("/");
      folders.push(parts[0] === ".." && parts.length > 2 ? parts[1] : folder);
    }
  }
  return folders;
}

Deno.test("layers: no module of ffi/ imports from a layer above or beside its own", () => {
  const wrong: string[] = [];
  for (const folder of Object.keys(FLOORS)) {
    for (const entry of Deno.readDirSync(new URL(`${folder}/`, FFI))) {
      if (!entry.name.endsWith(".ts")) continue;
      const text = Deno.readTextFileSync(new URL(`${folder}/${entry.name}`, FFI));
      for (const imported of importedFolders(text, folder)) {
        assert.ok(imported in FLOORS, `ffi/${folder}/${entry.name} imports from "${imported}"`);
        if (imported !== folder && FLOORS[imported] >= FLOORS[folder]) {
          wrong.push(`ffi/${folder}/${entry.name} imports from ffi/${imported}/`);
        }
      }
    }
  }
  assert.deepEqual(wrong, []);
});

Deno.test("layers: every folder of ffi/ has a floor", () => {
  const folders = [...Deno.readDirSync(FFI)].filter((e) => e.isDirectory).map((e) => e.name);
  assert.deepEqual(folders.sort(), Object.keys(FLOORS).sort());
});
