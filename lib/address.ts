/**
 * Who is connecting: the client address of a request, from the socket or,
 * behind a trusted reverse proxy, from `X-Forwarded-For` or `Forwarded`.
 * The per-address peer limit counts peers by this address.
 *
 * @module
 */

/** The client address of a request, and whether it is a local proxy's. */
export interface ClientAddress {
  /** The address, as logged and counted (`unknown` when there is none). */
  address: string;
  /**
   * Whether the address belongs to a machine-local client (loopback, a Unix
   * socket, or no socket info at all): a reverse proxy on the same host, whose
   * clients must not all be counted as one.
   */
  local: boolean;
}

/**
 * Whether an IP address is a loopback address.
 *
 * @param address An IPv4 or IPv6 address.
 * @returns True for `127.0.0.0/8`, `::1` and IPv4-mapped loopback.
 */
function _isLoopback(address: string): boolean {
  return address.startsWith("127.") || address === "::1" ||
    address.startsWith("::ffff:127.");
}

/**
 * The client address a trusted proxy reports: the last hop of
 * `X-Forwarded-For`, else the last `for=` of `Forwarded` (RFC 7239) without
 * its port.
 *
 * @param headers The request headers.
 * @returns The address, or `undefined` when neither header names one.
 */
function _forwardedFor(headers: Headers): string | undefined {
  const xff = headers.get("x-forwarded-for");
  if (xff) {
    const last = xff.slice(xff.lastIndexOf(",") + 1).trim();
    if (last) return last;
  }
  const fwd = headers.get("forwarded");
  if (fwd) {
    const m = [...fwd.matchAll(/for=("[^"]*"|[^;,\s]*)/gi)].pop();
    const node = m?.[1].replace(/^"|"$/g, "") ?? "";
    // Drop the port (`"[v6]:port"`, `v4:port`), or one client would count as
    // a new address on every connection.
    const host = node.startsWith("[")
      ? node.slice(1).split("]", 1)[0]
      : node.split(":").length === 2
      ? node.split(":")[0]
      : node;
    if (host) return host;
  }
  return undefined;
}

/**
 * The client address of a request.
 *
 * @param remote The socket's remote IP address, `undefined` for a Unix
 * socket or when the server gave no connection info.
 * @param headers The request headers.
 * @param trustProxy Whether a reverse proxy in front sets the forwarding
 * headers (then they are believed, and the address is never local).
 * @returns The address and whether it is a local proxy's.
 *
 * @example Behind a trusted proxy
 * ```ts
 * import assert from "node:assert/strict";
 * import { clientAddress } from "./address.ts";
 * const headers = new Headers({ "x-forwarded-for": "203.0.113.9" });
 * assert.deepEqual(clientAddress("127.0.0.1", headers, true), {
 *   address: "203.0.113.9",
 *   local: false,
 * });
 * assert.deepEqual(clientAddress("127.0.0.1", headers, false), {
 *   address: "127.0.0.1",
 *   local: true,
 * });
 * ```
 *
 * @example A `Forwarded` header's address, without its port
 * ```ts
 * import assert from "node:assert/strict";
 * import { clientAddress } from "./address.ts";
 * const headers = new Headers({ forwarded: 'for="[2001:db8::1]:4711"' });
 * assert.equal(clientAddress(undefined, headers, true).address, "2001:db8::1");
 * ```
 *
 * @example Loopback sockets are local
 * ```ts
 * import assert from "node:assert/strict";
 * import { clientAddress } from "./address.ts";
 * const headers = new Headers();
 * assert.equal(clientAddress("127.0.0.2", headers, false).local, true);
 * assert.equal(clientAddress("192.0.2.1", headers, false).local, false);
 * ```
 */
export function clientAddress(
  remote: string | undefined,
  headers: Headers,
  trustProxy: boolean,
): ClientAddress {
  if (trustProxy) {
    return {
      address: _forwardedFor(headers) ?? remote ?? "unknown",
      local: false,
    };
  }
  if (remote === undefined) return { address: "unknown", local: true };
  return { address: remote, local: _isLoopback(remote) };
}
