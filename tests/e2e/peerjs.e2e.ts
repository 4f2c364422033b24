/**
 * End to end with the real client: peerjs 1.5.5 (npm), unmodified, in
 * headless Chromium pages (a browser context each), against the real
 * server (`server.ts`, run as a subprocess) at its default `/peerjs` path:
 * ids handed out and chosen, DataConnections with JSON and binary both
 * ways over RTCPeerConnections on loopback, ID-TAKEN, `peer-unavailable`,
 * an offer sent before its target connects, and `reconnect()` keeping the
 * id; then the same through a token URL (`path: "/t/<token>/peerjs"`).
 *
 * Run with `deno task test:e2e`.
 */

import assert from "node:assert/strict";
import { startCli } from "./_browser.ts";
import {
  dial,
  errorSeen,
  inbox,
  PeerjsPages,
  selectedAddresses,
  send,
  type ServerOptions,
  start,
} from "./_peerjs.ts";
import { mintToken } from "../../lib/token.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function serverOf(base: string, path: string): ServerOptions {
  const url = new URL(base);
  return { host: url.hostname, port: Number(url.port), path };
}

Deno.test({
  name:
    "peerjs 1.5.5 pages connect through sigver: ids, JSON and binary both ways, ID-TAKEN, peer-unavailable, late targets, reconnect",
  // Playwright keeps its own pipes and timers to the browser process.
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  await using server = await startCli();
  const options = serverOf(server.base, "/peerjs");
  await using pages = await PeerjsPages.launch();
  const suffix = crypto.randomUUID().slice(0, 8);
  const a = await pages.page("a");
  const b = await pages.page("b");
  let aId = "";
  const bId = `bob-${suffix}`;

  await t.step("a server-given id and a chosen one", async () => {
    const given = await start(a, options);
    assert.ok("id" in given, JSON.stringify(given));
    assert.match(given.id, UUID);
    aId = given.id;
    assert.deepEqual(await start(b, options, bId), { id: bId });
  });

  await t.step("JSON and binary both ways over loopback", async () => {
    await dial(b, aId, "json");
    await dial(b, aId, "binary");
    await send(b, 0, { hello: "json", n: 1 });
    await send(b, 1, null, [1, 2, 3, 250]);
    const atA = await inbox(a, 2);
    assert.deepEqual(
      atA.map((m) => [m.peer, m.label, m.data]).sort(),
      [
        [bId, "binary", { bytes: [1, 2, 3, 250] }],
        [bId, "json", { hello: "json", n: 1 }],
      ],
    );
    const atB = await inbox(b, 2);
    assert.deepEqual(
      atB.map((m) => [m.peer, m.label, m.data]).sort(),
      [
        [aId, "binary", { bytes: [250, 3, 2, 1] }],
        [aId, "json", { echo: { hello: "json", n: 1 } }],
      ],
    );
    const host = new Set(Deno.networkInterfaces().map((i) => i.address));
    host.add("");
    for (const page of [a, b]) {
      const pairs = await selectedAddresses(page);
      assert.equal(pairs.length, 2);
      // Only 127.0.0.1 candidates are signaled, so one end of each pair is
      // 127.0.0.1 and the other this host's (the side that did not signal
      // it may pair its own socket on another interface with it, or see a
      // peer-reflexive remote, whose address Chromium hides as "").
      for (const pair of pairs) {
        const [local, remote] = pair.split(">");
        assert.ok(local === "127.0.0.1" || remote === "127.0.0.1", pair);
        assert.ok(host.has(local) && host.has(remote), pair);
      }
    }
  });

  await t.step("an id held by another page is ID-TAKEN", async () => {
    const thief = await pages.page("thief");
    assert.deepEqual(await start(thief, options, bId), {
      error: "unavailable-id",
    });
    await thief.context().close();
  });

  await t.step(
    "a connection to an id nobody takes is peer-unavailable",
    async () => {
      await b.evaluate((id) => {
        // deno-lint-ignore no-explicit-any
        (globalThis as any).peer.connect(id);
      }, `nobody-${suffix}`);
      await errorSeen(b, "peer-unavailable");
    },
  );

  await t.step(
    "an offer sent before its target connects reaches it",
    async () => {
      const lateId = `late-${suffix}`;
      const opened = b.evaluate((id) =>
        // deno-lint-ignore no-explicit-any
        (globalThis as any).dial(id, "json"), lateId);
      // The offer waits on the server for the target's socket.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const late = await pages.page("late");
      assert.deepEqual(await start(late, options, lateId), { id: lateId });
      await opened;
      const index = await b.evaluate(() =>
        // deno-lint-ignore no-explicit-any
        (globalThis as any).conns.length - 1
      );
      await send(b, index, { to: "late" });
      const got = await inbox(late, 1);
      assert.deepEqual(got, [{
        peer: bId,
        label: "json",
        data: { to: "late" },
      }]);
    },
  );

  await t.step(
    "reconnect() keeps the id and connections still reach it",
    async () => {
      await b.evaluate(() => {
        // deno-lint-ignore no-explicit-any
        (globalThis as any).peer.disconnect();
      });
      const back = await b.evaluate(() =>
        new Promise((resolve) => {
          // deno-lint-ignore no-explicit-any
          const peer = (globalThis as any).peer;
          peer.once("open", (id: string) => resolve(id));
          peer.reconnect();
        })
      );
      assert.equal(back, bId);
      const before = (await inbox(b, 0)).length;
      await dial(a, bId, "json");
      const index = await a.evaluate(() =>
        // deno-lint-ignore no-explicit-any
        (globalThis as any).conns.length - 1
      );
      await send(a, index, { after: "reconnect" });
      const atB = await inbox(b, before + 1);
      assert.deepEqual(atB.at(-1), {
        peer: aId,
        label: "json",
        data: { after: "reconnect" },
      });
    },
  );

  const metrics = await (await fetch(`${server.base}/metrics`)).text();
  assert.match(metrics, /^sigver_peerjs_ids\{protocol="peerjs"\} 3$/m);
  assert.match(
    metrics,
    /^sigver_peerjs_queue_events_total\{protocol="peerjs",event="expired"\} [1-9]/m,
  );
  assert.deepEqual(
    pages.errors.filter((e) =>
      !/peer-unavailable|unavailable-id|is taken|Could not connect/i.test(e)
    ),
    [],
  );
});

Deno.test({
  name:
    "peerjs 1.5.5 pages connect through a token URL, and ids outside the token's prefix stay out",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  const secret = "peerjs e2e auth secret, 16+ bytes";
  await using server = await startCli("--auth-secret", secret);
  const token = await mintToken(secret, { prefix: "pj-", ttl: 600_000 });
  const options = serverOf(server.base, `/t/${token}/peerjs`);
  await using pages = await PeerjsPages.launch();
  const a = await pages.page("a");
  const b = await pages.page("b");
  const given = await start(a, options);
  assert.ok("id" in given, JSON.stringify(given));
  assert.match(given.id, /^pj-[0-9a-f-]{36}$/);
  assert.deepEqual(await start(b, options, "pj-bob"), { id: "pj-bob" });
  await dial(b, given.id, "binary");
  await send(b, 0, null, [9, 8, 7]);
  assert.deepEqual((await inbox(b, 1))[0].data, { bytes: [7, 8, 9] });
  const outside = await pages.page("outside");
  assert.deepEqual(await start(outside, options, "other"), {
    error: "server-error",
  });
  const untokened = await pages.page("untokened");
  assert.deepEqual(await start(untokened, serverOf(server.base, "/peerjs")), {
    error: "server-error",
  });
});
