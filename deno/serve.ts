/**
 * The server's lifecycle on `Deno.serve`: listen (plain or TLS), keep
 * accepting when the process runs out of file descriptors, drain and shut
 * down.
 *
 * Deno's accept loop ends on its first accept error (EMFILE when a flood of
 * connections takes every descriptor) and does not start again. Upgraded
 * sockets live on without it, so `serve` keeps its peers relaying, answers
 * 503 on readiness, logs one `error` line per episode and listens again on
 * the same address, with backoff, until a new listener has stayed up for a
 * while.
 *
 * @module
 */

import { createPlacedHandler, type SigverHandler } from "./handler.ts";
import type { Placement } from "./placement.ts";
import type { HandlerOptions } from "./options.ts";
import { checkNumber } from "./options.ts";
import { CLOSE_GOING_AWAY } from "../lib/codes.ts";
import { settleWithin } from "../lib/deadline.ts";
import { single } from "../lib/metrics.ts";

/** Options of {@linkcode serve}. */
export interface ServeOptions extends HandlerOptions {
  /**
   * Interface to listen on.
   * @default {"0.0.0.0"}
   */
  hostname?: string;
  /**
   * Port to listen on (0: any free port).
   * @default {8000}
   */
  port?: number;
  /** TLS certificate chain (PEM). With `key`, the server speaks wss/https. */
  cert?: string;
  /** TLS private key (PEM). */
  key?: string;
  /** CA certificates (PEM), appended to the certificate chain. */
  ca?: string;
  /** Aborting it shuts the server down, as {@linkcode SigverServer.shutdown}. */
  signal?: AbortSignal;
  /**
   * Milliseconds a shutdown waits for connections to finish.
   * @default {10000}
   */
  drainTimeout?: number;
  /** Called once the server listens (not again when it listens anew). */
  onListen?: (addr: Deno.NetAddr) => void;
  /**
   * Port of a second listener for admins: liveness, readiness, the metrics
   * and the cluster view (0: any free port). With it, the client port no
   * longer serves the metrics. Without it, the cluster view is not served.
   */
  adminPort?: number;
  /**
   * Interface of the admin listener: keep it private.
   * @default {"127.0.0.1"}
   */
  adminHostname?: string;
}

/** A running sigver server. */
export interface SigverServer extends AsyncDisposable {
  /** Where it listens. */
  readonly addr: Deno.NetAddr;
  /** Where its admin listener listens, when it has one. */
  readonly adminAddr: Deno.NetAddr | undefined;
  /** Resolves when the server has stopped (after a shutdown). */
  readonly finished: Promise<void>;
  /** The handler it runs, for its metrics and stats. */
  readonly handler: SigverHandler;
  /** Whether it accepts connections now (false while it lacks descriptors). */
  readonly accepting: boolean;
  /**
   * Drains: refuses new peers, closes every socket with 1001, then stops,
   * within `drainTimeout`. Idempotent: every call returns the same promise.
   *
   * @returns Resolves once stopped (or the drain timeout passed).
   */
  shutdown(): Promise<void>;
}

/** First wait before listening again after an accept error. */
const RETRY_MIN_MS = 50;
/** Longest wait between two attempts. */
const RETRY_MAX_MS = 2000;
/** A new listener that stays up this long ends the episode. */
const STABLE_MS = 1000;

/**
 * Runs a sigver server on `Deno.serve`.
 *
 * @param options Address, TLS, limits and the rest of `HandlerOptions`.
 * @returns The running server.
 * @throws {TypeError} When only one of `cert` and `key` is given.
 * @throws {Deno.errors.AddrInUse} Or another error when it cannot listen.
 *
 * @example Run one for the length of a scope
 * ```ts ignore
 * import { serve } from "@coast/sigver";
 * await using server = serve({ hostname: "127.0.0.1", port: 0 });
 * console.log(`ws://127.0.0.1:${server.addr.port}/my-room`);
 * ```
 */
export function serve(options?: ServeOptions): SigverServer {
  return servePlaced(options ?? {}, undefined);
}

/**
 * Starts a server whose groups live where `placement` says (a cluster
 * node), which it starts and closes with the server.
 *
 * @param options As for {@linkcode serve}.
 * @param placement Where groups live.
 * @returns The running server.
 */
export function servePlaced(
  options: ServeOptions,
  placement: Placement | undefined,
): SigverServer {
  if ((options.cert === undefined) !== (options.key === undefined)) {
    throw new TypeError("Cannot serve TLS: both cert and key are needed");
  }
  const drainTimeout = checkNumber(
    "drainTimeout",
    options.drainTimeout,
    10000,
  );
  const tls = options.cert !== undefined && options.key !== undefined
    ? {
      cert: options.ca
        ? `${options.cert.trimEnd()}\n${options.ca}`
        : options.cert,
      key: options.key,
    }
    : {};
  const listener = new _Listener();
  // A placement (a cluster node) may hold a connection as it is made: let
  // it go if the start fails (a bad option, an address in use), so that
  // nothing is left reconnecting.
  let handler: SigverHandler;
  let addr: Deno.NetAddr;
  let admin: Deno.HttpServer<Deno.NetAddr> | undefined;
  try {
    handler = createPlacedHandler(
      _handlerOptions(options, listener),
      placement,
    );
    if (options.adminPort !== undefined) {
      admin = Deno.serve({
        hostname: options.adminHostname ?? "127.0.0.1",
        port: options.adminPort,
        onListen: () => {},
      }, handler.admin);
    }
    addr = _listen(listener, options, tls, handler);
  } catch (error) {
    void admin?.shutdown();
    void placement?.close().catch(() => {});
    throw error;
  }
  const started = placement?.start();
  options.onListen?.(addr);
  const stopped = Promise.withResolvers<void>();
  let stopping: Promise<void> | undefined;
  const shutdown = (): Promise<void> =>
    stopping ??= (async () => {
      // Refuse newcomers (503) while the open sockets close with 1001, then
      // stop listening; all of it within drainTimeout.
      const start = performance.now();
      handler.drain();
      await handler.close(
        CLOSE_GOING_AWAY,
        "Server shutting down",
        drainTimeout,
      );
      await listener.stop(
        Math.max(0, drainTimeout - (performance.now() - start)),
      );
      await started;
      await placement?.close();
      await admin?.shutdown();
      stopped.resolve();
    })();
  options.signal?.addEventListener("abort", () => void shutdown(), {
    once: true,
  });
  if (options.signal?.aborted) void shutdown();
  return {
    addr,
    adminAddr: admin?.addr,
    finished: stopped.promise,
    handler,
    get accepting() {
      return listener.accepting;
    },
    shutdown,
    [Symbol.asyncDispose]: shutdown,
  };
}

/** The handler's options: the caller's, with the listener's state added. */
function _handlerOptions(
  options: ServeOptions,
  listener: _Listener,
): HandlerOptions {
  return {
    ...options,
    publicMetrics: options.publicMetrics ?? options.adminPort === undefined,
    readiness: () =>
      listener.accepting
        ? options.readiness?.()
        : "not accepting connections: out of file descriptors",
    moreMetrics: () => [
      single(
        "sigver_accept_errors_total",
        "counter",
        "Failures to accept a connection (EMFILE and the like).",
        listener.errors,
      ),
      single(
        "sigver_accepting",
        "gauge",
        "1 while the server accepts connections.",
        listener.accepting ? 1 : 0,
      ),
      ...options.moreMetrics?.() ?? [],
    ],
  };
}

/** Starts listening (again on the same port, after an accept error). */
function _listen(
  listener: _Listener,
  options: ServeOptions,
  tls: { cert?: string; key?: string },
  handler: SigverHandler,
): Deno.NetAddr {
  const hostname = options.hostname ?? "0.0.0.0";
  let port = options.port ?? 8000;
  return listener.start(() => {
    const server = Deno.serve({
      hostname,
      port,
      ...tls,
      onListen: () => {},
    }, handler.fetch);
    port = (server.addr as Deno.NetAddr).port;
    return server;
  }, handler);
}

/**
 * Keeps one `Deno.serve` listening: starts another on the same address when
 * the current one's accept loop fails.
 */
class _Listener {
  accepting = true;
  errors = 0;
  #listen: () => Deno.HttpServer = () => {
    throw new Error("Cannot listen: not started");
  };
  #handler: SigverHandler | undefined;
  #server: Deno.HttpServer | undefined;
  #stopped = false;
  #retryMs = RETRY_MIN_MS;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** Listens for the first time: errors here are the caller's. */
  start(listen: () => Deno.HttpServer, handler: SigverHandler): Deno.NetAddr {
    this.#listen = listen;
    this.#handler = handler;
    const server = this.#watch(listen());
    return server.addr as Deno.NetAddr;
  }

  async stop(timeout: number): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    const server = this.#server;
    this.#server = undefined;
    if (server !== undefined) await settleWithin(server.shutdown(), timeout);
  }

  #watch(server: Deno.HttpServer): Deno.HttpServer {
    this.#server = server;
    server.finished.catch((error) => this.#failed(server, error));
    return server;
  }

  #failed(server: Deno.HttpServer, error: unknown): void {
    if (this.#stopped || server !== this.#server) return;
    this.#server = undefined;
    this.errors++;
    if (this.accepting) {
      this.accepting = false;
      this.#handler?.logEvent("error", "accept", {
        error: error instanceof Error ? error.message : String(error),
        peers: this.#handler.stats().peers,
        retry: "listening again with backoff; peers keep relaying",
      });
    } else {
      this.#retryMs = Math.min(RETRY_MAX_MS, this.#retryMs * 2);
    }
    this.#schedule(this.#retryMs);
  }

  #schedule(ms: number): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#retry(), ms);
  }

  #retry(): void {
    this.#timer = undefined;
    if (this.#stopped) return;
    if (this.#server !== undefined) {
      // Listening again, and no failure for STABLE_MS: the episode is over.
      this.accepting = true;
      this.#retryMs = RETRY_MIN_MS;
      this.#handler?.logEvent("info", "accept", {
        state: "accepting again",
        errors: this.errors,
      });
      return;
    }
    try {
      this.#watch(this.#listen());
      this.#schedule(STABLE_MS);
    } catch {
      // No descriptor for a listener either: count it and wait longer.
      this.errors++;
      this.#retryMs = Math.min(RETRY_MAX_MS, this.#retryMs * 2);
      this.#schedule(this.#retryMs);
    }
  }
}
