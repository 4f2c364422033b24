/**
 * The seam a cluster plugs PeerJS into: a bus holds each id on one node
 * at a time, carries a message to the node that holds its `dst`, and
 * tells the nodes when an id arrives so that what they queued for it
 * follows. The hub claims an id before it answers OPEN, hands the bus
 * every message whose `dst` is not held here, and releases an id when its
 * client leaves; the bus hands back messages for this node's ids, arrivals
 * on other nodes, and ids this node must give up. One node alone needs no
 * bus.
 *
 * @module
 */

import type { MetricFamily } from "../metrics.ts";

/** Why a node must give up one of its ids. */
export type EvictReason = "replaced" | "taken";

/** What a bus hands back to the hub. */
export interface PeerjsBusEvents {
  /**
   * A message from a client of another node, for an id held here.
   *
   * @param key The key namespace.
   * @param dst The id it is for.
   * @param frame The frame, its `src` set by the sender's node.
   */
  deliver(key: string, dst: string, frame: string): void;
  /**
   * An id connected on another node: what waits here for it goes there.
   *
   * @param key The key namespace.
   * @param id The id.
   */
  arrived(key: string, id: string): void;
  /**
   * An id held here is held elsewhere now: with the same token
   * (`replaced`: its client moved) or another one (`taken`: found when two
   * nodes claimed it while Redis was away).
   *
   * @param key The key namespace.
   * @param id The id.
   * @param reason Why.
   */
  evict(key: string, id: string, reason: EvictReason): void;
}

/** Holds ids across the nodes of a cluster and carries messages between them. */
export interface PeerjsBus {
  /**
   * Claims an id for a client of this node.
   *
   * @param key The key namespace.
   * @param id The id.
   * @param token The client's token: the same token on another node takes
   * the id over.
   * @returns Whether this node holds it now (`false`: another client does).
   * A bus that cannot reach the cluster claims it locally (`true`).
   */
  claim(key: string, id: string, token: string): Promise<boolean>;
  /**
   * Gives an id up: its client left.
   *
   * @param key The key namespace.
   * @param id The id.
   */
  release(key: string, id: string): void;
  /**
   * Carries a message to the node that holds `dst`, after the messages
   * sent before it.
   *
   * @param key The key namespace.
   * @param dst The id it is for, not held here.
   * @param frame The frame, `src` set.
   * @returns Whether a node holds `dst` and the message went to it
   * (`false`: nobody holds it, or the cluster is unreachable).
   */
  send(key: string, dst: string, frame: string): Promise<boolean>;
  /** Stops: no more calls, no more events. */
  close(): void | Promise<void>;
  /**
   * The bus's own metric families, served with the protocol's.
   *
   * @returns The families.
   */
  metrics?(): MetricFamily[];
}

/**
 * Makes a node's bus, given what to tell the hub.
 *
 * @param events Where messages, arrivals and evictions go.
 * @returns The bus.
 */
export type PeerjsBusFactory = (events: PeerjsBusEvents) => PeerjsBus;
