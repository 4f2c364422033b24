/**
 * PeerJS across the nodes of a cluster: {@linkcode RedisPeerjsBus} is the
 * hub's bus (`lib/peerjs/bus.ts`) on Redis.
 *
 * - **An id on one node.** A node claims an id before it answers OPEN:
 *   `<prefix>pj:id:<key>:<hash of the id>` set to `<node>|<token hash>`
 *   with a time to live (`claimTtl`), by a script that sets it only when it
 *   is free, ours, or held with the same token (the client moved: the old
 *   node is told to let it go). Another token gets ID-TAKEN. A node renews
 *   its claims every third of their time to live and deletes each when its
 *   client leaves, only if it is still its own.
 * - **A message to another node's id.** The node that holds `dst` is read
 *   from its claim and the message is published on that node's channel,
 *   `<prefix>pj:node:<node>`.
 * - **Queues follow an id.** A node that claims an id announces it on
 *   `<prefix>pj:arrived`; nodes that queued messages for it send them on.
 * - **Redis away.** Claims are made locally and sends find nobody (they
 *   queue, then expire); the renewal puts local claims back once Redis
 *   answers, and a claim found held by another token then closes the local
 *   client with ID-TAKEN (the claim in Redis wins).
 *
 * Ids and tokens never reach Redis in clear in key names (HMAC with the
 * cluster secret); messages are signed like the y-webrtc bus's:
 *
 * ```
 * <base64url HMAC-SHA256(secret, "sigver-pj-v1\n" channel "\n" rest)>.<rest>
 * rest = JSON {n: node, s: sequence, t: "msg" | "arrived" | "replace", k: key, i: id, f?: frame}
 * ```
 *
 * and checked fully (signature, channel, sequence above the node's last,
 * fields, frame) before anything is handed to the hub.
 *
 * @example
 * ```ts ignore
 * import { RedisPeerjsBus } from "./peerjs_bus.ts";
 * import { serve } from "../deno/serve.ts";
 * serve({
 *   peerjsBus: (events) =>
 *     new RedisPeerjsBus(events, {
 *       redis: "redis://127.0.0.1:6379",
 *       secret: Deno.env.get("SIGVER_CLUSTER_SECRET")!,
 *     }),
 * });
 * ```
 *
 * @module
 */

import type { Logger } from "../lib/log.ts";
import type { MetricFamily } from "../lib/metrics.ts";
import type { PeerjsBus, PeerjsBusEvents } from "../lib/peerjs/bus.ts";
import { isId } from "../lib/peerjs/id.ts";
import { RELAYED } from "../lib/peerjs/wire.ts";
import { RedisClient } from "./redis.ts";
import { RedisSubscriber } from "./redis_subscriber.ts";
import {
  base64url,
  busMetrics,
  MessageSigner,
  RejectCounter,
  ReplayGuard,
} from "./signed_messages.ts";

/** Why a message from Redis was dropped. */
export type PeerjsRejectReason = "malformed" | "forged" | "replayed";

/** Counters of a {@linkcode RedisPeerjsBus}. */
export interface PeerjsBusStats {
  /** Claims Redis answered: this node holds the id. */
  claimed: number;
  /** Claims Redis refused: another token holds the id. */
  taken: number;
  /** Claims made locally: Redis did not answer. */
  local: number;
  /** Local ids closed: Redis held them for another node. */
  evicted: number;
  /** Messages published to another node's channel. */
  sent: number;
  /** Messages from another node handed to the hub. */
  delivered: number;
  /** Messages from Redis dropped, by why. */
  rejected: Record<PeerjsRejectReason, number>;
}

/** Options of a {@linkcode RedisPeerjsBus}. */
export interface RedisPeerjsBusOptions {
  /** `redis://[:password@]host:port[/db]`: the cluster's Redis. */
  redis: string;
  /** The cluster secret: messages are signed and checked with it. */
  secret: string;
  /**
   * Prefix of the keys and channels.
   * @default {"sigver:"}
   */
  prefix?: string;
  /**
   * Milliseconds Redis may take to connect or answer.
   * @default {1000}
   */
  redisTimeout?: number;
  /**
   * Longest wait, in milliseconds, between two attempts to reach Redis.
   * @default {2000}
   */
  backoffMax?: number;
  /**
   * Milliseconds a claim lives unless renewed: how long the ids of a node
   * that died stay taken (a client with its token takes its id back at
   * once).
   * @default {30000}
   */
  claimTtl?: number;
  /** Where Redis coming and going, and dropped messages, are logged. */
  log?: Logger;
}

const _MESSAGE = /^([A-Za-z0-9_-]{43})\.(\{.*\})$/s;
const _NODE = /^[0-9a-f]{16}$/;
const _TYPES = new Set(["msg", "arrived", "replace"]);

// KEYS[1] claim; ARGV value, token hash, ttl. Free, ours or the same token:
// set, answering the old value ("" when free); another token: "!".
const _CLAIM = `local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] and string.sub(v, 18) ~= ARGV[2] then return '!' end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return v or ''`;
// Ours: renewed (1); gone: set again (2); another's: its value.
const _RENEW = `local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2 end
return v`;
const _RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then
return redis.call('DEL', KEYS[1]) end return 0`;

function _hex(bytes: ArrayBuffer, length: number): string {
  return Array.from(
    new Uint8Array(bytes, 0, length),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}

/** A claim of this node. */
interface _Held {
  key: string;
  id: string;
  value: string;
}

/** A message read and checked. */
interface _Message {
  n: string;
  s: number;
  t: "msg" | "arrived" | "replace";
  k: string;
  i: string;
  f?: string;
}

/**
 * The PeerJS bus of a cluster node, on Redis. Made by the hub through its
 * factory; closed by the server (`await using`, or `close()`).
 */
export class RedisPeerjsBus implements PeerjsBus, AsyncDisposable {
  /** This node's id in claims and messages: random, new at every start. */
  readonly id: string = _hex(
    crypto.getRandomValues(new Uint8Array(8)).buffer,
    8,
  );
  readonly #events: PeerjsBusEvents;
  readonly #prefix: string;
  readonly #ttl: number;
  readonly #log: Logger | undefined;
  readonly #signer: MessageSigner;
  readonly #redis: RedisClient;
  readonly #subscriber: RedisSubscriber;
  readonly #arrivedChannel: string;
  readonly #nodeChannel: string;
  /** This node's claims, by Redis key. */
  readonly #held = new Map<string, _Held>();
  readonly #replays = new ReplayGuard();
  readonly #rejects: RejectCounter<PeerjsRejectReason>;
  readonly #stats: Omit<PeerjsBusStats, "rejected"> = {
    claimed: 0,
    taken: 0,
    local: 0,
    evicted: 0,
    sent: 0,
    delivered: 0,
  };
  #seq = 0;
  /** Every call and every message in, in order. */
  #chain: Promise<unknown> = Promise.resolve();
  #renewal: ReturnType<typeof setInterval> | undefined;
  #closing: Promise<void> | undefined;

  /**
   * Creates the bus and starts connecting to Redis.
   *
   * @param events Where messages, arrivals and evictions go.
   * @param options Redis, the cluster secret and prefix, the timeouts.
   * @throws {TypeError} When the Redis URL is not one, or the secret is
   * empty.
   */
  constructor(events: PeerjsBusEvents, options: RedisPeerjsBusOptions) {
    this.#signer = new MessageSigner(options.secret, "sigver-pj-v1");
    this.#events = events;
    this.#prefix = options.prefix ?? "sigver:";
    this.#ttl = options.claimTtl ?? 30_000;
    if (!Number.isInteger(this.#ttl) || this.#ttl < 30) {
      throw new RangeError(
        `Cannot use claimTtl: ${this.#ttl} is not an integer of at least 30`,
      );
    }
    this.#log = options.log;
    this.#rejects = new RejectCounter(["malformed", "forged", "replayed"], {
      event: "peerjs_bus_rejected",
      log: options.log,
    });
    this.#arrivedChannel = `${this.#prefix}pj:arrived`;
    this.#nodeChannel = `${this.#prefix}pj:node:${this.id}`;
    const timeout = options.redisTimeout ?? 1000;
    const backoffMax = options.backoffMax ?? 2000;
    const backoffMin = Math.min(100, backoffMax);
    this.#redis = new RedisClient(options.redis, {
      connectTimeout: timeout,
      commandTimeout: Math.max(timeout, 1000),
      backoffMin,
      backoffMax,
    });
    this.#subscriber = new RedisSubscriber(options.redis, {
      onMessage: (channel, payload) =>
        void this.#then(() => this.#receive(channel, payload)),
      onState: (up, error) => {
        this.#log?.write(up ? "info" : "warn", "cluster", {
          what: up ? "PeerJS bus up" : "PeerJS bus down",
          error: error?.message,
        });
        // Back from an outage: put the claims made meanwhile in Redis.
        if (up) void this.#then(() => this.#renew());
      },
      timeout,
      pingInterval: Math.max(timeout, 1000),
      backoffMin,
      backoffMax,
    });
    this.#subscriber.subscribe(this.#nodeChannel);
    this.#subscriber.subscribe(this.#arrivedChannel);
    this.#renewal = setInterval(
      () => void this.#then(() => this.#renew()),
      Math.floor(this.#ttl / 3),
    );
  }

  /** Whether the subscriber connection is up with both channels. */
  get connected(): boolean {
    return this.#subscriber.connected;
  }

  /**
   * Claims an id for this node.
   *
   * @param key The key namespace.
   * @param id The id.
   * @param token The client's token.
   * @returns Whether this node holds it (also when Redis is away).
   */
  claim(key: string, id: string, token: string): Promise<boolean> {
    return this.#then(async () => {
      const name = await this.#claimKey(key, id);
      const tokenHash = await this.#mac(
        `sigver-pj-token\n${key}\n${id}\n${token}`,
      );
      const value = `${this.id}|${tokenHash}`;
      let old;
      try {
        old = await this.#redis.command(
          "EVAL",
          _CLAIM,
          1,
          name,
          value,
          tokenHash,
          this.#ttl,
        );
      } catch {
        this.#stats.local++;
        this.#held.set(name, { key, id, value });
        return true;
      }
      if (old === "!") {
        this.#stats.taken++;
        return false;
      }
      this.#stats.claimed++;
      this.#held.set(name, { key, id, value });
      const holder = typeof old === "string" ? old.slice(0, 16) : "";
      if (_NODE.test(holder) && holder !== this.id) {
        await this.#publish(
          `${this.#prefix}pj:node:${holder}`,
          "replace",
          key,
          id,
        );
      }
      await this.#publish(this.#arrivedChannel, "arrived", key, id);
      return true;
    });
  }

  /**
   * Deletes this node's claim of an id, if it is still its own.
   *
   * @param key The key namespace.
   * @param id The id.
   */
  release(key: string, id: string): void {
    void this.#then(async () => {
      const name = await this.#claimKey(key, id);
      const held = this.#held.get(name);
      if (held === undefined) return;
      this.#held.delete(name);
      await this.#redis.command("EVAL", _RELEASE, 1, name, held.value).catch(
        () => {},
      );
    });
  }

  /**
   * Publishes a message on the channel of the node that holds `dst`.
   *
   * @param key The key namespace.
   * @param dst The id it is for.
   * @param frame The frame.
   * @returns Whether a live node holds `dst` and Redis took the message.
   */
  send(key: string, dst: string, frame: string): Promise<boolean> {
    return this.#then(async () => {
      try {
        const value = await this.#redis.command(
          "GET",
          await this.#claimKey(key, dst),
        );
        const holder = typeof value === "string" ? value.slice(0, 16) : "";
        if (!_NODE.test(holder) || holder === this.id) return false;
        const n = await this.#publish(
          `${this.#prefix}pj:node:${holder}`,
          "msg",
          key,
          dst,
          frame,
        );
        if (n > 0) this.#stats.sent++;
        return n > 0;
      } catch {
        return false;
      }
    });
  }

  /**
   * The counters, a snapshot.
   *
   * @returns A copy of the counters.
   */
  stats(): PeerjsBusStats {
    return { ...this.#stats, rejected: this.#rejects.counts() };
  }

  /**
   * The bus's metric families, labelled `protocol="peerjs"`:
   * `sigver_peerjs_bus_up`, `_claims_total` and `_rejected_total`.
   *
   * @returns The families.
   */
  metrics(): MetricFamily[] {
    const label = { protocol: "peerjs" } as const;
    const s = this.#stats;
    return busMetrics([
      {
        name: "sigver_peerjs_bus_claims_total",
        help:
          "PeerJS id claims, by outcome: claimed in Redis, taken by another token, made locally with Redis away, or lost to another node on renewal.",
        type: "counter",
        samples: [
          [{ ...label, outcome: "claimed" }, s.claimed],
          [{ ...label, outcome: "taken" }, s.taken],
          [{ ...label, outcome: "local" }, s.local],
          [{ ...label, outcome: "evicted" }, s.evicted],
        ],
      },
    ], {
      metric: "peerjs",
      title: "PeerJS",
      labels: label,
      up: this.connected,
      rejects: this.#rejects,
    });
  }

  /**
   * Stops: no more calls, no more events; the claims are left to expire.
   * Idempotent.
   *
   * @returns A promise that resolves once no connection, timer or pending
   * operation of the bus remains.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#renewal);
      await this.#subscriber.close();
      await this.#chain;
      await this.#redis.close();
    })();
    return this.#closing;
  }

  /**
   * Same as {@linkcode RedisPeerjsBus.close}.
   *
   * @returns The promise of `close()`.
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Runs after everything asked before; after close, not at all. */
  #then<T>(step: () => Promise<T>): Promise<T> {
    const next = this.#chain.then(() => {
      if (this.#closing !== undefined) {
        throw new Error("Cannot use the PeerJS bus: it is closed");
      }
      return step();
    });
    this.#chain = next.catch(() => {});
    return next;
  }

  async #mac(text: string): Promise<string> {
    return base64url(await this.#signer.mac(text));
  }

  async #claimKey(key: string, id: string): Promise<string> {
    const mac = await this.#signer.mac(`sigver-pj-id\n${key}\n${id}`);
    return `${this.#prefix}pj:id:${key}:${_hex(mac, 16)}`;
  }

  async #publish(
    channel: string,
    t: _Message["t"],
    k: string,
    i: string,
    f?: string,
  ): Promise<number> {
    const rest = JSON.stringify({ n: this.id, s: ++this.#seq, t, k, i, f });
    const n = await this.#redis.command(
      "PUBLISH",
      channel,
      await this.#signer.sign(channel, rest),
    );
    return typeof n === "number" ? n : 0;
  }

  /** Renews this node's claims; reclaims lost ones; gives up others'. */
  async #renew(): Promise<void> {
    if (this.#held.size === 0) return;
    const held = [...this.#held.entries()];
    let replies;
    try {
      replies = await this.#redis.pipeline(
        held.map(([name, { value }]) => [
          "EVAL",
          _RENEW,
          1,
          name,
          value,
          this.#ttl,
        ]),
      );
    } catch {
      return;
    }
    for (const [i, [name, claim]] of held.entries()) {
      const reply = replies[i];
      if (reply === 2) {
        await this.#publish(
          this.#arrivedChannel,
          "arrived",
          claim.key,
          claim.id,
        )
          .catch(() => 0);
      } else if (typeof reply === "string" && this.#held.get(name) === claim) {
        this.#held.delete(name);
        this.#stats.evicted++;
        const sameToken = reply.slice(17) === claim.value.slice(17);
        this.#hand(() =>
          this.#events.evict(
            claim.key,
            claim.id,
            sameToken ? "replaced" : "taken",
          )
        );
      }
    }
  }

  /** Checks a message off Redis, then hands it to the hub. */
  async #receive(channel: string, payload: string): Promise<void> {
    const message = _parse(payload);
    if (message === undefined) return this.#rejects.record("malformed");
    const [signature, rest, body] = message;
    if (body.n === this.id) return;
    const valid = await this.#signer.verify(channel, signature, rest);
    if (!valid) return this.#rejects.record("forged");
    const expected = body.t === "arrived"
      ? this.#arrivedChannel
      : this.#nodeChannel;
    if (channel !== expected) return this.#rejects.record("malformed");
    if (!this.#replays.admit(body.n, body.s)) {
      return this.#rejects.record("replayed");
    }
    if (body.t === "arrived") {
      this.#hand(() => this.#events.arrived(body.k, body.i));
    } else if (body.t === "replace") {
      const name = await this.#claimKey(body.k, body.i);
      if (!this.#held.delete(name)) return;
      this.#hand(() => this.#events.evict(body.k, body.i, "replaced"));
    } else {
      this.#stats.delivered++;
      this.#hand(() => this.#events.deliver(body.k, body.i, body.f!));
    }
  }

  #hand(call: () => void): void {
    if (this.#closing !== undefined) return;
    try {
      call();
    } catch (thrown) {
      reportError(thrown);
    }
  }
}

/** A message's signature, signed part and fields; `undefined` if not one. */
function _parse(payload: string): [string, string, _Message] | undefined {
  const head = _MESSAGE.exec(payload);
  if (head === null) return undefined;
  let body: unknown;
  try {
    body = JSON.parse(head[2]);
  } catch {
    return undefined;
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return undefined;
  }
  const m = body as Record<string, unknown>;
  if (
    typeof m.n !== "string" || !_NODE.test(m.n) ||
    !Number.isSafeInteger(m.s) || (m.s as number) < 1 ||
    typeof m.t !== "string" || !_TYPES.has(m.t) ||
    typeof m.k !== "string" || m.k === "" || m.k.length > 256 ||
    !isId(m.i)
  ) {
    return undefined;
  }
  if (m.t === "msg") {
    if (typeof m.f !== "string" || !_isRelayFor(m.f, m.i as string)) {
      return undefined;
    }
  } else if (m.f !== undefined) return undefined;
  return [head[1], head[2], m as unknown as _Message];
}

/** Whether a frame is a relayed message to `dst` with its `src` set. */
function _isRelayFor(frame: string, dst: string): boolean {
  let m: unknown;
  try {
    m = JSON.parse(frame);
  } catch {
    return false;
  }
  if (typeof m !== "object" || m === null || Array.isArray(m)) return false;
  const r = m as Record<string, unknown>;
  return typeof r.type === "string" && RELAYED.has(r.type) && isId(r.src) &&
    r.dst === dst;
}
