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
 * import { RedisError } from "./redis.ts";
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

/** Where a Redis server is and how to log in, from a `redis://` URL. */
export interface RedisAddress {
  /** Host name or IP address (IPv6 without brackets). */
  hostname: string;
  /** TCP port. */
  port: number;
  /** ACL user name, `undefined` for the default user. */
  username: string | undefined;
  /** Password for AUTH, `undefined` for none. */
  password: string | undefined;
  /** Database for SELECT, `undefined` to keep the server's default (0). */
  db: number | undefined;
}

function _badUrl(what: string): never {
  // Never echo the URL: it may hold a password.
  throw new TypeError(`Cannot parse Redis URL: ${what}`);
}

/**
 * Reads a `redis://[[user]:password@]host[:port][/db]` URL. User name and
 * password are percent-decoded.
 *
 * @param url The URL.
 * @returns The address, the port 6379 by default.
 * @throws {TypeError} When the URL is not one; the message never quotes it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseRedisUrl } from "./redis.ts";
 * assert.deepEqual(parseRedisUrl("redis://:s%40cret@10.0.0.5/2"), {
 *   hostname: "10.0.0.5",
 *   port: 6379,
 *   username: undefined,
 *   password: "s@cret",
 *   db: 2,
 * });
 * ```
 */
export function parseRedisUrl(url: string | URL): RedisAddress {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return _badUrl("not a URL");
  }
  if (parsed.protocol !== "redis:") _badUrl("the scheme is not redis:");
  let hostname = parsed.hostname;
  if (hostname.startsWith("[") && hostname.endsWith("]")) {
    hostname = hostname.slice(1, -1);
  }
  if (hostname === "") _badUrl("no host");
  const port = parsed.port === "" ? 6379 : Number(parsed.port);
  if (port === 0) _badUrl("port 0");
  let db: number | undefined;
  if (parsed.pathname !== "" && parsed.pathname !== "/") {
    if (!/^\/\d{1,9}$/.test(parsed.pathname)) {
      _badUrl("the path is not a database number");
    }
    db = Number(parsed.pathname.slice(1));
  }
  if (parsed.search !== "" || parsed.hash !== "") {
    _badUrl("a query or fragment is not supported");
  }
  let username: string | undefined;
  let password: string | undefined;
  try {
    username = decodeURIComponent(parsed.username) || undefined;
    password = decodeURIComponent(parsed.password) || undefined;
  } catch {
    _badUrl("bad percent-encoding in the credentials");
  }
  if (username !== undefined && password === undefined) {
    _badUrl("a user name without a password");
  }
  return { hostname, port, username, password, db };
}

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

interface _Request {
  /** What failed, for "Cannot <action>: ..." ("run GET", "connect to Redis"). */
  action: string;
  /** The replies it waits for. */
  count: number;
  replies: Reply[];
  resolve(replies: Reply[]): void;
  reject(error: RedisError): void;
  /** The connection it was written to. */
  connection: _Connection | undefined;
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
 * One TCP connection: writes requests in order, matches replies to them in
 * order, and fails once, taking every pending request with it.
 */
class _Connection {
  /** Settles (never rejects) when the connection is done, with why. */
  readonly ended: Promise<RedisError>;
  /** Valid replies received: a connection that got some was a Redis. */
  replies = 0;
  readonly #conn: Deno.TcpConn;
  readonly #parser: RespParser;
  readonly #stats: RedisStats;
  #pending: _Request[] = [];
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
  send(bytes: Uint8Array, request: _Request): void {
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

  #rejection(request: _Request, failure: _Failure): RedisError {
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
  #connection: _Connection | undefined;
  /** The connection of the attempt under way, before its handshake ends. */
  #attempt: _Connection | undefined;
  /** Requests called while connecting, sent once connected. */
  #waiting: { bytes: Uint8Array; request: _Request }[] = [];
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
    const request: _Request = {
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
      let connection: _Connection;
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
  async #connect(): Promise<_Connection> {
    const { hostname, port, username, password, db } = this.#address;
    const attempt = new AbortController();
    const signal = AbortSignal.any([attempt.signal, this.#closer.signal]);
    let connection: _Connection | undefined;
    const open = async (): Promise<_Connection> => {
      const conn = await Deno.connect({ hostname, port, signal });
      if (signal.aborted) {
        conn.close();
        throw signal.reason;
      }
      connection = this.#attempt = new _Connection(
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
