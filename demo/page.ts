/**
 * The demo page: two browser tabs that join the same room connect over
 * WebRTC through this server. Its three files are embedded in the package
 * (see `demo/build.ts`) and answered to plain GET and HEAD requests only;
 * a WebSocket upgrade on any of these paths still joins the group named by
 * the path.
 *
 * @module
 */

import { CLIENT_JS, DEMO_APP_JS, DEMO_HTML } from "./assets.gen.ts";

/** One file of the demo. */
export interface DemoFile {
  /** Its `content-type`. */
  readonly type: string;
  /** Its content. */
  readonly body: string;
}

const JS = "text/javascript; charset=utf-8";

/** The demo's files by request path. */
export const DEMO_FILES: ReadonlyMap<string, DemoFile> = new Map([
  ["/", { type: "text/html; charset=utf-8", body: DEMO_HTML }],
  ["/demo/app.js", { type: JS, body: DEMO_APP_JS }],
  ["/demo/client.js", { type: JS, body: CLIENT_JS }],
]);

// Same-origin scripts only; `ws:`/`wss:` because older browsers do not match
// WebSocket URLs with 'self'.
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "connect-src 'self' ws: wss:",
  "style-src 'unsafe-inline'",
  "img-src data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const _ICE_META = '<meta name="sigver-ice-servers" content="">';

/** Options of {@linkcode demoResponse}. */
export interface DemoOptions {
  /**
   * Path of the server's ICE servers endpoint when it hands out TURN
   * credentials: the page then gets them there. Without it the page asks
   * for none.
   */
  iceServersPath?: string;
}

function _attribute(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll('"', "&quot;")
    .replaceAll("<", "&lt;");
}

/**
 * Answers a request for one of the demo's files.
 *
 * @param path The request path, such as `/` or `/demo/app.js`.
 * @param head Whether the request is a HEAD (headers only).
 * @param options Where the server hands out ICE servers, if it does.
 * @returns The response, or `undefined` when `path` is not a demo file.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { demoResponse } from "./page.ts";
 * const response = demoResponse("/", false);
 * assert.match(response?.headers.get("content-type") ?? "", /^text\/html/);
 * ```
 */
export function demoResponse(
  path: string,
  head: boolean,
  options: DemoOptions = {},
): Response | undefined {
  const file = DEMO_FILES.get(path);
  if (file === undefined) return undefined;
  let body = file.body;
  if (path === "/" && options.iceServersPath !== undefined) {
    body = body.replace(
      _ICE_META,
      `<meta name="sigver-ice-servers" content="${
        _attribute(options.iceServersPath)
      }">`,
    );
  }
  const headers = new Headers({
    "content-type": file.type,
    "cache-control": "no-cache",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
  });
  if (path === "/") headers.set("content-security-policy", CSP);
  return new Response(head ? null : body, { headers });
}
