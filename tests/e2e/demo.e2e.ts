/**
 * End to end: real WebRTC between headless Chromium pages that open the demo
 * served by the real server (`server.ts`, run as a subprocess).
 *
 * Run with `deno task test:e2e` (not part of `deno task test`: the file name
 * does not match `*_test.ts`). It needs Debian's `chromium` on the PATH, or
 * its path in `CHROMIUM`. Screenshots go to `tests/artifacts/`.
 */

import assert from "node:assert/strict";
import type { Browser } from "npm:playwright-core@1.65.1";
import { launchChromium, startCli, TIMEOUT, watch } from "./_browser.ts";
import {
  ARTIFACTS,
  chat,
  connectedPeers,
  screenshot,
  waitConnected,
  waitMember,
} from "./_demo.ts";

Deno.test({
  name: "demo pages connect over WebRTC through the server and chat",
  // Playwright keeps its own pipes and timers to the browser process.
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  await Deno.mkdir(ARTIFACTS, { recursive: true });
  await using server = await startCli();
  const browser: Browser = await launchChromium();
  const errors: string[] = [];
  try {
    // One browser context: the pages are tabs of one browser.
    const context = await browser.newContext({
      viewport: { width: 1200, height: 900 },
    });
    const room = `e2e-${crypto.randomUUID().slice(0, 8)}`;
    const [a, b, c] = [
      await context.newPage(),
      await context.newPage(),
      await context.newPage(),
    ];
    watch(a, "A", errors);
    watch(b, "B", errors);
    watch(c, "C", errors);

    await t.step("two pages on a fresh room reach connected", async () => {
      // A types the room name; B follows a shared link, as a user would.
      await a.goto(`${server.base}/`);
      await a.fill("#room", room);
      await a.click("#join-button");
      await waitMember(a);
      assert.match(
        await a.locator("#step-member").textContent() ?? "",
        /connected: true · first member of the room/,
      );
      await b.goto(`${server.base}/?room=${room}`);
      await Promise.all([waitConnected(a, 1), waitConnected(b, 1)]);
      await waitMember(b);
      assert.equal(await connectedPeers(a), 1);
      assert.equal(await connectedPeers(b), 1);
    });

    await t.step(
      "they exchange a message each way over the data channel",
      async () => {
        await chat(a, "hello from A", [b]);
        await chat(b, "hi A, B here", [a]);
      },
    );

    await t.step(
      "a third page joining the room gets connected too",
      async () => {
        await c.goto(`${server.base}/?room=${room}`);
        await waitConnected(c, 1);
        // The server binds each newcomer to the first member: A.
        await waitConnected(a, 2);
        assert.equal(await connectedPeers(b), 1);
        await waitMember(c);
        // C and B are not linked directly: A relays along the tree.
        await chat(c, "C joined the chat", [a, b]);
        await chat(b, "welcome C", [a, c]);
      },
    );

    await t.step("a screenshot of the demo page is written", async () => {
      // A: the first member, with two joiners; C: a joiner.
      await screenshot(a, "demo.png");
      await screenshot(c, "demo-joiner.png");
    });

    await t.step(
      "a refused socket shows its close code and meaning",
      async () => {
        const page = await context.newPage();
        await page.goto(`${server.base}/?room=${"x".repeat(600)}`);
        const banner = page.locator("#banner");
        await banner.waitFor({ state: "visible", timeout: TIMEOUT });
        const text = await banner.textContent() ?? "";
        assert.match(text, /4741 ERR_KEY/);
        assert.match(text, /empty or longer than 512 characters/);
        assert.equal(
          await page.locator("#step-socket").getAttribute("data-state"),
          "bad",
        );
        // The user can fix the room name and join again.
        assert.equal(await page.locator("#join-button").isEnabled(), true);
        const path = new URL("demo-refused.png", ARTIFACTS);
        await page.screenshot({ path: path.pathname });
        await page.close();
      },
    );

    await context.close();
    assert.deepEqual(errors, []);
  } finally {
    if (errors.length > 0) console.error(errors.join("\n"));
    await browser.close();
  }
});
