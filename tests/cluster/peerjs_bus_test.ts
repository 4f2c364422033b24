// Tests of cluster/peerjs_bus.ts against a real redis-server
// (dev/redis_server.ts): buses of two nodes on one Redis claiming ids,
// carrying messages and announcing arrivals; messages forged, garbled and
// replayed straight into Redis; Redis flushed, killed and started again.
// Every wait is bounded; none stands for a condition.

import assert from "node:assert/strict";
import { RedisClient } from "../../cluster/redis.ts";
import { RedisSubscriber } from "../../cluster/redis_subscriber.ts";
import {
  RedisPeerjsBus,
  type RedisPeerjsBusOptions,
} from "../../cluster/peerjs_bus.ts";
import type { EvictReason, PeerjsBusEvents } from "../../lib/peerjs/bus.ts";
import { startRedis } from "../../dev/redis_server.ts";
import { waitFor } from "../_helpers.ts";

Deno.test.sanitizer({ ops: true, resources: true });

const SECRET = "a cluster secret of 32 bytes....";

/** What a bus handed to its hub, in order. */
class Events implements PeerjsBusEvents {
  readonly delivered: { key: string; dst: string; frame: string }[] = [];
  readonly arrivals: string[] = [];
  readonly evictions: { id: string; reason: EvictReason }[] = [];

  deliver(key: string, dst: string, frame: string): void {
    this.delivered.push({ key, dst, frame });
  }

  arrived(_key: string, id: string): void {
    this.arrivals.push(id);
  }

  evict(_key: string, id: string, reason: EvictReason): void {
    this.evictions.push({ id, reason });
  }
}

function bus(
  url: string,
  events: Events,
  options: Partial<RedisPeerjsBusOptions> = {},
): RedisPeerjsBus {
  return new RedisPeerjsBus(events, {
    redis: url,
    secret: SECRET,
    redisTimeout: 500,
    backoffMax: 50,
    ...options,
  });
}

const offer = (src: string, dst: string) =>
  JSON.stringify({ type: "OFFER", src, dst, payload: { sdp: "v=0" } });

/** Waits until both buses listen to their channels. */
async function listening(redis: RedisClient): Promise<void> {
  await waitFor(async () => {
    const [, n] = await redis.command(
      "PUBSUB",
      "NUMSUB",
      "sigver:pj:arrived",
    ) as [string, number];
    return n === 2;
  }, "two buses listening");
}

async function claims(redis: RedisClient): Promise<string[]> {
  return await redis.command("KEYS", "sigver:pj:id:*") as string[];
}

Deno.test("RedisPeerjsBus holds an id on one node: another token is refused, the same token takes it over", async () => {
  await using redis = await startRedis();
  await using client = new RedisClient(redis.url);
  const [ea, eb] = [new Events(), new Events()];
  await using a = bus(redis.url, ea);
  await using b = bus(redis.url, eb);
  await listening(client);
  assert.equal(await a.claim("peerjs", "alice", "t1"), true);
  const [name] = await claims(client);
  assert.match(name, /^sigver:pj:id:peerjs:[0-9a-f]{32}$/);
  assert.match(
    await client.command("GET", name) as string,
    new RegExp(`^${a.id}\\|[A-Za-z0-9_-]{43}$`),
  );
  assert.ok(await client.command("PTTL", name) as number > 0);
  assert.equal(await b.claim("peerjs", "alice", "t2"), false);
  assert.equal(await b.claim("peerjs", "alice", "t1"), true);
  await waitFor(() => ea.evictions.length === 1, "a told to give alice up");
  assert.deepEqual(ea.evictions, [{ id: "alice", reason: "replaced" }]);
  assert.ok((await client.command("GET", name) as string).startsWith(b.id));
  // Each claim was announced to the other node.
  await waitFor(() => ea.arrivals.length === 1, "a told alice arrived");
  assert.deepEqual(eb.arrivals, ["alice"]);
  // Released: gone from Redis, free for any token.
  b.release("peerjs", "alice");
  a.release("peerjs", "alice");
  await waitFor(async () => (await claims(client)).length === 0);
  assert.equal(await a.claim("peerjs", "alice", "t3"), true);
});

Deno.test("RedisPeerjsBus carries a message to the node that holds its dst", async () => {
  await using redis = await startRedis();
  await using client = new RedisClient(redis.url);
  const [ea, eb] = [new Events(), new Events()];
  await using a = bus(redis.url, ea);
  await using b = bus(redis.url, eb);
  await listening(client);
  await b.claim("peerjs", "bob", "t");
  for (let i = 0; i < 20; i++) {
    assert.equal(
      await a.send("peerjs", "bob", offer(`alice${i}`, "bob")),
      true,
    );
  }
  assert.equal(await a.send("peerjs", "carol", offer("alice", "carol")), false);
  // Held by the sender's own node: nothing to carry.
  assert.equal(await b.send("peerjs", "bob", offer("alice", "bob")), false);
  await waitFor(() => eb.delivered.length === 20, "20 messages delivered");
  assert.deepEqual(
    eb.delivered.map((m) => JSON.parse(m.frame).src),
    Array.from({ length: 20 }, (_, i) => `alice${i}`),
  );
  assert.equal(a.stats().sent, 20);
  assert.equal(ea.delivered.length, 0);
});

Deno.test("RedisPeerjsBus drops messages forged, garbled or replayed into Redis", async () => {
  await using redis = await startRedis();
  await using client = new RedisClient(redis.url);
  const [ea, eb] = [new Events(), new Events()];
  await using a = bus(redis.url, ea);
  await using b = bus(redis.url, eb);
  await listening(client);
  await b.claim("peerjs", "bob", "t");
  const channel = `sigver:pj:node:${b.id}`;
  // Record a genuine message on a channel of our own, then replay it.
  await using spy = await startSpy(redis.url, channel);
  assert.equal(await a.send("peerjs", "bob", offer("alice", "bob")), true);
  await waitFor(() => eb.delivered.length === 1);
  const genuine = await spy.next();
  const rest = JSON.stringify({
    n: a.id,
    s: 99,
    t: "msg",
    k: "peerjs",
    i: "bob",
    f: offer("mallory", "bob"),
  });
  for (
    const payload of [
      genuine, // replayed
      `${"A".repeat(43)}.${rest}`, // forged
      "not a message", // garbled
      genuine.replace(/"i":"bob"/, '"i":"b\\u0000"'), // garbled
    ]
  ) {
    await client.command("PUBLISH", channel, payload);
  }
  await waitFor(() => {
    const r = b.stats().rejected;
    return r.replayed === 1 && r.forged === 1 && r.malformed === 2;
  }, "four messages rejected");
  assert.equal(eb.delivered.length, 1);
  assert.deepEqual(eb.evictions, []);
});

Deno.test("RedisPeerjsBus claims locally while Redis is down and puts the claims back once it returns", async () => {
  await using redis = await startRedis();
  await using client = new RedisClient(redis.url, {
    backoffMin: 50,
    backoffMax: 50,
  });
  const events = new Events();
  await using a = bus(redis.url, events, { claimTtl: 300 });
  await waitFor(() => a.connected);
  await redis.kill();
  assert.equal(await a.claim("peerjs", "alice", "t1"), true);
  assert.equal(await a.send("peerjs", "bob", offer("alice", "bob")), false);
  assert.equal(a.stats().local, 1);
  await redis.restart();
  await waitFor(async () => {
    try {
      return (await claims(client)).length === 1;
    } catch {
      return false;
    }
  }, "alice claimed again in Redis");
  assert.deepEqual(events.evictions, []);
});

Deno.test("RedisPeerjsBus gives an id up when its renewal finds another token holding it", async () => {
  await using redis = await startRedis();
  await using client = new RedisClient(redis.url);
  const [ea, eb] = [new Events(), new Events()];
  await using a = bus(redis.url, ea, { claimTtl: 300 });
  await using b = bus(redis.url, eb);
  await listening(client);
  assert.equal(await a.claim("peerjs", "alice", "t1"), true);
  // Redis lost its data: b's client takes the free id with its own token.
  await client.command("FLUSHALL");
  assert.equal(await b.claim("peerjs", "alice", "t2"), true);
  await waitFor(() => ea.evictions.length === 1, "a gives alice up");
  assert.deepEqual(ea.evictions, [{ id: "alice", reason: "taken" }]);
  assert.equal(a.stats().evicted, 1);
});

/** A subscriber connection that records one channel's payloads. */
async function startSpy(url: string, channel: string) {
  const payloads: string[] = [];
  const subscriber = new RedisSubscriber(url, {
    onMessage: (_channel, payload) => void payloads.push(payload),
    timeout: 500,
    backoffMin: 50,
    backoffMax: 50,
  });
  subscriber.subscribe(channel);
  await waitFor(() => subscriber.connected, "spy subscribed");
  return {
    async next(): Promise<string> {
      await waitFor(() => payloads.length > 0, "a payload");
      return payloads.shift()!;
    },
    [Symbol.asyncDispose]: () => subscriber.close(),
  };
}
