/**
 * CORS for the server's HTTP answers that pages on other origins read: the
 * ICE servers and the WebSocket-free fallback. It follows the origins
 * allowed to open a socket: with none listed, any origin may read; with a
 * list, a listed origin gets its own name back and any other is refused. A
 * request without `Origin` (same-origin GETs, servers, bots) is served.
 *
 * @module
 */

/** Whether a request's origin may be served, and the headers to add. */
export interface CorsVerdict {
  /** False for an origin outside the allow-list. */
  allowed: boolean;
  /** The CORS headers of the answer (also on a refusal, so it is readable). */
  headers: Record<string, string>;
}

/**
 * The CORS verdict for a request's `Origin`.
 *
 * @param origin The `Origin` header, `null` when absent.
 * @param allowOrigins The allowed origins; empty: every origin.
 * @returns Whether it is allowed, and the headers to answer with.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { cors } from "./cors.ts";
 * const list = new Set(["https://app.example"]);
 * assert.deepEqual(cors("https://app.example", list), {
 *   allowed: true,
 *   headers: { vary: "Origin", "access-control-allow-origin": "https://app.example" },
 * });
 * assert.equal(cors("https://evil.example", list).allowed, false);
 * assert.equal(cors("https://any.example", new Set()).headers["access-control-allow-origin"], "*");
 * ```
 */
export function cors(
  origin: string | null,
  allowOrigins: ReadonlySet<string>,
): CorsVerdict {
  if (allowOrigins.size === 0) {
    return { allowed: true, headers: { "access-control-allow-origin": "*" } };
  }
  // The answer depends on Origin: caches keyed on the URL alone must not
  // give one origin's answer to another.
  if (origin !== null && allowOrigins.has(origin)) {
    return {
      allowed: true,
      headers: { vary: "Origin", "access-control-allow-origin": origin },
    };
  }
  return { allowed: origin === null, headers: { vary: "Origin" } };
}

/**
 * The headers that answer a CORS preflight (`OPTIONS` with
 * `Access-Control-Request-Method`).
 *
 * @param methods The methods allowed, comma-separated.
 * @param headers The request headers allowed, comma-separated.
 * @returns The headers; their answers may be cached for ten minutes.
 */
export function preflightHeaders(
  methods: string,
  headers: string,
): Record<string, string> {
  return {
    "access-control-allow-methods": methods,
    "access-control-allow-headers": headers,
    "access-control-max-age": "600",
  };
}

/**
 * The headers of an endpoint's answer to a cross-origin request: never
 * cached, never sniffed, and the CORS verdict's own headers.
 *
 * @param request The request.
 * @param allowOrigins The allowed origins; empty: every origin.
 * @returns Whether its origin is allowed, and the headers to answer with.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { answerHeaders } from "./cors.ts";
 * const request = new Request("http://localhost/x", {
 *   headers: { origin: "https://app.example" },
 * });
 * const { allowed, headers } = answerHeaders(request, new Set());
 * assert.equal(allowed, true);
 * assert.equal(headers.get("cache-control"), "no-store");
 * assert.equal(headers.get("access-control-allow-origin"), "*");
 * ```
 */
export function answerHeaders(
  request: Request,
  allowOrigins: ReadonlySet<string>,
): { allowed: boolean; headers: Headers } {
  const verdict = cors(request.headers.get("origin"), allowOrigins);
  const headers = new Headers({
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    ...verdict.headers,
  });
  return { allowed: verdict.allowed, headers };
}
