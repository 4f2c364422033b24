/**
 * The placement seam: where a peer's group is served, here or on another
 * node. A single server has no placement: every group lives here, and
 * nothing is awaited. A cluster (`cluster/`) plugs in here, and only here:
 * it tells a pipe from another node from a client, places a client's peer
 * (a lease taken here, or a {@linkcode Remote} to the owner), and says when
 * groups it served moved away.
 *
 * @module
 */

import type { Refusal } from "../lib/admission.ts";
import type { Logger } from "../lib/log.ts";
import type { MetricFamily } from "../lib/metrics.ts";

/** What the server offers a placement. */
export interface PlacementHost {
  /** The server's log. */
  readonly log: Logger;
  /**
   * Groups served here moved to other nodes: their local peers must go
   * (closed with 1012, so that they reconnect to the new owner).
   *
   * @param keys The groups' keys.
   */
  moved(keys: ReadonlySet<string>): void;
}

/** What a pipe from another node carries, signed by it. */
export interface PipedPeer {
  /** The group key, as the client asked at the other node. */
  readonly key: string;
  /** Whether the client asked to be favored. */
  readonly favored: boolean;
  /** The client's address, for the limits here. */
  readonly client: string;
  /** The client's Origin header. */
  readonly origin: string | null;
}

/** Who sent a request: a client, or another node (with its claims). */
export type Inbound =
  | { readonly kind: "client" }
  | { readonly kind: "pipe"; readonly peer: PipedPeer }
  | { readonly kind: "refused"; readonly refusal: Refusal };

/** A client's peer to place. */
export interface PlaceRequest {
  /** The group key. */
  readonly key: string;
  /** Whether the peer asked to be favored. */
  readonly favored: boolean;
  /** The client's address. */
  readonly client: string;
  /** The client's Origin header. */
  readonly origin: string | null;
  /** Bytes that may wait in a pipe's send buffer. */
  readonly maxBufferedAmount: number;
}

/** A group's claim held for one local peer: give it back when it leaves. */
export interface Lease {
  /** The peer left: the last one out frees the group for other nodes. */
  release(): void;
  /** The group moved away: nothing is left to free. */
  moved(): void;
  /**
   * Milliseconds the peer's WebSocket may go without a frame or a pong
   * before the server drops it (it pings it halfway): a pipe from another
   * node has one, so that a partition frees it. Absent: not watched.
   */
  readonly silenceTimeout?: number;
}

/** What a {@linkcode Remote} reports to the connection it carries. */
export interface RemoteEvents {
  /**
   * The owner sent a frame for the peer.
   *
   * @param frame Its bytes (a view, valid during the call) or its text.
   */
  onRemoteFrame(frame: Uint8Array | string): void;
  /**
   * The owner closed the peer, or could no longer be reached.
   *
   * @param code The close code for the peer.
   * @param reason The close reason.
   */
  onRemoteEnd(code: number, reason: string): void;
}

/** A peer's link to the node that owns its group. */
export interface Remote {
  /**
   * Hands the link's events to the peer's connection, replaying what came
   * before.
   *
   * @param events The connection.
   */
  attach(events: RemoteEvents): void;
  /**
   * Sends a frame of the peer's to the owner.
   *
   * @param frame The frame.
   * @returns False when the owner does not keep up.
   */
  send(frame: ArrayBuffer | string): boolean;
  /**
   * Closes the link: the peer left (its code is passed on when a client
   * may send it) or the server closed it.
   *
   * @param code The peer's close code.
   * @param reason The close reason.
   */
  close(code: number, reason: string): void;
  /** The connection is gone: stop counting the link. Idempotent. */
  release(): void;
}

/** Where a client's peer is served. */
export type Placed =
  | { readonly kind: "local"; readonly lease: Lease }
  | { readonly kind: "remote"; readonly remote: Remote }
  | { readonly kind: "refused"; readonly refusal: Refusal };

/** Where groups live, when more than one server serves them. */
export interface Placement {
  /** This node's id: fallback session ids name it. */
  readonly id: string;
  /**
   * Joins the server: its log, and where to say that groups moved.
   *
   * @param host The server.
   */
  attach(host: PlacementHost): void;
  /**
   * Starts the placement's work (its store, its renewals).
   *
   * @returns Resolves once it can place peers (or knows it cannot yet).
   */
  start(): Promise<void>;
  /**
   * Stops it and gives back what it holds.
   *
   * @returns Resolves once stopped.
   */
  close(): Promise<void>;
  /**
   * Tells a pipe from another node from a client.
   *
   * @param headers The request's headers.
   * @returns Who sent it, or why it is refused.
   */
  inbound(headers: Headers): Promise<Inbound>;
  /**
   * Places a client's peer: here (a lease), or on the owner (a link).
   *
   * @param request The peer.
   * @returns Where it goes, or why it cannot go anywhere.
   */
  place(request: PlaceRequest): Promise<Placed>;
  /**
   * Claims the group of a peer piped from another node.
   *
   * @param key The group key.
   * @returns The lease, or `undefined` when another node owns the group.
   */
  accept(key: string): Promise<Lease | undefined>;
  /**
   * Answers a fallback request for a session held by another node.
   *
   * @param request The request.
   * @param id The session id.
   * @param maxBody Most bytes a posted frame may have.
   * @returns The other node's answer, or `undefined` when the session would
   * live here.
   */
  forward(
    request: Request,
    id: string,
    maxBody: number,
  ): Promise<Response> | undefined;
  /**
   * The placement's metric families.
   *
   * @returns The families.
   */
  metrics(): MetricFamily[];
  /**
   * The placement's state as JSON, for the admin endpoint.
   *
   * @returns The view.
   */
  view(): unknown;
}
