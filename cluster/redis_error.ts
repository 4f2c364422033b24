/**
 * The error of a Redis command or connection, {@linkcode RedisError}, with
 * a `code` that says what went wrong.
 *
 * @module
 */

import type { RespError } from "../lib/resp.ts";

/**
 * Why a command failed:
 * - `"disconnected"`: there was no connection (Redis is down, or the attempt
 *   to reach it failed), or it was lost before the reply.
 * - `"timeout"`: no reply within the command timeout, to this command or to
 *   one ahead of it on the connection; the connection was dropped, as a
 *   stalled Redis stalls everything behind the command.
 * - `"protocol"`: Redis sent bytes that are not a RESP2 reply; the
 *   connection was dropped.
 * - `"reply"`: Redis answered with an error reply, in
 *   {@linkcode RedisError.reply}. Only {@linkcode RedisClient.command} and
 *   the connection handshake (AUTH, SELECT, PING) reject with it.
 * - `"closed"`: the client was closed.
 */
export type RedisErrorCode =
  | "disconnected"
  | "timeout"
  | "protocol"
  | "reply"
  | "closed";

/** Options of a {@linkcode RedisError}. */
export interface RedisErrorOptions extends ErrorOptions {
  /** The error reply, for code `"reply"`. */
  reply?: RespError;
}

/**
 * The error of a Redis command or connection, with a `code` that says what
 * went wrong. Commands may have run on Redis even when they failed with
 * `"timeout"` or `"disconnected"`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { RedisError } from "./redis_error.ts";
 * const error = new RedisError("disconnected", "Cannot run GET: Redis is down");
 * assert.equal(error.code, "disconnected");
 * assert.equal(error.reply, undefined);
 * ```
 */
export class RedisError extends Error {
  /** What went wrong. */
  readonly code: RedisErrorCode;
  /** The error reply, for code `"reply"`. */
  readonly reply: RespError | undefined;

  /**
   * Creates the error.
   *
   * @param code What went wrong.
   * @param message "Cannot <action>: <state>".
   * @param options The cause and, for code `"reply"`, the error reply.
   */
  constructor(
    code: RedisErrorCode,
    message: string,
    options: RedisErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? {} : { cause: options.cause });
    this.name = "RedisError";
    this.code = code;
    this.reply = options.reply;
  }
}
