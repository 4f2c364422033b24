/**
 * The `/ice-servers` endpoint: short-lived TURN credentials for the peers,
 * in coturn's `use-auth-secret` scheme (see `lib/turn.ts`), behind the
 * access token when tokens are on, with the CORS headers a page on another
 * origin needs to read them.
 *
 * - `GET` (and `HEAD`): `200` with
 *   `{"iceServers":[{"urls":[...],"username":"<expiry>:<id>","credential":"..."}],"ttl":N}`
 *   (`N` in seconds, as coturn's scheme counts them);
 *   `404` when no TURN server is configured; `401`/`403` for a missing or
 *   refused token (in `Authorization: Bearer <token>` or `?token=<token>`;
 *   the token's key prefix is not checked here: no group is involved).
 * - `OPTIONS`: `204`, the answer to a CORS preflight (a cross-origin `fetch`
 *   that sends `Authorization` makes one).
 * - Any other method: `405`.
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
import type { TokenAuthority } from "../lib/token.ts";
import {
  checkIceUrls,
  checkTurnTtl,
  DEFAULT_TURN_TTL,
  iceServersBody,
} from "../lib/turn.ts";
import { cors, preflightHeaders } from "../lib/cors.ts";

/** The TURN servers whose credentials `/ice-servers` hands out. */
export interface TurnOptions {
  /** coturn's `static-auth-secret` (with `use-auth-secret`), non-empty. */
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
   * The wall-clock time in unix milliseconds, for expiries.
   * @default {Date.now}
   */
  now?: () => number;
  /**
   * A fresh id for the username of each answer (non-empty, no `:`).
   * @default {16 random hex digits}
   */
  id?: () => string;
}

/** The methods the endpoint answers. */
const _ALLOW = "GET, HEAD, OPTIONS";
/** `Authorization` is never covered by `Access-Control-Allow-Headers: *`. */
const _ALLOW_HEADERS = "Authorization";
const _BEARER = /^Bearer +([^\s]+) *$/i;
const _TOKEN_MISSING =
  "Unauthorized: a valid access token is required, in Authorization: Bearer <token> or ?token=<token>";

function _randomId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
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
 *   turn: { secret: "coturn secret", urls: ["turn:127.0.0.1:3478"] },
 *   now: () => 1_700_000_000_000,
 * });
 * const response = await endpoint.handle(
 *   new Request("http://localhost/ice-servers"),
 * );
 * assert.equal(response.headers.get("cache-control"), "no-store");
 * const body = await response.json();
 * assert.equal(body.ttl, 3600);
 * assert.match(body.iceServers[0].username, /^1700003600:[0-9a-f]{16}$/);
 * ```
 */
export class IceServersEndpoint {
  readonly #turn: Required<TurnOptions> | undefined;
  readonly #tokens: TokenAuthority | undefined;
  readonly #origins: ReadonlySet<string>;
  readonly #now: () => number;
  readonly #id: () => string;

  /**
   * Creates the endpoint, checking the TURN options.
   *
   * @param options The TURN servers, the token checker, the allowed origins.
   * @throws {TypeError} When the secret is empty, there is no TURN URL or a
   * URL has the wrong scheme.
   * @throws {RangeError} When the ttl is not a whole number of seconds, in
   * milliseconds, of 1000 or more.
   */
  constructor(options: IceServersEndpointOptions = {}) {
    const turn = options.turn;
    if (turn !== undefined) {
      if (typeof turn.secret !== "string" || turn.secret === "") {
        throw new TypeError("Cannot create handler: the TURN secret is empty");
      }
      const ttl = turn.ttl ?? DEFAULT_TURN_TTL;
      checkTurnTtl(ttl);
      checkIceUrls(turn.urls, turn.stunUrls);
      this.#turn = {
        secret: turn.secret,
        urls: [...turn.urls],
        stunUrls: [...turn.stunUrls ?? []],
        ttl,
      };
    }
    this.#tokens = options.tokens;
    this.#origins = new Set(options.allowOrigins ?? []);
    this.#now = options.now ?? Date.now;
    this.#id = options.id ?? _randomId;
  }

  /** Whether TURN servers are configured (else `GET` gets 404). */
  get enabled(): boolean {
    return this.#turn !== undefined;
  }

  /**
   * Answers one request.
   *
   * @param request The request (its path is not looked at).
   * @param onRefusal Told of every refusal for an origin or a token (the
   * handler counts and logs them); never given the token.
   * @returns The response.
   */
  async handle(
    request: Request,
    onRefusal?: (refusal: Refusal) => void,
  ): Promise<Response> {
    const origin = request.headers.get("origin");
    const verdict = cors(origin, this.#origins);
    const headers = new Headers({
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
      ...verdict.headers,
    });
    if (!verdict.allowed) {
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
    if (this.#tokens !== undefined) {
      const check = await this.#tokens.check({
        token: _token(request),
        now: this.#now(),
      });
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
      id: this.#id(),
      now: this.#now(),
    });
    headers.set("content-type", "application/json");
    return new Response(method === "HEAD" ? null : body, { headers });
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
