/**
 * The PeerJS server protocol's messages, as `peer` 1.0.2 sends them and the
 * `peerjs` 1.5.5 client reads them: one JSON object per text frame,
 * `{type, src?, dst?, payload?}`.
 *
 * @module
 */

/** The server accepted the socket: the client calls itself open. */
export const OPEN = "OPEN";
/** A refusal; the client aborts with `payload.msg`. */
export const ERROR = "ERROR";
/** The id asked for is held with another token. */
export const ID_TAKEN = "ID-TAKEN";
/** The client is alive; no answer. */
export const HEARTBEAT = "HEARTBEAT";
/** Messages queued for an absent id went undelivered. */
export const EXPIRE = "EXPIRE";
/** Another peer left; relayed like the negotiation messages. */
export const LEAVE = "LEAVE";

/** The message types relayed from one client to another. */
export const RELAYED: ReadonlySet<string> = new Set([
  "OFFER",
  "ANSWER",
  "CANDIDATE",
  LEAVE,
]);

/** A client's message, as far as the server reads it. */
export interface ClientMessage {
  /** Its type. */
  type: string;
  /** The id it goes to (relayed types). */
  dst?: unknown;
  /** What it carries, relayed as it came. */
  payload?: unknown;
}

/**
 * Reads one text frame from a client.
 *
 * @param text The frame.
 * @returns The message.
 * @throws {SyntaxError} When it is not JSON, or not an object with a string
 * `type`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseClientMessage } from "./wire.ts";
 * assert.equal(parseClientMessage('{"type":"HEARTBEAT"}').type, "HEARTBEAT");
 * assert.throws(() => parseClientMessage("[]"), SyntaxError);
 * ```
 */
export function parseClientMessage(text: string): ClientMessage {
  const message = JSON.parse(text);
  if (
    typeof message !== "object" || message === null ||
    typeof message.type !== "string"
  ) {
    throw new SyntaxError("Cannot read message: not an object with a type");
  }
  return message;
}

/**
 * A message of the server's own, without source or destination.
 *
 * @param type `OPEN`, `ERROR` or `ID-TAKEN`.
 * @param msg The text of `payload.msg`, if any.
 * @returns The frame.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { serverMessage } from "./wire.ts";
 * assert.equal(serverMessage("OPEN"), '{"type":"OPEN"}');
 * assert.equal(serverMessage("ID-TAKEN", "ID is taken"), '{"type":"ID-TAKEN","payload":{"msg":"ID is taken"}}');
 * ```
 */
export function serverMessage(type: string, msg?: string): string {
  return msg === undefined
    ? JSON.stringify({ type })
    : JSON.stringify({ type, payload: { msg } });
}

/**
 * A relayed message: its source is the sender's id, set by the server, and
 * its payload is passed on as it came (nothing else of the sender's).
 *
 * @param type The type.
 * @param src The sender's id, as JSON (`JSON.stringify(id)`).
 * @param dst The destination id, as JSON.
 * @param payload The payload (`undefined`: none).
 * @returns The frame.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { relayMessage } from "./wire.ts";
 * assert.equal(
 *   relayMessage("OFFER", '"a"', '"b"', { sdp: "x" }),
 *   '{"type":"OFFER","src":"a","dst":"b","payload":{"sdp":"x"}}',
 * );
 * ```
 */
export function relayMessage(
  type: string,
  src: string,
  dst: string,
  payload: unknown,
): string {
  const head = `{"type":${JSON.stringify(type)},"src":${src},"dst":${dst}`;
  const body = payload === undefined ? undefined : JSON.stringify(payload);
  return body === undefined ? head + "}" : `${head},"payload":${body}}`;
}
