/**
 * Shared helpers for tests that talk to a real sigver server over real
 * sockets: {@linkcode startServer} runs one on a free loopback port,
 * {@linkcode TestPeer} is a small protocol client around a Deno `WebSocket`
 * and {@linkcode waitFor} polls a condition (for server-side state that no
 * message reports). `TestPeer` and `RawSocket` (a WebSocket spoken by hand)
 * live in `dev/`, shared with the fuzzer, and are re-exported here.
 *
 * ```ts ignore
 * await using server = startServer({ heartbeatInterval: 300 });
 * await using peer = await TestPeer.open(peerUrl(server, "/room"));
 * assert.equal(await peer.join(1), true);
 * ```
 *
 * Every wait has a timeout that fails the test with a clear message; the
 * timeouts are generous because tests share a small, busy machine, and no
 * test asserts how long something took.
 *
 * @module
 */

import { serve, type ServeOptions, type SigverServer } from "../serve.ts";
import type { HubStats } from "../lib/hub.ts";
import { WAIT_TIMEOUT } from "../dev/test_peer.ts";

export {
  type CloseInfo,
  type ContentInit,
  TestPeer,
  type TestPeerOptions,
  WAIT_TIMEOUT,
} from "../dev/test_peer.ts";
export { type RawFrame, RawSocket } from "../dev/raw_socket.ts";
export { parseClose } from "../dev/ws_frame.ts";

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
 * Runs a sigver server on `127.0.0.1` and a free port. Use it with
 * `await using`, so that it shuts down (closing every socket) at the end of
 * the test.
 *
 * @param options Server options; `hostname` and `port` default to loopback
 * and 0.
 * @returns The running server.
 */
export function startServer(options: ServeOptions = {}): SigverServer {
  return serve({ hostname: "127.0.0.1", port: 0, ...options });
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
 * Polls `condition` every 10 ms until it holds.
 *
 * @param condition What to wait for.
 * @param what Said in the error when it times out.
 * @param timeout Milliseconds before giving up.
 * @throws {Error} When the condition does not hold in time.
 */
export async function waitFor(
  condition: () => boolean,
  what = "a condition",
  timeout: number = WAIT_TIMEOUT,
): Promise<void> {
  const deadline = performance.now() + timeout;
  while (!condition()) {
    if (performance.now() > deadline) {
      throw new Error(`Timed out after ${timeout} ms waiting for ${what}`);
    }
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
