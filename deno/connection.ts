/**
 * A local peer's connection, as the handler holds it: its transport, its
 * hub peer once open, where it comes from, and its rate limit's state. Two
 * transports carry a peer, with one set of rules:
 *
 * - {@linkcode WsConn}: a WebSocket. It extends the socket adapter: one
 *   object per peer, as a server holds tens of thousands of them.
 * - {@linkcode SseConn}: the WebSocket-free fallback (Server-Sent Events
 *   down, POSTs up), which holds its session.
 *
 * Both hand their events to a {@linkcode ConnHost} (the handler) and are the
 * hub's transport for their peer.
 *
 * @module
 */

import { CLOSE_POLICY_VIOLATION } from "../lib/codes.ts";
import {
  CloseError,
  type Peer,
  type PeerTransport,
} from "../lib/netflux/hub.ts";
import type { Tally } from "../lib/metrics.ts";
import {
  AdaptedSocket,
  type PeerSocket,
  type SocketContext,
} from "./socket.ts";
import { type SseContext, SseSession } from "./fallback.ts";

/** What a connection needs from the handler that holds it. */
export interface ConnHost {
  /** The shared tick count and WebSocket settings. */
  readonly socketContext: SocketContext;
  /** The shared tick count and fallback settings. */
  readonly sseContext: SseContext;
  /** Tokens a fresh rate-limit bucket holds. */
  readonly burst: number;
  /** The rate limit's coarse clock (the time at the last tick). */
  readonly now: number;
  /** Refusals and limit closes, by reason. */
  readonly rejections: Tally;
  /**
   * Closes the connection's transport, and counts and logs the close.
   *
   * @param conn The connection.
   * @param code The close code.
   * @param reason The close reason.
   * @param immediately Do not wait for the transport to be quiet.
   */
  closeConn(
    conn: LocalConn,
    code: number,
    reason: string,
    immediately: boolean,
  ): void;
  /**
   * The transport opened: the peer joins the hub.
   *
   * @param conn The connection.
   */
  opened(conn: LocalConn): void;
  /**
   * A frame came from the peer.
   *
   * @param conn The connection.
   * @param data A binary frame's bytes, or a text frame's text.
   */
  frame(conn: LocalConn, data: ArrayBuffer | string): void;
  /**
   * The transport closed: the peer leaves.
   *
   * @param conn The connection.
   * @param code The close code (1006 for a drop).
   * @param reason The close reason.
   */
  closed(conn: LocalConn, code: number, reason: string): void;
}

/** Where a connection comes from and what it asks for. */
export interface ConnFacts {
  /** The client's address. */
  address: string;
  /** Whether it counts against the per-address limit. */
  counted: boolean;
  /** The key, or `undefined` when the request URL had no path. */
  key: string | undefined;
  /** Whether the peer asked to be favored. */
  favored: boolean;
  /** The real clock's time, for the upgrade timeout. */
  now: number;
}

/** A local peer's connection, whatever its transport. */
export type LocalConn = WsConn | SseConn;

function _slowReader(host: ConnHost): CloseError {
  host.rejections.add("slow_reader");
  return new CloseError(
    CLOSE_POLICY_VIOLATION,
    "Cannot send: the peer reads too slowly",
  );
}

/** A local peer on a WebSocket: the socket adapter and the connection. */
export class WsConn extends AdaptedSocket implements PeerTransport {
  readonly host: ConnHost;
  readonly address: string;
  readonly counted: boolean;
  readonly key: string | undefined;
  readonly favored: boolean;
  peer: Peer | undefined = undefined;
  /** The rate limit's bucket (see `lib/bucket.ts`). */
  tokens: number;
  last: number;
  /** When the upgrade was accepted (for the upgrade timeout). */
  readonly since: number;
  released = false;
  /** Whether it holds a cluster lease on its key (released with it). */
  leased = false;
  /** Whether it came through a pipe from another node. */
  piped = false;

  /**
   * Adapts a new WebSocket.
   *
   * @param host The handler.
   * @param raw The socket from `Deno.upgradeWebSocket`.
   * @param facts Where it comes from and what it asks for.
   */
  constructor(host: ConnHost, raw: WebSocket, facts: ConnFacts) {
    super(raw, host.socketContext);
    this.host = host;
    this.address = facts.address;
    this.counted = facts.counted;
    this.key = facts.key;
    this.favored = facts.favored;
    this.tokens = host.burst;
    // The bucket runs on the tick's clock, the upgrade timeout on the real one.
    this.last = host.now;
    this.since = facts.now;
  }

  /** The connection's transport: itself. */
  get socket(): PeerSocket {
    return this;
  }

  send(frame: Uint8Array): void {
    if (!this.trySend(frame)) throw _slowReader(this.host);
  }

  close(code: number, reason: string): void {
    this.host.closeConn(this, code, reason, false);
  }

  onOpen(): void {
    this.host.opened(this);
  }

  onFrame(data: ArrayBuffer | string): void {
    this.host.frame(this, data);
  }

  onClose(code: number, reason: string): void {
    this.host.closed(this, code, reason);
  }
}

/** A local peer on the fallback transport: its session and the connection. */
export class SseConn implements PeerTransport {
  readonly host: ConnHost;
  /** The session: the stream down, the frames up. */
  readonly socket: SseSession;
  readonly address: string;
  readonly counted: boolean;
  readonly key: string | undefined;
  readonly favored: boolean;
  peer: Peer | undefined = undefined;
  /** The rate limit's bucket (see `lib/bucket.ts`). */
  tokens: number;
  last: number;
  /** When the session was accepted. */
  readonly since: number;
  released = false;
  /** Whether it holds a cluster lease on its key (released with it). */
  leased = false;
  /** Whether it came through a pipe from another node (never: pipes are WebSockets). */
  readonly piped = false;

  /**
   * Creates a session.
   *
   * @param host The handler.
   * @param id The new session's id.
   * @param facts Where it comes from and what it asks for.
   */
  constructor(host: ConnHost, id: string, facts: ConnFacts) {
    this.host = host;
    this.address = facts.address;
    this.counted = facts.counted;
    this.key = facts.key;
    this.favored = facts.favored;
    this.tokens = host.burst;
    this.last = host.now;
    this.since = facts.now;
    this.socket = new SseSession(id, {
      onOpen: () => host.opened(this),
      onFrame: (data) => host.frame(this, data),
      onClose: (code, reason) => host.closed(this, code, reason),
    }, host.sseContext);
  }

  send(frame: Uint8Array): void {
    if (!this.socket.trySend(frame)) throw _slowReader(this.host);
  }

  close(code: number, reason: string): void {
    this.host.closeConn(this, code, reason, false);
  }
}
