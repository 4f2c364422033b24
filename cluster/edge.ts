/**
 * A peer whose group lives on another node: its socket on this node (the
 * edge) and its pipe to the owner. Frames go through verbatim both ways;
 * the edge applies only its own size, rate and slow-reader limits, and the
 * owner keeps every protocol rule (its heartbeats pass end to end). Close
 * codes and reasons are mirrored; a pipe that drops closes the peer with
 * 1012, so that it reconnects and its group forms again on a live node.
 *
 * The pipe opens before the peer's upgrade is answered (see
 * {@linkcode openPipe}): an owner that cannot be reached is taken over and
 * the peer is served locally instead, and an owner's refusal reaches the
 * peer as the same HTTP status.
 *
 * @module
 */

import type { TokenBucket } from "../lib/bucket.ts";
import {
  CLOSE_MESSAGE_TOO_BIG,
  CLOSE_NORMAL,
  CLOSE_POLICY_VIOLATION,
  CLOSE_SERVICE_RESTART,
} from "../lib/codes.ts";
import type { Tally } from "../lib/metrics.ts";
import type {
  PeerSocket,
  SocketContext,
  SocketEvents,
} from "../deno/socket.ts";
import {
  Pipe,
  type PipeEnd,
  type PipeEvents,
  type PipeOptions,
} from "./pipe.ts";

/** What an edge connection needs from the handler that holds it. */
export interface EdgeHost {
  /** The shared tick count and socket settings. */
  readonly socketContext: SocketContext;
  /** The rate limit. */
  readonly bucket: TokenBucket;
  /** Largest frame accepted. */
  readonly maxMessageSize: number;
  /** The rate limit's coarse clock (the time at the last tick). */
  readonly now: number;
  /** Refusals and limit closes, by reason. */
  readonly rejections: Tally;
  /**
   * Closes the peer's socket, and counts and logs the close.
   *
   * @param conn The connection.
   * @param code The close code.
   * @param reason The close reason.
   */
  closeEdge(conn: EdgeConn, code: number, reason: string): void;
  /**
   * The peer's socket opened.
   *
   * @param conn The connection.
   */
  edgeOpened(conn: EdgeConn): void;
  /**
   * The peer's socket closed: forget the connection.
   *
   * @param conn The connection.
   * @param code The close code (1006 for a drop).
   * @param reason The close reason.
   */
  edgeClosed(conn: EdgeConn, code: number, reason: string): void;
}

/** Close codes a server may put on the wire (RFC 6455 7.4). */
function _sendable(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
    (code >= 3000 && code <= 4999);
}

/** Close codes a client (the pipe is one) may send. */
function _clientSendable(code: number): boolean {
  return code === 1000 || (code >= 3000 && code <= 4999);
}

/**
 * Opens a pipe and waits until it is open or has failed.
 *
 * @param url The owner's URL for the peer's path.
 * @param headers The signed pipe headers.
 * @param options Timeout and bounds.
 * @returns The open pipe, or how it failed.
 */
export function openPipe(
  url: string,
  headers: Record<string, string>,
  options: PipeOptions,
): Promise<{ pipe: PendingPipe } | { end: PipeEnd }> {
  const pending = new PendingPipe();
  const pipe = new Pipe(url, headers, pending, options);
  pending.pipe = pipe;
  return pending.settled;
}

/**
 * A pipe until its edge connection takes it: it holds the frames the owner
 * sends before the peer's socket exists (none in practice: the owner speaks
 * only when spoken to) and how it ended, if it ends first.
 */
export class PendingPipe implements PipeEvents {
  /** The pipe. */
  pipe: Pipe | undefined;
  #resolve: (value: { pipe: PendingPipe } | { end: PipeEnd }) => void;
  /** Settles once the pipe opened or failed. */
  readonly settled: Promise<{ pipe: PendingPipe } | { end: PipeEnd }>;
  #target: PipeEvents | undefined;
  #frames: (Uint8Array | string)[] = [];
  #end: PipeEnd | undefined;

  constructor() {
    const { promise, resolve } = Promise.withResolvers<
      { pipe: PendingPipe } | { end: PipeEnd }
    >();
    this.settled = promise;
    this.#resolve = resolve;
  }

  /**
   * Hands the pipe's events over to its connection, replaying what came.
   *
   * @param target The connection.
   */
  attach(target: PipeEvents): void {
    this.#target = target;
    for (const frame of this.#frames) target.onPipeFrame(frame);
    this.#frames = [];
    if (this.#end !== undefined) target.onPipeEnd(this.#end);
  }

  onPipeOpen(): void {
    this.#resolve({ pipe: this });
  }

  onPipeFrame(data: Uint8Array | string): void {
    if (this.#target !== undefined) this.#target.onPipeFrame(data);
    // Kept for later: a copy of the pipe's view.
    else this.#frames.push(typeof data === "string" ? data : data.slice());
  }

  onPipeEnd(end: PipeEnd): void {
    this.#resolve({ end });
    if (this.#target === undefined) this.#end = end;
    else this.#target.onPipeEnd(end);
  }
}

/** A peer on this node whose group lives on another node. */
export class EdgeConn implements SocketEvents, PipeEvents {
  /** The peer's socket on this node (a WebSocket, or a fallback session). */
  readonly socket: PeerSocket;
  readonly address: string;
  readonly counted: boolean;
  readonly key: string;
  /** The owner node it is piped to. */
  readonly owner: string;
  /** The rate limit's bucket (see `lib/bucket.ts`). */
  tokens: number;
  last: number;
  /** When the upgrade was accepted (for the upgrade timeout). */
  readonly since: number;
  released = false;
  /** Whether the server's close was counted (the socket's is then not). */
  closeCounted = false;
  readonly #host: EdgeHost;
  readonly #pipe: Pipe;
  #done = false;

  /**
   * Joins a peer's new socket to its open pipe.
   *
   * @param host The handler.
   * @param socket Makes the peer's socket, given who hears its events.
   * @param pipe The open pipe, from {@linkcode openPipe}.
   * @param facts The peer's address, key and owner, and the time.
   */
  constructor(
    host: EdgeHost,
    socket: (events: SocketEvents) => PeerSocket,
    pipe: PendingPipe,
    facts: {
      address: string;
      counted: boolean;
      key: string;
      owner: string;
      now: number;
    },
  ) {
    this.#host = host;
    this.address = facts.address;
    this.counted = facts.counted;
    this.key = facts.key;
    this.owner = facts.owner;
    this.tokens = host.bucket.burst;
    // The bucket runs on the tick's clock, the upgrade timeout on the real one.
    this.last = host.now;
    this.since = facts.now;
    this.#pipe = pipe.pipe!;
    this.socket = socket(this);
    pipe.attach(this);
  }

  /**
   * Closes the peer and its pipe (a limit, or the server shutting down).
   *
   * @param code The close code.
   * @param reason The close reason.
   */
  close(code: number, reason: string): void {
    this.#pipe.close(CLOSE_NORMAL, "The edge closed the peer");
    this.#host.closeEdge(this, code, reason);
  }

  onOpen(): void {
    this.#host.edgeOpened(this);
  }

  onFrame(data: ArrayBuffer | string): void {
    if (this.#done) return;
    const host = this.#host;
    const size = typeof data === "string" ? data.length : data.byteLength;
    if (size > host.maxMessageSize) {
      host.rejections.add("message_size");
      this.#fail(
        CLOSE_MESSAGE_TOO_BIG,
        `Cannot handle message: ${size} bytes is over the ${host.maxMessageSize} byte limit`,
      );
    } else if (!host.bucket.take(this, host.now)) {
      host.rejections.add("message_rate");
      this.#fail(
        CLOSE_POLICY_VIOLATION,
        `Cannot relay: over ${host.bucket.perMs * 1000} messages per second`,
      );
    } else if (!this.#pipe.send(data)) {
      host.rejections.add("slow_owner");
      this.#fail(
        CLOSE_SERVICE_RESTART,
        "Cannot relay: the server node of this group does not keep up; reconnect",
      );
    }
  }

  onClose(code: number, reason: string): void {
    this.#done = true;
    this.#pipe.close(
      _clientSendable(code) ? code : CLOSE_NORMAL,
      _clientSendable(code) ? reason : "",
    );
    this.#host.edgeClosed(this, code, reason);
  }

  onPipeOpen(): void {}

  onPipeFrame(data: Uint8Array | string): void {
    if (this.#done) return;
    // Owners send binary frames only.
    if (typeof data === "string") return;
    if (!this.socket.trySend(data)) {
      this.#host.rejections.add("slow_reader");
      this.#fail(
        CLOSE_POLICY_VIOLATION,
        "Cannot send: the peer reads too slowly",
      );
    }
  }

  onPipeEnd(end: PipeEnd): void {
    if (this.#done) return;
    this.#done = true;
    if (end.kind === "closed" && _sendable(end.code)) {
      this.#host.closeEdge(this, end.code, end.reason);
    } else {
      this.#host.closeEdge(
        this,
        CLOSE_SERVICE_RESTART,
        "Cannot relay: the server node of this group went away; reconnect",
      );
    }
  }

  /** Closes the peer for a limit of this edge. */
  #fail(code: number, reason: string): void {
    this.#done = true;
    this.close(code, reason);
  }
}
