// Tests of cluster/placement.ts: ClusterPlacement, the cluster as the
// server's placement seam (deno/placement.ts), in this process against a
// real redis-server (dev/redis_server.ts). Who sent a request (a client, or
// a pipe signed for this node), where a client's peer goes (a lease here,
// or a take-over from an owner that cannot be reached), and whether a piped
// peer's group may live here. The cluster's loops run on ManualClocks that
// only the lease-loss test moves; nodes' liveness keys live a minute in
// Redis, so no node dies of a slow machine.

import assert from "node:assert/strict";
import { ClusterPlacement } from "../../cluster/placement.ts";
import { RedisClient } from "../../cluster/redis.ts";
import type { Inbound, Lease, Placed } from "../../deno/placement.ts";
import { freePort } from "../../dev/process.ts";
import { type RedisServer, startRedis } from "../../dev/redis_server.ts";
import { ManualClock } from "../../lib/clock.ts";
import { deadline } from "../../lib/deadline.ts";
import { Logger } from "../../lib/log.ts";
import { PipeAuthority, type PipeClaims } from "../../lib/pipe_auth.ts";

// Deno 2.8 turned the op and resource sanitizers off by default: on here.
Deno.test.sanitizer({ ops: true, resources: true });

/** A cluster secret of 32 bytes, as `sigver secret` makes them. */
const SECRET = "4f1c0e2b9d8a7f6e5d4c3b2a19081726";
const OTHER_SECRET = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const LEASE_TTL = 30_000;

/** A placement on `redis`, reached at `url`, its loops on its own clock. */
function placementOn(
  redis: RedisServer,
  url: string,
): ClusterPlacement & AsyncDisposable & { clock: ManualClock } {
  const clock = new ManualClock();
  const placement = new ClusterPlacement({
    redis: redis.url,
    url,
    secret: SECRET,
    clock,
    leaseTtl: LEASE_TTL,
    nodeTtl: 60_000,
  });
  return Object.assign(placement, {
    clock,
    [Symbol.asyncDispose]: () => placement.close(),
  });
}

/** A cluster URL where nothing listens: a node that cannot be reached. */
function deadUrl(): string {
  return `ws://127.0.0.1:${freePort()}`;
}

/** The claims of a pipe from node `n2` for a peer of `room`. */
function claims(owner: string): PipeClaims {
  return {
    node: "00000000000000e2",
    key: "room",
    favored: true,
    client: "203.0.113.7",
    origin: "https://app.example",
    owner,
  };
}

function refused(message: string): Inbound {
  return {
    kind: "refused",
    refusal: { status: 403, reason: "pipe_signature", message },
  };
}

/** The lease of a local placement; fails on any other. */
function leaseOf(placed: Placed): Lease {
  assert.equal(placed.kind, "local", JSON.stringify(placed));
  return (placed as { lease: Lease }).lease;
}

function placeRequest(key: string) {
  return {
    key,
    favored: false,
    client: "203.0.113.7",
    origin: null,
    maxBufferedAmount: 1 << 20,
  };
}

/** The node id a group's lease names in Redis, or null. */
async function leaseOwner(redis: RedisServer, key: string): Promise<unknown> {
  await using client = new RedisClient(redis.url);
  return await client.command("GET", `sigver:lease:${key}`);
}

/**
 * Waits until Redis has run what `placement` queued on its connection (a
 * release goes out at once, on the connection of what follows): asks it
 * about a node id it never saw (a miss is not asked again for a second).
 */
async function settle(placement: ClusterPlacement): Promise<void> {
  const unknown = Array.from(
    crypto.getRandomValues(new Uint8Array(8)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  assert.equal(await placement.node.nodeUrl(unknown), undefined);
}

Deno.test("ClusterPlacement.inbound says a request without the pipe header is a client's", async () => {
  await using redis = await startRedis();
  await using a = placementOn(redis, "ws://127.0.0.1:1");
  assert.deepEqual(await a.inbound(new Headers()), { kind: "client" });
  // Other x-sigver-* headers without x-sigver-node are a client's, ignored.
  assert.deepEqual(
    await a.inbound(
      new Headers({ "x-sigver-key": "cm9vbQ", "x-sigver-owner": a.node.url }),
    ),
    { kind: "client" },
  );
});

Deno.test("ClusterPlacement.inbound lets a pipe signed for this node in, with its claims", async () => {
  await using redis = await startRedis();
  await using a = placementOn(redis, "ws://127.0.0.1:1");
  const auth = new PipeAuthority(SECRET);
  const headers = new Headers(await auth.sign(claims(a.node.url), Date.now()));
  assert.deepEqual(await a.inbound(headers), {
    kind: "pipe",
    peer: {
      key: "room",
      favored: true,
      client: "203.0.113.7",
      origin: "https://app.example",
    },
  });
  // The same signed upgrade again: a replay.
  assert.deepEqual(
    await a.inbound(headers),
    refused("Forbidden: the pipe signature was used already"),
  );
});

Deno.test("ClusterPlacement.inbound refuses a forged or garbled pipe with 403", async (t) => {
  await using redis = await startRedis();
  await using a = placementOn(redis, "ws://127.0.0.1:1");
  const signed = await new PipeAuthority(SECRET).sign(
    claims(a.node.url),
    Date.now(),
  );
  const forged = await new PipeAuthority(OTHER_SECRET).sign(
    claims(a.node.url),
    Date.now(),
  );
  const cases: [string, Record<string, string>, string][] = [
    ["signed with another secret", forged, "the pipe signature is wrong"],
    [
      "a claim changed after signing",
      { ...signed, "x-sigver-favored": "0" },
      "the pipe signature is wrong",
    ],
    [
      "the pipe header alone",
      { "x-sigver-node": "00000000000000e2" },
      "the pipe signature is missing",
    ],
    [
      "a signature that is not base64url",
      { ...signed, "x-sigver-signature": "not base64url!" },
      "the pipe signature is missing",
    ],
    [
      "stale by two minutes",
      await new PipeAuthority(SECRET).sign(
        claims(a.node.url),
        Date.now() - 120_000,
      ),
      "the pipe signature is stale",
    ],
  ];
  for (const [name, headers, why] of cases) {
    await t.step(name, async () => {
      assert.deepEqual(
        await a.inbound(new Headers(headers)),
        refused(`Forbidden: ${why}`),
      );
    });
  }
});

Deno.test("ClusterPlacement.inbound refuses with 403 a pipe signed for another node's URL", async () => {
  await using redis = await startRedis();
  await using a = placementOn(redis, "ws://127.0.0.1:1");
  const headers = await new PipeAuthority(SECRET).sign(
    claims("ws://127.0.0.1:2"),
    Date.now(),
  );
  assert.deepEqual(
    await a.inbound(new Headers(headers)),
    refused("Forbidden: the pipe is signed for another node"),
  );
});

Deno.test("ClusterPlacement.place serves a new key here under a lease; its release frees the key for another node", async () => {
  await using redis = await startRedis();
  await using a = placementOn(redis, "ws://127.0.0.1:1");
  await using b = placementOn(redis, deadUrl());
  await a.start();
  await b.start();
  const lease = leaseOf(await a.place(placeRequest("room")));
  assert.equal(await leaseOwner(redis, "room"), a.id);
  assert.equal(a.node.view().ownedGroups, 1);
  // Held by a: b cannot take it (its pipe to a would be tried instead).
  assert.equal(await b.accept("room"), undefined);

  lease.release();
  await settle(a);
  assert.equal(await leaseOwner(redis, "room"), null);
  assert.equal(a.node.view().ownedGroups, 0);
  const taken = leaseOf(await b.place(placeRequest("room")));
  assert.equal(await leaseOwner(redis, "room"), b.id);
  taken.release();
  await settle(b);
});

Deno.test("ClusterPlacement: a key's lease stays until its last local peer's lease is released, each counted once", async () => {
  await using redis = await startRedis();
  await using a = placementOn(redis, "ws://127.0.0.1:1");
  await a.start();
  const first = leaseOf(await a.place(placeRequest("room")));
  const second = leaseOf(await a.place(placeRequest("room")));
  first.release();
  first.release();
  await settle(a);
  assert.equal(await leaseOwner(redis, "room"), a.id, "freed by a repeat");
  second.release();
  await settle(a);
  assert.equal(await leaseOwner(redis, "room"), null);
});

Deno.test("ClusterPlacement: a lease told its group moved frees nothing when released", async () => {
  await using redis = await startRedis();
  await using a = placementOn(redis, "ws://127.0.0.1:1");
  await a.start();
  const moved = leaseOf(await a.place(placeRequest("room")));
  const kept = leaseOf(await a.place(placeRequest("room")));
  moved.moved();
  moved.release();
  await settle(a);
  // Had it counted down, this one would now be the last out.
  kept.release();
  await settle(a);
  assert.equal(await leaseOwner(redis, "room"), a.id);
  assert.equal(a.node.view().ownedGroups, 1);
});

Deno.test("ClusterPlacement.place takes over the key of an owner that cannot be reached", async () => {
  await using redis = await startRedis();
  await using a = placementOn(redis, "ws://127.0.0.1:1");
  // b is alive in Redis, but nothing listens at its URL.
  await using b = placementOn(redis, deadUrl());
  await a.start();
  await b.start();
  leaseOf(await b.place(placeRequest("room")));
  assert.equal(await leaseOwner(redis, "room"), b.id);

  const lease = leaseOf(await a.place(placeRequest("room")));
  assert.equal(await leaseOwner(redis, "room"), a.id);
  const takeovers = a.metrics().find((f) =>
    f.name === "sigver_cluster_takeovers_total"
  );
  assert.deepEqual(takeovers?.samples, [[{}, 1]]);
  assert.equal(a.node.view().pipedOut, 0);
  lease.release();
  await settle(a);
});

Deno.test("ClusterPlacement.accept gives no lease for a key another live node owns", async () => {
  await using redis = await startRedis();
  await using a = placementOn(redis, "ws://127.0.0.1:1");
  await using b = placementOn(redis, "ws://127.0.0.1:2");
  await a.start();
  await b.start();
  leaseOf(await b.place(placeRequest("room")));
  assert.equal(await a.accept("room"), undefined);
  assert.equal(await leaseOwner(redis, "room"), b.id);
  assert.equal(a.node.view().pipedIn, 0);
  assert.equal(a.node.view().ownedGroups, 0);
});

Deno.test("ClusterPlacement.accept claims a free key for a piped peer, counted as piped in until released", async () => {
  await using redis = await startRedis();
  await using a = placementOn(redis, "ws://127.0.0.1:1");
  await a.start();
  const lease = await a.accept("room");
  assert.ok(lease !== undefined);
  assert.equal(await leaseOwner(redis, "room"), a.id);
  assert.equal(a.node.view().pipedIn, 1);
  lease.release();
  lease.release();
  await settle(a);
  assert.equal(a.node.view().pipedIn, 0);
  assert.equal(await leaseOwner(redis, "room"), null);
});

Deno.test("ClusterPlacement.attach: groups whose leases another node now holds are reported to the host as moved", async () => {
  await using redis = await startRedis();
  await using a = placementOn(redis, "ws://127.0.0.1:1");
  await using b = placementOn(redis, "ws://127.0.0.1:2");
  const moved = Promise.withResolvers<ReadonlySet<string>>();
  const lines: string[] = [];
  a.attach({
    log: new Logger((line) => lines.push(line), "info", "json"),
    moved: (keys) => moved.resolve(keys),
  });
  await a.start();
  await b.start();
  leaseOf(await a.place(placeRequest("room")));
  leaseOf(await a.place(placeRequest("kept")));
  // b holds room's lease now (a partition healed, say).
  await using client = new RedisClient(redis.url);
  await client.command("SET", "sigver:lease:room", b.id, "PX", LEASE_TTL);

  a.clock.advance(LEASE_TTL / 3);
  const keys = await deadline(moved.promise, 10_000, "the renewal");
  assert.deepEqual([...keys], ["room"]);
  assert.equal(a.node.view().ownedGroups, 1);
  // The node logs to the host's log, once for the lost groups.
  assert.ok(
    lines.some((line) => {
      const record = JSON.parse(line);
      return record.what === "lost" && record.groups === 1;
    }),
    lines.join("\n"),
  );
});
