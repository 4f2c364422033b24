// Tests of cluster/topic_bus.ts (and its subscriber connection,
// cluster/redis_subscriber.ts) against a real redis-server
// (dev/redis_server.ts): buses of two nodes on one Redis, messages forged,
// garbled and replayed straight into Redis, Redis killed and started again.
// Every wait is bounded; none stands for a condition.

import assert from "node:assert/strict";
import { RedisClient } from "../../cluster/redis.ts";
import {
  RedisTopicBus,
  type RedisTopicBusOptions,
  topicChannel,
} from "../../cluster/topic_bus.ts";
import { startRedis } from "../../dev/redis_server.ts";
import { waitFor } from "../_helpers.ts";

// Deno 2.8 turned the op and resource sanitizers off by default: on here,
// so that a socket, timer or crypto operation a bus leaves behind fails.
Deno.test.sanitizer({ ops: true, resources: true });

const SECRET = "a cluster secret of 32 bytes....";
const PREFIX = "sigver:";

/** What a bus delivered, in order. */
class Delivered {
  readonly items: { topic: string; frame: string }[] = [];
  readonly deliver = (topic: string, frame: string): void => {
    this.items.push({ topic, frame });
  };

  /** Waits until `n` publishes were delivered. */
  async count(n: number): Promise<void> {
    await waitFor(
      () => this.items.length >= n,
      `${n} deliveries (got ${this.items.length})`,
    );
  }
}

function publish(topic: string, data: unknown): string {
  return JSON.stringify({ type: "publish", topic, data });
}

function bus(
  url: string,
  delivered: Delivered,
  options: Partial<RedisTopicBusOptions> = {},
): RedisTopicBus {
  return new RedisTopicBus(delivered.deliver, {
    redis: url,
    secret: SECRET,
    redisTimeout: 500,
    backoffMax: 50,
    ...options,
  });
}

/** Waits until Redis counts `n` subscribers of a topic's channel. */
async function subscribers(
  redis: RedisClient,
  topic: string,
  n: number,
): Promise<void> {
  const channel = topicChannel(PREFIX, topic);
  await waitFor(async () => {
    try {
      const [, count] = await redis.command(
        "PUBSUB",
        "NUMSUB",
        channel,
      ) as [string, number];
      return count === n;
    } catch {
      return false;
    }
  }, `${n} subscriber(s) of ${channel}`);
}

Deno.test("topicChannel hashes a topic into the prefix's yw: channels", () => {
  const a = topicChannel(PREFIX, "room");
  assert.match(a, /^sigver:yw:[0-9a-f]{16}$/);
  assert.equal(topicChannel(PREFIX, "room"), a);
  assert.notEqual(topicChannel(PREFIX, "room2"), a);
  assert.notEqual(topicChannel("other:", "room"), a.replace("sigver:", ""));
  assert.match(topicChannel(PREFIX, "x".repeat(10_000)), /^sigver:yw:/);
});

Deno.test("two buses on one Redis deliver each other's publishes and skip their own", async () => {
  await using redis = await startRedis();
  await using client = new RedisClient(redis.url);
  const [da, db] = [new Delivered(), new Delivered()];
  await using a = bus(redis.url, da);
  await using b = bus(redis.url, db);
  a.subscribe("room");
  b.subscribe("room");
  b.subscribe("other");
  await subscribers(client, "room", 2);
  await subscribers(client, "other", 1);

  a.publish("room", publish("room", "from a"));
  b.publish("room", publish("room", "from b"));
  await da.count(1);
  await db.count(1);
  assert.deepEqual(da.items, [{
    topic: "room",
    frame: publish("room", "from b"),
  }]);
  assert.deepEqual(db.items, [{
    topic: "room",
    frame: publish("room", "from a"),
  }]);
  // Each bus heard its own publish come back and skipped it.
  await waitFor(() => a.stats().echoes === 1 && b.stats().echoes === 1);
  assert.equal(a.stats().published, 1);
  assert.equal(a.stats().delivered, 1);

  // A topic b listens to and a does not: a publishes, b alone gets it.
  a.publish("other", publish("other", 1));
  await db.count(2);
  assert.deepEqual(db.items[1], { topic: "other", frame: publish("other", 1) });

  // b leaves: Redis forgets it, and a's next publish reaches nobody there.
  b.unsubscribe("room");
  await subscribers(client, "room", 1);
  a.publish("room", publish("room", "late"));
  b.publish("room", publish("room", "still delivered"));
  await da.count(2);
  assert.equal(da.items[1].frame, publish("room", "still delivered"));
  assert.equal(db.items.length, 2);
  assert.deepEqual(
    b.metrics().find((f) => f.name === "sigver_ywebrtc_bus_up")?.samples,
    [[{ protocol: "y-webrtc" }, 1]],
  );
});

Deno.test("a bus delivers 1,000 publishes of one node in the order they were sent", async () => {
  await using redis = await startRedis();
  await using client = new RedisClient(redis.url);
  const [da, db] = [new Delivered(), new Delivered()];
  await using a = bus(redis.url, da);
  await using b = bus(redis.url, db);
  b.subscribe("ordered");
  await subscribers(client, "ordered", 1);
  const sent = Array.from(
    { length: 1000 },
    (_, i) => publish("ordered", { i, pad: "x".repeat(i % 97) }),
  );
  // In bursts, so that some go out alone and some in one pipeline.
  for (let i = 0; i < sent.length; i++) {
    a.publish("ordered", sent[i]);
    if (i % 100 === 0) await Promise.resolve();
  }
  await db.count(1000);
  assert.deepEqual(db.items.map((item) => item.frame), sent);
  assert.equal(a.stats().published, 1000);
  assert.equal(da.items.length, 0);
});

Deno.test("a bus drops forged, garbled, replayed and misrouted messages and counts them", async () => {
  await using redis = await startRedis();
  await using client = new RedisClient(redis.url);
  const [da, db] = [new Delivered(), new Delivered()];
  await using a = bus(redis.url, da);
  await using b = bus(redis.url, db);
  b.subscribe("room");
  b.subscribe("elsewhere");
  await subscribers(client, "room", 1);
  const channel = topicChannel(PREFIX, "room");

  // Record a's genuine message as it passes through Redis.
  const recorded: string[] = [];
  await using spy = bus(redis.url, new Delivered());
  const { RedisSubscriber } = await import("../../cluster/redis_subscriber.ts");
  await using tap = new RedisSubscriber(redis.url, {
    onMessage: (_channel, payload) => recorded.push(payload),
  });
  tap.subscribe(channel);
  await subscribers(client, "room", 2);
  a.publish("room", publish("room", "genuine"));
  await db.count(1);
  await waitFor(() => recorded.length === 1);
  const genuine = recorded[0];
  const [signature] = genuine.split(".", 1);
  const rest = genuine.slice(signature.length + 1);

  // Signed with another secret: a node of another cluster, or a guess.
  const other = bus(redis.url, new Delivered(), {
    secret: "another secret of 32 bytes......",
  });
  other.publish("room", publish("room", "other cluster"));
  await waitFor(() => b.stats().rejected.forged === 1, "a forged message");
  await other.close();
  const forgeries = [
    // The genuine message with its frame changed.
    genuine.replace("genuine", "tampered"),
    // Another node's id on a genuine signature.
    genuine.replace(a.id, "0123456789abcdef"),
  ];
  for (const payload of forgeries) {
    await client.command("PUBLISH", channel, payload);
  }
  const garbled = [
    "",
    "not a bus message",
    `${signature}.${rest.replace(/\.\d+\.room/, ".999.room")}`,
    `${signature}.zz${rest.slice(2)}`,
  ];
  for (const payload of garbled) {
    await client.command("PUBLISH", channel, payload);
  }
  // The genuine message, on the channel of another topic.
  await client.command(
    "PUBLISH",
    topicChannel(PREFIX, "elsewhere"),
    genuine,
  );
  // The genuine message again: replayed.
  await client.command("PUBLISH", channel, genuine);
  await waitFor(
    () => {
      const { rejected } = b.stats();
      return rejected.forged === 3 && rejected.malformed === 5 &&
        rejected.replayed === 1;
    },
    `every bad message counted: ${JSON.stringify(b.stats().rejected)}`,
  );
  // A genuine publish after them still gets through, and nothing else did.
  a.publish("room", publish("room", "after"));
  await db.count(2);
  assert.deepEqual(db.items.map((item) => item.frame), [
    publish("room", "genuine"),
    publish("room", "after"),
  ]);
  assert.equal(spy.stats().delivered, 0);
  const rejected = b.metrics().find((f) =>
    f.name === "sigver_ywebrtc_bus_rejected_total"
  )!;
  assert.deepEqual(
    rejected.samples.find(([labels]) => labels.reason === "forged")?.[1],
    3,
  );
});

Deno.test("a signed message that is not a publish of its topic is dropped", async () => {
  await using redis = await startRedis();
  await using client = new RedisClient(redis.url);
  const [da, db] = [new Delivered(), new Delivered()];
  await using a = bus(redis.url, da);
  await using b = bus(redis.url, db);
  b.subscribe("room");
  await subscribers(client, "room", 1);
  // A node that passes on whatever it is given (a bug, or a patched node
  // holding the secret) cannot make another node send a non-publish.
  a.publish("room", '{"type":"subscribe","topics":["room"]}');
  a.publish("room", publish("another room", "x"));
  a.publish("room", "not json");
  a.publish("room", publish("room", "fine"));
  await db.count(1);
  assert.equal(db.items[0].frame, publish("room", "fine"));
  assert.equal(b.stats().rejected.malformed, 3);
});

Deno.test("a bus goes on without Redis and subscribes again when Redis is back", async () => {
  await using redis = await startRedis();
  const [da, db] = [new Delivered(), new Delivered()];
  await using a = bus(redis.url, da);
  await using b = bus(redis.url, db);
  b.subscribe("room");
  b.subscribe("room2");
  {
    await using client = new RedisClient(redis.url);
    await subscribers(client, "room", 1);
  }
  a.publish("room", publish("room", "before"));
  await db.count(1);

  await redis.kill();
  await waitFor(() => !a.connected && !b.connected, "both buses down");
  // Publishes meanwhile are lost to the other node, and counted.
  a.publish("room", publish("room", "while down"));
  await waitFor(() => a.stats().lost >= 1, "a lost publish");
  // Subscribing while down is remembered.
  b.subscribe("room3");

  await redis.restart();
  await using client = new RedisClient(redis.url);
  await subscribers(client, "room", 1);
  await subscribers(client, "room2", 1);
  await subscribers(client, "room3", 1);
  assert.ok(b.connected);
  // The publisher reconnects on its own backoff: retry until it delivers.
  for (const topic of ["room", "room3"]) {
    const before = db.items.length;
    await waitFor(() => {
      if (db.items.length > before) return true;
      a.publish(topic, publish(topic, "after"));
      return false;
    }, `a publish to ${topic} after the restart`);
    assert.equal(db.items.at(-1)!.frame, publish(topic, "after"));
  }
  assert.ok(
    db.items.every((item) => !item.frame.includes("while down")),
  );
});

Deno.test("a bus counts a Redis that stops answering as down, and subscribes again once it answers", async () => {
  await using redis = await startRedis();
  const [da, db] = [new Delivered(), new Delivered()];
  await using a = bus(redis.url, da);
  await using b = bus(redis.url, db);
  b.subscribe("room");
  await waitFor(() => b.connected, "b up");
  redis.pause();
  try {
    // A PING unanswered for its interval (1 s at the least) drops the link.
    await waitFor(() => !b.connected, "b down on a stalled Redis");
  } finally {
    redis.resume();
  }
  await using client = new RedisClient(redis.url);
  await subscribers(client, "room", 1);
  await waitFor(() => {
    if (db.items.length > 0) return true;
    a.publish("room", publish("room", "after the stall"));
    return false;
  }, "a publish after the stall");
  assert.equal(db.items[0].frame, publish("room", "after the stall"));
});
