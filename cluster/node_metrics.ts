/**
 * What a cluster node shows: its `/cluster` view and its metric families,
 * built from its counters.
 *
 * @module
 */

import { type MetricFamily, single } from "../lib/metrics.ts";
import type { RedisStats } from "./redis.ts";

/** What `/cluster` shows of this node. */
export interface ClusterView {
  /** This node's id. */
  node: string;
  /** Its cluster URL. */
  url: string;
  /** Whether Redis answers. */
  redis: "up" | "down";
  /** Groups this node owns (with at least one local peer). */
  ownedGroups: number;
  /** Peers piped from other nodes to this one. */
  pipedIn: number;
  /** Peers piped from this node to their owners. */
  pipedOut: number;
  /** Owners this node pipes peers to, by node id: peers piped. */
  remotes: Record<string, number>;
}

/** A node's counters, for its metrics. */
export interface NodeCounters {
  /** Whether Redis answers. */
  redisUp: boolean;
  /** Groups owned. */
  owned: number;
  /** Peers piped in. */
  pipedIn: number;
  /** Peers piped out. */
  pipedOut: number;
  /** The Redis client's counters. */
  redis: RedisStats;
  /** Lease renewals sent. */
  renewals: number;
  /** Leases taken over from owners that could not be reached. */
  takeovers: number;
  /** Leases found held by another node. */
  lost: number;
  /** Groups fenced: not renewed in time. */
  fenced: number;
  /** Times Redis was found to have lost this node's state. */
  reasserted: number;
  /** Keys owned without Redis. */
  localWhileDown: number;
}

/**
 * The cluster's metric families.
 *
 * @param c The node's counters.
 * @returns The families.
 */
export function clusterMetrics(c: NodeCounters): MetricFamily[] {
  return [
    single(
      "sigver_cluster_redis_up",
      "gauge",
      "1 while Redis answers.",
      c.redisUp ? 1 : 0,
    ),
    single(
      "sigver_cluster_owned_groups",
      "gauge",
      "Groups this node owns.",
      c.owned,
    ),
    {
      name: "sigver_cluster_piped_peers",
      type: "gauge",
      help: "Peers piped between nodes: in from edges, out to owners.",
      samples: [
        [{ direction: "in" }, c.pipedIn],
        [{ direction: "out" }, c.pipedOut],
      ],
    },
    single(
      "sigver_cluster_redis_round_trips_total",
      "counter",
      "Redis round trips (a pipeline is one).",
      c.redis.roundTrips,
    ),
    single(
      "sigver_cluster_redis_errors_total",
      "counter",
      "Redis failures: lost connections, timeouts and error replies.",
      c.redis.errors + c.redis.timeouts + c.redis.errorReplies,
    ),
    single(
      "sigver_cluster_lease_renewals_total",
      "counter",
      "Lease renewals sent (one per group and renewal).",
      c.renewals,
    ),
    single(
      "sigver_cluster_takeovers_total",
      "counter",
      "Leases taken over from owners that could not be reached.",
      c.takeovers,
    ),
    single(
      "sigver_cluster_lost_leases_total",
      "counter",
      "Leases found held by another node (their local peers closed).",
      c.lost,
    ),
    single(
      "sigver_cluster_fenced_groups_total",
      "counter",
      "Groups this node stopped serving: their leases were not renewed in time.",
      c.fenced,
    ),
    single(
      "sigver_cluster_state_lost_total",
      "counter",
      "Times Redis had lost this node's keys (leases re-asserted at once).",
      c.reasserted,
    ),
    single(
      "sigver_cluster_local_while_down_total",
      "counter",
      "Keys owned here without Redis (a group may have split).",
      c.localWhileDown,
    ),
  ];
}
