/**
 * y-webrtc across the nodes of a cluster: {@linkcode RedisTopicBus} is the
 * protocol's topic bus (`lib/ywebrtc/bus.ts`) on Redis pub/sub. A node
 * listens to one channel per topic that has a subscriber here,
 * `<prefix>yw:<hash of the topic>`, on a subscriber connection of its own
 * (`redis_subscriber.ts`); it publishes each publish of its clients once,
 * in the order they came, on one connection (`redis.ts`), and skips its
 * own when Redis echoes them back. Every node listening to the channel
 * hands the publish to its subscribers of the topic.
 *
 * What comes from Redis is not trusted: each message is signed with the
 * cluster secret (HMAC-SHA256), and is delivered only when its signature,
 * its channel, its sequence number and its frame all check out; anything
 * else is dropped and counted. The message carries the topic itself, so a
 * hash shared by two topics costs bandwidth, never a delivery to the wrong
 * room:
 *
 * ```
 * <base64url HMAC-SHA256(secret, "sigver-yw-v1\n" channel "\n" rest)>.<rest>
 * rest = <node id>.<sequence>.<topic length>.<topic><frame as the client sent it>
 * ```
 *
 * A node's sequence numbers only grow, so a message recorded off Redis and
 * pushed again is dropped as replayed. With Redis down, publishes still
 * reach this node's subscribers (the protocol delivers them before the bus
 * sees them) and are lost for the others; once Redis answers again, the
 * subscriber connection subscribes every channel again.
 *
 * @example
 * ```ts ignore
 * import { RedisTopicBus } from "./topic_bus.ts";
 * import { serve } from "../deno/serve.ts";
 * let bus: RedisTopicBus | undefined;
 * serve({
 *   yWebrtcBus: (deliver) =>
 *     bus = new RedisTopicBus(deliver, {
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
import type { Deliver, TopicBus } from "../lib/ywebrtc/bus.ts";
import { parseMessage } from "../lib/ywebrtc/message.ts";
import { RedisClient } from "./redis.ts";
import { RedisSubscriber } from "./redis_subscriber.ts";
import {
  busMetrics,
  MessageSigner,
  RejectCounter,
  ReplayGuard,
} from "./signed_messages.ts";

/** Why a message from Redis was dropped. */
export type RejectReason = "malformed" | "forged" | "replayed" | "overflow";

/** Counters of a {@linkcode RedisTopicBus}. */
export interface TopicBusStats {
  /** Publishes Redis took (each reaches every node listening). */
  published: number;
  /** Publishes of this node that did not reach Redis: it was down. */
  lost: number;
  /** Publishes of this node dropped: the queue to Redis was full. */
  overflowed: number;
  /** Publishes of other nodes handed to this node's subscribers. */
  delivered: number;
  /** This node's own publishes, echoed back by Redis and skipped. */
  echoes: number;
  /** Messages from Redis dropped, by why. */
  rejected: Record<RejectReason, number>;
}

/** Options of a {@linkcode RedisTopicBus}. */
export interface RedisTopicBusOptions {
  /** `redis://[:password@]host:port[/db]`: the cluster's Redis. */
  redis: string;
  /** The cluster secret: messages are signed and checked with it. */
  secret: string;
  /**
   * Prefix of the channels, as of the cluster's keys. Pub/sub channels are
   * shared by every database of a Redis: clusters sharing one need
   * prefixes of their own.
   * @default {"sigver:"}
   */
  prefix?: string;
  /**
   * Milliseconds Redis may take to connect or answer before it counts as
   * unreachable.
   * @default {1000}
   */
  redisTimeout?: number;
  /**
   * Longest wait, in milliseconds, between two attempts to reach Redis.
   * @default {2000}
   */
  backoffMax?: number;
  /**
   * Messages waiting to be signed or checked, each way; more are dropped.
   * @default {10000}
   */
  maxQueued?: number;
  /** Where Redis coming and going, and dropped messages, are logged. */
  log?: Logger;
}

const _ENCODER = new TextEncoder();
const _FNV_OFFSET = 0xcbf29ce484222325n;
const _FNV_PRIME = 0x100000001b3n;
const _MASK64 = (1n << 64n) - 1n;
const _HEAD =
  /^([A-Za-z0-9_-]{43})\.([0-9a-f]{16})\.([1-9][0-9]{0,14})\.(0|[1-9][0-9]{0,8})\./;

/**
 * The Redis channel of a topic: the prefix, `yw:`, and the 64-bit FNV-1a
 * hash of the topic's UTF-8 bytes in hex. Topics may be long and are the
 * names of users' rooms: neither goes into a channel name.
 *
 * @param prefix The cluster's prefix.
 * @param topic The topic.
 * @returns The channel.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { topicChannel } from "./topic_bus.ts";
 * assert.equal(topicChannel("sigver:", ""), "sigver:yw:cbf29ce484222325");
 * assert.match(topicChannel("sigver:", "my room"), /^sigver:yw:[0-9a-f]{16}$/);
 * ```
 */
export function topicChannel(prefix: string, topic: string): string {
  let hash = _FNV_OFFSET;
  for (const byte of _ENCODER.encode(topic)) {
    hash = ((hash ^ BigInt(byte)) * _FNV_PRIME) & _MASK64;
  }
  return `${prefix}yw:${hash.toString(16).padStart(16, "0")}`;
}

function _randomId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A message read off Redis, its signature not checked yet. */
interface _Incoming {
  channel: string;
  node: string;
  seq: number;
  topic: string;
  frame: string;
  signature: string;
  rest: string;
}

/**
 * The topic bus of a cluster node, on Redis pub/sub. Made by the protocol
 * through its factory, with where to deliver; closed by the server
 * (`await using`, or `close()`).
 */
export class RedisTopicBus implements TopicBus, AsyncDisposable {
  /** This bus's id in its messages: random, new at every start. */
  readonly id: string = _randomId();
  readonly #deliver: Deliver;
  readonly #prefix: string;
  readonly #maxQueued: number;
  readonly #log: Logger | undefined;
  readonly #signer: MessageSigner;
  readonly #publisher: RedisClient;
  readonly #subscriber: RedisSubscriber;
  /** Topics with a subscriber here, and their channels. */
  readonly #topics = new Map<string, string>();
  /** Topics per channel: two topics may share a hash. */
  readonly #channels = new Map<string, number>();
  readonly #replays = new ReplayGuard();
  readonly #rejects: RejectCounter<RejectReason>;
  #seq = 0;
  #outbox: { channel: string; rest: string }[] = [];
  #inbox: { channel: string; payload: string }[] = [];
  #writing: Promise<void> | undefined;
  #reading: Promise<void> | undefined;
  readonly #sending = new Set<Promise<void>>();
  readonly #stats: Omit<TopicBusStats, "rejected"> = {
    published: 0,
    lost: 0,
    overflowed: 0,
    delivered: 0,
    echoes: 0,
  };
  #closing: Promise<void> | undefined;

  /**
   * Creates the bus and starts connecting to Redis.
   *
   * @param deliver Hands a publish of another node to this node's
   * subscribers.
   * @param options Redis, the cluster secret and prefix, the timeout.
   * @throws {TypeError} When the Redis URL is not one, or the secret is
   * empty.
   */
  constructor(deliver: Deliver, options: RedisTopicBusOptions) {
    this.#signer = new MessageSigner(options.secret, "sigver-yw-v1");
    this.#deliver = deliver;
    this.#prefix = options.prefix ?? "sigver:";
    this.#maxQueued = options.maxQueued ?? 10_000;
    this.#log = options.log;
    this.#rejects = new RejectCounter(
      ["malformed", "forged", "replayed", "overflow"],
      { event: "ywebrtc_bus_rejected", log: options.log },
    );
    const timeout = options.redisTimeout ?? 1000;
    const backoffMax = options.backoffMax ?? 2000;
    const backoffMin = Math.min(100, backoffMax);
    this.#publisher = new RedisClient(options.redis, {
      connectTimeout: timeout,
      commandTimeout: Math.max(timeout, 1000),
      backoffMin,
      backoffMax,
    });
    this.#subscriber = new RedisSubscriber(options.redis, {
      onMessage: (channel, payload) => this.#receive(channel, payload),
      onState: (up, error) =>
        this.#log?.write(up ? "info" : "warn", "cluster", {
          what: up ? "y-webrtc bus up" : "y-webrtc bus down",
          error: error?.message,
        }),
      timeout,
      pingInterval: Math.max(timeout, 1000),
      backoffMin,
      backoffMax,
    });
  }

  /** Whether the subscriber connection is up with every channel asked for. */
  get connected(): boolean {
    return this.#subscriber.connected;
  }

  /**
   * Listens to a topic's channel.
   *
   * @param topic The topic.
   */
  subscribe(topic: string): void {
    if (this.#closing !== undefined || this.#topics.has(topic)) return;
    const channel = topicChannel(this.#prefix, topic);
    this.#topics.set(topic, channel);
    const n = this.#channels.get(channel) ?? 0;
    this.#channels.set(channel, n + 1);
    if (n === 0) this.#subscriber.subscribe(channel);
  }

  /**
   * Stops listening to a topic's channel.
   *
   * @param topic The topic.
   */
  unsubscribe(topic: string): void {
    const channel = this.#topics.get(topic);
    if (channel === undefined) return;
    this.#topics.delete(topic);
    const n = this.#channels.get(channel)! - 1;
    if (n > 0) {
      this.#channels.set(channel, n);
      return;
    }
    this.#channels.delete(channel);
    this.#subscriber.unsubscribe(channel);
  }

  /**
   * Publishes a local client's publish to the other nodes, after those
   * published before it.
   *
   * @param topic The topic.
   * @param frame The frame as the client sent it.
   */
  publish(topic: string, frame: string): void {
    if (this.#closing !== undefined) return;
    if (this.#outbox.length >= this.#maxQueued) {
      this.#stats.overflowed++;
      return;
    }
    const channel = this.#topics.get(topic) ??
      topicChannel(this.#prefix, topic);
    const rest = `${this.id}.${++this.#seq}.${topic.length}.${topic}${frame}`;
    this.#outbox.push({ channel, rest });
    this.#writing ??= this.#write();
  }

  /**
   * The counters, a snapshot.
   *
   * @returns A copy of the counters.
   */
  stats(): TopicBusStats {
    return { ...this.#stats, rejected: this.#rejects.counts() };
  }

  /**
   * The bus's metric families, labelled `protocol="y-webrtc"`:
   * `sigver_ywebrtc_bus_up`, `_channels`, `_published_total`, `_lost_total`
   * and `_rejected_total`.
   *
   * @returns The families.
   */
  metrics(): MetricFamily[] {
    const label = { protocol: "y-webrtc" } as const;
    const s = this.#stats;
    return busMetrics([
      {
        name: "sigver_ywebrtc_bus_channels",
        help: "Redis channels this node listens to for y-webrtc topics.",
        type: "gauge",
        samples: [[label, this.#channels.size]],
      },
      {
        name: "sigver_ywebrtc_bus_published_total",
        help: "Publishes of this node's y-webrtc clients that Redis took.",
        type: "counter",
        samples: [[label, s.published]],
      },
      {
        name: "sigver_ywebrtc_bus_lost_total",
        help:
          "Publishes of this node's y-webrtc clients that did not reach Redis, by why.",
        type: "counter",
        samples: [
          [{ ...label, reason: "redis_down" }, s.lost],
          [{ ...label, reason: "queue_full" }, s.overflowed],
        ],
      },
    ], {
      metric: "ywebrtc",
      title: "y-webrtc",
      labels: label,
      up: this.connected,
      rejects: this.#rejects,
    });
  }

  /**
   * Stops: no more publishes, no more deliveries. Idempotent.
   *
   * @returns A promise that resolves once no connection, timer or pending
   * operation of the bus remains.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#outbox = [];
      this.#inbox = [];
      await this.#subscriber.close();
      await this.#writing;
      await this.#reading;
      await this.#publisher.close();
      await Promise.all(this.#sending);
    })();
    return this.#closing;
  }

  /**
   * Same as {@linkcode RedisTopicBus.close}.
   *
   * @returns The promise of `close()`.
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Signs what is queued, in order, and hands it to Redis in one write. */
  async #write(): Promise<void> {
    try {
      while (this.#outbox.length > 0 && this.#closing === undefined) {
        const batch = this.#outbox;
        this.#outbox = [];
        const payloads = await Promise.all(
          batch.map(({ channel, rest }) => this.#signer.sign(channel, rest)),
        );
        const commands = batch.map(({ channel }, i) => [
          "PUBLISH",
          channel,
          payloads[i],
        ]);
        // The client writes pipelines in the order they are called: the
        // next batch may go out before this one is answered.
        const sent = this.#publisher.pipeline(commands).then(
          () => {
            this.#stats.published += batch.length;
          },
          () => {
            this.#stats.lost += batch.length;
          },
        );
        this.#sending.add(sent);
        sent.finally(() => this.#sending.delete(sent));
      }
    } finally {
      this.#writing = undefined;
    }
  }

  #receive(channel: string, payload: string): void {
    if (this.#closing !== undefined) return;
    if (this.#inbox.length >= this.#maxQueued) {
      this.#rejects.record("overflow");
      return;
    }
    this.#inbox.push({ channel, payload });
    this.#reading ??= this.#read();
  }

  /** Checks what came in, all at once, then delivers it in order. */
  async #read(): Promise<void> {
    try {
      while (this.#inbox.length > 0 && this.#closing === undefined) {
        const batch = this.#inbox;
        this.#inbox = [];
        const parsed = batch.map(({ channel, payload }) =>
          this.#parse(channel, payload)
        );
        const valid = await Promise.all(
          parsed.map((message) =>
            message === undefined || message.node === this.id
              ? false
              : this.#signer.verify(
                message.channel,
                message.signature,
                message.rest,
              )
          ),
        );
        for (const [i, message] of parsed.entries()) {
          if (this.#closing !== undefined) return;
          if (message === undefined) this.#rejects.record("malformed");
          else if (message.node === this.id) this.#stats.echoes++;
          else if (!valid[i]) this.#rejects.record("forged");
          else this.#accept(message);
        }
      }
    } finally {
      this.#reading = undefined;
    }
  }

  /** Reads a message's parts; `undefined` when it is not one. */
  #parse(channel: string, payload: string): _Incoming | undefined {
    const head = _HEAD.exec(payload);
    if (head === null) return undefined;
    const [whole, signature, node, seq, length] = head;
    const start = whole.length;
    const end = start + Number(length);
    if (end > payload.length) return undefined;
    const topic = payload.slice(start, end);
    if (topicChannel(this.#prefix, topic) !== channel) return undefined;
    const rest = payload.slice(signature.length + 1);
    return {
      channel,
      node,
      seq: Number(seq),
      topic,
      frame: payload.slice(end),
      signature,
      rest,
    };
  }

  /** A message signed by a node: delivered unless replayed or not a publish. */
  #accept(message: _Incoming): void {
    if (!this.#replays.admit(message.node, message.seq)) {
      this.#rejects.record("replayed");
      return;
    }
    const read = parseMessage(message.frame);
    if (
      !("type" in read) || read.type !== "publish" ||
      read.topic !== message.topic
    ) {
      this.#rejects.record("malformed");
      return;
    }
    // A publish that arrives after the last subscriber here left.
    if (!this.#topics.has(message.topic)) return;
    this.#stats.delivered++;
    try {
      this.#deliver(message.topic, message.frame);
    } catch (thrown) {
      reportError(thrown);
    }
  }
}
