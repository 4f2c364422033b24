/**
 * End to end with the real client: y-webrtc 10.3.0 and yjs (npm), unmodified,
 * in headless Chromium pages, each in a browser context of its own (pages
 * of one context sync over BroadcastChannel without any server), edit one
 * Y.Doc through the real server (`server.ts`, a subprocess) over real
 * RTCPeerConnections on 127.0.0.1: two pages, three pages, a token URL and
 * a password room.
 *
 * Run with `deno task test:e2e`.
 */

import assert from "node:assert/strict";
import type { Page } from "npm:playwright-core@1.65.1";
import { startCli } from "./_browser.ts";
import {
  assertEditTogether,
  assertLoopback,
  uniqueRoom,
  YPages,
} from "./_ywebrtc.ts";
import { mintToken } from "../../lib/token.ts";

// Playwright keeps its own pipes and timers to the browser process.
const E2E = { sanitizeOps: false, sanitizeResources: false };

for (const count of [2, 3]) {
  Deno.test({
    name:
      `y-webrtc ${count} pages in ${count} browser contexts edit one Y.Doc through sigver`,
    ...E2E,
  }, async () => {
    await using server = await startCli();
    const signaling = `${server.base.replace("http", "ws")}/y-webrtc`;
    await using browser = await YPages.launch();
    const init = { signaling, room: uniqueRoom() };
    const pages: Page[] = [];
    for (let i = 0; i < count; i++) {
      pages.push(await browser.open(`page ${i}`, init));
    }
    await assertEditTogether(pages);
    await assertLoopback(pages);
    const metrics = await (await fetch(`${server.base}/metrics`)).text();
    assert.match(
      metrics,
      new RegExp(
        `^sigver_ywebrtc_peers\\{protocol="y-webrtc"\\} ${count}$`,
        "m",
      ),
    );
    assert.match(metrics, /^sigver_ywebrtc_topics\{protocol="y-webrtc"\} 1$/m);
    assert.deepEqual(browser.errors, []);
  });
}

Deno.test({
  name: "y-webrtc pages edit one Y.Doc through a token URL",
  ...E2E,
}, async () => {
  const secret = "y-webrtc e2e auth secret";
  await using server = await startCli("--auth-secret", secret);
  const token = await mintToken(secret, { prefix: "yjs-", ttl: 600_000 });
  const signaling = `${server.base.replace("http", "ws")}/t/${token}/y-webrtc`;
  await using browser = await YPages.launch();
  const init = { signaling, room: uniqueRoom() };
  const pages = [
    await browser.open("page 0", init),
    await browser.open("page 1", init),
  ];
  await assertEditTogether(pages);
  await assertLoopback(pages);
  assert.deepEqual(browser.errors, []);
});

Deno.test({
  name: "y-webrtc pages of a password room edit one Y.Doc through sigver",
  ...E2E,
}, async () => {
  await using server = await startCli();
  const signaling = `${server.base.replace("http", "ws")}/y-webrtc`;
  await using browser = await YPages.launch();
  const init = { signaling, room: uniqueRoom(), password: "correct horse" };
  const pages = [
    await browser.open("page 0", init),
    await browser.open("page 1", init),
  ];
  await assertEditTogether(pages);
  assert.deepEqual(browser.errors, []);
});
