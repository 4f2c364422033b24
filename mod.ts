/**
 * sigver for Deno: the WebRTC signaling server of Netflux, wire-compatible
 * with the Netflux 4.x clients and the original Node.js sigver.
 *
 * Peers open a WebSocket to `ws[s]://host:port/<key>`, meet in the group
 * named by the key and exchange WebRTC offers, answers and ICE candidates
 * through the server until they are connected directly.
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
 * import { mintToken, TokenAuthority } from "@coast/sigver";
 * const secret = "the server's --auth-secret";
 * // Rooms under "team-42/" for ten minutes.
 * const token = await mintToken(secret, { prefix: "team-42/", ttl: 600 });
 * // The server's check, for the key "team-42/standup":
 * const result = await new TokenAuthority([secret]).check({
 *   token,
 *   key: "team-42/standup",
 *   now: Date.now(),
 * });
 * assert.deepEqual(result, { ok: true });
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
export {
  ClusterNode,
  type ClusterOptions,
  type ClusterView,
  type Route,
} from "./cluster/node.ts";
export { defaultMaxPeers } from "./deno/system.ts";
export { type Clock, ManualClock, systemClock } from "./lib/clock.ts";
export {
  CLOSE_CODES,
  CLOSE_GOING_AWAY,
  CLOSE_MESSAGE_TOO_BIG,
  CLOSE_NORMAL,
  CLOSE_POLICY_VIOLATION,
  CLOSE_SERVICE_RESTART,
  type CloseCodeInfo,
  describeCloseCode,
  ERR_BLOCKING_MEMBER,
  ERR_HEARTBEAT,
  ERR_KEY,
  ERR_MESSAGE,
  ERR_URL,
} from "./lib/codes.ts";
export {
  CloseError,
  Hub,
  type HubCounters,
  type HubOptions,
  type HubStats,
  MAX_MISSED_HEARTBEATS,
  type Peer,
  type PeerTransport,
} from "./lib/netflux/hub.ts";
export {
  type Content,
  decodeMessage,
  encodeContent,
  encodeMessage,
  type GroupData,
  type Message,
} from "./lib/netflux/wire.ts";
export {
  checkKey,
  MAX_KEY_LENGTH,
  parsePeerUrl,
  type PeerUrl,
} from "./lib/url.ts";
export {
  checkToken,
  DEFAULT_TOKEN_TTL,
  MAX_TOKEN_EXPIRY,
  MAX_TOKEN_LENGTH,
  mintToken,
  type MintTokenOptions,
  splitTokenPath,
  TOKEN_CLOCK_SKEW,
  TOKEN_REFUSAL_REASONS,
  TOKEN_VERSION,
  type TokenAccess,
  TokenAuthority,
  type TokenCheck,
  type TokenRefusal,
  type TokenRefusalReason,
  type TokenRequest,
} from "./lib/token.ts";
export {
  DEFAULT_TURN_TTL,
  type IceServer,
  type IceServersResponse,
  type TurnCredentials,
  turnCredentials,
  type TurnCredentialsOptions,
} from "./lib/turn.ts";
export type { TurnOptions } from "./deno/ice.ts";
export {
  type LogFields,
  type LogFormat,
  Logger,
  type LogLevel,
} from "./lib/log.ts";
export {
  PIPE_HEADERS,
  PipeAuthority,
  type PipeCheck,
  type PipeClaims,
} from "./lib/pipe_auth.ts";
export type { Labels, MetricFamily, Sample } from "./lib/metrics.ts";

if (import.meta.main) {
  const { main } = await import("./server.ts");
  Deno.exitCode = await main(Deno.args);
}
