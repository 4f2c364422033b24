/**
 * The demo page (`demo/`) as the end-to-end tests drive it: how many peers
 * a page is connected to, its membership step, a chat message that every
 * page must show, and screenshots in `tests/artifacts/`.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { Page } from "npm:playwright-core@1.65.1";
import { TIMEOUT } from "./_browser.ts";

/** Where the screenshots go. */
export const ARTIFACTS: URL = new URL("../artifacts/", import.meta.url);

/** Open data channels of a page whose RTCPeerConnection is "connected". */
export function connectedPeers(page: Page): Promise<number> {
  return page.evaluate(() => {
    // deno-lint-ignore no-explicit-any
    const demo = (globalThis as any).sigverDemo;
    // deno-lint-ignore no-explicit-any
    return [...demo.state.peers.values()].filter((p: any) =>
      p.pc.connectionState === "connected" && p.channel?.readyState === "open"
    ).length;
  });
}

/** Waits until a page has at least `count` connected peers (see above). */
export async function waitConnected(page: Page, count = 1): Promise<void> {
  await page.waitForFunction(
    (n) => {
      // deno-lint-ignore no-explicit-any
      const demo = (globalThis as any).sigverDemo;
      // deno-lint-ignore no-explicit-any
      return [...demo.state.peers.values()].filter((p: any) =>
        p.pc.connectionState === "connected" && p.channel?.readyState === "open"
      ).length >= n;
    },
    count,
    { timeout: TIMEOUT },
  );
}

/** Waits until the page's membership step is done (its `connected` came). */
export async function waitMember(page: Page): Promise<void> {
  await page.locator("#step-member[data-state=ok]").waitFor({
    timeout: TIMEOUT,
  });
}

/** `from` sends `text`; it shows on `from` and on every page of `to`. */
export async function chat(
  from: Page,
  text: string,
  to: Page[],
): Promise<void> {
  await from.fill("#text", text);
  await from.click("#send");
  for (const page of [from, ...to]) {
    await page.locator("#messages .msg", { hasText: text }).waitFor({
      timeout: TIMEOUT,
    });
  }
}

/**
 * A full-page screenshot in {@linkcode ARTIFACTS} (which must exist), and
 * not a blank one.
 */
export async function screenshot(page: Page, name: string): Promise<void> {
  const path = new URL(name, ARTIFACTS);
  await page.screenshot({ path: path.pathname, fullPage: true });
  assert.ok((await Deno.stat(path)).size > 10_000);
}
