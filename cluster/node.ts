/**
 * One node of a sigver cluster: it decides where each arriving peer's group
 * lives, keeps the leases of the groups it owns, and says how it is doing.
 *
 * - A key whose group this node holds is served here, with no Redis round
 *   trip. Otherwise one script in Redis claims the lease (a free key, or one
 *   whose owner died) or names the owner, and the handler pipes the peer to
 *   it. A pipe that cannot reach its owner takes the lease over.
 * - Leases are counted by the connections that use them (open peers, and
 *   upgrades on their way) and released, compare-and-delete, when the last
 *   one goes. Every `leaseTtl / 3` they are renewed in one pipelined round
 *   trip; one that another node holds now is lost, and the handler closes
 *   that group's local peers with 1012 so that they reconnect to the owner.
 * - A group is served only under a lease Redis confirmed within its TTL
 *   less a margin (`owned.ts`): a node that could not renew it in time,
 *   cut off from Redis, slowed down or frozen, fences the group (its peers
 *   closed with 1012, its newcomers refused with 503 while Redis cannot say
 *   where the group is), before another node can claim the lease.
 * - When Redis is unreachable the node keeps serving within that bound:
 *   pipes already open keep relaying, a key piped to a known owner keeps
 *   going there (a remembered owner is used only then: while Redis answers,
 *   its answer decides), and a new key is owned here, fenced after the same
 *   bound unless Redis confirms it (a warning says a group may split
 *   meanwhile). The leases are asserted again when Redis returns.
 * - A Redis that lost its state (FLUSHALL, a restart) is noticed by the
 *   node's liveness key missing, at the next announcement or lookup: the
 *   node re-asserts its leases at once, and no node claims a free lease for
 *   a grace period (an announcement period and a Redis timeout), so that
 *   established groups get their leases back before any newcomer.
 * - Redis is not trusted with where peers go: a node's record (its URL) is
 *   signed with the cluster secret and checked on every read, and a lease
 *   that names a node with no valid record is free (`leases.ts`).
 *
 * @module
 */

import { type Clock, systemClock } from "../lib/clock.ts";
import { settleWithin } from "../lib/deadline.ts";
import type { Logger } from "../lib/log.ts";
import type { MetricFamily } from "../lib/metrics.ts";
import { parseNodeUrl } from "../lib/node_url.ts";
import { PipeAuthority } from "../lib/pipe_auth.ts";
import { type Found, LeaseKeeper } from "./keeper.ts";
import { LeaseStore } from "./leases.ts";
import { NodeDirectory } from "./node_directory.ts";
import { clusterMetrics, type ClusterView } from "./node_metrics.ts";
import type { OwnedGroups } from "./owned.ts";
import { RedisClient } from "./redis.ts";
import { Pipes } from "./remotes.ts";

export type { ClusterView } from "./node_metrics.ts";

/** Where a peer's group lives. */
export type Route =
  | { readonly local: true }
  | { readonly local: false; readonly node: string; readonly url: string }
  | {
    readonly local: false;
    readonly node: undefined;
    /** Why no node can take the peer now. */
    readonly reason: string;
  };

/** Options of {@linkcode ClusterNode}. */
export interface ClusterOptions {
  /** `redis://[:password@]host:port[/db]`. */
  redis: string;
  /**
   * How other nodes reach this one: `ws://address:port` (or `wss://`), with
   * no path, query, fragment or credentials.
   */
  url: string;
  /** The secret every node signs and checks pipes with. */
  secret: string;
  /**
   * Prefix of every Redis key of this cluster.
   * @default {"sigver:"}
   */
  prefix?: string;
  /**
   * Milliseconds a lease lives without renewal; leases are renewed every
   * third of it. A dead owner is found by its liveness key (`nodeTtl`), not
   * by its leases expiring, so a long lease costs no failover time: it only
   * bounds how long the lease of a group that ended on a dead node lingers,
   * and how soon a node that was frozen or cut off from Redis stops serving
   * its groups: a group whose lease was not renewed for the TTL less a
   * margin (a twentieth of it, at most 250 ms, and 2%) is fenced.
   * Renewals, most of Redis's work, scale with its inverse.
   * @default {30000}
   */
  leaseTtl?: number;
  /**
   * Milliseconds a node's liveness key lives without refresh: how long a
   * dead owner still counts as alive for peers that do not try to reach it.
   * @default {5000}
   */
  nodeTtl?: number;
  /**
   * Milliseconds a Redis command (or a connection's handshake) may take
   * before Redis counts as unreachable. A Redis slower than this is down for
   * the node: see docs/scaling.md.
   * @default {1000}
   */
  redisTimeout?: number;
  /**
   * Milliseconds a pipe between two nodes may stay silent (no frame, no
   * pong) before it counts as dead: the edge closes its peer with 1012 and
   * the owner drops its side. The edge pings a pipe silent for a quarter of
   * it.
   * @default {5000}
   */
  pipeTimeout?: number;
  /** Where log records go. */
  log?: Logger;
  /**
   * The clock of the renewal and liveness loops.
   * @default {systemClock}
   */
  clock?: Clock;
}

function _randomId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const _LOCAL: Route = { local: true };

/**
 * A cluster node. Create it, and give it to the server as a placement
 * (`cluster/placement.ts`), which starts it.
 *
 * @example
 * ```ts ignore
 * const cluster = new ClusterNode({
 *   redis: "redis://127.0.0.1:6379",
 *   url: "ws://10.0.0.1:8000",
 *   secret: Deno.env.get("SIGVER_CLUSTER_SECRET")!,
 * });
 * await cluster.start();
 * ```
 */
export class ClusterNode {
  /** This node's id: random, new at every start. */
  readonly id: string = _randomId();
  /** Signs and checks pipes. */
  readonly auth: PipeAuthority;
  /** Called with the keys of groups that must close here (1012). */
  onLost: (keys: ReadonlySet<string>) => void = () => {};
  readonly #options: Required<Omit<ClusterOptions, "log">>;
  #log: Logger | undefined;
  readonly #redis: RedisClient;
  readonly #store: LeaseStore;
  /** The leases of the groups this node owns, kept and fenced. */
  readonly #keeper: LeaseKeeper;
  /** Groups this node owns, and when each is fenced. */
  readonly #owned: OwnedGroups;
  /**
   * Owner lookups under way, by key: peers of one key that arrive together
   * share one, so that none can release a lease another is still counting
   * on between two lookups.
   */
  readonly #resolving = new Map<string, Promise<Found>>();
  readonly #nodes: NodeDirectory;
  /** Pipes in and out, and the owners of piped keys. */
  readonly #pipes = new Pipes();
  #redisUp: boolean | undefined = undefined;
  #takeovers = 0;
  #localWhileDown = 0;
  #loops: Disposable[] = [];
  #closed = false;
  /** Settles once the first announcement got an answer or failed. */
  #started: Promise<void> | undefined;
  readonly #firstState = Promise.withResolvers<void>();

  /**
   * Creates the node; it talks to Redis once started.
   *
   * @param options Redis, this node's URL, the secret, prefix and TTLs.
   * @throws {TypeError} When the URL is not `ws[s]://host:port` or the
   * secret is empty.
   */
  constructor(options: ClusterOptions) {
    this.#options = {
      redis: options.redis,
      url: parseNodeUrl(options.url),
      secret: options.secret,
      prefix: options.prefix ?? "sigver:",
      leaseTtl: options.leaseTtl ?? 30_000,
      nodeTtl: options.nodeTtl ?? 5_000,
      redisTimeout: options.redisTimeout ?? 1_000,
      pipeTimeout: options.pipeTimeout ?? 5_000,
      clock: options.clock ?? systemClock,
    };
    this.#log = options.log;
    this.auth = new PipeAuthority(options.secret);
    this.#redis = new RedisClient(options.redis, {
      connectTimeout: this.#options.redisTimeout,
      commandTimeout: this.#options.redisTimeout,
      backoffMax: 2_000,
      onState: (up, error) => this.#redisState(up, error?.message),
    });
    this.#store = new LeaseStore(this.#redis, {
      prefix: this.#options.prefix,
      node: this.id,
      leaseTtl: this.#options.leaseTtl,
      nodeTtl: this.#options.nodeTtl,
      url: this.#options.url,
      secret: options.secret,
    });
    this.#keeper = new LeaseKeeper({
      store: this.#store,
      clock: this.#options.clock,
      leaseTtl: this.#options.leaseTtl,
      nodeTtl: this.#options.nodeTtl,
      redisTimeout: this.#options.redisTimeout,
      ask: (operation) => this.#ask(operation),
      redisUp: () => this.#redisUp === true,
      log: () => this.#log,
      lost: (keys) => this.onLost(keys),
    });
    this.#owned = this.#keeper.owned;
    this.#nodes = new NodeDirectory({
      keep: this.#options.nodeTtl,
      now: () => this.#options.clock.now(),
      lookUp: (node) =>
        this.#ask(async () => ({ url: await this.#store.nodeUrl(node) })),
    });
  }

  /**
   * Logs to `log` when the node was made without a log of its own.
   *
   * @param log The server's log.
   */
  useLog(log: Logger): void {
    this.#log ??= log;
  }

  /** This node's cluster URL, as the URL standard writes it. */
  get url(): string {
    return this.#options.url;
  }

  /** The clock of the node's loops (pipes are watched on it too). */
  get clock(): Clock {
    return this.#options.clock;
  }

  /** Milliseconds a pipe may stay silent before it counts as dead. */
  get pipeTimeout(): number {
    return this.#options.pipeTimeout;
  }

  /**
   * Announces the node and starts its liveness, renewal and fence loops. A
   * Redis that does not answer yet is not an error: the node serves
   * meanwhile.
   */
  start(): Promise<void> {
    this.#loops.push(this.#keeper.start());
    // The client connects at once and reports its first attempt's outcome.
    return this.#started ??= settleWithin(
      this.#firstState.promise,
      this.#options.redisTimeout * 2,
    ).then(() => this.#keeper.announce());
  }

  /**
   * Where a peer of `key` must go. Takes a lease for this node when it
   * routes the peer here: pair it with {@linkcode ClusterNode.release}.
   *
   * @param key The group key.
   * @returns Local, the owner to pipe to, or why no node can take it now.
   */
  async route(key: string): Promise<Route> {
    // Before Redis first answered (or failed), every key would look free.
    if (this.#started !== undefined) await this.#started;
    const now = this.#options.clock.now();
    if (this.#owned.holds(key, now)) {
      this.#owned.add(key);
      return _LOCAL;
    }
    // A group past its deadline (a frozen process that just woke) stops
    // here before a newcomer can join it.
    this.#keeper.fenceDue(now);
    // A remembered owner is used only when Redis cannot be asked.
    const remote = this.#redisUp ? undefined : this.#pipes.owner(key);
    if (remote !== undefined) {
      return { local: false, node: remote.node, url: remote.url };
    }
    await this.#keeper.releasing.get(key);
    let found = this.#resolving.get(key);
    if (found === undefined) {
      found = this.#keeper.lookUp(key);
      this.#resolving.set(key, found);
      void found.then(() => this.#resolving.delete(key));
    }
    return this.#claimed(key, await found);
  }

  /**
   * Routes a peer whose pipe could not reach `owner`: takes the lease over
   * from it, unless another live node holds it now.
   *
   * @param key The group key.
   * @param owner The node that could not be reached.
   * @returns Local, the owner to pipe to, or why no node can take it now.
   */
  async unreachable(key: string, owner: string): Promise<Route> {
    this.#pipes.forget(key, owner);
    const asserted = this.#options.clock.now();
    const route = this.#claimed(key, {
      owner: await this.#ask(() => this.#store.takeOver(key, owner)),
      asserted,
    });
    if (route.local) {
      this.#takeovers++;
      this.#log?.write("warn", "cluster", {
        what: "takeover",
        from: owner,
      });
    }
    return route;
  }

  /**
   * Routes a peer whose pipe `owner` refused because it no longer owns the
   * group: forgets what this node believed and asks Redis again.
   *
   * @param key The group key.
   * @param owner The node that refused.
   * @returns Local, the owner to pipe to, or why no node can take it now.
   */
  async refused(key: string, owner: string): Promise<Route> {
    this.#pipes.forget(key, owner);
    return this.#claimed(key, await this.#keeper.lookUp(key));
  }

  /**
   * Claims a key for a pipe that arrives from another node: the pipe's edge
   * found this node in Redis. The lease is kept, or claimed when it is free;
   * when another node holds it, the pipe must be refused.
   *
   * @param key The group key.
   * @returns Whether this node owns the key (with the lease taken).
   */
  async accept(key: string): Promise<boolean> {
    const route = await this.route(key);
    return route.local;
  }

  /**
   * Gives back a lease taken by {@linkcode ClusterNode.route}; the last one
   * out releases it in Redis.
   *
   * @param key The group key.
   */
  release(key: string): void {
    if (!this.#owned.drop(key) || !this.#redisUp) return;
    this.#keeper.release(key);
  }

  /**
   * Counts a pipe this node opened to `owner` for `key` (until
   * {@linkcode ClusterNode.pipeClosed}).
   *
   * @param key The group key.
   * @param route The owner.
   */
  pipeOpened(
    key: string,
    route: { readonly node: string; readonly url: string },
  ): void {
    this.#pipes.opened(key, route.node, route.url);
  }

  /**
   * Counts a pipe this node opened that has ended.
   *
   * @param key The group key.
   * @param node The owner it went to.
   */
  pipeClosed(key: string, node: string): void {
    // Without Redis, a group's known owner is the only way to find it: keep
    // it until Redis returns.
    this.#pipes.closed(key, node, this.#redisUp === true);
  }

  /**
   * Where a live node is reached (for a fallback session that lives there).
   * A node Redis does not know (or whose record does not check out) is
   * not asked about again for a second: a request's session id may name
   * any node, and each would cost a Redis round trip.
   *
   * @param node The node's id.
   * @returns Its cluster URL, or `undefined` when it is gone or Redis cannot
   * say.
   */
  nodeUrl(node: string): Promise<string | undefined> {
    if (node === this.id) return Promise.resolve(this.#options.url);
    return this.#nodes.url(node);
  }

  /**
   * Counts pipes from other nodes to this one.
   *
   * @param delta +1 when one opens, -1 when it closes.
   */
  pipedIn(delta: number): void {
    this.#pipes.in += delta;
  }

  /**
   * This node's view, for `/cluster`.
   *
   * @returns The view.
   */
  view(): ClusterView {
    return {
      node: this.id,
      url: this.#options.url,
      redis: this.#redisUp === true ? "up" : "down",
      ownedGroups: this.#owned.size,
      pipedIn: this.#pipes.in,
      pipedOut: this.#pipes.out,
      remotes: this.#pipes.byOwner(),
    };
  }

  /**
   * The cluster's metric families.
   *
   * @returns The families.
   */
  metrics(): MetricFamily[] {
    return clusterMetrics({
      redisUp: this.#redisUp === true,
      owned: this.#owned.size,
      pipedIn: this.#pipes.in,
      pipedOut: this.#pipes.out,
      redis: this.#redis.stats(),
      renewals: this.#store.renewals,
      takeovers: this.#takeovers,
      lost: this.#keeper.lost,
      fenced: this.#keeper.fenced,
      reasserted: this.#keeper.reasserted,
      localWhileDown: this.#localWhileDown,
    });
  }

  /** Stops the loops, removes this node's liveness key, closes Redis. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const loop of this.#loops) loop[Symbol.dispose]();
    this.#loops = [];
    if (this.#redisUp) {
      const leases = this.#owned.keys();
      await Promise.allSettled([
        this.#store.retire(),
        ...leases.map((key) => this.#store.release(key)),
      ]);
    }
    await this.#redis.close();
  }

  /** Records the outcome of a lookup: a lease for a local route. */
  #claimed(key: string, found: Found): Route {
    const owner = found.owner;
    if (owner === undefined) return this.#withoutRedis(key);
    if (owner.self) {
      this.#owned.take(key, found.asserted);
      return _LOCAL;
    }
    return { local: false, node: owner.node, url: owner.url };
  }

  /** Where a peer goes when Redis cannot say. */
  #withoutRedis(key: string): Route {
    const now = this.#options.clock.now();
    const remote = this.#pipes.owner(key);
    if (remote !== undefined) {
      return { local: false, node: remote.node, url: remote.url };
    }
    if (this.#owned.holds(key, now)) {
      this.#owned.add(key);
      return _LOCAL;
    }
    if (this.#owned.isFenced(key)) {
      // Its group may live on a node that reaches Redis: starting one here
      // would split it.
      return {
        local: false,
        node: undefined,
        reason: "its group was fenced and Redis cannot say where it is",
      };
    }
    // Served here, under the fence of a lease taken now: Redis confirms it
    // at the next renewal, or the group closes within the bound.
    this.#localWhileDown++;
    this.#owned.take(key, now);
    return _LOCAL;
  }

  /** Runs a Redis operation; `undefined` when Redis cannot answer. */
  async #ask<T>(operation: () => Promise<T>): Promise<T | undefined> {
    if (!this.#redis.connected) return undefined;
    try {
      return await operation();
    } catch (error) {
      this.#log?.write("warn", "cluster", {
        what: "redis",
        error: error instanceof Error ? error.message : String(error),
      });
      return undefined;
    }
  }

  #redisState(up: boolean, error?: string): void {
    this.#firstState.resolve();
    if (this.#redisUp === up) return;
    this.#redisUp = up;
    if (up) {
      this.#log?.write("info", "cluster", { what: "redis up", node: this.id });
      // Owners kept through the outage: Redis says where groups are again.
      this.#pipes.prune();
      this.#owned.forgetFenced();
      // Back: say where this node is, and assert its leases at once.
      void this.#keeper.announce().then(() => this.#keeper.renew());
    } else {
      this.#log?.write("warn", "cluster", {
        what: "redis down",
        error,
        effect:
          "groups are fenced unless renewed within the lease TTL; new groups are owned locally meanwhile and may split",
      });
    }
  }
}
