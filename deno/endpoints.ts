/**
 * The server's answers to plain HTTP requests (not a WebSocket upgrade, not
 * the fallback transport): liveness, readiness, metrics, the cluster view,
 * the ICE servers, the demo page, and a short text for everything else. A
 * plain request is never a group.
 *
 * @module
 */

import type { Refusal } from "../lib/admission.ts";
import { parsePeerUrl } from "../lib/url.ts";
import { demoResponse } from "../demo/page.ts";
import type { IceServersEndpoint } from "./ice.ts";

/** The endpoints' paths (`false`: off). */
export interface EndpointPaths {
  /** Liveness. */
  health: string | false;
  /** Readiness. */
  ready: string | false;
  /** Prometheus metrics. */
  metrics: string | false;
  /** The cluster view (served on a cluster only). */
  cluster: string | false;
  /** The ICE servers (served when TURN is configured). */
  ice: string | false;
}

/** What the endpoints read of the server. */
export interface EndpointSource {
  /** The paths. */
  readonly paths: EndpointPaths;
  /** Whether the demo page is served. */
  readonly demo: boolean;
  /** Whether the metrics are served to clients too, not only to admins. */
  readonly publicMetrics: boolean;
  /** The ICE servers endpoint, unless its path is off. */
  readonly ice: IceServersEndpoint | undefined;
  /**
   * Why the server is not ready, or `undefined` when it is.
   *
   * @returns The reason.
   */
  notReady(): string | undefined;
  /**
   * The metrics exposition.
   *
   * @returns The text.
   */
  metrics(): string;
  /**
   * The cluster view, on a cluster.
   *
   * @returns The view, or `undefined` off a cluster.
   */
  clusterView(): unknown;
  /**
   * Counts and logs a refusal of the ICE servers endpoint.
   *
   * @param refusal The refusal.
   * @param request The request.
   * @param remote The socket's remote address, if any.
   */
  refusedIce(
    refusal: Refusal,
    request: Request,
    remote: string | undefined,
  ): void;
}

/**
 * A short plain-text answer, never cached.
 *
 * @param status The HTTP status.
 * @param body The text (a line feed is added).
 * @param headers More headers.
 * @returns The response.
 */
export function textResponse(
  status: number,
  body: string,
  headers?: HeadersInit,
): Response {
  const h = new Headers(headers);
  h.set("content-type", "text/plain; charset=utf-8");
  h.set("cache-control", "no-store");
  return new Response(body + "\n", { status, headers: h });
}

/**
 * Answers a plain request.
 *
 * @param request The request.
 * @param target Its path and query below the base path.
 * @param source The server's state and paths.
 * @param remote The socket's remote address, if any (for logs).
 * @returns The answer.
 */
export function answerPlain(
  request: Request,
  target: string,
  source: EndpointSource,
  remote: string | undefined,
): Response | Promise<Response> {
  const parsed = parsePeerUrl(target);
  const path = parsed === undefined ? "" : "/" + parsed.key;
  const ice = source.paths.ice;
  // The one path with more methods than GET and HEAD: CORS preflights.
  if (path === ice && source.ice !== undefined) {
    return source.ice.handle(
      request,
      (refusal) => source.refusedIce(refusal, request, remote),
      remote,
    );
  }
  if (request.method !== "GET" && request.method !== "HEAD") {
    return textResponse(
      405,
      "Method Not Allowed: this is a WebRTC signaling server",
      { allow: "GET, HEAD" },
    );
  }
  // The cluster view names this node's internal address: admins only.
  const admin = _admin(path, source, {
    metrics: source.publicMetrics,
    cluster: false,
  });
  if (admin !== undefined) return admin;
  const { metrics, cluster } = source.paths;
  if (path === metrics || path === cluster) {
    return textResponse(
      404,
      "Not Found: this is served on the admin listener (--admin-port)",
    );
  }
  if (source.demo) {
    const demo = demoResponse(path, request.method === "HEAD", {
      iceServersPath: source.ice?.enabled ? ice || undefined : undefined,
    });
    if (demo !== undefined) return demo;
  }
  return textResponse(
    426,
    "Upgrade Required: this is a WebRTC signaling server (sigver). Open a WebSocket to ws[s]://HOST/<key>",
    { upgrade: "websocket", connection: "Upgrade" },
  );
}

/**
 * Answers a request to the admin listener: liveness, readiness, the metrics
 * and the cluster view, and nothing else (404).
 *
 * @param request The request.
 * @param source The server's state and paths.
 * @returns The answer.
 */
export function answerAdmin(
  request: Request,
  source: EndpointSource,
): Response {
  if (request.method !== "GET" && request.method !== "HEAD") {
    return textResponse(405, "Method Not Allowed: the admin listener reads", {
      allow: "GET, HEAD",
    });
  }
  const path = parsePeerUrl(request.url);
  const answer = path === undefined
    ? undefined
    : _admin("/" + path.key, source, { metrics: true, cluster: true });
  return answer ?? textResponse(
    404,
    "Not Found: the admin listener serves liveness, readiness, metrics and the cluster view",
  );
}

/** The admin paths' answers; `undefined` for any other path. */
function _admin(
  path: string,
  source: EndpointSource,
  serve: { metrics: boolean; cluster: boolean },
): Response | undefined {
  const { health, ready, metrics, cluster } = source.paths;
  if (path === health) return textResponse(200, "ok");
  if (path === ready) {
    const why = source.notReady();
    return why === undefined
      ? textResponse(200, "ready")
      : textResponse(503, why);
  }
  if (path === metrics && serve.metrics) {
    return new Response(source.metrics(), {
      headers: {
        "content-type": "text/plain; version=0.0.4; charset=utf-8",
        "cache-control": "no-store",
      },
    });
  }
  if (path === cluster && serve.cluster) {
    const view = source.clusterView();
    if (view !== undefined) {
      return Response.json(view, { headers: { "cache-control": "no-store" } });
    }
  }
  return undefined;
}
