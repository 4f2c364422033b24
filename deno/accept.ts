/**
 * The connection an admitted peer gets, on its transport: a WebSocket
 * upgrade (`socket.ts`) or a fallback session (`fallback.ts`), served here
 * or linked to the node that owns its group. Where the peer goes was
 * decided before (`route.ts`); the handler holds what this builds.
 *
 * @module
 */

import type { Refusal } from "../lib/admission.ts";
import type { Protocol } from "../lib/protocol.ts";
import { newSessionId } from "../lib/sse.ts";
import { Conn, type ConnFacts, type ConnHost } from "./connection.ts";
import { type SseContext, SseSession } from "./fallback.ts";
import type { Arrival } from "./route.ts";
import { DenoSocket, type PeerSocket, type SocketContext } from "./socket.ts";

/** What building a connection needs from the handler. */
export interface AcceptHost extends ConnHost {
  /** The shared tick count and WebSocket settings. */
  readonly socketContext: SocketContext;
  /** The shared tick count and fallback settings. */
  readonly sseContext: SseContext;
  /** This node's id on a cluster, for fallback session ids. */
  readonly nodeId: string | undefined;
}

/** An arrival that was let in. */
export type Admitted = Exclude<Arrival, { kind: "refused" }>;

/**
 * A connection to hold, and how to answer its request once it is held (a
 * fallback session may report its open as it answers); or why the request
 * could not be taken after all.
 */
export type Accepted =
  | { conn: Conn; respond: () => Response }
  | { refusal: Refusal; key: string | undefined };

/**
 * Builds the connection of an admitted peer.
 *
 * @param host The handler.
 * @param protocol The protocol the peer speaks.
 * @param request The upgrade, or the fallback's opening GET.
 * @param arrival Where the peer goes.
 * @param transport The transport it asked for.
 * @param now The real clock's time, for the upgrade timeout.
 * @returns The connection, or a refusal when the upgrade fails.
 */
export function accept(
  host: AcceptHost,
  protocol: Protocol,
  request: Request,
  arrival: Admitted,
  transport: "websocket" | "sse",
  now: number,
): Accepted {
  const edge = arrival.kind === "edge";
  const facts: ConnFacts = {
    address: arrival.from.address,
    counted: arrival.from.counted,
    key: edge ? arrival.key : arrival.peer?.key,
    favored: edge ? false : arrival.peer?.favored ?? false,
    scope: edge ? undefined : arrival.peer?.scope,
    query: edge ? undefined : arrival.peer?.query,
    transport,
    now,
  };
  if (transport === "sse") {
    const conn = _conn(host, protocol, arrival, facts);
    const session = new SseSession(
      newSessionId(host.nodeId),
      conn,
      host.sseContext,
    );
    _attach(conn, session);
    return { conn, respond: () => session.open()! };
  }
  let upgraded: { socket: WebSocket; response: Response };
  try {
    // Deno's idleTimeout (seconds) pings after half of it and drops a socket
    // that sent nothing back: a pipe's owner side is watched so.
    const silence = arrival.kind === "local"
      ? arrival.lease?.silenceTimeout
      : 0;
    upgraded = Deno.upgradeWebSocket(request, {
      idleTimeout: (silence ?? 0) / 1000,
    });
  } catch (error) {
    giveUp(arrival);
    const why = error instanceof Error ? error.message : String(error);
    return {
      refusal: {
        status: 400,
        reason: "handshake",
        message: `Bad Request: ${why}`,
      },
      key: facts.key,
    };
  }
  const { socket, response } = upgraded;
  const conn = _conn(host, protocol, arrival, facts);
  _attach(conn, new DenoSocket(socket, conn, host.socketContext));
  return { conn, respond: () => response };
}

/**
 * Gives up an admitted arrival that will not be held: closes its link to
 * the owner, or releases the lease taken for it.
 *
 * @param arrival The arrival.
 */
export function giveUp(arrival: Admitted): void {
  if (arrival.kind === "edge") {
    arrival.remote.close(1000, "The peer was not taken");
    arrival.remote.release();
  } else arrival.lease?.release();
}

/** The connection of an arrival, before its transport is made. */
function _conn(
  host: AcceptHost,
  protocol: Protocol,
  arrival: Admitted,
  facts: ConnFacts,
): Conn {
  if (arrival.kind === "edge") {
    return new Conn(host, protocol, facts, arrival.remote);
  }
  const conn = new Conn(host, protocol, facts);
  conn.lease = arrival.lease;
  conn.piped = arrival.piped;
  return conn;
}

/**
 * Gives the connection its transport; then a link to the owner may replay
 * what the owner sent meanwhile.
 */
function _attach(conn: Conn, socket: PeerSocket): void {
  conn.socket = socket;
  conn.remote?.attach(conn);
}
