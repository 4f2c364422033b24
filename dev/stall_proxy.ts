/**
 * A TCP proxy on 127.0.0.1 that a fault test can stall: put it between a
 * node and Redis, or in front of a node's cluster URL, and
 * {@linkcode StallProxy.stall} holds every byte both ways (the connections
 * stay open, as in a partition that drops packets) until
 * {@linkcode StallProxy.resume}. {@linkcode StallProxy.latency} delays every
 * chunk instead (a slow link). New connections are accepted while stalled
 * and carry nothing either.
 *
 * ```ts ignore
 * await using redis = await startRedis();
 * await using proxy = startStallProxy(redis.port);
 * const node = new ClusterNode({ redis: proxy.url("redis"), ... });
 * proxy.stall();
 * proxy.resume();
 * ```
 *
 * @module
 */

/** A running proxy. */
export interface StallProxy extends AsyncDisposable {
  /** The port it listens on, on 127.0.0.1. */
  readonly port: number;
  /** Connections it has accepted so far. */
  readonly accepted: number;
  /**
   * `<scheme>://127.0.0.1:<port>`.
   *
   * @param scheme `redis`, `ws` or `http`.
   * @returns The URL.
   */
  url(scheme: string): string;
  /** Holds every byte both ways until {@linkcode StallProxy.resume}. */
  stall(): void;
  /** Passes the bytes held, and what follows, on. */
  resume(): void;
  /**
   * Delays every chunk by `ms` (0: none), in order.
   *
   * @param ms Milliseconds.
   */
  latency(ms: number): void;
  /** Stops listening and closes every connection. Idempotent. */
  close(): Promise<void>;
}

/** Chunks one direction may hold while stalled, then it stops reading. */
const _MAX_HELD = 1024;

/**
 * Starts a proxy to `127.0.0.1:<target>`.
 *
 * @param target The port to forward to.
 * @returns The proxy; dispose of it (`await using`).
 */
export function startStallProxy(target: number): StallProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  let stalled = false;
  let delay = 0;
  let accepted = 0;
  let closing: Promise<void> | undefined;
  /** Resolved on resume (a new one each stall). */
  let resumed = Promise.withResolvers<void>();
  resumed.resolve();

  const track = (task: Promise<void>) => {
    tasks.add(task);
    void task.finally(() => tasks.delete(task));
  };
  const closeConn = (conn: Deno.Conn) => {
    if (!conns.delete(conn)) return;
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  };

  /** Copies `from` to `to`, holding chunks while stalled or delayed. */
  const pump = async (from: Deno.Conn, to: Deno.Conn): Promise<void> => {
    const buf = new Uint8Array(16 * 1024);
    const queue: { bytes: Uint8Array; due: number }[] = [];
    let wake = Promise.withResolvers<void>();
    let ended = false;
    const writer = (async () => {
      for (;;) {
        while (queue.length === 0 && !ended) {
          await wake.promise;
          wake = Promise.withResolvers<void>();
        }
        if (queue.length === 0) return;
        // Nothing passes while stalled.
        while (stalled) await resumed.promise;
        const { bytes, due } = queue[0];
        const wait = due - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        if (stalled) continue;
        queue.shift();
        for (let at = 0; at < bytes.length;) {
          at += await to.write(bytes.subarray(at));
        }
      }
    })();
    try {
      for (;;) {
        // A stalled link still takes bytes in (the sender's writes succeed,
        // as they would into a dropping network) up to a bound.
        while (queue.length >= _MAX_HELD) await resumed.promise;
        const n = await from.read(buf);
        if (n === null) break;
        queue.push({ bytes: buf.slice(0, n), due: performance.now() + delay });
        wake.resolve();
      }
    } catch {
      // Closed by either side.
    } finally {
      ended = true;
      wake.resolve();
      await writer.catch(() => {});
      closeConn(to);
      closeConn(from);
    }
  };

  const serve = async (client: Deno.Conn): Promise<void> => {
    let server: Deno.Conn;
    try {
      server = await Deno.connect({ hostname: "127.0.0.1", port: target });
    } catch {
      closeConn(client);
      return;
    }
    if (closing !== undefined) {
      server.close();
      closeConn(client);
      return;
    }
    conns.add(server);
    await Promise.all([pump(client, server), pump(server, client)]);
  };

  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        accepted++;
        conns.add(conn);
        track(serve(conn));
      }
    } catch {
      // The listener closed.
    }
  })();

  const proxy: StallProxy = {
    port: (listener.addr as Deno.NetAddr).port,
    get accepted() {
      return accepted;
    },
    url(scheme) {
      return `${scheme}://127.0.0.1:${this.port}`;
    },
    stall() {
      if (stalled) return;
      stalled = true;
      resumed = Promise.withResolvers<void>();
    },
    resume() {
      if (!stalled) return;
      stalled = false;
      resumed.resolve();
    },
    latency(ms) {
      delay = ms;
    },
    close() {
      return closing ??= (async () => {
        listener.close();
        stalled = false;
        resumed.resolve();
        for (const conn of [...conns]) closeConn(conn);
        await accepting;
        while (tasks.size > 0) await Promise.all(tasks);
      })();
    },
    [Symbol.asyncDispose]() {
      return this.close();
    },
  };
  return proxy;
}
