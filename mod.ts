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
 * @module
 */

export {
  CLOSE_GOING_AWAY,
  CLOSE_MESSAGE_TOO_BIG,
  CLOSE_POLICY_VIOLATION,
  createHandler,
  defaultMaxPeers,
  type HandlerOptions,
  serve,
  type ServeOptions,
  type SigverHandler,
  type SigverServer,
} from "./handler.ts";
export {
  CloseError,
  ERR_BLOCKING_MEMBER,
  ERR_HEARTBEAT,
  ERR_KEY,
  ERR_MESSAGE,
  ERR_URL,
  Hub,
  type HubCounters,
  type HubOptions,
  type HubStats,
  MAX_MISSED_HEARTBEATS,
  type Peer,
  type PeerTransport,
} from "./lib/hub.ts";
export {
  type Content,
  decodeMessage,
  encodeContent,
  encodeMessage,
  type GroupData,
  type Message,
} from "./lib/wire.ts";
export {
  checkKey,
  MAX_KEY_LENGTH,
  parsePeerUrl,
  type PeerUrl,
} from "./lib/url.ts";
export type { LogFields, LogFormat, LogLevel } from "./lib/log.ts";

if (import.meta.main) {
  const { main } = await import("./server.ts");
  Deno.exitCode = await main(Deno.args);
}
