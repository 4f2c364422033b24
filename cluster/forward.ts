/**
 * A fallback session's requests on a cluster: a session lives on the node
 * that answered its opening GET, and a balancer may send the requests that
 * follow (a POST per frame, a GET that resumes the stream, a DELETE) to any
 * node. The node that gets one for a session that lives elsewhere (the
 * session id names its node) passes it on to that node, and its answer back.
 * The session id is the request's credential, on either node.
 *
 * The node is found in Redis (its record signed with the cluster secret),
 * and its answer is passed back only when it is one a sigver node gives:
 * no redirect is followed, and anything else becomes a 502. A node URL
 * that is not `ws[s]://host:port` is never requested.
 *
 * @module
 */

import { readFrame } from "../lib/body.ts";
import { isNodeUrl } from "../lib/node_url.ts";
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
 * What a session's node answers, by method: each status, with the media
 * type of its body (`""` for none). A resuming GET gets the stream or a
 * refusal; a POST or DELETE gets 204 or a refusal (413: a frame too large).
 */
const _ANSWERS: Record<string, Record<number, string>> = {
  GET: {
    200: "text/event-stream",
    403: "text/plain",
    404: "text/plain",
    409: "text/plain",
  },
  POST: {
    204: "",
    403: "text/plain",
    404: "text/plain",
    409: "text/plain",
    413: "text/plain",
  },
  DELETE: {
    204: "",
    403: "text/plain",
    404: "text/plain",
    409: "text/plain",
    413: "text/plain",
  },
};

function _text(status: number, text: string): Response {
  return new Response(text, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8" },
  });
}

/** Whether a node's answer to `method` is one a sigver node gives. */
function _expected(method: string, answer: Response): boolean {
  const type = _ANSWERS[method]?.[answer.status];
  if (type === undefined) return false;
  if (type === "") return answer.body === null;
  const media = answer.headers.get("content-type")?.split(";")[0];
  return media?.trim().toLowerCase() === type;
}

/**
 * Passes a session request on to the node that holds the session.
 *
 * @param request The request (a POST, DELETE, or resuming GET).
 * @param node The node's cluster URL (`ws://host:port`).
 * @param maxBody Most bytes a POSTed frame may have (a larger one gets 413
 * here, unread).
 * @returns The node's answer, streamed back as it comes; 502 when it is no
 * answer a node gives (a redirect included), or when `node` is no node URL.
 */
export async function forwardSession(
  request: Request,
  node: string,
  maxBody: number,
): Promise<Response> {
  if (!isNodeUrl(node)) {
    await request.body?.cancel();
    return _text(502, "Bad Gateway: the session's node has no valid URL\n");
  }
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
      return _text(
        413,
        `Content Too Large: a frame is at most ${maxBody} bytes\n`,
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
      // A node never redirects: a redirect would lead the request anywhere.
      redirect: "manual",
    });
  } catch {
    return _text(
      503,
      "Service Unavailable: the session's node cannot be reached\n",
    );
  }
  if (!_expected(request.method, answer)) {
    await answer.body?.cancel();
    return _text(
      502,
      `Bad Gateway: the session's node answered ${answer.status}, which no sigver node answers\n`,
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
        ? _text(404, "Not Found: no such session\n")
        : forwardSession(request, url, maxBody)
    );
  };
}
