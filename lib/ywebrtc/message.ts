/**
 * y-webrtc's signaling messages, as y-webrtc 10.3 clients send them: JSON
 * text frames `{type: "subscribe" | "unsubscribe", topics}`,
 * `{type: "publish", topic, data}` and `{type: "ping"}`. A publish is
 * forwarded as it came, with the subscriber count added
 * ({@linkcode withClients}), as the original server does.
 *
 * @module
 */

import { YWEBRTC_MALFORMED } from "./codes.ts";

/** A message a y-webrtc client sends. */
export type YWebrtcMessage =
  | { readonly type: "subscribe"; readonly topics: readonly string[] }
  | { readonly type: "unsubscribe"; readonly topics: readonly string[] }
  | { readonly type: "publish"; readonly topic: string }
  | { readonly type: "ping" };

/** Why a frame is not a message: the close to answer it with. */
export interface Malformed {
  /** The close code ({@linkcode YWEBRTC_MALFORMED}). */
  readonly code: number;
  /** The close reason. */
  readonly reason: string;
}

/** The answer to a ping. */
export const PONG = '{"type":"pong"}';

function _malformed(reason: string): Malformed {
  return {
    code: YWEBRTC_MALFORMED,
    reason: `Cannot handle message: ${reason}`,
  };
}

function _topics(value: unknown): readonly string[] | undefined {
  if (!Array.isArray(value)) return undefined;
  for (const topic of value) if (typeof topic !== "string") return undefined;
  return value;
}

/**
 * Reads one text frame.
 *
 * @param text The frame.
 * @returns The message, or why it is malformed (a close to answer with).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseMessage } from "./message.ts";
 * assert.deepEqual(parseMessage('{"type":"subscribe","topics":["a"]}'), {
 *   type: "subscribe",
 *   topics: ["a"],
 * });
 * assert.equal((parseMessage("nope") as { code: number }).code, 4743);
 * ```
 */
export function parseMessage(text: string): YWebrtcMessage | Malformed {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return _malformed("not JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return _malformed("not a JSON object");
  }
  const message = value as Record<string, unknown>;
  switch (message.type) {
    case "publish": {
      const topic = message.topic;
      return typeof topic === "string"
        ? { type: "publish", topic }
        : _malformed("a publish needs a string topic");
    }
    case "subscribe":
    case "unsubscribe": {
      const topics = _topics(message.topics);
      return topics === undefined
        ? _malformed(
          `${
            message.type === "subscribe" ? "a" : "an"
          } ${message.type} needs topics, an array of strings`,
        )
        : { type: message.type, topics };
    }
    case "ping":
      return { type: "ping" };
    default:
      return _malformed(
        typeof message.type === "string"
          ? "unknown type"
          : "no type (a string)",
      );
  }
}

/**
 * A publish as subscribers get it: the sender's text with `clients` (the
 * number of subscribers) added last, so that a client reading it sees that
 * count even when the sender put a `clients` of its own. Built once per
 * publish, whatever the number of subscribers.
 *
 * @param text A frame that {@linkcode parseMessage} read as a publish.
 * @param clients The number of subscribers.
 * @returns The frame to forward.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { withClients } from "./message.ts";
 * const out = withClients('{"type":"publish","topic":"a","data":1} ', 2);
 * assert.deepEqual(JSON.parse(out), { type: "publish", topic: "a", data: 1, clients: 2 });
 * ```
 */
export function withClients(text: string, clients: number): string {
  // A JSON object with a type ends with its closing brace, maybe then
  // whitespace; it is not empty, so a comma may follow its last member.
  return `${text.slice(0, text.lastIndexOf("}"))},"clients":${clients}}`;
}
