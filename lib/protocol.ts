/**
 * The protocol seam: how the server drives one client protocol (Netflux's
 * groups today; others beside it, each under its own URL space). The
 * binding owns the sockets, the limits and the clock; a protocol owns its
 * state and speaks to each peer only through the {@linkcode PeerTransport}
 * it was given when the peer's transport opened.
 *
 * A protocol is pure: it is driven by explicit calls (a peer opened, a
 * frame, a close, a tick) and never does I/O itself.
 *
 * @module
 */

import type { MetricFamily } from "./metrics.ts";

/**
 * Thrown by a {@linkcode PeerTransport} whose peer must be closed with a
 * given code (for example a slow reader): the protocol closes the peer with
 * it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CloseError } from "./protocol.ts";
 * const error = new CloseError(1008, "Cannot send: the peer reads too slowly");
 * assert.equal(error.code, 1008);
 * ```
 */
export class CloseError extends Error {
  /** The WebSocket close code to close the peer with. */
  readonly code: number;
  /**
   * Creates the error.
   *
   * @param code The WebSocket close code.
   * @param message The close reason (at most 123 bytes of UTF-8).
   */
  constructor(code: number, message: string) {
    super(message);
    this.name = "CloseError";
    this.code = code;
  }
}

/** How a protocol reaches one peer's transport. */
export interface PeerTransport {
  /**
   * Sends one frame (copied at once): bytes as a binary frame, a string as
   * a text frame. May throw a {@linkcode CloseError}: the peer must then be
   * closed with its code.
   */
  send(frame: Uint8Array | string): void;
  /** Closes the transport with a WebSocket close code and a reason. */
  close(code: number, reason: string): void;
}

/** What the request that opened a peer's transport asked for. */
export interface PeerRequest {
  /**
   * The path below the protocol's mount point, without its leading `/` and
   * with its percent-encoding kept (a Netflux group key); `undefined` when
   * the request URL could not be parsed.
   */
  readonly key: string | undefined;
  /** Whether the query string has a `favored` parameter. */
  readonly favored: boolean;
  /**
   * With access tokens on, the key prefix the peer's token grants, for a
   * protocol that scopes what a peer may reach by it (topics, ids).
   */
  readonly scope?: string;
  /** The request's query string, without its `?` (`""` when none). */
  readonly query?: string;
}

/** A peer as a protocol shows it to the binding. */
export interface ProtocolPeer {
  /** The peer's id in its protocol, for logs. */
  readonly id: number | string;
  /** Whether the protocol still knows this peer (false once closed). */
  readonly live: boolean;
}

/**
 * One client protocol, as the binding drives it. The binding checks every
 * frame's kind, size and rate before {@linkcode Protocol.receive} sees it,
 * and counts, logs and releases every transport that closes.
 */
export interface Protocol<P extends ProtocolPeer = ProtocolPeer> {
  /** The protocol's name: a label of metrics and logs. */
  readonly name: string;
  /** Whether its frames are text (JSON) rather than binary. */
  readonly text: boolean;
  /** Live peers. */
  readonly size: number;
  /**
   * A peer's transport opened. A request the protocol refuses is closed
   * through `transport` with a code and a reason, and gets no peer.
   *
   * @param transport How to reach the peer.
   * @param request What its request asked for.
   * @returns The peer, or `undefined` when it was refused.
   */
  open(transport: PeerTransport, request: PeerRequest): P | undefined;
  /**
   * One frame from a live peer, of the protocol's kind and within limits.
   *
   * @param peer The sender.
   * @param frame The frame: bytes the protocol may overwrite, or text.
   */
  receive(peer: P, frame: Uint8Array | string): void;
  /**
   * Closes a peer for the server (a limit, a drain, a moved group): the
   * protocol forgets it, tells whoever must know, and closes its transport.
   *
   * @param peer The peer.
   * @param code A WebSocket close code.
   * @param reason A short reason (at most 123 bytes of UTF-8).
   */
  close(peer: P, code: number, reason: string): void;
  /**
   * Forgets a peer whose transport closed. Idempotent.
   *
   * @param peer The peer.
   */
  forget(peer: P): void;
  /** One scheduler tick: heartbeats, expiries. */
  tick(): void;
  /**
   * The protocol's own metric families, labelled with its name.
   *
   * @returns The families.
   */
  metrics?(): MetricFamily[];
}

/**
 * A protocol served under its own URL space below the server's base path
 * (and below `/t/<token>/` with access tokens): `/y-webrtc`, or
 * `/peerjs/...`. Netflux takes every path no mount claims.
 */
export interface ProtocolMount {
  /** The protocol. */
  readonly protocol: Protocol;
  /** The path it serves, without its leading `/` (`"y-webrtc"`). */
  readonly path: string;
  /** Whether the paths below it (`peerjs/...`) are its too. */
  readonly prefix: boolean;
  /**
   * Answers a plain HTTP request on its paths (not an upgrade): a GET that
   * says the server is there, a protocol's own routes. The server checked
   * the request's token first, when tokens are on.
   *
   * @param request The request.
   * @param rest The path below the mount (`""`, or `/...`).
   * @param scope The key prefix the request's token grants, with tokens on.
   * @returns The answer, or `undefined` for the server's own answer.
   */
  http?(
    request: Request,
    rest: string,
    scope: string | undefined,
  ): Response | Promise<Response> | undefined;
}
