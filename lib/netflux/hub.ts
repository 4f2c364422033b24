/**
 * Group state of a sigver server: groups by key, membership, bindings between
 * joining peers and members, signaling ids and heartbeat accounting.
 *
 * Pure: the hub never does I/O itself. It talks to each peer through the
 * {@linkcode PeerTransport} it was given and is driven by explicit calls:
 * {@linkcode Hub.receive} for each frame, {@linkcode Hub.forget} when a socket
 * closes and {@linkcode Hub.tick} from one scheduler for all peers.
 *
 * @module
 */

import {
  ERR_BLOCKING_MEMBER,
  ERR_HEARTBEAT,
  ERR_MESSAGE,
  ERR_URL,
} from "../codes.ts";
import {
  ContentEncoder,
  encodeContent,
  FrameReader,
  TYPE_CONNECT,
  TYPE_CONNECTED,
  TYPE_CONTENT,
  TYPE_HEARTBEAT,
} from "./wire.ts";
import { CloseError, type PeerTransport } from "../protocol.ts";

export { CloseError, type PeerTransport } from "../protocol.ts";
export {
  ERR_BLOCKING_MEMBER,
  ERR_HEARTBEAT,
  ERR_KEY,
  ERR_MESSAGE,
  ERR_URL,
} from "../codes.ts";

/** Heartbeat periods a peer may miss; at this count it is closed. */
export const MAX_MISSED_HEARTBEATS = 3;

const HEARTBEAT = new Uint8Array([0x08, 0x01]);
const CONNECTED_TRUE = new Uint8Array([0x20, 0x01]);
const CONNECTED_FALSE = new Uint8Array([0x20, 0x00]);
const MAX_ID = 0x7fffffff;

/** A connected peer, as the hub shows it to its owner. */
export interface Peer {
  /** The current signaling id: random, unique among live peers. */
  readonly id: number;
  /** The group key (the URL path without its leading `/`). */
  readonly key: string;
  /** Whether the peer connected with `?favored`. */
  readonly favored: boolean;
  /** Whether the peer is a member of its group. */
  readonly member: boolean;
  /** Whether the hub still knows this peer (false once closed). */
  readonly live: boolean;
}

/** Counters of what the hub has seen and done since it was created. */
export interface HubCounters {
  /** Heartbeats received. */
  inHeartbeat: number;
  /** Content messages received. */
  inContent: number;
  /** Connect requests received. */
  inConnect: number;
  /** `connected` messages received (server-to-peer only: ignored). */
  inConnected: number;
  /** Heartbeats sent. */
  outHeartbeat: number;
  /** Content messages sent (relayed or "gone" notices). */
  outContent: number;
  /** `connected` replies sent. */
  outConnected: number;
  /** Payload bytes relayed in content messages. */
  bytesRelayed: number;
  /** Content messages that matched no binding and were dropped. */
  dropped: number;
}

/** Sizes of the hub's state, for gauges and for leak checks. */
export interface HubStats {
  /** Live peers. */
  peers: number;
  /** Groups (each has at least one member). */
  groups: number;
  /** Members over all groups. */
  members: number;
  /** Signaling ids in use. */
  ids: number;
  /** Joining peers currently bound to a member. */
  bindings: number;
  /** Peers in the heartbeat schedule. */
  scheduled: number;
}

/** Options of {@linkcode Hub}. */
export interface HubOptions {
  /**
   * Random source for signaling ids, returning a number in [0, 1).
   * @default {a source backed by `crypto.getRandomValues`, as the original's
   * ids come from `crypto.randomBytes`}
   */
  random?: () => number;
  /**
   * Slots of the heartbeat wheel: {@linkcode Hub.tick} must be called this
   * many times per heartbeat period. Each peer is visited once per period,
   * one period after it opened (to the precision of one slot).
   * @default {1}
   */
  slots?: number;
  /**
   * Encode relayed content without a new frame: over the received frame,
   * in front of its payload, when the new header fits there, otherwise into
   * one reused buffer. The frame given to {@linkcode PeerTransport.send} is
   * then only valid during the call, so the transport must send or copy it
   * at once (Deno's `WebSocket.send` copies), and {@linkcode Hub.receive}
   * may overwrite the frame it is given. Saves an allocation per relayed
   * message, and often the copy of its payload.
   * @default {false}
   */
  reuseFrames?: boolean;
}

/**
 * A group: its members, in the order they joined. A plain array, created
 * holding its first member: a server holds tens of thousands of groups, many
 * of one member, and an array of one costs a third of a `Set` of one.
 */
type _Group = _Peer[];

class _Peer implements Peer {
  readonly key: string;
  readonly favored: boolean;
  readonly transport: PeerTransport;
  id = 0;
  live = true;
  /** The group this peer is a member of. */
  group: _Group | undefined = undefined;
  /** Its group id (`connect.id`) while it is a member. */
  groupId = 0;
  /** Group ids of the members it was bound to since it last became one. */
  tried: Set<number> | undefined = undefined;
  /** The member this peer is bound to, as a joining peer. */
  bound: _Peer | undefined = undefined;
  /** Joining peer -> member direction still open. */
  toMember = false;
  /** Member -> joining peer direction still open. */
  fromMember = false;
  /** Joining peers bound to this peer, by their signaling id. */
  joiners: Map<number, _Peer> | undefined = undefined;
  missed = 0;
  slot = 0;

  constructor(transport: PeerTransport, key: string, favored: boolean) {
    this.transport = transport;
    this.key = key;
    this.favored = favored;
  }

  get member(): boolean {
    return this.group !== undefined;
  }
}

/**
 * The state of one signaling server. Two hubs share nothing.
 *
 * @example Two peers meet in a group
 * ```ts
 * import assert from "node:assert/strict";
 * import { Hub } from "./hub.ts";
 * import { encodeMessage } from "./wire.ts";
 * const sent: Uint8Array[] = [];
 * const transport = { send: (f: Uint8Array) => sent.push(f), close() {} };
 * const hub = new Hub();
 * const peer = hub.open(transport, "room", false);
 * hub.receive(peer, encodeMessage({ type: "connect", connect: { id: 1, members: [] } }));
 * assert.ok(peer.member);
 * assert.equal(sent.length, 1); // connected: true
 * hub.forget(peer);
 * assert.equal(hub.stats().peers, 0);
 * ```
 */
export class Hub {
  /** What the hub has seen and done; read by metrics. */
  readonly counters: HubCounters = {
    inHeartbeat: 0,
    inContent: 0,
    inConnect: 0,
    inConnected: 0,
    outHeartbeat: 0,
    outContent: 0,
    outConnected: 0,
    bytesRelayed: 0,
    dropped: 0,
  };
  #groups = new Map<string, _Group>();
  /** Signaling ids in use. */
  #ids = new Set<number>();
  #wheel: Set<_Peer>[];
  #cursor = 0;
  #peers = 0;
  #random: () => number;
  #reader = new FrameReader();
  #encoder: ContentEncoder | undefined;

  /**
   * Creates an empty hub.
   *
   * @param options Random source and heartbeat wheel size.
   */
  constructor(options: HubOptions = {}) {
    this.#random = options.random ?? _cryptoRandom();
    const slots = options.slots ?? 1;
    if (!Number.isInteger(slots) || slots < 1) {
      throw new RangeError(
        `Cannot create hub: slots must be a positive integer, got ${slots}`,
      );
    }
    this.#wheel = Array.from({ length: slots }, () => new Set<_Peer>());
    if (options.reuseFrames) this.#encoder = new ContentEncoder();
  }

  /** Number of live peers. */
  get size(): number {
    return this.#peers;
  }

  /**
   * Adds a peer whose socket has just opened.
   *
   * @param transport How to reach the peer's socket.
   * @param key The group key, already checked (see `checkKey`).
   * @param favored Whether the peer asked to be favored.
   * @returns The peer, to pass to the other methods.
   */
  open(transport: PeerTransport, key: string, favored: boolean): Peer {
    const peer = new _Peer(transport, key, favored);
    peer.id = this.#newId();
    // The slot just visited comes round again one full period from now.
    const n = this.#wheel.length;
    peer.slot = (this.#cursor + n - 1) % n;
    this.#wheel[peer.slot].add(peer);
    this.#peers++;
    return peer;
  }

  /**
   * Handles one binary frame from a peer. An undecodable or typeless frame
   * closes the peer with {@linkcode ERR_MESSAGE}.
   *
   * @param peer The sender.
   * @param frame The frame's bytes; with `reuseFrames`, the hub may
   * overwrite them.
   */
  receive(peer: Peer, frame: Uint8Array): void {
    const p = peer as _Peer;
    if (!p.live) return;
    const r = this.#reader;
    try {
      r.read(frame);
    } catch (error) {
      if (!(error instanceof SyntaxError)) throw error;
      this.close(p, ERR_MESSAGE, error.message);
      return;
    }
    switch (r.type) {
      case TYPE_HEARTBEAT:
        this.counters.inHeartbeat++;
        p.missed = 0;
        return;
      case TYPE_CONTENT:
        this.counters.inContent++;
        this.#relay(p, r);
        return;
      case TYPE_CONNECT:
        this.counters.inConnect++;
        this.#connect(p, r.id, r.members);
        return;
      case TYPE_CONNECTED:
        // Server-to-peer only; the original ignores it too.
        this.counters.inConnected++;
        return;
      default:
        this.close(p, ERR_MESSAGE, "Cannot handle message: no type set");
    }
  }

  /**
   * Closes a peer's socket with a code and forgets the peer at once.
   *
   * @param peer The peer to close.
   * @param code A WebSocket close code.
   * @param reason A short reason (at most 123 bytes of UTF-8).
   */
  close(peer: Peer, code: number, reason: string): void {
    const p = peer as _Peer;
    if (!p.live) return;
    this.#drop(p);
    p.transport.close(code, reason);
  }

  /**
   * Forgets a peer whose socket has closed (its bound peers get "gone"
   * notices). Idempotent.
   *
   * @param peer The closed peer.
   */
  forget(peer: Peer): void {
    const p = peer as _Peer;
    if (p.live) this.#drop(p);
  }

  /**
   * Advances the heartbeat wheel by one slot: every peer in it counts a
   * missed period, then gets a heartbeat, or is closed with
   * {@linkcode ERR_HEARTBEAT} at the third.
   */
  tick(): void {
    const slot = this.#wheel[this.#cursor];
    this.#cursor = (this.#cursor + 1) % this.#wheel.length;
    for (const p of slot) {
      if (++p.missed >= MAX_MISSED_HEARTBEATS) {
        this.close(p, ERR_HEARTBEAT, "Too many missed heartbeats");
      } else {
        this.counters.outHeartbeat++;
        this.#send(p, HEARTBEAT);
      }
    }
  }

  /**
   * Measures the state, for gauges and leak checks.
   *
   * @returns Counts of peers, groups, ids, bindings and scheduled peers.
   */
  stats(): HubStats {
    let members = 0;
    for (const g of this.#groups.values()) members += g.length;
    let bindings = 0;
    let scheduled = 0;
    for (const slot of this.#wheel) {
      scheduled += slot.size;
      for (const p of slot) if (p.bound !== undefined) bindings++;
    }
    return {
      peers: this.#peers,
      groups: this.#groups.size,
      members,
      ids: this.#ids.size,
      bindings,
      scheduled,
    };
  }

  /**
   * Every live peer, in no particular order.
   *
   * @returns An iterator over the live peers.
   */
  *peers(): IterableIterator<Peer> {
    for (const slot of this.#wheel) yield* slot;
  }

  #send(p: _Peer, frame: Uint8Array): void {
    if (!p.live) return;
    try {
      p.transport.send(frame);
    } catch (error) {
      if (error instanceof CloseError) this.close(p, error.code, error.message);
      else {
        const why = error instanceof Error ? error.message : String(error);
        this.close(p, ERR_URL, `Cannot send: ${why}`.slice(0, 120));
      }
    }
  }

  #relay(p: _Peer, r: FrameReader): void {
    const rid = r.recipientId;
    // A member answering one of its own joiners: that joiner only (not also
    // the member this peer was bound to when it joined; see PROTOCOL.md).
    if (rid !== 0 && p.joiners !== undefined) {
      const j = p.joiners.get(rid);
      if (j !== undefined) {
        if (!j.fromMember) {
          this.counters.dropped++;
          return;
        }
        if (r.lastData) {
          j.fromMember = false;
          if (!j.toMember) this.#unbind(j);
        }
        this.counters.outContent++;
        this.counters.bytesRelayed += r.dataEnd - r.dataStart;
        this.#send(j, this.#content(0, rid, r));
        return;
      }
    }
    const m = p.bound;
    if (m === undefined || !p.toMember) {
      this.counters.dropped++;
      return;
    }
    const sid = p.id;
    if (r.lastData) {
      p.toMember = false;
      if (!p.fromMember) this.#unbind(p);
    }
    this.counters.outContent++;
    this.counters.bytesRelayed += r.dataEnd - r.dataStart;
    this.#send(m, this.#content(sid, 0, r));
  }

  /**
   * The frame relaying the content `r` just read: with `reuseFrames`, over
   * the received frame or in the reused buffer; otherwise a new one.
   */
  #content(senderId: number, recipientId: number, r: FrameReader) {
    const e = this.#encoder;
    return e === undefined
      ? encodeContent(senderId, recipientId, r.data)
      : e.encodeInPlace(senderId, recipientId, r.buf, r.dataStart, r.dataEnd);
  }

  #connect(p: _Peer, id: number, members: number[]): void {
    const g = p.group ?? this.#groups.get(p.key);
    let ok = true;
    let blocker: _Peer | undefined;
    if (g === undefined) {
      this.#join(g, p, id);
    } else if (g.length === 1 && p.group === g) {
      // Rule 2a: the only member asks again; nothing changes.
    } else if (_inCommon(g, members)) {
      this.#join(g, p, id);
    } else if (g.length === 1 && p.tried?.has(g[0].groupId)) {
      // Rule 2c: the only member blocked this peer, which replaces it.
      blocker = g[0];
      this.#join(g, p, id);
      this.#leave(blocker);
    } else {
      this.#leave(p);
      this.#bind(p, _choose(g, p));
      ok = false;
    }
    this.counters.outConnected++;
    this.#send(p, ok ? CONNECTED_TRUE : CONNECTED_FALSE);
    if (blocker !== undefined) {
      this.close(
        blocker,
        ERR_BLOCKING_MEMBER,
        "Replaced by a joining peer that it prevented from joining",
      );
    }
  }

  /** Makes `p` a member of `g` (still one: its id changes), or of a new one. */
  #join(g: _Group | undefined, p: _Peer, id: number): void {
    if (g === undefined) {
      // `[p]` holds exactly one; a push onto `[]` would reserve 16.
      p.group = [p];
      this.#groups.set(p.key, p.group);
    } else if (p.group !== g) {
      g.push(p);
      p.group = g;
    }
    p.groupId = id;
    p.tried = undefined;
  }

  #leave(p: _Peer): void {
    const g = p.group;
    if (g === undefined) return;
    g.splice(g.indexOf(p), 1);
    p.group = undefined;
    if (g.length === 0) this.#groups.delete(p.key);
  }

  #bind(j: _Peer, m: _Peer): void {
    this.#unbind(j);
    // Draw the new id while the old one is still taken, so that it changes.
    const old = j.id;
    j.id = this.#newId();
    this.#ids.delete(old);
    (j.tried ??= new Set()).add(m.groupId);
    j.bound = m;
    j.toMember = j.fromMember = true;
    (m.joiners ??= new Map()).set(j.id, j);
  }

  #unbind(j: _Peer): void {
    const m = j.bound;
    if (m === undefined) return;
    m.joiners?.delete(j.id);
    if (m.joiners?.size === 0) m.joiners = undefined;
    j.bound = undefined;
    j.toMember = j.fromMember = false;
  }

  #drop(p: _Peer): void {
    p.live = false;
    this.#peers--;
    this.#wheel[p.slot].delete(p);
    this.#ids.delete(p.id);
    this.#leave(p);
    const m = p.bound;
    if (m !== undefined) {
      const notify = p.toMember;
      this.#unbind(p);
      if (notify) {
        this.counters.outContent++;
        this.#send(m, encodeContent(p.id, 0));
      }
    }
    const joiners = p.joiners;
    if (joiners !== undefined) {
      p.joiners = undefined;
      for (const [sid, j] of joiners) {
        const notify = j.fromMember;
        j.bound = undefined;
        j.toMember = j.fromMember = false;
        if (notify) {
          this.counters.outContent++;
          this.#send(j, encodeContent(0, sid));
        }
      }
    }
  }

  #newId(): number {
    let id = this.#randomId();
    // A random source that keeps colliding must not hang us: probe onwards.
    for (let tries = 0; this.#ids.has(id); tries++) {
      id = tries < 32 ? this.#randomId() : (id % MAX_ID) + 1;
    }
    this.#ids.add(id);
    return id;
  }

  /** A number in 1..2^31-1, whatever the random source returns. */
  #randomId(): number {
    const n = Math.floor(this.#random() * MAX_ID) % MAX_ID;
    return Number.isFinite(n) ? Math.abs(n) + 1 : 1;
  }
}

function _inCommon(g: _Group, members: number[]): boolean {
  if (members.length === 0) return false;
  // A hostile peer may list thousands of ids: look them up in a set then.
  const listed = members.length > 16 ? new Set(members) : undefined;
  for (const m of g) {
    if (listed ? listed.has(m.groupId) : members.includes(m.groupId)) {
      return true;
    }
  }
  return false;
}

/** Favored members first, then the others, in join order; untried first. */
function _choose(g: _Group, j: _Peer): _Peer {
  for (;;) {
    let plain: _Peer | undefined;
    for (const m of g) {
      if (j.tried?.has(m.groupId)) continue;
      if (m.favored) return m;
      plain ??= m;
    }
    if (plain !== undefined) return plain;
    j.tried = undefined;
  }
}

/**
 * A random source in [0, 1) drawn from `crypto.getRandomValues`, 64 values
 * at a time: signaling ids are as hard to guess as the original's.
 */
function _cryptoRandom(): () => number {
  const pool = new Uint32Array(64);
  let next = pool.length;
  return () => {
    if (next === pool.length) {
      crypto.getRandomValues(pool);
      next = 0;
    }
    return pool[next++] / 2 ** 32;
  };
}
