/**
 * Tests of cluster/leases.ts against a real redis-server
 * (dev/redis_server.ts), one per test: two {@linkcode LeaseStore}s play two
 * nodes of one cluster, and the tests read the keys they leave in Redis.
 * Expiry is shown by deleting a key (what its TTL would do), not by
 * waiting for it.
 */

import assert from "node:assert/strict";
import {
  LeaseError,
  LeaseStore,
  type LeaseStoreOptions,
} from "../../cluster/leases.ts";
import { RedisClient } from "../../cluster/redis.ts";
import { startRedis } from "../../dev/redis_server.ts";

const PREFIX = "test:";
const LEASE_TTL = 60_000;
const NODE_TTL = 30_000;
const SECRET = "a cluster secret of 32 bytes....";

function options(node: string): LeaseStoreOptions {
  return {
    prefix: PREFIX,
    node,
    leaseTtl: LEASE_TTL,
    nodeTtl: NODE_TTL,
    url: `ws://10.0.0.${node === "a" ? 1 : 2}:8000`,
    secret: SECRET,
  };
}

const URL_A = options("a").url;
const URL_B = options("b").url;

/** Asserts a key's TTL is set, and at most `ttl`. */
async function assertTtl(
  redis: RedisClient,
  key: string,
  ttl: number,
): Promise<void> {
  const pttl = await redis.command("PTTL", key);
  assert.ok(
    typeof pttl === "number" && pttl > 0 && pttl <= ttl,
    `PTTL ${key} is ${pttl}`,
  );
}

Deno.test("LeaseStore names its keys under the prefix", () => {
  const store = new LeaseStore(
    {} as RedisClient,
    options("a"),
  );
  assert.equal(store.leaseKey("room/a"), "test:lease:room/a");
  assert.equal(store.nodeKey("a"), "test:node:a");
});

Deno.test("LeaseStore announces a node's URL for the node TTL, and retires it", async () => {
  await using server = await startRedis();
  await using redis = new RedisClient(server.url);
  const a = new LeaseStore(redis, options("a"));
  const b = new LeaseStore(redis, options("b"));
  assert.equal(await b.nodeUrl("a"), undefined);
  await a.announce();
  assert.equal(await b.nodeUrl("a"), URL_A);
  // The record: the URL and its HMAC over the cluster secret.
  assert.match(
    String(await redis.command("GET", "test:node:a")),
    /^ws:\/\/10\.0\.0\.1:8000\|[A-Za-z0-9_-]{43}$/,
  );
  await assertTtl(redis, "test:node:a", NODE_TTL);
  await a.retire();
  assert.equal(await b.nodeUrl("a"), undefined);
});

Deno.test("LeaseStore.resolve claims a free lease, and another node then sees its owner", async () => {
  await using server = await startRedis();
  await using redis = new RedisClient(server.url);
  const a = new LeaseStore(redis, options("a"));
  const b = new LeaseStore(redis, options("b"));
  await a.announce();
  await b.announce();
  assert.deepEqual(await a.resolve("room"), { self: true });
  assert.equal(await redis.command("GET", "test:lease:room"), "a");
  await assertTtl(redis, "test:lease:room", LEASE_TTL);
  assert.deepEqual(await b.resolve("room"), {
    self: false,
    node: "a",
    url: URL_A,
  });
  assert.equal(await redis.command("GET", "test:lease:room"), "a");
});

Deno.test("LeaseStore.resolve extends the lease of its own group", async () => {
  await using server = await startRedis();
  await using redis = new RedisClient(server.url);
  const a = new LeaseStore(redis, options("a"));
  await a.resolve("room");
  await redis.command("PEXPIRE", "test:lease:room", 1000);
  assert.deepEqual(await a.resolve("room"), { self: true });
  const pttl = await redis.command("PTTL", "test:lease:room");
  assert.ok(typeof pttl === "number" && pttl > 1000, `PTTL ${pttl}`);
});

Deno.test("LeaseStore.resolve takes the lease of an owner that is no longer alive", async () => {
  await using server = await startRedis();
  await using redis = new RedisClient(server.url);
  const a = new LeaseStore(redis, options("a"));
  const b = new LeaseStore(redis, options("b"));
  await a.resolve("room");
  // a never announced itself, or its liveness key expired.
  assert.deepEqual(await b.resolve("room"), { self: true });
  assert.equal(await redis.command("GET", "test:lease:room"), "b");
});

Deno.test("LeaseStore.resolve takes the lease of a previous process on its own URL", async () => {
  await using server = await startRedis();
  await using redis = new RedisClient(server.url);
  // The node restarted with a new id on the same address; the old id's
  // liveness key has not expired yet.
  const before = new LeaseStore(redis, options("a"));
  await before.announce();
  await before.resolve("room");
  const after = new LeaseStore(redis, { ...options("a2"), url: URL_A });
  assert.deepEqual(await after.resolve("room"), { self: true });
  assert.equal(await redis.command("GET", "test:lease:room"), "a2");
});

Deno.test("LeaseStore.release deletes its own lease only", async () => {
  await using server = await startRedis();
  await using redis = new RedisClient(server.url);
  const a = new LeaseStore(redis, options("a"));
  const b = new LeaseStore(redis, options("b"));
  await a.announce();
  await a.resolve("mine");
  await a.release("mine");
  assert.equal(await redis.command("EXISTS", "test:lease:mine"), 0);
  await a.resolve("theirs");
  await b.release("theirs");
  assert.equal(await redis.command("GET", "test:lease:theirs"), "a");
  // Releasing a free lease does nothing.
  await b.release("nothing");
  assert.equal(await redis.command("EXISTS", "test:lease:nothing"), 0);
});

Deno.test("LeaseStore.takeOver takes a lease from the owner it could not reach, and only from it", async (t) => {
  await using server = await startRedis();
  await using redis = new RedisClient(server.url);
  const a = new LeaseStore(redis, options("a"));
  const b = new LeaseStore(redis, options("b"));
  await a.announce();
  await b.announce();
  await t.step("from the unreachable owner, alive in Redis", async () => {
    await b.resolve("k1");
    assert.deepEqual(await a.takeOver("k1", "b"), { self: true });
    assert.equal(await redis.command("GET", "test:lease:k1"), "a");
    await assertTtl(redis, "test:lease:k1", LEASE_TTL);
  });
  await t.step("another live owner keeps it", async () => {
    await b.resolve("k2");
    assert.deepEqual(await a.takeOver("k2", "c"), {
      self: false,
      node: "b",
      url: URL_B,
    });
    assert.equal(await redis.command("GET", "test:lease:k2"), "b");
  });
  await t.step("another owner that is not alive loses it", async () => {
    await redis.command("SET", "test:lease:k3", "c");
    assert.deepEqual(await a.takeOver("k3", "d"), { self: true });
    assert.equal(await redis.command("GET", "test:lease:k3"), "a");
  });
  await t.step("a free lease is taken", async () => {
    assert.deepEqual(await a.takeOver("k4", "b"), { self: true });
    assert.equal(await redis.command("GET", "test:lease:k4"), "a");
  });
  await t.step("its own lease stays its own", async () => {
    assert.deepEqual(await a.takeOver("k4", "b"), { self: true });
  });
});

Deno.test("LeaseStore.renew extends its leases, re-asserts expired ones and reports lost ones", async () => {
  await using server = await startRedis();
  await using redis = new RedisClient(server.url);
  const a = new LeaseStore(redis, options("a"));
  const b = new LeaseStore(redis, options("b"));
  await a.resolve("kept");
  await a.resolve("expired");
  await a.resolve("lost");
  await b.announce();
  await redis.command("PEXPIRE", "test:lease:kept", 1000);
  await redis.command("DEL", "test:lease:expired");
  await redis.command("DEL", "test:lease:lost");
  await b.resolve("lost");
  assert.deepEqual(await a.renew(["kept", "expired", "lost"]), ["lost"]);
  assert.equal(a.renewals, 3);
  const kept = await redis.command("PTTL", "test:lease:kept");
  assert.ok(typeof kept === "number" && kept > 1000, `PTTL ${kept}`);
  assert.equal(await redis.command("GET", "test:lease:expired"), "a");
  await assertTtl(redis, "test:lease:expired", LEASE_TTL);
  assert.equal(await redis.command("GET", "test:lease:lost"), "b");
});

Deno.test("LeaseStore.renew of no keys asks Redis nothing", async () => {
  // A client that was never connected would throw on any command.
  const store = new LeaseStore({} as RedisClient, options("a"));
  assert.deepEqual(await store.renew([]), []);
  assert.equal(store.renewals, 0);
});

Deno.test("LeaseStore.renew reports lost keys across batches of 500", async () => {
  await using server = await startRedis();
  await using redis = new RedisClient(server.url);
  const a = new LeaseStore(redis, options("a"));
  await new LeaseStore(redis, options("b")).announce();
  const keys = Array.from({ length: 1201 }, (_, i) => `k${i}`);
  // Another node holds one key in each batch.
  for (const i of [0, 777, 1200]) {
    await redis.command("SET", `test:lease:k${i}`, "b");
  }
  assert.deepEqual(await a.renew(keys), ["k0", "k777", "k1200"]);
  assert.equal(a.renewals, 1201);
  assert.equal(await redis.command("GET", "test:lease:k500"), "a");
  assert.equal(await redis.command("GET", "test:lease:k1199"), "a");
});

Deno.test("LeaseStore loads its scripts again after Redis forgot them", async () => {
  await using server = await startRedis();
  await using redis = new RedisClient(server.url);
  const a = new LeaseStore(redis, options("a"));
  assert.deepEqual(await a.resolve("room"), { self: true });
  assert.deepEqual(await a.renew(["room"]), []);
  await redis.command("SCRIPT", "FLUSH");
  assert.deepEqual(await a.resolve("room"), { self: true });
  await redis.command("SCRIPT", "FLUSH");
  await new LeaseStore(redis, options("b")).announce();
  await redis.command("SET", "test:lease:other", "b");
  assert.deepEqual(await a.renew(["room", "other"]), ["other"]);
  await redis.command("SCRIPT", "FLUSH");
  await a.release("room");
  assert.equal(await redis.command("EXISTS", "test:lease:room"), 0);
});

Deno.test("LeaseStore throws a LeaseError when a script fails in Redis", async () => {
  await using server = await startRedis();
  await using redis = new RedisClient(server.url);
  const a = new LeaseStore(redis, options("a"));
  await redis.command("HSET", "test:lease:room", "field", "value");
  await assert.rejects(
    a.resolve("room"),
    (error: unknown) => {
      assert.ok(error instanceof LeaseError, String(error));
      assert.match(error.message, /WRONGTYPE/);
      return true;
    },
  );
  await assert.rejects(a.renew(["room"]), LeaseError);
});
