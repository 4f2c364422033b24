/**
 * The state of a PeerJS server: ids held per key namespace, the connect
 * sequence, the relay of negotiation messages with their source set by the
 * server, the queues of absent ids and their expiry, and the alive timeout.
 *
 * Pure: it talks to each client through the {@linkcode PeerTransport} it
 * was given and is driven by explicit calls (connect, receive, forget,
 * tick); time is counted in ticks.
 *
 * @module
 */

import {
  CLOSE_NORMAL,
  CLOSE_POLICY_VIOLATION,
  ERR_HEARTBEAT,
  ERR_MESSAGE,
} from "../codes.ts";
import { keyHash } from "../log.ts";
import { Tally } from "../metrics.ts";
import {
  CloseError,
  type PeerTransport,
  type ProtocolPeer,
} from "../protocol.ts";
import type { EvictReason, PeerjsBus, PeerjsBusFactory } from "./bus.ts";
import { checkId, isClientToken, isId } from "./id.ts";
import { OfflineQueues, type QueueRefusal } from "./queue.ts";
import {
  ERROR,
  EXPIRE,
  HEARTBEAT,
  ID_TAKEN,
  LEAVE,
  OPEN,
  parseClientMessage,
  RELAYED,
  relayMessage,
  serverMessage,
} from "./wire.ts";

/** The original server's text for a socket without id, token or key. */
export const MSG_MISSING = "No id, token, or key supplied to websocket server";
/** The original server's text for a key it does not serve. */
export const MSG_KEY = "Invalid key provided";
/** The original server's text for a malformed client token. */
export const MSG_TOKEN = "Invalid token provided";
/** The original server's text for an id held with another token. */
export const MSG_TAKEN = "ID is taken";
/** The original server's text for a server at its limit. */
export const MSG_LIMIT = "Server has reached its concurrent user limit";

/** Ticks between two sweeps for silent clients. */
const _SWEEP_TICKS = 10;
/** Frames a client may send while its id is being claimed on the cluster. */
const _HELD_MAX = 64;

/** Options of {@linkcode PeerjsHub}; durations count ticks. */
export interface PeerjsHubOptions {
  /**
   * The keys served, each a namespace of ids of its own.
   * @default {["peerjs"]}
   */
  keys?: readonly string[];
  /**
   * Most ids held at once, in all (0: no limit but the server's).
   * @default {0}
   */
  maxIds?: number;
  /**
   * Ticks a client may stay silent (its heartbeats come every 5 s).
   * @default {600}
   */
  aliveTicks?: number;
  /**
   * Ticks after which the messages queued for an absent id expire.
   * @default {50}
   */
  expireTicks?: number;
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
  /**
   * Makes the bus that holds ids and carries messages across a cluster;
   * without one, ids are this hub's alone.
   */
  bus?: PeerjsBusFactory;
}

/** What a client's socket asked for in its query, and its token's scope. */
export interface ConnectRequest {
  /** The API key (`key`). */
  key: string | null | undefined;
  /** The id it takes (`id`). */
  id: string | null | undefined;
  /** Its own secret for its id (`token`), not an access token. */
  token: string | null | undefined;
  /** The prefix its access token grants, with access tokens on. */
  scope?: string;
}

/** A connected PeerJS client. */
export class PeerjsClient implements ProtocolPeer {
  /** The hash of its id, for logs: an id is never logged in clear. */
  readonly id: string;
  /** Its PeerJS id. */
  readonly name: string;
  /** Its key namespace. */
  readonly key: string;
  /** Its client token. */
  readonly token: string;
  /** The prefix its access token grants. */
  readonly scope: string | undefined;
  /** Its transport. */
  readonly transport: PeerTransport;
  /** Its id as JSON, the `src` of what it sends. */
  readonly src: string;
  /** Whether the hub holds it. */
  live = true;
  /** Whether it was sent OPEN: its id is claimed. */
  open = false;
  /** Frames it sent while its id was being claimed. */
  held: string[] = [];
  /** The tick it was last heard on. */
  seen: number;

  /**
   * Creates a client record.
   *
   * @param transport Its transport.
   * @param request What it asked for, checked.
   * @param tick The current tick.
   */
  constructor(
    transport: PeerTransport,
    request: { key: string; id: string; token: string; scope?: string },
    tick: number,
  ) {
    this.transport = transport;
    this.name = request.id;
    this.key = request.key;
    this.token = request.token;
    this.scope = request.scope;
    this.id = keyHash(request.id);
    this.src = JSON.stringify(request.id);
    this.seen = tick;
  }
}

/** What a hub counts, for its metrics. */
export interface PeerjsCounters {
  /** Messages relayed, by type. */
  readonly relayed: Tally;
  /** Messages queued for absent ids. */
  queued: number;
  /** Messages delivered from a queue when their id connected. */
  delivered: number;
  /** EXPIRE notices sent. */
  expired: number;
  /** Messages dropped: an unknown type, a bad or out-of-scope `dst`. */
  dropped: number;
  /** Sockets refused at connect, by reason. */
  readonly refused: Tally;
  /** Live sockets replaced by their id's reconnect with its token. */
  replaced: number;
  /** Messages carried to another node by the bus. */
  crossed: number;
  /** Messages from other nodes' clients delivered here by the bus. */
  received: number;
}

/**
 * The PeerJS server state.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PeerjsHub } from "./hub.ts";
 * const hub = new PeerjsHub();
 * const sent: string[] = [];
 * const transport = { send: (f: string | Uint8Array) => void sent.push(String(f)), close() {} };
 * hub.connect(transport, { key: "peerjs", id: "alice", token: "t1" });
 * assert.deepEqual(sent, ['{"type":"OPEN"}']);
 * ```
 */
export class PeerjsHub {
  readonly counters: PeerjsCounters = {
    relayed: new Tally(["type"]),
    queued: 0,
    delivered: 0,
    expired: 0,
    dropped: 0,
    refused: new Tally(["reason"]),
    replaced: 0,
    crossed: 0,
    received: 0,
  };
  readonly #namespaces = new Map<string, Map<string, PeerjsClient>>();
  readonly #queues: OfflineQueues;
  readonly #maxIds: number;
  readonly #aliveTicks: number;
  readonly #expireTicks: number;
  readonly #bus: PeerjsBus | undefined;
  #size = 0;
  #tick = 0;

  /**
   * Creates an empty hub.
   *
   * @param options Keys, limits and durations.
   */
  constructor(options: PeerjsHubOptions = {}) {
    for (const key of options.keys ?? ["peerjs"]) {
      this.#namespaces.set(key, new Map());
    }
    this.#maxIds = options.maxIds ?? 0;
    this.#aliveTicks = options.aliveTicks ?? 600;
    this.#expireTicks = options.expireTicks ?? 50;
    this.#queues = new OfflineQueues({
      maxPerId: options.maxQueuedPerId,
      maxBytes: options.maxQueuedBytes,
    });
    this.#bus = options.bus?.({
      deliver: (key, dst, frame) => this.#deliver(key, dst, frame),
      arrived: (key, id) => this.#arrived(key, id),
      evict: (key, id, reason) => this.#evict(key, id, reason),
    });
  }

  /** The cluster's bus, if any. */
  get bus(): PeerjsBus | undefined {
    return this.#bus;
  }

  /** Clients connected. */
  get size(): number {
    return this.#size;
  }

  /** Messages waiting for absent ids. */
  get queued(): number {
    return this.#queues.size;
  }

  /** Bytes waiting for absent ids. */
  get queuedBytes(): number {
    return this.#queues.bytes;
  }

  /**
   * Whether an id is held in a key's namespace.
   *
   * @param key The key.
   * @param id The id.
   * @returns Whether it is.
   */
  holds(key: string, id: string): boolean {
    return this.#namespaces.get(key)?.has(id) ?? false;
  }

  /**
   * The ids held in a key's namespace that start with `scope`.
   *
   * @param key The key.
   * @param scope The prefix (`""`: all).
   * @returns The ids.
   */
  ids(key: string, scope = ""): string[] {
    const ids: string[] = [];
    for (const id of this.#namespaces.get(key)?.keys() ?? []) {
      if (id.startsWith(scope)) ids.push(id);
    }
    return ids;
  }

  /**
   * A client's socket opened: the connect checks, in the original server's
   * order, then OPEN and the messages that waited for its id. A refused
   * socket gets ERROR or ID-TAKEN and is closed. On a cluster, an id not
   * held here is claimed first: the client is pending, its frames held,
   * until the bus answers OPEN or ID-TAKEN.
   *
   * @param transport How to reach the client.
   * @param request What its query asked for.
   * @returns The client, or `undefined` when it was refused.
   */
  connect(
    transport: PeerTransport,
    request: ConnectRequest,
  ): PeerjsClient | undefined {
    const { key, id, token, scope } = request;
    const namespace = key ? this.#namespaces.get(key) : undefined;
    const refusal = _connectRefusal(request, namespace);
    if (refusal !== undefined) {
      return _refuse(this.counters, transport, refusal);
    }
    const held = namespace!.get(id!);
    if (held !== undefined) {
      if (held.token !== token) {
        return _refuse(this.counters, transport, _TAKEN);
      }
      // The same client again (a reconnect before its old socket dropped):
      // the new socket takes over, and gets OPEN, without which the 1.5.5
      // client never calls itself open.
      this.counters.replaced++;
      held.live = false;
      this.#size--;
      held.transport.close(
        CLOSE_NORMAL,
        "Replaced: the same id connected again with its token",
      );
    } else if (this.#maxIds > 0 && this.#size >= this.#maxIds) {
      return _refuse(this.counters, transport, {
        reason: "limit",
        type: ERROR,
        msg: MSG_LIMIT,
      });
    }
    const client = new PeerjsClient(
      transport,
      { key: key!, id: id!, token: token!, scope },
      this.#tick,
    );
    namespace!.set(id!, client);
    this.#size++;
    const bus = this.#bus;
    if (bus === undefined || held?.open) return this.#open(client);
    bus.claim(key!, id!, token!).then(
      (claimed) => this.#claimed(client, claimed),
      // A bus that fails claims locally, as one node would.
      () => this.#claimed(client, true),
    );
    return client;
  }

  /** The bus answered a pending client's claim. */
  #claimed(client: PeerjsClient, claimed: boolean): void {
    if (!client.live) return;
    if (claimed) {
      this.#open(client);
      return;
    }
    this.#forget(client);
    _refuse(this.counters, client.transport, _TAKEN);
  }

  /** OPEN, then what waited for the id, then what the client sent meanwhile. */
  #open(client: PeerjsClient): PeerjsClient | undefined {
    client.open = true;
    if (!this.#send(client, serverMessage(OPEN))) return undefined;
    const waiting = this.#queues.take(client.key, client.name);
    if (waiting !== undefined) {
      for (const message of waiting) {
        if (!this.#send(client, message.frame)) break;
        this.counters.delivered++;
      }
    }
    const held = client.held;
    client.held = [];
    for (const text of held) this.receive(client, text);
    return client.live ? client : undefined;
  }

  /**
   * One text frame from a client: a heartbeat, or a message to relay to
   * its `dst` (queued while `dst` is absent).
   *
   * @param client The sender.
   * @param text The frame.
   */
  receive(client: PeerjsClient, text: string): void {
    if (!client.live) return;
    if (!client.open) {
      if (client.held.length < _HELD_MAX) client.held.push(text);
      else this.counters.dropped++;
      return;
    }
    let message;
    try {
      message = parseClientMessage(text);
    } catch {
      this.close(
        client,
        ERR_MESSAGE,
        "Cannot read message: not a JSON object with a type",
      );
      return;
    }
    client.seen = this.#tick;
    const type = message.type;
    if (type === HEARTBEAT) return;
    const dst = message.dst;
    if (
      !RELAYED.has(type) || !isId(dst) ||
      (client.scope !== undefined && !dst.startsWith(client.scope))
    ) {
      this.counters.dropped++;
      return;
    }
    const frame = relayMessage(
      type,
      client.src,
      JSON.stringify(dst),
      message.payload,
    );
    const target = this.#namespaces.get(client.key)!.get(dst);
    if (target?.open) {
      if (this.#send(target, frame)) this.counters.relayed.add(type);
      return;
    }
    const bus = this.#bus;
    if (target === undefined && bus !== undefined) {
      bus.send(client.key, dst, frame).then(
        (sent) => this.#sent(client, type, dst, frame, sent),
        () => this.#sent(client, type, dst, frame, false),
      );
      return;
    }
    this.#queue(client, type, dst, frame);
  }

  /** The bus carried a message to another node, or found nobody holding dst. */
  #sent(
    client: PeerjsClient,
    type: string,
    dst: string,
    frame: string,
    sent: boolean,
  ): void {
    if (sent) {
      this.counters.relayed.add(type);
      this.counters.crossed++;
      return;
    }
    // Its dst may have connected here meanwhile.
    const target = this.#namespaces.get(client.key)!.get(dst);
    if (target?.open) {
      if (this.#send(target, frame)) this.counters.relayed.add(type);
    } else if (client.live) this.#queue(client, type, dst, frame);
    else this.counters.dropped++;
  }

  /** Queues a message for an absent id; ERROR to its sender when full. */
  #queue(client: PeerjsClient, type: string, dst: string, frame: string): void {
    if (type === LEAVE) return void this.counters.dropped++;
    const refusal = this.#queues.add(
      client.key,
      dst,
      { src: client.name, frame },
      this.#tick,
    );
    if (refusal === undefined) this.counters.queued++;
    else {
      this.counters.refused.add(`queue_${refusal}`);
      this.#send(client, serverMessage(ERROR, _queueFull(refusal)));
    }
  }

  /**
   * Closes a client for the server.
   *
   * @param client The client.
   * @param code The close code.
   * @param reason The close reason.
   */
  close(client: PeerjsClient, code: number, reason: string): void {
    if (!client.live) return;
    this.#forget(client);
    client.transport.close(code, reason);
  }

  /**
   * Forgets a client whose socket closed. Idempotent.
   *
   * @param client The client.
   */
  forget(client: PeerjsClient): void {
    if (client.live) this.#forget(client);
  }

  /**
   * One tick: queues that waited too long expire (each sender still
   * connected gets one EXPIRE per absent id), and every second clients
   * silent past the alive timeout are closed.
   */
  tick(): void {
    const tick = ++this.#tick;
    for (const queue of this.#queues.expire(tick, this.#expireTicks)) {
      const namespace = this.#namespaces.get(queue.key)!;
      for (const [sender, frame] of _expireNotices(queue)) {
        const client = namespace.get(sender);
        if (client !== undefined && this.#send(client, frame)) {
          this.counters.expired++;
        }
      }
    }
    if (tick % _SWEEP_TICKS !== 0) return;
    for (const namespace of this.#namespaces.values()) {
      for (const client of namespace.values()) {
        if (tick - client.seen < this.#aliveTicks) continue;
        this.close(
          client,
          ERR_HEARTBEAT,
          "Cannot keep: the client was silent past the alive timeout",
        );
      }
    }
  }

  #forget(client: PeerjsClient): void {
    client.live = false;
    client.held = [];
    const namespace = this.#namespaces.get(client.key)!;
    if (namespace.get(client.name) === client) {
      namespace.delete(client.name);
      // After a pending claim too: the bus keeps its calls in order.
      this.#bus?.release(client.key, client.name);
    }
    // With nobody connected, no queued message has a sender to tell or a
    // negotiation to finish; and the scheduler stops ticking then.
    if (--this.#size === 0) this.#queues.clear();
  }

  /** A message of another node's client for an id held here. */
  #deliver(key: string, dst: string, frame: string): void {
    const target = this.#namespaces.get(key)?.get(dst);
    if (target === undefined) this.counters.dropped++;
    else if (!target.open) {
      // Its claim is answered on another connection than this message:
      // it waits for the OPEN with what local clients queued.
      if (this.#queues.add(key, dst, { src: "", frame }, this.#tick)) {
        this.counters.dropped++;
      }
    } else if (this.#send(target, frame)) this.counters.received++;
  }

  /** An id connected on another node: what waits here for it goes there. */
  #arrived(key: string, id: string): void {
    const waiting = this.#queues.take(key, id);
    const bus = this.#bus;
    if (waiting === undefined || bus === undefined) return;
    for (const message of waiting) {
      // Sent to its id's node, or back in the queue here (if anyone is).
      const went = (sent: boolean) => {
        if (sent) {
          this.counters.delivered++;
          this.counters.crossed++;
        } else if (this.#size > 0) {
          this.#queues.add(key, id, message, this.#tick);
        }
      };
      bus.send(key, id, message.frame).then(went, () => went(false));
    }
  }

  /** An id held here is held on another node now. */
  #evict(key: string, id: string, reason: EvictReason): void {
    const client = this.#namespaces.get(key)?.get(id);
    if (client === undefined) return;
    if (reason === "replaced") {
      this.counters.replaced++;
      this.close(
        client,
        CLOSE_NORMAL,
        "Replaced: the same id connected on another node with its token",
      );
      return;
    }
    this.#forget(client);
    _refuse(this.counters, client.transport, _TAKEN);
  }

  /** Sends a frame; a client that cannot take it is closed. */
  #send(client: PeerjsClient, frame: string): boolean {
    try {
      client.transport.send(frame);
      return true;
    } catch (error) {
      if (!(error instanceof CloseError)) throw error;
      this.close(client, error.code, error.message);
      return false;
    }
  }
}

function _queueFull(refusal: QueueRefusal): string {
  return refusal === "id_full"
    ? "Cannot queue: too many messages wait for that id already"
    : "Cannot queue: the server holds too many messages for absent ids";
}

/** A close reason fits in 123 bytes. */
function _reason(msg: string): string {
  return msg.length <= 120 ? msg : msg.slice(0, 117) + "...";
}

/** A refusal at connect: what is counted, and the message sent. */
interface _Refusal {
  readonly reason: string;
  readonly type: string;
  readonly msg: string;
}

const _TAKEN: _Refusal = { reason: "id_taken", type: ID_TAKEN, msg: MSG_TAKEN };

/**
 * The connect checks that need no state but the key's namespace, in the
 * original server's order: missing parameters, an unknown key, a bad id, a
 * bad token.
 */
function _connectRefusal(
  request: ConnectRequest,
  namespace: Map<string, PeerjsClient> | undefined,
): _Refusal | undefined {
  const { key, id, token, scope } = request;
  if (!id || !token || !key) {
    return { reason: "params", type: ERROR, msg: MSG_MISSING };
  }
  if (namespace === undefined) {
    return { reason: "key", type: ERROR, msg: MSG_KEY };
  }
  const problem = checkId(id, scope);
  if (problem !== undefined) {
    const reason = problem.includes("token") ? "scope" : "id";
    return { reason, type: ERROR, msg: problem };
  }
  if (!isClientToken(token)) {
    return { reason: "token", type: ERROR, msg: MSG_TOKEN };
  }
  return undefined;
}

/** Counts a refusal, sends its message, and closes the socket. */
function _refuse(
  counters: PeerjsCounters,
  transport: PeerTransport,
  refusal: _Refusal,
): undefined {
  counters.refused.add(refusal.reason);
  try {
    transport.send(serverMessage(refusal.type, refusal.msg));
  } catch (error) {
    if (!(error instanceof CloseError)) throw error;
  }
  transport.close(CLOSE_POLICY_VIOLATION, _reason(refusal.msg));
  return undefined;
}

/**
 * The EXPIRE notices of an expired queue: one per sender, whatever it sent.
 *
 * @returns Pairs of the sender's id and its notice.
 */
function _expireNotices(
  queue: { dst: string; messages: readonly { src: string }[] },
): Map<string, string> {
  const src = JSON.stringify(queue.dst);
  const notices = new Map<string, string>();
  for (const { src: sender } of queue.messages) {
    if (!notices.has(sender)) {
      notices.set(
        sender,
        relayMessage(EXPIRE, src, JSON.stringify(sender), undefined),
      );
    }
  }
  return notices;
}
