/**
 * The group key and the `favored` flag, read from a request URL the way the
 * original server reads them.
 *
 * @module
 */

/** Longest key accepted, in UTF-16 code units (the original's rule). */
export const MAX_KEY_LENGTH = 512;

/** What a WebSocket request URL says about the peer. */
export interface PeerUrl {
  /** The path without its leading `/`, percent-encoding kept as it came. */
  key: string;
  /** Whether the query string has a `favored` parameter (any value). */
  favored: boolean;
}

/**
 * Reads the key and `favored` flag from a request URL: an absolute URL
 * (`Request.url`) or a bare request target (`/key?favored`). The path is
 * taken as it arrives: `/a%20b` is key `a%20b` and `/a/b` is key `a/b`.
 *
 * @param url The request URL.
 * @returns The key and flag, or `undefined` when the URL has no path.
 *
 * @example Read a favored peer's key
 * ```ts
 * import assert from "node:assert/strict";
 * import { parsePeerUrl } from "./url.ts";
 * const peer = parsePeerUrl("http://localhost:8000/my%20room/a?favored");
 * assert.deepEqual(peer, { key: "my%20room/a", favored: true });
 * ```
 */
export function parsePeerUrl(url: string): PeerUrl | undefined {
  let start = 0;
  const scheme = url.indexOf("://");
  if (scheme !== -1 && scheme < url.indexOf("/")) {
    start = url.indexOf("/", scheme + 3);
    if (start === -1) return undefined;
    // A `/` in the query or fragment of a URL without a path is no path.
    const query = url.indexOf("?", scheme + 3);
    const hash = url.indexOf("#", scheme + 3);
    if ((query !== -1 && query < start) || (hash !== -1 && hash < start)) {
      return undefined;
    }
  }
  if (url[start] !== "/") return undefined;
  let end = url.length;
  const hash = url.indexOf("#", start);
  if (hash !== -1) end = hash;
  const query = url.indexOf("?", start);
  let favored = false;
  if (query !== -1 && query < end) {
    for (const part of url.slice(query + 1, end).split("&")) {
      const name = part.split("=", 1)[0];
      if (name === "favored") favored = true;
    }
    end = query;
  }
  return { key: url.slice(start + 1, end), favored };
}

/**
 * Checks a group key: it must be non-empty and at most
 * {@linkcode MAX_KEY_LENGTH} characters long.
 *
 * @param key The key to check.
 * @returns Why the key is refused, or `undefined` when it is fine.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkKey } from "./url.ts";
 * assert.equal(checkKey("room"), undefined);
 * assert.equal(checkKey(""), "Cannot join: the key is empty");
 * ```
 */
export function checkKey(key: string): string | undefined {
  if (key.length === 0) return "Cannot join: the key is empty";
  if (key.length > MAX_KEY_LENGTH) {
    return `Cannot join: the key is longer than ${MAX_KEY_LENGTH} characters`;
  }
  return undefined;
}
