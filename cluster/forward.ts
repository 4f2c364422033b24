/**
 * A fallback session's requests on a cluster: a session lives on the node
 * that answered its opening GET, and a balancer may send the requests that
 * follow (a POST per frame, a GET that resumes the stream, a DELETE) to any
 * node. The node that gets one for a session that lives elsewhere (the
 * session id names its node) passes it on to that node, and its answer back.
 * The session id is the request's credential, on either node.
 *
 * @module
 */

import { readFrame } from "../lib/body.ts";
import { sessionHome } from "../lib/sse.ts";
import type { ClusterNode } from "./node.ts";

/** The header that marks a passed-on request: it is never passed on again. */
export const FORWARDED_HEADER = "x-sigver-forwarded";

/** Request headers that the session's node reads. */
const _KEEP = [
  "accept",
  "content-type",
  "last-event-id",
  "origin",
];

/**
 * Passes a session request on to the node that holds the session.
 *
 * @param request The request (a POST, DELETE, or resuming GET).
 * @param node The node's cluster URL (`ws://host:port`).
 * @param maxBody Most bytes a POSTed frame may have (a larger one gets 413
 * here, unread).
 * @returns The node's answer, streamed back as it comes.
 */
export async function forwardSession(
  request: Request,
  node: string,
  maxBody: number,
): Promise<Response> {
  const url = new URL(request.url);
  const target = node.replace(/^ws/, "http") + url.pathname + url.search;
  const headers = new Headers({ [FORWARDED_HEADER]: "1" });
  for (const name of _KEEP) {
    const value = request.headers.get(name);
    if (value !== null) headers.set(name, value);
  }
  let body: ArrayBuffer | undefined;
  if (request.method === "POST") {
    const posted = await readFrame(request, maxBody);
    if (!posted.ok) {
      return new Response(
        `Content Too Large: a frame is at most ${maxBody} bytes\n`,
        {
          status: 413,
          headers: { "content-type": "text/plain; charset=utf-8" },
        },
      );
    }
    body = posted.frame;
  }
  let answer: Response;
  try {
    answer = await fetch(target, {
      method: request.method,
      headers,
      body,
      signal: request.signal,
    });
  } catch {
    return new Response(
      "Service Unavailable: the session's node cannot be reached\n",
      {
        status: 503,
        headers: { "content-type": "text/plain; charset=utf-8" },
      },
    );
  }
  return new Response(answer.body, {
    status: answer.status,
    headers: new Headers(answer.headers),
  });
}

/**
 * Passes the requests for sessions that live on other nodes on to them.
 *
 * @param cluster This node.
 * @returns The hook: a request, a session id and the most bytes a POSTed
 * frame may have in, the other node's answer (or 404 when no live node
 * holds it) out; `undefined` when the session would live here (then it is
 * unknown).
 */
export function sessionForwarder(
  cluster: ClusterNode,
): (
  request: Request,
  id: string,
  maxBody: number,
) => Promise<Response> | undefined {
  return (request, id, maxBody) => {
    const home = sessionHome(id);
    if (
      home === undefined || home === cluster.id ||
      request.headers.has(FORWARDED_HEADER)
    ) {
      return undefined;
    }
    return cluster.nodeUrl(home).then((url) =>
      url === undefined
        ? new Response("Not Found: no such session\n", {
          status: 404,
          headers: { "content-type": "text/plain; charset=utf-8" },
        })
        : forwardSession(request, url, maxBody)
    );
  };
}
