/**
 * The connections one server holds, and the one scheduler tick that serves
 * them all: what each connection reports (opened, closed) and asks for (a
 * close, counted once), the per-address counts, the upgrades still waiting
 * to open, the closes waiting for quiet, and the peer events an embedder
 * hears (`onPeer`).
 *
 * A single timer ticks while anything is held, at the heartbeat wheel's
 * step: every protocol ticks, waiting closes are flushed, fallback streams
 * get keep-alives, upgrades that never opened are given up.
 *
 * @module
 */

import { TokenBucket } from "../lib/bucket.ts";
import { keyHash } from "../lib/log.ts";
import { settleWithin } from "../lib/deadline.ts";
import type { Tally } from "../lib/metrics.ts";
import type { Protocol } from "../lib/protocol.ts";
import {
  CLOSE_GOING_AWAY,
  CLOSE_POLICY_VIOLATION,
  CLOSE_SERVICE_RESTART,
} from "../lib/codes.ts";
import type { AcceptHost } from "./accept.ts";
import type { Conn } from "./connection.ts";
import { type Sessions, type SseContext, SseSession } from "./fallback.ts";
import type { Observer, PeerEvent } from "./observe.ts";
import type { HandlerConfig } from "./options.ts";
import type { PeerSocket, SocketContext } from "./socket.ts";

/** How long a close may wait for its socket to go quiet (see socket.ts). */
const CLOSE_WAIT_MS = 1000;
/** How long after the open a frame counts as due: clients send at once. */
const CLOSE_OPEN_GRACE_MS = 500;
/** A fallback stream silent this long gets a keep-alive comment. */
const KEEP_ALIVE_MS = 15_000;
/**
 * A fallback session with no stream and no frame posted for this long is
 * given up: the client resumes a dropped stream within half a second, and
 * retries for 7.5 s in all (client/fallback.ts).
 */
const ORPHAN_MS = 8_000;

/** What the connection set is made of. */
export interface ConnectionsOptions {
  /** The server's configuration. */
  config: HandlerConfig;
  /** Counts and logs. */
  observer: Observer;
  /** The protocols served: each ticks with the scheduler. */
  protocols: readonly Protocol[];
  /** The fallback's sessions, which end with their connections. */
  sessions: Sessions<Conn>;
  /** This node's id on a cluster. */
  nodeId: string | undefined;
  /** Hears peers join and leave. */
  onPeer: ((event: PeerEvent) => void) | undefined;
}

/** The connections of one server, and their scheduler. */
export class Connections implements AcceptHost {
  readonly bucket: TokenBucket;
  readonly socketContext: SocketContext;
  readonly sseContext: { tick: number } & SseContext;
  readonly nodeId: string | undefined;
  readonly #config: HandlerConfig;
  readonly #observer: Observer;
  readonly #protocols: readonly Protocol[];
  readonly #sessions: Sessions<Conn>;
  readonly #onPeer: ((event: PeerEvent) => void) | undefined;
  /** The clock's time at the last tick: the rate limit's coarse clock. */
  #now: number;
  #timer: Disposable | undefined;
  readonly #conns = new Set<Conn>();
  /** Connections whose transport has not opened yet. */
  readonly #pending = new Set<Conn>();
  /** Connections whose peer joined: `onPeer` hears when they go. */
  readonly #joined = new Set<Conn>();
  /** Transports whose close waits for quiet: flushed on every tick. */
  readonly #closing = new Set<PeerSocket>();
  readonly #perAddress = new Map<string, number>();
  /** True while every socket closes at once: no waiting for quiet then. */
  #closingAll = false;
  #idle: (() => void) | undefined;

  /**
   * Creates an empty set.
   *
   * @param options The configuration, the observer, the protocols.
   */
  constructor(options: ConnectionsOptions) {
    const config = this.#config = options.config;
    this.#observer = options.observer;
    this.#protocols = options.protocols;
    this.#sessions = options.sessions;
    this.#onPeer = options.onPeer;
    this.nodeId = options.nodeId;
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
      orphanTicks: Math.ceil(ORPHAN_MS / config.tickMs),
    };
    this.#now = config.clock.now();
  }

  /** Connections held: open peers and upgrades in progress. */
  get size(): number {
    return this.#conns.size;
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

  get rejections(): Tally {
    return this.#observer.rejections;
  }

  invalidFrame(): void {
    this.#observer.invalid++;
  }

  /**
   * Connections held from one address.
   *
   * @param address The address.
   * @returns How many.
   */
  fromAddress(address: string): number {
    return this.#perAddress.get(address) ?? 0;
  }

  /**
   * Counts a new connection in.
   *
   * @param conn The connection.
   */
  hold(conn: Conn): void {
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

  /**
   * Closes every connection at once and waits for their close events, at
   * most `timeout` ms; then forgets the ones left and stops ticking.
   *
   * @param code The close code.
   * @param reason The close reason.
   * @param timeout Milliseconds to wait.
   */
  async closeAll(code: number, reason: string, timeout: number): Promise<void> {
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

  /**
   * Closes every local peer of groups that moved to other nodes (1012).
   *
   * @param keys The groups' keys.
   */
  moved(keys: ReadonlySet<string>): void {
    for (const conn of [...this.#conns]) {
      if (conn.lease === undefined || !keys.has(conn.key ?? "")) continue;
      conn.lease.moved();
      conn.shut(
        CLOSE_SERVICE_RESTART,
        "Cannot relay: this group moved to another server node; reconnect",
      );
    }
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

  #event(conn: Conn, type: "joined" | "left"): PeerEvent {
    return {
      type,
      key: keyHash(conn.key ?? ""),
      protocol: conn.protocol.name,
      transport: conn.transport,
      remote: conn.remote !== undefined,
    };
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
    for (const protocol of this.#protocols) protocol.tick();
    for (const socket of this.#closing) {
      if (!socket.flush()) this.#closing.delete(socket);
    }
    for (const { session, conn } of this.#sessions.held()) {
      if (session.tick()) {
        this.#observer.rejections.add("session_orphaned");
        conn.shut(
          CLOSE_GOING_AWAY,
          "Going away: the session's stream dropped and was not resumed",
        );
      }
    }
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
