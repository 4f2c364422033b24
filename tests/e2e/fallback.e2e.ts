/**
 * End to end over the WebSocket-free fallback: demo pages in headless
 * Chromium that cannot open a WebSocket join their room over Server-Sent
 * Events and POSTs, then connect over WebRTC and chat over a data channel;
 * a page on a WebSocket and a page on the fallback meet in one room.
 *
 * A page is kept off WebSockets two ways: in the page (an init script makes
 * `new WebSocket()` throw, as where a policy forbids it), and on the
 * network (it goes through a proxy that answers 400 to every upgrade and
 * forwards everything else, as a middlebox that strips upgrades does).
 * The server's debug log (`transport=sse` on a peer's open line) and the
 * page (`#step-socket[data-transport]`) show which transport each peer
 * used. A last test removes the `WebSocket` global altogether.
 *
 * Run with `deno task test:e2e`. It needs Debian's `chromium` on the PATH,
 * or its path in `CHROMIUM`. Screenshots go to `tests/artifacts/`.
 */

import assert from "node:assert/strict";
import type { Browser, BrowserContext, Page } from "npm:playwright-core@1.65.1";
import { Cli, cliArgs } from "../_cli.ts";
import { upgradeStripper, waitFor } from "../_helpers.ts";
import { keyHash } from "../../lib/log.ts";
import { launchChromium, TIMEOUT, watch } from "./_browser.ts";
import {
  ARTIFACTS,
  chat,
  screenshot,
  waitConnected,
  waitMember,
} from "./_demo.ts";

/** In the page: `new WebSocket()` throws, as where a policy forbids it. */
const BLOCK_WEBSOCKET = `(() => {
  const Native = globalThis.WebSocket;
  globalThis.WebSocket = class BlockedWebSocket extends Native {
    constructor() {
      throw new DOMException("WebSockets are blocked here", "SecurityError");
    }
  };
})();`;

/** The transport the page says its signaling socket uses. */
async function transportOf(page: Page): Promise<string | null> {
  await page.locator("#step-socket[data-state=ok]").waitFor({
    timeout: TIMEOUT,
  });
  return await page.locator("#step-socket").getAttribute("data-transport");
}

/** The server's open lines of a room: how many peers, on which transport. */
function opens(server: Cli, room: string): { sse: number; websocket: number } {
  const lines = server.stderr.split("\n").filter((line) =>
    / DEBUG open /.test(line) && line.includes(` key=${keyHash(room)} `)
  );
  const sse = lines.filter((line) => / transport=sse\b/.test(line)).length;
  return { sse, websocket: lines.length - sse };
}

/** A page of `context`, watched for errors, blocked from WebSockets or not. */
async function newPage(
  context: BrowserContext,
  name: string,
  errors: string[],
  blocked: boolean,
): Promise<Page> {
  const page = await context.newPage();
  watch(page, name, errors);
  if (blocked) await page.addInitScript(BLOCK_WEBSOCKET);
  return page;
}

Deno.test({
  name: "demo pages that cannot open a WebSocket connect over the fallback",
  // Playwright keeps its own pipes and timers to the browser process.
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  await Deno.mkdir(ARTIFACTS, { recursive: true });
  await using server = new Cli(cliArgs("--log-level", "debug"));
  const base = `http://127.0.0.1:${await server.port()}`;
  await using proxy = upgradeStripper(base);
  const browser: Browser = await launchChromium();
  const errors: string[] = [];
  try {
    const context = await browser.newContext({
      viewport: { width: 1200, height: 900 },
    });

    await t.step(
      "two pages without WebSockets reach connected and chat both ways",
      async () => {
        const room = `fb-${crypto.randomUUID().slice(0, 8)}`;
        // A: WebSockets blocked in the page; B: upgrades stripped on the way.
        const a = await newPage(context, "A", errors, true);
        const b = await newPage(context, "B", errors, false);
        await a.goto(`${base}/?room=${room}`);
        assert.equal(await transportOf(a), "sse");
        await waitMember(a);
        await b.goto(`${proxy.http}/?room=${room}`);
        assert.equal(await transportOf(b), "sse");
        await Promise.all([waitConnected(a), waitConnected(b)]);
        await chat(a, "hello from A, over the fallback", [b]);
        await chat(b, "hi A, B here, behind a proxy", [a]);
        assert.match(
          await a.locator("#step-socket").textContent() ?? "",
          /open over the fallback \(Server-Sent Events \+ POST\)/,
        );
        // The server saw both peers arrive on the fallback.
        await waitFor(() => opens(server, room).sse === 2, "two sse opens");
        assert.deepEqual(opens(server, room), { sse: 2, websocket: 0 });
        await screenshot(a, "fallback-blocked.png");
        await screenshot(b, "fallback-proxied.png");
        await a.close();
        await b.close();
      },
    );

    await t.step(
      "a WebSocket page and a fallback page in one room connect to each other",
      async () => {
        const room = `mixed-${crypto.randomUUID().slice(0, 8)}`;
        const ws = await newPage(context, "WS", errors, false);
        const sse = await newPage(context, "SSE", errors, true);
        await ws.goto(`${base}/?room=${room}`);
        assert.equal(await transportOf(ws), "websocket");
        await waitMember(ws);
        await sse.goto(`${base}/?room=${room}`);
        assert.equal(await transportOf(sse), "sse");
        await Promise.all([waitConnected(ws), waitConnected(sse)]);
        await chat(ws, "from the WebSocket page", [sse]);
        await chat(sse, "from the fallback page", [ws]);
        await waitFor(
          () => opens(server, room).sse === 1,
          "one sse open",
        );
        assert.deepEqual(opens(server, room), { sse: 1, websocket: 1 });
        await screenshot(ws, "fallback-mixed-websocket.png");
        await screenshot(sse, "fallback-mixed-sse.png");
        await ws.close();
        await sse.close();
      },
    );

    await context.close();
    // The browser itself reports the proxy's refusal of B's upgrade, which
    // is what sends B to the fallback; nothing else may go wrong.
    const refusal =
      /^B: WebSocket connection to '[^']+' failed: .*Unexpected response code: 400$/;
    assert.deepEqual(errors.filter((error) => !refusal.test(error)), []);
  } finally {
    if (errors.length > 0) console.error(errors.join("\n"));
    await browser.close();
  }
});

Deno.test({
  name: "demo pages with no WebSocket at all connect over the fallback",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  await Deno.mkdir(ARTIFACTS, { recursive: true });
  await using server = new Cli(cliArgs("--log-level", "debug"));
  const base = `http://127.0.0.1:${await server.port()}`;
  const browser: Browser = await launchChromium();
  const errors: string[] = [];
  try {
    const context = await browser.newContext({
      viewport: { width: 1200, height: 900 },
    });
    const room = `nows-${crypto.randomUUID().slice(0, 8)}`;
    const pages: Page[] = [];
    for (const name of ["C", "D"]) {
      const page = await context.newPage();
      watch(page, name, errors);
      // An environment without the WebSocket global (an old or locked-down
      // browser, a test harness that removed it).
      await page.addInitScript("delete globalThis.WebSocket;");
      await page.goto(`${base}/?room=${room}`);
      assert.equal(await transportOf(page), "sse");
      pages.push(page);
    }
    const [c, d] = pages;
    await Promise.all([waitConnected(c), waitConnected(d)]);
    await chat(c, "no WebSocket here", [d]);
    await chat(d, "nor here", [c]);
    assert.deepEqual(opens(server, room), { sse: 2, websocket: 0 });
    await screenshot(d, "fallback-no-websocket.png");
    await context.close();
    assert.deepEqual(errors, []);
  } finally {
    if (errors.length > 0) console.error(errors.join("\n"));
    await browser.close();
  }
});
