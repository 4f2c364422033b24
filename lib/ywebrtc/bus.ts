/**
 * The seam a cluster plugs y-webrtc into: a topic bus carries each publish
 * to the other nodes whose clients subscribe to its topic. The protocol
 * tells the bus which topics have subscribers here and hands it every
 * publish of a local client; the bus hands back the publishes of other
 * nodes' clients. One node alone needs no bus.
 *
 * @module
 */

import type { MetricFamily } from "../metrics.ts";

/** Where a bus hands the publishes of other nodes' clients. */
export type Deliver = (topic: string, frame: string) => void;

/** Carries publishes between the nodes of a cluster. */
export interface TopicBus {
  /**
   * A topic got its first subscriber on this node: from now on, hand it the
   * publishes of other nodes to it.
   *
   * @param topic The topic.
   */
  subscribe(topic: string): void;
  /**
   * A topic lost its last subscriber on this node.
   *
   * @param topic The topic.
   */
  unsubscribe(topic: string): void;
  /**
   * A client of this node published: carry it to the other nodes, in the
   * order of the calls.
   *
   * @param topic The topic.
   * @param frame The publish as the client sent it (without `clients`).
   */
  publish(topic: string, frame: string): void;
  /** Stops: no more calls, no more deliveries. */
  close(): void;
  /**
   * The bus's own metric families (its link's state, what it dropped),
   * served with the protocol's.
   *
   * @returns The families.
   */
  metrics?(): MetricFamily[];
}

/**
 * Makes a node's bus, given where to deliver other nodes' publishes.
 *
 * @param deliver Hands a publish of another node to this node's
 * subscribers.
 * @returns The bus.
 */
export type TopicBusFactory = (deliver: Deliver) => TopicBus;
