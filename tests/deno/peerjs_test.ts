/**
 * PeerJS clients against a real server over real sockets: the routes and
 * the socket under `/peerjs`, tokens that scope ids, CORS, the drain,
 * metrics, the CLI's flags. The client here speaks the wire by hand, as
 * `peerjs` 1.5.5 does (`tests/e2e/peerjs.e2e.ts` runs the real one).
 *
 * @module
 */

import assert from "node:assert/strict";
import { mintToken } from "../../lib/token.ts";
import { deadline } from "../../lib/deadline.ts";
import {
  closedBy,
  drive,
  httpUrl,
  peerUrl,
  settled,
  startServer,
  type TestServer,
  WAIT_TIMEOUT,
} from "../_helpers.ts";
import { Cli, cliArgs, command } from "../_cli.ts";

const SECRET = "peerjs-secret-for-tests-0123456789";

/** A PeerJS client's socket, spoken by hand. */
class PjSocket implements AsyncDisposable {
  readonly socket: WebSocket;
  readonly #messages: unknown[] = [];
  #wake: (() => void) | undefined;
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string }>;

  constructor(url: string) {
    const socket = this.socket = new WebSocket(url);
    this.opened = new Promise((resolve, reject) => {
      socket.onopen = () => resolve();
      socket.onerror = () => reject(new Error(`Cannot open ${url}`));
    });
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) => {
      socket.onclose = (e) => resolve({ code: e.code, reason: e.reason });
    });
    socket.onmessage = (e) => {
      this.#messages.push(JSON.parse(e.data));
      this.#wake?.();
    };
  }

  static async open(
    server: TestServer,
    query: string,
    path = "/peerjs/peerjs",
  ): Promise<PjSocket> {
    const socket = new PjSocket(peerUrl(server, `${path}?${query}`));
    await socket.opened;
    return socket;
  }

  send(message: unknown): void {
    this.socket.send(JSON.stringify(message));
  }

  /** The next message from the server. */
  async next(): Promise<unknown> {
    const end = performance.now() + WAIT_TIMEOUT;
    while (this.#messages.length === 0) {
      if (performance.now() > end) throw new Error("No message came");
      const { promise, resolve } = Promise.withResolvers<void>();
      this.#wake = resolve;
      await deadline(promise, 100).catch(() => {});
    }
    return this.#messages.shift();
  }

  get pending(): number {
    return this.#messages.length;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.socket.close();
    await this.closed;
  }
}

function query(
  id: string,
  token = `tok${id.replace(/\W/g, "")}`,
  key = "peerjs",
) {
  return `key=${key}&id=${id}&token=${token}&version=1.5.5`;
}

async function openPeer(
  server: TestServer,
  id: string,
  token?: string,
  path?: string,
): Promise<PjSocket> {
  const socket = await PjSocket.open(server, query(id, token), path);
  assert.deepEqual(await socket.next(), { type: "OPEN" });
  return socket;
}

Deno.test("peerjs: /peerjs/<key>/id hands out a fresh id as text, with CORS for any origin", async () => {
  await using server = startServer();
  const response = await fetch(
    httpUrl(server, `/peerjs/peerjs/id?ts=${Date.now()}0.5&version=1.5.5`),
    { headers: { origin: "https://app.example" } },
  );
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("access-control-allow-origin"), "*");
  const id = await response.text();
  assert.match(
    id,
    /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
  );
  const preflight = await fetch(httpUrl(server, "/peerjs/peerjs/id"), {
    method: "OPTIONS",
    headers: {
      origin: "https://app.example",
      "access-control-request-method": "GET",
    },
  });
  await preflight.body?.cancel();
  assert.equal(preflight.status, 204);
});

Deno.test("peerjs: clients relay OFFER, ANSWER and CANDIDATE with src set by the server", async () => {
  await using server = startServer();
  await using alice = await openPeer(server, "alice");
  await using bob = await openPeer(server, "bob");
  alice.send({
    type: "OFFER",
    dst: "bob",
    src: "mallory",
    payload: { sdp: { type: "offer", sdp: "v=0" }, connectionId: "dc_x" },
  });
  assert.deepEqual(await bob.next(), {
    type: "OFFER",
    src: "alice",
    dst: "bob",
    payload: { sdp: { type: "offer", sdp: "v=0" }, connectionId: "dc_x" },
  });
  bob.send({ type: "ANSWER", dst: "alice", payload: { a: 1 } });
  bob.send({ type: "CANDIDATE", dst: "alice", payload: { c: 1 } });
  assert.deepEqual(await alice.next(), {
    type: "ANSWER",
    src: "bob",
    dst: "alice",
    payload: { a: 1 },
  });
  assert.deepEqual(await alice.next(), {
    type: "CANDIDATE",
    src: "bob",
    dst: "alice",
    payload: { c: 1 },
  });
});

Deno.test("peerjs: a held id with another token gets ID-TAKEN and a close; the same token takes over with OPEN", async () => {
  await using server = startServer();
  await using alice = await openPeer(server, "alice", "first");
  await using thief = await PjSocket.open(server, query("alice", "second"));
  assert.deepEqual(await thief.next(), {
    type: "ID-TAKEN",
    payload: { msg: "ID is taken" },
  });
  assert.equal((await closedBy(server, thief)).code, 1008);
  await using again = await openPeer(server, "alice", "first");
  assert.equal((await closedBy(server, alice)).code, 1000);
  await using bob = await openPeer(server, "bob");
  bob.send({ type: "OFFER", dst: "alice", payload: {} });
  assert.equal(((await again.next()) as { src: string }).src, "bob");
});

Deno.test("peerjs: a wrong key, a missing id and a bad id get ERROR then a close", async (t) => {
  await using server = startServer();
  for (
    const [name, q, msg] of [
      ["wrong key", query("a", "t", "nope"), /^Invalid key provided$/],
      ["no id", "key=peerjs&token=t", /^No id, token, or key/],
      ["bad id", query("a%26b", "t"), /^Cannot take id/],
    ] as const
  ) {
    await t.step(name, async () => {
      await using socket = await PjSocket.open(server, q);
      const error = (await socket.next()) as {
        type: string;
        payload: { msg: string };
      };
      assert.equal(error.type, "ERROR");
      assert.match(error.payload.msg, msg);
      assert.equal((await closedBy(server, socket)).code, 1008);
    });
  }
});

Deno.test("peerjs: an offer to an id not connected yet is delivered when it connects", async () => {
  await using server = startServer();
  await using alice = await openPeer(server, "alice");
  alice.send({ type: "OFFER", dst: "late", payload: { n: 1 } });
  alice.send({ type: "CANDIDATE", dst: "late", payload: { n: 2 } });
  await drive(server.clock, () => true);
  // The messages are queued before late opens: a probe to a live id after
  // them comes back only once the server read them.
  await using probe = await openPeer(server, "probe");
  alice.send({ type: "OFFER", dst: "probe", payload: {} });
  await probe.next();
  await using late = await PjSocket.open(server, query("late"));
  assert.deepEqual(await late.next(), { type: "OPEN" });
  assert.deepEqual(await late.next(), {
    type: "OFFER",
    src: "alice",
    dst: "late",
    payload: { n: 1 },
  });
  assert.deepEqual(((await late.next()) as { payload: unknown }).payload, {
    n: 2,
  });
});

Deno.test("peerjs: a sender gets one EXPIRE when its target does not connect within 5 s", async () => {
  await using server = startServer();
  await using alice = await openPeer(server, "alice");
  await using probe = await openPeer(server, "probe");
  alice.send({ type: "OFFER", dst: "ghost", payload: {} });
  alice.send({ type: "CANDIDATE", dst: "ghost", payload: {} });
  alice.send({ type: "OFFER", dst: "probe", payload: {} });
  await probe.next();
  server.clock.advance(4_900);
  alice.send({ type: "OFFER", dst: "probe", payload: {} });
  await probe.next();
  assert.equal(alice.pending, 0);
  server.clock.advance(200);
  assert.deepEqual(await alice.next(), {
    type: "EXPIRE",
    src: "ghost",
    dst: "alice",
  });
  server.clock.advance(10_000);
  alice.send({ type: "OFFER", dst: "probe", payload: {} });
  await probe.next();
  assert.equal(alice.pending, 0);
});

Deno.test("peerjs: a client silent past the alive timeout is closed with 4742", async () => {
  await using server = startServer({ peerjsAliveTimeout: 10_000 });
  await using quiet = await openPeer(server, "quiet");
  await using beating = await openPeer(server, "beating");
  await using probe = await openPeer(server, "probe");
  for (let s = 0; s < 12; s++) {
    // A heartbeat answers nothing: a relay sent after it, once it arrives,
    // proves the server read the beat before the clock moves.
    beating.send({ type: "HEARTBEAT" });
    beating.send({ type: "OFFER", dst: "probe", payload: {} });
    probe.send({ type: "HEARTBEAT" });
    await probe.next();
    server.clock.advance(1_000);
  }
  assert.equal((await quiet.closed).code, 4742);
  assert.equal(beating.socket.readyState, WebSocket.OPEN);
});

Deno.test("peerjs: /peers answers 401 unless discovery is on, then lists the ids held", async () => {
  {
    await using server = startServer();
    const response = await fetch(httpUrl(server, "/peerjs/peerjs/peers"));
    await response.body?.cancel();
    assert.equal(response.status, 401);
  }
  await using server = startServer({ peerjsDiscovery: true });
  await using _a = await openPeer(server, "alice");
  await using _b = await openPeer(server, "bob");
  const response = await fetch(httpUrl(server, "/peerjs/peerjs/peers"));
  assert.deepEqual((await response.json()).sort(), ["alice", "bob"]);
});

Deno.test("peerjs: with tokens, the token's prefix scopes ids, and /id and /peers need the token", async () => {
  await using server = startServer({
    authSecrets: [SECRET],
    peerjsDiscovery: true,
  });
  const token = await mintToken(SECRET, { prefix: "team-" });
  const other = await mintToken(SECRET, { prefix: "rival-" });
  const path = `/t/${token}/peerjs`;
  for (const route of ["/peerjs/peerjs/id", "/peerjs/peerjs/peers"]) {
    const response = await fetch(httpUrl(server, route));
    await response.body?.cancel();
    assert.equal(response.status, 401, route);
  }
  const forgery = await mintToken("not-the-server-secret-0123456789", {
    prefix: "team-",
  });
  const forged = await fetch(httpUrl(server, `/t/${forgery}/peerjs/peerjs/id`));
  await forged.body?.cancel();
  assert.equal(forged.status, 403);
  const id = await (await fetch(httpUrl(server, `${path}/peerjs/id`))).text();
  assert.match(id, /^team-[0-9a-f-]{36}$/);
  await using alice = await openPeer(server, id, "t1", `${path}/peerjs`);
  await using bob = await openPeer(server, "team-bob", "t2", `${path}/peerjs`);
  await using rival = await openPeer(
    server,
    "rival-x",
    "t3",
    `/t/${other}/peerjs/peerjs`,
  );
  // Out of the token's scope: refused.
  await using outside = await PjSocket.open(
    server,
    query("bob", "t4"),
    `${path}/peerjs`,
  );
  const error = (await outside.next()) as {
    type: string;
    payload: { msg: string };
  };
  assert.equal(error.type, "ERROR");
  assert.match(error.payload.msg, /prefix/);
  // A message across scopes is dropped, one within goes through.
  rival.send({ type: "OFFER", dst: "team-bob", payload: {} });
  alice.send({ type: "OFFER", dst: "team-bob", payload: { from: "alice" } });
  assert.equal(((await bob.next()) as { src: string }).src, id);
  const peers = await (await fetch(httpUrl(server, `${path}/peerjs/peers`)))
    .json();
  assert.deepEqual(peers.sort(), [id, "team-bob"].sort());
  // Without a token, no socket.
  const refused = new PjSocket(
    peerUrl(server, `/peerjs/peerjs?${query("team-c")}`),
  );
  await assert.rejects(refused.opened);
  await refused.closed;
});

Deno.test("peerjs: the HTTP routes follow the Origin allow-list", async () => {
  await using server = startServer({ allowOrigins: ["https://app.example"] });
  const good = await fetch(httpUrl(server, "/peerjs/peerjs/id"), {
    headers: { origin: "https://app.example" },
  });
  await good.body?.cancel();
  assert.equal(good.status, 200);
  assert.equal(
    good.headers.get("access-control-allow-origin"),
    "https://app.example",
  );
  const bad = await fetch(httpUrl(server, "/peerjs/peerjs/id"), {
    headers: { origin: "https://evil.example" },
  });
  await bad.body?.cancel();
  assert.equal(bad.status, 403);
  assert.equal(bad.headers.get("access-control-allow-origin"), null);
});

Deno.test("peerjs: a drain closes PeerJS sockets with 1001, and metrics are labelled protocol=peerjs", async () => {
  const server = startServer();
  const alice = await openPeer(server, "alice");
  const bob = await openPeer(server, "bob");
  alice.send({ type: "OFFER", dst: "nobody", payload: {} });
  alice.send({ type: "OFFER", dst: "bob", payload: {} });
  await bob.next();
  const metrics = await (await fetch(httpUrl(server, "/metrics"))).text();
  assert.match(metrics, /^sigver_peerjs_ids\{protocol="peerjs"\} 2$/m);
  assert.match(
    metrics,
    /^sigver_peerjs_relayed_total\{protocol="peerjs",type="OFFER"\} 1$/m,
  );
  assert.match(
    metrics,
    /^sigver_peerjs_queued_messages\{protocol="peerjs"\} 1$/m,
  );
  await server.shutdown();
  assert.equal((await alice.closed).code, 1001);
  assert.equal((await bob.closed).code, 1001);
  await settled(server);
});

Deno.test("peerjs: --peerjs-path off leaves /peerjs to Netflux, and Netflux keys beside it are untouched", async () => {
  {
    await using server = startServer({ peerjsPath: false });
    const response = await fetch(httpUrl(server, "/peerjs/peerjs/id"));
    await response.body?.cancel();
    assert.notEqual(response.status, 200);
  }
  await using server = startServer({ peerjsPath: "/pj", peerjsKey: ["k1"] });
  const moved = await fetch(httpUrl(server, "/pj/k1/id"));
  assert.equal(moved.status, 200);
  await moved.body?.cancel();
  await using peer = await PjSocket.open(
    server,
    query("a", "t", "k1"),
    "/pj/peerjs",
  );
  assert.deepEqual(await peer.next(), { type: "OPEN" });
  // A Netflux key that only starts like the mount stays Netflux's.
  const plain = await fetch(httpUrl(server, "/pjx"));
  await plain.body?.cancel();
  assert.equal(plain.status, 426);
});

Deno.test("peerjs: the CLI serves PeerJS under its flags and refuses a root path", async () => {
  await using cli = new Cli(cliArgs(
    "--peerjs-path",
    "/signal",
    "--peerjs-key",
    "app",
    "--peerjs-discovery",
  ));
  const port = await cli.port();
  const peers = await fetch(`http://127.0.0.1:${port}/signal/app/peers`);
  assert.deepEqual(await peers.json(), []);
  const bad = await command(["--peerjs-path", "/"]).output();
  assert.equal(bad.code, 2);
  assert.match(new TextDecoder().decode(bad.stderr), /--peerjs-path/);
});
