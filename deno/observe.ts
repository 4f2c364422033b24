/**
 * What the handler counts and logs about its peers: refusals and limit
 * closes by reason, closes by code, opens, and the log lines that go with
 * them. Keys are logged as their hash, never as they are; a busy server's
 * ordinary comings and goings are `debug`.
 *
 * @module
 */

import type { Refusal } from "../lib/admission.ts";
import {
  CLOSE_CODES,
  CLOSE_GOING_AWAY,
  ERR_BLOCKING_MEMBER,
  ERR_HEARTBEAT,
} from "../lib/codes.ts";
import {
  keyHash,
  type LogFields,
  type Logger,
  type LogLevel,
} from "../lib/log.ts";
import { Tally } from "../lib/metrics.ts";
import { textResponse } from "./endpoints.ts";

/**
 * The label of a close code: a client may send any code from 3000 to 4999,
 * so codes the server does not know (neither RFC 6455's nor sigver's) count
 * under one label, and the metric keeps a bounded set of series.
 */
function _codeLabel(code: number, by: "server" | "client"): string {
  return by === "server" || code <= 1015 || code in CLOSE_CODES
    ? String(code)
    : "other";
}

/** A peer joining or leaving, as `HandlerOptions.onPeer` hears it. */
export interface PeerEvent {
  /** What happened. */
  type: "joined" | "left";
  /** The hash of the peer's key, as logs show it: never the key itself. */
  key: string;
  /** The protocol it speaks. */
  protocol: string;
  /** What carries it. */
  transport: "websocket" | "sse";
  /** Whether its group lives on another node, which it is linked to. */
  remote: boolean;
  /** For `left`: the close code (1006 for a drop). */
  code?: number;
  /** For `left`: the close reason. */
  reason?: string;
  /** For `left`: who closed. */
  by?: "server" | "client";
}

/**
 * Log levels of closes: a peer's ordinary comings and goings are `debug`
 * (tens of thousands a minute on a busy server); a peer closed for a limit
 * or for bad input is `info`, with its reason.
 *
 * @param code The close code.
 * @param by Who closed: the server, or the client (or the network).
 * @returns The level of the close's log line.
 */
export function closeLevel(code: number, by: "server" | "client"): LogLevel {
  if (by === "client") return "debug";
  return code === CLOSE_GOING_AWAY || code === ERR_HEARTBEAT ||
      code === ERR_BLOCKING_MEMBER
    ? "debug"
    : "info";
}

/**
 * The handler's counters and log.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Logger } from "../lib/log.ts";
 * import { Observer } from "./observe.ts";
 *
 * const lines: string[] = [];
 * const observer = new Observer(new Logger((line) => lines.push(line)));
 * const response = observer.refuse(
 *   { status: 429, reason: "per_address", message: "Too Many Requests" },
 *   "127.0.0.2",
 *   "room",
 * );
 * assert.equal(response.status, 429);
 * assert.deepEqual(observer.rejections.samples(), [[{ reason: "per_address" }, 1]]);
 * assert.ok(!lines.join().includes("room"));
 * ```
 */
export class Observer {
  /** Refusals and limit closes, by reason. */
  readonly rejections: Tally = new Tally(["reason"]);
  /** Closes, by code and by who closed. */
  readonly closes: Tally = new Tally(["code", "by"]);
  /** Connections accepted since the start. */
  connectionsTotal = 0;
  /** Frames refused as invalid (text frames, oversized frames). */
  invalid = 0;
  readonly #log: Logger;

  /**
   * Starts counting.
   *
   * @param log Where the log lines go.
   */
  constructor(log: Logger) {
    this.#log = log;
  }

  /**
   * Writes one log record, when its level passes.
   *
   * @param level The record's level.
   * @param event What happened.
   * @param fields More fields.
   */
  write(level: LogLevel, event: string, fields?: LogFields): void {
    this.#log.write(level, event, fields);
  }

  /**
   * Counts and logs a refusal that has no response of its own to give (a
   * refused fallback request, an upgrade that timed out).
   *
   * @param reason The refusal's label.
   * @param fields More log fields.
   */
  rejected(reason: string, fields?: LogFields): void {
    this.rejections.add(reason);
    if (this.#log.enabled("info")) {
      this.#log.write("info", "reject", { reason, ...fields });
    }
  }

  /**
   * Answers a refused peer, and counts and logs it. The log carries the
   * key's hash, when the key is known (a path with a token in it is not).
   *
   * @param refusal The status, label and text.
   * @param address The client's address.
   * @param key The key, when known.
   * @returns The answer.
   */
  refuse(refusal: Refusal, address: string, key: string | undefined): Response {
    this.rejected(refusal.reason, {
      status: refusal.status,
      key: key === undefined ? undefined : keyHash(key),
      addr: address,
    });
    return textResponse(refusal.status, refusal.message);
  }

  /**
   * Logs a peer that joined its group (at `debug`). Positional, so that a
   * server that does not log opens allocates nothing for it.
   *
   * @param peer The hub's id of the peer.
   * @param key The key.
   * @param favored Whether the peer asked to be favored.
   * @param address The client's address.
   * @param transport The transport, when not a WebSocket.
   */
  opened(
    peer: number | string,
    key: string,
    favored: boolean,
    address: string,
    transport?: string,
  ): void {
    if (this.#log.enabled("debug")) {
      this.#log.write("debug", "open", {
        peer,
        key: keyHash(key),
        favored: favored || undefined,
        addr: address,
        transport,
      });
    }
  }

  /**
   * Counts and logs a close.
   *
   * @param peer The hub's id of the peer, once it joined (not for a piped
   * peer).
   * @param key The key, when known.
   * @param code The close code.
   * @param reason The close reason.
   * @param by Who closed.
   */
  closed(
    peer: number | string | undefined,
    key: string | undefined,
    code: number,
    reason: string,
    by: "server" | "client",
  ): void {
    this.closes.add(_codeLabel(code, by), by);
    const level = closeLevel(code, by);
    if (this.#log.enabled(level)) {
      this.#log.write(level, "close", {
        peer,
        key: key === undefined ? undefined : keyHash(key),
        code,
        reason: reason || undefined,
        by,
      });
    }
  }
}
