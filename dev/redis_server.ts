/**
 * A real `redis-server` for tests: {@linkcode startRedis} runs Debian's
 * `/usr/bin/redis-server` on `127.0.0.1` and a free port, with no
 * persistence, and waits until it answers. The tests that need Redis to fail
 * use {@linkcode RedisServer.kill} (SIGKILL, the connections reset),
 * {@linkcode RedisServer.pause} (SIGSTOP, a stalled Redis that accepts and
 * never answers) and {@linkcode RedisServer.restart} (the same port again).
 *
 * ```ts ignore
 * await using redis = await startRedis();
 * await using client = new RedisClient(redis.url);
 * await redis.kill();
 * await redis.restart();
 * ```
 *
 * @module
 */

/** Where Debian installs Redis. */
export const REDIS_SERVER = "/usr/bin/redis-server";

import { type ChildProcess, freePort, spawn } from "./process.ts";

/** Milliseconds Redis may take to answer its first PING. */
const START_TIMEOUT = 10_000;

/** How to run the server. */
export interface RedisServerOptions {
  /** A password for the default user (`requirepass`). */
  password?: string;
  /** More arguments for `redis-server`, e.g. `["--user", "alice", ...]`. */
  args?: string[];
}

/** Whether something on `port` answers a PING like Redis does. */
async function _answers(port: number): Promise<boolean> {
  let conn: Deno.TcpConn | undefined;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(new TextEncoder().encode("PING\r\n"));
    const buf = new Uint8Array(64);
    const n = await conn.read(buf);
    // "+PONG", or "-NOAUTH" when a password is set.
    return n !== null && (buf[0] === 0x2b || buf[0] === 0x2d);
  } catch {
    return false;
  } finally {
    conn?.close();
  }
}

/**
 * One `redis-server` process at a time, on one port for its whole life.
 * Dispose of it (`await using`) to stop it and remove its directory.
 */
export class RedisServer implements AsyncDisposable {
  /** The port, the same across restarts. */
  readonly port: number;
  /** Redis's working directory, removed on disposal. */
  readonly dir: string;
  readonly #options: RedisServerOptions;
  #child: ChildProcess | undefined;
  #paused = false;

  /**
   * Prepares a server; {@linkcode RedisServer.restart} starts it.
   *
   * @param port The port to listen on.
   * @param dir Redis's working directory, removed on disposal.
   * @param options How to run it.
   */
  constructor(port: number, dir: string, options: RedisServerOptions = {}) {
    this.port = port;
    this.dir = dir;
    this.#options = options;
  }

  /** `redis://127.0.0.1:<port>`, with the password when there is one. */
  get url(): string {
    const password = this.#options.password;
    const auth = password === undefined
      ? ""
      : `:${encodeURIComponent(password)}@`;
    return `redis://${auth}127.0.0.1:${this.port}`;
  }

  /** The running process's id, `undefined` when it is not running. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /**
   * Starts the server (killing a running one first) on the same port, and
   * waits until it answers. The data of a previous run is gone.
   *
   * @throws {Error} When it exits or does not answer in time; the error
   * says what it printed.
   */
  async restart(): Promise<void> {
    await this.kill();
    const args = [
      "--port",
      String(this.port),
      "--bind",
      "127.0.0.1",
      "--daemonize",
      "no",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      this.dir,
      "--loglevel",
      "warning",
    ];
    if (this.#options.password !== undefined) {
      args.push("--requirepass", this.#options.password);
    }
    args.push(...this.#options.args ?? []);
    const child = spawn(REDIS_SERVER, { name: "redis-server", args });
    this.#child = child;
    const until = Date.now() + START_TIMEOUT;
    while (child.running && Date.now() < until) {
      if (await _answers(this.port)) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const exited = !child.running;
    await this.kill();
    throw new Error(
      `Cannot start redis-server on port ${this.port}: ${
        exited ? "it exited" : "no answer in time"
      }\n${child.output}`,
    );
  }

  /** Kills the server with SIGKILL and waits until it is gone. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    this.#child = undefined;
    this.#paused = false;
    await child.kill();
  }

  /** Stops the server with SIGSTOP: it keeps its connections, answers none. */
  pause(): void {
    if (this.#child === undefined || this.#paused) return;
    this.#child.signal("SIGSTOP");
    this.#paused = true;
  }

  /** Resumes a paused server with SIGCONT. */
  resume(): void {
    if (this.#child === undefined || !this.#paused) return;
    this.#child.signal("SIGCONT");
    this.#paused = false;
  }

  /** Stops the server with SIGTERM (SIGKILL if it lingers). */
  async stop(): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    this.resume();
    await child.stop();
    this.#child = undefined;
  }

  /** Stops the server and removes its directory. */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.stop();
    } finally {
      await Deno.remove(this.dir, { recursive: true });
    }
  }
}

/**
 * Starts a `redis-server` on a free loopback port and waits until it
 * answers. Use it with `await using`.
 *
 * @param options How to run it.
 * @returns The running server.
 */
export async function startRedis(
  options: RedisServerOptions = {},
): Promise<RedisServer> {
  const dir = await Deno.makeTempDir({ prefix: "sigver-redis-" });
  // Another process may take the free port before Redis binds it: retry on
  // another one.
  for (let attempt = 1;; attempt++) {
    const server = new RedisServer(freePort(), dir, options);
    try {
      await server.restart();
      return server;
    } catch (error) {
      if (attempt === 3) {
        await Deno.remove(dir, { recursive: true });
        throw error;
      }
    }
  }
}
