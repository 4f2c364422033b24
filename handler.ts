/**
 * The Deno binding: a `fetch` handler that upgrades requests with
 * `Deno.upgradeWebSocket`, feeds frames to a {@linkcode Hub} and answers the
 * plain HTTP endpoints, and {@linkcode serve} which runs it on `Deno.serve`.
 *
 * @module
 */

import {
  CloseError,
  ERR_KEY,
  ERR_MESSAGE,
  ERR_URL,
  Hub,
  type HubStats,
  type Peer,
  type PeerTransport,
} from "./lib/hub.ts";
import {
  enabled,
  formatLine,
  keyHash,
  type LogFields,
  type LogFormat,
  type LogLevel,
} from "./lib/log.ts";
import { demoResponse } from "./lib/demo.ts";
import { type MetricFamily, renderMetrics } from "./lib/metrics.ts";
import { checkKey, parsePeerUrl } from "./lib/url.ts";

/** The server is going away (shutdown). */
export const CLOSE_GOING_AWAY = 1001;
/** A limit of the server's policy was passed (rate, slow reader). */
export const CLOSE_POLICY_VIOLATION = 1008;
/** A message was larger than the maximum message size. */
export const CLOSE_MESSAGE_TOO_BIG = 1009;

// Deno drops a server socket without sending its close frame when a data
// frame arrives after close() (the client sees 1006, not our code and
// reason). So a peer that sent something in the current or the previous
// scheduler tick (a flood, a bad frame in a burst, connect right after the
// open) is closed at the first tick after a whole tick went by without a
// frame, or after CLOSE_WAIT_MS at the latest. Ticks, not clock readings:
// reading a clock on every frame costs 1 % of a relayed message.
const CLOSE_OPEN_GRACE_MS = 500;
const CLOSE_WAIT_MS = 1000;

/** Options of {@linkcode createHandler}. */
export interface HandlerOptions {
  /**
   * Milliseconds between two heartbeats; a peer silent for three periods is
   * closed with 4742.
   * @default {5000}
   */
  heartbeatInterval?: number;
  /**
   * Largest frame accepted, in bytes; a larger one closes the peer with 1009.
   * @default {65536}
   */
  maxMessageSize?: number;
  /**
   * Most WebSocket peers at once (0: no limit); past it, upgrades get 503.
   * @default {the open-file limit less 256, or 10000 when it can't be read}
   */
  maxPeers?: number;
  /**
   * Most peers from one client address (0: no limit); past it, upgrades get
   * 429. Loopback socket addresses are not counted unless `trustProxy` is
   * set: they are a local reverse proxy, whose clients are counted through
   * `X-Forwarded-For` then.
   * @default {256}
   */
  maxPeersPerAddress?: number;
  /**
   * Take the client address from `X-Forwarded-For` (or `Forwarded`), as set
   * by a reverse proxy in front of the server.
   * @default {false}
   */
  trustProxy?: boolean;
  /**
   * Messages per second a peer may send on average (0: no limit); past it
   * and its burst, the peer is closed with 1008.
   * @default {2000}
   */
  messageRate?: number;
  /**
   * Messages a peer may send at once above its rate.
   * @default {4000}
   */
  messageBurst?: number;
  /**
   * Bytes that may wait in a peer's send buffer (0: no limit); a slower
   * reader is closed with 1008.
   * @default {1048576}
   */
  maxBufferedAmount?: number;
  /**
   * Milliseconds an accepted upgrade may take to open (0: no limit); a
   * stalled one is closed.
   * @default {10000}
   */
  upgradeTimeout?: number;
  /**
   * Origins allowed to open a socket; an upgrade from another origin gets
   * 403. Empty: every origin is allowed.
   * @default {[]}
   */
  allowOrigins?: readonly string[];
  /**
   * Refuse (403) upgrades that carry no `Origin` header (bots send none).
   * @default {false}
   */
  requireOrigin?: boolean;
  /**
   * Path of the liveness endpoint, or `false` to turn it off.
   * @default {"/healthz"}
   */
  healthPath?: string | false;
  /**
   * Path of the readiness endpoint (503 while draining), or `false`.
   * @default {"/readyz"}
   */
  readyPath?: string | false;
  /**
   * Path of the Prometheus metrics endpoint, or `false`.
   * @default {"/metrics"}
   */
  metricsPath?: string | false;
  /**
   * Serve the demo page to plain GET and HEAD requests at `/` (with its
   * scripts at `/demo/app.js` and `/demo/client.js`). WebSocket upgrades on
   * these paths still join the group named by the path.
   * @default {true}
   */
  demo?: boolean;
  /**
   * Where log lines go (one line per call, no newline). No logging without.
   */
  log?: (line: string) => void;
  /**
   * Least severe level written.
   * @default {"info"}
   */
  logLevel?: LogLevel;
  /**
   * Format of log lines.
   * @default {"text"}
   */
  logFormat?: LogFormat;
  /**
   * Milliseconds clock for rate limits and upgrade timeouts.
   * @default {performance.now}
   */
  now?: () => number;
  /**
   * Random source for signaling ids, in [0, 1).
   * @default {a source backed by `crypto.getRandomValues`}
   */
  random?: () => number;
}

/** A mounted sigver: the request handler and what controls it. */
export interface SigverHandler {
  /**
   * Handles one request: a WebSocket upgrade joins the group named by the
   * path; a plain request gets an endpoint or a short text answer.
   * Bound: pass it as it is to `Deno.serve`.
   */
  readonly fetch: (request: Request, info?: Deno.ServeHandlerInfo) => Response;
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

/**
 * Reads the soft open-file limit of this process from `/proc/self/limits`,
 * without prompting for permission.
 *
 * @returns The limit, or `undefined` when it can't be read.
 */
function _openFileLimit(): number | undefined {
  const path = "/proc/self/limits";
  try {
    if (
      Deno.permissions.querySync({ name: "read", path }).state !== "granted"
    ) {
      return undefined;
    }
    const line = Deno.readTextFileSync(path).split("\n").find((l) =>
      l.startsWith("Max open files")
    );
    const soft = Number(line?.split(/\s+/)[3]);
    return Number.isFinite(soft) && soft > 0 ? soft : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The default of `maxPeers`: the open-file limit less 256 descriptors of
 * headroom (files, listeners, upgrades in progress), or 10000.
 *
 * @returns The default peer limit.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultMaxPeers } from "./handler.ts";
 * assert.ok(defaultMaxPeers() >= 64);
 * ```
 */
export function defaultMaxPeers(): number {
  const limit = _openFileLimit();
  return limit === undefined ? 10000 : Math.max(64, limit - 256);
}

function _positive(
  name: string,
  value: number | undefined,
  fallback: number,
  zero = true,
): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 0 || (!zero && value === 0)) {
    throw new RangeError(
      `Cannot create handler: ${name} must be a ${
        zero ? "non-negative" : "positive"
      } number, got ${value}`,
    );
  }
  return value;
}

function _isLoopback(address: string): boolean {
  return address.startsWith("127.") || address === "::1" ||
    address.startsWith("::ffff:127.");
}

/** The client address a trusted proxy reports: the last hop it saw. */
function _forwardedFor(headers: Headers): string | undefined {
  const xff = headers.get("x-forwarded-for");
  if (xff) {
    const last = xff.split(",").pop()?.trim();
    if (last) return last;
  }
  const fwd = headers.get("forwarded");
  if (fwd) {
    const m = [...fwd.matchAll(/for=("[^"]*"|[^;,\s]*)/gi)].pop();
    const node = m?.[1].replace(/^"|"$/g, "") ?? "";
    // Drop the port (RFC 7239: `"[v6]:port"`, `v4:port`), or one client
    // would count as a new address on every connection.
    const host = node.startsWith("[")
      ? node.slice(1).split("]", 1)[0]
      : node.split(":").length === 2
      ? node.split(":")[0]
      : node;
    if (host) return host;
  }
  return undefined;
}

function _text(status: number, body: string, headers?: HeadersInit): Response {
  const h = new Headers(headers);
  h.set("content-type", "text/plain; charset=utf-8");
  h.set("cache-control", "no-store");
  return new Response(body + "\n", { status, headers: h });
}

class _Conn implements PeerTransport {
  readonly socket: WebSocket;
  readonly owner: _Sigver;
  readonly address: string;
  readonly counted: boolean;
  readonly key: string;
  readonly tag: string;
  readonly favored: boolean;
  peer: Peer | undefined = undefined;
  tokens: number;
  last: number;
  deadline: number;
  released = false;
  /** How to close a socket released before it opened, once it opens. */
  closeOnOpen: [number, string] | undefined = undefined;
  /** The scheduler tick in which the last frame arrived (see CLOSE_WAIT_MS). */
  seen = -Infinity;
  /** A close that waits for the peer to go quiet: code, reason, since. */
  closing: [number, string, number] | undefined = undefined;

  constructor(
    owner: _Sigver,
    socket: WebSocket,
    address: string,
    counted: boolean,
    key: string,
    favored: boolean,
  ) {
    this.owner = owner;
    this.socket = socket;
    this.address = address;
    this.counted = counted;
    this.key = key;
    this.tag = keyHash(key);
    this.favored = favored;
    this.tokens = owner.burst;
    this.last = owner.clock;
    this.deadline = owner.now();
  }

  send(frame: Uint8Array): void {
    const s = this.socket;
    if (s.readyState !== WebSocket.OPEN) return;
    const max = this.owner.maxBuffered;
    if (max > 0 && s.bufferedAmount > max) {
      this.owner.reject("slow_reader");
      throw new CloseError(
        CLOSE_POLICY_VIOLATION,
        "Cannot send: the peer reads too slowly",
      );
    }
    s.send(frame);
  }

  close(code: number, reason: string): void {
    this.owner.closed(this, code, reason, "server");
    if (
      this.seen >= this.owner.ticks - 1 && !this.released &&
      !this.owner.closingAll && this.socket.readyState === WebSocket.OPEN
    ) {
      this.closing = [code, reason, this.owner.now()];
      this.owner.closeLater(this);
    } else this.closeNow(code, reason);
  }

  closeNow(code: number, reason: string): void {
    this.closing = undefined;
    try {
      this.socket.close(code, reason);
    } catch {
      // Already closing: the close event will follow.
    }
  }
}

class _Sigver implements SigverHandler {
  readonly hub: Hub;
  readonly maxBuffered: number;
  readonly burst: number;
  readonly now: () => number;
  /** Scheduler ticks so far: frames are timed in ticks (CLOSE_WAIT_MS). */
  ticks = 0;
  /** `now()` at the last tick: the coarse clock of the rate limit. */
  clock: number;
  #rate: number;
  #maxSize: number;
  #maxPeers: number;
  #maxPerAddress: number;
  #trustProxy: boolean;
  #upgradeTimeout: number;
  #origins: Set<string>;
  #requireOrigin: boolean;
  #paths: {
    health: string | false;
    ready: string | false;
    metrics: string | false;
  };
  #demo: boolean;
  #log?: (line: string) => void;
  #logLevel: LogLevel;
  #logFormat: LogFormat;
  #tickMs: number;
  #timer: ReturnType<typeof setInterval> | undefined;
  #conns = new Set<_Conn>();
  #pending = new Set<_Conn>();
  #closing = new Set<_Conn>();
  /** True while close() closes every socket: no waiting for quiet then. */
  closingAll = false;
  #perAddress = new Map<string, number>();
  #draining = false;
  #idle: (() => void) | undefined;
  #connectionsTotal = 0;
  #invalid = 0;
  #closes = new Map<string, number>();
  #rejections = new Map<string, number>();

  constructor(options: HandlerOptions) {
    const heartbeat = _positive(
      "heartbeatInterval",
      options.heartbeatInterval,
      5000,
      false,
    );
    // One wheel slot per 100 ms: each peer's heartbeat falls within 100 ms of
    // its own period, and one timer serves every peer.
    const slots = Math.max(1, Math.min(50, Math.round(heartbeat / 100)));
    this.#tickMs = heartbeat / slots;
    // WebSocket.send copies the frame at once: the hub may reuse its buffer.
    this.hub = new Hub({ slots, random: options.random, reuseFrames: true });
    this.#maxSize = _positive(
      "maxMessageSize",
      options.maxMessageSize,
      65536,
      false,
    );
    this.#maxPeers = options.maxPeers === undefined
      ? defaultMaxPeers()
      : _positive("maxPeers", options.maxPeers, 0);
    this.#maxPerAddress = _positive(
      "maxPeersPerAddress",
      options.maxPeersPerAddress,
      256,
    );
    this.#trustProxy = options.trustProxy ?? false;
    this.#rate = _positive("messageRate", options.messageRate, 2000) / 1000;
    this.burst = Math.max(
      1,
      _positive("messageBurst", options.messageBurst, 4000),
    );
    this.maxBuffered = _positive(
      "maxBufferedAmount",
      options.maxBufferedAmount,
      1 << 20,
    );
    this.#upgradeTimeout = _positive(
      "upgradeTimeout",
      options.upgradeTimeout,
      10000,
    ) || Infinity;
    this.#origins = new Set(options.allowOrigins ?? []);
    this.#requireOrigin = options.requireOrigin ?? false;
    this.#paths = {
      health: options.healthPath ?? "/healthz",
      ready: options.readyPath ?? "/readyz",
      metrics: options.metricsPath ?? "/metrics",
    };
    this.#demo = options.demo ?? true;
    this.#log = options.log;
    this.#logLevel = options.logLevel ?? "info";
    this.#logFormat = options.logFormat ?? "text";
    this.now = options.now ?? (() => performance.now());
    this.clock = this.now();
  }

  get draining(): boolean {
    return this.#draining;
  }

  get connections(): number {
    return this.#conns.size;
  }

  readonly fetch = (
    request: Request,
    info?: Deno.ServeHandlerInfo,
  ): Response => {
    if (request.headers.get("upgrade")?.toLowerCase() === "websocket") {
      return this.#upgrade(request, info);
    }
    return this.#plain(request);
  };

  logEvent(level: LogLevel, event: string, fields?: LogFields): void {
    if (this.#log === undefined || !enabled(this.#logLevel, level)) return;
    this.#log(
      formatLine(
        this.#logFormat,
        new Date().toISOString(),
        level,
        event,
        fields,
      ),
    );
  }

  drain(): void {
    if (this.#draining) return;
    this.#draining = true;
    this.logEvent("info", "drain", { peers: this.hub.size });
  }

  async close(
    code = CLOSE_GOING_AWAY,
    reason = "Server shutting down",
    timeout = 10000,
  ): Promise<void> {
    // Close at once, not when quiet: under sustained load waiting does not
    // find quiet, and closing every socket in one go stops the relaying.
    this.closingAll = true;
    for (const conn of [...this.#conns]) {
      if (conn.peer?.live) this.hub.kick(conn.peer, code, reason);
      else if (
        conn.socket.readyState === WebSocket.OPEN && conn.closing === undefined
      ) {
        conn.close(code, reason);
      } else if (conn.socket.readyState === WebSocket.CONNECTING) {
        // Deno ignores close() before open: #onOpen closes it.
        conn.closeOnOpen = [code, reason];
      }
    }
    this.closingAll = false;
    if (this.#conns.size > 0) {
      // Each socket is released by its close event; wait for them all, but
      // never longer than `timeout`: then forget the ones left.
      const idle = Promise.withResolvers<void>();
      this.#idle = idle.resolve;
      const timer = setTimeout(idle.resolve, timeout);
      await idle.promise;
      clearTimeout(timer);
      this.#idle = undefined;
      for (const conn of [...this.#conns]) this.#release(conn);
    }
  }

  stats(): HubStats {
    return this.hub.stats();
  }

  /** Closes `conn` from the scheduler once it is quiet (CLOSE_WAIT_MS). */
  closeLater(conn: _Conn): void {
    this.#closing.add(conn);
  }

  reject(reason: string): void {
    this.#rejections.set(reason, (this.#rejections.get(reason) ?? 0) + 1);
  }

  /** Counts and logs a close, whoever started it. */
  closed(
    conn: _Conn,
    code: number,
    reason: string,
    by: "server" | "client",
  ): void {
    const label = `${code}\u0000${by}`;
    this.#closes.set(label, (this.#closes.get(label) ?? 0) + 1);
    this.logEvent(
      code === CLOSE_GOING_AWAY || by === "client" ? "info" : "warn",
      "close",
      {
        peer: conn.peer?.id,
        key: conn.tag,
        code,
        reason: reason || undefined,
        by,
      },
    );
  }

  metrics(): string {
    const s = this.hub.stats();
    const c = this.hub.counters;
    const labelled = (map: Map<string, number>, name: string) =>
      [...map].map(([k, v]) => [{ [name]: k }, v] as const);
    const families: MetricFamily[] = [
      {
        name: "sigver_peers",
        help: "Connected peers.",
        type: "gauge",
        samples: [[{}, s.peers]],
      },
      {
        name: "sigver_groups",
        help: "Groups (keys with at least one member).",
        type: "gauge",
        samples: [[{}, s.groups]],
      },
      {
        name: "sigver_members",
        help: "Group members over all groups.",
        type: "gauge",
        samples: [[{}, s.members]],
      },
      {
        name: "sigver_bound_joiners",
        help: "Joining peers bound to a member.",
        type: "gauge",
        samples: [[{}, s.bindings]],
      },
      {
        name: "sigver_draining",
        help: "1 while the server drains.",
        type: "gauge",
        samples: [[{}, this.#draining ? 1 : 0]],
      },
      {
        name: "sigver_connections_total",
        help: "WebSocket upgrades accepted.",
        type: "counter",
        samples: [[{}, this.#connectionsTotal]],
      },
      {
        name: "sigver_messages_received_total",
        help: "Frames received from peers, by message type.",
        type: "counter",
        samples: [
          [{ type: "heartbeat" }, c.inHeartbeat],
          [{ type: "content" }, c.inContent],
          [{ type: "connect" }, c.inConnect],
          [{ type: "connected" }, c.inConnected],
          [{ type: "invalid" }, this.#invalid],
        ],
      },
      {
        name: "sigver_messages_sent_total",
        help: "Frames sent to peers, by message type.",
        type: "counter",
        samples: [
          [{ type: "heartbeat" }, c.outHeartbeat],
          [{ type: "content" }, c.outContent],
          [{ type: "connected" }, c.outConnected],
        ],
      },
      {
        name: "sigver_relayed_bytes_total",
        help: "Content payload bytes relayed.",
        type: "counter",
        samples: [[{}, c.bytesRelayed]],
      },
      {
        name: "sigver_dropped_messages_total",
        help: "Content messages that matched no binding.",
        type: "counter",
        samples: [[{}, c.dropped]],
      },
      {
        name: "sigver_closes_total",
        help: "Closed peer sockets, by close code and by who closed.",
        type: "counter",
        samples: [...this.#closes].map(([k, v]) => {
          const [code, by] = k.split("\u0000");
          return [{ code, by }, v] as const;
        }),
      },
      {
        name: "sigver_rejections_total",
        help: "Upgrades refused and peers closed by a limit, by reason.",
        type: "counter",
        samples: labelled(this.#rejections, "reason"),
      },
    ];
    return renderMetrics(families);
  }

  #plain(request: Request): Response {
    if (request.method !== "GET" && request.method !== "HEAD") {
      return _text(
        405,
        "Method Not Allowed: this is a WebRTC signaling server",
        {
          allow: "GET, HEAD",
        },
      );
    }
    const path = parsePeerUrl(request.url);
    const p = path === undefined ? "" : "/" + path.key;
    const { health, ready, metrics } = this.#paths;
    if (p === health) return _text(200, "ok");
    if (p === ready) {
      return this.#draining ? _text(503, "draining") : _text(200, "ready");
    }
    if (p === metrics) {
      return new Response(this.metrics(), {
        headers: {
          "content-type": "text/plain; version=0.0.4; charset=utf-8",
          "cache-control": "no-store",
        },
      });
    }
    if (this.#demo) {
      const demo = demoResponse(p, request.method === "HEAD");
      if (demo !== undefined) return demo;
    }
    return _text(
      426,
      "Upgrade Required: this is a WebRTC signaling server (sigver). Open a WebSocket to ws[s]://HOST/<key>",
      { upgrade: "websocket", connection: "Upgrade" },
    );
  }

  #refuse(
    status: number,
    reason: string,
    message: string,
    address: string,
    request: Request,
  ): Response {
    this.reject(reason);
    if (this.#log !== undefined) {
      const key = parsePeerUrl(request.url)?.key;
      this.logEvent("warn", "reject", {
        reason,
        status,
        key: key === undefined ? undefined : keyHash(key),
        addr: address,
      });
    }
    return _text(status, message);
  }

  #upgrade(request: Request, info?: Deno.ServeHandlerInfo): Response {
    const remote = info?.remoteAddr as Deno.NetAddr | undefined;
    let address = remote?.hostname ?? "unknown";
    // No IP address (a Unix socket, or no `info` passed): a local proxy,
    // like loopback; counting them all as "unknown" would cap the server.
    let counted = this.#maxPerAddress > 0 && remote?.hostname !== undefined &&
      !_isLoopback(address);
    if (this.#trustProxy) {
      const forwarded = _forwardedFor(request.headers);
      if (forwarded !== undefined) address = forwarded;
      counted = this.#maxPerAddress > 0;
    }
    if (this.#draining) {
      return this.#refuse(
        503,
        "draining",
        "Service Unavailable: the server is shutting down",
        address,
        request,
      );
    }
    const origin = request.headers.get("origin");
    if (
      origin === null
        ? this.#requireOrigin
        : this.#origins.size > 0 && !this.#origins.has(origin)
    ) {
      return this.#refuse(
        403,
        "origin",
        `Forbidden: origin ${origin ?? "(none)"} is not allowed`,
        address,
        request,
      );
    }
    if (this.#maxPeers > 0 && this.#conns.size >= this.#maxPeers) {
      return this.#refuse(
        503,
        "capacity",
        "Service Unavailable: the server is full",
        address,
        request,
      );
    }
    if (
      counted && (this.#perAddress.get(address) ?? 0) >= this.#maxPerAddress
    ) {
      return this.#refuse(
        429,
        "address",
        "Too Many Requests: too many peers from this address",
        address,
        request,
      );
    }
    let upgraded: { socket: WebSocket; response: Response };
    try {
      upgraded = Deno.upgradeWebSocket(request, { idleTimeout: 0 });
    } catch (error) {
      const why = error instanceof Error ? error.message : String(error);
      return this.#refuse(
        400,
        "handshake",
        `Bad Request: ${why}`,
        address,
        request,
      );
    }
    const { socket, response } = upgraded;
    socket.binaryType = "arraybuffer";
    const parsed = parsePeerUrl(request.url);
    const conn = new _Conn(
      this,
      socket,
      address,
      counted,
      parsed?.key ?? "",
      parsed?.favored ?? false,
    );
    conn.deadline = conn.last + this.#upgradeTimeout;
    this.#connectionsTotal++;
    this.#conns.add(conn);
    this.#pending.add(conn);
    if (counted) {
      this.#perAddress.set(address, (this.#perAddress.get(address) ?? 0) + 1);
    }
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => this.#tick(), this.#tickMs);
    }
    socket.onopen = () => this.#onOpen(conn, parsed === undefined);
    socket.onmessage = (event) => this.#onMessage(conn, event);
    socket.onclose = (event) => this.#onClose(conn, event);
    socket.onerror = () => {};
    return response;
  }

  #onOpen(conn: _Conn, badUrl: boolean): void {
    this.#pending.delete(conn);
    // Clients send at once on open (Netflux: connect), one round trip
    // away: a close now (4741) would cross that frame. So count a frame as
    // due within CLOSE_OPEN_GRACE_MS: a close waits for it, then for quiet.
    conn.seen = this.ticks + Math.ceil(CLOSE_OPEN_GRACE_MS / this.#tickMs);
    if (conn.closeOnOpen !== undefined || conn.released) {
      // Closed or timed out while it opened: close it now that it can be.
      const [code, reason] = conn.closeOnOpen ??
        [CLOSE_GOING_AWAY, "Server shutting down"];
      conn.close(code, reason);
      return;
    }
    if (badUrl) {
      conn.close(ERR_URL, "Cannot join: the request URL cannot be parsed");
      return;
    }
    const problem = checkKey(conn.key);
    if (problem !== undefined) {
      conn.close(ERR_KEY, problem);
      return;
    }
    conn.peer = this.hub.open(conn, conn.key, conn.favored);
    this.logEvent("info", "open", {
      peer: conn.peer.id,
      key: conn.tag,
      favored: conn.favored || undefined,
      addr: conn.address,
    });
  }

  #onMessage(conn: _Conn, event: MessageEvent): void {
    conn.seen = this.ticks;
    const peer = conn.peer;
    if (peer === undefined || !peer.live) return;
    const data = event.data;
    if (typeof data === "string") {
      this.#invalid++;
      this.hub.kick(
        peer,
        ERR_MESSAGE,
        "Cannot handle a text frame: frames must be binary",
      );
      return;
    }
    const size = (data as ArrayBuffer).byteLength;
    if (size > this.#maxSize) {
      this.#invalid++;
      this.reject("message_size");
      this.hub.kick(
        peer,
        CLOSE_MESSAGE_TOO_BIG,
        `Cannot handle message: ${size} bytes is over the ${this.#maxSize} byte limit`,
      );
      return;
    }
    if (this.#rate > 0) {
      // The scheduler's clock: refills come at tick boundaries.
      const now = this.clock;
      const tokens = Math.min(
        this.burst,
        conn.tokens + (now - conn.last) * this.#rate,
      );
      conn.last = now;
      if (tokens < 1) {
        this.reject("message_rate");
        this.hub.kick(
          peer,
          CLOSE_POLICY_VIOLATION,
          `Cannot relay: over ${this.#rate * 1000} messages per second`,
        );
        return;
      }
      conn.tokens = tokens - 1;
    }
    this.hub.receive(peer, new Uint8Array(data as ArrayBuffer));
  }

  #onClose(conn: _Conn, event: CloseEvent): void {
    const peer = conn.peer;
    if (peer !== undefined && peer.live) {
      this.hub.close(peer);
      // Deno reports a connection dropped without a close frame as 0.
      this.closed(conn, event.code || 1006, event.reason, "client");
    }
    this.#release(conn);
  }

  #release(conn: _Conn): void {
    if (conn.released) return;
    conn.released = true;
    if (this.#closing.delete(conn)) {
      conn.closeNow(conn.closing![0], conn.closing![1]);
    }
    this.#conns.delete(conn);
    this.#pending.delete(conn);
    if (conn.counted) {
      const n = (this.#perAddress.get(conn.address) ?? 1) - 1;
      if (n === 0) this.#perAddress.delete(conn.address);
      else this.#perAddress.set(conn.address, n);
    }
    if (this.#conns.size === 0) {
      if (this.#timer !== undefined) clearInterval(this.#timer);
      this.#timer = undefined;
      this.#idle?.();
    }
  }

  #tick(): void {
    const now = this.clock = this.now();
    this.ticks++;
    this.hub.tick();
    for (const conn of this.#closing) {
      const [code, reason, since] = conn.closing!;
      if (conn.seen >= this.ticks - 1 && now - since < CLOSE_WAIT_MS) continue;
      this.#closing.delete(conn);
      conn.closeNow(code, reason);
    }
    if (this.#pending.size === 0) return;
    for (const conn of this.#pending) {
      if (now < conn.deadline) continue;
      this.reject("upgrade_timeout");
      this.logEvent("warn", "reject", {
        reason: "upgrade_timeout",
        addr: conn.address,
      });
      // Deno ignores close() before open: #onOpen closes it if it opens.
      conn.closeOnOpen = [
        CLOSE_POLICY_VIOLATION,
        "Cannot open: the upgrade timed out",
      ];
      this.#release(conn);
    }
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
 * const health = sigver.fetch(new Request("http://localhost/healthz"));
 * assert.equal(await health.text(), "ok\n");
 * sigver.drain();
 * assert.equal(sigver.fetch(new Request("http://localhost/ready")).status, 503);
 * assert.equal(sigver.fetch(new Request("http://localhost/room")).status, 426);
 * ```
 */
export function createHandler(options: HandlerOptions = {}): SigverHandler {
  return new _Sigver(options);
}

/** Options of {@linkcode serve}. */
export interface ServeOptions extends HandlerOptions {
  /**
   * Interface to listen on.
   * @default {"0.0.0.0"}
   */
  hostname?: string;
  /**
   * Port to listen on (0: any free port).
   * @default {8000}
   */
  port?: number;
  /** TLS certificate chain (PEM). With `key`, the server speaks wss/https. */
  cert?: string;
  /** TLS private key (PEM). */
  key?: string;
  /** CA certificates (PEM), appended to the certificate chain. */
  ca?: string;
  /** Aborting it shuts the server down, as {@linkcode SigverServer.shutdown}. */
  signal?: AbortSignal;
  /**
   * Milliseconds a shutdown waits for connections to finish.
   * @default {10000}
   */
  drainTimeout?: number;
  /** Called once the server listens. */
  onListen?: (addr: Deno.NetAddr) => void;
}

/** A running sigver server. */
export interface SigverServer extends AsyncDisposable {
  /** Where it listens. */
  readonly addr: Deno.NetAddr;
  /** Resolves when the server has stopped. */
  readonly finished: Promise<void>;
  /** The handler it runs, for its metrics and stats. */
  readonly handler: SigverHandler;
  /**
   * Drains: refuses new peers, closes every socket with 1001, then stops,
   * within `drainTimeout`. Idempotent: every call returns the same promise.
   *
   * @returns Resolves once stopped (or the drain timeout passed).
   */
  shutdown(): Promise<void>;
}

/**
 * Runs a sigver server on `Deno.serve`.
 *
 * @param options Address, TLS, limits and the rest of {@linkcode HandlerOptions}.
 * @returns The running server.
 * @throws {TypeError} When only one of `cert` and `key` is given.
 *
 * @example Run one for the length of a scope
 * ```ts ignore
 * import { serve } from "@coast/sigver";
 * await using server = serve({ hostname: "127.0.0.1", port: 0 });
 * console.log(`ws://127.0.0.1:${server.addr.port}/my-room`);
 * ```
 */
export function serve(options: ServeOptions = {}): SigverServer {
  if ((options.cert === undefined) !== (options.key === undefined)) {
    throw new TypeError("Cannot serve TLS: both cert and key are needed");
  }
  const handler = createHandler(options);
  const drainTimeout = _positive("drainTimeout", options.drainTimeout, 10000);
  const tls = options.cert !== undefined && options.key !== undefined
    ? {
      cert: options.ca
        ? `${options.cert.trimEnd()}\n${options.ca}`
        : options.cert,
      key: options.key,
    }
    : {};
  const server = Deno.serve({
    hostname: options.hostname ?? "0.0.0.0",
    port: options.port ?? 8000,
    ...tls,
    onListen: (addr) => options.onListen?.(addr as Deno.NetAddr),
  }, handler.fetch);
  let stopping: Promise<void> | undefined;
  const shutdown = (): Promise<void> =>
    stopping ??= (async () => {
      // Refuse newcomers (503) while the open sockets close with 1001, then
      // stop listening; all of it within drainTimeout.
      const start = performance.now();
      handler.drain();
      await handler.close(
        CLOSE_GOING_AWAY,
        "Server shutting down",
        drainTimeout,
      );
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<void>((resolve) =>
        timer = setTimeout(
          resolve,
          Math.max(0, drainTimeout - (performance.now() - start)),
        )
      );
      await Promise.race([server.shutdown(), late]);
      clearTimeout(timer);
    })();
  options.signal?.addEventListener("abort", () => void shutdown(), {
    once: true,
  });
  if (options.signal?.aborted) void shutdown();
  return {
    addr: server.addr as Deno.NetAddr,
    finished: server.finished,
    handler,
    shutdown,
    [Symbol.asyncDispose]: shutdown,
  };
}
