/**
 * The PeerJS server protocol, as the binding drives it (see
 * `lib/protocol.ts`): unmodified `peerjs` clients, given
 * `{ host, port, path: "/peerjs" }`, fetch an id from `/peerjs/<key>/id`
 * and open their socket on `/peerjs/peerjs?key=&id=&token=`. The state is
 * {@linkcode PeerjsHub}'s; this file reads the socket's query, answers the
 * plain HTTP routes and names the metrics.
 *
 * @module
 */

import { CLOSE_POLICY_VIOLATION } from "../codes.ts";
import { answerHeaders, preflightHeaders } from "../cors.ts";
import type { MetricFamily } from "../metrics.ts";
import type {
  PeerRequest,
  PeerTransport,
  Protocol,
  ProtocolMount,
} from "../protocol.ts";
import type { PeerjsBusFactory } from "./bus.ts";
import { type PeerjsClient, PeerjsHub } from "./hub.ts";
import { newId } from "./id.ts";
import { ERROR, serverMessage } from "./wire.ts";

/** The socket's path below the mount, as the client builds it. */
const _SOCKET_PATH = "/peerjs";
const _ALLOW = "GET, HEAD, OPTIONS";
const _LABEL = { protocol: "peerjs" } as const;

/** Options of {@linkcode PeerjsProtocol}; durations are milliseconds. */
export interface PeerjsProtocolOptions {
  /**
   * The API keys served (the client's `key`), a namespace of ids each.
   * @default {["peerjs"]}
   */
  keys?: readonly string[];
  /**
   * Whether `GET <path><key>/peers` lists the ids held (401 otherwise).
   * @default {false}
   */
  discovery?: boolean;
  /**
   * Origins whose pages may read the HTTP routes (CORS); empty: all.
   * @default {new Set()}
   */
  allowOrigins?: ReadonlySet<string>;
  /**
   * Milliseconds between two of the binding's ticks.
   * @default {100}
   */
  tickMs?: number;
  /**
   * Milliseconds a client may stay silent (it sends a heartbeat every 5 s).
   * @default {60000}
   */
  aliveTimeout?: number;
  /**
   * Milliseconds after which messages queued for an absent id expire.
   * @default {5000}
   */
  expireTimeout?: number;
  /**
   * Most ids held at once (0: no limit but the server's).
   * @default {0}
   */
  maxIds?: number;
  /**
   * Messages that may wait for one absent id.
   * @default {64}
   */
  maxQueuedPerId?: number;
  /**
   * Bytes that may wait for absent ids, in all.
   * @default {8388608}
   */
  maxQueuedBytes?: number;
  /** Makes the bus that holds ids and carries messages across a cluster. */
  bus?: PeerjsBusFactory;
}

/**
 * The PeerJS protocol over one {@linkcode PeerjsHub}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PeerjsProtocol } from "./protocol.ts";
 * const peerjs = new PeerjsProtocol();
 * const sent: string[] = [];
 * const transport = { send: (f: string | Uint8Array) => void sent.push(String(f)), close() {} };
 * peerjs.open(transport, { key: "/peerjs", favored: false, query: "key=peerjs&id=a&token=t" });
 * assert.deepEqual(sent, ['{"type":"OPEN"}']);
 * ```
 */
export class PeerjsProtocol implements Protocol<PeerjsClient> {
  /** The protocol's label. */
  readonly name = "peerjs";
  /** PeerJS frames are JSON text. */
  readonly text = true;
  /** The state. */
  readonly hub: PeerjsHub;
  readonly #discovery: boolean;
  readonly #origins: ReadonlySet<string>;

  /**
   * Serves PeerJS clients.
   *
   * @param options Keys, discovery, CORS, limits and durations.
   * @throws {RangeError} When a number is negative or not finite, or no
   * key is given.
   */
  constructor(options: PeerjsProtocolOptions = {}) {
    const tickMs = _positive("tickMs", options.tickMs, 100);
    const keys = options.keys ?? ["peerjs"];
    if (keys.length === 0 || keys.some((k) => typeof k !== "string" || !k)) {
      throw new RangeError(
        "Cannot serve PeerJS: every key must be a non-empty string",
      );
    }
    this.hub = new PeerjsHub({
      keys,
      maxIds: _count("maxIds", options.maxIds, 0),
      aliveTicks: Math.ceil(
        _positive("aliveTimeout", options.aliveTimeout, 60_000) / tickMs,
      ),
      expireTicks: Math.ceil(
        _positive("expireTimeout", options.expireTimeout, 5_000) / tickMs,
      ),
      maxQueuedPerId: _count("maxQueuedPerId", options.maxQueuedPerId, 64),
      maxQueuedBytes: _count("maxQueuedBytes", options.maxQueuedBytes, 8 << 20),
      bus: options.bus,
    });
    this.#discovery = options.discovery ?? false;
    this.#origins = options.allowOrigins ?? new Set();
  }

  /** Live clients. */
  get size(): number {
    return this.hub.size;
  }

  /**
   * Reads the socket's query and connects the client, or refuses it with
   * ERROR and a close.
   *
   * @param transport How to reach the client.
   * @param request Its path below the mount, its query and its scope.
   * @returns The client, or `undefined` when it was refused.
   */
  open(
    transport: PeerTransport,
    request: PeerRequest,
  ): PeerjsClient | undefined {
    if (request.key !== _SOCKET_PATH) {
      const msg = "Cannot connect: the socket's path ends with /peerjs";
      this.hub.counters.refused.add("path");
      try {
        transport.send(serverMessage(ERROR, msg));
      } catch { /* closed below anyway */ }
      transport.close(CLOSE_POLICY_VIOLATION, msg);
      return undefined;
    }
    const query = new URLSearchParams(request.query ?? "");
    return this.hub.connect(transport, {
      key: query.get("key"),
      id: query.get("id"),
      token: query.get("token"),
      scope: request.scope,
    });
  }

  /**
   * Hands a text frame to the hub.
   *
   * @param peer The sender.
   * @param frame The frame.
   */
  receive(peer: PeerjsClient, frame: Uint8Array | string): void {
    this.hub.receive(peer, frame as string);
  }

  /**
   * Closes a client for the server.
   *
   * @param peer The client.
   * @param code The close code.
   * @param reason The close reason.
   */
  close(peer: PeerjsClient, code: number, reason: string): void {
    this.hub.close(peer, code, reason);
  }

  /**
   * Forgets a client whose socket closed.
   *
   * @param peer The client.
   */
  forget(peer: PeerjsClient): void {
    this.hub.forget(peer);
  }

  /** Expires queues and closes silent clients. */
  tick(): void {
    this.hub.tick();
  }

  /**
   * Answers the plain HTTP routes: `/<key>/id` (a fresh id, as text) and
   * `/<key>/peers` (the ids held, as JSON, with discovery on; else 401),
   * with CORS headers that follow the allowed origins.
   *
   * @param request The request.
   * @param rest The path below the mount (`""`, or `/...`).
   * @param scope The prefix the request's access token grants, if any.
   * @returns The answer, or `undefined` for a path that is not a route.
   */
  http(
    request: Request,
    rest: string,
    scope: string | undefined,
  ): Response | undefined {
    const parts = rest.split("/");
    const route = parts.length === 3 && parts[0] === "" ? parts[2] : undefined;
    if (route !== "id" && route !== "peers" && rest !== "" && rest !== "/") {
      return undefined;
    }
    const origin = request.headers.get("origin");
    const { allowed, headers } = answerHeaders(request, this.#origins);
    if (!allowed) {
      return _text(403, `Forbidden: origin ${origin} is not allowed`, headers);
    }
    if (request.method === "OPTIONS") {
      headers.set("allow", _ALLOW);
      if (request.headers.has("access-control-request-method")) {
        for (
          const [name, value] of Object.entries(preflightHeaders(_ALLOW, ""))
        ) {
          headers.set(name, value);
        }
      }
      return new Response(null, { status: 204, headers });
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      headers.set("allow", _ALLOW);
      return _text(405, "Method Not Allowed: GET only", headers);
    }
    if (route === undefined) {
      headers.set("content-type", "application/json");
      return new Response(
        JSON.stringify({
          name: "sigver",
          description: "PeerJS signaling: WebSocket on <path>peerjs",
        }),
        { headers },
      );
    }
    let key: string;
    try {
      key = decodeURIComponent(parts[1]);
    } catch {
      return _text(400, "Bad Request: the key is not percent-encoded", headers);
    }
    if (route === "id") {
      // Any key gets an id, as from the original: a key not served is told
      // as such on the socket, where the client reports it.
      return _text(200, newId(scope, (id) => this.hub.holds(key, id)), headers);
    }
    if (!this.#discovery) {
      return _text(401, "Unauthorized: discovery is off", headers);
    }
    headers.set("content-type", "application/json");
    return new Response(JSON.stringify(this.hub.ids(key, scope)), { headers });
  }

  /**
   * The protocol's metric families, labelled `protocol="peerjs"`.
   *
   * @returns The families.
   */
  metrics(): MetricFamily[] {
    const hub = this.hub;
    const c = hub.counters;
    const one = (value: number) => [[_LABEL, value] as const];
    return [
      {
        name: "sigver_peerjs_ids",
        help: "PeerJS ids held by connected clients.",
        type: "gauge",
        samples: one(hub.size),
      },
      {
        name: "sigver_peerjs_queued_messages",
        help: "PeerJS messages waiting for ids not connected.",
        type: "gauge",
        samples: one(hub.queued),
      },
      {
        name: "sigver_peerjs_queued_bytes",
        help: "Bytes of PeerJS messages waiting for ids not connected.",
        type: "gauge",
        samples: one(hub.queuedBytes),
      },
      {
        name: "sigver_peerjs_relayed_total",
        help: "PeerJS messages relayed to a connected id, by type.",
        type: "counter",
        samples: c.relayed.samples().map(([l, v]) => [{ ..._LABEL, ...l }, v]),
      },
      {
        name: "sigver_peerjs_queue_events_total",
        help:
          "PeerJS messages queued for absent ids, delivered from a queue, or expired (EXPIRE sent).",
        type: "counter",
        samples: [
          [{ ..._LABEL, event: "queued" }, c.queued],
          [{ ..._LABEL, event: "delivered" }, c.delivered],
          [{ ..._LABEL, event: "expired" }, c.expired],
        ],
      },
      {
        name: "sigver_peerjs_dropped_total",
        help:
          "PeerJS messages dropped: an unknown type, or a bad or out-of-scope destination.",
        type: "counter",
        samples: one(c.dropped),
      },
      {
        name: "sigver_peerjs_refused_total",
        help:
          "PeerJS sockets refused at connect and messages refused a queue, by reason.",
        type: "counter",
        samples: c.refused.samples().map(([l, v]) => [{ ..._LABEL, ...l }, v]),
      },
      {
        name: "sigver_peerjs_replaced_total",
        help: "PeerJS sockets replaced by their id's reconnect with its token.",
        type: "counter",
        samples: one(c.replaced),
      },
      {
        name: "sigver_peerjs_bus_messages_total",
        help:
          "PeerJS messages carried to another node (sent) or delivered from one (received).",
        type: "counter",
        samples: [
          [{ ..._LABEL, direction: "sent" }, c.crossed],
          [{ ..._LABEL, direction: "received" }, c.received],
        ],
      },
      ...hub.bus?.metrics?.() ?? [],
    ];
  }
}

/**
 * The mount of a {@linkcode PeerjsProtocol} under `path`: its socket is
 * `<path>/peerjs`, its routes `<path>/<key>/id` and `<path>/<key>/peers`.
 *
 * @param path The path, with its leading `/` (`"/peerjs"`).
 * @param protocol The protocol.
 * @returns The mount.
 * @throws {TypeError} When the path is not like `/peerjs`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PeerjsProtocol, peerjsMount } from "./protocol.ts";
 * assert.equal(peerjsMount("/peerjs", new PeerjsProtocol()).path, "peerjs");
 * assert.throws(() => peerjsMount("/", new PeerjsProtocol()), TypeError);
 * ```
 */
export function peerjsMount(
  path: string,
  protocol: PeerjsProtocol,
): ProtocolMount {
  if (
    typeof path !== "string" || !/^\/[^?#\s]*[^/?#\s]$/.test(path) ||
    path.includes("//") || path.startsWith("/t/") || path === "/t"
  ) {
    throw new TypeError(
      `Cannot use peerjsPath: ${
        JSON.stringify(path)
      } is not a path like "/peerjs" (a leading /, no trailing /, not the root, not /t)`,
    );
  }
  return {
    protocol,
    path: path.slice(1),
    prefix: true,
    http: (request, rest, scope) => protocol.http(request, rest, scope),
  };
}

function _text(status: number, body: string, headers: Headers): Response {
  headers.set("content-type", "text/plain; charset=utf-8");
  return new Response(body, { status, headers });
}

function _positive(name: string, value: number | undefined, fallback: number) {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw new RangeError(
      `Cannot use ${name}: ${value} is not a positive number`,
    );
  }
  return value;
}

function _count(name: string, value: number | undefined, fallback: number) {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 0) {
    throw new RangeError(
      `Cannot use ${name}: ${value} is not a non-negative integer`,
    );
  }
  return value;
}
