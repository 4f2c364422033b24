/**
 * End to end with the real client: Netflux 4.3.1 (npm), running in headless
 * Chromium pages, forms a group through the real server (`server.ts`, run as
 * a subprocess): every page joins, all see each other, messages go over the
 * WebRTC mesh, and the pages stay in the group across three heartbeat
 * periods. Behind access tokens, Netflux joins through a token URL
 * (`signalingServer: "ws://host/t/<token>"`).
 *
 * Run with `deno task test:e2e`.
 */

import assert from "node:assert/strict";
import { startCli, TIMEOUT } from "./_browser.ts";
import {
  assertHelloFromEach,
  assertSameMembers,
  assertStillJoined,
  group,
  join,
  NetfluxPages,
} from "./_netflux.ts";
import { mintToken } from "../../lib/token.ts";
import { waitFor } from "../_helpers.ts";

Deno.test({
  name: "netflux 4 clients form a group through the server and stay in it",
  // Playwright keeps its own pipes and timers to the browser process.
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  // The server as the README starts it. Netflux sends its own heartbeat
  // every 5 s (it does not echo the server's), so the interval stays 5 s.
  await using server = await startCli();
  const signaling = server.base.replace("http", "ws");
  await using netflux = await NetfluxPages.launch();
  const key = `netflux-${crypto.randomUUID().slice(0, 8)}`;
  const pages = await netflux.joinOneByOne(signaling, key, 3);
  await assertSameMembers(pages);
  await assertHelloFromEach(pages);
  await assertStillJoined(pages);
  const metrics = await (await fetch(`${server.base}/metrics`)).text();
  assert.match(metrics, /^sigver_peers 3$/m);
  assert.match(metrics, /^sigver_members 3$/m);
  assert.doesNotMatch(metrics, /sigver_closes_total\{code="474\d"/);
  assert.deepEqual(netflux.errors, []);
});

Deno.test({
  name:
    "netflux 4 clients join through a token URL, and a forged token stays out",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  const secret = "netflux e2e auth secret";
  await using server = await startCli("--auth-secret", secret);
  // What an app backend hands its pages: a token for its rooms, and the
  // signaling URL with it, to which Netflux appends "/<key>".
  const token = await mintToken(secret, { prefix: "netflux-", ttl: 600_000 });
  const wsBase = server.base.replace("http", "ws");
  await using netflux = await NetfluxPages.launch();
  const key = `netflux-${crypto.randomUUID().slice(0, 8)}`;
  const pages = await netflux.joinOneByOne(`${wsBase}/t/${token}`, key, 2);
  await pages[0].evaluate(() => {
    // deno-lint-ignore no-explicit-any
    (globalThis as any).wg.send("hello with a token");
  });
  await pages[1].waitForFunction(
    // deno-lint-ignore no-explicit-any
    () => (globalThis as any).received.includes("hello with a token"),
    undefined,
    { timeout: TIMEOUT },
  );

  // A token signed with another secret: the upgrade gets 403.
  const forged = await mintToken("not the server's secret", {
    prefix: "netflux-",
  });
  const outsider = await netflux.browser.newPage();
  await join(outsider, netflux.base, `${wsBase}/t/${forged}`, key);
  await waitFor(async () => {
    const metrics = await (await fetch(`${server.base}/metrics`)).text();
    return /^sigver_rejections_total\{reason="token_signature"\} [1-9]/m
      .test(metrics);
  }, "the server to refuse the forged token");
  const g = await group(outsider);
  assert.notEqual(g.state, 1);
  for (const page of pages) {
    assert.equal((await group(page)).members.length, 2);
  }
  const metrics = await (await fetch(`${server.base}/metrics`)).text();
  assert.match(metrics, /^sigver_peers 2$/m);
  assert.match(metrics, /^sigver_members 2$/m);
  assert.deepEqual(netflux.errors, []);
});
