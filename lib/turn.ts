/**
 * Short-lived TURN credentials, as coturn checks them with
 * `use-auth-secret` (the "TURN REST API"): the server and coturn share a
 * secret, and each credential is worth something only until its expiry.
 *
 * - `username` is `<expiry>:<id>`, the expiry in unix seconds. coturn
 *   counts its `user-quota` per username, so a client that gets one
 *   username for all its credentials is held to one quota: the id names the
 *   client (not the request), and the expiry can be rounded up to a
 *   `window` so that every fetch within it gets the same username;
 * - lifetimes are given in milliseconds, as every duration in sigver's API,
 *   but in whole seconds, the unit of the expiry and of the `ttl` field of
 *   the `/ice-servers` body;
 * - `credential` is `base64(HMAC-SHA1(secret, username))`, standard base64
 *   with padding, the secret's UTF-8 bytes as the HMAC key (at least 16
 *   of them).
 *
 * @module
 */

import { checkSecret } from "./secret.ts";
import { checkSeconds } from "./duration.ts";

/**
 * Lifetime of TURN credentials when none is given, in milliseconds (one hour):
 * a credential leaked from a page stays usable for that long, and a peer
 * asks for fresh ones whenever it opens a new peer connection.
 */
export const DEFAULT_TURN_TTL = 3_600_000;

/** Options of {@linkcode turnCredentials}. */
export interface TurnCredentialsOptions {
  /**
   * Who the credentials are for: the part of the username after the expiry,
   * which coturn logs and counts `user-quota` by. The server passes an id
   * derived from the client's token or address, the same for every fetch
   * of one client. Non-empty, without `:` (the TURN REST API's separator),
   * at most 256 characters.
   */
  id: string;
  /**
   * Lifetime in milliseconds: a whole number of seconds (a multiple of
   * 1000), at least 1000.
   *
   * @default {3_600_000}
   */
  ttl?: number;
  /**
   * The expiry is rounded up to a multiple of this many milliseconds (a
   * whole number of seconds, at least 1000), so that credentials made for
   * one id within one window share one username; they then live up to
   * `ttl + window`. The default rounds nothing off.
   *
   * @default {1000}
   */
  window?: number;
  /**
   * The wall-clock time to count the lifetime from, in unix milliseconds.
   *
   * @default {Date.now()}
   */
  now?: number;
}

/** Options of {@linkcode iceServersBody}. */
export interface IceServersOptions extends TurnCredentialsOptions {
  /** TURN server URLs (`turn:` or `turns:`), at least one. */
  turnUrls: readonly string[];
  /**
   * STUN server URLs (`stun:` or `stuns:`), listed in their own entry,
   * without credentials; the entry is left out when there are none.
   *
   * @default {[]}
   */
  stunUrls?: readonly string[];
}

/** A username and a password for a TURN server. */
export interface TurnCredentials {
  /** `<expiry unix seconds>:<id>`. */
  username: string;
  /** Standard base64 of HMAC-SHA1(secret, username), with padding. */
  credential: string;
}

/** One entry of `iceServers`, as `RTCPeerConnection` takes it. */
export interface IceServer {
  /** The server URLs. */
  urls: string[];
  /** The TURN username; absent for STUN. */
  username?: string;
  /** The TURN password; absent for STUN. */
  credential?: string;
}

/** The JSON body of `/ice-servers`. */
export interface IceServersResponse {
  /** The TURN entry, then the STUN entry when there are STUN URLs. */
  iceServers: IceServer[];
  /**
   * Seconds the credentials are valid for: the wire's unit, the lifetime
   * given in milliseconds divided by 1000.
   */
  ttl: number;
}

const _ENCODER = new TextEncoder();
const _MAX_ID_LENGTH = 256;
const _TURN_SCHEME = /^turns?:/i;
const _STUN_SCHEME = /^stuns?:/i;

function _base64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

function _checkUrls(
  urls: readonly string[],
  scheme: RegExp,
  what: string,
): string[] {
  for (const url of urls) {
    if (typeof url !== "string" || !scheme.test(url)) {
      throw new TypeError(
        `Cannot build the ICE servers: a ${what} URL does not start with ${what}: or ${what}s:`,
      );
    }
  }
  return [...urls];
}

/**
 * Checks the URLs of {@linkcode iceServersBody} ahead of time, so that a
 * server refuses a bad configuration when it starts rather than on the first
 * request.
 *
 * @param turnUrls TURN server URLs (`turn:` or `turns:`), at least one.
 * @param stunUrls STUN server URLs (`stun:` or `stuns:`).
 * @throws {TypeError} When there is no TURN URL or a URL has the wrong scheme.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkIceUrls } from "./turn.ts";
 * checkIceUrls(["turn:turn.example.com:3478"], ["stun:stun.example.com"]);
 * assert.throws(() => checkIceUrls(["stun:turn.example.com"]), TypeError);
 * ```
 */
export function checkIceUrls(
  turnUrls: readonly string[],
  stunUrls: readonly string[] = [],
): void {
  if (turnUrls.length === 0) {
    throw new TypeError("Cannot build the ICE servers: no TURN URL given");
  }
  _checkUrls(turnUrls, _TURN_SCHEME, "turn");
  _checkUrls(stunUrls, _STUN_SCHEME, "stun");
}

/**
 * Checks a lifetime of TURN credentials ahead of time, as
 * {@linkcode checkIceUrls} checks the URLs.
 *
 * @param ttl The lifetime in milliseconds: a whole number of seconds (a
 * multiple of 1000), at least 1000.
 * @throws {RangeError} When the lifetime is out of range. A multiple of 1000
 * also catches a lifetime written in seconds (`3600`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkTurnTtl } from "./turn.ts";
 * checkTurnTtl(600_000);
 * assert.throws(() => checkTurnTtl(600), {
 *   message: "Cannot build the ICE servers: ttl 600 ms is under 1000 ms",
 * });
 * ```
 */
export function checkTurnTtl(ttl: number): void {
  checkSeconds("build the ICE servers", ttl);
}

/**
 * Makes TURN credentials that coturn's `use-auth-secret` accepts until
 * `now + ttl`, rounded up to the `window`.
 *
 * @param secret coturn's `static-auth-secret`, at least 16 UTF-8 bytes.
 * @param options The id, the lifetime, the window and the time to count
 * from.
 * @returns The username and credential.
 * @throws {TypeError} When the secret is not a string or the id is not
 * acceptable.
 * @throws {RangeError} When the secret is under 16 bytes, `ttl` or `window`
 * is not a whole number of seconds (in milliseconds) of 1000 or more, or
 * `now` is not a finite non-negative number.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { turnCredentials } from "./turn.ts";
 * const secret = "coturn's static-auth-secret";
 * const { username, credential } = await turnCredentials(secret, {
 *   id: "peer1",
 *   ttl: 60_000,
 *   now: 1_700_000_000_000,
 * });
 * assert.equal(username, "1700000060:peer1");
 * assert.match(credential, /^[A-Za-z0-9+/]{27}=$/);
 * // Rounded up to a minute: one username for a whole minute of fetches.
 * const rounded = await turnCredentials(secret, {
 *   id: "peer1",
 *   ttl: 60_000,
 *   window: 60_000,
 *   now: 1_700_000_000_000,
 * });
 * assert.equal(rounded.username, "1700000100:peer1");
 * ```
 */
export async function turnCredentials(
  secret: string,
  options: TurnCredentialsOptions,
): Promise<TurnCredentials> {
  const { id, ttl = DEFAULT_TURN_TTL, window = 1000, now = Date.now() } =
    options;
  checkSecret("make TURN credentials", secret);
  if (
    typeof id !== "string" || id.length === 0 || id.length > _MAX_ID_LENGTH ||
    id.includes(":")
  ) {
    throw new TypeError(
      `Cannot make TURN credentials: the id must be 1 to ${_MAX_ID_LENGTH} characters without ":"`,
    );
  }
  checkSeconds("make TURN credentials", ttl);
  checkSeconds("make TURN credentials", window, "window");
  if (!Number.isFinite(now) || now < 0) {
    throw new RangeError(
      `Cannot make TURN credentials: now must be a unix time in milliseconds, got ${now}`,
    );
  }
  const step = window / 1000;
  const expiry = Math.ceil((Math.floor(now / 1000) + ttl / 1000) / step) *
    step;
  const username = `${expiry}:${id}`;
  const key = await crypto.subtle.importKey(
    "raw",
    _ENCODER.encode(secret),
    { name: "HMAC", hash: "SHA-1" },
    false,
    ["sign"],
  );
  const mac = await crypto.subtle.sign("HMAC", key, _ENCODER.encode(username));
  return { username, credential: _base64(new Uint8Array(mac)) };
}

/**
 * Builds the JSON body of `/ice-servers`:
 * `{"iceServers":[{"urls":[...turn],"username":"<expiry>:<id>","credential":"..."},{"urls":[...stun]}],"ttl":N}`,
 * the STUN entry left out when there is no STUN URL.
 *
 * @param secret coturn's `static-auth-secret`, at least 16 UTF-8 bytes.
 * @param options The URLs, the id, the lifetime, the window and the time to
 * count from.
 * @returns The body, as JSON text.
 * @throws {TypeError} When there is no TURN URL, a URL has the wrong scheme,
 * the secret is not a string or the id is not acceptable.
 * @throws {RangeError} When the secret is under 16 bytes, or `ttl`,
 * `window` or `now` is out of range.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { iceServersBody } from "./turn.ts";
 * const body = JSON.parse(await iceServersBody("coturn's static-auth-secret", {
 *   turnUrls: ["turn:turn.example.com:3478"],
 *   stunUrls: ["stun:stun.example.com:3478"],
 *   id: "peer1",
 *   ttl: 600_000,
 *   now: 1_700_000_000_000,
 * }));
 * assert.equal(body.ttl, 600);
 * assert.equal(body.iceServers[0].username, "1700000600:peer1");
 * assert.deepEqual(body.iceServers[1], { urls: ["stun:stun.example.com:3478"] });
 * ```
 */
export async function iceServersBody(
  secret: string,
  options: IceServersOptions,
): Promise<string> {
  const { turnUrls, stunUrls = [], ttl = DEFAULT_TURN_TTL } = options;
  checkIceUrls(turnUrls, stunUrls);
  const turn = [...turnUrls];
  const stun = [...stunUrls];
  const { username, credential } = await turnCredentials(secret, {
    id: options.id,
    ttl,
    window: options.window,
    now: options.now,
  });
  const response: IceServersResponse = {
    iceServers: [{ urls: turn, username, credential }],
    ttl: ttl / 1000,
  };
  if (stun.length > 0) response.iceServers.push({ urls: stun });
  return JSON.stringify(response);
}
