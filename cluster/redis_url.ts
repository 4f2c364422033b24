/**
 * Where a Redis server is and how to log in: {@linkcode parseRedisUrl}
 * reads a `redis://` URL.
 *
 * @module
 */

/** Where a Redis server is and how to log in, from a `redis://` URL. */
export interface RedisAddress {
  /** Host name or IP address (IPv6 without brackets). */
  hostname: string;
  /** TCP port. */
  port: number;
  /** ACL user name, `undefined` for the default user. */
  username: string | undefined;
  /** Password for AUTH, `undefined` for none. */
  password: string | undefined;
  /** Database for SELECT, `undefined` to keep the server's default (0). */
  db: number | undefined;
}

function _badUrl(what: string): never {
  // Never echo the URL: it may hold a password.
  throw new TypeError(`Cannot parse Redis URL: ${what}`);
}

/**
 * Reads a `redis://[[user]:password@]host[:port][/db]` URL. User name and
 * password are percent-decoded.
 *
 * @param url The URL.
 * @returns The address, the port 6379 by default.
 * @throws {TypeError} When the URL is not one; the message never quotes it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseRedisUrl } from "./redis_url.ts";
 * assert.deepEqual(parseRedisUrl("redis://:s%40cret@10.0.0.5/2"), {
 *   hostname: "10.0.0.5",
 *   port: 6379,
 *   username: undefined,
 *   password: "s@cret",
 *   db: 2,
 * });
 * ```
 */
export function parseRedisUrl(url: string | URL): RedisAddress {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return _badUrl("not a URL");
  }
  if (parsed.protocol !== "redis:") _badUrl("the scheme is not redis:");
  let hostname = parsed.hostname;
  if (hostname.startsWith("[") && hostname.endsWith("]")) {
    hostname = hostname.slice(1, -1);
  }
  if (hostname === "") _badUrl("no host");
  const port = parsed.port === "" ? 6379 : Number(parsed.port);
  if (port === 0) _badUrl("port 0");
  let db: number | undefined;
  if (parsed.pathname !== "" && parsed.pathname !== "/") {
    if (!/^\/\d{1,9}$/.test(parsed.pathname)) {
      _badUrl("the path is not a database number");
    }
    db = Number(parsed.pathname.slice(1));
  }
  if (parsed.search !== "" || parsed.hash !== "") {
    _badUrl("a query or fragment is not supported");
  }
  let username: string | undefined;
  let password: string | undefined;
  try {
    username = decodeURIComponent(parsed.username) || undefined;
    password = decodeURIComponent(parsed.password) || undefined;
  } catch {
    _badUrl("bad percent-encoding in the credentials");
  }
  if (username !== undefined && password === undefined) {
    _badUrl("a user name without a password");
  }
  return { hostname, port, username, password, db };
}
