/**
 * TURN for real: Debian's coturn (`turnserver`) on 127.0.0.1 with
 * `use-auth-secret`, the real server (`server.ts`) handing out its
 * credentials on `/ice-servers`, and headless Chromium pages that may only
 * relay (`iceTransportPolicy: "relay"`): their DataChannel opens through
 * coturn when the secrets match, and never when they don't.
 *
 * What this machine needs, found by trying: Chromium reaches a TURN server
 * on 127.0.0.1 with the usual flags (no `--allow-loopback-in-peer-connection`:
 * that flag is about host candidates, and relay-only pages have none).
 * coturn, though, refuses to relay to loopback peers unless given
 * `--allow-loopback-peers`: without it every CreatePermission gets
 * `403 Forbidden IP` and the pages' ICE fails. `-n` keeps it from reading
 * /etc/turnserver.conf, and its database, pid and log files go to a temp
 * directory.
 *
 * The quota test needs no browser: coturn runs with `--user-quota 2`, and a
 * raw TURN client (`dev/turn_client.ts`) allocates with the credentials of
 * two fetches of one token. coturn counts allocations per username, so the
 * third is refused only if both fetches gave the same username.
 *
 * Run with `deno task test:e2e` (needs `apt-get install -y coturn chromium`).
 */

// Page functions run in Chromium: Deno has no WebRTC types for them.
// deno-lint-ignore-file no-explicit-any

import assert from "node:assert/strict";
import type { Browser, BrowserContext, Page } from "npm:playwright-core@1.65.1";
import { launchChromium, startCli, TIMEOUT, watch } from "./_browser.ts";
import { connectedPeers, waitConnected, waitMember } from "./_demo.ts";
import { CLIENT_JS } from "../../demo/assets.gen.ts";
import { type ChildProcess, freePort, spawn } from "../../dev/process.ts";
import { mintToken } from "../../lib/token.ts";
import { allocate, type Allocation } from "../../dev/turn_client.ts";

const TURN_SECRET = "coturn static-auth-secret for e2e";
const AUTH_SECRET = "sigver auth secret for e2e";

/** coturn on 127.0.0.1 and a free port, stopped by its PID on dispose. */
class Coturn implements AsyncDisposable {
  readonly port: number;
  readonly #dir: string;
  readonly #child: ChildProcess;

  private constructor(port: number, dir: string, child: ChildProcess) {
    this.port = port;
    this.#dir = dir;
    this.#child = child;
  }

  /**
   * Starts coturn and waits until it accepts TCP connections.
   *
   * @param secret Its static-auth-secret.
   * @param more More flags (`--user-quota 2`).
   */
  static async start(secret: string, more: string[] = []): Promise<Coturn> {
    const port = freePort();
    const dir = await Deno.makeTempDir({ prefix: "sigver-coturn-" });
    const child = spawn("turnserver", {
      name: "coturn",
      args: [
        "-n",
        "-v",
        "--no-cli",
        "--no-tls",
        "--no-dtls",
        "--listening-ip",
        "127.0.0.1",
        "--relay-ip",
        "127.0.0.1",
        "--listening-port",
        String(port),
        "--use-auth-secret",
        "--static-auth-secret",
        secret,
        "--realm",
        "sigver.test",
        "--allow-loopback-peers",
        "--log-file",
        `${dir}/turn.log`,
        "--simple-log",
        "--no-stdout-log",
        "--pidfile",
        `${dir}/turn.pid`,
        "--userdb",
        `${dir}/turndb`,
        ...more,
      ],
      stdout: "null",
    });
    const coturn = new Coturn(port, dir, child);
    try {
      await child.waitForPort(port, TIMEOUT);
    } catch (error) {
      await coturn[Symbol.asyncDispose]();
      throw error;
    }
    return coturn;
  }

  /** The TURN URL of this server, over UDP. */
  get url(): string {
    return `turn:127.0.0.1:${this.port}?transport=udp`;
  }

  /** What coturn logged so far. */
  async log(): Promise<string> {
    return await Deno.readTextFile(`${this.#dir}/turn.log`).catch(() => "");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#child.stop();
    await Deno.remove(this.#dir, { recursive: true });
  }
}

/** The ICE candidate types of every selected pair of a page's connections. */
function selectedPairs(
  page: Page,
  which: "demo" | "page",
): Promise<{ local: string; remote: string; address: string }[]> {
  return page.evaluate(async (which) => {
    const g = globalThis as any;
    const pcs: any[] = which === "demo"
      ? [...g.sigverDemo.state.peers.values()].map((p: any) => p.pc)
      : [g.pc];
    const pairs = [];
    for (const pc of pcs) {
      const stats = await pc.getStats();
      for (const report of stats.values()) {
        if (report.type !== "transport" || !report.selectedCandidatePairId) {
          continue;
        }
        const pair = stats.get(report.selectedCandidatePairId);
        const local = stats.get(pair.localCandidateId);
        const remote = stats.get(pair.remoteCandidateId);
        pairs.push({
          local: local.candidateType,
          remote: remote.candidateType,
          address: local.address,
        });
      }
    }
    return pairs;
  }, which);
}

/**
 * Demo pages A and B in a fresh room of `base`, with `query` (`&relay`...):
 * A joins first and is the member, then B opens the room.
 */
async function demoPair(
  browser: Browser,
  base: string,
  query: string,
  errors: string[],
): Promise<{ context: BrowserContext; room: string; a: Page; b: Page }> {
  const context = await browser.newContext();
  const room = `turn-${crypto.randomUUID().slice(0, 8)}`;
  const [a, b] = [await context.newPage(), await context.newPage()];
  watch(a, "A", errors);
  watch(b, "B", errors);
  await a.goto(`${base}/?room=${room}${query}`);
  await waitMember(a);
  await b.goto(`${base}/?room=${room}${query}`);
  return { context, room, a, b };
}

async function demoLog(page: Page): Promise<string> {
  return await page.locator("#log").textContent() ?? "";
}

const E2E = {
  // Playwright keeps its own pipes and timers to the browser process.
  sanitizeOps: false,
  sanitizeResources: false,
};

Deno.test({
  name:
    "demo pages with a token relay through coturn with credentials from /ice-servers",
  ...E2E,
}, async () => {
  await using coturn = await Coturn.start(TURN_SECRET);
  await using server = await startCli(
    "--auth-secret",
    AUTH_SECRET,
    "--turn-secret",
    TURN_SECRET,
    "--turn-url",
    coturn.url,
  );
  const browser = await launchChromium();
  const errors: string[] = [];
  try {
    // The token opens the socket and /ice-servers (same origin: no CORS).
    const token = await mintToken(AUTH_SECRET, { prefix: "turn-" });
    const { context, room, a, b } = await demoPair(
      browser,
      server.base,
      `&relay&token=${token}`,
      errors,
    );
    await Promise.all([waitConnected(a), waitConnected(b)]);
    for (const page of [a, b]) {
      // The page keeps the token off the screen.
      const socket = await page.locator("#step-socket").textContent() ?? "";
      assert.match(socket, new RegExp(`/t/…/${room}`));
      assert.ok(!(await demoLog(page)).includes(token));
      assert.match(
        await demoLog(page),
        new RegExp(
          `ICE servers from the server: ${coturn.url.replace(/[?]/g, "\\?")}`,
        ),
      );
      const pairs = await selectedPairs(page, "demo");
      assert.deepEqual(pairs, [
        { local: "relay", remote: "relay", address: "127.0.0.1" },
      ]);
      assert.doesNotMatch(await demoLog(page), /: 401 /);
    }
    // Chat goes through the relays.
    await a.fill("#text", "through coturn");
    await a.click("#send");
    await b.locator("#messages .msg", { hasText: "through coturn" }).waitFor({
      timeout: TIMEOUT,
    });
    // coturn allocated for the usernames the server handed out.
    const log = await coturn.log();
    assert.match(
      log,
      /user <\d{10,}:[0-9a-f]{16}>: incoming packet ALLOCATE processed, success/,
    );
    await context.close();
    assert.deepEqual(errors, []);
  } finally {
    if (errors.length > 0) console.error(errors.join("\n"));
    await browser.close();
  }
});

/** Serves a blank page and the client bundle: another origin than sigver's. */
function servePage(): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request) =>
      new URL(request.url).pathname === "/client.js"
        ? new Response(CLIENT_JS, {
          headers: { "content-type": "text/javascript" },
        })
        : new Response("<!doctype html><title>relay</title><body>relay", {
          headers: { "content-type": "text/html" },
        }),
  );
}

/**
 * One peer in a page, with the typed client: TURN credentials fetched with
 * the token (cross-origin: CORS, with a preflight for Authorization), the
 * socket opened with it, a relay-only connection. The member (group id 1)
 * answers; the joiner (2) opens the DataChannel and offers.
 */
function relayPeer(
  page: Page,
  options: { base: string; token: string; key: string; member: boolean },
): Promise<{ connected: boolean; iceUrls: string[] }> {
  return page.evaluate(async ({ base, token, key, member }) => {
    const g = globalThis as any;
    const { fetchIceServers, SigverClient } = await import("/client.js");
    const iceServers = await fetchIceServers(base, { token });
    const pc = new g.RTCPeerConnection({
      iceServers,
      iceTransportPolicy: "relay",
    });
    const client = await SigverClient.open(base, key, { token });
    g.pc = pc;
    g.client = client;
    g.received = [];
    let peer = 0;
    const send = (message: unknown) =>
      client.send(peer, JSON.stringify(message));
    pc.onicecandidate = (event: any) => {
      if (event.candidate) send({ candidate: event.candidate.toJSON() });
    };
    const attach = (channel: any) => {
      g.channel = channel;
      channel.onmessage = (event: any) => g.received.push(event.data);
    };
    pc.ondatachannel = (event: any) => attach(event.channel);
    // One message at a time: a candidate waits for the offer before it.
    let chain = Promise.resolve();
    client.addEventListener(
      "content",
      (event: { senderId: number; text(): string }) => {
        chain = chain.then(async () => {
          const message = JSON.parse(event.text());
          if (member) peer = event.senderId;
          if (message.sdp) {
            await pc.setRemoteDescription(message.sdp);
            if (message.sdp.type === "offer") {
              await pc.setLocalDescription(await pc.createAnswer());
              send({ sdp: pc.localDescription });
            }
          } else if (message.candidate) {
            await pc.addIceCandidate(message.candidate);
          }
        });
      },
    );
    const connected = await client.connect(member ? 1 : 2, []);
    if (!member) {
      attach(pc.createDataChannel("relay"));
      await pc.setLocalDescription(await pc.createOffer());
      send({ sdp: pc.localDescription });
    }
    return {
      connected,
      iceUrls: iceServers.flatMap((s: { urls: string[] }) => s.urls),
    };
  }, options);
}

Deno.test({
  name:
    "a page on another origin gets credentials with its token through CORS and relays",
  ...E2E,
}, async () => {
  await using coturn = await Coturn.start(TURN_SECRET);
  await using web = servePage();
  const origin = `http://127.0.0.1:${web.addr.port}`;
  await using server = await startCli(
    "--auth-secret",
    AUTH_SECRET,
    "--allow-origin",
    origin,
    "--turn-secret",
    TURN_SECRET,
    "--turn-url",
    coturn.url,
  );
  const key = `relay-${crypto.randomUUID().slice(0, 8)}`;
  const token = await mintToken(AUTH_SECRET, {
    prefix: "relay-",
    ttl: 300_000,
  });
  const browser = await launchChromium();
  const errors: string[] = [];
  try {
    const context = await browser.newContext();
    const [a, b] = [await context.newPage(), await context.newPage()];
    watch(a, "member", errors);
    watch(b, "joiner", errors);
    await a.goto(`${origin}/`);
    await b.goto(`${origin}/`);
    const base = server.base;
    const member = await relayPeer(a, { base, token, key, member: true });
    assert.deepEqual(member, { connected: true, iceUrls: [coturn.url] });
    const joiner = await relayPeer(b, { base, token, key, member: false });
    assert.deepEqual(joiner, { connected: false, iceUrls: [coturn.url] });
    for (const page of [a, b]) {
      await page.waitForFunction(
        () => (globalThis as any).channel?.readyState === "open",
        undefined,
        { timeout: TIMEOUT },
      );
      assert.deepEqual(await selectedPairs(page, "page"), [
        { local: "relay", remote: "relay", address: "127.0.0.1" },
      ]);
    }
    await b.evaluate(() => (globalThis as any).channel.send("hello via TURN"));
    await a.waitForFunction(
      () => (globalThis as any).received.includes("hello via TURN"),
      undefined,
      { timeout: TIMEOUT },
    );
    // Without the token the same page gets 401, readable through CORS.
    const status = await a.evaluate(async (base) => {
      const { fetchIceServers } = await import("/client.js");
      return await fetchIceServers(base).then(
        () => 200,
        (error: { status?: number }) => error.status,
      );
    }, base);
    assert.equal(status, 401);
    await context.close();
    // The one error: Chromium reports the 401 on the console.
    assert.deepEqual(errors, [
      "member: Failed to load resource: the server responded with a status of 401 (Unauthorized)",
    ]);
  } finally {
    await browser.close();
  }
});

Deno.test({
  name: "demo pages with credentials for another secret never connect",
  ...E2E,
}, async () => {
  await using coturn = await Coturn.start(TURN_SECRET);
  await using server = await startCli(
    "--turn-secret",
    "not coturn's secret",
    "--turn-url",
    coturn.url,
    // No token on this server: it hands credentials to anyone, on purpose.
    "--ice-servers-public",
  );
  const browser = await launchChromium();
  const errors: string[] = [];
  try {
    const { context, a, b } = await demoPair(
      browser,
      server.base,
      "&relay",
      errors,
    );
    // coturn refuses the credentials: both pages say so in their log.
    for (const page of [a, b]) {
      await page.locator("#log li", { hasText: ": 401 " }).first().waitFor({
        timeout: TIMEOUT,
      });
    }
    // And no connection can come up. Rather than watch for a while, wait
    // for the state that rules one out: every peer connection of both pages
    // has finished gathering (coturn refused each allocation) with no local
    // candidate. Relay-only pages have no host candidates, so ICE then has
    // nothing to pair, on either side, and never will.
    for (const page of [a, b]) {
      await page.waitForFunction(
        () => {
          const demo = (globalThis as any).sigverDemo;
          const pcs = [...demo.state.peers.values()].map((p: any) => p.pc);
          return pcs.length > 0 &&
            pcs.every((pc: any) =>
              pc.iceGatheringState === "complete" &&
              !/^a=candidate/m.test(pc.localDescription?.sdp ?? "")
            );
        },
        undefined,
        { timeout: TIMEOUT },
      );
    }
    assert.equal(await connectedPeers(a), 0);
    assert.equal(await connectedPeers(b), 0);
    assert.deepEqual(await selectedPairs(b, "demo"), []);
    assert.match(
      await coturn.log(),
      /check_stun_auth: Cannot find credentials of user <\d+:[0-9a-f]{16}>/,
    );
    assert.doesNotMatch(await coturn.log(), /ALLOCATE processed, success/);
    await context.close();
    assert.deepEqual(errors, []);
  } finally {
    if (errors.length > 0) console.error(errors.join("\n"));
    await browser.close();
  }
});

/** The TURN username and password of one `GET /ice-servers` with a token. */
async function credentials(
  base: string,
  token: string,
): Promise<{ username: string; credential: string }> {
  const response = await fetch(`${base}/ice-servers`, {
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(response.status, 200);
  const { username, credential } = (await response.json()).iceServers[0];
  return { username, credential };
}

Deno.test("coturn's user-quota holds one token back across two fetches of its credentials", async () => {
  await using coturn = await Coturn.start(TURN_SECRET, ["--user-quota", "2"]);
  await using server = await startCli(
    "--auth-secret",
    AUTH_SECRET,
    "--turn-secret",
    TURN_SECRET,
    "--turn-url",
    coturn.url,
  );
  const token = await mintToken(AUTH_SECRET, { prefix: "a/" });
  const other = await mintToken(AUTH_SECRET, { prefix: "b/" });
  // Two fetches a moment apart share a minute, unless they straddle the
  // turn of one: then the next two surely do.
  let first = await credentials(server.base, token);
  let second = await credentials(server.base, token);
  if (first.username !== second.username) {
    first = await credentials(server.base, token);
    second = await credentials(server.base, token);
  }
  assert.equal(second.username, first.username);
  assert.match(first.username, /^\d+:[0-9a-f]{16}$/);
  assert.ok(!first.username.includes(token.split(".")[3]));
  const port = coturn.port;
  const held: Allocation[] = [];
  try {
    // Two allocations with the first fetch's credentials: the quota is full.
    for (let i = 0; i < 2; i++) {
      held.push(await allocate({ port, ...first }));
      assert.equal(held[i].ok, true, `allocation ${i + 1}: ${held[i].reason}`);
    }
    // The second fetch's credentials count against the same quota.
    held.push(await allocate({ port, ...second }));
    assert.deepEqual(
      { ok: held[2].ok, code: held[2].code },
      { ok: false, code: 486 },
      held[2].reason,
    );
    // Another token: another username, a quota of its own.
    const theirs = await credentials(server.base, other);
    assert.notEqual(theirs.username, first.username);
    held.push(await allocate({ port, ...theirs }));
    assert.equal(held[3].ok, true, held[3].reason);
  } finally {
    for (const allocation of held) await allocation[Symbol.asyncDispose]();
  }
  const log = await coturn.log();
  assert.match(log, /ALLOCATE processed, success/);
});
