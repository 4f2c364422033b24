/**
 * A small typed client of the sigver protocol, for browsers and Deno.
 *
 * It opens the signaling socket of one group, answers the server's
 * heartbeats by itself, asks for membership with
 * {@linkcode SigverClient.connect}, and sends and receives the `content`
 * messages that carry WebRTC offers, answers and ICE candidates between a
 * joining peer and a member. Close codes come out as a typed
 * {@linkcode SigverCloseEvent} and, for the calls they interrupt, as a
 * {@linkcode SigverCloseError}.
 *
 * It depends on nothing but the package's own protobuf codec. Browsers get it
 * as JavaScript from the server itself (`/demo/client.js`, unless the demo is
 * turned off).
 *
 * On a server that hands out TURN credentials, {@linkcode fetchIceServers}
 * gets them for the `RTCPeerConnection`s; on a server that needs access
 * tokens, pass the token to both.
 *
 * @example Join a group as a joining peer
 * ```ts ignore
 * import { SigverClient } from "@coast/sigver/client";
 *
 * await using client = await SigverClient.open("ws://127.0.0.1:8000", "room");
 * client.addEventListener("content", (event) => {
 *   console.log(`from ${event.senderId}: ${event.text()}`);
 * });
 * if (!(await client.connect(1234, []))) {
 *   // Bound to a member: everything sent now goes to it.
 *   client.send(0, JSON.stringify({ offer: "..." }));
 * }
 * ```
 *
 * @module
 */

export type { IceServer } from "../lib/turn.ts";
export {
  CLOSE_CODES,
  type CloseCodeInfo,
  describeCloseCode,
  ERR_BLOCKING_MEMBER,
  ERR_HEARTBEAT,
  ERR_KEY,
  ERR_MESSAGE,
  ERR_URL,
} from "../lib/codes.ts";
export {
  type SendOptions,
  SigverClient,
  type SigverClientOptions,
} from "./client.ts";
export { type CloseInfo, SigverCloseError } from "./close.ts";
export {
  ContentEvent,
  GoneEvent,
  type SigverClientEventMap,
  SigverCloseEvent,
} from "./events.ts";
export {
  fetchIceServers,
  type FetchIceServersOptions,
  IceServersError,
} from "./ice.ts";
export { groupUrl, tokenUrl } from "./url.ts";
