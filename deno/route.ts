/**
 * Where an arriving peer goes, whatever carries it (a WebSocket upgrade or a
 * fallback session): refused with an HTTP status, served on this node, or
 * piped to the node that owns its group. The gates, in order:
 *
 * 1. On a cluster, a pipe from another node is told from a client by its
 *    signature (a forged one: 403); it carries its client's address and
 *    Origin, and its key as it arrived at the edge.
 * 2. Admission: draining (503), origin (403), capacity (503), per-address
 *    limit (429).
 * 3. With access tokens, a client needs one in its path, `/t/<token>/<key>`
 *    (401, 403); a pipe needs none: its edge checked it.
 * 4. On a cluster, the key's owner: this node (a lease is taken), or another
 *    node, to which a pipe is opened before the peer's answer: an owner that
 *    cannot be reached is taken over, one that refuses has its status
 *    mirrored.
 *
 * Without tokens and a cluster, nothing is awaited: {@linkcode arrive}
 * answers at once.
 *
 * @module
 */

import { type AdmissionPolicy, admit, type Refusal } from "../lib/admission.ts";
import { clientAddress } from "../lib/address.ts";
import type { PipeClaims } from "../lib/pipe_auth.ts";
import { splitTokenPath, type TokenAuthority } from "../lib/token.ts";
import { checkKey, parsePeerUrl, type PeerUrl } from "../lib/url.ts";
import { openPipe, type PendingPipe } from "../cluster/edge.ts";
import type { ClusterNode, Route } from "../cluster/node.ts";

/** How long a pipe to an owner may take to open before it is unreachable. */
const PIPE_CONNECT_TIMEOUT_MS = 1500;
/** Frames a pipe may queue while it opens. */
const PIPE_MAX_QUEUED = 256;
/** Owners tried for one peer (an owner that moved, then the next one). */
const PIPE_ATTEMPTS = 3;

/** What the gates read of the server, at the moment a peer arrives. */
export interface Gates {
  /** The admission policy. */
  readonly admission: AdmissionPolicy;
  /** Whether to believe forwarding headers. */
  readonly trustProxy: boolean;
  /** The access tokens' checker, when tokens are on. */
  readonly tokens: TokenAuthority | undefined;
  /** This node, on a cluster. */
  readonly cluster: ClusterNode | undefined;
  /** Bytes that may wait in a pipe's send buffer. */
  readonly maxBufferedAmount: number;
  /** Whether the server drains. */
  readonly draining: boolean;
  /** Connections held now. */
  readonly connections: number;
  /**
   * Connections held now from one address.
   *
   * @param address The address.
   * @returns How many.
   */
  fromAddress(address: string): number;
}

/** Where the client comes from, for its limits and logs. */
export interface Origin {
  /** The client's address. */
  address: string;
  /** Whether it counts against the per-address limit. */
  counted: boolean;
}

/** Where an arriving peer goes. */
export type Arrival =
  | {
    kind: "refused";
    refusal: Refusal;
    /** For the log: the client's address, and the key when known. */
    from: Origin;
    key: string | undefined;
  }
  | {
    kind: "local";
    from: Origin;
    /** The key and flag, or `undefined` for a URL without a path. */
    peer: PeerUrl | undefined;
    /** A lease this node took for the peer's group, on a cluster. */
    lease: { cluster: ClusterNode; piped: boolean } | undefined;
  }
  | {
    kind: "edge";
    from: Origin;
    key: string;
    /** The owner. */
    route: Route & { local: false };
    /** The open pipe to it. */
    pipe: PendingPipe;
  };

const _NO_HEADERS = new Headers();

/**
 * Decides where a peer goes.
 *
 * @param request The upgrade, or the fallback's opening GET.
 * @param remote The socket's remote address, if any.
 * @param gates The server's gates and counts.
 * @returns The arrival: at once without tokens and a cluster.
 */
export function arrive(
  request: Request,
  remote: string | undefined,
  gates: Gates,
): Arrival | Promise<Arrival> {
  const url = parsePeerUrl(request.url);
  if (gates.cluster !== undefined || gates.tokens !== undefined) {
    return _gated(request, remote, gates, url);
  }
  const from = _origin(remote, request.headers, gates.trustProxy, gates);
  const refusal = _admit(request.headers.get("origin"), from, gates);
  if (refusal !== undefined) {
    return { kind: "refused", refusal, from, key: url?.key };
  }
  return { kind: "local", from, peer: url, lease: undefined };
}

function _origin(
  remote: string | undefined,
  headers: Headers,
  trustProxy: boolean,
  gates: Gates,
): Origin {
  const { address, local } = clientAddress(remote, headers, trustProxy);
  return {
    address,
    counted: !local && gates.admission.maxPeersPerAddress > 0,
  };
}

function _admit(
  origin: string | null,
  from: Origin,
  gates: Gates,
): Refusal | undefined {
  return admit({
    draining: gates.draining,
    origin,
    counted: from.counted,
    peers: gates.connections,
    fromAddress: from.counted ? gates.fromAddress(from.address) : 0,
  }, gates.admission);
}

/**
 * Admission once more, for a peer whose arrival waited (a token check,
 * Redis, a pipe to open): the server may have begun draining, or filled up
 * with the peers that arrived meanwhile. Its origin passed already.
 *
 * @param from Where the client comes from.
 * @param gates The server's gates and counts, now.
 * @returns The refusal, or `undefined` when the peer may be held.
 */
export function readmit(from: Origin, gates: Gates): Refusal | undefined {
  return admit({
    draining: gates.draining,
    origin: null,
    counted: from.counted,
    peers: gates.connections,
    fromAddress: from.counted ? gates.fromAddress(from.address) : 0,
  }, { ...gates.admission, requireOrigin: false });
}

async function _gated(
  request: Request,
  remote: string | undefined,
  gates: Gates,
  url: PeerUrl | undefined,
): Promise<Arrival> {
  const cluster = gates.cluster;
  let claims: PipeClaims | undefined;
  if (cluster !== undefined) {
    const check = await cluster.auth.check(request.headers, Date.now());
    if (check.kind === "refused") {
      return {
        kind: "refused",
        refusal: {
          status: 403,
          reason: "pipe_signature",
          message: `Forbidden: ${check.reason}`,
        },
        from: { address: remote ?? "unknown", counted: false },
        key: undefined,
      };
    }
    if (check.kind === "pipe") {
      // Signed for another node: replayed, or sent to the wrong address.
      if (check.claims.owner !== cluster.url) {
        return {
          kind: "refused",
          refusal: {
            status: 403,
            reason: "pipe_signature",
            message: "Forbidden: the pipe is signed for another node",
          },
          from: { address: remote ?? "unknown", counted: false },
          key: undefined,
        };
      }
      claims = check.claims;
    }
  }
  // A pipe carries its client's address and Origin for this node's limits.
  const from = claims === undefined
    ? _origin(remote, request.headers, gates.trustProxy, gates)
    : _origin(claims.client, _NO_HEADERS, false, gates);
  const origin = claims === undefined
    ? request.headers.get("origin")
    : claims.origin;
  const refusal = _admit(origin, from, gates);
  // A path with a token in it is not a key to log, not even hashed.
  if (refusal !== undefined) {
    return { kind: "refused", refusal, from, key: undefined };
  }
  // A pipe's key comes signed, as it arrived at the edge: its path may have
  // been normalized by the edge's WebSocket client on the way.
  let peer = claims === undefined
    ? url
    : { key: claims.key, favored: claims.favored };
  if (
    gates.tokens !== undefined && claims === undefined && peer !== undefined
  ) {
    const access = splitTokenPath(peer.key);
    const check = await gates.tokens.check({ ...access, now: Date.now() });
    if (!check.ok) {
      return {
        kind: "refused",
        refusal: {
          status: check.status,
          reason: check.reason,
          message: check.text,
        },
        from,
        key: undefined,
      };
    }
    peer = { key: access.key, favored: peer.favored };
  }
  if (
    cluster === undefined || peer === undefined ||
    checkKey(peer.key) !== undefined
  ) {
    // No cluster, or a bad URL or key (closed with 4745 or 4741 after the
    // open): no group, no lease.
    return { kind: "local", from, peer, lease: undefined };
  }
  const key = peer.key;
  if (claims !== undefined) {
    if (!await cluster.accept(key)) {
      return {
        kind: "refused",
        refusal: {
          status: 409,
          reason: "pipe_owner",
          message: "Conflict: this node does not own the group",
        },
        from,
        key,
      };
    }
    return { kind: "local", from, peer, lease: { cluster, piped: true } };
  }
  return _owner(cluster, from, origin, peer, gates);
}

/** Serves a client's peer here, or pipes it to its group's owner. */
async function _owner(
  cluster: ClusterNode,
  from: Origin,
  origin: string | null,
  peer: PeerUrl,
  gates: Gates,
): Promise<Arrival> {
  const key = peer.key;
  const target = peer.favored ? `/${key}?favored` : `/${key}`;
  let route: Route = await cluster.route(key);
  for (let attempt = 0; !route.local && attempt < PIPE_ATTEMPTS; attempt++) {
    const headers = await cluster.auth.sign({
      node: cluster.id,
      key,
      favored: peer.favored,
      client: from.address,
      origin,
      owner: route.url,
    }, Date.now());
    const opened = await openPipe(_pipeUrl(route.url, target), headers, {
      connectTimeout: PIPE_CONNECT_TIMEOUT_MS,
      maxBufferedAmount: gates.maxBufferedAmount,
      maxQueued: PIPE_MAX_QUEUED,
    });
    if ("pipe" in opened) {
      return { kind: "edge", from, key, route, pipe: opened.pipe };
    }
    const end = opened.end;
    if (end.kind === "unreachable") {
      route = await cluster.unreachable(key, route.node);
    } else if (end.kind === "refused" && end.status === 409) {
      route = await cluster.refused(key, route.node);
    } else {
      const status = end.kind === "refused" ? end.status : 503;
      return {
        kind: "refused",
        refusal: {
          status,
          reason: "owner_refused",
          message: status === 503
            ? "Service Unavailable: the server node of this group is full or shutting down"
            : `Cannot join: the server node of this group answered ${status}`,
        },
        from,
        key,
      };
    }
  }
  if (!route.local) {
    return {
      kind: "refused",
      refusal: {
        status: 503,
        reason: "owner_unreachable",
        message:
          "Service Unavailable: the server node of this group cannot be reached",
      },
      from,
      key,
    };
  }
  return { kind: "local", from, peer, lease: { cluster, piped: false } };
}

/**
 * The URL of a pipe: the owner's address and the peer's own path. The path
 * is informative (the key travels signed in a header): one that is no URL
 * path goes percent-encoded.
 */
function _pipeUrl(base: string, target: string): string {
  try {
    return new URL(base + target).href;
  } catch {
    return `${base}/${encodeURIComponent(target.slice(1))}`;
  }
}
