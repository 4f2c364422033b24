/**
 * How a signaling socket closed ({@linkcode CloseInfo}, with the name and
 * meaning of its code) and the error of a call that the close interrupted
 * ({@linkcode SigverCloseError}).
 *
 * @module
 */

import { describeCloseCode } from "../lib/codes.ts";

/** How and why a signaling socket closed. */
export interface CloseInfo {
  /** The WebSocket close code. */
  readonly code: number;
  /** The close reason sent with it (may be empty). */
  readonly reason: string;
  /** The code's name, see {@linkcode CLOSE_CODES}. */
  readonly codeName: string;
  /** The code's meaning, see {@linkcode CLOSE_CODES}. */
  readonly meaning: string;
  /** Whether the closing handshake completed. */
  readonly wasClean: boolean;
}

/**
 * The {@linkcode CloseInfo} of a close code and reason.
 *
 * @param code The WebSocket close code (0, Deno's failed handshake, reads
 * as 1006).
 * @param reason The close reason.
 * @param wasClean Whether the closing handshake completed.
 * @returns The close, with its code's name and meaning.
 */
export function closeInfo(
  code: number,
  reason: string,
  wasClean: boolean,
): CloseInfo {
  // Deno reports a failed handshake with code 0 where browsers say 1006.
  if (code === 0) code = 1006;
  const { name, meaning } = describeCloseCode(code);
  return { code, reason, codeName: name, meaning, wasClean };
}

/**
 * The error of a call that the closing of the signaling socket interrupted or
 * prevented: a pending {@linkcode SigverClient.connect}, a
 * {@linkcode SigverClient.send} on a closed client, or a
 * {@linkcode SigverClient.open} that could not open.
 *
 * @example Tell a refused key from other failures
 * ```ts ignore
 * import { ERR_KEY, SigverClient, SigverCloseError } from "@coast/sigver/client";
 * const client = await SigverClient.open("ws://127.0.0.1:8000", "");
 * try {
 *   await client.connect(1, []);
 * } catch (error) {
 *   if (error instanceof SigverCloseError && error.code === ERR_KEY) {
 *     console.log(error.meaning);
 *   }
 * }
 * ```
 */
export class SigverCloseError extends Error implements CloseInfo {
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
   * Creates the error of a close.
   *
   * @param info How the socket closed.
   * @param action What could not be done, as in "Cannot <action>".
   */
  constructor(info: CloseInfo, action = "signal") {
    super(
      `Cannot ${action}: the socket closed with ${info.code} ${info.codeName}${
        info.reason ? ` (${info.reason})` : ""
      }`,
    );
    this.name = "SigverCloseError";
    this.code = info.code;
    this.reason = info.reason;
    this.codeName = info.codeName;
    this.meaning = info.meaning;
    this.wasClean = info.wasClean;
  }
}
