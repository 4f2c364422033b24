/**
 * The cluster URL of a sigver node: where the other nodes open pipes and
 * pass fallback requests on to. It is `ws://host:port` or `wss://host:port`
 * and nothing more: a node builds its requests by appending a peer's path to
 * it, so a path, a query, a fragment or credentials in it would change where
 * they go or what they carry.
 *
 * @module
 */

/**
 * Characters that have no place in a node URL, whatever the URL parser does
 * with them (it drops tabs and line feeds, and reads `\` as `/`).
 */
// deno-lint-ignore no-control-regex
const _FORBIDDEN = /[/?#@\\\s\x00-\x1f\x7f]/;

/**
 * Reads a node's cluster URL: `ws[s]://host[:port]`, with no path (not even
 * `/`), query, fragment or credentials.
 *
 * @param text The URL as written.
 * @returns The URL as the URL standard writes it (lower-case host, the
 * scheme's default port left out): the form nodes compare and sign.
 * @throws {TypeError} When the text is no such URL, saying why.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseNodeUrl } from "./node_url.ts";
 * assert.equal(parseNodeUrl("ws://10.0.0.1:8000"), "ws://10.0.0.1:8000");
 * assert.equal(parseNodeUrl("wss://Node-1.internal:443"), "wss://node-1.internal");
 * assert.throws(() => parseNodeUrl("http://10.0.0.1:8000/x"), TypeError);
 * ```
 */
export function parseNodeUrl(text: string): string {
  const scheme = /^(wss?):\/\//i.exec(text);
  if (scheme === null) {
    throw new TypeError(
      `Cannot use '${text}' as a node URL: it must start with ws:// or wss://`,
    );
  }
  if (_FORBIDDEN.test(text.slice(scheme[0].length))) {
    throw new TypeError(
      `Cannot use '${text}' as a node URL: it must be ws[s]://host:port, with no path, query, fragment or credentials`,
    );
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new TypeError(`Cannot use '${text}' as a node URL: it is no URL`);
  }
  if (url.hostname === "") {
    throw new TypeError(`Cannot use '${text}' as a node URL: it has no host`);
  }
  return `${url.protocol}//${url.host}`;
}

/**
 * Whether a text is a node URL in the form {@linkcode parseNodeUrl} returns:
 * the check of a URL read back from a store.
 *
 * @param text The text.
 * @returns True when it is a node URL, written as nodes write it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isNodeUrl } from "./node_url.ts";
 * assert.equal(isNodeUrl("ws://10.0.0.1:8000"), true);
 * assert.equal(isNodeUrl("http://127.0.0.1:9/latest/meta-data?"), false);
 * ```
 */
export function isNodeUrl(text: string): boolean {
  try {
    return parseNodeUrl(text) === text;
  } catch {
    return false;
  }
}
