/**
 * What the operating system allows this process: the open-file limit, which
 * bounds how many peers one process can hold.
 *
 * @module
 */

/**
 * Reads the soft open-file limit of this process from `/proc/self/limits`,
 * without prompting for permission.
 *
 * @returns The limit, or `undefined` when it can't be read.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openFileLimit } from "./system.ts";
 * const limit = openFileLimit();
 * assert.ok(limit === undefined || limit > 0);
 * ```
 */
export function openFileLimit(): number | undefined {
  const path = "/proc/self/limits";
  try {
    if (
      Deno.permissions.querySync({ name: "read", path }).state !== "granted"
    ) {
      return undefined;
    }
    const line = Deno.readTextFileSync(path).split("\n").find((l) =>
      l.startsWith("Max open files")
    );
    const soft = Number(line?.split(/\s+/)[3]);
    return Number.isFinite(soft) && soft > 0 ? soft : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The default of `maxPeers`: the open-file limit less 256 descriptors of
 * headroom (files, listeners, upgrades in progress), or 10000.
 *
 * @returns The default peer limit.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultMaxPeers } from "./system.ts";
 * assert.ok(defaultMaxPeers() >= 64);
 * ```
 */
export function defaultMaxPeers(): number {
  const limit = openFileLimit();
  return limit === undefined ? 10000 : Math.max(64, limit - 256);
}
