/**
 * The handler's options: what a user may set ({@linkcode HandlerOptions}),
 * their defaults, and their checks ({@linkcode resolveHandlerOptions}).
 *
 * @module
 */

import { type Clock, systemClock } from "../lib/clock.ts";
import type { AdmissionPolicy } from "../lib/admission.ts";
import type { LogFormat, LogLevel } from "../lib/log.ts";
import type { MetricFamily } from "../lib/metrics.ts";
import type { PeerEvent } from "./observe.ts";
import type { TurnOptions } from "./ice.ts";
import type { TopicBusFactory } from "../lib/ywebrtc/bus.ts";
import type { PeerjsBusFactory } from "../lib/peerjs/bus.ts";
import { defaultMaxPeers } from "./system.ts";

/** Options of `createHandler`. */
export interface HandlerOptions {
  /**
   * Milliseconds between two heartbeats, 100 or more; a peer silent for
   * three periods is closed with 4742. Heartbeats cannot be turned off: they
   * find dead peers.
   * @default {5000}
   */
  heartbeatInterval?: number;
  /**
   * Largest frame accepted, in bytes (0: no limit); a larger one closes the
   * peer with 1009.
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
   * Path of the readiness endpoint (503 while draining or not accepting), or
   * `false`.
   * @default {"/readyz"}
   */
  readyPath?: string | false;
  /**
   * Path of the Prometheus metrics endpoint, or `false`.
   * @default {"/metrics"}
   */
  metricsPath?: string | false;
  /**
   * Serve the metrics to clients (`fetch`) as well as on the admin listener
   * (`admin`). `serve` turns it off when it has an `adminPort`.
   * @default {true}
   */
  publicMetrics?: boolean;
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
   * Least severe level written. Each peer's open and close is `debug`; a
   * peer closed for a limit or bad input, and a refused upgrade, is `info`.
   * @default {"info"}
   */
  logLevel?: LogLevel;
  /**
   * Format of log lines.
   * @default {"text"}
   */
  logFormat?: LogFormat;
  /**
   * The clock whose tick drives heartbeats, rate limits, upgrade timeouts
   * and closes; tests pass a `ManualClock` and drive it.
   * @default {systemClock}
   */
  clock?: Clock;
  /**
   * Random source for signaling ids, in [0, 1).
   * @default {a source backed by `crypto.getRandomValues`}
   */
  random?: () => number;
  /**
   * Why the server is not ready now (readiness answers 503 with it), or
   * `undefined` when it is; asked on every readiness request. `serve` uses
   * it while it cannot accept connections.
   */
  readiness?: () => string | undefined;
  /** More metric families to append to the endpoint's, read on each scrape. */
  moreMetrics?: () => MetricFamily[];
  /**
   * The path prefix the server is mounted under: peers join at
   * `<basePath>/<key>`, and the fallback and the endpoints live under it
   * too; requests outside it get 404. No trailing `/`.
   * @default {""}
   */
  basePath?: string;
  /**
   * Called when a peer joins (its transport opened and its protocol took
   * it) and when it leaves, with its key's hash, never its key.
   */
  onPeer?: (event: PeerEvent) => void;
  /**
   * Secrets of access tokens: when set, every upgrade must come on
   * `/t/<token>/<key>` with a token signed by one of them (401 without a
   * valid one, 403 when it is forged, expired or for other keys). Several
   * allow rotation: any of them validates; mint with the first.
   * @default {[]}
   */
  authSecrets?: readonly string[];
  /**
   * TURN servers whose short-lived credentials the ICE servers endpoint
   * (`iceServersPath`) hands out, in coturn's `use-auth-secret` scheme.
   * Without it the endpoint answers 404.
   */
  turn?: TurnOptions;
  /**
   * Path of the ICE servers endpoint, or `false`: `GET` gets TURN
   * credentials (with a token in `Authorization: Bearer` or `?token=` when
   * `authSecrets` are set), with CORS headers that follow `allowOrigins`.
   * @default {"/ice-servers"}
   */
  iceServersPath?: string | false;
  /**
   * Path of the endpoint that shows this node's view of the cluster (JSON),
   * or `false`; served only in a cluster.
   * @default {"/cluster"}
   */
  clusterPath?: string | false;
  // y-webrtc options
  /**
   * Path of y-webrtc clients (Yjs's WebRTC provider), or `false`: every
   * upgrade there is a y-webrtc client, never a Netflux group, and a plain
   * GET answers `okay`.
   * @default {"/y-webrtc"}
   */
  yWebrtcPath?: string | false;
  /**
   * Most topics (rooms) one y-webrtc connection may subscribe to (0: no
   * limit); past it the client is closed with 4751.
   * @default {64}
   */
  yWebrtcMaxTopics?: number;
  /**
   * Most y-webrtc subscribers of one topic on this node (0: no limit); one
   * more is closed with 4752.
   * @default {256}
   */
  yWebrtcMaxSubscribers?: number;
  /**
   * Longest y-webrtc topic, in UTF-16 code units; an empty or longer one
   * closes the client with 4750.
   * @default {512}
   */
  yWebrtcMaxTopicLength?: number;
  /**
   * Milliseconds a y-webrtc client may send nothing (its pings come every
   * 15 s) before it is closed with 4742 (0: never).
   * @default {60000}
   */
  yWebrtcIdleTimeout?: number;
  /** The bus that carries y-webrtc publishes between cluster nodes. */
  yWebrtcBus?: TopicBusFactory;
  // PeerJS options
  /**
   * Path of PeerJS clients (`new Peer({ host, port, path: "/peerjs" })`),
   * or `false`: their socket is `<path>/peerjs`, their routes
   * `<path>/<key>/id` and `<path>/<key>/peers`; nothing below it is a
   * Netflux group.
   * @default {"/peerjs"}
   */
  peerjsPath?: string | false;
  /**
   * The PeerJS API key(s) served (the client's `key`), each a namespace of
   * ids of its own; another key gets ERROR "Invalid key provided".
   * @default {"peerjs"}
   */
  peerjsKey?: string | readonly string[];
  /**
   * Let `GET <path>/<key>/peers` list the ids held (401 otherwise).
   * @default {false}
   */
  peerjsDiscovery?: boolean;
  /**
   * Milliseconds a PeerJS client may stay silent (it sends a heartbeat
   * every 5 s) before it is closed with 4742.
   * @default {60000}
   */
  peerjsAliveTimeout?: number;
  /**
   * Milliseconds after which messages queued for an absent PeerJS id
   * expire (each sender gets one EXPIRE).
   * @default {5000}
   */
  peerjsExpireTimeout?: number;
  /**
   * Most PeerJS ids held at once (0: no limit but `maxPeers`).
   * @default {0}
   */
  peerjsMaxIds?: number;
  /**
   * Messages that may wait for one absent PeerJS id; one more is answered
   * with ERROR.
   * @default {64}
   */
  peerjsMaxQueued?: number;
  /**
   * Bytes that may wait for absent PeerJS ids, in all.
   * @default {8388608}
   */
  peerjsMaxQueuedBytes?: number;
  /** The bus that holds PeerJS ids and carries messages between cluster nodes. */
  peerjsBus?: PeerjsBusFactory;
}

/** The options with their defaults filled in and checked. */
export interface HandlerConfig {
  /** Heartbeat wheel slots per period (the scheduler ticks this often). */
  slots: number;
  /** Milliseconds between two scheduler ticks. */
  tickMs: number;
  /** Largest frame accepted, in bytes (no limit: `Number.MAX_SAFE_INTEGER`). */
  maxMessageSize: number;
  /** The admission policy. */
  admission: AdmissionPolicy;
  /** Whether to believe forwarding headers. */
  trustProxy: boolean;
  /** Messages per second (0: off). */
  messageRate: number;
  /** Burst of the rate limit. */
  messageBurst: number;
  /** Bytes that may wait per peer (0: off). */
  maxBufferedAmount: number;
  /** Upgrade timeout in milliseconds (`Infinity`: off). */
  upgradeTimeout: number;
  /** Endpoint paths (`false`: off). */
  paths: {
    health: string | false;
    ready: string | false;
    metrics: string | false;
    cluster: string | false;
    ice: string | false;
  };
  /** Whether the demo is served. */
  demo: boolean;
  /** Whether `fetch` serves the metrics too. */
  publicMetrics: boolean;
  /** The path prefix (`""`: none). */
  basePath: string;
  /** The clock. */
  clock: Clock;
}

/**
 * Shortest heartbeat period accepted, in milliseconds: the scheduler ticks
 * every 100 ms at most, and a smaller number is most likely seconds.
 */
export const MIN_HEARTBEAT_INTERVAL = 100;

/**
 * Checks that a numeric option is finite and not negative.
 *
 * @param name The option's name, for the error.
 * @param value The value given, if any.
 * @param fallback The default.
 * @returns The value or the default.
 * @throws {RangeError} When the value is out of range.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkNumber } from "./options.ts";
 * assert.equal(checkNumber("drainTimeout", undefined, 10000), 10000);
 * assert.equal(checkNumber("drainTimeout", 0, 10000), 0);
 * assert.throws(() => checkNumber("drainTimeout", -1, 10000), {
 *   message: "Cannot use drainTimeout: -1 is not a non-negative number",
 * });
 * ```
 */
export function checkNumber(
  name: string,
  value: number | undefined,
  fallback: number,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new RangeError(
      `Cannot use ${name}: ${value} is not a non-negative number`,
    );
  }
  return value;
}

/** The heartbeat period, in milliseconds. */
function _heartbeatInterval(value: number | undefined): number {
  const ms = checkNumber("heartbeatInterval", value, 5000);
  if (ms < MIN_HEARTBEAT_INTERVAL) {
    throw new RangeError(
      `Cannot use heartbeatInterval: ${ms} ms is under ${MIN_HEARTBEAT_INTERVAL} ms`,
    );
  }
  return ms;
}

/** The path prefix: `""`, or a path that starts with `/` and ends without. */
function _basePath(value: string | undefined): string {
  if (value === undefined || value === "" || value === "/") return "";
  if (
    typeof value !== "string" || !value.startsWith("/") ||
    value.endsWith("/") ||
    /[?#\s]/.test(value)
  ) {
    throw new TypeError(
      `Cannot use basePath: ${
        JSON.stringify(value)
      } is not a path like "/signal" (a leading /, no trailing /, no ? or #)`,
    );
  }
  return value;
}

/**
 * Fills in the defaults of the handler's options and checks them.
 *
 * @param options The options given.
 * @returns The configuration.
 * @throws {RangeError} When a numeric option is out of range: a negative
 * number, `NaN`, or a heartbeat under 100 ms (milliseconds are the unit of
 * every duration).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveHandlerOptions } from "./options.ts";
 * const config = resolveHandlerOptions({ heartbeatInterval: 5000, maxPeers: 10 });
 * assert.equal(config.slots, 50);
 * assert.equal(config.tickMs, 100);
 * assert.throws(() => resolveHandlerOptions({ maxPeers: -1 }), RangeError);
 * // A heartbeat in seconds is a mistake: durations are milliseconds.
 * assert.throws(() => resolveHandlerOptions({ heartbeatInterval: 5 }), {
 *   message: "Cannot use heartbeatInterval: 5 ms is under 100 ms",
 * });
 * ```
 */
export function resolveHandlerOptions(options: HandlerOptions): HandlerConfig {
  const heartbeat = _heartbeatInterval(options.heartbeatInterval);
  // One wheel slot per 100 ms: each peer's heartbeat falls within 100 ms of
  // its own period, and one tick serves every peer.
  const slots = Math.max(1, Math.min(50, Math.round(heartbeat / 100)));
  return {
    slots,
    tickMs: heartbeat / slots,
    maxMessageSize:
      checkNumber("maxMessageSize", options.maxMessageSize, 65536) ||
      Number.MAX_SAFE_INTEGER,
    admission: {
      allowOrigins: new Set(options.allowOrigins ?? []),
      requireOrigin: options.requireOrigin ?? false,
      maxPeers: options.maxPeers === undefined
        ? defaultMaxPeers()
        : checkNumber("maxPeers", options.maxPeers, 0),
      maxPeersPerAddress: checkNumber(
        "maxPeersPerAddress",
        options.maxPeersPerAddress,
        256,
      ),
    },
    trustProxy: options.trustProxy ?? false,
    messageRate: checkNumber("messageRate", options.messageRate, 2000),
    messageBurst: checkNumber("messageBurst", options.messageBurst, 4000),
    maxBufferedAmount: checkNumber(
      "maxBufferedAmount",
      options.maxBufferedAmount,
      1 << 20,
    ),
    upgradeTimeout:
      checkNumber("upgradeTimeout", options.upgradeTimeout, 10000) ||
      Infinity,
    paths: {
      health: options.healthPath ?? "/healthz",
      ready: options.readyPath ?? "/readyz",
      metrics: options.metricsPath ?? "/metrics",
      cluster: options.clusterPath ?? "/cluster",
      ice: options.iceServersPath ?? "/ice-servers",
    },
    demo: options.demo ?? true,
    publicMetrics: options.publicMetrics ?? true,
    basePath: _basePath(options.basePath),
    clock: options.clock ?? systemClock,
  };
}
