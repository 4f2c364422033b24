/**
 * The metric families of one sigver server, as data: each reads its samples
 * from a {@linkcode ServerSnapshot}. The handler takes the snapshot, and
 * `lib/metrics.ts` renders the families.
 *
 * @module
 */

import type { HubCounters, HubStats } from "./netflux/hub.ts";
import type { MetricDef, Tally } from "./metrics.ts";

/** What one server counts, at the moment `/metrics` is read. */
export interface ServerSnapshot {
  /** Sizes of the group state. */
  stats: HubStats;
  /** The hub's counters. */
  counters: HubCounters;
  /** Whether the server drains. */
  draining: boolean;
  /** Upgrades accepted since start. */
  connectionsTotal: number;
  /** Frames that were not protocol messages (text, over the size limit). */
  invalid: number;
  /** Closed peer sockets, by `code` and `by` (server or client). */
  closes: Tally;
  /** Upgrades refused and peers closed by a limit, by `reason`. */
  rejections: Tally;
}

/**
 * The families of `/metrics`, in the order they are rendered.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SERVER_METRICS } from "./server_metrics.ts";
 * assert.ok(SERVER_METRICS.some((def) => def.name === "sigver_peers"));
 * ```
 */
export const SERVER_METRICS: readonly MetricDef<ServerSnapshot>[] = [
  {
    name: "sigver_peers",
    type: "gauge",
    help: "Connected peers.",
    read: (s) => s.stats.peers,
  },
  {
    name: "sigver_groups",
    type: "gauge",
    help: "Groups (keys with at least one member).",
    read: (s) => s.stats.groups,
  },
  {
    name: "sigver_members",
    type: "gauge",
    help: "Group members over all groups.",
    read: (s) => s.stats.members,
  },
  {
    name: "sigver_bound_joiners",
    type: "gauge",
    help: "Joining peers bound to a member.",
    read: (s) => s.stats.bindings,
  },
  {
    name: "sigver_draining",
    type: "gauge",
    help: "1 while the server drains.",
    read: (s) => s.draining ? 1 : 0,
  },
  {
    name: "sigver_connections_total",
    type: "counter",
    help: "WebSocket upgrades accepted.",
    read: (s) => s.connectionsTotal,
  },
  {
    name: "sigver_messages_received_total",
    type: "counter",
    help: "Frames received from peers, by message type.",
    read: ({ counters: c, invalid }) => [
      [{ type: "heartbeat" }, c.inHeartbeat],
      [{ type: "content" }, c.inContent],
      [{ type: "connect" }, c.inConnect],
      [{ type: "connected" }, c.inConnected],
      [{ type: "invalid" }, invalid],
    ],
  },
  {
    name: "sigver_messages_sent_total",
    type: "counter",
    help: "Frames sent to peers, by message type.",
    read: ({ counters: c }) => [
      [{ type: "heartbeat" }, c.outHeartbeat],
      [{ type: "content" }, c.outContent],
      [{ type: "connected" }, c.outConnected],
    ],
  },
  {
    name: "sigver_relayed_bytes_total",
    type: "counter",
    help: "Content payload bytes relayed.",
    read: (s) => s.counters.bytesRelayed,
  },
  {
    name: "sigver_dropped_messages_total",
    type: "counter",
    help: "Content messages that matched no binding.",
    read: (s) => s.counters.dropped,
  },
  {
    name: "sigver_closes_total",
    type: "counter",
    help: "Closed peer sockets, by close code and by who closed.",
    read: (s) => s.closes.samples(),
  },
  {
    name: "sigver_rejections_total",
    type: "counter",
    help: "Upgrades refused and peers closed by a limit, by reason.",
    read: (s) => s.rejections.samples(),
  },
];
