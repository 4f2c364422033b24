/**
 * A peer's connection, as the handler holds it: one state record and one
 * frame check, whatever carries the peer (a WebSocket, `socket.ts`, or a
 * fallback session, `fallback.ts`) and wherever its group lives (here, in a
 * {@linkcode Protocol}, or on another node, through a {@linkcode Remote}).
 *
 * Every frame a peer sends meets the same checks here, in order: its kind
 * (text or binary, as its protocol speaks), its size, its rate. A frame that
 * passes goes to the protocol, or to the owner node.
 *
 * @module
 */

import {
  CLOSE_MESSAGE_TOO_BIG,
  CLOSE_NORMAL,
  CLOSE_POLICY_VIOLATION,
  CLOSE_SERVICE_RESTART,
  ERR_MESSAGE,
} from "../lib/codes.ts";
import {
  CloseError,
  type PeerTransport,
  type Protocol,
  type ProtocolPeer,
} from "../lib/protocol.ts";
import type { TokenBucket } from "../lib/bucket.ts";
import type { Tally } from "../lib/metrics.ts";
import type { Lease, Remote, RemoteEvents } from "./placement.ts";
import type { PeerSocket, SocketEvents } from "./socket.ts";

/** What a connection needs from the handler that holds it. */
export interface ConnHost {
  /** The rate limit. */
  readonly bucket: TokenBucket;
  /** The rate limit, in frames per second (for the close reason). */
  readonly messageRate: number;
  /** Largest frame accepted, in bytes. */
  readonly maxMessageSize: number;
  /** The rate limit's coarse clock (the time at the last tick). */
  readonly now: number;
  /** Refusals and limit closes, by reason. */
  readonly rejections: Tally;
  /** Counts a frame that broke the protocol's rules. */
  invalidFrame(): void;
  /**
   * Closes the connection's transport, and counts and logs the close.
   *
   * @param conn The connection.
   * @param code The close code.
   * @param reason The close reason.
   * @param immediately Do not wait for the transport to be quiet.
   * @returns Whether this close was counted (the first one).
   */
  closeConn(
    conn: Conn,
    code: number,
    reason: string,
    immediately: boolean,
  ): boolean;
  /**
   * The transport opened.
   *
   * @param conn The connection.
   */
  opened(conn: Conn): void;
  /**
   * The transport closed: the peer leaves.
   *
   * @param conn The connection.
   * @param code The close code (1006 for a drop).
   * @param reason The close reason.
   */
  closed(conn: Conn, code: number, reason: string): void;
}

/** Where a connection comes from and what it asks for. */
export interface ConnFacts {
  /** The client's address. */
  address: string;
  /** Whether it counts against the per-address limit. */
  counted: boolean;
  /** The key, or `undefined` when the request URL could not be parsed. */
  key: string | undefined;
  /** Whether the peer asked to be favored. */
  favored: boolean;
  /** The key prefix its access token grants, for a protocol that scopes. */
  scope?: string;
  /** The request's query string, without its `?`. */
  query?: string;
  /** The transport: for logs and events. */
  transport: "websocket" | "sse";
  /** The real clock's time, for the upgrade timeout. */
  now: number;
}

/** Close codes a client (the pipe is one) may send. */
function _clientSendable(code: number): boolean {
  return code === 1000 || (code >= 3000 && code <= 4999);
}

/**
 * A peer's connection. Its transport is made for it (the transport's events
 * come here); its group is served by `protocol` here, or by `remote` on
 * another node.
 */
export class Conn implements SocketEvents, PeerTransport, RemoteEvents {
  /** The peer's transport; set once, right after construction. */
  socket!: PeerSocket;
  readonly host: ConnHost;
  /** The protocol the peer speaks. */
  readonly protocol: Protocol;
  readonly address: string;
  readonly counted: boolean;
  readonly key: string | undefined;
  readonly favored: boolean;
  readonly scope: string | undefined;
  readonly query: string | undefined;
  readonly transport: "websocket" | "sse";
  /** The rate limit's bucket (see `lib/bucket.ts`). */
  tokens: number;
  last: number;
  /** When the upgrade was accepted (for the upgrade timeout). */
  readonly since: number;
  /** The protocol's peer, once the transport opened here. */
  peer: ProtocolPeer | undefined = undefined;
  /** The link to the owner node, for a peer whose group lives there. */
  readonly remote: Remote | undefined;
  /** The group's claim held here, on a cluster. */
  lease: Lease | undefined = undefined;
  /** Whether it came through a pipe from another node. */
  piped = false;
  released = false;
  /** Whether the server's close was counted (the transport's is then not). */
  closeCounted = false;
  /** Whether frames stopped flowing to or from the owner node. */
  #done = false;

  /**
   * Creates the connection; make its transport next.
   *
   * @param host The handler.
   * @param protocol The protocol the peer speaks.
   * @param facts Where it comes from and what it asks for.
   * @param remote The link to the owner node, when the group lives there.
   */
  constructor(
    host: ConnHost,
    protocol: Protocol,
    facts: ConnFacts,
    remote?: Remote,
  ) {
    this.host = host;
    this.protocol = protocol;
    this.address = facts.address;
    this.counted = facts.counted;
    this.key = facts.key;
    this.favored = facts.favored;
    this.scope = facts.scope;
    this.query = facts.query;
    this.transport = facts.transport;
    this.tokens = host.bucket.burst;
    // The bucket runs on the tick's clock, the upgrade timeout on the real one.
    this.last = host.now;
    this.since = facts.now;
    this.remote = remote;
  }

  /**
   * Sends one frame of the protocol's to the peer.
   *
   * @param frame The frame.
   * @throws {CloseError} When the peer reads too slowly.
   */
  send(frame: Uint8Array | string): void {
    if (!this.socket.trySend(frame)) {
      this.host.rejections.add("slow_reader");
      throw new CloseError(
        CLOSE_POLICY_VIOLATION,
        "Cannot send: the peer reads too slowly",
      );
    }
  }

  /**
   * Closes the peer's transport (and its link to the owner node, if any).
   *
   * @param code The close code.
   * @param reason The close reason.
   */
  close(code: number, reason: string): void {
    if (this.remote !== undefined) {
      this.#done = true;
      this.remote.close(CLOSE_NORMAL, "The edge closed the peer");
    }
    if (this.host.closeConn(this, code, reason, false)) {
      this.closeCounted = true;
    }
  }

  /**
   * Closes the peer for the server: through its protocol while it has a
   * live peer there (others in its group are told), otherwise directly.
   *
   * @param code The close code.
   * @param reason The close reason.
   */
  shut(code: number, reason: string): void {
    const peer = this.peer;
    if (peer !== undefined && peer.live) {
      this.protocol.close(peer, code, reason);
    } else this.close(code, reason);
  }

  onOpen(): void {
    this.host.opened(this);
  }

  onFrame(data: ArrayBuffer | string): void {
    const remote = this.remote;
    if (remote === undefined) {
      const peer = this.peer;
      if (peer === undefined || !peer.live || !this.#check(data)) return;
      this.protocol.receive(
        peer,
        typeof data === "string" ? data : new Uint8Array(data),
      );
    } else if (!this.#done && this.#check(data) && !remote.send(data)) {
      this.host.rejections.add("slow_owner");
      this.#fail(
        CLOSE_SERVICE_RESTART,
        "Cannot relay: the server node of this group does not keep up; reconnect",
      );
    }
  }

  onClose(code: number, reason: string): void {
    if (this.remote !== undefined) {
      this.#done = true;
      this.remote.close(
        _clientSendable(code) ? code : CLOSE_NORMAL,
        _clientSendable(code) ? reason : "",
      );
    }
    this.host.closed(this, code, reason);
  }

  onRemoteFrame(frame: Uint8Array | string): void {
    // Owners send binary frames only.
    if (this.#done || typeof frame === "string") return;
    if (!this.socket.trySend(frame)) {
      this.host.rejections.add("slow_reader");
      this.#fail(
        CLOSE_POLICY_VIOLATION,
        "Cannot send: the peer reads too slowly",
      );
    }
  }

  onRemoteEnd(code: number, reason: string): void {
    if (this.#done) return;
    this.#done = true;
    if (this.host.closeConn(this, code, reason, false)) {
      this.closeCounted = true;
    }
  }

  /**
   * The one frame check: kind, size, rate. A frame that fails it closes the
   * peer.
   */
  #check(data: ArrayBuffer | string): boolean {
    const host = this.host;
    if ((typeof data === "string") !== this.protocol.text) {
      host.invalidFrame();
      this.#fail(
        ERR_MESSAGE,
        this.protocol.text
          ? "Cannot handle a binary frame: frames must be text"
          : "Cannot handle a text frame: frames must be binary",
      );
      return false;
    }
    const size = typeof data === "string" ? data.length : data.byteLength;
    const max = host.maxMessageSize;
    if (size > max) {
      host.invalidFrame();
      host.rejections.add("message_size");
      this.#fail(
        CLOSE_MESSAGE_TOO_BIG,
        `Cannot handle message: ${size} bytes is over the ${max} byte limit`,
      );
      return false;
    }
    // The scheduler's clock: refills come at tick boundaries.
    if (!host.bucket.take(this, host.now)) {
      host.rejections.add("message_rate");
      this.#fail(
        CLOSE_POLICY_VIOLATION,
        `Cannot relay: over ${host.messageRate} messages per second`,
      );
      return false;
    }
    return true;
  }

  /** Closes the peer for one of its own frames, or a limit of this node. */
  #fail(code: number, reason: string): void {
    if (this.remote === undefined) this.shut(code, reason);
    else {
      this.#done = true;
      this.close(code, reason);
    }
  }
}
