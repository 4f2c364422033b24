/**
 * The request handler: routes each request (a WebSocket upgrade, the
 * WebSocket-free fallback's stream and frames, or a plain request), and owns
 * the set of connections and the one scheduler tick that serves them all.
 *
 * Where an arriving peer goes is `route.ts`'s call; the connection it gets
 * on its transport is `accept.ts`'s; how each transport is driven is
 * `socket.ts` and `sse.ts`'s; what is counted and logged is `observe.ts`'s;
 * plain requests are `endpoints.ts`'s; the group state is the pure
 * {@linkcode Hub}'s; the listener's lifecycle is `serve.ts`'s.
 *
 * @module
 */

import type { AdmissionPolicy, Refusal } from "../lib/admission.ts";
import { clientAddress } from "../lib/address.ts";
import { TokenBucket } from "../lib/bucket.ts";
import {
  CLOSE_GOING_AWAY,
  CLOSE_POLICY_VIOLATION,
  CLOSE_SERVICE_RESTART,
} from "../lib/codes.ts";
import { Hub, type HubStats } from "../lib/netflux/hub.ts";
import { NetfluxProtocol } from "../lib/netflux/protocol.ts";
import { keyHash, type LogFields, Logger, type LogLevel } from "../lib/log.ts";
import { collect, renderMetrics, type Tally } from "../lib/metrics.ts";
import { SERVER_METRICS } from "../lib/server_metrics.ts";
import { splitTokenPath, TokenAuthority } from "../lib/token.ts";
import { parsePeerUrl } from "../lib/url.ts";
import { settleWithin } from "../lib/deadline.ts";
import { IceServersEndpoint } from "./ice.ts";
import {
  type HandlerConfig,
  type HandlerOptions,
  resolveHandlerOptions,
} from "./options.ts";
import type { PeerSocket, SocketContext } from "./socket.ts";
import { Sessions, type SseContext, SseSession } from "./fallback.ts";
import type { Conn } from "./connection.ts";
import { accept, type AcceptHost, giveUp } from "./accept.ts";
import { answerPlain, type EndpointSource, textResponse } from "./endpoints.ts";
import { Observer } from "./observe.ts";
import { type Arrival, arrive, type Gates, readmit } from "./route.ts";
import type { Placement } from "./placement.ts";

export type { HandlerOptions } from "./options.ts";

/** How long a close may wait for its socket to go quiet (see socket.ts). */
const CLOSE_WAIT_MS = 1000;
/** How long after the open a frame counts as due: clients send at once. */
const CLOSE_OPEN_GRACE_MS = 500;
/** A fallback stream silent this long gets a keep-alive comment. */
const KEEP_ALIVE_MS = 15_000;

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

class _Handler implements SigverHandler, AcceptHost, Gates, EndpointSource {
  readonly hub: Hub;
  readonly bucket: TokenBucket;
  readonly socketContext: SocketContext;
  readonly sseContext: { tick: number } & SseContext;
  readonly tokens: TokenAuthority | undefined;
  readonly placement: Placement | undefined;
  readonly ice: IceServersEndpoint | undefined;
  readonly #netflux: NetfluxProtocol;
  readonly #config: HandlerConfig;
  readonly #observer: Observer;
  readonly #readiness: (() => string | undefined) | undefined;
  readonly #moreMetrics: HandlerOptions["moreMetrics"];
  readonly #onPeer: HandlerOptions["onPeer"];
  /** The ICE servers path as a key (`/ice-servers` is `ice-servers`). */
  readonly #iceKey: string | undefined;
  /** The clock's time at the last tick: the rate limit's coarse clock. */
  #now: number;
  #timer: Disposable | undefined;
  readonly #conns = new Set<Conn>();
  /** Connections whose transport has not opened yet. */
  readonly #pending = new Set<Conn>();
  /** Connections whose peer joined: they are told to `onPeer` when they go. */
  readonly #joined = new Set<Conn>();
  /** Fallback sessions, by id. */
  readonly #sessions: Sessions<Conn>;
  /** Transports whose close waits for quiet: flushed on every tick. */
  readonly #closing = new Set<PeerSocket>();
  readonly #perAddress = new Map<string, number>();
  /** True while close() closes every socket: no waiting for quiet then. */
  #closingAll = false;
  #draining = false;
  #idle: (() => void) | undefined;

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
    this.bucket = new TokenBucket(config.messageRate, config.messageBurst);
    this.socketContext = {
      tick: 0,
      maxBufferedAmount: config.maxBufferedAmount,
      closeWaitTicks: Math.ceil(CLOSE_WAIT_MS / config.tickMs),
      openGraceTicks: Math.ceil(CLOSE_OPEN_GRACE_MS / config.tickMs),
    };
    this.sseContext = {
      tick: 0,
      maxBufferedAmount: config.maxBufferedAmount,
      keepAliveTicks: Math.ceil(KEEP_ALIVE_MS / config.tickMs),
    };
    const log = new Logger(options.log, options.logLevel, options.logFormat);
    this.#observer = new Observer(log);
    this.#readiness = options.readiness;
    this.#onPeer = options.onPeer;
    this.placement = placement;
    this.tokens = options.authSecrets?.length
      ? new TokenAuthority(options.authSecrets)
      : undefined;
    this.ice = config.paths.ice === false ? undefined : new IceServersEndpoint({
      turn: options.turn,
      tokens: this.tokens,
      allowOrigins: config.admission.allowOrigins,
    });
    placement?.attach({ log, moved: (keys) => this.#moved(keys) });
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
    this.#moreMetrics = options.moreMetrics;
    this.#iceKey = this.ice === undefined || config.paths.ice === false
      ? undefined
      : config.paths.ice.slice(1);
    this.#now = config.clock.now();
  }

  // What the gates, the connections and the endpoints read.

  get rejections(): Tally {
    return this.#observer.rejections;
  }

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

  get maxMessageSize(): number {
    return this.#config.maxMessageSize;
  }

  get messageRate(): number {
    return this.#config.messageRate;
  }

  get now(): number {
    return this.#now;
  }

  get nodeId(): string | undefined {
    return this.placement?.id;
  }

  get paths(): HandlerConfig["paths"] {
    return this.#config.paths;
  }

  get demo(): boolean {
    return this.#config.demo;
  }

  fromAddress(address: string): number {
    return this.#perAddress.get(address) ?? 0;
  }

  notReady(): string | undefined {
    return this.#draining ? "draining" : this.#readiness?.();
  }

  clusterView(): unknown {
    return this.placement?.view();
  }

  invalidFrame(): void {
    this.#observer.invalid++;
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
    const target = this.#target(request.url);
    if (target === undefined) {
      return textResponse(404, "Not Found: outside this server's base path");
    }
    if (request.headers.get("upgrade")?.toLowerCase() === "websocket") {
      return this.#peer(request, target, info, "websocket");
    }
    const fallback = this.#sessions.answer(
      request,
      target,
      () => this.#peer(request, target, info, "sse"),
    );
    if (fallback !== undefined) return fallback;
    return answerPlain(
      request,
      target,
      this,
      (info?.remoteAddr as Deno.NetAddr | undefined)?.hostname,
    );
  };

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
    target: string,
    info: Deno.ServeHandlerInfo | undefined,
    transport: "websocket" | "sse",
  ): Response | Promise<Response> {
    const remote = (info?.remoteAddr as Deno.NetAddr | undefined)?.hostname;
    const arrival = arrive(request, parsePeerUrl(target), remote, this);
    return arrival instanceof Promise
      ? arrival.then((a) => this.#accept(request, a, transport, true))
      : this.#accept(request, arrival, transport, false);
  }

  /**
   * Holds an arrival's connection, or answers its refusal. One that waited
   * meets admission again: peers may have come, or a drain begun, meanwhile.
   */
  #accept(
    request: Request,
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
      this,
      this.#netflux,
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
    this.#hold(conn);
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
    // Close at once, not when quiet: under sustained load waiting does not
    // find quiet, and closing every socket in one go stops the relaying.
    this.#closingAll = true;
    for (const socket of this.#closing) {
      if (!socket.flush(true)) this.#closing.delete(socket);
    }
    for (const conn of [...this.#conns]) conn.shut(code, reason);
    this.#closingAll = false;
    if (this.#conns.size > 0) {
      // Each socket is released by its close event; wait for them all, but
      // never longer than `timeout`: then forget the ones left.
      const idle = Promise.withResolvers<void>();
      this.#idle = idle.resolve;
      await settleWithin(idle.promise, timeout);
      this.#idle = undefined;
      for (const conn of [...this.#conns]) this.#release(conn);
    }
    this.#closing.clear();
    this.#stopTicking();
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
    return renderMetrics(families.concat(placed, more));
  }

  // Connections' events.

  closeConn(
    conn: Conn,
    code: number,
    reason: string,
    immediately: boolean,
  ): boolean {
    const socket = conn.socket;
    if (!socket.requestClose(code, reason, immediately || this.#closingAll)) {
      return false;
    }
    this.#recordClose(conn, code, reason, "server");
    if (socket.closing) {
      this.#closing.add(socket);
      this.#startTicking();
    }
    return true;
  }

  opened(conn: Conn): void {
    this.#pending.delete(conn);
    if (conn.remote === undefined) {
      const peer = conn.peer = conn.protocol.open(conn, conn);
      if (peer === undefined) return;
      this.#observer.opened(
        peer.id,
        conn.key!,
        conn.favored,
        conn.address,
        conn.transport === "sse" ? "sse" : undefined,
      );
    }
    if (this.#onPeer !== undefined) {
      this.#joined.add(conn);
      this.#onPeer(this.#event(conn, "joined"));
    }
  }

  closed(conn: Conn, code: number, reason: string): void {
    const peer = conn.peer;
    if (conn.remote !== undefined) {
      // A close the server asked for is counted once, when it asked.
      if (!conn.closeCounted) this.#recordClose(conn, code, reason, "client");
    } else if (peer !== undefined && peer.live) {
      conn.protocol.forget(peer);
      this.#recordClose(conn, code, reason, "client");
    }
    this.#closing.delete(conn.socket);
    this.#release(conn);
  }

  #recordClose(
    conn: Conn,
    code: number,
    reason: string,
    by: "server" | "client",
  ): void {
    this.#observer.closed(conn.peer?.id, conn.key, code, reason, by);
    if (this.#joined.delete(conn)) {
      this.#onPeer!({ ...this.#event(conn, "left"), code, reason, by });
    }
  }

  #event(conn: Conn, type: "joined" | "left") {
    return {
      type,
      key: keyHash(conn.key ?? ""),
      protocol: conn.protocol.name,
      transport: conn.transport,
      remote: conn.remote !== undefined,
    };
  }

  /** Counts a new connection in. */
  #hold(conn: Conn): void {
    this.#observer.connectionsTotal++;
    this.#conns.add(conn);
    this.#pending.add(conn);
    if (conn.counted) {
      this.#perAddress.set(
        conn.address,
        (this.#perAddress.get(conn.address) ?? 0) + 1,
      );
    }
    this.#startTicking();
  }

  /** Closes every local peer of the groups whose leases other nodes took. */
  #moved(keys: ReadonlySet<string>): void {
    for (const conn of [...this.#conns]) {
      if (conn.lease === undefined || !keys.has(conn.key ?? "")) continue;
      conn.lease.moved();
      conn.shut(
        CLOSE_SERVICE_RESTART,
        "Cannot relay: this group moved to another server node; reconnect",
      );
    }
  }

  #release(conn: Conn): void {
    if (conn.released) return;
    conn.released = true;
    this.#conns.delete(conn);
    this.#pending.delete(conn);
    if (this.#joined.delete(conn)) {
      this.#onPeer!({ ...this.#event(conn, "left"), code: 1006, by: "server" });
    }
    if (conn.socket instanceof SseSession) this.#sessions.delete(conn.socket);
    conn.remote?.release();
    conn.lease?.release();
    if (conn.counted) {
      const n = (this.#perAddress.get(conn.address) ?? 1) - 1;
      if (n === 0) this.#perAddress.delete(conn.address);
      else this.#perAddress.set(conn.address, n);
    }
    if (this.#conns.size === 0) {
      if (this.#closing.size === 0) this.#stopTicking();
      this.#idle?.();
    }
  }

  #startTicking(): void {
    this.#timer ??= this.#config.clock.every(
      this.#config.tickMs,
      () => this.#tick(),
    );
  }

  #stopTicking(): void {
    this.#timer?.[Symbol.dispose]();
    this.#timer = undefined;
  }

  #tick(): void {
    const now = this.#now = this.#config.clock.now();
    this.socketContext.tick++;
    this.sseContext.tick++;
    this.#netflux.tick();
    for (const socket of this.#closing) {
      if (!socket.flush()) this.#closing.delete(socket);
    }
    for (const session of this.#sessions.sessions()) session.keepAlive();
    for (const conn of this.#pending) {
      if (now - conn.since < this.#config.upgradeTimeout) continue;
      this.#observer.rejected("upgrade_timeout", { addr: conn.address });
      // Deno ignores close() before open: the socket closes once it opens.
      if (conn.remote !== undefined) {
        conn.close(
          CLOSE_POLICY_VIOLATION,
          "Cannot open: the upgrade timed out",
        );
      } else {
        this.closeConn(
          conn,
          CLOSE_POLICY_VIOLATION,
          "Cannot open: the upgrade timed out",
          true,
        );
      }
      this.#release(conn);
    }
    if (this.#conns.size === 0 && this.#closing.size === 0) this.#stopTicking();
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
