/**
 * Environment variables read without demanding `--allow-env`: a variable the process may not
 * read counts as unset, so `--allow-ffi` alone is enough to run the toolkit.
 *
 * @module
 */

/** The value of `name`, or `undefined` when unset or not readable under the granted permissions. */
export function readEnv(name: string): string | undefined {
  if (
    Deno.permissions.querySync({ name: "env", variable: name }).state !==
      "granted"
  ) return undefined;
  return Deno.env.get(name);
}
