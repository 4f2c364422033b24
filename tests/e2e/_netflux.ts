/**
 * Netflux 4.3.1 (npm) in pages, for the end-to-end tests that run the real
 * client against one server (`netflux.e2e.ts`) or a cluster
 * (`cluster.e2e.ts`): Chromium and a page that loads its browser build,
 * pages that join a group one by one, and the checks that they formed it,
 * message each other over the WebRTC mesh and stay in it.
 *
 * @module
 */

import assert from "node:assert/strict";
import NETFLUX from "npm:netflux@4.3.1/dist/netflux.browser.es5.umd.js" with {
  type: "text",
};
import type { Browser, Page } from "npm:playwright-core@1.65.1";
import { launchChromium, TIMEOUT, watch } from "./_browser.ts";

const PAGE = `<!doctype html><meta charset="utf-8"><title>netflux</title>
<script src="/netflux.js"></script><body>netflux</body>`;

/**
 * Counts, in `heartbeats`, the server's heartbeats a page receives: binary
 * messages that are exactly `Message{heartbeat: true}` (`08 01`). Installed
 * before Netflux loads, by wrapping the page's `WebSocket`.
 */
const COUNT_HEARTBEATS = `(() => {
  globalThis.heartbeats = 0;
  const count = (bytes) => {
    if (bytes.length === 2 && bytes[0] === 0x08 && bytes[1] === 0x01) {
      globalThis.heartbeats++;
    }
  };
  const Native = globalThis.WebSocket;
  globalThis.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", ({ data }) => {
        if (data instanceof ArrayBuffer) count(new Uint8Array(data));
        else if (data instanceof Blob && data.size === 2) {
          data.arrayBuffer().then((buffer) => count(new Uint8Array(buffer)));
        }
      });
    }
  };
})();`;

/** Serves the page and Netflux's browser build on a free loopback port. */
function _servePage(): Deno.HttpServer<Deno.NetAddr> {
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

/**
 * Headless Chromium and a server of the Netflux page, for the pages of one
 * test; disposing of it closes the browser, then the page server.
 */
export class NetfluxPages implements AsyncDisposable {
  /** The browser. */
  readonly browser: Browser;
  /** The page's URL. */
  readonly base: string;
  /** Page and console errors of the pages {@linkcode joinOneByOne} opened. */
  readonly errors: string[] = [];
  readonly #web: Deno.HttpServer<Deno.NetAddr>;

  private constructor(web: Deno.HttpServer<Deno.NetAddr>, browser: Browser) {
    this.#web = web;
    this.browser = browser;
    this.base = `http://127.0.0.1:${web.addr.port}/`;
  }

  /** Serves the page and launches Chromium. */
  static async launch(): Promise<NetfluxPages> {
    const web = _servePage();
    try {
      return new NetfluxPages(web, await launchChromium());
    } catch (error) {
      await web.shutdown();
      throw error;
    }
  }

  /**
   * Users arriving one by one: `count` pages, watched for errors, each
   * joins `key` through `signaling` and waits until it is in the group of
   * those before it.
   *
   * @returns The pages, in the order they joined.
   */
  async joinOneByOne(
    signaling: string,
    key: string,
    count: number,
  ): Promise<Page[]> {
    const pages: Page[] = [];
    for (let i = 0; i < count; i++) {
      const page = await this.browser.newPage();
      watch(page, `page ${i}`, this.errors);
      await join(page, this.base, signaling, key);
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
    return pages;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.browser.close();
    } finally {
      await this.#web.shutdown();
    }
  }
}

/** Opens a page and makes it join `key` with a Netflux WebGroup. */
export async function join(
  page: Page,
  base: string,
  signaling: string,
  key: string,
): Promise<void> {
  await page.addInitScript({ content: COUNT_HEARTBEATS });
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
export function group(page: Page): Promise<
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

/** Every page sees the same members as the first. */
export async function assertSameMembers(pages: Page[]): Promise<void> {
  const ids = (await Promise.all(pages.map(group))).map((g) => g.members);
  for (const members of ids) {
    assert.deepEqual([...members].sort(), [...ids[0]].sort());
  }
}

/** Every page says hello over the mesh, and hears every other one's. */
export async function assertHelloFromEach(pages: Page[]): Promise<void> {
  for (const [i, page] of pages.entries()) {
    await page.evaluate((i) => {
      // deno-lint-ignore no-explicit-any
      (globalThis as any).wg.send(`hello from ${i}`);
    }, i);
  }
  for (const [i, page] of pages.entries()) {
    await page.waitForFunction(
      // deno-lint-ignore no-explicit-any
      (n) => (globalThis as any).received.length === n,
      pages.length - 1,
      { timeout: TIMEOUT },
    );
    const received: string[] = await page.evaluate(() =>
      // deno-lint-ignore no-explicit-any
      (globalThis as any).received
    );
    const others = pages.map((_, j) => j).filter((j) => j !== i);
    assert.deepEqual(received.sort(), others.map((j) => `hello from ${j}`));
  }
}

/**
 * Checks that every page stays joined with all of them past three
 * heartbeat periods, waiting on heartbeats rather than on a clock: the
 * server sends one per period and, had it missed the page's answers for
 * three periods, it would close with 4742 instead of sending the third (a
 * silent peer gets exactly two, docs/PROTOCOL.md). So a page that has
 * received three heartbeats and is still joined proves the server hears
 * Netflux's heartbeats. The periods are the server's (5 s by default): the
 * wait is as long as they are, and no longer.
 */
export async function assertStillJoined(pages: Page[]): Promise<void> {
  for (const page of pages) {
    await page.waitForFunction(
      // deno-lint-ignore no-explicit-any
      () => (globalThis as any).heartbeats >= 3,
      undefined,
      { timeout: TIMEOUT },
    );
  }
  for (const page of pages) {
    const g = await group(page);
    assert.equal(g.state, 1);
    assert.equal(g.members.length, pages.length);
  }
}
