/**
 * sigver for Deno: one WebRTC signaling server for the main browser P2P
 * stacks, with limits, access tokens, TURN credentials and a cluster on
 * Redis for all of them:
 *
 * - Netflux 4.x clients (wire-compatible with the original Node.js sigver):
 *   peers open a WebSocket to `ws[s]://host:port/<key>`, meet in the group
 *   named by the key and exchange WebRTC offers, answers and ICE candidates
 *   through the server until they are connected directly;
 * - unmodified y-webrtc clients at `/y-webrtc`;
 * - unmodified PeerJS clients under `/peerjs`.
 *
 * Running this module starts the server (`deno run -A jsr:@coast/sigver`);
 * importing it starts nothing.
 *
 * @example Run a server
 * ```ts ignore
 * import { serve } from "@coast/sigver";
 * const server = serve({ hostname: "127.0.0.1", port: 8000 });
 * await server.finished;
 * ```
 *
 * @example Mount the handler in your own app
 * ```ts ignore
 * import { createHandler } from "@coast/sigver";
 * const sigver = createHandler();
 * Deno.serve(sigver.fetch);
 * ```
 *
 * @example Mint access tokens in your app's backend
 * A server started with `--auth-secret` (or `authSecrets`) lets a peer in
 * only on `/t/<token>/<key>`. The backend, which knows who the user is and
 * which rooms they may enter, mints the token with the same secret; the
 * page hands it to Netflux as
 * `signalingServer: "wss://host/t/" + token`.
 * ```ts
 * import assert from "node:assert/strict";
 * import { mintToken } from "@coast/sigver";
 * const secret = "the server's --auth-secret";
 * // Rooms under "team-42/" for ten minutes.
 * const token = await mintToken(secret, { prefix: "team-42/", ttl: 600_000 });
 * // The page joins "team-42/standup" through the token's path.
 * const url = `wss://signal.example/t/${token}/team-42/standup`;
 * assert.ok(url.length > 0);
 * ```
 *
 * @module
 */

export {
  createHandler,
  type HandlerOptions,
  type SigverHandler,
} from "./deno/handler.ts";
export { serve, type ServeOptions, type SigverServer } from "./deno/serve.ts";
export type { PeerEvent } from "./deno/observe.ts";
export type { TurnOptions } from "./deno/ice.ts";
export { mintToken, type MintTokenOptions } from "./lib/token.ts";
export type { Clock } from "./lib/clock.ts";
export type { LogFields, LogFormat, LogLevel } from "./lib/log.ts";
export type { Labels, MetricFamily, Sample } from "./lib/metrics.ts";
export type { HubStats } from "./lib/netflux/hub.ts";
export type { Deliver, TopicBus, TopicBusFactory } from "./lib/ywebrtc/bus.ts";
export type {
  EvictReason,
  PeerjsBus,
  PeerjsBusEvents,
  PeerjsBusFactory,
} from "./lib/peerjs/bus.ts";

if (import.meta.main) {
  const { main } = await import("./server.ts");
  Deno.exitCode = await main(Deno.args);
}
