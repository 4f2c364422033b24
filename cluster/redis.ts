/**
 * A small Redis client over one TCP connection, for the cluster's leases and
 * liveness keys: {@linkcode RedisClient} speaks RESP2 through
 * `lib/resp.ts`, with no npm package.
 *
 * It is built for a caller that must never stall on Redis: every command
 * settles within its timeout, whatever Redis does. The connection is made
 * again with exponential backoff after any failure (a reset, a timeout, a
 * reply that is not RESP), and while Redis is down commands fail at once
 * with a {@linkcode RedisError} instead of queueing.
 *
 * @example Take a lease, then give it back only if it is still ours
 * ```ts ignore
 * import { RedisClient } from "./redis.ts";
 * await using redis = new RedisClient("redis://127.0.0.1:6379/0");
 * const taken = await redis.command("SET", "group:42", "node-a", "NX", "PX", 10_000);
 * if (taken === "OK") {
 *   await redis.command(
 *     "EVAL",
 *     "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
 *     1,
 *     "group:42",
 *     "node-a",
 *   );
 * }
 * ```
 *
 * @module
 */

import { deadline, DeadlineError, pause } from "../lib/deadline.ts";
import {
  type CommandArg,
  encodeCommand,
  encodeCommands,
  type Reply,
  RespError,
  RespParser,
  type RespParserOptions,
} from "../lib/resp.ts";
import {
  RedisConnection,
  type RedisRequest,
  type RedisStats,
} from "./redis_connection.ts";
import { RedisError, type RedisErrorCode } from "./redis_error.ts";
import { parseRedisUrl, type RedisAddress } from "./redis_url.ts";

export type { RedisStats } from "./redis_connection.ts";
export {
  RedisError,
  type RedisErrorCode,
  type RedisErrorOptions,
} from "./redis_error.ts";
export { parseRedisUrl, type RedisAddress } from "./redis_url.ts";

/** Options of a {@linkcode RedisClient}. */
export interface RedisClientOptions {
  /**
   * Milliseconds to connect and finish the handshake (AUTH, SELECT, PING).
   *
   * @default {2000}
   */
  connectTimeout?: number;
  /**
   * Milliseconds a command or a pipeline may wait for its replies, from the
   * call on; then it rejects and the connection is dropped.
   *
   * @default {2000}
   */
  commandTimeout?: number;
  /**
   * Milliseconds before the first reconnection attempt, and the least wait
   * between attempts.
   *
   * @default {100}
   */
  backoffMin?: number;
  /**
   * The longest wait between attempts. The wait is random between
   * `backoffMin` and `backoffMin * 2^n`, at most `backoffMax`, after the
   * n-th failure in a row.
   *
   * @default {5000}
   */
  backoffMax?: number;
  /**
   * Called when Redis becomes reachable (`true`) or unreachable (`false`,
   * with the error that says why), for logs and an up/down gauge: once for
   * the first attempt, then on every change, never after
   * {@linkcode RedisClient.close}. An exception it throws is reported with
   * `reportError`.
   */
  onState?: (up: boolean, error?: RedisError) => void;
  /**
   * Bounds on replies; a reply past them drops the connection like garbage.
   *
   * @default {{}}
   */
  replyLimits?: RespParserOptions;
}

function _optionMs(
  value: number | undefined,
  fallback: number,
  name: string,
): number {
  if (value === undefined) return fallback;
  // Infinity is no limit for a timeout, but no wait ever ends for a backoff.
  if (!(value > 0) || (value === Infinity && name.startsWith("backoff"))) {
    throw new RangeError(
      `Cannot create Redis client: ${name} ${value} is not a positive number of milliseconds`,
    );
  }
  return value;
}

function _commandName(args: readonly CommandArg[]): string {
  const name = args[0];
  return typeof name === "string" && /^[A-Za-z][\w|.-]{0,40}$/.test(name)
    ? name.toUpperCase()
    : "a command";
}

/**
 * A Redis connection that keeps itself up. It starts connecting when it is
 * created; commands called while a connection attempt is under way wait for
 * it, and commands called while Redis is down (between attempts) reject at
 * once with code `"disconnected"`. Every command settles within the command
 * timeout. Close it (`await using`) to stop it: nothing outlives
 * {@linkcode RedisClient.close}.
 *
 * @example A client that logs when Redis comes and goes
 * ```ts ignore
 * import { RedisClient } from "./redis.ts";
 * await using redis = new RedisClient("redis://:secret@127.0.0.1:6379/1", {
 *   commandTimeout: 500,
 *   onState: (up, error) => console.log(up ? "Redis up" : `Redis down: ${error?.message}`),
 * });
 * const [set, ttl] = await redis.pipeline([
 *   ["SET", "node:a", "1", "PX", 3000],
 *   ["PTTL", "node:a"],
 * ]);
 * ```
 */
export class RedisClient implements AsyncDisposable {
  readonly #address: RedisAddress;
  readonly #connectTimeout: number;
  readonly #commandTimeout: number;
  readonly #backoffMin: number;
  readonly #backoffMax: number;
  readonly #onState: ((up: boolean, error?: RedisError) => void) | undefined;
  readonly #limits: RespParserOptions;
  readonly #stats: RedisStats = {
    commands: 0,
    roundTrips: 0,
    errorReplies: 0,
    timeouts: 0,
    errors: 0,
    connects: 0,
  };
  /** Aborted by close(): stops the attempt, the backoff and the loop. */
  readonly #closer = new AbortController();
  #state: "connecting" | "up" | "down" | "closed" = "connecting";
  #connection: RedisConnection | undefined;
  /** The connection of the attempt under way, before its handshake ends. */
  #attempt: RedisConnection | undefined;
  /** Requests called while connecting, sent once connected. */
  #waiting: { bytes: Uint8Array; request: RedisRequest }[] = [];
  /** Why Redis is down, while it is. */
  #down: RedisError | undefined;
  /** What onState last said. */
  #reported: boolean | undefined;
  readonly #loop: Promise<void>;
  #closing: Promise<void> | undefined;

  /**
   * Creates the client and starts connecting.
   *
   * @param url `redis://[[user]:password@]host[:port][/db]`.
   * @param options Timeouts, backoff and the state callback.
   * @throws {TypeError} When the URL is not a Redis URL.
   * @throws {RangeError} When a timeout or a backoff is not positive.
   */
  constructor(url: string | URL, options: RedisClientOptions = {}) {
    this.#address = parseRedisUrl(url);
    this.#connectTimeout = _optionMs(
      options.connectTimeout,
      2000,
      "connectTimeout",
    );
    this.#commandTimeout = _optionMs(
      options.commandTimeout,
      2000,
      "commandTimeout",
    );
    this.#backoffMin = _optionMs(options.backoffMin, 100, "backoffMin");
    this.#backoffMax = _optionMs(options.backoffMax, 5000, "backoffMax");
    if (this.#backoffMax < this.#backoffMin) {
      throw new RangeError(
        `Cannot create Redis client: backoffMax ${this.#backoffMax} is less than backoffMin ${this.#backoffMin}`,
      );
    }
    this.#onState = options.onState;
    this.#limits = options.replyLimits ?? {};
    // Fail now on bad limits rather than on every connection.
    new RespParser(this.#limits);
    this.#loop = this.#run();
  }

  /** Whether a connection is up right now. */
  get connected(): boolean {
    return this.#state === "up";
  }

  /**
   * Runs one command.
   *
   * @param args The command name, then its arguments.
   * @returns The reply; an error reply rejects instead.
   * @throws {RedisError} With code `"reply"` and the reply in
   * `error.reply` when Redis answers with an error; with the other codes
   * when there was no reply (see {@linkcode RedisErrorCode}).
   * @throws {TypeError} When an argument cannot be encoded.
   * @throws {RangeError} When `args` is empty or holds a number that is not
   * finite.
   */
  command(...args: CommandArg[]): Promise<Reply> {
    let bytes: Uint8Array;
    try {
      bytes = encodeCommand(args);
    } catch (error) {
      return Promise.reject(error);
    }
    const what = _commandName(args);
    return this.#request(bytes, 1, what).then(([reply]) => {
      if (reply instanceof RespError) {
        throw new RedisError("reply", `Cannot run ${what}: ${reply.message}`, {
          reply,
        });
      }
      return reply;
    });
  }

  /**
   * Runs several commands in one write; Redis answers them in order. They
   * are not a transaction (wrap them in MULTI and EXEC for that).
   *
   * @param commands The commands, each a name and its arguments.
   * @returns One reply per command, in order. Error replies are
   * {@linkcode RespError} values in place: one command failing does not
   * fail the others.
   * @throws {RedisError} When the replies did not all arrive; the commands
   * may have run.
   * @throws {TypeError} When an argument cannot be encoded.
   * @throws {RangeError} When a command is empty or holds a number that is
   * not finite.
   */
  pipeline(commands: readonly (readonly CommandArg[])[]): Promise<Reply[]> {
    let bytes: Uint8Array;
    try {
      bytes = encodeCommands(commands);
    } catch (error) {
      return Promise.reject(error);
    }
    if (commands.length === 0 && this.#state !== "closed") {
      return Promise.resolve([]);
    }
    const n = commands.length;
    const what = `a pipeline of ${n} command${n === 1 ? "" : "s"}`;
    return this.#request(bytes, commands.length, what);
  }

  /**
   * The counters, a snapshot.
   *
   * @returns A copy of the counters.
   */
  stats(): RedisStats {
    return { ...this.#stats };
  }

  /**
   * Closes the connection, stops reconnecting and rejects every pending
   * command with code `"closed"`. Idempotent: later calls return the same
   * promise.
   *
   * @returns A promise that resolves once no socket, timer or pending
   * operation of the client remains.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /**
   * Same as {@linkcode RedisClient.close}.
   *
   * @returns The promise of `close()`.
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #close(): Promise<void> {
    this.#state = "closed";
    this.#closer.abort();
    this.#rejectWaiting("closed", "the client is closed");
    this.#connection?.fail("closed", "the client is closed");
    this.#attempt?.fail("closed", "the client is closed");
    await this.#loop;
  }

  #request(bytes: Uint8Array, count: number, what: string): Promise<Reply[]> {
    if (this.#state === "closed") {
      return Promise.reject(
        new RedisError("closed", `Cannot run ${what}: the client is closed`),
      );
    }
    if (this.#state === "down") {
      return Promise.reject(
        new RedisError("disconnected", `Cannot run ${what}: Redis is down`, {
          cause: this.#down,
        }),
      );
    }
    const { promise, resolve, reject } = Promise.withResolvers<Reply[]>();
    const request: RedisRequest = {
      action: `run ${what}`,
      count,
      replies: [],
      resolve,
      reject,
      connection: undefined,
      abandoned: false,
    };
    if (this.#state === "up") this.#connection!.send(bytes, request);
    else this.#waiting.push({ bytes, request });
    const ms = this.#commandTimeout;
    return deadline(promise, ms, `a reply to ${what}`).catch((error) => {
      if (!(error instanceof DeadlineError)) throw error;
      request.abandoned = true;
      this.#stats.timeouts++;
      // Later replies queue behind the missing one: only a new connection
      // gets replies again.
      request.connection?.fail(
        "timeout",
        `the connection was dropped: ${what} got no reply within ${ms} ms`,
      );
      throw new RedisError(
        "timeout",
        `Cannot run ${what}: no reply within ${ms} ms`,
        { cause: error },
      );
    });
  }

  #rejectWaiting(code: RedisErrorCode, state: string, cause?: unknown): void {
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const { request } of waiting) {
      request.reject(
        new RedisError(code, `Cannot ${request.action}: ${state}`, { cause }),
      );
    }
  }

  #report(up: boolean, error?: RedisError): void {
    if (this.#reported === up || this.#state === "closed") return;
    this.#reported = up;
    try {
      this.#onState?.(up, error);
    } catch (thrown) {
      reportError(thrown);
    }
  }

  /** Connects, serves, reconnects: until close(). Never rejects. */
  async #run(): Promise<void> {
    let failures = 0;
    const closed = this.#closer.signal;
    while (!closed.aborted) {
      this.#state = "connecting";
      let connection: RedisConnection;
      try {
        connection = await this.#connect();
      } catch (error) {
        if (closed.aborted) break;
        const down = error instanceof RedisError ? error : new RedisError(
          "disconnected",
          "Cannot connect to Redis: the attempt failed",
          { cause: error },
        );
        this.#stats.errors++;
        this.#goDown(down);
        await this.#sleep(failures++);
        continue;
      }
      if (closed.aborted) {
        connection.fail("closed", "the client is closed");
        await connection.ended;
        break;
      }
      this.#attempt = undefined;
      this.#state = "up";
      this.#down = undefined;
      this.#connection = connection;
      this.#stats.connects++;
      const waiting = this.#waiting;
      this.#waiting = [];
      for (const { bytes, request } of waiting) {
        if (!request.abandoned) connection.send(bytes, request);
      }
      this.#report(true);
      const reason = await connection.ended;
      this.#connection = undefined;
      if (closed.aborted) break;
      this.#stats.errors++;
      this.#goDown(reason);
      // A peer that never sent a valid reply may not be a Redis at all:
      // keep backing off from it.
      if (connection.replies > 0) failures = 0;
      await this.#sleep(failures++);
    }
  }

  #goDown(error: RedisError): void {
    this.#state = "down";
    this.#down = error;
    this.#rejectWaiting("disconnected", "Redis is unreachable", error);
    this.#report(false, error);
  }

  /** Waits the backoff after `failures` failures in a row, or until close. */
  #sleep(failures: number): Promise<void> {
    const min = this.#backoffMin;
    const cap = Math.min(this.#backoffMax, min * 2 ** Math.min(failures, 30));
    return pause(min + Math.random() * (cap - min), this.#closer.signal);
  }

  /**
   * Opens a connection, logs in and pings, within the connect timeout: up
   * means that Redis answered.
   */
  async #connect(): Promise<RedisConnection> {
    const { hostname, port, username, password, db } = this.#address;
    const attempt = new AbortController();
    const signal = AbortSignal.any([attempt.signal, this.#closer.signal]);
    let connection: RedisConnection | undefined;
    const open = async (): Promise<RedisConnection> => {
      const conn = await Deno.connect({ hostname, port, signal });
      if (signal.aborted) {
        conn.close();
        throw signal.reason;
      }
      connection = this.#attempt = new RedisConnection(
        conn,
        this.#limits,
        this.#stats,
      );
      const handshake: CommandArg[][] = [];
      if (password !== undefined) {
        handshake.push(
          username === undefined
            ? ["AUTH", password]
            : ["AUTH", username, password],
        );
      }
      if (db !== undefined) handshake.push(["SELECT", db]);
      // A PING proves a Redis answers: a peer that accepts and stalls, or
      // speaks something else, fails here instead of passing for up.
      handshake.push(["PING"]);
      const { promise, resolve, reject } = Promise.withResolvers<Reply[]>();
      connection.send(encodeCommands(handshake), {
        action: "connect to Redis",
        count: handshake.length,
        replies: [],
        resolve,
        reject,
        connection: undefined,
        abandoned: false,
      });
      const replies = await promise;
      replies.forEach((reply, i) => {
        if (reply instanceof RespError) {
          throw new RedisError(
            "reply",
            `Cannot connect to Redis: ${
              handshake[i][0]
            } failed: ${reply.message}`,
            { reply },
          );
        }
      });
      return connection;
    };
    const opening = open();
    try {
      return await deadline(opening, this.#connectTimeout, "Redis to connect");
    } catch (error) {
      this.#attempt = undefined;
      attempt.abort();
      connection?.fail("disconnected", "the connection attempt failed", error);
      // Wait for the socket and its operations to be gone.
      await opening.catch(() => {});
      await connection?.ended;
      if (this.#closer.signal.aborted) {
        throw new RedisError(
          "closed",
          "Cannot connect to Redis: the client is closed",
        );
      }
      if (error instanceof RedisError) throw error;
      if (error instanceof DeadlineError) {
        throw new RedisError(
          "timeout",
          `Cannot connect to Redis: no answer within ${this.#connectTimeout} ms`,
          { cause: error },
        );
      }
      throw new RedisError(
        "disconnected",
        `Cannot connect to Redis: ${
          error instanceof Error ? error.message : String(error)
        }`,
        { cause: error },
      );
    }
  }
}
