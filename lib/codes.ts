/**
 * Every WebSocket close code a sigver peer can see, defined once with its
 * name and meaning: the protocol's 4741-4745 and the standard codes the
 * server closes with. The server, the client and the tests all use these.
 *
 * @module
 */

/** The socket was closed normally. */
export const CLOSE_NORMAL = 1000;
/** The server is shutting down. */
export const CLOSE_GOING_AWAY = 1001;
/** The connection dropped without a close frame (never sent on the wire). */
export const CLOSE_ABNORMAL = 1006;
/** A limit of the server's policy was passed (rate, slow reader, upgrade). */
export const CLOSE_POLICY_VIOLATION = 1008;
/** A message was larger than the maximum message size. */
export const CLOSE_MESSAGE_TOO_BIG = 1009;
/** The node that held the peer's group went away: reconnect. */
export const CLOSE_SERVICE_RESTART = 1012;
/** Key empty, or longer than 512 characters. */
export const ERR_KEY = 4741;
/** Three heartbeat periods in a row without a heartbeat from the peer. */
export const ERR_HEARTBEAT = 4742;
/** Text frame, undecodable frame, or message with no type. */
export const ERR_MESSAGE = 4743;
/** The peer was the only member and blocked a joining peer: replaced. */
export const ERR_BLOCKING_MEMBER = 4744;
/** The request URL cannot be parsed, or sending to the peer failed. */
export const ERR_URL = 4745;

/** What a WebSocket close code means for a sigver peer. */
export interface CloseCodeInfo {
  /** Short name, such as `ERR_KEY` or `GOING_AWAY`. */
  readonly name: string;
  /** One sentence saying why the socket was closed. */
  readonly meaning: string;
}

/**
 * The close codes a sigver peer can see, with their names and meanings.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CLOSE_CODES, ERR_HEARTBEAT } from "./codes.ts";
 * assert.equal(CLOSE_CODES[ERR_HEARTBEAT].name, "ERR_HEARTBEAT");
 * ```
 */
export const CLOSE_CODES: Readonly<Record<number, CloseCodeInfo>> = {
  [CLOSE_NORMAL]: {
    name: "NORMAL",
    meaning: "the socket was closed normally",
  },
  [CLOSE_GOING_AWAY]: {
    name: "GOING_AWAY",
    meaning: "the server is shutting down (or the page is going away)",
  },
  [CLOSE_ABNORMAL]: {
    name: "ABNORMAL",
    meaning:
      "the connection failed or dropped without a close frame; the server may have refused the upgrade (HTTP 401 or 403 access, 429 too many peers from this address, 503 full or draining) or be unreachable",
  },
  [CLOSE_POLICY_VIOLATION]: {
    name: "POLICY_VIOLATION",
    meaning:
      "a server limit was passed: too many messages per second, a reader too slow, or an upgrade that took too long",
  },
  [CLOSE_MESSAGE_TOO_BIG]: {
    name: "MESSAGE_TOO_BIG",
    meaning: "a message was larger than the server's maximum message size",
  },
  [CLOSE_SERVICE_RESTART]: {
    name: "SERVICE_RESTART",
    meaning:
      "the server node that held this group went away; reconnect and the group forms again",
  },
  [ERR_KEY]: {
    name: "ERR_KEY",
    meaning: "the key (room name) is empty or longer than 512 characters",
  },
  [ERR_HEARTBEAT]: {
    name: "ERR_HEARTBEAT",
    meaning: "the peer missed three heartbeats in a row",
  },
  [ERR_MESSAGE]: {
    name: "ERR_MESSAGE",
    meaning:
      "the peer sent a text frame, an undecodable frame or a message with no type",
  },
  [ERR_BLOCKING_MEMBER]: {
    name: "ERR_BLOCKING_MEMBER",
    meaning:
      "this peer was the only member of its group and a joining peer that could not connect to it took its place",
  },
  [ERR_URL]: {
    name: "ERR_URL",
    meaning:
      "the request URL could not be parsed, or the server failed to send to this peer",
  },
};

/**
 * Names and explains a WebSocket close code.
 *
 * @param code The close code.
 * @returns Its name and meaning; `UNKNOWN` for a code sigver does not use.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { describeCloseCode } from "./codes.ts";
 * assert.equal(describeCloseCode(4741).name, "ERR_KEY");
 * assert.equal(describeCloseCode(4000).name, "UNKNOWN");
 * ```
 */
export function describeCloseCode(code: number): CloseCodeInfo {
  return CLOSE_CODES[code] ?? {
    name: "UNKNOWN",
    meaning: `close code ${code} is not one sigver uses`,
  };
}
