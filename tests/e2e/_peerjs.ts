/**
 * peerjs 1.5.5 (npm, pinned in `dev/deno.lock`) in Chromium, for
 * `peerjs.e2e.ts`: its own browser build (`dist/peerjs.min.js`, which sets
 * `window.Peer`), a page that loads it, and one `Peer` per page, **each page
 * in a browser context of its own**.
 *
 * ICE stays on loopback: no STUN server is given (peerjs's default config
 * names Google's), Chromium gathers loopback candidates
 * (`--allow-loopback-in-peer-connection`, and camera and microphone
 * granted: without them Chromium gathers on the default route's interface
 * only, behind mDNS names), and each page signals only its
 * 127.0.0.1 candidates; {@linkcode selectedAddresses} reads the pairs that
 * were chosen.
 *
 * @module
 */

import PEERJS from "npm:peerjs@1.5.5/dist/peerjs.min.js" with { type: "text" };
import { type Browser, chromium, type Page } from "npm:playwright-core@1.65.1";
import { TIMEOUT, watch } from "./_browser.ts";
import { run } from "../../dev/process.ts";

const PAGE = `<!doctype html><meta charset="utf-8"><title>peerjs</title>
<script src="/peerjs.js"></script><script src="/app.js"></script><body>peerjs</body>`;

/**
 * What each page runs around its `Peer`: `start(id, options)` resolves with
 * the id on "open" (rejects with the error's type before it), every error
 * type lands in `errors`, and every DataConnection's data in `inbox` as
 * `{peer, label, data}` (bytes as `{bytes: [...]}`). An incoming connection
 * answers each message: an object with `{echo: it}`, bytes reversed.
 */
const APP = `(() => {
  const g = globalThis;
  g.inbox = [];
  g.errors = [];
  g.conns = [];
  const show = (d) => d instanceof ArrayBuffer
    ? { bytes: [...new Uint8Array(d)] }
    : ArrayBuffer.isView(d)
    ? { bytes: [...new Uint8Array(d.buffer, d.byteOffset, d.byteLength)] }
    : d;
  g.wire = (conn, echo) => {
    g.conns.push(conn);
    conn.on("data", (d) => {
      g.inbox.push({ peer: conn.peer, label: conn.serialization, data: show(d) });
      if (!echo) return;
      const v = show(d);
      conn.send(v && v.bytes ? new Uint8Array(v.bytes.reverse()) : { echo: d });
    });
  };
  g.start = (id, options) => new Promise((resolve, reject) => {
    setTimeout(() => reject("timeout: no open"), 20000);
    const peer = g.peer = id ? new Peer(id, options) : new Peer(options);
    peer.on("connection", (conn) => g.wire(conn, true));
    peer.on("error", (e) => { g.errors.push(e.type); reject(e.type); });
    peer.on("open", (id) => resolve(id));
  });
  g.dial = (id, serialization) => new Promise((resolve, reject) => {
    setTimeout(() => reject(new Error("timeout: the connection did not open")), 20000);
    const conn = g.peer.connect(id, { serialization });
    g.wire(conn, false);
    conn.on("open", () => resolve(conn.connectionId));
  });
})();`;

/**
 * Keeps a page's ICE on 127.0.0.1: candidates on other interfaces (and the
 * mDNS names that hide them) are never handed to peerjs, so never signaled.
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

/** Where a page's `Peer` finds the server (PeerJS's own options). */
export interface ServerOptions {
  host: string;
  port: number;
  /** `/peerjs`, or `/t/<token>/peerjs`. */
  path: string;
  key?: string;
}

/** Chromium and a server of the peerjs page; disposing of it closes both. */
export class PeerjsPages implements AsyncDisposable {
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

  /** Serves the page and launches Chromium. */
  static async launch(): Promise<PeerjsPages> {
    const web = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      (r) => {
        const path = new URL(r.url).pathname;
        const js = path === "/peerjs.js"
          ? PEERJS
          : path === "/app.js"
          ? APP
          : undefined;
        return js === undefined
          ? new Response(PAGE, { headers: { "content-type": "text/html" } })
          : new Response(js, {
            headers: { "content-type": "text/javascript" },
          });
      },
    );
    try {
      const { stdout } = await run("sh", {
        args: ["-c", "command -v chromium"],
      });
      const browser = await chromium.launch({
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
        ],
      });
      return new PeerjsPages(web, browser);
    } catch (error) {
      await web.shutdown();
      throw error;
    }
  }

  /**
   * A page of its own context, with the app loaded but no `Peer` yet.
   *
   * @param name For error reports.
   * @returns The page.
   */
  async page(name: string): Promise<Page> {
    const context = await this.browser.newContext({
      permissions: ["camera", "microphone"],
    });
    const page = await context.newPage();
    watch(page, name, this.errors);
    await page.addInitScript({ content: LOOPBACK_ONLY });
    await page.goto(this.base);
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
 * Starts the page's `Peer`: with `id`, or with one the server hands out.
 *
 * @returns The id on "open", or the error type it failed with.
 */
export function start(
  page: Page,
  server: ServerOptions,
  id?: string,
): Promise<{ id: string } | { error: string }> {
  return page.evaluate(async ([server, id]) => {
    // deno-lint-ignore no-explicit-any
    const g = globalThis as any;
    try {
      const options = { ...server, secure: false, config: { iceServers: [] } };
      return { id: await g.start(id, options) };
    } catch (type) {
      return { error: String(type) };
    }
  }, [server, id ?? null] as const);
}

/**
 * Opens a DataConnection from the page to `id` and waits for its open.
 *
 * @param serialization `json`, or `binary` (peerjs's default).
 */
export async function dial(
  page: Page,
  id: string,
  serialization: "json" | "binary",
): Promise<void> {
  await page.evaluate(
    ([id, serialization]) =>
      // deno-lint-ignore no-explicit-any
      (globalThis as any).dial(id, serialization),
    [id, serialization] as const,
  );
}

/**
 * Sends on the page's `index`-th connection: bytes when `bytes` is given.
 */
export async function send(
  page: Page,
  index: number,
  data: unknown,
  bytes?: number[],
): Promise<void> {
  await page.evaluate(([index, data, bytes]) => {
    // deno-lint-ignore no-explicit-any
    const conn = (globalThis as any).conns[index];
    conn.send(bytes ? new Uint8Array(bytes) : data);
  }, [index, data, bytes ?? null] as const);
}

/** Waits until the page's inbox holds `n` messages, and returns it. */
export async function inbox(
  page: Page,
  n: number,
): Promise<{ peer: string; label: string; data: unknown }[]> {
  await page.waitForFunction(
    // deno-lint-ignore no-explicit-any
    (n) => (globalThis as any).inbox.length >= n,
    n,
    { timeout: TIMEOUT },
  );
  // deno-lint-ignore no-explicit-any
  return await page.evaluate(() => (globalThis as any).inbox);
}

/** Waits until the page's `Peer` reported the error type `type`. */
export async function errorSeen(page: Page, type: string): Promise<void> {
  await page.waitForFunction(
    // deno-lint-ignore no-explicit-any
    (type) => (globalThis as any).errors.includes(type),
    type,
    { timeout: TIMEOUT },
  );
}

/**
 * The local and remote addresses of the selected candidate pairs of every
 * DataConnection of a page, as `local>remote`.
 */
export function selectedAddresses(page: Page): Promise<string[]> {
  return page.evaluate(async () => {
    // deno-lint-ignore no-explicit-any
    const g = globalThis as any;
    const addresses: string[] = [];
    for (const conn of g.conns) {
      const stats = await conn.peerConnection.getStats();
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
 * The `Peer` options for a server at `base` (`http://host:port`).
 *
 * @param path `/peerjs`, or `/t/<token>/peerjs`.
 */
export function serverOf(base: string, path: string): ServerOptions {
  const url = new URL(base);
  return { host: url.hostname, port: Number(url.port), path };
}

/**
 * Asserts the page has `count` selected candidate pairs, each of them
 * between this host's addresses with 127.0.0.1 at one end: only 127.0.0.1
 * candidates are signaled, and the side that did not signal one may pair
 * its own socket on another interface with it, or see a peer-reflexive
 * remote, whose address Chromium hides as "".
 */
export async function assertLoopbackPairs(
  page: Page,
  count: number,
): Promise<void> {
  const host = new Set(Deno.networkInterfaces().map((i) => i.address));
  host.add("");
  const pairs = await selectedAddresses(page);
  if (pairs.length !== count) {
    throw new Error(`Expected ${count} selected pairs, got ${pairs}`);
  }
  for (const pair of pairs) {
    const [local, remote] = pair.split(">");
    if (local !== "127.0.0.1" && remote !== "127.0.0.1") {
      throw new Error(`Neither end on 127.0.0.1: ${pair}`);
    }
    if (!host.has(local) || !host.has(remote)) {
      throw new Error(`An end not on this host: ${pair}`);
    }
  }
}
