/**
 * The close codes a y-webrtc client can get from sigver, beside the
 * standard ones every peer can get (1001 drain, 1008 rate or slow reader,
 * 1009 too big): y-webrtc has no error message, so a refusal is a close
 * with a code and a reason. The reasons never name a topic: they are
 * logged, and topics are logged only as hashes.
 *
 * @module
 */

import { ERR_HEARTBEAT, ERR_MESSAGE } from "../codes.ts";

/**
 * Nothing received for the idle timeout (a y-webrtc client pings every
 * 15 s): Netflux's missed-heartbeat code, reused.
 */
export const YWEBRTC_IDLE = ERR_HEARTBEAT;
/**
 * A frame that is not a y-webrtc message: not JSON, not an object, no known
 * `type`, or fields of the wrong shape. Netflux's bad-message code, reused.
 */
export const YWEBRTC_MALFORMED = ERR_MESSAGE;
/** A topic that is empty or longer than the server's topic length limit. */
export const YWEBRTC_TOPIC_LENGTH = 4750;
/** One connection subscribed to more topics than the server allows. */
export const YWEBRTC_TOO_MANY_TOPICS = 4751;
/** A topic that already has as many subscribers as the server allows. */
export const YWEBRTC_TOPIC_FULL = 4752;
/** A topic outside the prefix the access token grants. */
export const YWEBRTC_SCOPE = 4753;

/**
 * The y-webrtc close codes, with their names and meanings (as
 * `lib/codes.ts` lists Netflux's).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { YWEBRTC_CLOSE_CODES, YWEBRTC_SCOPE } from "./codes.ts";
 * assert.equal(YWEBRTC_CLOSE_CODES[YWEBRTC_SCOPE].name, "YWEBRTC_SCOPE");
 * ```
 */
export const YWEBRTC_CLOSE_CODES: Readonly<
  Record<number, { readonly name: string; readonly meaning: string }>
> = {
  [YWEBRTC_IDLE]: {
    name: "YWEBRTC_IDLE",
    meaning: "the client sent nothing (not even a ping) for the idle timeout",
  },
  [YWEBRTC_MALFORMED]: {
    name: "YWEBRTC_MALFORMED",
    meaning:
      "a frame was not a y-webrtc message (JSON object with a known type and well-formed fields)",
  },
  [YWEBRTC_TOPIC_LENGTH]: {
    name: "YWEBRTC_TOPIC_LENGTH",
    meaning: "a topic (room name) was empty or over the length limit",
  },
  [YWEBRTC_TOO_MANY_TOPICS]: {
    name: "YWEBRTC_TOO_MANY_TOPICS",
    meaning: "the connection subscribed to more topics than allowed",
  },
  [YWEBRTC_TOPIC_FULL]: {
    name: "YWEBRTC_TOPIC_FULL",
    meaning: "a topic already had as many subscribers as allowed",
  },
  [YWEBRTC_SCOPE]: {
    name: "YWEBRTC_SCOPE",
    meaning: "a topic was outside the prefix the access token grants",
  },
};
