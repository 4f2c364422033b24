/**
 * y-webrtc 10.3.0 and yjs (npm, pinned in `dev/deno.lock`) in Chromium, for
 * `ywebrtc.e2e.ts` and `ywebrtc_cluster.e2e.ts`: their browser build
 * (`deno bundle` of `dev/ywebrtc_browser.ts`), a page that loads it, and
 * pages that each edit one Y.Doc through a `WebrtcProvider`, **each in a browser context of its
 * own**: pages of one context would sync over BroadcastChannel with no
 * signaling server at all.
 *
 * ICE stays on this host and reaches peers on loopback: no STUN server is
 * given (simple-peer's default config names Google's and Twilio's),
 * Chromium gathers loopback candidates (`--allow-loopback-in-peer-connection`,
 * and camera and microphone granted: without them Chromium gathers on the
 * default route's interface only, behind mDNS names), and each page signals
 * only its 127.0.0.1 candidates; {@linkcode selectedAddresses} reads the
 * pairs that were chosen, and {@linkcode assertLoopback} checks them.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Browser, chromium, type Page } from "npm:playwright-core@1.65.1";
import { TIMEOUT, watch } from "./_browser.ts";
import { run } from "../../dev/process.ts";

const PAGE = `<!doctype html><meta charset="utf-8"><title>y-webrtc</title>
<script src="/ywebrtc.js"></script><body>y-webrtc</body>`;

/**
 * Keeps a page's ICE on 127.0.0.1: candidates on other interfaces (and the
 * mDNS names that hide them) are never handed to y-webrtc, so never
 * signaled.
 */
const LOOPBACK_ONLY = `(() => {
  const Native = globalThis.RTCPeerConnection;
  globalThis.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("icecandidate", (event) => {
        const c = event.candidate;
        if (c && c.candidate && c.address !== "127.0.0.1") {
          event.stopImmediatePropagation();
        }
      });
    }
    set onicecandidate(listener) {
      this.addEventListener("icecandidate", listener);
    }
  };
})();`;

let _bundle: Promise<string> | undefined;

/**
 * y-webrtc and yjs bundled for browsers, once per process.
 *
 * @returns The JavaScript.
 */
export function ywebrtcBundle(): Promise<string> {
  return _bundle ??= (async () => {
    const root = new URL("../../", import.meta.url);
    const { success, stdout, stderr } = await run(Deno.execPath(), {
      args: [
        "bundle",
        "--quiet",
        "--platform",
        "browser",
        "--lock=dev/deno.lock",
        "dev/ywebrtc_browser.ts",
      ],
      cwd: decodeURIComponent(root.pathname),
    });
    if (!success) throw new Error(`Cannot bundle y-webrtc: ${stderr}`);
    return stdout;
  })();
}

/** What a page's provider is given. */
export interface ProviderInit {
  /** The signaling URL (`ws://host/y-webrtc`, or with a token). */
  signaling: string;
  /** The room. */
  room: string;
  /** The room's password, if any. */
  password?: string;
}

/**
 * Chromium and a server of the y-webrtc page; disposing of it closes both.
 */
export class YPages implements AsyncDisposable {
  /** The browser. */
  readonly browser: Browser;
  /** The page's URL. */
  readonly base: string;
  /** Page and console errors. */
  readonly errors: string[] = [];
  readonly #web: Deno.HttpServer<Deno.NetAddr>;

  private constructor(web: Deno.HttpServer<Deno.NetAddr>, browser: Browser) {
    this.#web = web;
    this.browser = browser;
    this.base = `http://127.0.0.1:${web.addr.port}/`;
  }

  /** Bundles the client, serves the page and launches Chromium. */
  static async launch(): Promise<YPages> {
    const bundle = await ywebrtcBundle();
    const web = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      (r) =>
        new URL(r.url).pathname === "/ywebrtc.js"
          ? new Response(bundle, {
            headers: { "content-type": "text/javascript" },
          })
          : new Response(PAGE, { headers: { "content-type": "text/html" } }),
    );
    try {
      const browser = await chromium.launch(await _launchOptions());
      return new YPages(web, browser);
    } catch (error) {
      await web.shutdown();
      throw error;
    }
  }

  /**
   * A page in a browser context of its own, its provider connected.
   *
   * @param name For error reports.
   * @param init The provider's signaling URL, room and password.
   * @returns The page.
   */
  async open(name: string, init: ProviderInit): Promise<Page> {
    const context = await this.browser.newContext({
      permissions: ["camera", "microphone"],
    });
    const page = await context.newPage();
    watch(page, name, this.errors);
    await page.addInitScript({ content: LOOPBACK_ONLY });
    await page.goto(this.base);
    await page.evaluate((init) => {
      // deno-lint-ignore no-explicit-any
      const g = globalThis as any;
      g.doc = new g.Y.Doc();
      g.text = g.doc.getText("shared");
      g.provider = new g.WebrtcProvider(init.room, g.doc, {
        signaling: [init.signaling],
        password: init.password ?? null,
        peerOpts: { config: { iceServers: [] } },
      });
    }, init);
    return page;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.browser.close();
    } finally {
      await this.#web.shutdown();
    }
  }
}

/**
 * Debian's Chromium (or `CHROMIUM`), headless with `_browser.ts`'s flags,
 * and loopback ICE candidates allowed.
 */
async function _launchOptions() {
  const { stdout } = await run("sh", { args: ["-c", "command -v chromium"] });
  return {
    executablePath: Deno.env.get("CHROMIUM") || stdout.trim(),
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--allow-loopback-in-peer-connection",
      "--use-fake-device-for-media-stream",
      "--use-fake-ui-for-media-stream",
      "--disable-features=WebRtcHideLocalIpsWithMdns",
    ],
  };
}

/**
 * Appends a marker to the page's shared text.
 *
 * @param page The page.
 * @param marker What to write.
 */
export async function write(page: Page, marker: string): Promise<void> {
  await page.evaluate((marker) => {
    // deno-lint-ignore no-explicit-any
    const text = (globalThis as any).text;
    text.insert(text.length, marker);
  }, marker);
}

/**
 * Waits until the page's shared text holds every marker.
 *
 * @param page The page.
 * @param markers The markers.
 */
export async function waitForMarkers(
  page: Page,
  markers: string[],
): Promise<void> {
  await page.waitForFunction(
    (markers) => {
      const text = (globalThis as unknown as { text: { toString(): string } })
        .text.toString();
      return markers.every((m) => text.includes(m));
    },
    markers,
    { timeout: TIMEOUT },
  );
}

/**
 * The local addresses of the selected candidate pairs of a page's
 * WebRTC connections (simple-peer's `_pc`).
 *
 * @param page The page.
 * @returns One address per connected peer.
 */
export function selectedAddresses(page: Page): Promise<string[]> {
  return page.evaluate(async () => {
    // deno-lint-ignore no-explicit-any
    const g = globalThis as any;
    const addresses: string[] = [];
    for (const conn of g.provider.room.webrtcConns.values()) {
      const stats = await conn.peer._pc.getStats();
      for (const report of stats.values()) {
        if (report.type !== "transport" || !report.selectedCandidatePairId) {
          continue;
        }
        const pair = stats.get(report.selectedCandidatePairId);
        addresses.push(
          `${stats.get(pair.localCandidateId).address}>${
            stats.get(pair.remoteCandidateId).address
          }`,
        );
      }
    }
    return addresses;
  });
}

/**
 * A room name of its own for a test, under the `yjs-` prefix that the
 * token tests scope.
 *
 * @returns The room.
 */
export function uniqueRoom(): string {
  return `yjs-${crypto.randomUUID().slice(0, 8)}`;
}

/**
 * Every page writes its marker; every page ends up with all of them, and
 * with the same text.
 *
 * @param pages The pages, their providers in one room.
 */
export async function assertEditTogether(pages: Page[]): Promise<void> {
  const markers = pages.map((_, i) => `<from page ${i}>`);
  for (const [i, page] of pages.entries()) await write(page, markers[i]);
  for (const page of pages) await waitForMarkers(page, markers);
  const texts = await Promise.all(
    pages.map((page) =>
      // deno-lint-ignore no-explicit-any
      page.evaluate(() => (globalThis as any).text.toString())
    ),
  );
  for (const text of texts) assert.equal(text, texts[0]);
}

/**
 * Each page has one WebRTC connection per other page, over this host: the
 * only candidates signaled are 127.0.0.1 ones, so every selected pair has
 * 127.0.0.1 on one side at least; the other side may be another address of
 * this host (a local socket, which the kernel routes over loopback all the
 * same) or a peer-reflexive candidate, whose address Chromium hides.
 *
 * @param pages The pages, connected to one another.
 */
export async function assertLoopback(pages: Page[]): Promise<void> {
  const host = new Set(Deno.networkInterfaces().map((i) => i.address));
  host.add("");
  for (const page of pages) {
    const pairs = await selectedAddresses(page);
    assert.equal(pairs.length, pages.length - 1, pairs.join(" "));
    for (const pair of pairs) {
      const [local, remote] = pair.split(">");
      assert.ok(local === "127.0.0.1" || remote === "127.0.0.1", pair);
      assert.ok(host.has(local) && host.has(remote), pair);
    }
  }
}
