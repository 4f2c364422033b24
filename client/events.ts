/**
 * The events a {@linkcode SigverClient} dispatches: `content`, `gone` and
 * `close`.
 *
 * @module
 */

import { type CloseInfo, SigverCloseError } from "./close.ts";

/**
 * A `content` message received from the server.
 *
 * A joining peer receives its member's messages with `senderId` 0 and its
 * own signaling id as `recipientId`; a member receives a joining peer's
 * messages with the joiner's signaling id as `senderId` and `recipientId` 0.
 *
 * @example Reply to a joining peer
 * ```ts ignore
 * import { SigverClient } from "@coast/sigver/client";
 * const client = await SigverClient.open("ws://127.0.0.1:8000", "room");
 * client.addEventListener("content", (event) => {
 *   const offer = JSON.parse(event.text());
 *   client.send(event.senderId, JSON.stringify({ answerTo: offer.id }));
 * });
 * ```
 */
export class ContentEvent extends Event {
  /** Signaling id of the sender (0: the member this peer joins). */
  readonly senderId: number;
  /** Signaling id of the recipient (0: this peer as a member). */
  readonly recipientId: number;
  /** `lastData` as received (the server does not forward it: false). */
  readonly lastData: boolean;
  /** The payload. */
  readonly data: Uint8Array;

  /**
   * Creates a `content` event.
   *
   * @param senderId Signaling id of the sender.
   * @param recipientId Signaling id of the recipient.
   * @param data The payload.
   * @param lastData The `lastData` flag received.
   */
  constructor(
    senderId: number,
    recipientId: number,
    data: Uint8Array,
    lastData = false,
  ) {
    super("content");
    this.senderId = senderId;
    this.recipientId = recipientId;
    this.data = data;
    this.lastData = lastData;
  }

  /**
   * The payload decoded as UTF-8.
   *
   * @returns The text.
   */
  text(): string {
    return new TextDecoder().decode(this.data);
  }
}

/**
 * The server's "gone" notice: the other end of a binding closed its socket.
 * On the wire it is a `content` message with no data.
 *
 * @example Tell which side is gone
 * ```ts
 * import assert from "node:assert/strict";
 * import { GoneEvent } from "./mod.ts";
 * const gone = new GoneEvent(0, 42); // as a joining peer receives it
 * assert.equal(gone.peer, "member");
 * assert.equal(gone.signalingId, 42);
 * ```
 */
export class GoneEvent extends Event {
  /** Who is gone: this peer's member, or one of its joining peers. */
  readonly peer: "member" | "joiner";
  /**
   * The signaling id of the binding: this peer's own id when its member is
   * gone, the joining peer's id when a joiner is gone.
   */
  readonly signalingId: number;
  /** `senderId` of the notice (0 when the member is gone). */
  readonly senderId: number;
  /** `recipientId` of the notice (0 when a joiner is gone). */
  readonly recipientId: number;

  /**
   * Creates a `gone` event.
   *
   * @param senderId `senderId` of the notice.
   * @param recipientId `recipientId` of the notice.
   */
  constructor(senderId: number, recipientId: number) {
    super("gone");
    this.senderId = senderId;
    this.recipientId = recipientId;
    this.peer = senderId === 0 ? "member" : "joiner";
    this.signalingId = senderId === 0 ? recipientId : senderId;
  }
}

/**
 * The signaling socket closed; dispatched once per client.
 *
 * @example Explain a close
 * ```ts ignore
 * import { SigverClient } from "@coast/sigver/client";
 * const client = await SigverClient.open("ws://127.0.0.1:8000", "room");
 * client.addEventListener("close", (event) => {
 *   console.log(`closed: ${event.code} ${event.codeName}: ${event.meaning}`);
 * });
 * ```
 */
export class SigverCloseEvent extends Event implements CloseInfo {
  /** The WebSocket close code. */
  readonly code: number;
  /** The close reason sent with it (may be empty). */
  readonly reason: string;
  /** The code's name, such as `ERR_KEY`. */
  readonly codeName: string;
  /** The code's meaning. */
  readonly meaning: string;
  /** Whether the closing handshake completed. */
  readonly wasClean: boolean;

  /**
   * Creates a `close` event.
   *
   * @param info How the socket closed.
   */
  constructor(info: CloseInfo) {
    super("close");
    this.code = info.code;
    this.reason = info.reason;
    this.codeName = info.codeName;
    this.meaning = info.meaning;
    this.wasClean = info.wasClean;
  }

  /**
   * The same close as an error, to throw or reject with.
   *
   * @returns A new {@linkcode SigverCloseError}.
   */
  toError(): SigverCloseError {
    return new SigverCloseError(this);
  }
}

/** The events of a {@linkcode SigverClient}, by type. */
export interface SigverClientEventMap {
  /** A `content` message with data. */
  content: ContentEvent;
  /** A "gone" notice (a `content` message with no data). */
  gone: GoneEvent;
  /** The socket closed. */
  close: SigverCloseEvent;
}
