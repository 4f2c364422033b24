/**
 * Where an arriving peer goes, whatever carries it (a WebSocket upgrade or a
 * fallback session): refused with an HTTP status, served on this node, or
 * piped to the node that owns its group. The gates, in order:
 *
 * 1. On a cluster (a {@linkcode Placement}), a pipe from another node is
 *    told from a client (a forged one: 403); it carries its client's address
 *    and Origin, and its key as it arrived at the edge.
 * 2. Admission: draining (503), origin (403), capacity (503), per-address
 *    limit (429).
 * 3. With access tokens, a client needs one in its path, `/t/<token>/<key>`
 *    (401, 403); a pipe needs none: its edge checked it.
 * 4. On a cluster, the placement says where the group lives: here (a lease
 *    is taken), or on another node, linked before the peer's answer.
 *
 * Without tokens and a placement, nothing is awaited: {@linkcode arrive}
 * answers at once.
 *
 * @module
 */

import { type AdmissionPolicy, admit, type Refusal } from "../lib/admission.ts";
import { clientAddress } from "../lib/address.ts";
import {
  splitTokenPath,
  type TokenAuthority,
  type TokenCheck,
  type TokenRefusal,
} from "../lib/token.ts";
import { checkKey, type PeerUrl } from "../lib/url.ts";
import type { Lease, PipedPeer, Placement, Remote } from "./placement.ts";

/** What the gates read of the server, at the moment a peer arrives. */
export interface Gates {
  /** The admission policy. */
  readonly admission: AdmissionPolicy;
  /** Whether to believe forwarding headers. */
  readonly trustProxy: boolean;
  /** The access tokens' checker, when tokens are on. */
  readonly tokens: TokenAuthority | undefined;
  /** Where groups live, on a cluster. */
  readonly placement: Placement | undefined;
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
    /** What the peer asks for, or `undefined` for a URL without a path. */
    peer: PeerAsk | undefined;
    /** The claim this node took on the peer's group, on a cluster. */
    lease: Lease | undefined;
    /** Whether the peer came through a pipe from another node. */
    piped: boolean;
  }
  | {
    kind: "edge";
    from: Origin;
    key: string;
    /** The open link to the group's owner node. */
    remote: Remote;
  };

const _NO_HEADERS = new Headers();

/** What a peer asks for: its path's key and flag, and for mounts more. */
export interface PeerAsk extends PeerUrl {
  /** The key prefix its token grants (a mounted protocol, tokens on). */
  scope?: string;
  /** Its query string, without its `?` (a mounted protocol). */
  query?: string;
}

/**
 * A request for a protocol mounted under its own path (`/y-webrtc`,
 * `/peerjs/...`): never placed on a cluster, and a token there grants a
 * scope, not a key.
 */
export interface Mounted {
  /** The path below the mount (`""`, or `/...`). */
  readonly rest: string;
  /** The query string, without its `?`. */
  readonly query: string;
}

/**
 * Decides where a peer goes.
 *
 * @param request The upgrade, or the fallback's opening GET.
 * @param url What its path says (below the server's base path), or
 * `undefined` when it cannot be parsed.
 * @param remote The socket's remote address, if any.
 * @param gates The server's gates and counts.
 * @param mounted For a protocol mounted under its own path: the path below
 * it and the query.
 * @returns The arrival: at once without tokens and a placement.
 */
export function arrive(
  request: Request,
  url: PeerUrl | undefined,
  remote: string | undefined,
  gates: Gates,
  mounted?: Mounted,
): Arrival | Promise<Arrival> {
  if (
    mounted === undefined &&
    (gates.placement !== undefined || gates.tokens !== undefined)
  ) {
    return _gated(request, remote, gates, url);
  }
  const from = _origin(remote, request.headers, gates.trustProxy, gates);
  const refusal = _admit(request.headers.get("origin"), from, gates);
  if (refusal !== undefined) {
    // A mounted protocol's path is no key to log.
    const key = mounted === undefined ? url?.key : undefined;
    return { kind: "refused", refusal, from, key };
  }
  if (mounted === undefined) {
    return { kind: "local", from, peer: url, lease: undefined, piped: false };
  }
  return _mounted(url, gates, mounted, from);
}

/**
 * Reads a mounted protocol's token (the one in its `/t/<token>/` path): its
 * signature and expiry, and the prefix it grants.
 *
 * @param url The request's path.
 * @param tokens The access tokens' checker.
 * @returns The check: the prefix, or the refusal.
 */
export function checkScope(
  url: PeerUrl | undefined,
  tokens: TokenAuthority,
): Promise<TokenCheck> {
  const token = url === undefined ? undefined : splitTokenPath(url.key).token;
  return tokens.check({ token, now: Date.now() });
}

/**
 * An admitted peer of a mounted protocol: with tokens on, its token's
 * prefix is handed to the protocol as the scope of what the peer may reach.
 * Served here: the protocol has its own way across a cluster.
 */
function _mounted(
  url: PeerUrl | undefined,
  gates: Gates,
  mounted: Mounted,
  from: Origin,
): Arrival | Promise<Arrival> {
  const peer: PeerAsk = {
    key: mounted.rest,
    favored: false,
    query: mounted.query,
  };
  if (gates.tokens === undefined) {
    return { kind: "local", from, peer, lease: undefined, piped: false };
  }
  return checkScope(url, gates.tokens).then((check): Arrival =>
    check.ok
      ? {
        kind: "local",
        from,
        peer: { ...peer, scope: check.prefix },
        lease: undefined,
        piped: false,
      }
      : _tokenRefused(check, from)
  );
}

/** The refusal of a token that failed its check. */
export function tokenRefusal(check: TokenRefusal): Refusal {
  return { status: check.status, reason: check.reason, message: check.text };
}

/** A refused token's arrival: no key to log, a path with a token in it. */
function _tokenRefused(refusal: TokenRefusal, from: Origin): Arrival {
  return {
    kind: "refused",
    refusal: tokenRefusal(refusal),
    from,
    key: undefined,
  };
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
  const placement = gates.placement;
  let piped: PipedPeer | undefined;
  if (placement !== undefined) {
    const inbound = await placement.inbound(request.headers);
    if (inbound.kind === "refused") {
      return {
        kind: "refused",
        refusal: inbound.refusal,
        from: { address: remote ?? "unknown", counted: false },
        key: undefined,
      };
    }
    if (inbound.kind === "pipe") piped = inbound.peer;
  }
  // A pipe carries its client's address and Origin for this node's limits.
  const from = piped === undefined
    ? _origin(remote, request.headers, gates.trustProxy, gates)
    : _origin(piped.client, _NO_HEADERS, false, gates);
  const origin = piped === undefined
    ? request.headers.get("origin")
    : piped.origin;
  const refusal = _admit(origin, from, gates);
  // A path with a token in it is not a key to log, not even hashed.
  if (refusal !== undefined) {
    return { kind: "refused", refusal, from, key: undefined };
  }
  // A pipe's key comes signed, as it arrived at the edge: its path may have
  // been normalized by the edge's WebSocket client on the way.
  let peer = piped === undefined
    ? url
    : { key: piped.key, favored: piped.favored };
  if (gates.tokens !== undefined && piped === undefined && peer === undefined) {
    // No key to check a token against: no way in.
    return {
      kind: "refused",
      refusal: {
        status: 401,
        reason: "token_missing",
        message: "Unauthorized: the request URL cannot be parsed",
      },
      from,
      key: undefined,
    };
  }
  if (gates.tokens !== undefined && piped === undefined && peer !== undefined) {
    const access = splitTokenPath(peer.key);
    const check = await gates.tokens.check({ ...access, now: Date.now() });
    if (!check.ok) return _tokenRefused(check, from);
    peer = { key: access.key, favored: peer.favored };
  }
  if (
    placement === undefined || peer === undefined ||
    checkKey(peer.key) !== undefined
  ) {
    // No placement, or a bad URL or key (closed with 4745 or 4741 after the
    // open): no group, no lease.
    return { kind: "local", from, peer, lease: undefined, piped: false };
  }
  const key = peer.key;
  if (piped !== undefined) {
    const lease = await placement.accept(key);
    if (lease === undefined) {
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
    return { kind: "local", from, peer, lease, piped: true };
  }
  const placed = await placement.place({
    key,
    favored: peer.favored,
    client: from.address,
    origin,
    maxBufferedAmount: gates.maxBufferedAmount,
  });
  switch (placed.kind) {
    case "refused":
      return { kind: "refused", refusal: placed.refusal, from, key };
    case "remote":
      return { kind: "edge", from, key, remote: placed.remote };
    case "local":
      return { kind: "local", from, peer, lease: placed.lease, piped: false };
  }
}
