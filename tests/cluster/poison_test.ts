// Redis is not trusted with where peers and requests go: a real redis-server
// (dev/redis_server.ts) is poisoned the ways issue 16 found (a node record
// that names an attacker's server, a lease that names an attacker's node
// id), and a real sigver node in this process (servePlaced with a
// ClusterPlacement) must send nothing there: its peers are served locally
// and requests for the forger's sessions get 404. A forward given a URL
// anyway follows no redirect and passes back only a node's answers. Then a
// signed pipe upgrade captured on the network is replayed to its owner.

import assert from "node:assert/strict";
import { forwardSession } from "../../cluster/forward.ts";
import { ClusterPlacement } from "../../cluster/placement.ts";
import { RedisClient } from "../../cluster/redis.ts";
import { servePlaced } from "../../deno/serve.ts";
import { type RedisServer, startRedis } from "../../dev/redis_server.ts";
import { ManualClock } from "../../lib/clock.ts";
import { PipeAuthority } from "../../lib/pipe_auth.ts";
import { newSessionId } from "../../lib/sse.ts";
import { httpUrl, RawSocket, settled, TestPeer, waitFor } from "../_helpers.ts";

const SECRET = "a cluster secret of 32 bytes....";
/** The id the attacker's node goes by: 16 hex digits, as a node's. */
const FORGER = "f0f0f0f0f0f0f0f0";
/** Nothing dials the node under test: its URL is only signed and compared. */
const NODE_URL = "ws://127.0.0.1:1";

/** An HTTP server that records every request it gets. */
function recording(
  answer: (request: Request) => Response,
): Deno.HttpServer<Deno.NetAddr> & { hits: string[] } {
  const hits: string[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (request) => {
      hits.push(`${request.method} ${new URL(request.url).pathname}`);
      await request.body?.cancel();
      return answer(request);
    },
  );
  return Object.assign(server, { hits });
}

/**
 * The attacker: an internal service to reach (it answers a body no client
 * should see), and a server that redirects everything there.
 */
function attacker(): {
  internal: ReturnType<typeof recording>;
  redirector: ReturnType<typeof recording>;
  hits: () => string[];
} & AsyncDisposable {
  const internal = recording(() => new Response("internal secrets\n"));
  const redirector = recording(() =>
    new Response(null, {
      status: 302,
      headers: {
        location: `http://127.0.0.1:${internal.addr.port}/latest/meta-data`,
      },
    })
  );
  return {
    internal,
    redirector,
    hits: () => [...internal.hits, ...redirector.hits],
    [Symbol.asyncDispose]: async () => {
      await internal.shutdown();
      await redirector.shutdown();
    },
  };
}

/** A sigver node on the Redis, its cluster loops driven by hand. */
function node(redis: RedisServer) {
  const placement = new ClusterPlacement({
    redis: redis.url,
    url: NODE_URL,
    secret: SECRET,
    clock: new ManualClock(),
  });
  const server = servePlaced(
    { hostname: "127.0.0.1", port: 0, clock: new ManualClock() },
    placement,
  );
  return Object.assign(server, { placement, id: placement.id });
}

/** The records a writer to Redis may leave under the forger's id. */
function forgedRecords(
  evil: ReturnType<typeof attacker>,
): Record<string, string> {
  const redirector = `ws://127.0.0.1:${evil.redirector.addr.port}`;
  const internal = `http://127.0.0.1:${evil.internal.addr.port}`;
  return {
    "a bare URL of its server": redirector,
    "an http URL with a path and a query": `${internal}/latest/meta-data?`,
    "its URL with a made-up MAC": `${redirector}|${"A".repeat(43)}`,
  };
}

Deno.test("a node record forged in Redis gets no request: a POST or resume naming the forger's node gets 404", async (t) => {
  await using redis = await startRedis();
  await using client = new RedisClient(redis.url);
  await using evil = attacker();
  await using server = node(redis);
  await server.placement.start();
  for (const [name, record] of Object.entries(forgedRecords(evil))) {
    await t.step(name, async () => {
      await client.command("SET", `sigver:node:${FORGER}`, record);
      const session = newSessionId(FORGER);
      const post = await fetch(httpUrl(server, `/room?session=${session}`), {
        method: "POST",
        body: "frame",
      });
      assert.equal(post.status, 404);
      assert.equal(await post.text(), "Not Found: no such session\n");
      const resume = await fetch(httpUrl(server, `/room?session=${session}`), {
        headers: { accept: "text/event-stream" },
      });
      assert.equal(resume.status, 404);
      await resume.body?.cancel();
      const end = await fetch(httpUrl(server, `/room?session=${session}`), {
        method: "DELETE",
      });
      assert.equal(end.status, 404);
      await end.body?.cancel();
      assert.deepEqual(evil.hits(), []);
    });
  }
});

Deno.test("a lease in Redis that names a forger's node is free: its room's peers are served here, not piped", async (t) => {
  await using redis = await startRedis();
  await using client = new RedisClient(redis.url);
  await using evil = attacker();
  await using server = node(redis);
  await server.placement.start();
  const records = {
    "with no record": undefined,
    ...forgedRecords(evil),
  };
  let n = 0;
  for (const [name, record] of Object.entries(records)) {
    await t.step(name, async () => {
      const room = `poisoned-${n++}`;
      if (record === undefined) {
        await client.command("DEL", `sigver:node:${FORGER}`);
      } else await client.command("SET", `sigver:node:${FORGER}`, record);
      await client.command("SET", `sigver:lease:${room}`, FORGER);
      const peer = await TestPeer.open(
        `ws://127.0.0.1:${server.addr.port}/${room}`,
      );
      try {
        assert.equal(await peer.join(1), true);
        // Served here, under this node's lease: a group of one, local.
        assert.equal(
          await client.command("GET", `sigver:lease:${room}`),
          server.id,
        );
        assert.deepEqual(server.placement.node.view().remotes, {});
        assert.equal(server.placement.node.view().pipedOut, 0);
      } finally {
        await peer.close();
      }
      assert.deepEqual(evil.hits(), []);
    });
  }
  await settled(server);
});

Deno.test("a lease of a live group overwritten with a forger's node id is taken back at renewal: its peers stay", async () => {
  await using redis = await startRedis();
  await using client = new RedisClient(redis.url);
  await using evil = attacker();
  const clock = new ManualClock();
  const placement = new ClusterPlacement({
    redis: redis.url,
    url: NODE_URL,
    secret: SECRET,
    clock,
    leaseTtl: 30_000,
  });
  await using server = servePlaced(
    { hostname: "127.0.0.1", port: 0, clock: new ManualClock() },
    placement,
  );
  await placement.start();
  const peer = await TestPeer.open(`ws://127.0.0.1:${server.addr.port}/room`);
  try {
    assert.equal(await peer.join(1), true);
    await client.command(
      "SET",
      `sigver:node:${FORGER}`,
      `ws://127.0.0.1:${evil.redirector.addr.port}`,
    );
    await client.command("SET", "sigver:lease:room", FORGER);
    const renewals = placement.node.metrics().find((family) =>
      family.name === "sigver_cluster_lease_renewals_total"
    )!;
    assert.equal(renewals.samples[0][1], 0);
    clock.advance(10_000);
    await waitFor(
      async () =>
        await client.command("GET", "sigver:lease:room") === placement.id,
      "the lease to be taken back",
    );
    assert.equal(placement.node.view().ownedGroups, 1);
    assert.equal(peer.isClosed, false);
  } finally {
    await peer.close();
  }
  await settled(server);
  assert.deepEqual(evil.hits(), []);
});

Deno.test("forwardSession follows no redirect and answers 502 for what no node answers", async (t) => {
  await using evil = attacker();
  const redirector = `ws://127.0.0.1:${evil.redirector.addr.port}`;
  const post = () =>
    new Request("http://edge.example/room?session=x", {
      method: "POST",
      body: "frame",
    });
  await t.step("a redirect", async () => {
    const answer = await forwardSession(post(), redirector, 64);
    assert.equal(answer.status, 502);
    assert.match(await answer.text(), /^Bad Gateway: /);
    assert.deepEqual(evil.internal.hits, []);
  });
  await t.step("a URL that is no node URL is not asked", async () => {
    const url = `http://127.0.0.1:${evil.internal.addr.port}/latest/meta-data?`;
    const answer = await forwardSession(post(), url, 64);
    assert.equal(answer.status, 502);
    await answer.body?.cancel();
    assert.deepEqual(evil.internal.hits, []);
  });
  const cases: [string, string, Response, number][] = [
    ["POST", "200 text/plain", _plain(200), 502],
    ["POST", "204", new Response(null, { status: 204 }), 204],
    ["POST", "404 text/plain", _plain(404), 404],
    ["POST", "413 text/plain", _plain(413), 413],
    ["POST", "404 text/html", _plain(404, "text/html"), 502],
    ["POST", "500 text/plain", _plain(500), 502],
    ["DELETE", "204", new Response(null, { status: 204 }), 204],
    ["DELETE", "200 text/plain", _plain(200), 502],
    ["GET", "200 text/event-stream", _plain(200, "text/event-stream"), 200],
    ["GET", "409 text/plain", _plain(409), 409],
    ["GET", "200 text/plain", _plain(200), 502],
    ["GET", "204", new Response(null, { status: 204 }), 502],
  ];
  for (const [method, what, response, status] of cases) {
    await t.step(`${method} answered ${what}: ${status}`, async () => {
      await using owner = recording(() => response);
      const answer = await forwardSession(
        new Request("http://edge.example/room?session=x", {
          method,
          body: method === "POST" ? "frame" : undefined,
        }),
        `ws://127.0.0.1:${owner.addr.port}`,
        64,
      );
      assert.equal(answer.status, status);
      const body = await answer.text();
      if (status === 502) assert.match(body, /^Bad Gateway: /);
      else assert.equal(body, status === 204 ? "" : "answer\n");
      assert.equal(owner.hits.length, 1);
    });
  }
});

/** An answer with a text body and a content type. */
function _plain(status: number, type = "text/plain; charset=utf-8"): Response {
  return new Response("answer\n", {
    status,
    headers: { "content-type": type },
  });
}

Deno.test("a signed pipe upgrade replayed to its owner gets 403: each signature opens one pipe", async () => {
  await using redis = await startRedis();
  await using server = node(redis);
  await server.placement.start();
  const headers = await new PipeAuthority(SECRET).sign({
    node: FORGER,
    key: "room",
    favored: false,
    client: "203.0.113.7",
    origin: null,
    owner: NODE_URL,
  }, Date.now());
  const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}`);
  {
    using first = await RawSocket.upgrade(server, "/room", lines);
    assert.equal(first.status, 101, first.head);
    using replayed = await RawSocket.upgrade(server, "/room", lines);
    assert.equal(replayed.status, 403, replayed.head);
  }
  await settled(server);
});
