/**
 * y-webrtc's signaling protocol, as the server drives it (see
 * `lib/protocol.ts`): clients subscribe to topics (one per Yjs room) and
 * publish to them; a publish reaches every subscriber of its topic, its
 * sender included, with `clients` added, as y-webrtc's own server does.
 * Unlike that server: an unsubscribe really leaves, an empty topic is
 * freed, only a subscriber's publish goes out, malformed frames and the
 * limits close the connection with a code and a reason
 * (`lib/ywebrtc/codes.ts`), a token's prefix scopes the topics, and a
 * client silent for the idle timeout is closed.
 *
 * @module
 */

import { CloseError } from "../protocol.ts";
import type {
  PeerRequest,
  PeerTransport,
  Protocol,
  ProtocolPeer,
} from "../protocol.ts";
import { type MetricFamily, single, Tally } from "../metrics.ts";
import type { TopicBus, TopicBusFactory } from "./bus.ts";
import {
  YWEBRTC_IDLE,
  YWEBRTC_SCOPE,
  YWEBRTC_TOO_MANY_TOPICS,
  YWEBRTC_TOPIC_FULL,
  YWEBRTC_TOPIC_LENGTH,
} from "./codes.ts";
import { parseMessage, PONG, withClients } from "./message.ts";
import { Topics } from "./topics.ts";

/** The protocol's name: the `protocol` label of metrics, logs and events. */
export const YWEBRTC = "y-webrtc";

/** How often the idle sweep runs, in ticks. */
const _SWEEP_TICKS = 10;

const _LABEL = { protocol: YWEBRTC } as const;

/** Options of {@linkcode YWebrtcProtocol}. */
export interface YWebrtcOptions {
  /**
   * Most topics one connection may subscribe to (0: no limit); past it the
   * connection is closed with 4751.
   * @default {64}
   */
  maxTopicsPerPeer?: number;
  /**
   * Most subscribers of one topic (0: no limit); one more is closed with
   * 4752.
   * @default {256}
   */
  maxSubscribersPerTopic?: number;
  /**
   * Longest topic, in UTF-16 code units; an empty or longer one closes the
   * connection with 4750.
   * @default {512}
   */
  maxTopicLength?: number;
  /**
   * Ticks a client may stay silent (0: forever); then it is closed with
   * 4742. y-webrtc clients ping every 15 s.
   * @default {600}
   */
  idleTicks?: number;
  /** Makes the bus that carries publishes to other nodes, on a cluster. */
  bus?: TopicBusFactory;
}

/** A y-webrtc client, as the protocol holds it. */
export class YWebrtcPeer implements ProtocolPeer {
  /** A number for logs. */
  readonly id: number;
  /** How to reach it. */
  readonly transport: PeerTransport;
  /** The prefix its token grants, with tokens on. */
  readonly scope: string | undefined;
  /** The topics it subscribes to. */
  readonly topics: Set<string> = new Set();
  /** Whether the protocol still holds it. */
  live = true;
  /** The tick of its last frame (or of its open). */
  seen: number;

  /**
   * Creates a peer.
   *
   * @param id A number for logs.
   * @param transport How to reach it.
   * @param scope The prefix its token grants.
   * @param seen The tick it opened at.
   */
  constructor(
    id: number,
    transport: PeerTransport,
    scope: string | undefined,
    seen: number,
  ) {
    this.id = id;
    this.transport = transport;
    this.scope = scope;
    this.seen = seen;
  }
}

function _limit(name: string, value: number | undefined, fallback: number) {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 0) {
    throw new RangeError(
      `Cannot use ${name}: ${value} is not a non-negative integer`,
    );
  }
  return value === 0 ? Infinity : value;
}

/**
 * The y-webrtc protocol.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { YWebrtcProtocol } from "./protocol.ts";
 * const ywebrtc = new YWebrtcProtocol();
 * const got: string[] = [];
 * const transport = { send: (f: string | Uint8Array) => got.push(String(f)), close() {} };
 * const peer = ywebrtc.open(transport, { key: "", favored: false })!;
 * ywebrtc.receive(peer, '{"type":"subscribe","topics":["room"]}');
 * ywebrtc.receive(peer, '{"type":"publish","topic":"room","data":{}}');
 * ywebrtc.receive(peer, '{"type":"ping"}');
 * assert.deepEqual(got.map((f) => JSON.parse(f)), [
 *   { type: "publish", topic: "room", data: {}, clients: 1 },
 *   { type: "pong" },
 * ]);
 * ```
 */
export class YWebrtcProtocol implements Protocol<YWebrtcPeer> {
  /** The protocol's label. */
  readonly name = YWEBRTC;
  /** y-webrtc frames are JSON text. */
  readonly text = true;
  readonly #topics = new Topics<YWebrtcPeer>();
  readonly #peers = new Set<YWebrtcPeer>();
  readonly #maxTopics: number;
  readonly #maxSubscribers: number;
  readonly #maxTopicLength: number;
  readonly #idleTicks: number;
  readonly #bus: TopicBus | undefined;
  #tick = 0;
  #ids = 0;
  #publishes = 0;
  #deliveries = 0;
  #busDeliveries = 0;
  #dropped = 0;
  readonly #closes = new Tally(["protocol", "reason"]);

  /**
   * Creates the protocol, holding no peer.
   *
   * @param options Limits, and the bus on a cluster.
   * @throws {RangeError} When a limit is not a non-negative integer.
   */
  constructor(options: YWebrtcOptions = {}) {
    this.#maxTopics = _limit("maxTopicsPerPeer", options.maxTopicsPerPeer, 64);
    this.#maxSubscribers = _limit(
      "maxSubscribersPerTopic",
      options.maxSubscribersPerTopic,
      256,
    );
    this.#maxTopicLength = _limit(
      "maxTopicLength",
      options.maxTopicLength,
      512,
    );
    this.#idleTicks = _limit("idleTicks", options.idleTicks, 600);
    this.#bus = options.bus?.((topic, frame) => this.#deliver(topic, frame));
  }

  /** Live peers. */
  get size(): number {
    return this.#peers.size;
  }

  /** Topics with a subscriber on this node. */
  get topics(): number {
    return this.#topics.size;
  }

  /**
   * Takes a client. Its path is the mount's own: nothing to check there.
   *
   * @param transport How to reach it.
   * @param request Its token's scope, with tokens on.
   * @returns The peer.
   */
  open(transport: PeerTransport, request: PeerRequest): YWebrtcPeer {
    const peer = new YWebrtcPeer(
      ++this.#ids,
      transport,
      request.scope,
      this.#tick,
    );
    this.#peers.add(peer);
    return peer;
  }

  /**
   * Handles one text frame of a client.
   *
   * @param peer The sender.
   * @param frame The frame.
   */
  receive(peer: YWebrtcPeer, frame: Uint8Array | string): void {
    peer.seen = this.#tick;
    const text = frame as string;
    const message = parseMessage(text);
    if ("code" in message) {
      this.#refuse(peer, "malformed", message.code, message.reason);
      return;
    }
    switch (message.type) {
      case "publish":
        this.#publish(peer, message.topic, text);
        return;
      case "subscribe":
        this.#subscribe(peer, message.topics);
        return;
      case "unsubscribe":
        for (const topic of message.topics) this.#leave(peer, topic);
        return;
      case "ping":
        this.#send(peer, PONG);
        return;
    }
  }

  /**
   * Closes a client for the server: it leaves its topics.
   *
   * @param peer The client.
   * @param code The close code.
   * @param reason The close reason.
   */
  close(peer: YWebrtcPeer, code: number, reason: string): void {
    if (!peer.live) return;
    this.forget(peer);
    peer.transport.close(code, reason);
  }

  /**
   * Forgets a client whose transport closed: it leaves its topics.
   *
   * @param peer The client.
   */
  forget(peer: YWebrtcPeer): void {
    if (!peer.live) return;
    peer.live = false;
    this.#peers.delete(peer);
    for (const topic of peer.topics) this.#leave(peer, topic);
  }

  /** Counts time; closes clients silent for the idle timeout. */
  tick(): void {
    const tick = ++this.#tick;
    if (this.#idleTicks === Infinity || tick % _SWEEP_TICKS !== 0) return;
    for (const peer of this.#peers) {
      if (tick - peer.seen > this.#idleTicks) {
        this.#refuse(
          peer,
          "idle",
          YWEBRTC_IDLE,
          "Cannot keep: nothing received for the idle timeout",
        );
      }
    }
  }

  /**
   * The protocol's metric families, labelled `protocol="y-webrtc"`.
   *
   * @returns The families.
   */
  metrics(): MetricFamily[] {
    const gauge = (name: string, help: string, value: number) =>
      single(name, "gauge", help, value, _LABEL);
    const counter = (name: string, help: string, value: number) =>
      single(name, "counter", help, value, _LABEL);
    return [
      gauge("sigver_ywebrtc_peers", "Connected y-webrtc clients.", this.size),
      gauge(
        "sigver_ywebrtc_topics",
        "Topics with a subscriber on this node.",
        this.#topics.size,
      ),
      gauge(
        "sigver_ywebrtc_subscriptions",
        "Subscriptions of this node's clients, over every topic.",
        this.#topics.subscriptions,
      ),
      counter(
        "sigver_ywebrtc_publishes_total",
        "Publishes of this node's clients forwarded to their topic.",
        this.#publishes,
      ),
      counter(
        "sigver_ywebrtc_deliveries_total",
        "Publishes sent to this node's subscribers (one per subscriber).",
        this.#deliveries,
      ),
      counter(
        "sigver_ywebrtc_bus_deliveries_total",
        "Publishes of other nodes' clients received from the cluster bus.",
        this.#busDeliveries,
      ),
      counter(
        "sigver_ywebrtc_publishes_dropped_total",
        "Publishes dropped: their sender did not subscribe to their topic.",
        this.#dropped,
      ),
      {
        name: "sigver_ywebrtc_refusals_total",
        help: "y-webrtc clients closed for a frame or a limit, by reason.",
        type: "counter",
        samples: this.#closes.samples(),
      },
      ...this.#bus?.metrics?.() ?? [],
    ];
  }

  #subscribe(peer: YWebrtcPeer, topics: readonly string[]): void {
    const fresh = new Set<string>();
    for (const topic of topics) {
      if (topic.length === 0 || topic.length > this.#maxTopicLength) {
        this.#refuse(
          peer,
          "topic_length",
          YWEBRTC_TOPIC_LENGTH,
          `Cannot subscribe: a topic is empty or over ${this.#maxTopicLength} characters`,
        );
        return;
      }
      if (peer.scope !== undefined && !topic.startsWith(peer.scope)) {
        this.#refuse(
          peer,
          "scope",
          YWEBRTC_SCOPE,
          "Cannot subscribe: a topic is outside the access token's prefix",
        );
        return;
      }
      if (!peer.topics.has(topic)) fresh.add(topic);
    }
    if (peer.topics.size + fresh.size > this.#maxTopics) {
      this.#refuse(
        peer,
        "topics_per_peer",
        YWEBRTC_TOO_MANY_TOPICS,
        `Cannot subscribe: over ${this.#maxTopics} topics on one connection`,
      );
      return;
    }
    for (const topic of fresh) {
      if (this.#topics.count(topic) >= this.#maxSubscribers) {
        this.#refuse(
          peer,
          "subscribers_per_topic",
          YWEBRTC_TOPIC_FULL,
          `Cannot subscribe: a topic has ${this.#maxSubscribers} subscribers already`,
        );
        return;
      }
    }
    for (const topic of fresh) {
      peer.topics.add(topic);
      this.#topics.add(topic, peer);
      if (this.#bus !== undefined && this.#topics.count(topic) === 1) {
        this.#bus.subscribe(topic);
      }
    }
  }

  #leave(peer: YWebrtcPeer, topic: string): void {
    if (!peer.topics.delete(topic)) return;
    this.#topics.remove(topic, peer);
    if (this.#bus !== undefined && this.#topics.count(topic) === 0) {
      this.#bus.unsubscribe(topic);
    }
  }

  #publish(peer: YWebrtcPeer, topic: string, text: string): void {
    if (!peer.topics.has(topic)) {
      this.#dropped++;
      return;
    }
    this.#publishes++;
    this.#deliver(topic, text, false);
    this.#bus?.publish(topic, text);
  }

  /** Sends a publish to this node's subscribers of its topic. */
  #deliver(topic: string, text: string, remote = true): void {
    const subscribers = this.#topics.subscribers(topic);
    if (subscribers === undefined) return;
    if (remote) this.#busDeliveries++;
    const frame = withClients(text, subscribers.size);
    let failed: [YWebrtcPeer, CloseError][] | undefined;
    for (const subscriber of subscribers) {
      try {
        subscriber.transport.send(frame);
        this.#deliveries++;
      } catch (error) {
        if (!(error instanceof CloseError)) throw error;
        (failed ??= []).push([subscriber, error]);
      }
    }
    if (failed !== undefined) {
      for (const [subscriber, error] of failed) {
        this.close(subscriber, error.code, error.message);
      }
    }
  }

  #send(peer: YWebrtcPeer, frame: string): void {
    try {
      peer.transport.send(frame);
    } catch (error) {
      if (!(error instanceof CloseError)) throw error;
      this.close(peer, error.code, error.message);
    }
  }

  #refuse(
    peer: YWebrtcPeer,
    reason: string,
    code: number,
    text: string,
  ): void {
    this.#closes.add(YWEBRTC, reason);
    this.close(peer, code, text);
  }
}
