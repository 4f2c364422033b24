/**
 * Shared helpers for tests that talk to a real sigver server over real
 * sockets: {@linkcode startServer} runs one on a free loopback port with a
 * {@linkcode ManualClock}, {@linkcode TestPeer} is a small protocol client
 * around a Deno `WebSocket`, and {@linkcode closedBy} drives the server's
 * clock until the server has closed a socket. `TestPeer` and `RawSocket` (a
 * WebSocket spoken by hand) live in `dev/`, shared with the fuzzer, and are
 * re-exported here.
 *
 * ```ts ignore
 * await using server = startServer();
 * await using peer = await TestPeer.open(peerUrl(server, "/room"));
 * peer.sendRaw("text");
 * assert.equal((await closedBy(server, peer)).code, 4743);
 * ```
 *
 * Server time moves only when a test moves it: every timeout the server
 * keeps (heartbeats, rate limits, upgrade timeouts, and a close, which waits
 * until its socket has been quiet for a scheduler tick) runs off the clock's
 * tick. A test either advances the clock by exactly the time it means
 * (`server.clock.advance(15_000)`: three heartbeat periods) or drives it a
 * tick at a time until something happened ({@linkcode closedBy},
 * {@linkcode driven}). No test sleeps for a server timeout.
 *
 * Every wait for real I/O has a timeout that fails the test with a clear
 * message; the timeouts are generous because tests share a small, busy
 * machine, and no test asserts how long something took.
 *
 * @module
 */

import { hubOf } from "../deno/handler.ts";
import assert from "node:assert/strict";
import { serve, type ServeOptions, type SigverServer } from "../deno/serve.ts";
import { type Clock, ManualClock } from "../lib/clock.ts";
import { DeadlineError } from "../lib/deadline.ts";
import type { HubStats } from "../lib/netflux/hub.ts";
import { WAIT_TIMEOUT } from "../dev/test_peer.ts";

export {
  type CloseInfo,
  type ContentInit,
  TestPeer,
  type TestPeerOptions,
  WAIT_TIMEOUT,
} from "../dev/test_peer.ts";
export { type RawFrame, RawSocket } from "../dev/raw_socket.ts";
export { parseClose } from "../dev/bad_frames.ts";

/** The stats of a hub that holds nothing: what every leak check expects. */
export const EMPTY_STATS: HubStats = {
  peers: 0,
  groups: 0,
  members: 0,
  ids: 0,
  bindings: 0,
  scheduled: 0,
};

/**
 * Milliseconds between two scheduler ticks with the default heartbeat
 * (5000 ms over 50 wheel slots): the step {@linkcode drive} moves by.
 */
export const TICK_MS = 100;

/** A test server and the clock it runs on. */
export type TestServer<C extends Clock = ManualClock> = SigverServer & {
  /** The server's clock: a `ManualClock` unless the test passed another. */
  readonly clock: C;
};

/** Anything whose time a test drives, such as a {@linkcode TestServer}. */
export interface Driven {
  /** The clock to drive. */
  readonly clock: ManualClock;
}

/**
 * Runs a sigver server on `127.0.0.1` and a free port, on a fresh
 * {@linkcode ManualClock} unless `options.clock` gives another. Use it with
 * `await using`, so that it shuts down (closing every socket) at the end of
 * the test.
 *
 * @param options Server options; `hostname` and `port` default to loopback
 * and 0.
 * @returns The running server, with its clock.
 */
export function startServer<C extends Clock = ManualClock>(
  options: ServeOptions & { clock?: C } = {},
): TestServer<C> {
  const clock = options.clock ?? (new ManualClock() as Clock as C);
  const server = serve({ hostname: "127.0.0.1", port: 0, ...options, clock });
  return Object.assign(server, { clock });
}

/**
 * The `ws://` URL of a path (with its query) on a test server.
 *
 * @param server The server.
 * @param path The request target, starting with `/` (`/room?favored`).
 * @returns The URL.
 */
export function peerUrl(server: SigverServer, path: string): string {
  return `ws://127.0.0.1:${server.addr.port}${path}`;
}

/**
 * The `http://` URL of a path on a test server.
 *
 * @param server The server.
 * @param path The request target, starting with `/`.
 * @returns The URL.
 */
export function httpUrl(server: SigverServer, path: string): string {
  return `http://127.0.0.1:${server.addr.port}${path}`;
}

/**
 * Lets the event loop run once: a macrotask, not a microtask, so that
 * socket events get their turn.
 */
export function turn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 1));
}

/**
 * Polls `condition` every 10 ms until it holds: for server-side state that
 * no message or event reports.
 *
 * @param condition What to wait for; a promise is awaited (a probe).
 * @param what Said in the error when it times out.
 * @param timeout Milliseconds before giving up.
 * @throws {DeadlineError} When the condition does not hold in time.
 */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  what = "a condition",
  timeout: number = WAIT_TIMEOUT,
): Promise<void> {
  const end = performance.now() + timeout;
  while (!await condition()) {
    if (performance.now() > end) throw new DeadlineError(timeout, what);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Waits until the server holds no socket: every server-side `close` event
 * has fired. Await it before reading state that closes change.
 *
 * @param server The server.
 */
export function settled(server: SigverServer): Promise<void> {
  return waitFor(
    () => server.handler.connections === 0,
    "the server to release every socket",
  );
}

/**
 * Waits until the server has opened `n` peers (its hub holds exactly `n`).
 * A client's `open` event can come before the server's: advance the clock
 * for a peer's heartbeats only once the server has it.
 *
 * @param server The server.
 * @param n How many peers.
 */
export function peersOpen(server: SigverServer, n: number): Promise<void> {
  return waitFor(
    () => hubOf(server.handler).size === n,
    `the server to hold ${n} open peer(s)`,
  );
}

interface _Waiter {
  condition: () => boolean;
  what: string;
  end: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/** The waiters of each clock being driven: one drive loop per clock. */
const _drives = new Map<ManualClock, Set<_Waiter>>();

/**
 * Advances `clock` one scheduler tick ({@linkcode TICK_MS}) at a time,
 * letting socket I/O run after each tick, until `condition` holds. Drives
 * of one clock share one loop, so that concurrent waits do not make its
 * time run faster. Every tick runs the server's scheduler: a drive also
 * sends heartbeats (one per peer every 50 ticks) and, after 150 ticks,
 * closes a silent peer; tests about heartbeats advance the clock by exact
 * amounts instead.
 *
 * @param clock The server's clock.
 * @param condition What to wait for.
 * @param what Said in the error when it times out.
 * @throws {DeadlineError} When the condition does not hold within
 * `WAIT_TIMEOUT` of real time.
 */
export function drive(
  clock: ManualClock,
  condition: () => boolean,
  what = "a condition",
): Promise<void> {
  if (condition()) return Promise.resolve();
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  let waiters = _drives.get(clock);
  const start = waiters === undefined;
  waiters ??= new Set();
  waiters.add({
    condition,
    what,
    end: performance.now() + WAIT_TIMEOUT,
    resolve,
    reject,
  });
  if (start) {
    _drives.set(clock, waiters);
    void _driveLoop(clock, waiters);
  }
  return promise;
}

async function _driveLoop(
  clock: ManualClock,
  waiters: Set<_Waiter>,
): Promise<void> {
  try {
    while (waiters.size > 0) {
      clock.advance(TICK_MS);
      await turn();
      const now = performance.now();
      for (const waiter of waiters) {
        let done: boolean;
        try {
          done = waiter.condition();
        } catch (error) {
          waiters.delete(waiter);
          waiter.reject(error);
          continue;
        }
        if (done) {
          waiters.delete(waiter);
          waiter.resolve();
        } else if (now > waiter.end) {
          waiters.delete(waiter);
          waiter.reject(new DeadlineError(WAIT_TIMEOUT, waiter.what));
        }
      }
    }
  } finally {
    _drives.delete(clock);
  }
}

/**
 * Drives the server's clock (see {@linkcode drive}) until `promise`
 * settles, and returns its value.
 *
 * @param server The server (or anything with its clock).
 * @param promise What to wait for.
 * @param what Said in the error when it times out.
 * @returns The promise's value.
 * @throws {DeadlineError} When it does not settle within `WAIT_TIMEOUT`.
 */
export async function driven<T>(
  server: Driven,
  promise: Promise<T>,
  what = "a promise",
): Promise<T> {
  let done = false;
  const mark = () => {
    done = true;
  };
  promise.then(mark, mark);
  await drive(server.clock, () => done, what);
  return await promise;
}

/**
 * Drives the server's clock until a socket closed, and returns how: for
 * closes the server starts, which go out only on a scheduler tick once the
 * socket is quiet.
 *
 * @param server The server (or anything with its clock).
 * @param peer A `TestPeer`, `SigverClient`, or anything with `closed`.
 * @returns What `peer.closed` resolves with.
 * @throws {DeadlineError} When the socket does not close within
 * `WAIT_TIMEOUT`.
 */
export function closedBy<T>(
  server: Driven,
  peer: { readonly closed: Promise<T> },
): Promise<T> {
  return driven(server, peer.closed, "the server to close the socket");
}

/** What {@linkcode bindTo} needs of a peer: a `TestPeer`, a fallback peer. */
export interface SignalingPeer {
  /** Sends `connect` and returns the `connected` reply. */
  join(id: number, members?: number[]): Promise<boolean>;
  /** Sends a `content` message. */
  sendContent(content: { data: string }): void | Promise<void>;
  /** The next message, which must be a `content`. */
  nextContent(): Promise<
    { senderId: number; recipientId: number; data: string }
  >;
}

/**
 * Binds a fresh joiner to the only member it can reach: the joiner sends
 * `connect` listing no one, then a hello the member must receive.
 *
 * @param joiner The peer that joins.
 * @param member The member it must be bound to.
 * @param id The joiner's group id.
 * @param hello What it says first.
 * @returns The joiner's signaling id, as the member sees it.
 */
export async function bindTo(
  joiner: SignalingPeer,
  member: SignalingPeer,
  id: number,
  hello = `offer from ${id}`,
): Promise<number> {
  assert.equal(await joiner.join(id), false, "the joiner is bound");
  await joiner.sendContent({ data: hello });
  const got = await member.nextContent();
  assert.equal(got.data, hello);
  assert.equal(got.recipientId, 0);
  assert.ok(got.senderId >= 1 && got.senderId <= 0x7fffffff);
  return got.senderId;
}

/** A `content` as `nextContent()` returns it: its data a string. */
export interface TextContent {
  senderId: number;
  recipientId: number;
  lastData: boolean;
  data: string;
}

/**
 * What a member receives from its joiner `s` (`nextContent()`); with no
 * data, the notice that the joiner is gone.
 *
 * @param s The joiner's signaling id.
 * @param data The payload.
 * @returns The content.
 */
export function fromJoiner(s: number, data: string): TextContent {
  return { senderId: s, recipientId: 0, lastData: false, data };
}

/**
 * What joiner `s` receives from its member (`nextContent()`); with no data,
 * the notice that the member is gone.
 *
 * @param s The joiner's signaling id.
 * @param data The payload.
 * @returns The content.
 */
export function toJoiner(s: number, data: string): TextContent {
  return { senderId: 0, recipientId: s, lastData: false, data };
}

/** Options of {@linkcode upgradeStripper}. */
export interface UpgradeStripperOptions {
  /**
   * Answer upgrades only once disposed of: a WebSocket that never opens.
   * @default {false}
   */
  hold?: boolean;
}

/**
 * A proxy on a free loopback port in front of `target` that refuses every
 * WebSocket upgrade (400), as a middlebox that strips them does, and
 * forwards every other request with its body streamed both ways: what
 * sends a client to the fallback.
 *
 * @param target The `http://` base URL of the server behind it.
 * @param options Whether refusals wait.
 * @returns The proxy's port and base URLs; disposing of it stops it.
 */
export function upgradeStripper(
  target: string,
  options: UpgradeStripperOptions = {},
): AsyncDisposable & { port: number; http: string; ws: string } {
  const released = Promise.withResolvers<void>();
  const proxy = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: () => {},
  }, async (request) => {
    if (request.headers.get("upgrade") !== null) {
      if (options.hold) await released.promise;
      return new Response("Bad Request: no WebSocket through here\n", {
        status: 400,
      });
    }
    const { pathname, search } = new URL(request.url);
    const headers = new Headers(request.headers);
    headers.delete("host");
    const upstream = await fetch(`${target}${pathname}${search}`, {
      method: request.method,
      headers,
      body: request.body,
    });
    // A client that goes away cancels the body, and so the upstream fetch.
    return new Response(upstream.body, upstream);
  });
  const port = proxy.addr.port;
  return {
    port,
    http: `http://127.0.0.1:${port}`,
    ws: `ws://127.0.0.1:${port}`,
    [Symbol.asyncDispose]: async () => {
      released.resolve();
      await proxy.shutdown();
    },
  };
}

/**
 * The headers of a WebSocket upgrade request (with a fixed key), for
 * upgrades spoken with `fetch`: what a refusal answers shows that way.
 */
export const UPGRADE_HEADERS: Readonly<Record<string, string>> = {
  upgrade: "websocket",
  connection: "Upgrade",
  "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
  "sec-websocket-version": "13",
};

/**
 * A WebSocket upgrade, spoken with `fetch`, that the server must refuse.
 *
 * @param server The server.
 * @param path The request target.
 * @param headers More request headers (`Origin`, `X-Forwarded-For`...).
 * @returns The refusal's HTTP status and text.
 */
export async function refusedUpgrade(
  server: SigverServer,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  const response = await fetch(httpUrl(server, path), {
    headers: { ...UPGRADE_HEADERS, ...headers },
  });
  const body = await response.text();
  assert.notEqual(response.status, 101, "the upgrade was accepted");
  return { status: response.status, body };
}
