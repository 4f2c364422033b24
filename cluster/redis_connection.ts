/**
 * One TCP connection to Redis, {@linkcode RedisConnection}: requests are
 * written in order, replies matched to them in order, and the connection
 * fails once, taking every pending request with it. Keeping a connection
 * up is {@linkcode RedisClient}'s work (`redis.ts`).
 *
 * @module
 */

import {
  type Reply,
  RespError,
  RespParser,
  type RespParserOptions,
} from "../lib/resp.ts";
import { RedisError, type RedisErrorCode } from "./redis_error.ts";

/** Counters of a {@linkcode RedisClient}, for metrics. */
export interface RedisStats {
  /** Commands sent, handshakes included (a pipeline counts each command). */
  commands: number;
  /** Writes answered in full: one per command, pipeline or handshake. */
  roundTrips: number;
  /** Error replies from Redis (`-ERR ...`), in pipelines too. */
  errorReplies: number;
  /** Commands and pipelines that got no reply within the command timeout. */
  timeouts: number;
  /** Connections lost and connection attempts failed, for any reason. */
  errors: number;
  /** Connections made (handshake done), the first one included. */
  connects: number;
}

export interface RedisRequest {
  /** What failed, for "Cannot <action>: ..." ("run GET", "connect to Redis"). */
  action: string;
  /** The replies it waits for. */
  count: number;
  replies: Reply[];
  resolve(replies: Reply[]): void;
  reject(error: RedisError): void;
  /** The connection it was written to. */
  connection: RedisConnection | undefined;
  /** Whether its caller stopped waiting: not worth sending any more. */
  abandoned: boolean;
}

/** Why a connection ended, for the errors of what it leaves pending. */
interface _Failure {
  code: RedisErrorCode;
  /** The state part of "Cannot <action>: <state>". */
  state: string;
  cause: unknown;
}

const READ_SIZE = 64 * 1024;

/**
 * One TCP connection: writes requests in order, matches replies to them in
 * order, and fails once, taking every pending request with it.
 */
export class RedisConnection {
  /** Settles (never rejects) when the connection is done, with why. */
  readonly ended: Promise<RedisError>;
  /** Valid replies received: a connection that got some was a Redis. */
  replies = 0;
  readonly #conn: Deno.TcpConn;
  readonly #parser: RespParser;
  readonly #stats: RedisStats;
  #pending: RedisRequest[] = [];
  #out: Uint8Array[] = [];
  #flushing: Promise<void> | undefined;
  #failure: _Failure | undefined;

  constructor(
    conn: Deno.TcpConn,
    limits: RespParserOptions,
    stats: RedisStats,
  ) {
    this.#conn = conn;
    this.#parser = new RespParser(limits);
    this.#stats = stats;
    this.ended = this.#read();
  }

  /** Queues `bytes` for writing; `request` takes the replies they get. */
  send(bytes: Uint8Array, request: RedisRequest): void {
    if (this.#failure !== undefined) {
      request.reject(this.#rejection(request, this.#failure));
      return;
    }
    request.connection = this;
    this.#pending.push(request);
    this.#stats.commands += request.count;
    this.#out.push(bytes);
    // Requests queued in the same tick go out in one write.
    this.#flushing ??= this.#flush();
  }

  /**
   * Closes the connection and rejects every pending request; only the
   * first call counts.
   */
  fail(code: RedisErrorCode, state: string, cause?: unknown): void {
    if (this.#failure !== undefined) return;
    const failure = this.#failure = { code, state, cause };
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
    const pending = this.#pending;
    this.#pending = [];
    this.#out = [];
    for (const request of pending) {
      request.reject(this.#rejection(request, failure));
    }
  }

  #rejection(request: RedisRequest, failure: _Failure): RedisError {
    return new RedisError(
      failure.code,
      `Cannot ${request.action}: ${failure.state}`,
      { cause: failure.cause },
    );
  }

  async #flush(): Promise<void> {
    await Promise.resolve();
    try {
      while (this.#out.length > 0 && this.#failure === undefined) {
        const parts = this.#out;
        this.#out = [];
        let bytes = parts[0];
        if (parts.length > 1) {
          bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
          let pos = 0;
          for (const part of parts) {
            bytes.set(part, pos);
            pos += part.length;
          }
        }
        for (let pos = 0; pos < bytes.length;) {
          pos += await this.#conn.write(bytes.subarray(pos));
        }
      }
    } catch (error) {
      this.fail("disconnected", "the connection failed", error);
    } finally {
      this.#flushing = undefined;
    }
  }

  async #read(): Promise<RedisError> {
    const buf = new Uint8Array(READ_SIZE);
    while (this.#failure === undefined) {
      let n: number | null;
      try {
        n = await this.#conn.read(buf);
      } catch (error) {
        this.fail("disconnected", "the connection failed", error);
        break;
      }
      if (n === null) {
        this.fail("disconnected", "Redis closed the connection");
        break;
      }
      let garbage: unknown;
      try {
        this.#parser.push(buf.subarray(0, n));
      } catch (error) {
        garbage = error;
      }
      for (let reply; (reply = this.#parser.read()) !== undefined;) {
        this.#deliver(reply);
      }
      if (garbage !== undefined) {
        this.fail("protocol", "Redis sent a reply that is not RESP", garbage);
      }
    }
    // The pending write, if any, fails now that the socket is closed.
    await this.#flushing;
    const { code, state, cause } = this.#failure!;
    return new RedisError(code, `Cannot keep the Redis connection: ${state}`, {
      cause,
    });
  }

  #deliver(reply: Reply): void {
    if (this.#failure !== undefined) return;
    const request = this.#pending[0];
    if (request === undefined) {
      this.fail("protocol", "Redis sent a reply nobody asked for");
      return;
    }
    this.replies++;
    if (reply instanceof RespError) this.#stats.errorReplies++;
    request.replies.push(reply);
    if (request.replies.length === request.count) {
      this.#pending.shift();
      this.#stats.roundTrips++;
      request.resolve(request.replies);
    }
  }
}
