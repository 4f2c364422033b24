/**
 * The package version, read from `deno.json` so that it is written once.
 *
 * @module
 */

import denoConfig from "../deno.json" with { type: "json" };

/** The package version, as `deno.json` says. */
export const VERSION: string = denoConfig.version;
