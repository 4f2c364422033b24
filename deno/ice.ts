/**
 * The `/ice-servers` endpoint: short-lived TURN credentials for the peers,
 * in coturn's `use-auth-secret` scheme (see `lib/turn.ts`), behind the
 * access token when tokens are on, with the CORS headers a page on another
 * origin needs to read them.
 *
 * - `GET` (and `HEAD`): `200` with
 *   `{"iceServers":[{"urls":[...],"username":"<expiry>:<id>","credential":"..."}],"ttl":N}`
 *   (`N` in seconds, as coturn's scheme counts them);
 *   `404` when no TURN server is configured; `429` when the client address
 *   asks too often; `401`/`403` for a missing or refused token (in
 *   `Authorization: Bearer <token>` or `?token=<token>`; the token's key
 *   prefix is not checked here: no group is involved).
 * - `OPTIONS`: `204`, the answer to a CORS preflight (a cross-origin `fetch`
 *   that sends `Authorization` makes one).
 * - Any other method: `405`.
 *
 * Credentials are rationed, as coturn can only hold back a username:
 *
 * - Without access tokens the endpoint hands credentials to anyone who asks,
 *   an open relay: the endpoint refuses to exist that way unless
 *   {@linkcode TurnOptions.public} says it is meant.
 * - The username's id names the client, never the request: an HMAC of its
 *   token under the TURN secret (truncated; the token itself never shows),
 *   or of its address when tokens are off. Its expiry is rounded up to a
 *   minute ({@linkcode TURN_USERNAME_WINDOW}), so that every fetch of one
 *   client within a minute gets the same username, and coturn's
 *   `user-quota` holds all the allocations of one client.
 * - Each client address may fetch {@linkcode TurnOptions.requestBurst}
 *   times at once, then {@linkcode TurnOptions.requestRate} times a second
 *   (`429` over it), counted in a token bucket per address.
 *
 * CORS follows the origins allowed to open a socket: with none listed, any
 * origin may read the answer (`Access-Control-Allow-Origin: *`, which also
 * keeps browsers from sending cookies); with a list, a listed origin gets
 * its own name back and `Vary: Origin`, and a request from another origin is
 * refused with `403`. A request without `Origin` (a same-origin `GET`, or a
 * program) is served: the token, when tokens are on, is the gate. Every
 * answer carries `Cache-Control: no-store`: credentials must never be served
 * from a cache to someone else.
 *
 * @module
 */

import type { Refusal } from "../lib/admission.ts";
import { clientAddress } from "../lib/address.ts";
import { type BucketState, TokenBucket } from "../lib/bucket.ts";
import { checkSecret } from "../lib/secret.ts";
import type { TokenAuthority } from "../lib/token.ts";
import {
  checkIceUrls,
  checkTurnTtl,
  DEFAULT_TURN_TTL,
  iceServersBody,
} from "../lib/turn.ts";
import { answerHeaders, preflightHeaders } from "../lib/cors.ts";

/**
 * Milliseconds the expiry of a username is rounded up to: every fetch of
 * one client within this window gets the same username, so coturn counts
 * them against one `user-quota`.
 */
export const TURN_USERNAME_WINDOW = 60_000;

/** Client addresses whose request buckets are kept at most. */
const _MAX_BUCKETS = 10_000;

/** The TURN servers whose credentials `/ice-servers` hands out. */
export interface TurnOptions {
  /**
   * coturn's `static-auth-secret` (with `use-auth-secret`): at least 16
   * UTF-8 bytes, 32 random bytes recommended (`sigver secret`).
   */
  secret: string;
  /** TURN server URLs (`turn:` or `turns:`), at least one. */
  urls: readonly string[];
  /**
   * STUN server URLs (`stun:` or `stuns:`), handed out without credentials.
   * @default {[]}
   */
  stunUrls?: readonly string[];
  /**
   * Milliseconds the credentials are valid for: a whole number of seconds
   * (a multiple of 1000), at least 1000. The `/ice-servers` body says it in
   * seconds.
   * @default {3_600_000}
   */
  ttl?: number;
  /**
   * Hands credentials out without access tokens: `true` says the operator
   * means to run an open relay for anyone who finds the URL. Without
   * tokens (`authSecrets`) and without it, the endpoint refuses to be made
   * (a `TypeError`); with tokens it changes nothing.
   * @default {false}
   */
  public?: boolean;
  /**
   * Requests a second one client address may make, on average (a token
   * bucket refilled at this rate); 0: no limit. Over it: `429`.
   * @default {1}
   */
  requestRate?: number;
  /**
   * Requests one client address may make at once, above its rate.
   * @default {10}
   */
  requestBurst?: number;
}

/** Options of {@linkcode IceServersEndpoint}. */
export interface IceServersEndpointOptions {
  /** The TURN servers; without them every `GET` gets 404. */
  turn?: TurnOptions;
  /** Checks access tokens; without it no token is needed. */
  tokens?: TokenAuthority;
  /**
   * Origins allowed to read the answer; empty: every origin.
   * @default {[]}
   */
  allowOrigins?: Iterable<string>;
  /**
   * Whether a reverse proxy in front sets `X-Forwarded-For` or `Forwarded`:
   * then the client address (for the request limit, and the username when
   * tokens are off) is read from them, as for the per-address peer limit.
   * @default {false}
   */
  trustProxy?: boolean;
  /**
   * The wall-clock time in unix milliseconds, for expiries and the request
   * limit.
   * @default {Date.now}
   */
  now?: () => number;
}

/** The methods the endpoint answers. */
const _ALLOW = "GET, HEAD, OPTIONS";
/** `Authorization` is never covered by `Access-Control-Allow-Headers: *`. */
const _ALLOW_HEADERS = "Authorization";
const _BEARER = /^Bearer +([^\s]+) *$/i;
const _TOKEN_MISSING =
  "Unauthorized: a valid access token is required, in Authorization: Bearer <token> or ?token=<token>";
const _ENCODER = new TextEncoder();

/** The resolved TURN options. */
interface _Turn {
  secret: string;
  urls: string[];
  stunUrls: string[];
  ttl: number;
}

/**
 * Answers `/ice-servers` requests. Create it once; {@linkcode handle} each
 * request whose path is the endpoint's.
 *
 * @example Hand out credentials for a local coturn
 * ```ts
 * import assert from "node:assert/strict";
 * import { IceServersEndpoint } from "./ice.ts";
 * const endpoint = new IceServersEndpoint({
 *   turn: {
 *     secret: "coturn's static-auth-secret",
 *     urls: ["turn:127.0.0.1:3478"],
 *     // No tokens: anyone may fetch credentials, and this says it is meant.
 *     public: true,
 *   },
 *   now: () => 1_700_000_000_000,
 * });
 * const response = await endpoint.handle(
 *   new Request("http://localhost/ice-servers"),
 *   undefined,
 *   "192.0.2.7",
 * );
 * assert.equal(response.headers.get("cache-control"), "no-store");
 * const body = await response.json();
 * assert.equal(body.ttl, 3600);
 * // The expiry rounded up to a minute, the id derived from the address.
 * assert.match(body.iceServers[0].username, /^1700003640:[0-9a-f]{16}$/);
 * ```
 */
export class IceServersEndpoint {
  readonly #turn: _Turn | undefined;
  readonly #tokens: TokenAuthority | undefined;
  readonly #origins: ReadonlySet<string>;
  readonly #trustProxy: boolean;
  readonly #now: () => number;
  readonly #bucket: TokenBucket;
  /** Request buckets by client address, least recently used first. */
  readonly #buckets = new Map<string, BucketState>();
  #idKey: Promise<CryptoKey> | undefined;

  /**
   * Creates the endpoint, checking the TURN options.
   *
   * @param options The TURN servers, the token checker, the allowed origins.
   * @throws {TypeError} When the secret is not a string, there is no TURN
   * URL, a URL has the wrong scheme, or there are no tokens and
   * `turn.public` is not `true`.
   * @throws {RangeError} When the secret is under 16 bytes, the ttl is not a
   * whole number of seconds, in milliseconds, of 1000 or more, or the
   * request rate or burst is not a non-negative number.
   */
  constructor(options: IceServersEndpointOptions = {}) {
    const turn = options.turn;
    const rate = turn?.requestRate ?? 1;
    const burst = turn?.requestBurst ?? 10;
    if (turn !== undefined) {
      checkSecret("create handler", turn.secret, "the TURN secret");
      const ttl = turn.ttl ?? DEFAULT_TURN_TTL;
      checkTurnTtl(ttl);
      checkIceUrls(turn.urls, turn.stunUrls);
      if (options.tokens === undefined && turn.public !== true) {
        throw new TypeError(
          "Cannot create handler: TURN credentials without access tokens go to anyone who asks; set authSecrets, or turn.public: true to run an open relay",
        );
      }
      for (
        const [name, value] of [["requestRate", rate], [
          "requestBurst",
          burst,
        ]] as const
      ) {
        if (
          typeof value !== "number" || !(value >= 0) || !Number.isFinite(value)
        ) {
          throw new RangeError(
            `Cannot create handler: turn.${name} ${value} is not a non-negative number`,
          );
        }
      }
      this.#turn = {
        secret: turn.secret,
        urls: [...turn.urls],
        stunUrls: [...turn.stunUrls ?? []],
        ttl,
      };
    }
    this.#tokens = options.tokens;
    this.#origins = new Set(options.allowOrigins ?? []);
    this.#trustProxy = options.trustProxy ?? false;
    this.#now = options.now ?? Date.now;
    this.#bucket = new TokenBucket(rate, burst);
  }

  /** Whether TURN servers are configured (else `GET` gets 404). */
  get enabled(): boolean {
    return this.#turn !== undefined;
  }

  /**
   * Answers one request.
   *
   * @param request The request (its path is not looked at).
   * @param onRefusal Told of every refusal for an origin, the request limit
   * or a token (the handler counts and logs them); never given the token.
   * @param remote The socket's remote address, `undefined` when there is
   * none: with the forwarding headers when `trustProxy` is set, it names
   * the client for the request limit (and the username without tokens).
   * @returns The response.
   */
  async handle(
    request: Request,
    onRefusal?: (refusal: Refusal) => void,
    remote?: string,
  ): Promise<Response> {
    const origin = request.headers.get("origin");
    const { allowed, headers } = answerHeaders(request, this.#origins);
    if (!allowed) {
      return _refuse(headers, onRefusal, {
        status: 403,
        reason: "origin",
        message: `Forbidden: origin ${origin} is not allowed`,
      });
    }
    const method = request.method;
    if (method === "OPTIONS") {
      headers.set("allow", _ALLOW);
      if (request.headers.has("access-control-request-method")) {
        for (
          const [name, value] of Object.entries(
            preflightHeaders(_ALLOW, _ALLOW_HEADERS),
          )
        ) headers.set(name, value);
      }
      return new Response(null, { status: 204, headers });
    }
    if (method !== "GET" && method !== "HEAD") {
      headers.set("allow", _ALLOW);
      return _text(
        405,
        "Method Not Allowed: GET the ICE servers",
        headers,
      );
    }
    const turn = this.#turn;
    if (turn === undefined) {
      return _text(
        404,
        "Not Found: this server hands out no ICE servers",
        headers,
      );
    }
    const now = this.#now();
    const address =
      clientAddress(remote, request.headers, this.#trustProxy).address;
    if (!this.#take(address, now)) {
      headers.set(
        "retry-after",
        String(Math.max(1, Math.ceil(1 / (this.#bucket.perMs * 1000)))),
      );
      return _refuse(headers, onRefusal, {
        status: 429,
        reason: "ice_rate",
        message:
          "Too Many Requests: this address asks for ICE servers too often; credentials stay valid, reuse them",
      });
    }
    const token = this.#tokens === undefined ? undefined : _token(request);
    if (this.#tokens !== undefined) {
      const check = await this.#tokens.check({ token, now });
      if (!check.ok) {
        if (check.status === 401) {
          headers.set(
            "www-authenticate",
            check.reason === "token_missing"
              ? 'Bearer realm="sigver"'
              : 'Bearer realm="sigver", error="invalid_token"',
          );
        }
        return _refuse(headers, onRefusal, {
          status: check.status,
          reason: check.reason,
          message: check.reason === "token_missing"
            ? _TOKEN_MISSING
            : check.text,
        });
      }
    }
    const body = await iceServersBody(turn.secret, {
      turnUrls: turn.urls,
      stunUrls: turn.stunUrls,
      ttl: turn.ttl,
      window: TURN_USERNAME_WINDOW,
      id: await this.#clientId(
        token === undefined ? `address|${address}` : `token|${token}`,
      ),
      now,
    });
    headers.set("content-type", "application/json");
    return new Response(method === "HEAD" ? null : body, { headers });
  }

  /**
   * Takes one request from an address's bucket. Buckets are kept in use
   * order; a bucket idle long enough to be full again is forgotten (a new
   * one is full too), and past {@linkcode _MAX_BUCKETS} the least recently
   * used goes, so that many addresses cost bounded memory.
   */
  #take(address: string, now: number): boolean {
    const bucket = this.#bucket;
    if (bucket.perMs === 0) return true;
    const buckets = this.#buckets;
    const refill = bucket.burst / bucket.perMs;
    for (const [key, state] of buckets) {
      if (buckets.size < _MAX_BUCKETS && now - state.last < refill) break;
      buckets.delete(key);
    }
    const state = buckets.get(address) ?? { tokens: bucket.burst, last: now };
    buckets.delete(address);
    buckets.set(address, state);
    return bucket.take(state, now);
  }

  /**
   * The id of a username: who the client is (its token, else its address),
   * as 16 hex digits of an HMAC under the TURN secret. One client gets one
   * id; the token or the address cannot be read back from it, and an
   * address's `:` (IPv6) never reaches the username.
   */
  async #clientId(client: string): Promise<string> {
    this.#idKey ??= crypto.subtle.importKey(
      "raw",
      _ENCODER.encode(this.#turn!.secret),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
    const mac = await crypto.subtle.sign(
      "HMAC",
      await this.#idKey,
      _ENCODER.encode(`sigver turn username|${client}`),
    );
    return Array.from(
      new Uint8Array(mac, 0, 8),
      (b) => b.toString(16).padStart(2, "0"),
    ).join("");
  }
}

/** The token of a request: `Authorization: Bearer`, else `?token=`. */
function _token(request: Request): string | undefined {
  const authorization = request.headers.get("authorization");
  const bearer = authorization === null
    ? undefined
    : _BEARER.exec(authorization)?.[1];
  if (bearer !== undefined) return bearer;
  const query = request.url.indexOf("?");
  if (query === -1) return undefined;
  const hash = request.url.indexOf("#", query);
  const search = request.url.slice(query, hash === -1 ? undefined : hash);
  return new URLSearchParams(search).get("token") ?? undefined;
}

function _text(status: number, body: string, headers: Headers): Response {
  headers.set("content-type", "text/plain; charset=utf-8");
  return new Response(body + "\n", { status, headers });
}

function _refuse(
  headers: Headers,
  onRefusal: ((refusal: Refusal) => void) | undefined,
  refusal: Refusal,
): Response {
  onRefusal?.(refusal);
  return _text(refusal.status, refusal.message, headers);
}
