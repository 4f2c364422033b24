/**
 * The request handler: routes plain requests to the endpoints and WebSocket
 * upgrades to the group named by the path, and owns the set of connections
 * and the one scheduler tick that serves them all. Group state lives in the
 * pure {@linkcode Hub}; each socket's Deno quirks live in `socket.ts`; the
 * listener's lifecycle lives in `serve.ts`.
 *
 * @module
 */

import { admit, type Refusal } from "./lib/admission.ts";
import { clientAddress } from "./lib/address.ts";
import { TokenBucket } from "./lib/bucket.ts";
import {
  CLOSE_GOING_AWAY,
  CLOSE_MESSAGE_TOO_BIG,
  CLOSE_POLICY_VIOLATION,
  CLOSE_SERVICE_RESTART,
  ERR_BLOCKING_MEMBER,
  ERR_HEARTBEAT,
  ERR_KEY,
  ERR_MESSAGE,
  ERR_URL,
} from "./lib/codes.ts";
import { CloseError, Hub, type HubStats, type Peer } from "./lib/hub.ts";
import type { PeerTransport } from "./lib/hub.ts";
import { keyHash, type LogFields, Logger, type LogLevel } from "./lib/log.ts";
import { collect, renderMetrics, Tally } from "./lib/metrics.ts";
import { SERVER_METRICS } from "./lib/server_metrics.ts";
import { checkKey, parsePeerUrl, type PeerUrl } from "./lib/url.ts";
import { splitTokenPath, TokenAuthority } from "./lib/token.ts";
import { settleWithin } from "./deadline.ts";
import { demoResponse } from "./demo/page.ts";
import { IceServersEndpoint } from "./ice.ts";
import {
  type HandlerConfig,
  type HandlerOptions,
  resolveHandlerOptions,
} from "./options.ts";
import { AdaptedSocket, type SocketContext } from "./socket.ts";
import {
  EdgeConn,
  type EdgeHost,
  openPipe,
  type PendingPipe,
} from "./cluster/edge.ts";
import type { ClusterNode, Route } from "./cluster/node.ts";
import type { PipeClaims } from "./lib/pipe_auth.ts";

export type { HandlerOptions } from "./options.ts";

/** How long a close may wait for its socket to go quiet (see socket.ts). */
const CLOSE_WAIT_MS = 1000;
/** How long after the open a frame counts as due: clients send at once. */
const CLOSE_OPEN_GRACE_MS = 500;
/** How long a pipe to an owner may take to open before it is unreachable. */
const PIPE_CONNECT_TIMEOUT_MS = 1500;
/** Frames a pipe may queue while it opens. */
const PIPE_MAX_QUEUED = 256;

/** A mounted sigver: the request handler and what controls it. */
export interface SigverHandler {
  /**
   * Handles one request: a WebSocket upgrade joins the group named by the
   * path; a plain request gets an endpoint or a short text answer.
   * Bound: pass it as it is to `Deno.serve`.
   */
  readonly fetch: (
    request: Request,
    info?: Deno.ServeHandlerInfo,
  ) => Response | Promise<Response>;
  /** The group state. */
  readonly hub: Hub;
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
  /** Sockets held: open peers and upgrades in progress. */
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

const _NO_HEADERS = new Headers();

/**
 * The URL of a pipe: the owner's address and the peer's own path. The path
 * is informative (the key travels signed in a header): one that is no URL
 * path goes percent-encoded.
 */
function _pipeUrl(base: string, target: string): string {
  try {
    return new URL(base + target).href;
  } catch {
    return `${base}/${encodeURIComponent(target.slice(1))}`;
  }
}

function _text(status: number, body: string, headers?: HeadersInit): Response {
  const h = new Headers(headers);
  h.set("content-type", "text/plain; charset=utf-8");
  h.set("cache-control", "no-store");
  return new Response(body + "\n", { status, headers: h });
}

/**
 * Log levels of closes: a peer's ordinary comings and goings are `debug`
 * (tens of thousands a minute on a busy server); a peer closed for a limit
 * or for bad input is `info`, with its reason.
 */
function _closeLevel(code: number, by: "server" | "client"): LogLevel {
  if (by === "client") return "debug";
  return code === CLOSE_GOING_AWAY || code === ERR_HEARTBEAT ||
      code === ERR_BLOCKING_MEMBER
    ? "debug"
    : "info";
}

/**
 * One connection: its socket (it is one: one object per peer, not two), its
 * peer once open, and its limits' state.
 */
class _Conn extends AdaptedSocket implements PeerTransport {
  readonly handler: _Handler;
  readonly address: string;
  readonly counted: boolean;
  /** The key, or `undefined` when the request URL had no path. */
  readonly key: string | undefined;
  readonly favored: boolean;
  peer: Peer | undefined = undefined;
  /** The rate limit's bucket (see `lib/bucket.ts`). */
  tokens: number;
  last: number;
  /** When the upgrade was accepted (for the upgrade timeout). */
  readonly since: number;
  released = false;
  /** Whether it holds a cluster lease on its key (released with it). */
  leased = false;
  /** Whether it came through a pipe from another node. */
  piped = false;

  constructor(
    handler: _Handler,
    raw: WebSocket,
    address: string,
    counted: boolean,
    key: string | undefined,
    favored: boolean,
    now: number,
  ) {
    super(raw, handler.socketContext);
    this.handler = handler;
    this.address = address;
    this.counted = counted;
    this.key = key;
    this.favored = favored;
    this.tokens = handler.bucket.burst;
    // The bucket runs on the tick's clock, the upgrade timeout on the real one.
    this.last = handler.now;
    this.since = now;
  }

  /** The connection's socket: itself (an `EdgeConn` holds one). */
  get socket(): AdaptedSocket {
    return this;
  }

  send(frame: Uint8Array): void {
    if (!this.trySend(frame)) {
      this.handler.rejections.add("slow_reader");
      throw new CloseError(
        CLOSE_POLICY_VIOLATION,
        "Cannot send: the peer reads too slowly",
      );
    }
  }

  close(code: number, reason: string): void {
    this.handler.closeConn(this, code, reason, false);
  }

  onOpen(): void {
    this.handler.opened(this);
  }

  onFrame(data: ArrayBuffer | string): void {
    this.handler.frame(this, data);
  }

  onClose(code: number, reason: string): void {
    this.handler.closed(this, code, reason);
  }
}

class _Handler implements SigverHandler, EdgeHost {
  readonly hub: Hub;
  readonly bucket: TokenBucket;
  readonly socketContext: SocketContext;
  readonly rejections = new Tally(["reason"]);
  readonly #config: HandlerConfig;
  readonly #log: Logger;
  readonly #readiness: (() => string | undefined) | undefined;
  readonly #moreMetrics: HandlerOptions["moreMetrics"];
  /** The clock's time at the last tick: the rate limit's coarse clock. */
  #now: number;
  #timer: Disposable | undefined;
  readonly #conns = new Set<_Conn | EdgeConn>();
  /** Upgrades accepted whose socket has not opened yet. */
  readonly #pending = new Set<_Conn | EdgeConn>();
  readonly #cluster: ClusterNode | undefined;
  /** Checks access tokens when `authSecrets` are set. */
  readonly #tokens: TokenAuthority | undefined;
  /** Answers the ICE servers path, unless it is off. */
  readonly #ice: IceServersEndpoint | undefined;
  /** Sockets whose close waits for quiet: flushed on every tick. */
  readonly #closing = new Set<AdaptedSocket>();
  readonly #perAddress = new Map<string, number>();
  /** True while close() closes every socket: no waiting for quiet then. */
  #closingAll = false;
  #draining = false;
  #idle: (() => void) | undefined;
  #connectionsTotal = 0;
  #invalid = 0;
  readonly #closes = new Tally(["code", "by"]);

  constructor(options: HandlerOptions) {
    const config = this.#config = resolveHandlerOptions(options);
    // WebSocket.send copies the frame at once, and the ArrayBuffer of a
    // received frame is ours: the hub may reuse its buffer, and write a
    // relayed frame's header over the received one.
    this.hub = new Hub({
      slots: config.slots,
      random: options.random,
      reuseFrames: true,
    });
    this.bucket = new TokenBucket(config.messageRate, config.messageBurst);
    this.socketContext = {
      tick: 0,
      maxBufferedAmount: config.maxBufferedAmount,
      closeWaitTicks: Math.ceil(CLOSE_WAIT_MS / config.tickMs),
      openGraceTicks: Math.ceil(CLOSE_OPEN_GRACE_MS / config.tickMs),
    };
    this.#log = new Logger(options.log, options.logLevel, options.logFormat);
    this.#readiness = options.readiness;
    this.#cluster = options.clusterNode;
    this.#tokens = options.authSecrets?.length
      ? new TokenAuthority(options.authSecrets)
      : undefined;
    this.#ice = config.paths.ice === false
      ? undefined
      : new IceServersEndpoint({
        turn: options.turn,
        tokens: this.#tokens,
        allowOrigins: config.admission.allowOrigins,
      });
    if (this.#cluster !== undefined) {
      this.#cluster.onLost = (key) => this.#closeKey(key);
    }
    this.#moreMetrics = options.moreMetrics;
    this.#now = config.clock.now();
  }

  get draining(): boolean {
    return this.#draining;
  }

  get connections(): number {
    return this.#conns.size;
  }

  get maxMessageSize(): number {
    return this.#config.maxMessageSize;
  }

  get now(): number {
    return this.#now;
  }

  readonly fetch = (
    request: Request,
    info?: Deno.ServeHandlerInfo,
  ): Response | Promise<Response> => {
    if (request.headers.get("upgrade")?.toLowerCase() === "websocket") {
      return this.#upgrade(request, info);
    }
    return this.#plain(request, info);
  };

  logEvent(level: LogLevel, event: string, fields?: LogFields): void {
    this.#log.write(level, event, fields);
  }

  drain(): void {
    if (this.#draining) return;
    this.#draining = true;
    this.#log.write("info", "drain", { peers: this.hub.size });
  }

  async close(
    code = CLOSE_GOING_AWAY,
    reason = "Server shutting down",
    timeout = 10000,
  ): Promise<void> {
    // Close at once, not when quiet: under sustained load waiting does not
    // find quiet, and closing every socket in one go stops the relaying.
    this.#closingAll = true;
    for (const socket of this.#closing) {
      if (!socket.flush(true)) this.#closing.delete(socket);
    }
    for (const conn of [...this.#conns]) {
      if (conn instanceof _Conn && conn.peer?.live) {
        this.hub.close(conn.peer, code, reason);
      } else conn.close(code, reason);
    }
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
    const families = collect(SERVER_METRICS, {
      stats: this.hub.stats(),
      counters: this.hub.counters,
      draining: this.#draining,
      connectionsTotal: this.#connectionsTotal,
      invalid: this.#invalid,
      closes: this.#closes,
      rejections: this.rejections,
    });
    const more = this.#moreMetrics?.() ?? [];
    const cluster = this.#cluster?.metrics() ?? [];
    return renderMetrics(families.concat(cluster, more));
  }

  /**
   * Closes a connection's socket, and counts and logs the close, unless the
   * socket was already closing.
   */
  closeConn(
    conn: _Conn | EdgeConn,
    code: number,
    reason: string,
    immediately: boolean,
  ): void {
    const socket = conn.socket;
    if (!socket.requestClose(code, reason, immediately || this.#closingAll)) {
      return;
    }
    this.#recordClose(conn, code, reason, "server");
    if (socket.closing) {
      this.#closing.add(socket);
      this.#startTicking();
    }
  }

  closeEdge(conn: EdgeConn, code: number, reason: string): void {
    this.closeConn(conn, code, reason, false);
  }

  edgeOpened(conn: EdgeConn): void {
    this.#pending.delete(conn);
  }

  edgeClosed(conn: EdgeConn, code: number, reason: string): void {
    this.#recordClose(conn, code, reason, "client");
    this.#closing.delete(conn.socket);
    this.#release(conn);
  }

  opened(conn: _Conn): void {
    this.#pending.delete(conn);
    if (conn.key === undefined) {
      conn.close(ERR_URL, "Cannot join: the request URL cannot be parsed");
      return;
    }
    const problem = checkKey(conn.key);
    if (problem !== undefined) {
      conn.close(ERR_KEY, problem);
      return;
    }
    conn.peer = this.hub.open(conn, conn.key, conn.favored);
    if (this.#log.enabled("debug")) {
      this.#log.write("debug", "open", {
        peer: conn.peer.id,
        key: keyHash(conn.key),
        favored: conn.favored || undefined,
        addr: conn.address,
      });
    }
  }

  frame(conn: _Conn, data: ArrayBuffer | string): void {
    const peer = conn.peer;
    if (peer === undefined || !peer.live) return;
    if (typeof data === "string") {
      this.#invalid++;
      this.hub.close(
        peer,
        ERR_MESSAGE,
        "Cannot handle a text frame: frames must be binary",
      );
      return;
    }
    const size = data.byteLength;
    const max = this.#config.maxMessageSize;
    if (size > max) {
      this.#invalid++;
      this.rejections.add("message_size");
      this.hub.close(
        peer,
        CLOSE_MESSAGE_TOO_BIG,
        `Cannot handle message: ${size} bytes is over the ${max} byte limit`,
      );
      return;
    }
    // The scheduler's clock: refills come at tick boundaries.
    if (!this.bucket.take(conn, this.#now)) {
      this.rejections.add("message_rate");
      this.hub.close(
        peer,
        CLOSE_POLICY_VIOLATION,
        `Cannot relay: over ${this.#config.messageRate} messages per second`,
      );
      return;
    }
    this.hub.receive(peer, new Uint8Array(data));
  }

  closed(conn: _Conn, code: number, reason: string): void {
    const peer = conn.peer;
    if (peer !== undefined && peer.live) {
      this.hub.forget(peer);
      this.#recordClose(conn, code, reason, "client");
    }
    this.#closing.delete(conn.socket);
    this.#release(conn);
  }

  #recordClose(
    conn: _Conn | EdgeConn,
    code: number,
    reason: string,
    by: "server" | "client",
  ): void {
    this.#closes.add(String(code), by);
    const level = _closeLevel(code, by);
    if (this.#log.enabled(level)) {
      this.#log.write(level, "close", {
        peer: conn instanceof _Conn ? conn.peer?.id : undefined,
        key: conn.key === undefined ? undefined : keyHash(conn.key),
        code,
        reason: reason || undefined,
        by,
      });
    }
  }

  #plain(
    request: Request,
    info?: Deno.ServeHandlerInfo,
  ): Response | Promise<Response> {
    const parsed = parsePeerUrl(request.url);
    const path = parsed === undefined ? "" : "/" + parsed.key;
    const { health, ready, metrics, cluster, ice } = this.#config.paths;
    // The one path with more methods than GET and HEAD: CORS preflights.
    if (path === ice && this.#ice !== undefined) {
      return this.#ice.handle(request, (refusal) => {
        this.rejections.add(refusal.reason);
        const remote = (info?.remoteAddr as Deno.NetAddr | undefined)?.hostname;
        this.#log.write("info", "reject", {
          reason: refusal.reason,
          status: refusal.status,
          path: ice,
          addr: this.#who(remote, request.headers, this.#config.trustProxy)
            .address,
        });
      });
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      return _text(
        405,
        "Method Not Allowed: this is a WebRTC signaling server",
        { allow: "GET, HEAD" },
      );
    }
    if (path === health) return _text(200, "ok");
    if (path === cluster && this.#cluster !== undefined) {
      return Response.json(this.#cluster.view(), {
        headers: { "cache-control": "no-store" },
      });
    }
    if (path === ready) {
      const why = this.#draining ? "draining" : this.#readiness?.();
      return why === undefined ? _text(200, "ready") : _text(503, why);
    }
    if (path === metrics) {
      return new Response(this.metrics(), {
        headers: {
          "content-type": "text/plain; version=0.0.4; charset=utf-8",
          "cache-control": "no-store",
        },
      });
    }
    if (this.#config.demo) {
      const demo = demoResponse(path, request.method === "HEAD", {
        iceServersPath: this.#ice?.enabled ? ice || undefined : undefined,
      });
      if (demo !== undefined) return demo;
    }
    return _text(
      426,
      "Upgrade Required: this is a WebRTC signaling server (sigver). Open a WebSocket to ws[s]://HOST/<key>",
      { upgrade: "websocket", connection: "Upgrade" },
    );
  }

  /**
   * Answers a refused upgrade, and counts and logs it. The log carries the
   * key's hash: `key` when known (never a path with a token in it), else the
   * path when no token can be in it.
   */
  #refuse(
    refusal: Refusal,
    address: string,
    request: Request,
    key: string | undefined,
  ): Response {
    this.rejections.add(refusal.reason);
    if (this.#log.enabled("info")) {
      key ??= this.#tokens === undefined
        ? parsePeerUrl(request.url)?.key
        : undefined;
      this.#log.write("info", "reject", {
        reason: refusal.reason,
        status: refusal.status,
        key: key === undefined ? undefined : keyHash(key),
        addr: address,
      });
    }
    return _text(refusal.status, refusal.message);
  }

  /** The client's address, and whether it counts against its limit. */
  #who(
    remote: string | undefined,
    headers: Headers,
    trustProxy: boolean,
  ): { address: string; counted: boolean } {
    const { address, local } = clientAddress(remote, headers, trustProxy);
    return {
      address,
      counted: !local && this.#config.admission.maxPeersPerAddress > 0,
    };
  }

  #admit(
    origin: string | null,
    address: string,
    counted: boolean,
  ): Refusal | undefined {
    return admit({
      draining: this.#draining,
      origin,
      counted,
      peers: this.#conns.size,
      fromAddress: counted ? this.#perAddress.get(address) ?? 0 : 0,
    }, this.#config.admission);
  }

  #upgrade(
    request: Request,
    info?: Deno.ServeHandlerInfo,
  ): Response | Promise<Response> {
    const peer = parsePeerUrl(request.url);
    if (this.#cluster !== undefined || this.#tokens !== undefined) {
      return this.#gatedUpgrade(request, info, peer);
    }
    const remote = (info?.remoteAddr as Deno.NetAddr | undefined)?.hostname;
    const { address, counted } = this.#who(
      remote,
      request.headers,
      this.#config.trustProxy,
    );
    const refusal = this.#admit(
      request.headers.get("origin"),
      address,
      counted,
    );
    if (refusal !== undefined) {
      return this.#refuse(refusal, address, request, peer?.key);
    }
    return this.#acceptLocal(request, address, counted, peer, undefined);
  }

  /**
   * An upgrade that needs awaiting: an access token to check, or a cluster
   * node's routing. A pipe from another node is checked and served here (it
   * needs no token: the edge checked it); a client is checked, then served
   * here when this node owns (or can claim) its group, or piped to the owner.
   */
  async #gatedUpgrade(
    request: Request,
    info: Deno.ServeHandlerInfo | undefined,
    url: PeerUrl | undefined,
  ): Promise<Response> {
    const cluster = this.#cluster;
    const remote = (info?.remoteAddr as Deno.NetAddr | undefined)?.hostname;
    let claims: PipeClaims | undefined;
    if (cluster !== undefined) {
      const check = await cluster.auth.check(request.headers, Date.now());
      if (check.kind === "refused") {
        return this.#refuse(
          {
            status: 403,
            reason: "pipe_signature",
            message: `Forbidden: ${check.reason}`,
          },
          remote ?? "unknown",
          request,
          undefined,
        );
      }
      if (check.kind === "pipe") claims = check.claims;
    }
    // A pipe carries its client's address and Origin for this node's limits.
    const { address, counted } = claims === undefined
      ? this.#who(remote, request.headers, this.#config.trustProxy)
      : this.#who(claims.client, _NO_HEADERS, false);
    const origin = claims === undefined
      ? request.headers.get("origin")
      : claims.origin;
    const refusal = this.#admit(origin, address, counted);
    if (refusal !== undefined) {
      return this.#refuse(refusal, address, request, undefined);
    }
    // A pipe's key comes signed, as it arrived at the edge: its path may have
    // been normalized by the edge's WebSocket client on the way.
    let peer = claims === undefined
      ? url
      : { key: claims.key, favored: claims.favored };
    if (
      this.#tokens !== undefined && claims === undefined && peer !== undefined
    ) {
      const access = splitTokenPath(peer.key);
      const check = await this.#tokens.check({ ...access, now: Date.now() });
      if (!check.ok) {
        return this.#refuse(
          {
            status: check.status,
            reason: check.reason,
            message: check.text,
          },
          address,
          request,
          undefined,
        );
      }
      peer = { key: access.key, favored: peer.favored };
    }
    if (
      cluster === undefined || peer === undefined ||
      checkKey(peer.key) !== undefined
    ) {
      // No cluster, or a bad URL or key (closed with 4745 or 4741 after the
      // open): no group, no lease.
      return this.#acceptLocal(request, address, counted, peer, undefined);
    }
    const key = peer.key;
    if (claims !== undefined) {
      if (!await cluster.accept(key)) {
        return this.#refuse(
          {
            status: 409,
            reason: "pipe_owner",
            message: "Conflict: this node does not own the group",
          },
          address,
          request,
          key,
        );
      }
      return this.#acceptLocal(request, address, counted, peer, {
        cluster,
        piped: true,
      });
    }
    const pipeTarget = peer.favored ? `/${key}?favored` : `/${key}`;
    let route: Route = await cluster.route(key);
    for (let attempt = 0; !route.local && attempt < 3; attempt++) {
      const headers = await cluster.auth.sign({
        node: cluster.id,
        key,
        favored: peer.favored,
        client: address,
        origin,
      }, Date.now());
      const opened = await openPipe(_pipeUrl(route.url, pipeTarget), headers, {
        connectTimeout: PIPE_CONNECT_TIMEOUT_MS,
        maxBufferedAmount: this.#config.maxBufferedAmount,
        maxQueued: PIPE_MAX_QUEUED,
      });
      if ("pipe" in opened) {
        return this.#acceptEdge(request, address, counted, key, route, opened);
      }
      const end = opened.end;
      if (end.kind === "unreachable") {
        route = await cluster.unreachable(key, route.node);
      } else if (end.kind === "refused" && end.status === 409) {
        route = await cluster.refused(key, route.node);
      } else {
        const status = end.kind === "refused" ? end.status : 503;
        return this.#refuse(
          {
            status,
            reason: "owner_refused",
            message: status === 503
              ? "Service Unavailable: the server node of this group is full or shutting down"
              : `Cannot join: the server node of this group answered ${status}`,
          },
          address,
          request,
          key,
        );
      }
    }
    if (!route.local) {
      return this.#refuse(
        {
          status: 503,
          reason: "owner_unreachable",
          message:
            "Service Unavailable: the server node of this group cannot be reached",
        },
        address,
        request,
        key,
      );
    }
    return this.#acceptLocal(request, address, counted, peer, {
      cluster,
      piped: false,
    });
  }

  /**
   * Upgrades a peer whose group lives here; with a lease, when this node
   * owns the group in a cluster.
   */
  #acceptLocal(
    request: Request,
    address: string,
    counted: boolean,
    peer: PeerUrl | undefined,
    lease: { cluster: ClusterNode; piped: boolean } | undefined,
  ): Response {
    let upgraded: { socket: WebSocket; response: Response };
    try {
      upgraded = Deno.upgradeWebSocket(request, { idleTimeout: 0 });
    } catch (error) {
      if (lease !== undefined) lease.cluster.release(peer!.key);
      const why = error instanceof Error ? error.message : String(error);
      return this.#refuse(
        {
          status: 400,
          reason: "handshake",
          message: `Bad Request: ${why}`,
        },
        address,
        request,
        peer?.key,
      );
    }
    const conn = new _Conn(
      this,
      upgraded.socket,
      address,
      counted,
      peer?.key,
      peer?.favored ?? false,
      this.#config.clock.now(),
    );
    if (lease !== undefined) {
      conn.leased = true;
      if (lease.piped) {
        conn.piped = true;
        lease.cluster.pipedIn(1);
      }
    }
    this.#hold(conn);
    return upgraded.response;
  }

  /** Upgrades a peer whose group lives on another node, over an open pipe. */
  #acceptEdge(
    request: Request,
    address: string,
    counted: boolean,
    key: string,
    route: Route & { local: false },
    opened: { pipe: PendingPipe },
  ): Response {
    let upgraded: { socket: WebSocket; response: Response };
    try {
      upgraded = Deno.upgradeWebSocket(request, { idleTimeout: 0 });
    } catch (error) {
      opened.pipe.pipe?.close(1000, "The peer's upgrade failed");
      const why = error instanceof Error ? error.message : String(error);
      return this.#refuse(
        {
          status: 400,
          reason: "handshake",
          message: `Bad Request: ${why}`,
        },
        address,
        request,
        key,
      );
    }
    const conn = new EdgeConn(this, upgraded.socket, opened.pipe, {
      address,
      counted,
      key,
      owner: route.node,
      now: this.#config.clock.now(),
    });
    this.#cluster!.pipeOpened(key, route);
    this.#hold(conn);
    return upgraded.response;
  }

  /** Counts a new connection in. */
  #hold(conn: _Conn | EdgeConn): void {
    this.#connectionsTotal++;
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

  /** Closes every local peer of a group whose lease another node took. */
  #closeKey(key: string): void {
    for (const conn of [...this.#conns]) {
      if (!(conn instanceof _Conn) || conn.key !== key) continue;
      conn.leased = false;
      const reason =
        "Cannot relay: this group moved to another server node; reconnect";
      if (conn.peer?.live) {
        this.hub.close(conn.peer, CLOSE_SERVICE_RESTART, reason);
      } else conn.close(CLOSE_SERVICE_RESTART, reason);
    }
  }

  #release(conn: _Conn | EdgeConn): void {
    if (conn.released) return;
    conn.released = true;
    this.#conns.delete(conn);
    this.#pending.delete(conn);
    if (conn instanceof EdgeConn) {
      this.#cluster?.pipeClosed(conn.key, conn.owner);
    } else if (conn.leased) {
      if (conn.piped) this.#cluster?.pipedIn(-1);
      this.#cluster?.release(conn.key!);
    }
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
    this.hub.tick();
    for (const socket of this.#closing) {
      if (!socket.flush()) this.#closing.delete(socket);
    }
    for (const conn of this.#pending) {
      if (now - conn.since < this.#config.upgradeTimeout) continue;
      this.rejections.add("upgrade_timeout");
      this.#log.write("info", "reject", {
        reason: "upgrade_timeout",
        addr: conn.address,
      });
      // Deno ignores close() before open: the socket closes once it opens.
      if (conn instanceof EdgeConn) {
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
export function createHandler(options: HandlerOptions = {}): SigverHandler {
  return new _Handler(options);
}
