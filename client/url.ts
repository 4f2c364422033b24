/**
 * The URLs a client opens: a group's socket URL ({@linkcode groupUrl}) and
 * a server address with an access token in it ({@linkcode tokenUrl}).
 *
 * @module
 */

/**
 * Builds the socket URL of a group: `url` (http and https become ws and
 * wss) with the key appended to its path and `favored` added to its query.
 *
 * The key goes into the path as it is: characters that a URL path cannot
 * hold (space, `?`, `#`, non-ASCII...) are percent-encoded, and the server
 * takes the path as it arrives, so `a b` and `a%20b` name the same group,
 * while `a/b` stays `a/b`.
 *
 * @param url The server's address, such as `ws://host:8000` or `https://host/`.
 * @param key The group key.
 * @param favored Whether to join as a favored peer.
 * @returns The WebSocket URL.
 * @throws {TypeError} When `url` is not a ws, wss, http or https URL.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { groupUrl } from "./mod.ts";
 * assert.equal(
 *   groupUrl("https://example.org/", "my room", true),
 *   "wss://example.org/my%20room?favored",
 * );
 * ```
 */
export function groupUrl(
  url: string | URL,
  key: string,
  favored = false,
): string {
  const u = new URL(url);
  const scheme = { "http:": "ws:", "https:": "wss:" }[u.protocol] ?? u.protocol;
  if (scheme !== "ws:" && scheme !== "wss:") {
    throw new TypeError(
      `Cannot open: ${u.protocol} is not a ws, wss, http or https URL`,
    );
  }
  u.protocol = scheme;
  u.pathname = (u.pathname.endsWith("/") ? u.pathname : u.pathname + "/") +
    key;
  if (favored) u.search = u.search ? `${u.search}&favored` : "favored";
  u.hash = "";
  return u.href;
}

/**
 * The address of a server that needs access tokens, with the token in it:
 * `url` with `t/<token>/` appended to its path. Group URLs built on it
 * ({@linkcode groupUrl}, a Netflux `signalingServer`) come on
 * `/t/<token>/<key>`, as the server expects.
 *
 * @param url The server's address, such as `wss://host` or `https://host/`.
 * @param token The access token.
 * @returns The address with the token, without a trailing `/`.
 * @throws {TypeError} When the token has a character a path segment cannot
 * hold as it is (tokens are made of letters, digits, `.`, `-` and `_`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tokenUrl } from "./mod.ts";
 * assert.equal(
 *   tokenUrl("wss://signal.example/", "v1.1700003600..c2ln"),
 *   "wss://signal.example/t/v1.1700003600..c2ln",
 * );
 * ```
 */
export function tokenUrl(url: string | URL, token: string): string {
  if (!/^[A-Za-z0-9._~-]+$/.test(token)) {
    throw new TypeError(
      "Cannot use the token: it holds a character a URL path cannot carry",
    );
  }
  const u = new URL(url);
  u.pathname = (u.pathname.endsWith("/") ? u.pathname : u.pathname + "/") +
    `t/${token}`;
  return u.href;
}
