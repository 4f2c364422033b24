/**
 * The connection an admitted peer gets, on its transport: a WebSocket
 * upgrade or a fallback session (`sse.ts`), held here when its group lives
 * here ({@linkcode WsConn}, {@linkcode SseConn}) or piped to the group's
 * owner node ({@linkcode EdgeConn}). Where the peer goes was decided
 * before (`route.ts`); the handler holds what this builds.
 *
 * @module
 */

import type { Refusal } from "../lib/admission.ts";
import { newSessionId } from "../lib/sse.ts";
import {
  type ConnFacts,
  type ConnHost,
  type LocalConn,
  SseConn,
  WsConn,
} from "./connection.ts";
import type { Arrival } from "./route.ts";
import { DenoSocket } from "./socket.ts";
import { SseSession } from "./fallback.ts";
import { EdgeConn, type EdgeHost } from "../cluster/edge.ts";
import type { ClusterNode } from "../cluster/node.ts";

/** What building a connection needs from the handler. */
export interface AcceptHost extends ConnHost, EdgeHost {
  /** This node, on a cluster. */
  readonly cluster: ClusterNode | undefined;
}

/** An arrival that was let in. */
export type Admitted = Exclude<Arrival, { kind: "refused" }>;

/**
 * A connection to hold, and how to answer its request once it is held (a
 * fallback session may report its open as it answers); or why the request
 * could not be taken after all.
 */
export type Accepted =
  | { conn: LocalConn | EdgeConn; respond: () => Response }
  | { refusal: Refusal; key: string | undefined };

/**
 * Builds the connection of an admitted peer.
 *
 * @param host The handler.
 * @param request The upgrade, or the fallback's opening GET.
 * @param arrival Where the peer goes.
 * @param transport The transport it asked for.
 * @param now The real clock's time, for the upgrade timeout.
 * @returns The connection, or a refusal when the upgrade fails.
 */
export function accept(
  host: AcceptHost,
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
    now,
  };
  if (transport === "sse") {
    const id = newSessionId(host.cluster?.id);
    const conn = arrival.kind === "edge"
      ? _edge(
        host,
        arrival,
        facts,
        (events) => new SseSession(id, events, host.sseContext),
      )
      : _leased(new SseConn(host, id, facts), arrival.lease);
    return { conn, respond: () => (conn.socket as SseSession).open()! };
  }
  let upgraded: { socket: WebSocket; response: Response };
  try {
    upgraded = Deno.upgradeWebSocket(request, { idleTimeout: 0 });
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
  const conn = arrival.kind === "edge"
    ? _edge(
      host,
      arrival,
      facts,
      (events) => new DenoSocket(socket, events, host.socketContext),
    )
    : _leased(new WsConn(host, socket, facts), arrival.lease);
  return { conn, respond: () => response };
}

/**
 * Gives up an admitted arrival that will not be held: closes its pipe, or
 * releases the lease taken for it.
 *
 * @param arrival The arrival.
 */
export function giveUp(arrival: Admitted): void {
  if (arrival.kind === "edge") {
    arrival.pipe.pipe?.close(1000, "The peer was not taken");
  } else if (arrival.lease !== undefined) {
    arrival.lease.cluster.release(arrival.peer!.key);
  }
}

/** A peer piped to its group's owner, on the socket `open` makes. */
function _edge(
  host: AcceptHost,
  arrival: Admitted & { kind: "edge" },
  facts: ConnFacts,
  open: ConstructorParameters<typeof EdgeConn>[1],
): EdgeConn {
  const conn = new EdgeConn(host, open, arrival.pipe, {
    ...facts,
    key: arrival.key,
    owner: arrival.route.node,
  });
  host.cluster!.pipeOpened(arrival.key, arrival.route);
  return conn;
}

/** Records the cluster lease a local connection holds, if any. */
function _leased(
  conn: LocalConn,
  lease: { cluster: ClusterNode; piped: boolean } | undefined,
): LocalConn {
  if (lease !== undefined) {
    conn.leased = true;
    if (lease.piped && conn instanceof WsConn) {
      conn.piped = true;
      lease.cluster.pipedIn(1);
    }
  }
  return conn;
}
