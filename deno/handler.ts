/**
 * The request handler: routes each request (a WebSocket upgrade, the
 * WebSocket-free fallback's stream and frames, or a plain request) below
 * its base path.
 *
 * Where an arriving peer goes is `route.ts`'s call (and, on a cluster, the
 * placement's: `placement.ts`); the connection it gets on its transport is
 * `accept.ts`'s and `connection.ts`'s; the connections held and their one
 * scheduler tick are `connections.ts`'s; how each transport is driven is
 * `socket.ts` and `fallback.ts`'s; what is counted and logged is
 * `observe.ts`'s; plain requests are `endpoints.ts`'s; the protocol is
 * Netflux's (`lib/netflux/protocol.ts`); the listener's lifecycle is
 * `serve.ts`'s.
 *
 * @module
 */

import type { AdmissionPolicy, Refusal } from "../lib/admission.ts";
import { clientAddress } from "../lib/address.ts";
import { CLOSE_GOING_AWAY } from "../lib/codes.ts";
import { Hub, type HubStats } from "../lib/netflux/hub.ts";
import { NetfluxProtocol } from "../lib/netflux/protocol.ts";
import { type LogFields, Logger, type LogLevel } from "../lib/log.ts";
import { collect, renderMetrics } from "../lib/metrics.ts";
import { SERVER_METRICS } from "../lib/server_metrics.ts";
import { splitTokenPath, TokenAuthority } from "../lib/token.ts";
import { parsePeerUrl, type PeerUrl } from "../lib/url.ts";
import type { Protocol, ProtocolMount } from "../lib/protocol.ts";
import { IceServersEndpoint } from "./ice.ts";
import {
  type HandlerConfig,
  type HandlerOptions,
  resolveHandlerOptions,
} from "./options.ts";
import { Sessions, SseSession } from "./fallback.ts";
import type { Conn } from "./connection.ts";
import { accept, giveUp } from "./accept.ts";
import { Connections } from "./connections.ts";
import { protocolMounts } from "./protocols.ts";
import {
  answerAdmin,
  answerPlain,
  type EndpointSource,
  textResponse,
} from "./endpoints.ts";
import { Observer } from "./observe.ts";
import {
  type Arrival,
  arrive,
  checkScope,
  type Gates,
  readmit,
  tokenRefusal,
} from "./route.ts";
import type { Placement } from "./placement.ts";

export type { HandlerOptions } from "./options.ts";

/** A mounted sigver: the request handler and what controls it. */
export interface SigverHandler {
  /**
   * Handles one request: a WebSocket upgrade, or a GET that accepts
   * `text/event-stream`, joins the group named by the path; a plain request
   * gets an endpoint or a short text answer. Bound: pass it as it is to
   * `Deno.serve`.
   */
  readonly fetch: (
    request: Request,
    info?: Deno.ServeHandlerInfo,
  ) => Response | Promise<Response>;
  /**
   * Handles one request to the admin listener: liveness, readiness, the
   * metrics and the cluster view (404 for anything else). Bound: pass it to
   * a `Deno.serve` on a private address (`serve`'s `adminPort` does).
   */
  readonly admin: (request: Request) => Response;
  /** Whether the handler is draining (refusing new peers). */
  readonly draining: boolean;
  /** Refuses new upgrades (503) and turns readiness to 503. */
  drain(): void;
  /**
   * Closes every socket (default code 1001) and waits for their close
   * events, at most `timeout` ms; then forgets the sockets left and stops
   * the scheduler.
   *
   * @param code The close code.
   * @param reason The close reason.
   * @param timeout Milliseconds to wait for the sockets to close.
   * @returns Resolves once no socket is held.
   */
  close(code?: number, reason?: string, timeout?: number): Promise<void>;
  /** Connections held: open peers and upgrades in progress. */
  readonly connections: number;
  /**
   * The metrics in the Prometheus text format.
   *
   * @returns The exposition.
   */
  metrics(): string;
  /**
   * Sizes of the group state.
   *
   * @returns The hub's stats.
   */
  stats(): HubStats;
  /**
   * Writes one log record through the `log` option, when its level passes.
   *
   * @param level The record's level.
   * @param event What happened.
   * @param fields More fields.
   */
  logEvent(level: LogLevel, event: string, fields?: LogFields): void;
}

/** A request on a mounted protocol's path. */
interface _Mounted {
  readonly mount: ProtocolMount;
  /** The parsed path below the base path (the token path kept). */
  readonly url: PeerUrl;
  /** The path below the mount: `""`, or `/...`. */
  readonly rest: string;
  /** The query string, without its `?`. */
  readonly query: string;
}

/** The socket's remote address, if any. */
function _remote(info: Deno.ServeHandlerInfo | undefined): string | undefined {
  return (info?.remoteAddr as Deno.NetAddr | undefined)?.hostname;
}

/** What a Host header may not hold: a path, a query, a fragment, userinfo. */
const _BAD_HOST = /[/?#@\s\\]/;

class _Handler implements SigverHandler, Gates, EndpointSource {
  readonly hub: Hub;
  readonly tokens: TokenAuthority | undefined;
  readonly placement: Placement | undefined;
  readonly ice: IceServersEndpoint | undefined;
  readonly #netflux: NetfluxProtocol;
  readonly #config: HandlerConfig;
  readonly #observer: Observer;
  readonly #conns: Connections;
  readonly #readiness: (() => string | undefined) | undefined;
  readonly #moreMetrics: HandlerOptions["moreMetrics"];
  /** The ICE servers path as a key (`/ice-servers` is `ice-servers`). */
  readonly #iceKey: string | undefined;
  /** Fallback sessions, by id. */
  readonly #sessions: Sessions<Conn>;
  /** The protocols served beside Netflux, under their own paths. */
  readonly #mounts: readonly ProtocolMount[];
  #draining = false;

  constructor(options: HandlerOptions, placement: Placement | undefined) {
    const config = this.#config = resolveHandlerOptions(options);
    // WebSocket.send copies the frame at once, and the ArrayBuffer of a
    // received frame is ours: the hub may reuse its buffer, and write a
    // relayed frame's header over the received one.
    this.hub = new Hub({
      slots: config.slots,
      random: options.random,
      reuseFrames: true,
    });
    this.#netflux = new NetfluxProtocol(this.hub);
    const log = new Logger(options.log, options.logLevel, options.logFormat);
    this.#observer = new Observer(log);
    this.#readiness = options.readiness;
    this.placement = placement;
    this.tokens = options.authSecrets?.length
      ? new TokenAuthority(options.authSecrets)
      : undefined;
    this.ice = config.paths.ice === false ? undefined : new IceServersEndpoint({
      turn: options.turn,
      tokens: this.tokens,
      allowOrigins: config.admission.allowOrigins,
      trustProxy: config.trustProxy,
    });
    this.#iceKey = this.ice === undefined || config.paths.ice === false
      ? undefined
      : config.paths.ice.slice(1);
    this.#sessions = new Sessions({
      keyOf: (target) => {
        const key = parsePeerUrl(target)?.key;
        return key === undefined || this.tokens === undefined
          ? key
          : splitTokenPath(key).key;
      },
      refused: (reason) => this.#observer.rejections.add(reason),
      maxMessageSize: config.maxMessageSize,
      elsewhere: placement === undefined
        ? undefined
        : (request, id) =>
          placement.forward(request, id, config.maxMessageSize),
      allowOrigins: config.admission.allowOrigins,
      plain: (key) => key !== undefined && key === this.#iceKey,
    });
    this.#mounts = protocolMounts(options, config);
    this.#conns = new Connections({
      config,
      observer: this.#observer,
      protocols: [this.#netflux, ...this.#mounts.map((m) => m.protocol)],
      sessions: this.#sessions,
      nodeId: placement?.id,
      onPeer: options.onPeer,
    });
    this.#moreMetrics = options.moreMetrics;
    placement?.attach({ log, moved: (keys) => this.#conns.moved(keys) });
  }

  // What the gates and the endpoints read.

  get draining(): boolean {
    return this.#draining;
  }

  get connections(): number {
    return this.#conns.size;
  }

  get admission(): AdmissionPolicy {
    return this.#config.admission;
  }

  get trustProxy(): boolean {
    return this.#config.trustProxy;
  }

  get maxBufferedAmount(): number {
    return this.#config.maxBufferedAmount;
  }

  get paths(): HandlerConfig["paths"] {
    return this.#config.paths;
  }

  get demo(): boolean {
    return this.#config.demo;
  }

  get publicMetrics(): boolean {
    return this.#config.publicMetrics;
  }

  fromAddress(address: string): number {
    return this.#conns.fromAddress(address);
  }

  notReady(): string | undefined {
    return this.#draining ? "draining" : this.#readiness?.();
  }

  clusterView(): unknown {
    return this.placement?.view();
  }

  refusedIce(
    refusal: Refusal,
    request: Request,
    remote: string | undefined,
  ): void {
    this.#observer.rejected(refusal.reason, {
      status: refusal.status,
      path: this.#config.paths.ice || undefined,
      addr: clientAddress(remote, request.headers, this.#config.trustProxy)
        .address,
    });
  }

  // Requests.

  readonly fetch = (
    request: Request,
    info?: Deno.ServeHandlerInfo,
  ): Response | Promise<Response> => {
    // Deno builds the URL from the raw Host: one holding a path, a query or
    // credentials would change the path routed on.
    if (_BAD_HOST.test(request.headers.get("host") ?? "")) {
      return textResponse(400, "Bad Request: the Host header is not a host");
    }
    const target = this.#target(request.url);
    if (target === undefined) {
      return textResponse(404, "Not Found: outside this server's base path");
    }
    // The path is read once, for the mounts and for the peer.
    const url = parsePeerUrl(target);
    const mounted = this.#mounts.length === 0 || url === undefined
      ? undefined
      : this.#mountOf(url, target);
    if (request.headers.get("upgrade")?.toLowerCase() === "websocket") {
      return this.#peer(request, url, info, "websocket", mounted);
    }
    if (mounted !== undefined) {
      return this.#mountHttp(request, target, mounted, info) ??
        answerPlain(request, target, this, _remote(info));
    }
    const fallback = this.#sessions.answer(
      request,
      target,
      () => this.#peer(request, url, info, "sse"),
    );
    if (fallback !== undefined) return fallback;
    return answerPlain(request, target, this, _remote(info));
  };

  /** The mounted protocol a path belongs to, if any. */
  #mountOf(url: PeerUrl, target: string): _Mounted | undefined {
    const inner = this.tokens === undefined
      ? url.key
      : splitTokenPath(url.key).key;
    for (const mount of this.#mounts) {
      let rest: string;
      if (inner === mount.path) rest = "";
      else if (mount.prefix && inner.startsWith(mount.path + "/")) {
        rest = inner.slice(mount.path.length);
      } else continue;
      const start = target.indexOf("?");
      const end = target.indexOf("#");
      const query = start === -1
        ? ""
        : target.slice(start + 1, end > start ? end : undefined);
      return { mount, url, rest, query };
    }
    return undefined;
  }

  /**
   * A plain request on a mounted protocol's path: its token checked first
   * when tokens are on, then the protocol's answer.
   */
  #mountHttp(
    request: Request,
    target: string,
    mounted: _Mounted,
    info: Deno.ServeHandlerInfo | undefined,
  ): Response | Promise<Response> | undefined {
    const http = mounted.mount.http;
    if (http === undefined) return undefined;
    const tokens = this.tokens;
    if (tokens === undefined) {
      return http.call(mounted.mount, request, mounted.rest, undefined);
    }
    return checkScope(mounted.url, tokens).then((check) => {
      if (check.ok) {
        return http.call(mounted.mount, request, mounted.rest, check.prefix) ??
          answerPlain(request, target, this, _remote(info));
      }
      const address = clientAddress(
        _remote(info),
        request.headers,
        this.#config.trustProxy,
      ).address;
      return this.#observer.refuse(tokenRefusal(check), address, undefined);
    });
  }

  readonly admin = (request: Request): Response => answerAdmin(request, this);

  /**
   * The request's path and query below the base path (the whole URL when
   * there is none), or `undefined` when the path is outside it.
   */
  #target(url: string): string | undefined {
    const base = this.#config.basePath;
    if (base === "") return url;
    const scheme = url.indexOf("://");
    const start = url.indexOf("/", scheme === -1 ? 0 : scheme + 3);
    if (start === -1 || !url.startsWith(base, start)) return undefined;
    const rest = url.slice(start + base.length);
    if (rest === "") return "/";
    if (rest[0] === "?") return "/" + rest;
    return rest[0] === "/" ? rest : undefined;
  }

  /** A new peer, on a WebSocket or the fallback. */
  #peer(
    request: Request,
    url: PeerUrl | undefined,
    info: Deno.ServeHandlerInfo | undefined,
    transport: "websocket" | "sse",
    mounted?: _Mounted,
  ): Response | Promise<Response> {
    const remote = _remote(info);
    const protocol = mounted?.mount.protocol ?? this.#netflux;
    const arrival = mounted === undefined
      ? arrive(request, url, remote, this)
      : arrive(request, mounted.url, remote, this, mounted);
    return arrival instanceof Promise
      ? arrival.then((a) => this.#accept(request, protocol, a, transport, true))
      : this.#accept(request, protocol, arrival, transport, false);
  }

  /**
   * Holds an arrival's connection, or answers its refusal. One that waited
   * meets admission again: peers may have come, or a drain begun, meanwhile.
   */
  #accept(
    request: Request,
    protocol: Protocol,
    arrival: Arrival,
    transport: "websocket" | "sse",
    waited: boolean,
  ): Response {
    const observer = this.#observer;
    const from = arrival.from.address;
    if (arrival.kind === "refused") {
      return observer.refuse(arrival.refusal, from, arrival.key);
    }
    const late = waited ? readmit(arrival.from, this) : undefined;
    if (late !== undefined) {
      giveUp(arrival);
      const key = arrival.kind === "edge" ? arrival.key : arrival.peer?.key;
      return observer.refuse(late, from, key);
    }
    const now = this.#config.clock.now();
    const accepted = accept(
      this.#conns,
      protocol,
      request,
      arrival,
      transport,
      now,
    );
    if ("refusal" in accepted) {
      return observer.refuse(accepted.refusal, from, accepted.key);
    }
    const { conn } = accepted;
    if (conn.socket instanceof SseSession) {
      this.#sessions.add(conn.socket, conn);
    }
    this.#conns.hold(conn);
    return accepted.respond();
  }

  logEvent(level: LogLevel, event: string, fields?: LogFields): void {
    this.#observer.write(level, event, fields);
  }

  drain(): void {
    if (this.#draining) return;
    this.#draining = true;
    this.#observer.write("info", "drain", { peers: this.hub.size });
  }

  async close(
    code = CLOSE_GOING_AWAY,
    reason = "Server shutting down",
    timeout = 10000,
  ): Promise<void> {
    // A peer still arriving (its token or its group's node being checked)
    // is refused when it gets here.
    this.#draining = true;
    await this.#conns.closeAll(code, reason, timeout);
  }

  stats(): HubStats {
    return this.hub.stats();
  }

  metrics(): string {
    const observer = this.#observer;
    const families = collect(SERVER_METRICS, {
      stats: this.hub.stats(),
      counters: this.hub.counters,
      draining: this.#draining,
      connectionsTotal: observer.connectionsTotal,
      invalid: observer.invalid,
      closes: observer.closes,
      rejections: observer.rejections,
    });
    const more = this.#moreMetrics?.() ?? [];
    const placed = this.placement?.metrics() ?? [];
    const mounted = this.#mounts.flatMap((m) => m.protocol.metrics?.() ?? []);
    return renderMetrics(families.concat(mounted, placed, more));
  }
}

/**
 * Creates a sigver request handler to mount in any `Deno.serve` app.
 *
 * @param options Limits, endpoints, logging and test hooks.
 * @returns The handler; pass `handler.fetch` to `Deno.serve`.
 *
 * @example Mount it beside your own routes
 * ```ts ignore
 * import { createHandler } from "@coast/sigver";
 * const sigver = createHandler({ maxPeersPerAddress: 32 });
 * Deno.serve((request, info) => {
 *   if (new URL(request.url).pathname === "/") return new Response("my app");
 *   return sigver.fetch(request, info);
 * });
 * ```
 *
 * @example Answer plain requests, no network needed
 * ```ts
 * import assert from "node:assert/strict";
 * import { createHandler } from "@coast/sigver";
 * const sigver = createHandler({ readyPath: "/ready" });
 * const answer = async (path: string) =>
 *   await sigver.fetch(new Request(`http://localhost${path}`));
 * assert.equal(await (await answer("/healthz")).text(), "ok\n");
 * sigver.drain();
 * assert.equal((await answer("/ready")).status, 503);
 * assert.equal((await answer("/room")).status, 426);
 * ```
 */
export function createHandler(options?: HandlerOptions): SigverHandler {
  return new _Handler(options ?? {}, undefined);
}

/**
 * Creates a handler whose groups live where `placement` says (a cluster
 * node): the seam cluster mode plugs in through.
 *
 * @param options As for {@linkcode createHandler}.
 * @param placement Where groups live.
 * @returns The handler.
 */
export function createPlacedHandler(
  options: HandlerOptions,
  placement: Placement | undefined,
): SigverHandler {
  return new _Handler(options, placement);
}

/**
 * The Netflux group state of a handler made here, for tests and tools that
 * look inside.
 *
 * @param handler A handler from {@linkcode createHandler}.
 * @returns Its hub.
 */
export function hubOf(handler: SigverHandler): Hub {
  return (handler as _Handler).hub;
}
