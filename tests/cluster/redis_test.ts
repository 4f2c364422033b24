// Tests of cluster/redis.ts against a real redis-server (dev/redis_server.ts)
// and against fake TCP listeners that stall or answer garbage. Timeouts in
// the client options are tens of milliseconds; no test sleeps.

import assert from "node:assert/strict";
import { deadline } from "../../lib/deadline.ts";
import {
  parseRedisUrl,
  RedisClient,
  type RedisClientOptions,
  RedisError,
  type RedisErrorCode,
} from "../../cluster/redis.ts";
import { RespError } from "../../lib/resp.ts";
import { startRedis } from "../../dev/redis_server.ts";
import { waitFor } from "../_helpers.ts";
import { servePlaced } from "../../deno/serve.ts";
import { ClusterPlacement } from "../../cluster/placement.ts";

/** Milliseconds a wait may take before the test fails. */
const WAIT = 10_000;

/** Fast reconnection, for tests. */
const FAST: RedisClientOptions = { backoffMin: 5, backoffMax: 20 };

const COMPARE_AND_DELETE =
  "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/** The RedisError a promise rejects with; fails the test if it resolves. */
async function rejection(
  promise: Promise<unknown>,
  code: RedisErrorCode,
): Promise<RedisError> {
  try {
    const value = await promise;
    assert.fail(`Expected a rejection with ${code}, got ${value}`);
  } catch (error) {
    assert.ok(error instanceof RedisError, `not a RedisError: ${error}`);
    assert.equal(error.code, code, error.message);
    return error;
  }
}

/** Retries `fn` while it fails with a RedisError, for short timeouts. */
async function eventually<T>(fn: () => Promise<T>): Promise<T> {
  const until = Date.now() + WAIT;
  for (;;) {
    try {
      return await fn();
    } catch (error) {
      if (!(error instanceof RedisError) || Date.now() > until) throw error;
    }
    // Let the client's backoff timer run.
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

interface StateEvent {
  up: boolean;
  error: RedisError | undefined;
}

/** Records `onState` calls, for a test to wait on them one by one. */
class StateLog {
  readonly events: StateEvent[] = [];
  #read = 0;
  #wake: (() => void) | undefined;

  readonly record = (up: boolean, error?: RedisError): void => {
    this.events.push({ up, error });
    this.#wake?.();
  };

  /** Forgets the events not yet returned. */
  skip(): void {
    this.#read = this.events.length;
  }

  /** The next event not yet returned, waiting for it if needed. */
  async next(): Promise<StateEvent> {
    while (this.#read === this.events.length) {
      const { promise, resolve } = Promise.withResolvers<void>();
      this.#wake = resolve;
      await deadline(promise, WAIT, "a state change");
    }
    return this.events[this.#read++];
  }
}

/** What a fake server does with one accepted connection. */
type Behavior = (conn: Deno.TcpConn, index: number) => Promise<void>;

/** Reads from `conn` until the client closes it; resolves to the bytes. */
async function readUntilClosed(conn: Deno.TcpConn): Promise<number> {
  const buf = new Uint8Array(1024);
  let total = 0;
  try {
    for (let n; (n = await conn.read(buf)) !== null;) total += n;
  } catch {
    // Reset, or closed by the fake's disposal.
  }
  return total;
}

/** Answers the client's handshake (a lone PING) with PONG. */
async function answerPing(conn: Deno.TcpConn): Promise<void> {
  const n = await conn.read(new Uint8Array(1024));
  assert.notEqual(n, null);
  await conn.write(new TextEncoder().encode("+PONG\r\n"));
}

/**
 * A TCP listener on a free loopback port that plays a broken Redis: each
 * accepted connection runs `behavior`, and the fake records when the client
 * closes it.
 */
class FakeRedis implements AsyncDisposable {
  readonly #listener: Deno.TcpListener;
  readonly #conns = new Set<Deno.TcpConn>();
  readonly #tasks: Promise<void>[] = [];
  readonly #loop: Promise<void>;
  /** How many connections were accepted. */
  accepted = 0;
  /** How many connections the client closed (EOF seen by the fake). */
  closedByClient = 0;
  #wake: (() => void) | undefined;

  constructor(behavior: Behavior) {
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#loop = this.#accept(behavior);
  }

  async #accept(behavior: Behavior): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        const index = this.accepted++;
        this.#conns.add(conn);
        this.#tasks.push(this.#serve(conn, index, behavior));
        this.#poke();
      }
    } catch {
      // The listener was closed.
    }
  }

  get url(): string {
    return `redis://127.0.0.1:${this.#listener.addr.port}`;
  }

  async #serve(conn: Deno.TcpConn, index: number, behavior: Behavior) {
    try {
      await behavior(conn, index);
      await readUntilClosed(conn);
      this.closedByClient++;
    } catch {
      // The client went away in the middle.
      this.closedByClient++;
    } finally {
      this.#conns.delete(conn);
      try {
        conn.close();
      } catch {
        // Closed by the disposal.
      }
      this.#poke();
    }
  }

  #poke(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Waits until `condition` holds, checked at every accept and close. */
  async until(condition: () => boolean, what: string): Promise<void> {
    while (!condition()) {
      const { promise, resolve } = Promise.withResolvers<void>();
      this.#wake = resolve;
      await deadline(promise, WAIT, what);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#listener.close();
    await this.#loop;
    for (const conn of this.#conns) {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
    await Promise.all(this.#tasks);
  }
}

Deno.test("RedisClient sets and gets keys on a real Redis", async () => {
  await using redis = await startRedis();
  await using client = new RedisClient(redis.url);
  // Called before the connection is up: it waits for it.
  assert.equal(await client.command("SET", "greeting", "héllo"), "OK");
  assert.equal(await client.command("GET", "greeting"), "héllo");
  assert.equal(await client.command("GET", "missing"), null);
  assert.equal(await client.command("INCRBY", "n", 41), 41);
  assert.equal(await client.command("INCR", "n"), 42);
  const binary = new Uint8Array([0x61, 0x0d, 0x0a, 0x62]);
  await client.command("SET", "bytes", binary);
  assert.equal(await client.command("STRLEN", "bytes"), 4);
  assert.equal(await client.command("DEL", "greeting", "n", "missing"), 2);
  assert.deepEqual(await client.command("KEYS", "*"), ["bytes"]);
  assert.equal(client.connected, true);
  const stats = client.stats();
  // 9 commands and the handshake's PING, each its own round trip.
  assert.equal(stats.commands, 10);
  assert.equal(stats.roundTrips, 10);
  assert.equal(stats.connects, 1);
  assert.equal(stats.errors, 0);
});

Deno.test("RedisClient takes a lease with SET NX PX only when it is free", async () => {
  await using redis = await startRedis();
  await using client = new RedisClient(redis.url);
  const lease = ["SET", "group:1", "node-a", "NX", "PX", 30_000] as const;
  assert.equal(await client.command(...lease), "OK");
  assert.equal(
    await client.command("SET", "group:1", "node-b", "NX", "PX", 30_000),
    null,
  );
  assert.equal(await client.command("GET", "group:1"), "node-a");
  const ttl = await client.command("PTTL", "group:1");
  assert.ok(typeof ttl === "number" && ttl > 0 && ttl <= 30_000, `${ttl}`);
  // Renewal: only the holder extends it (XX keeps it from being created).
  assert.equal(
    await client.command("SET", "group:1", "node-a", "XX", "PX", 60_000),
    "OK",
  );
  const renewed = await client.command("PTTL", "group:1");
  assert.ok(typeof renewed === "number" && renewed > 30_000, `${renewed}`);
  // A liveness key with a short TTL expires on Redis's clock.
  assert.equal(await client.command("SET", "node:a", "1", "PX", 1), "OK");
  await deadline(
    (async () => {
      while (await client.command("EXISTS", "node:a") !== 0) {
        await client.command("PING");
      }
    })(),
    WAIT,
    "the key to expire",
  );
});

Deno.test("RedisClient deletes a lease by Lua compare-and-delete", async () => {
  await using redis = await startRedis();
  await using client = new RedisClient(redis.url);
  await client.command("SET", "group:7", "node-a", "PX", 30_000);
  const cad = (owner: string) =>
    client.command("EVAL", COMPARE_AND_DELETE, 1, "group:7", owner);
  assert.equal(await cad("node-b"), 0);
  assert.equal(await client.command("GET", "group:7"), "node-a");
  assert.equal(await cad("node-a"), 1);
  assert.equal(await client.command("GET", "group:7"), null);
  assert.equal(await cad("node-a"), 0);
  // The same script by its SHA1, after SCRIPT LOAD.
  const sha = await client.command("SCRIPT", "LOAD", COMPARE_AND_DELETE);
  assert.equal(typeof sha, "string");
  await client.command("SET", "group:7", "node-c");
  assert.equal(
    await client.command("EVALSHA", sha as string, 1, "group:7", "node-c"),
    1,
  );
});

Deno.test("RedisClient rejects an error reply with a RedisError", async () => {
  await using redis = await startRedis();
  await using client = new RedisClient(redis.url);
  await client.command("SET", "s", "text");
  const wrongType = await rejection(client.command("LPUSH", "s", "x"), "reply");
  assert.ok(wrongType.reply instanceof RespError);
  assert.equal(wrongType.reply.code, "WRONGTYPE");
  assert.match(wrongType.message, /^Cannot run LPUSH: WRONGTYPE /);
  const noScript = await rejection(
    client.command("EVALSHA", "0".repeat(40), 0),
    "reply",
  );
  assert.equal(noScript.reply?.code, "NOSCRIPT");
  await rejection(client.command("NOSUCHCOMMAND"), "reply");
  // The connection is fine: an error reply is an answer.
  assert.equal(await client.command("GET", "s"), "text");
  const stats = client.stats();
  assert.equal(stats.errorReplies, 3);
  assert.equal(stats.connects, 1);
  assert.equal(stats.errors, 0);
});

Deno.test("RedisClient rejects arguments it cannot encode without sending", async () => {
  await using redis = await startRedis();
  await using client = new RedisClient(redis.url);
  await assert.rejects(client.command(), RangeError);
  await assert.rejects(client.command("SET", "k", NaN), RangeError);
  await assert.rejects(client.pipeline([["PING"], []]), RangeError);
  await assert.rejects(
    client.command("SET", "k", undefined as unknown as string),
    TypeError,
  );
  assert.equal(await client.command("EXISTS", "k"), 0);
});

Deno.test("RedisClient pipeline keeps the order of replies", async () => {
  await using redis = await startRedis();
  await using client = new RedisClient(redis.url);
  await client.command("PING");
  const before = client.stats();
  const commands = [];
  for (let i = 0; i < 200; i++) {
    commands.push(["RPUSH", "list", i], ["LINDEX", "list", -1]);
  }
  commands.push(["LPUSH", "list"], ["LLEN", "list"]);
  const replies = await client.pipeline(commands);
  assert.equal(replies.length, 402);
  for (let i = 0; i < 200; i++) {
    assert.equal(replies[2 * i], i + 1);
    assert.equal(replies[2 * i + 1], String(i));
  }
  // An error reply is a value in its place, the rest still run.
  assert.ok(replies[400] instanceof RespError);
  assert.equal(replies[401], 200);
  const after = client.stats();
  assert.equal(after.roundTrips - before.roundTrips, 1);
  assert.equal(after.commands - before.commands, 402);
  assert.equal(after.errorReplies - before.errorReplies, 1);
  assert.deepEqual(await client.pipeline([]), []);
  // Concurrent commands and pipelines get their own replies.
  const results = await Promise.all([
    client.command("LINDEX", "list", 0),
    client.pipeline([["LINDEX", "list", 1], ["LINDEX", "list", 2]]),
    client.command("LINDEX", "list", 3),
  ]);
  assert.deepEqual(results, ["0", ["1", "2"], "3"]);
});

Deno.test("RedisClient selects the database of the URL", async () => {
  await using redis = await startRedis();
  await using db3 = new RedisClient(`${redis.url}/3`);
  await using db0 = new RedisClient(`${redis.url}/0`);
  await using plain = new RedisClient(redis.url);
  await db3.command("SET", "where", "three");
  await db0.command("SET", "where", "zero");
  assert.equal(await db3.command("GET", "where"), "three");
  assert.equal(await db0.command("GET", "where"), "zero");
  assert.equal(await plain.command("GET", "where"), "zero");
  assert.match(String(await db3.command("CLIENT", "INFO")), / db=3 /);
});

Deno.test("RedisClient logs in with the password of the URL", async (t) => {
  await using redis = await startRedis({
    password: "p@ss word",
    args: ["--user", "alice", "on", ">alice-secret", "~*", "&*", "+@all"],
  });
  const port = redis.port;
  await t.step("default user", async () => {
    await using client = new RedisClient(`${redis.url}/2`);
    assert.equal(await client.command("SET", "k", "v"), "OK");
    const whoami = await client.command("ACL", "WHOAMI");
    assert.equal(whoami, "default");
  });
  await t.step("ACL user", async () => {
    await using client = new RedisClient(
      `redis://alice:alice-secret@127.0.0.1:${port}/2`,
    );
    assert.equal(await client.command("ACL", "WHOAMI"), "alice");
    assert.equal(await client.command("GET", "k"), "v");
  });
  await t.step("wrong password", async () => {
    const states = new StateLog();
    await using client = new RedisClient(
      `redis://:wrong@127.0.0.1:${port}`,
      { ...FAST, onState: states.record },
    );
    const { up, error } = await states.next();
    assert.equal(up, false);
    assert.equal(error?.code, "reply");
    assert.equal(error?.reply?.code, "WRONGPASS");
    assert.match(error!.message, /^Cannot connect to Redis: AUTH failed: /);
    assert.doesNotMatch(error!.message, /wrong/);
    const failed = await rejection(client.command("GET", "k"), "disconnected");
    assert.doesNotMatch(failed.message, /wrong/);
  });
  await t.step("no password", async () => {
    const states = new StateLog();
    await using _client = new RedisClient(`redis://127.0.0.1:${port}`, {
      ...FAST,
      onState: states.record,
    });
    const { error } = await states.next();
    assert.equal(error?.reply?.code, "NOAUTH");
  });
});

Deno.test("RedisClient reconnects after Redis is killed and restarted", async () => {
  await using redis = await startRedis();
  const states = new StateLog();
  await using client = new RedisClient(`${redis.url}/1`, {
    ...FAST,
    commandTimeout: 5_000,
    onState: states.record,
  });
  assert.deepEqual(await states.next(), { up: true, error: undefined });
  await client.command("SET", "k", "before");

  await redis.kill();
  const down = await states.next();
  assert.equal(down.up, false);
  assert.equal(down.error?.code, "disconnected");
  assert.equal(client.connected, false);
  // Down: commands fail at once, long before their 5 s timeout.
  for (let i = 0; i < 5; i++) {
    const error = await rejection(client.command("GET", "k"), "disconnected");
    assert.match(
      error.message,
      /^Cannot run GET: Redis (is down|is unreachable)/,
    );
    await rejection(client.pipeline([["GET", "k"]]), "disconnected");
  }

  await redis.restart();
  assert.deepEqual(await states.next(), { up: true, error: undefined });
  assert.equal(client.connected, true);
  // A fresh Redis on the same port, and the URL's database again.
  assert.equal(await client.command("GET", "k"), null);
  assert.match(String(await client.command("CLIENT", "INFO")), / db=1 /);
  const stats = client.stats();
  assert.equal(stats.connects, 2);
  assert.ok(stats.errors >= 2, `${stats.errors}`);
  assert.equal(stats.timeouts, 0);
});

Deno.test("RedisClient drops a stalled Redis and reconnects when it resumes", async () => {
  await using redis = await startRedis();
  const states = new StateLog();
  await using client = new RedisClient(redis.url, {
    ...FAST,
    commandTimeout: 50,
    connectTimeout: 50,
    onState: states.record,
  });
  assert.equal((await states.next()).up, true);
  // 50 ms is short on a busy machine: retry until one SET makes it.
  assert.equal(await eventually(() => client.command("SET", "k", "v")), "OK");
  assert.equal(client.connected, true);
  states.skip();
  const seen = states.events.length;

  redis.pause();
  const stalled = await rejection(client.command("GET", "k"), "timeout");
  assert.equal(stalled.message, "Cannot run GET: no reply within 50 ms");
  const down = await states.next();
  assert.equal(down.up, false);
  assert.equal(down.error?.code, "timeout");
  // While it stalls, the kernel still accepts connections but the PING of
  // the handshake gets no answer: the client stays down and every command
  // settles within its timeout.
  for (let i = 0; i < 3; i++) {
    const error = await client.command("GET", "k").then(
      (value) => assert.fail(`resolved with ${value}`),
      (error) => error,
    );
    assert.ok(error instanceof RedisError);
    assert.ok(["disconnected", "timeout"].includes(error.code), error.message);
    assert.equal(client.connected, false);
  }
  assert.equal(states.events.length, seen + 1);

  redis.resume();
  assert.equal((await states.next()).up, true);
  assert.equal(await eventually(() => client.command("GET", "k")), "v");
  assert.ok(client.stats().timeouts >= 1);
});

Deno.test("RedisClient times out a command on a listener that never answers", async () => {
  // The listener answers the handshake's PING, then nothing.
  await using fake = new FakeRedis(answerPing);
  const states = new StateLog();
  await using client = new RedisClient(fake.url, {
    ...FAST,
    commandTimeout: 50,
    onState: states.record,
  });
  assert.equal((await states.next()).up, true);
  const [timedOut, behind] = await Promise.all([
    rejection(client.command("GET", "k"), "timeout"),
    rejection(client.pipeline([["GET", "a"], ["GET", "b"]]), "timeout"),
  ]);
  assert.equal(timedOut.message, "Cannot run GET: no reply within 50 ms");
  assert.match(behind.message, /^Cannot run a pipeline of 2 commands: /);
  const down = await states.next();
  assert.equal(down.error?.code, "timeout");
  // The client dropped the stalled connection and made a new one.
  await fake.until(() => fake.closedByClient >= 1, "the client to drop it");
  assert.equal((await states.next()).up, true);
  assert.ok(fake.accepted >= 2);
  const stats = client.stats();
  // The pipeline may fail with the dropped connection before its own timer.
  assert.ok(stats.timeouts >= 1);
  assert.ok(stats.errors >= 1);
});

Deno.test("RedisClient stays down on a listener that never answers the handshake", async () => {
  await using fake = new FakeRedis(() => Promise.resolve());
  const states = new StateLog();
  await using client = new RedisClient(fake.url, {
    ...FAST,
    connectTimeout: 30,
    commandTimeout: 1_000,
    onState: states.record,
  });
  // Called while connecting: rejected when the attempt gives up.
  const waited = await rejection(client.command("PING"), "disconnected");
  assert.equal(waited.message, "Cannot run PING: Redis is unreachable");
  assert.ok(waited.cause instanceof RedisError);
  assert.equal(waited.cause.code, "timeout");
  const down = await states.next();
  assert.equal(down.up, false);
  assert.equal(
    down.error?.message,
    "Cannot connect to Redis: no answer within 30 ms",
  );
  // It keeps trying, and drops each silent connection.
  await fake.until(() => fake.closedByClient >= 2, "two attempts");
  assert.equal(states.events.length, 1);
});

Deno.test("RedisClient drops a connection that answers garbage", async (t) => {
  await t.step("garbage to the handshake", async () => {
    await using fake = new FakeRedis(async (conn) => {
      await conn.read(new Uint8Array(1024));
      await conn.write(
        new TextEncoder().encode("HTTP/1.1 400 Bad Request\r\n"),
      );
    });
    const states = new StateLog();
    await using client = new RedisClient(fake.url, {
      ...FAST,
      onState: states.record,
    });
    const down = await states.next();
    assert.equal(down.up, false);
    assert.equal(down.error?.code, "protocol");
    assert.ok(down.error?.cause instanceof SyntaxError);
    await fake.until(() => fake.accepted >= 3, "reconnections");
    assert.equal(client.connected, false);
    assert.ok(client.stats().errors >= 2);
  });

  await t.step("garbage to commands rejects every pending one", async () => {
    await using fake = new FakeRedis(async (conn, index) => {
      await answerPing(conn);
      if (index > 0) return;
      // Three commands arrive in one write; the first gets its answer.
      await conn.read(new Uint8Array(1024));
      await conn.write(new TextEncoder().encode(":1\r\n?garbage\r\n"));
    });
    const states = new StateLog();
    await using client = new RedisClient(fake.url, {
      ...FAST,
      onState: states.record,
    });
    assert.equal((await states.next()).up, true);
    const [first, second, third] = await Promise.allSettled([
      client.command("INCR", "a"),
      client.command("INCR", "b"),
      client.pipeline([["INCR", "c"]]),
    ]);
    assert.deepEqual(first, { status: "fulfilled", value: 1 });
    for (const result of [second, third]) {
      assert.equal(result.status, "rejected");
      const error = (result as PromiseRejectedResult).reason;
      assert.ok(error instanceof RedisError);
      assert.equal(error.code, "protocol");
      assert.ok(error.cause instanceof SyntaxError);
    }
    assert.equal((await states.next()).error?.code, "protocol");
    assert.equal((await states.next()).up, true);
  });

  await t.step("a reply nobody asked for", async () => {
    await using fake = new FakeRedis(async (conn, index) => {
      await answerPing(conn);
      if (index === 0) await conn.write(new TextEncoder().encode("+HELLO\r\n"));
    });
    const states = new StateLog();
    await using _client = new RedisClient(fake.url, {
      ...FAST,
      onState: states.record,
    });
    assert.equal((await states.next()).up, true);
    const down = await states.next();
    assert.equal(
      down.error?.message,
      "Cannot keep the Redis connection: Redis sent a reply nobody asked for",
    );
    assert.equal((await states.next()).up, true);
  });

  await t.step("a reply past the limits", async () => {
    await using fake = new FakeRedis(async (conn) => {
      await answerPing(conn);
      await conn.read(new Uint8Array(1024));
      await conn.write(new TextEncoder().encode("$1000000000\r\n"));
    });
    const states = new StateLog();
    await using client = new RedisClient(fake.url, {
      ...FAST,
      onState: states.record,
      replyLimits: { maxBulkLength: 1024 },
    });
    assert.equal((await states.next()).up, true);
    const error = await rejection(client.command("GET", "big"), "protocol");
    assert.match(String(error.cause), /bulk string length exceeds 1024/);
  });
});

Deno.test("RedisClient close rejects pending commands and is idempotent", async () => {
  await using fake = new FakeRedis(answerPing);
  const states = new StateLog();
  const client = new RedisClient(fake.url, {
    commandTimeout: 60_000,
    onState: states.record,
  });
  assert.equal((await states.next()).up, true);
  const pending = rejection(client.command("BLPOP", "queue", 0), "closed");
  const pipeline = rejection(client.pipeline([["GET", "a"]]), "closed");
  const closing = client.close();
  assert.equal(client.close(), closing);
  await closing;
  const error = await pending;
  assert.equal(error.message, "Cannot run BLPOP: the client is closed");
  assert.equal(
    (await pipeline).message,
    "Cannot run a pipeline of 1 command: the client is closed",
  );
  await rejection(client.command("PING"), "closed");
  await rejection(client.pipeline([]), "closed");
  await client[Symbol.asyncDispose]();
  await fake.until(() => fake.closedByClient === 1, "the socket to close");
  // No state change is reported for a close the owner asked for.
  assert.equal(states.events.length, 1);
  assert.equal(client.connected, false);
});

Deno.test("RedisClient close stops reconnecting while Redis is down", async () => {
  const port = (() => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const { port } = listener.addr;
    listener.close();
    return port;
  })();
  const states = new StateLog();
  const client = new RedisClient(`redis://127.0.0.1:${port}`, {
    backoffMin: 10_000,
    backoffMax: 60_000,
    onState: states.record,
  });
  const { up, error } = await states.next();
  assert.equal(up, false);
  assert.equal(error?.code, "disconnected");
  assert.ok(error?.cause instanceof Deno.errors.ConnectionRefused);
  // Closing during a 10 s backoff returns at once and leaves no timer.
  await deadline(client.close(), 1_000, "close");
  await rejection(client.command("PING"), "closed");
});

Deno.test("RedisClient close during a connection attempt", async () => {
  await using fake = new FakeRedis(() => Promise.resolve());
  const client = new RedisClient(fake.url, { connectTimeout: 60_000 });
  const waiting = rejection(client.command("PING"), "closed");
  await fake.until(() => fake.accepted === 1, "the attempt");
  // At once, not when the 60 s attempt would give up.
  await deadline(client.close(), 1_000, "close");
  await waiting;
  await fake.until(() => fake.closedByClient === 1, "the socket to close");
});

Deno.test("RedisClient reports an exception of onState", async () => {
  await using redis = await startRedis();
  const reported: unknown[] = [];
  const onError = (event: ErrorEvent) => {
    event.preventDefault();
    reported.push(event.error);
  };
  globalThis.addEventListener("error", onError);
  try {
    await using client = new RedisClient(redis.url, {
      onState: () => {
        throw new Error("gauge broken");
      },
    });
    assert.equal(await client.command("PING"), "PONG");
    assert.equal(reported.length, 1);
    assert.equal((reported[0] as Error).message, "gauge broken");
  } finally {
    globalThis.removeEventListener("error", onError);
  }
});

Deno.test("RedisClient rejects bad options", () => {
  const url = "redis://127.0.0.1:1";
  assert.throws(() => new RedisClient("http://127.0.0.1"), TypeError);
  for (const bad of [0, -1, NaN]) {
    assert.throws(() => new RedisClient(url, { commandTimeout: bad }), {
      name: "RangeError",
      message:
        `Cannot create Redis client: commandTimeout ${bad} is not a positive number of milliseconds`,
    });
  }
  assert.throws(
    () => new RedisClient(url, { backoffMax: Infinity }),
    RangeError,
  );
  assert.throws(
    () => new RedisClient(url, { backoffMin: 100, backoffMax: 10 }),
    RangeError,
  );
  assert.throws(
    () => new RedisClient(url, { replyLimits: { maxDepth: 0 } }),
    RangeError,
  );
});

Deno.test("parseRedisUrl reads every form of Redis URL", async (t) => {
  const good: [string, ReturnType<typeof parseRedisUrl>][] = [
    ["redis://127.0.0.1", {
      hostname: "127.0.0.1",
      port: 6379,
      username: undefined,
      password: undefined,
      db: undefined,
    }],
    ["redis://localhost:7000/", {
      hostname: "localhost",
      port: 7000,
      username: undefined,
      password: undefined,
      db: undefined,
    }],
    ["redis://:secret@redis.internal:6380/15", {
      hostname: "redis.internal",
      port: 6380,
      username: undefined,
      password: "secret",
      db: 15,
    }],
    ["redis://alice:p%3Ass%40@10.0.0.1/0", {
      hostname: "10.0.0.1",
      port: 6379,
      username: "alice",
      password: "p:ss@",
      db: 0,
    }],
    ["redis://[::1]:6379/1", {
      hostname: "::1",
      port: 6379,
      username: undefined,
      password: undefined,
      db: 1,
    }],
  ];
  for (const [url, address] of good) {
    await t.step(url, () => assert.deepEqual(parseRedisUrl(url), address));
  }
  const bad: [string, string][] = [
    ["127.0.0.1:6379", "not a URL"],
    ["rediss://:secret@host", "the scheme is not redis:"],
    ["http://host", "the scheme is not redis:"],
    ["redis://:secret@host/x", "the path is not a database number"],
    ["redis://host/1/2", "the path is not a database number"],
    ["redis://host:0", "port 0"],
    ["redis://host/1?timeout=1", "a query or fragment is not supported"],
    ["redis://alice@host", "a user name without a password"],
    ["redis://:%E0%A4%A@host", "bad percent-encoding in the credentials"],
  ];
  for (const [url, message] of bad) {
    await t.step(url, () => {
      assert.throws(() => parseRedisUrl(url), {
        name: "TypeError",
        message: `Cannot parse Redis URL: ${message}`,
      });
    });
  }
});

Deno.test("serve() that cannot listen lets its cluster node's Redis connection go", async () => {
  await using redis = await startRedis();
  await using client = new RedisClient(redis.url);
  const clients = async () => {
    const info = String(await client.command("INFO", "clients"));
    return Number(/connected_clients:(\d+)/.exec(info)?.[1]);
  };
  assert.equal(await clients(), 1, "this test's own client");
  const accepted = async () => {
    const info = String(await client.command("INFO", "stats"));
    return Number(/total_connections_received:(\d+)/.exec(info)?.[1]);
  };
  const before = await accepted();
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    assert.throws(
      () =>
        servePlaced(
          { hostname: "127.0.0.1", port: taken.addr.port },
          new ClusterPlacement({
            redis: redis.url,
            url: `ws://127.0.0.1:${taken.addr.port}`,
            secret: "a cluster secret of 16+ bytes",
          }),
        ),
      Deno.errors.AddrInUse,
    );
  } finally {
    taken.close();
  }
  // The node dialled Redis as it was made: it must hang up, not stay
  // connected. Wait until Redis has accepted that connection (checking
  // before would pass with a leak not yet connected), then until it is gone.
  await waitFor(async () => await accepted() > before, "the node to dial");
  await waitFor(async () => await clients() === 1, "the node to hang up");
  assert.equal(await clients(), 1, "the node's connection is gone");
});
