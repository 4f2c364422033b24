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
import NETFLUX from "npm:netflux@4.3.1/dist/netflux.browser.es5.umd.js" with {
  type: "text",
};
import type { Page } from "npm:playwright-core@1.65.1";
import { launchChromium, startCli, TIMEOUT, watch } from "./_browser.ts";
import { mintToken } from "../../lib/token.ts";
import { waitFor } from "../_helpers.ts";

const PAGE = `<!doctype html><meta charset="utf-8"><title>netflux</title>
<script src="/netflux.js"></script><body>netflux</body>`;

/** Serves the page and Netflux's browser build on a free loopback port. */
function servePage(): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (r) =>
      new URL(r.url).pathname === "/netflux.js"
        ? new Response(NETFLUX, {
          headers: { "content-type": "text/javascript" },
        })
        : new Response(PAGE, { headers: { "content-type": "text/html" } }),
  );
}

/** Opens a page and makes it join `key` with a Netflux WebGroup. */
async function join(page: Page, base: string, signaling: string, key: string) {
  await page.goto(base);
  await page.evaluate(([url, key]) => {
    // deno-lint-ignore no-explicit-any
    const g = globalThis as any;
    g.received = [];
    g.wg = new g.netflux.WebGroup({
      signalingServer: url,
      rtcConfiguration: { iceServers: [] },
    });
    g.wg.onMessage = (_id: number, data: string) => g.received.push(data);
    g.wg.join(key);
  }, [signaling, key]);
}

/** The page's WebGroup: state (1 = joined), signaling state, members. */
function group(page: Page): Promise<
  { state: number; signaling: number; members: number[] }
> {
  return page.evaluate(() => {
    // deno-lint-ignore no-explicit-any
    const wg = (globalThis as any).wg;
    return {
      state: wg.state,
      signaling: wg.signalingState,
      members: wg.members,
    };
  });
}

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
  await using web = servePage();
  const base = `http://127.0.0.1:${web.addr.port}/`;
  const browser = await launchChromium();
  const errors: string[] = [];
  try {
    const key = `netflux-${crypto.randomUUID().slice(0, 8)}`;
    const pages: Page[] = [];
    for (let i = 0; i < 3; i++) {
      const page = await browser.newPage();
      watch(page, `page ${i}`, errors);
      await join(page, base, signaling, key);
      // Users arrive one by one: each joins the group of those before it.
      await page.waitForFunction(
        (n) => {
          // deno-lint-ignore no-explicit-any
          const wg = (globalThis as any).wg;
          return wg.state === 1 && wg.members.length === n;
        },
        i + 1,
        { timeout: TIMEOUT },
      );
      pages.push(page);
    }
    const ids = (await Promise.all(pages.map(group))).map((g) => g.members);
    for (const members of ids) {
      assert.deepEqual([...members].sort(), [...ids[0]].sort());
    }

    for (const [i, page] of pages.entries()) {
      await page.evaluate((i) => {
        // deno-lint-ignore no-explicit-any
        (globalThis as any).wg.send(`hello from ${i}`);
      }, i);
    }
    for (const [i, page] of pages.entries()) {
      await page.waitForFunction(
        // deno-lint-ignore no-explicit-any
        () => (globalThis as any).received.length === 2,
        undefined,
        { timeout: TIMEOUT },
      );
      const received: string[] = await page.evaluate(() =>
        // deno-lint-ignore no-explicit-any
        (globalThis as any).received
      );
      const others = [0, 1, 2].filter((j) => j !== i);
      assert.deepEqual(received.sort(), others.map((j) => `hello from ${j}`));
    }

    // Past three heartbeat periods (15 s): had the server missed Netflux's
    // heartbeats, it would have closed the pages with 4742 by now.
    await new Promise((resolve) => setTimeout(resolve, 16_000));
    for (const page of pages) {
      const g = await group(page);
      assert.equal(g.state, 1);
      assert.equal(g.members.length, 3);
    }
    const metrics = await (await fetch(`${server.base}/metrics`)).text();
    assert.match(metrics, /^sigver_peers 3$/m);
    assert.match(metrics, /^sigver_members 3$/m);
    assert.doesNotMatch(metrics, /sigver_closes_total\{code="474\d"/);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
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
  const token = await mintToken(secret, { prefix: "netflux-", ttl: 600 });
  const wsBase = server.base.replace("http", "ws");
  await using web = servePage();
  const base = `http://127.0.0.1:${web.addr.port}/`;
  const browser = await launchChromium();
  const errors: string[] = [];
  try {
    const key = `netflux-${crypto.randomUUID().slice(0, 8)}`;
    const pages: Page[] = [];
    for (let i = 0; i < 2; i++) {
      const page = await browser.newPage();
      watch(page, `page ${i}`, errors);
      await join(page, base, `${wsBase}/t/${token}`, key);
      await page.waitForFunction(
        (n) => {
          // deno-lint-ignore no-explicit-any
          const wg = (globalThis as any).wg;
          return wg.state === 1 && wg.members.length === n;
        },
        i + 1,
        { timeout: TIMEOUT },
      );
      pages.push(page);
    }
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
    const outsider = await browser.newPage();
    await join(outsider, base, `${wsBase}/t/${forged}`, key);
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
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});
